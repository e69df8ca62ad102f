"""The base of every record, and how a record file is read back."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError


class Record(BaseModel):
    model_config = ConfigDict(extra="ignore", validate_assignment=False)


def now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


class RecordError(ValueError):
    """A record file that is missing, not JSON, or not of its record's shape."""


def read_record(path: Path, cls: type[Record]) -> Any:
    try:
        return cls.model_validate_json(Path(path).read_bytes())
    except FileNotFoundError:
        raise RecordError(f"{path} is missing") from None
    except OSError as exc:
        raise RecordError(f"cannot read {path}: {exc.strerror}") from None
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise RecordError(f"{path} is not a valid {cls.__name__} ({where or 'file'}: {first['msg']})") from None
