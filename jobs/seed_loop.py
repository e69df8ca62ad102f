"""The seed project's own training loop, one epoch, as the speed reference the benchmarks divide by.

    python jobs/seed_loop.py [--data-dir data] [--device cpu|cuda]

Copied faithfully from the seed: per-sample ToTensor through a DataLoader(batch_size=100,
shuffle=True), Adam(1e-3), its LeNet5 with no activation between the fully connected layers, one
epoch, no periodic test. Prints one JSON line: {"train_images_per_second": …, "device": …}.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torchvision import datasets, transforms


class SeedLeNet5(nn.Module):
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


def seed_loop(data_dir: Path, device: torch.device) -> float:
    train = datasets.MNIST(str(data_dir), train=True, download=False, transform=transforms.ToTensor())
    loader = torch.utils.data.DataLoader(train, batch_size=100, shuffle=True)
    model = SeedLeNet5().to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    criterion = nn.CrossEntropyLoss()
    images, t0 = 0, time.perf_counter()
    for x, y in loader:
        x, y = x.to(device), y.to(device)
        optimizer.zero_grad()
        loss = criterion(model(x), y)
        loss.backward()
        optimizer.step()
        images += len(y)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return images / (time.perf_counter() - t0)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", type=Path, default=Path(__file__).resolve().parent.parent / "data")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    a = p.parse_args()
    device = torch.device(a.device)
    print(json.dumps({"train_images_per_second": seed_loop(a.data_dir, device), "device": device.type}))


if __name__ == "__main__":
    main()
