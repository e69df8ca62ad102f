"""A person's own labelled digits, in torchvision's ImageFolder layout (FOLDER/<class>/<image>),
preprocessed exactly as predict preprocesses a photo, as a training split to fine-tune on."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from lenet_dist.data.tensors import Split
from lenet_dist.errors import ConfigError, UnreadableInputs
from lenet_dist.inference.images import IMAGE_SUFFIXES, load_in_this_process


def _class_folders(folder: Path, classes: tuple[str, ...]) -> list[Path]:
    if not folder.is_dir():
        raise ConfigError(f"{folder} is not a folder: give a folder with one subfolder per digit (FOLDER/0/*.png ...)")
    subfolders = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not subfolders:
        raise ConfigError(f"{folder} has no class folders: put each image under {folder}/<digit>/, "
                          f"e.g. {folder}/7/my-seven.png")
    strangers = [p.name for p in subfolders if p.name not in classes]
    if strangers:
        raise ConfigError(f"{folder}: folder name(s) {', '.join(sorted(strangers)[:5])} are not classes of this "
                          f"model ({' '.join(classes)}); name each folder after the digit its images show")
    return subfolders


def load_folder(folder: Path, classes: tuple[str, ...]) -> Split:
    """Every image under FOLDER/<class>/ (classes may be missing: teach only what the model gets
    wrong), as predict would see it; one line if anything is wrong, before any training."""
    files, labels = [], []
    for sub in _class_folders(Path(folder), classes):
        found = sorted(p for p in sub.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        files += found
        labels += [classes.index(sub.name)] * len(found)
    if not files:
        raise ConfigError(f"{folder} has class folders but no images in them ({', '.join(sorted(IMAGE_SUFFIXES))})")
    loaded = load_in_this_process(files)
    bad = [(f, err) for f, (_, err) in zip(files, loaded, strict=True) if err is not None]
    if bad:
        first, why = bad[0]
        raise UnreadableInputs(f"{len(bad)} of {len(files)} images could not be read (first: {first}: {why}); "
                               "fix or remove them and run again")
    images = np.stack([image for image, _ in loaded])
    return Split(torch.from_numpy(images).unsqueeze(1).float(), torch.tensor(labels, dtype=torch.int64))
