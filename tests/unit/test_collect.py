"""serve --collect: corrections are saved under their label in finetune's layout, atomically, never
replacing a file, within a cap; off unless asked for; bad requests are a 4xx naming the problem."""

import io
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from lenet_dist.data.folder import load_folder
from lenet_dist.serve.app import build_app
from lenet_dist.serve.collect import MAX_SIDE, CollectionFull, Collector


def _png(image: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture
def digit(digit_png: bytes) -> bytes:
    return digit_png


@pytest.fixture(scope="module")
def digit_png(mnist_dir: Path) -> bytes:
    from lenet_dist.data.datasets import MNIST
    from lenet_dist.data.tensors import read_idx

    seven = read_idx(MNIST.raw_dir(mnist_dir) / MNIST.files["test"][0].name, 3)[0]
    return _png(255 - np.kron(seven, np.ones((25, 25), np.uint8)))  # dark on light, larger than kept


def test_collection_is_off_unless_asked_for(model_checkpoint: Path, digit: bytes):
    with TestClient(build_app(model_checkpoint)) as client:
        assert client.get("/healthz").json()["collect"] is False
        assert client.post("/v1/collect", data={"label": "7"}, files=[("file", ("a.png", digit))]).status_code == 404


def test_a_correction_is_saved_under_its_label_where_finetune_reads_it(model_checkpoint: Path, digit: bytes,
                                                                       tmp_path: Path):
    folder = tmp_path / "mine"
    with TestClient(build_app(model_checkpoint, collect_dir=folder, collect_max=10)) as client:
        assert client.get("/healthz").json()["collect"] is True
        saved = [client.post("/v1/collect", data={"label": "7"}, files=[("file", ("pad.png", digit))]).json()
                 for _ in range(3)]
    files = sorted((folder / "7").iterdir())
    assert [s["count"] for s in saved] == [1, 2, 3] and len({s["saved"] for s in saved}) == 3
    assert [f.name for f in files] == sorted(Path(s["saved"]).name for s in saved), "nothing else, no temp file"
    assert max(Image.open(files[0]).size) == MAX_SIDE, "a large image is kept at most MAX_SIDE a side"
    split = load_folder(folder, tuple(str(d) for d in range(10)))
    assert split.labels.tolist() == [7, 7, 7] and split.images.shape == (3, 1, 28, 28)


@pytest.mark.parametrize(("data", "image", "status", "words"), [
    ({}, "digit", 400, "'label' must be one of 0 1 2"),
    ({"label": "seven"}, "digit", 400, "'label' must be one of"),
    ({"label": "3"}, "blank", 422, "no ink found"),
    ({"label": "3"}, "text", 422, "not an image"),
])
def test_a_bad_correction_is_a_4xx_and_nothing_is_saved(model_checkpoint: Path, digit: bytes, tmp_path: Path,
                                                       data, image, status, words):
    body = {"digit": digit, "blank": _png(np.full((50, 50), 255, np.uint8)), "text": b"hello"}[image]
    with TestClient(build_app(model_checkpoint, collect_dir=tmp_path / "c")) as client:
        r = client.post("/v1/collect", data=data, files=[("file", ("x.png", body))])
    assert r.status_code == status and words in r.json()["error"]
    assert not any(p.is_file() for p in (tmp_path / "c").rglob("*") if not p.name.startswith("."))


def test_the_collection_stops_at_its_cap(tmp_path: Path):
    collector = Collector(tmp_path, [str(d) for d in range(10)], max_images=2)
    gray = np.full((40, 30), 200, np.uint8)
    first, second = collector.save(gray, "1"), collector.save(gray, "2")
    with pytest.raises(CollectionFull, match="full \\(2 images\\)"):
        collector.save(gray, "3")
    assert first.read_bytes() == second.read_bytes() and collector.count() == 2
