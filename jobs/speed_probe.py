"""In-process speed probes shared by jobs/benchmark.py and jobs/gpu_benchmark.py.

* seed_loop: the seed project's own training loop, copied faithfully (per-sample ToTensor through a
  DataLoader(batch_size=100, shuffle=True), Adam(1e-3), its LeNet5 without activations between the
  fully connected layers, one epoch, no periodic test); only the device is chosen here.
* step_breakdown: one training step of a lenet-dist config split into its parts (batch gather,
  augmentation, normalisation, forward + loss, backward, optimizer + schedule), built from the
  package's own pieces, so the table says where a step's time goes.
* compute_bound: the model's training FLOPs per image, this device's matmul peak in the config's
  precision, and the images/s that peak would allow.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path


def _sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize()


def seed_loop(data_dir: Path, device: str | None = None) -> dict:
    import torch
    import torch.nn.functional as F
    from torch import nn
    from torchvision import datasets, transforms

    class SeedLeNet5(nn.Module):  # the seed's model: no activation between the fully connected layers
        def __init__(self):
            super().__init__()
            self.conv1 = nn.Conv2d(1, 6, 5, padding=2)
            self.pool = nn.MaxPool2d(2)
            self.conv2 = nn.Conv2d(6, 16, 5)
            self.fc1, self.fc2, self.fc3 = nn.Linear(400, 120), nn.Linear(120, 84), nn.Linear(84, 10)

        def forward(self, x):
            x = self.pool(F.relu(self.conv1(x)))
            x = self.pool(F.relu(self.conv2(x)))
            return self.fc3(self.fc2(self.fc1(torch.flatten(x, 1))))

    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    train = datasets.MNIST(str(data_dir), train=True, download=False, transform=transforms.ToTensor())
    loader = torch.utils.data.DataLoader(train, batch_size=100, shuffle=True)
    model = SeedLeNet5().to(dev)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    criterion = nn.CrossEntropyLoss()
    images, t0 = 0, time.perf_counter()
    for x, y in loader:
        x, y = x.to(dev), y.to(dev)
        optimizer.zero_grad()
        loss = criterion(model(x), y)
        loss.backward()
        optimizer.step()
        images += len(y)
    _sync(dev)
    return {"train_images_per_second": images / (time.perf_counter() - t0), "epochs": 1}


def step_breakdown(config: Path, data_dir: Path, steps: int = 40) -> dict:
    """Milliseconds per step of each part (medians over `steps` steps, after warm-up)."""
    import torch
    import torch.nn.functional as F

    from lenet_dist.config import load_config
    from lenet_dist.data.augment import batch_generator, random_affine
    from lenet_dist.data.tensors import epoch_order, rank_batch
    from lenet_dist.model import LeNet5
    from lenet_dist.training.data import load_data
    from lenet_dist.training.distributed import start_processes
    from lenet_dist.training.optim import build_optimizer, build_scheduler
    from lenet_dist.training.train import prepare

    cfg = load_config(config, [f"data.data_dir={data_dir}"])
    procs = start_processes(cfg.train.mixed_precision, 1, cfg.train.batch_size)
    data = load_data(cfg, procs)
    mf = torch.channels_last if cfg.train.channels_last else torch.contiguous_format
    model = LeNet5().to(procs.device, memory_format=mf)
    optimizer = build_optimizer(cfg, model)
    scheduler = build_scheduler(cfg, optimizer, data.total_steps)
    model, optimizer = prepare(procs, model, optimizer, cfg.checkpoint.hang_timeout_s)
    order = epoch_order(len(data.train), cfg.train.seed, 0).to(procs.device)
    parts: dict[str, list[float]] = {k: [] for k in ("gather", "augment", "normalize", "forward", "backward",
                                                      "optimizer")}

    def timed(name, fn):
        t0 = time.perf_counter()
        out = fn()
        _sync(procs.device)
        parts[name].append((time.perf_counter() - t0) * 1e3)
        return out

    for step in range(steps + 5):
        idx = rank_batch(order, step, cfg.train.batch_size, 0, 1)
        x = timed("gather", lambda idx=idx: data.train.images[idx])
        if cfg.augment.enabled:
            gen = batch_generator(procs.device, cfg.train.seed, 0, step)
            x = timed("augment", lambda x=x, gen=gen: random_affine(x, cfg.augment, gen))
        if not data.train.normalized:  # fast.yaml: normalised once at load (no augmentation)
            x = timed("normalize", lambda x=x: data.spec.normalization.apply(x))
        x = x.contiguous(memory_format=mf)
        y = data.train.labels[idx]
        loss = timed("forward", lambda x=x, y=y: F.cross_entropy(model(x).float(), y,
                                                                  label_smoothing=cfg.train.label_smoothing))
        timed("backward", lambda loss=loss: procs.acc.backward(loss))
        timed("optimizer", lambda: (optimizer.step(), optimizer.zero_grad(set_to_none=True),
                                    scheduler and scheduler.step()))
        if step == 4:
            parts = {k: [] for k in parts}
    ms = {k: statistics.median(v) for k, v in parts.items() if v}
    total = sum(ms.values())
    return {"batch_size": cfg.train.batch_size, "precision": procs.acc.mixed_precision,
            "device": procs.device.type, "ms_per_step": ms, "sum_ms": total,
            "images_per_second_of_parts": cfg.train.batch_size / total * 1e3}


def train_flops_per_image(model) -> float:
    """Forward multiply-adds of every conv and linear layer x 2 FLOPs x 3 (forward, input grads,
    weight grads), less the first layer's input gradient, which nobody needs. The network's own
    FLOPs: counted on its plain layers (on CPU, LeNet5.forward runs conv1 as one matrix product that
    does not call the conv module, and multiplies some zeros besides)."""
    import torch
    from torch import nn

    macs: list[int] = []

    def count(module, inputs, output):
        if isinstance(module, nn.Conv2d):
            k = module.in_channels // module.groups * module.kernel_size[0] * module.kernel_size[1]
            macs.append(output[0].numel() * k)
        elif isinstance(module, nn.Linear):
            macs.append(module.in_features * module.out_features)

    layers = [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    hooks = [m.register_forward_hook(count) for m in layers]
    with torch.no_grad():
        x = torch.zeros(1, layers[0].in_channels if isinstance(layers[0], nn.Conv2d) else 1, 28, 28)
        model.classifier(model.features(x))
    for h in hooks:
        h.remove()
    return 2.0 * (3 * sum(macs) - macs[0])


def matmul_peak(precision: str, device: str = "cpu", n: int = 1024, repeats: int = 5) -> float:
    """FLOP/s of a square matmul in the training precision (bf16 or fp32), median of `repeats`."""
    import torch

    dtype = torch.bfloat16 if precision == "bf16" else torch.float16 if precision == "fp16" else torch.float32
    dev = torch.device(device)
    n = n * 4 if dev.type == "cuda" else n
    a, b = torch.randn(n, n, dtype=dtype, device=dev), torch.randn(n, n, dtype=dtype, device=dev)
    a @ b
    times = []
    for _ in range(repeats):
        _sync(dev)
        t0 = time.perf_counter()
        for _ in range(4):
            a @ b
        _sync(dev)
        times.append((time.perf_counter() - t0) / 4)
    return 2 * n**3 / statistics.median(times)


def compute_bound(precision: str, device: str = "cpu") -> dict:
    from lenet_dist.model import LeNet5

    flops = train_flops_per_image(LeNet5())
    peak = matmul_peak(precision, device)
    return {"train_flops_per_image": flops, "matmul_peak_flops": peak, "precision": precision,
            "bound_images_per_second": peak / flops}
