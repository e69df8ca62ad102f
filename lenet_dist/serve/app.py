"""`lenet-dist serve`: the model behind an HTTP API and a page to draw digits on.

FastAPI + uvicorn (the convention); the OpenAPI page at /docs through fastapi-offline, whose
Swagger UI assets ship in the package, so it works on a node without internet. The model is
loaded once; uploads are decoded and preprocessed in worker threads (PIL and OpenCV release the
GIL), so the event loop only routes; digits from requests that arrive together are read in one
forward pass (batcher.py). Same checkpoint format, same preprocessing and same rows as `predict --json`.

What a hostile or careless client can cost is bounded: the body is counted as it arrives and
refused (413) past the request's limit, chunked or not; each image's pixels are checked from its
header before decoding (`max_pixels`), decoding reserves its pixels from one budget per worker
(so concurrent requests cannot multiply the memory), and very large images are reduced as they
decode (decode.py); a large buffer freed goes back to the OS at once (budget.py).
"""

from __future__ import annotations

import asyncio
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from contextlib import aclosing, asynccontextmanager
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi_offline import FastAPIOffline
from starlette.exceptions import HTTPException
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.requests import ClientDisconnect

from lenet_dist.checkpoint import load_model
from lenet_dist.device import pick_device
from lenet_dist.inference.decode import MAX_PIXELS
from lenet_dist.inference.predict import Prediction
from lenet_dist.inference.preprocess import PreprocessError, load_image
from lenet_dist.serve.batcher import Batcher
from lenet_dist.serve.budget import BodyLimit, PixelBudget, return_large_frees_at_once

log = logging.getLogger("lenet_dist.serve")

STATIC = Path(__file__).parent / "static"
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


def _decode(data: bytes, limits: Limits, budget: PixelBudget) -> tuple[object, str | None]:
    try:
        return load_image(data, max_pixels=limits.max_pixels, reserve=budget.reserve), None
    except PreprocessError as exc:
        return None, str(exc)
    except Exception as exc:  # noqa: BLE001 - one odd upload must never hurt the server
        return None, f"could not process the image ({type(exc).__name__})"


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


async def _uploads(request: Request, limits: Limits) -> list[tuple[str, bytes]]:
    """(name, bytes) of every `file` part, within the limits; BadRequest naming what is wrong."""
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


def build_app(checkpoint: Path, limits: Limits = Limits(), device: str = "cpu") -> FastAPI:
    """The app serving `checkpoint` on `device` (auto | cpu | cuda | cuda:N)."""
    model, meta = load_model(checkpoint)  # a bad checkpoint fails here, before the server binds
    decoders = ThreadPoolExecutor(4, thread_name_prefix="lenet-decode")
    budget = PixelBudget(limits.max_pixels)
    return_large_frees_at_once()
    batcher = Batcher(model, meta, device=pick_device(device))

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        batcher.start()
        yield
        await batcher.stop()
        decoders.shutdown(wait=False)

    app = FastAPIOffline(title="lenet-dist", version="1", lifespan=lifespan, redoc_url=None,
                         description="Read handwritten digits with a lenet-dist model checkpoint.")
    app.state.batcher, app.state.pixel_budget = batcher, budget
    app.add_middleware(BodyLimit, max_bytes=limits.max_request_bytes, error=partial(BadRequest, 413))

    @app.exception_handler(BadRequest)
    async def bad_request(_: Request, exc: BadRequest) -> JSONResponse:
        # 413: the rest of the body is not wanted; closing the connection stops the client sending it
        headers = {"connection": "close"} if exc.status == 413 else None
        return JSONResponse({"error": str(exc)}, status_code=exc.status, headers=headers)

    @app.exception_handler(ClientDisconnect)
    async def client_went_away(request: Request, _: ClientDisconnect) -> Response:
        host = f"{request.client[0]}:{request.client[1]}" if request.client else "a client"
        log.warning("serve: %s disconnected before its upload was complete", host)
        return Response(status_code=400)  # nobody is there to read it

    @app.exception_handler(HTTPException)
    async def http_error(_: Request, exc: HTTPException) -> JSONResponse:  # e.g. starlette's own form limits
        return JSONResponse({"error": str(exc.detail)}, status_code=exc.status_code)

    @app.get("/healthz", summary="Ready, and which model")
    async def healthz() -> dict:
        metrics = meta.metrics
        return {"status": "ready", "model": {"checkpoint": str(checkpoint), "run_name": meta.run_name,
                                             "dataset": meta.dataset, "classes": meta.classes,
                                             "test_accuracy": metrics.test_accuracy if metrics else None}}

    @app.post("/v1/predict", summary="Predict the digit in each uploaded image", openapi_extra=UPLOAD_DOC,
              responses={400: {"description": "bad request"}, 413: {"description": "upload too large"},
                         422: {"description": "no upload could be read"}})
    async def predict(request: Request) -> JSONResponse:
        uploads = await _uploads(request, limits)
        loop = asyncio.get_running_loop()
        decoded = await asyncio.gather(*(loop.run_in_executor(decoders, _decode, data, limits, budget)
                                         for _, data in uploads))
        good = [image for image, _ in decoded if image is not None]
        reads = iter(await batcher.read(good) if good else [])
        rows = []
        for (name, _), (image, error) in zip(uploads, decoded, strict=True):
            if image is None:
                rows.append(asdict(Prediction(name, error=error)))
            else:
                r = next(reads)
                rows.append(asdict(Prediction(name, r.label, r.confidence, r.top3, r.uncertain)))
        if not good:
            return JSONResponse({"error": f"{rows[0]['file']}: {rows[0]['error']}", "rows": rows}, status_code=422)
        return JSONResponse(rows)

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app


def app_from_env() -> FastAPI:
    """For uvicorn's worker processes (`--workers N`): each builds its own app from the environment."""
    limits = Limits(int(os.environ["LENET_SERVE_MAX_UPLOAD_BYTES"]), int(os.environ["LENET_SERVE_MAX_FILES"]),
                    int(os.environ["LENET_SERVE_MAX_PIXELS"]))
    return build_app(Path(os.environ["LENET_SERVE_CHECKPOINT"]), limits, os.environ["LENET_SERVE_DEVICE"])
