"""`lenet-dist serve`: the model behind an HTTP API and a page to draw digits on.

FastAPI + uvicorn (the convention; the OpenAPI page comes with it at /docs). The model is loaded
once; uploads are decoded and preprocessed in worker threads (PIL and OpenCV release the GIL), so
the event loop only routes; digits from requests that arrive together are read in one forward
pass (batcher.py). Same checkpoint format, same preprocessing and same rows as `predict --json`.
"""

from __future__ import annotations

import asyncio
import os
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException
from starlette.formparsers import MultiPartException

from lenet_dist.checkpoint import load_model
from lenet_dist.inference.predict import Prediction
from lenet_dist.inference.preprocess import PreprocessError, load_image
from lenet_dist.serve.batcher import Batcher

STATIC = Path(__file__).parent / "static"
UPLOAD_DOC = {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
    "type": "object", "required": ["file"],
    "properties": {"file": {"type": "array", "items": {"type": "string", "format": "binary"},
                            "description": "one or more images (repeat the field)"}}}}}}}


@dataclass(frozen=True)
class Limits:
    max_upload_bytes: int = 10 * 2**20  # per file
    max_files: int = 16  # per request


class BadRequest(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def _decode(data: bytes) -> tuple[object, str | None]:
    try:
        return load_image(data), None
    except PreprocessError as exc:
        return None, str(exc)
    except Exception as exc:  # noqa: BLE001 - one odd upload must never hurt the server
        return None, f"could not process the image ({type(exc).__name__})"


async def _uploads(request: Request, limits: Limits) -> list[tuple[str, bytes]]:
    """(name, bytes) of every `file` part, within the limits; BadRequest naming what is wrong."""
    declared = int(request.headers.get("content-length") or 0)
    if declared > limits.max_files * limits.max_upload_bytes + 2**20:
        raise BadRequest(413, f"request of {declared:,} bytes is over the limit of {limits.max_files} files of "
                              f"{limits.max_upload_bytes:,} bytes")
    try:
        form = await request.form(max_files=limits.max_files, max_fields=limits.max_files)
    except MultiPartException as exc:
        raise BadRequest(400, f"bad multipart request: {exc.message}") from None
    parts = form.getlist("file")
    if not parts:
        raise BadRequest(400, "no 'file' field: send one or more images as multipart field 'file'")
    uploads = []
    for part in parts:
        if isinstance(part, str):
            raise BadRequest(400, "field 'file' must be a file upload, not text")
        data = await part.read(limits.max_upload_bytes + 1)
        if len(data) > limits.max_upload_bytes:
            raise BadRequest(413, f"{part.filename}: larger than the {limits.max_upload_bytes:,}-byte limit "
                                  "(lenet-dist serve --max-upload-mb)")
        uploads.append((part.filename or "upload", data))
    return uploads


def build_app(checkpoint: Path, limits: Limits = Limits()) -> FastAPI:
    model, meta = load_model(checkpoint)  # a bad checkpoint fails here, before the server binds
    decoders = ThreadPoolExecutor(4, thread_name_prefix="lenet-decode")
    batcher = Batcher(model, meta)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        batcher.start()
        yield
        await batcher.stop()
        decoders.shutdown(wait=False)

    app = FastAPI(title="lenet-dist", version="1", lifespan=lifespan,
                  description="Read handwritten digits with a lenet-dist model checkpoint.")
    app.state.batcher = batcher

    @app.exception_handler(BadRequest)
    async def bad_request(_: Request, exc: BadRequest) -> JSONResponse:
        return JSONResponse({"error": str(exc)}, status_code=exc.status)

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
        decoded = await asyncio.gather(*(loop.run_in_executor(decoders, _decode, data) for _, data in uploads))
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
    limits = Limits(int(os.environ["LENET_SERVE_MAX_UPLOAD_BYTES"]), int(os.environ["LENET_SERVE_MAX_FILES"]))
    return build_app(Path(os.environ["LENET_SERVE_CHECKPOINT"]), limits)
