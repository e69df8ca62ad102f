"""`data fetch | verify | import | samples`."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from lenet_dist.cli.app import DataDirOpt, Dataset, DatasetOpt, data_app


@data_app.command("fetch")
def data_fetch(
    dataset: DatasetOpt = Dataset.mnist,
    data_dir: DataDirOpt = Path("data"),
    force: Annotated[bool, typer.Option(help="replace files that fail their sha256 check")] = False,
) -> None:
    """Fetch a dataset through the source chain and verify it."""
    from lenet_dist.data.fetch import ensure_dataset

    spec = ensure_dataset(dataset.value, data_dir, force=force)
    typer.echo(f"{spec.name}: all files present and verified in {spec.raw_dir(data_dir)}")


@data_app.command("verify")
def data_verify(
    dataset: DatasetOpt = Dataset.mnist,
    data_dir: DataDirOpt = Path("data"),
) -> None:
    """Check every raw file's sha256; exit 3 if any is missing or corrupt."""
    from lenet_dist.data.fetch import get_spec, raise_if_unusable, verify
    from lenet_dist.errors import DataError

    spec = get_spec(dataset.value)
    status = verify(spec, data_dir)
    for name, state in status.items():
        typer.echo(f"{state:8} {spec.raw_dir(data_dir) / name}")
    raise_if_unusable(spec, data_dir, status)
    bad = [n for n, s in status.items() if s != "ok"]
    if bad:
        raise DataError(f"{spec.name}: {len(bad)} file(s) missing or corrupt; run `lenet-dist data fetch "
                        f"--dataset {spec.name}` (add --force to replace corrupt files)")


@data_app.command("import")
def data_import(
    folder: Annotated[Path, typer.Argument(help="folder holding the four IDX files, raw or .gz")],
    dataset: DatasetOpt = Dataset.mnist,
    data_dir: DataDirOpt = Path("data"),
) -> None:
    """Import a dataset's IDX files from a folder, verifying each."""
    from lenet_dist.data.fetch import import_dataset

    spec = import_dataset(folder, dataset.value, data_dir)
    typer.echo(f"{spec.name}: imported and verified into {spec.raw_dir(data_dir)}")


class Style(str, Enum):
    user = "user"
    mnist = "mnist"
    paper = "paper"
    number = "number"


@data_app.command("samples")
def data_samples(
    out_dir: Annotated[Path, typer.Argument(help="folder to write the images and labels.csv into")],
    n: Annotated[int, typer.Option(min=1, max=10000, help="how many images")] = 100,
    style: Annotated[Style, typer.Option(help="user: photo-like, dark on light; mnist: as in the dataset; "
                                         "paper: phone photos of notebook paper; number: rows of 3-6 digits "
                                         "on paper")] = Style.user,
    seed: Annotated[int, typer.Option()] = 0,
    offset: Annotated[int, typer.Option(min=0, max=9999, help="first test digit to use")] = 0,
    dataset: DatasetOpt = Dataset.mnist,
    data_dir: DataDirOpt = Path("data"),
) -> None:
    """Write image files made from real held-out test digits, to try `predict` on."""
    from lenet_dist.data.fetch import ensure_dataset
    from lenet_dist.data.samples import write_samples

    spec = ensure_dataset(dataset.value, data_dir)
    labels = write_samples(spec, data_dir, out_dir, n, style.value, seed, offset=offset)
    typer.echo(f"wrote {n} {style.value}-style images and {labels}")
