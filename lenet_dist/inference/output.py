"""Prediction rows as JSON, CSV or a table."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import asdict

from rich.console import Console
from rich.table import Table

from lenet_dist.inference.predict import Prediction


def emit(rows: list[Prediction], fmt: str) -> None:
    """Print the rows to stdout as json, csv or a table."""
    if fmt == "json":
        print(as_json(rows))
    elif fmt == "csv":
        print(as_csv(rows), end="")
    else:
        print_table(rows)


def as_json(rows: list[Prediction]) -> str:
    return json.dumps([asdict(r) for r in rows], indent=2)


def as_csv(rows: list[Prediction]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["file", "label", "confidence", "top3", "error"])
    for r in rows:
        top3 = " ".join(f"{lbl}:{p:.4f}" for lbl, p in r.top3)
        w.writerow([r.file, r.label or "", "" if r.confidence is None else f"{r.confidence:.6f}", top3,
                    r.error or ""])
    return buf.getvalue()


def print_table(rows: list[Prediction]) -> None:
    table = Table(title=f"{len(rows)} inputs")
    for col in ("file", "label", "confidence", "top 3"):
        table.add_column(col, justify="right" if col == "confidence" else "left")
    for r in rows:
        if r.error:
            table.add_row(r.file, "—", "—", f"error: {r.error}")
        else:
            top3 = "  ".join(f"{lbl} {p:.2f}" for lbl, p in r.top3)
            table.add_row(r.file, r.label, f"{r.confidence:.4f}", top3)
    Console().print(table)
