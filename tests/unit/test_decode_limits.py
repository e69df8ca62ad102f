"""What one image and many at once may cost the server: pixels checked from the header, large
images reduced as they decode, and one pixel budget for all decoder threads."""

from __future__ import annotations

import io
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from lenet_dist.inference.decode import REDUCE_TO, PreprocessError, read_gray
from lenet_dist.serve.app import Limits, build_app
from lenet_dist.serve.budget import PixelBudget


def _png(w: int, h: int, mode: str = "L") -> bytes:
    gray = np.full((h, w), 255, np.uint8)
    gray[h // 3: 2 * h // 3, w // 2 - w // 40: w // 2 + w // 40] = 0  # a 1
    img = Image.fromarray(gray).convert(mode)
    buf = io.BytesIO()
    img.save(buf, format="JPEG" if mode == "RGB" else "PNG")
    return buf.getvalue()


@pytest.mark.parametrize("mode", ["L", "RGBA", "RGB"])
def test_a_large_image_is_reduced_as_it_decodes_and_a_small_one_is_not(mode: str):
    big = read_gray(_png(6 * REDUCE_TO // 2, 2 * REDUCE_TO, mode))
    assert REDUCE_TO <= max(big.shape) < 2 * REDUCE_TO, big.shape
    assert read_gray(_png(1500, 1000, mode)).shape == (1000, 1500)


def test_an_image_over_the_pixel_limit_is_refused_from_its_header():
    with pytest.raises(PreprocessError, match="over the limit of 1,000,000"):
        read_gray(_png(2000, 1000), max_pixels=1_000_000)


def test_the_api_names_the_pixel_limit(model_checkpoint: Path):
    with TestClient(build_app(model_checkpoint, Limits(max_pixels=500_000))) as client:
        r = client.post("/v1/predict", files=[("file", ("big.png", _png(1000, 800)))])
        assert r.status_code == 422 and "over the limit of 500,000" in r.json()["error"]
        assert client.post("/v1/predict", files=[("file", ("ok.png", _png(400, 300)))]).status_code == 200


def test_decoder_threads_never_hold_more_pixels_than_the_budget():
    budget, peak, lock = PixelBudget(100), [0], threading.Lock()

    def decode(pixels: int) -> None:
        with budget.reserve(pixels):
            with lock:
                peak[0] = max(peak[0], budget.in_use)
            time.sleep(0.01)

    threads = [threading.Thread(target=decode, args=(p,)) for p in (60, 60, 30, 30, 500, 10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert peak[0] <= 100 and budget.in_use == 0
