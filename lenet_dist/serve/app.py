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
from contextlib import asynccontextmanager
from dataclasses import asdict
from functools import partial
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi_offline import FastAPIOffline
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect

from lenet_dist.checkpoint import load_model
from lenet_dist.device import pick_device
from lenet_dist.inference.predict import Prediction
from lenet_dist.inference.preprocess import PreprocessError, load_image, read_gray, to_mnist
from lenet_dist.serve.batcher import Batcher
from lenet_dist.serve.budget import BodyLimit, PixelBudget, return_large_frees_at_once
from lenet_dist.serve.collect import CollectionFull, Collector
from lenet_dist.serve.uploads import UPLOAD_DOC, BadRequest, Limits, read_uploads

log = logging.getLogger("lenet_dist.serve")

STATIC = Path(__file__).parent / "static"
def _decode(data: bytes, limits: Limits, budget: PixelBudget) -> tuple[object, str | None]:
    try:
        return load_image(data, max_pixels=limits.max_pixels, reserve=budget.reserve), None
    except PreprocessError as exc:
        return None, str(exc)
    except Exception as exc:  # noqa: BLE001 - one odd upload must never hurt the server
        return None, f"could not process the image ({type(exc).__name__})"


def _keep(data: bytes, label: str, collect: Collector, limits: Limits, budget: PixelBudget) -> Path:
    """Decoded within the limits, kept only if predict would find a digit in it."""
    gray = read_gray(data, limits.max_pixels, budget.reserve)
    to_mnist(gray)  # PreprocessError: nothing worth keeping
    return collect.save(gray, label)


def build_app(checkpoint: Path, limits: Limits | None = None, device: str = "cpu",
              collect_dir: Path | None = None, collect_max: int = 1000) -> FastAPI:
    """The app serving `checkpoint` on `device` (auto | cpu | cuda | cuda:N); with `collect_dir`,
    also POST /v1/collect: corrected drawings kept for fine-tuning, at most `collect_max`."""
    limits = limits or Limits()
    model, meta = load_model(checkpoint, as_evaluated=True)  # a bad checkpoint fails here, before the server binds
    collect = Collector(collect_dir, meta.classes, collect_max) if collect_dir is not None else None
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
                                             "test_accuracy": metrics.test_accuracy if metrics else None},
                "collect": collect is not None}

    @app.post("/v1/predict", summary="Predict the digit in each uploaded image", openapi_extra=UPLOAD_DOC,
              responses={400: {"description": "bad request"}, 413: {"description": "upload too large"},
                         422: {"description": "no upload could be read"}})
    async def predict(request: Request) -> JSONResponse:
        uploads = await read_uploads(request, limits)
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

    if collect is not None:
        @app.post("/v1/collect", status_code=201, openapi_extra=UPLOAD_DOC,
                  summary="Keep one image under its true label (form field 'label'), for lenet-dist finetune",
                  responses={400: {"description": "bad request"}, 413: {"description": "upload too large"},
                             422: {"description": "no digit in the image"},
                             507: {"description": "the collection is full"}})
        async def collect_one(request: Request) -> JSONResponse:
            fields = {"label": ""}
            uploads = await read_uploads(request, Limits(limits.max_upload_bytes, 1, limits.max_pixels), fields)
            if fields["label"] not in meta.classes:
                raise BadRequest(400, f"form field 'label' must be one of {' '.join(meta.classes)}")
            try:
                path = await asyncio.get_running_loop().run_in_executor(
                    decoders, _keep, uploads[0][1], fields["label"], collect, limits, budget)
            except PreprocessError as exc:
                raise BadRequest(422, f"{uploads[0][0]}: {exc}") from None
            except CollectionFull as exc:
                raise BadRequest(507, str(exc)) from None
            return JSONResponse({"saved": str(path), "label": fields["label"], "count": collect.count()},
                                status_code=201)

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app


def app_from_env() -> FastAPI:
    """For uvicorn's worker processes (`--workers N`): each builds its own app from the environment."""
    limits = Limits(int(os.environ["LENET_SERVE_MAX_UPLOAD_BYTES"]), int(os.environ["LENET_SERVE_MAX_FILES"]),
                    int(os.environ["LENET_SERVE_MAX_PIXELS"]))
    collect_dir = os.environ.get("LENET_SERVE_COLLECT_DIR")
    return build_app(Path(os.environ["LENET_SERVE_CHECKPOINT"]), limits, os.environ["LENET_SERVE_DEVICE"],
                     Path(collect_dir) if collect_dir else None, int(os.environ.get("LENET_SERVE_COLLECT_MAX", 0)))
