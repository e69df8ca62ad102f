"""The HTTP API in-process (FastAPI's TestClient): rows like predict --json, every bad input a 4xx
JSON error naming the problem, and the server answering the next request."""

import io
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from lenet_dist.data.datasets import MNIST
from lenet_dist.data.tensors import read_idx
from lenet_dist.serve.app import Limits, build_app


@pytest.fixture(scope="module")
def digit_png(mnist_dir: Path) -> bytes:
    digit = read_idx(MNIST.raw_dir(mnist_dir) / MNIST.files["test"][0].name, 3)[0]  # a 7
    buf = io.BytesIO()
    Image.fromarray(255 - np.kron(digit, np.ones((4, 4), np.uint8))).save(buf, format="PNG")  # dark on light
    return buf.getvalue()


@pytest.fixture
def client(model_checkpoint: Path):
    with TestClient(build_app(model_checkpoint, Limits(max_upload_bytes=200_000, max_files=4))) as c:
        yield c


def _bomb() -> bytes:
    buf = io.BytesIO()
    Image.new("1", (9000, 9000)).save(buf, format="PNG")  # 81 megapixels in a few kB
    return buf.getvalue()


def test_health_names_the_model(client):
    health = client.get("/healthz").json()
    assert health["status"] == "ready"
    assert health["model"]["run_name"] == "r" and health["model"]["test_accuracy"] == 0.5


def test_predict_answers_rows_like_the_cli(client, digit_png: bytes):
    r = client.post("/v1/predict", files=[("file", ("a.png", digit_png)), ("file", ("b.png", digit_png))])
    assert r.status_code == 200
    rows = r.json()
    assert [row["file"] for row in rows] == ["a.png", "b.png"] and rows[0] == rows[1] | {"file": "a.png"}
    assert set(rows[0]) == {"file", "label", "confidence", "top3", "uncertain", "error"} and len(rows[0]["top3"]) == 3


@pytest.mark.parametrize(("files", "status", "words"), [
    ([("file", ("x.txt", b"not an image at all"))], 422, "not an image"),
    ([("file", ("empty.png", b""))], 422, "empty file"),
    ([("file", ("big.png", b"\x89PNG" + b"0" * 300_000))], 413, "limit"),
    ([("file", ("bomb.png", None))], 422, "too large to open safely"),
    ([("file", (f"{i}.png", b"x")) for i in range(5)], 400, "Maximum number of files is 4"),
    ([("other", ("a.png", b"x"))], 400, "no 'file' field"),
    ([("file", ("blank.png", None))], 422, "no ink found"),
])
def test_bad_input_is_a_4xx_naming_it_and_the_server_keeps_serving(client, digit_png, files, status, words):
    if files[0][1][1] is None:
        if files[0][1][0] == "bomb.png":
            files = [("file", ("bomb.png", _bomb()))]
        else:
            buf = io.BytesIO()
            Image.new("L", (100, 100), 240).save(buf, format="PNG")
            files = [("file", ("blank.png", buf.getvalue()))]
    r = client.post("/v1/predict", files=files)
    assert r.status_code == status and words in r.json()["error"], r.text
    assert client.post("/v1/predict", files=[("file", ("a.png", digit_png))]).status_code == 200


def test_a_truncated_image_is_a_4xx(client, digit_png: bytes):
    r = client.post("/v1/predict", files=[("file", ("cut.png", digit_png[: len(digit_png) // 2]))])
    assert r.status_code == 422 and "truncated" in r.json()["error"]


def test_not_multipart_is_a_4xx(client):
    r = client.post("/v1/predict", content=b"{}", headers={"content-type": "application/json"})
    assert r.status_code == 400 and "multipart" in r.json()["error"]


def test_the_page_and_the_api_docs_are_served(client):
    page = client.get("/").text
    assert 'id="pad"' in page and 'id="prediction"' in page and "cdn" not in page.lower()
    assert client.get("/static/app.js").status_code == 200
    assert "/v1/predict" in client.get("/openapi.json").json()["paths"]


def test_the_server_and_export_take_a_device_and_refuse_one_that_is_not_there(model_checkpoint: Path,
                                                                               digit_png: bytes, tmp_path: Path):
    import torch

    from lenet_dist.inference.export import export_model

    from .cli import invoke, one_error_line

    with TestClient(build_app(model_checkpoint, Limits(), device="cpu")) as cpu_client:
        assert cpu_client.post("/v1/predict", files=[("file", ("a.png", digit_png))]).status_code == 200
    assert export_model(model_checkpoint, tmp_path / "m.pt", "torchscript", "cpu") < 1e-5
    if not torch.cuda.is_available():
        for args in (["serve", "--checkpoint", model_checkpoint, "--device", "cuda"],
                     ["export", model_checkpoint, "-o", tmp_path / "g.pt", "--device", "cuda"]):
            result = invoke(*args)
            assert result.exit_code == 2 and "no CUDA GPU is visible" in one_error_line(result)
