"""What a request may send, and reading its uploads within that: the body is counted as it arrives,
each file part as it streams, and a request past a limit is refused at that point, unread."""

from __future__ import annotations

from contextlib import aclosing
from dataclasses import dataclass

from fastapi import Request
from starlette.formparsers import MultiPartException, MultiPartParser

from lenet_dist.inference.decode import MAX_PIXELS

UPLOAD_DOC = {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
    "type": "object", "required": ["file"],
    "properties": {"file": {"type": "array", "items": {"type": "string", "format": "binary"},
                            "description": "one or more images (repeat the field)"}}}}}}}


@dataclass(frozen=True)
class Limits:
    max_upload_bytes: int = 10 * 2**20  # per file
    max_files: int = 16  # per request
    max_pixels: int = MAX_PIXELS  # per image, read from its header before decoding

    @property
    def max_request_bytes(self) -> int:
        return self.max_files * self.max_upload_bytes + 2**20  # + the multipart framing


class BadRequest(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


class _FileTooLarge(MultiPartException):
    pass


class _LimitedParts(MultiPartParser):
    """starlette's multipart parser, counting each file as it streams in: a file over the limit is
    refused at that point, the rest of the body unread."""

    def __init__(self, *args, max_file_bytes: int, **kwargs):
        super().__init__(*args, **kwargs)
        self.max_file_bytes, self._file_bytes = max_file_bytes, 0

    def on_part_begin(self) -> None:
        super().on_part_begin()
        self._file_bytes = 0

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        if self._current_part.file is not None:
            self._file_bytes += end - start
            if self._file_bytes > self.max_file_bytes:
                raise _FileTooLarge(f"{self._current_part.file.filename}: larger than the "
                                    f"{self.max_file_bytes:,}-byte limit (lenet-dist serve --max-upload-mb)")
        super().on_part_data(data, start, end)


async def read_uploads(request: Request, limits: Limits,
                       fields: dict[str, str] | None = None) -> list[tuple[str, bytes]]:
    """(name, bytes) of every `file` part, within the limits; BadRequest naming what is wrong. The
    text fields named in `fields` are filled in (absent ones stay as given)."""
    declared = int(request.headers.get("content-length") or 0)
    if declared > limits.max_request_bytes:
        raise BadRequest(413, f"request of {declared:,} bytes is over the limit of {limits.max_files} files of "
                              f"{limits.max_upload_bytes:,} bytes")
    if not request.headers.get("content-type", "").lower().startswith("multipart/form-data"):
        raise BadRequest(400, "not a multipart/form-data request: send one or more images as multipart field 'file'")
    try:
        async with aclosing(request.stream()) as stream:
            form = await _LimitedParts(request.headers, stream, max_files=limits.max_files,
                                       max_fields=limits.max_files, max_file_bytes=limits.max_upload_bytes).parse()
    except _FileTooLarge as exc:
        raise BadRequest(413, exc.message) from None
    except MultiPartException as exc:
        raise BadRequest(400, f"bad multipart request: {exc.message}") from None
    for name in fields or {}:
        value = form.get(name)
        if isinstance(value, str):
            fields[name] = value
    parts = form.getlist("file")
    if not parts:
        raise BadRequest(400, "no 'file' field: send one or more images as multipart field 'file'")
    uploads = []
    for part in parts:
        if isinstance(part, str):
            raise BadRequest(400, "field 'file' must be a file upload, not text")
        uploads.append((part.filename or "upload", await part.read()))
        await part.close()
    return uploads
