"""Export a model checkpoint to TorchScript (needs only torch) or ONNX (needs the `onnx` extra).
The exported graph takes normalised input [N, 1, 28, 28]: (pixels/255 - mean) / std, with mean and
std in the checkpoint's meta.json (also written next to the export as <file>.json). A checkpoint
evaluated mirror-averaged (meta mirror_average) exports that reading: its outputs are log-probabilities,
which softmax takes as it takes logits."""

from __future__ import annotations

from pathlib import Path

import torch

from lenet_dist.checkpoint import load_model
from lenet_dist.device import pick_device
from lenet_dist.errors import ConfigError
from lenet_dist.fileio import atomic_file, write_json_atomic


def export_model(checkpoint: Path, output: Path, fmt: str, device: str = "cpu") -> float:
    """Write the export, traced on `device` (a TorchScript file then loads onto that device), check it
    against the checkpoint on random input; return max |diff|."""
    if Path(output).is_dir():
        raise ConfigError(f"--output {output} is a directory; give a file name, e.g. {Path(output) / 'lenet.pt'}")
    dev = pick_device(device)
    model, meta = load_model(checkpoint, as_evaluated=True)
    model = model.to(dev)
    example = torch.randn(16, 1, 28, 28, device=dev)
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    with torch.inference_mode():
        expected = model(example)
    with atomic_file(output) as tmp:
        if fmt == "torchscript":
            traced = torch.jit.trace(model, example)
            traced.save(str(tmp))
            got = torch.jit.load(str(tmp), map_location=dev)(example)
        else:
            got = _export_onnx(model, example, tmp)
    info = meta.model_dump(mode="json", include={"dataset", "classes", "normalization", "input_size", "model_args",
                                                 "mirror_average"})
    write_json_atomic(output.with_name(output.name + ".json"), info)
    return float((got.to(dev) - expected).abs().max())


def _export_onnx(model: torch.nn.Module, example: torch.Tensor, path: Path) -> torch.Tensor:
    try:  # torch's exporter needs onnx; onnxruntime checks the result
        import onnx  # noqa: F401
        import onnxruntime
    except ImportError:
        raise ConfigError("ONNX export needs the onnx extra: pip install 'lenet-dist[onnx]'") from None
    torch.onnx.export(model, (example,), str(path), input_names=["input"], output_names=["logits"],
                      dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}}, dynamo=False)
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return torch.from_numpy(session.run(None, {"input": example.cpu().numpy()})[0])
