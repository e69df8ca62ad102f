"""`serve --collect DIR`: a drawing the model read wrong, saved under the label the person gave it, in
the layout `lenet-dist finetune` reads (DIR/<label>/<time>-<random>.png).

Each image is re-encoded as a grayscale PNG no larger than MAX_SIDE (never the client's bytes), is
written atomically under a name that cannot exist yet and never replaces a file, and is counted
against a cap under a lock, so that several server processes together stay within it."""

from __future__ import annotations

import os
import time
import uuid
from pathlib import Path

import numpy as np
from PIL import Image

from lenet_dist.errors import ConfigError
from lenet_dist.fileio import fsync_path, temporary_sibling
from lenet_dist.inference.images import IMAGE_SUFFIXES
from lenet_dist.locks import acquire

MAX_SIDE = 512  # what is kept of a large photo: plenty for a digit, and it bounds each file


class CollectionFull(Exception):
    pass


class Collector:
    def __init__(self, root: Path, classes: list[str], max_images: int):
        self.root, self.classes, self.max_images = Path(root), list(classes), max_images
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(f"--collect {root}: cannot make that folder ({exc.strerror}); give a folder "
                              "this user can write") from None
        if not os.access(self.root, os.W_OK):
            raise ConfigError(f"--collect {root}: this user cannot write there; give another folder")

    def count(self) -> int:
        return sum(1 for c in self.classes if (self.root / c).is_dir()
                   for p in (self.root / c).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)

    def save(self, gray: np.ndarray, label: str) -> Path:
        """Keep `gray` (uint8, as decoded) as an example of `label`; CollectionFull past the cap."""
        if label not in self.classes:
            raise ValueError(f"label must be one of {' '.join(self.classes)}")
        image = Image.fromarray(gray)
        image.thumbnail((MAX_SIDE, MAX_SIDE), Image.Resampling.LANCZOS)
        folder = self.root / label
        with acquire(self.root / ".collect.lock", timeout=30):
            if self.count() >= self.max_images:
                raise CollectionFull(f"the collection in {self.root} is full ({self.max_images} images): "
                                     "fine-tune on it, then move it away or raise --collect-max")
            folder.mkdir(exist_ok=True)
            dest = folder / f"{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}-{uuid.uuid4().hex[:12]}.png"
            tmp = temporary_sibling(dest)
            try:
                image.save(tmp, format="PNG")
                fsync_path(tmp)
                os.link(tmp, dest)  # unlike a rename, fails rather than replace a file of that name
                fsync_path(folder)
            finally:
                tmp.unlink(missing_ok=True)
        return dest
