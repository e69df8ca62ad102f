"""The closed sets of names a user can pick from. The config's `Literal` types and the CLI's
`Enum` choices are both made from these, so a new dataset or mode is added in one place."""

from __future__ import annotations

from enum import Enum
from typing import Literal, get_args

DatasetName = Literal["mnist", "fashion-mnist"]
TrackingMode = Literal["auto", "online", "offline", "disabled"]


def enum_of(name: str, literal: object) -> type[Enum]:
    """A str Enum whose values are the literal's (what Typer shows and parses as choices)."""
    return Enum(name, {value.replace("-", "_"): value for value in get_args(literal)}, type=str)
