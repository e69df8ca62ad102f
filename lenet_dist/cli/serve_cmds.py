"""`serve`: the model behind an HTTP API and a draw-a-digit page."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from lenet_dist.cli.app import DeviceOpt, app

LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")


@app.command()
def serve(
    checkpoint: Annotated[Path | None, typer.Option(
        help="model checkpoint or run directory (default: the best model of the most recent run under runs/)")] = None,
    host: Annotated[str, typer.Option(help="address to listen on; 0.0.0.0 to be reachable from other "
                                      "machines")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535)] = 8000,
    max_upload_mb: Annotated[float, typer.Option(min=0.01, help="largest image accepted, per file")] = 10.0,
    max_files: Annotated[int, typer.Option(min=1, help="most images in one request")] = 16,
    max_megapixels: Annotated[float, typer.Option(min=0.001, help="largest image accepted, in decoded pixels "
                                                  "(read from its header before decoding)")] = 40.0,
    request_timeout: Annotated[float, typer.Option(min=0.1, help="seconds a client has to send a whole request; "
                                                   "slower connections are closed")] = 60.0,
    device: DeviceOpt = "auto",
    workers: Annotated[int, typer.Option(min=0, help="server processes, each with the model (default: one per "
                                         "core, at most 4; 0: that default)")] = 0,
    collect: Annotated[Path | None, typer.Option(help="let the page save a drawing the model read wrong under "
                                                 "its true label, into this folder (COLLECT/<digit>/*.png, what "
                                                 "`lenet-dist finetune` reads); off by default")] = None,
    collect_max: Annotated[int, typer.Option(min=1, help="most images kept in --collect (each at most 512 "
                                             "px a side)")] = 1000,
) -> None:
    """Serve the model: POST /v1/predict, GET /healthz, a page to draw digits on at /, the API at /docs."""
    import uvicorn

    from lenet_dist.inference.predict import default_checkpoint
    from lenet_dist.serve.app import Limits, build_app

    checkpoint = checkpoint or default_checkpoint()
    limits = Limits(max_upload_bytes=int(max_upload_mb * 2**20), max_files=max_files,
                    max_pixels=int(max_megapixels * 1e6))
    # loads and checks the model, the device and the collection folder before anything binds
    web = build_app(checkpoint, limits, device, collect, collect_max)
    workers = workers or min(4, len(os.sched_getaffinity(0)))
    typer.echo(f"lenet-dist: serving {checkpoint} on http://{host}:{port}/ with {workers} process(es) "
               "(API docs: /docs)" + (f"; corrections are saved in {collect}/" if collect else ""), err=True)
    if host not in LOCAL_HOSTS:
        typer.echo(f"lenet-dist: warning: {host} is reachable beyond this machine and the API has no "
                   "authentication; bind 127.0.0.1 and use an ssh tunnel, or put it behind a proxy that checks "
                   "who calls", err=True)
    os.environ["LENET_SERVE_REQUEST_TIMEOUT_S"] = str(request_timeout)
    http = "lenet_dist.serve.protocol:TimedRequestProtocol"
    if workers == 1:
        uvicorn.run(web, host=host, port=port, log_level="warning", access_log=False, http=http)
        return
    os.environ.update(LENET_SERVE_CHECKPOINT=str(checkpoint), LENET_SERVE_MAX_FILES=str(limits.max_files),
                      LENET_SERVE_MAX_UPLOAD_BYTES=str(limits.max_upload_bytes),
                      LENET_SERVE_MAX_PIXELS=str(limits.max_pixels), LENET_SERVE_DEVICE=device,
                      LENET_SERVE_COLLECT_DIR=str(collect or ""), LENET_SERVE_COLLECT_MAX=str(collect_max))
    uvicorn.run("lenet_dist.serve.app:app_from_env", factory=True, workers=workers, host=host, port=port,
                log_level="warning", access_log=False, http=http)
