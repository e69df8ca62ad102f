"""Input files for predict: what to read, and reading them on every core. No torch here, so the
worker processes start before the parent imports torch and decode while it does."""

from __future__ import annotations

import glob
import multiprocessing
import os
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from lenet_dist.inference.preprocess import PreprocessError, Row, load_image, read_gray, to_row

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".pgm", ".ppm", ".pbm"}
Loaded = tuple[np.ndarray | Row | None, str | None]  # the 28x28 image (a Row for a number), or why there is none


def collect_inputs(inputs: list[str], recursive: bool) -> tuple[list[Path], list[tuple[str, str]]]:
    """Files, directories (their image files; subfolders too when recursive) and glob patterns.
    Returns the files to read and (input, error) for each input that yields none."""
    files: list[Path] = []
    errors: list[tuple[str, str]] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            pattern = "**/*" if recursive else "*"
            found = sorted(p for p in path.glob(pattern) if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
            if not found:
                errors.append((item, "directory has no image files" + ("" if recursive else
                                                                       " (add --recursive for subfolders)")))
            files.extend(found)
        elif path.exists():
            files.append(path)
        elif glob.has_magic(item):
            found = sorted(Path(p) for p in glob.glob(item, recursive=True) if Path(p).is_file())
            if not found:
                errors.append((item, "pattern matches no files"))
            files.extend(found)
        else:
            errors.append((item, "no such file or directory"))
    return files, errors


def _load_one(job: tuple[Path, str]) -> Loaded:
    path, mode = job
    try:
        if mode == "number":
            return to_row(read_gray(path)), None
        return load_image(path, mnist_like=mode == "mnist"), None
    except PreprocessError as exc:
        return None, str(exc)
    except Exception as exc:  # noqa: BLE001 - one odd file must never stop the batch
        return None, f"could not process the image ({type(exc).__name__}: {exc})"


def load_in_this_process(files: list[Path], mode: str = "digit") -> list[Loaded]:
    """As start_loading, without worker processes: for a process that must not fork (a training
    rank, with its threads and process group)."""
    return [_load_one((f, mode)) for f in files]


def start_loading(files: list[Path], mode: str = "digit") -> Callable[[], list[Loaded]]:
    """Start decoding and preprocessing (per file) on every core; return a function that waits for
    the results, in the order of `files`. mode: digit (a photo of one digit), mnist (already in
    MNIST form: no preprocessing), number (a row of digits: a Row)."""
    jobs = [(f, mode) for f in files]
    workers = min(len(os.sched_getaffinity(0)), 8)
    if workers < 2 or len(files) < 64:
        return lambda: load_in_this_process(files, mode)
    pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork"))
    pending = pool.map(_load_one, jobs, chunksize=32)

    def wait() -> list[Loaded]:
        try:
            return list(pending)
        finally:
            pool.shutdown()

    return wait
