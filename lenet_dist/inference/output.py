"""Prediction rows as JSON, CSV or a table."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import asdict

from rich.console import Console
from rich.table import Table

from lenet_dist.inference.predict import NumberPrediction, Prediction

Row = Prediction | NumberPrediction


def emit(rows: list[Row], fmt: str) -> None:
    """Print the rows to stdout as json, csv or a table."""
    if fmt == "json":
        print(as_json(rows))
    elif fmt == "csv":
        print(as_csv(rows), end="")
    else:
        print_table(rows)


def as_json(rows: list[Row]) -> str:
    return json.dumps([asdict(r) for r in rows], indent=2)


def _flag(value: bool | None) -> str:
    return "" if value is None else str(value).lower()


def as_csv(rows: list[Row]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf)
    numbers = bool(rows) and isinstance(rows[0], NumberPrediction)
    w.writerow(["file", "number" if numbers else "label", "confidence", "digit_confidences" if numbers else "top3",
                "uncertain", "error"])
    for r in rows:
        if isinstance(r, NumberPrediction):
            value, detail = r.number or "", " ".join(f"{d.label}:{d.confidence:.4f}" for d in r.digits)
        else:
            value, detail = r.label or "", " ".join(f"{lbl}:{p:.4f}" for lbl, p in r.top3)
        w.writerow([r.file, value, "" if r.confidence is None else f"{r.confidence:.6f}", detail,
                    _flag(r.uncertain), r.error or ""])
    return buf.getvalue()


def print_table(rows: list[Row]) -> None:
    numbers = bool(rows) and isinstance(rows[0], NumberPrediction)
    table = Table(title=f"{len(rows)} inputs")
    for col in ("file", "number" if numbers else "label", "confidence", "digits" if numbers else "top 3", ""):
        table.add_column(col, justify="right" if col == "confidence" else "left")
    for r in rows:
        if r.error:
            table.add_row(r.file, "—", "—", f"error: {r.error}", "")
            continue
        if isinstance(r, NumberPrediction):
            value, detail = r.number, "  ".join(f"{d.label} {d.confidence:.2f}" for d in r.digits)
        else:
            value, detail = r.label, "  ".join(f"{lbl} {p:.2f}" for lbl, p in r.top3)
        table.add_row(r.file, value, f"{r.confidence:.4f}", detail, "uncertain" if r.uncertain else "")
    Console().print(table)
