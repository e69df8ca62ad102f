"""The one place for dataset facts: files and their sha256 (of the raw, un-gzipped IDX content),
class names, normalisation constants, and where torchvision keeps them on disk."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import get_args

from lenet_dist.choices import DatasetName
from lenet_dist.records import Normalization

SPLITS = ("train", "test")


@dataclass(frozen=True)
class IdxFile:
    name: str  # raw IDX file name, as torchvision and the original site name it
    sha256: str


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    folder: str  # torchvision's folder name, so torchvision.datasets reads the same files
    torchvision_class: str
    classes: tuple[str, ...]
    normalization: Normalization
    files: dict[str, tuple[IdxFile, IdxFile]]  # split -> (images, labels)
    mirror_safe: bool = False  # a left-right mirror keeps every class (a shoe stays a shoe; a 3 does not stay a 3)
    pen_drawn: bool = False  # the images are drawn with a pen, so predict also reads them at other pen widths

    def all_files(self) -> list[IdxFile]:
        return [f for pair in self.files.values() for f in pair]

    def raw_dir(self, data_dir: Path) -> Path:
        return Path(data_dir) / self.folder / "raw"


MNIST = DatasetSpec(
    name="mnist",
    folder="MNIST",
    torchvision_class="MNIST",
    classes=tuple(str(d) for d in range(10)),
    normalization=Normalization(mean=0.1307, std=0.3081),
    pen_drawn=True,
    files={
        "train": (
            IdxFile("train-images-idx3-ubyte", "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db"),
            IdxFile("train-labels-idx1-ubyte", "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5"),
        ),
        "test": (
            IdxFile("t10k-images-idx3-ubyte", "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7"),
            IdxFile("t10k-labels-idx1-ubyte", "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2"),
        ),
    },
)

FASHION_MNIST = DatasetSpec(
    name="fashion-mnist",
    folder="FashionMNIST",
    torchvision_class="FashionMNIST",
    classes=("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
             "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"),
    normalization=Normalization(mean=0.2860, std=0.3530),
    mirror_safe=True,
    files={
        "train": (
            IdxFile("train-images-idx3-ubyte", "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888"),
            IdxFile("train-labels-idx1-ubyte", "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9"),
        ),
        "test": (
            IdxFile("t10k-images-idx3-ubyte", "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b"),
            IdxFile("t10k-labels-idx1-ubyte", "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34"),
        ),
    },
)

DATASETS = {spec.name: spec for spec in (MNIST, FASHION_MNIST)}
assert tuple(DATASETS) == get_args(DatasetName), "choices.DatasetName lists the datasets defined here"
