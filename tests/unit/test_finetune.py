"""lenet-dist finetune's input: a person's digits in ImageFolder layout, read as predict reads them;
every kind of bad folder is one line and exit 2 or 5, before anything is written."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lenet_dist.data.folder import load_folder
from lenet_dist.errors import ConfigError, UnreadableInputs
from lenet_dist.inference.preprocess import load_image

from .cli import invoke, one_error_line

DIGITS = tuple(str(d) for d in range(10))


def _digit_photo(path: Path, digit: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(255 - np.kron(digit, np.ones((3, 3), np.uint8))).convert("RGB").save(path)  # dark on light
    return path


@pytest.fixture
def mnist_digits(mnist_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    from lenet_dist.data.datasets import MNIST
    from lenet_dist.data.tensors import read_idx

    raw = MNIST.raw_dir(mnist_dir)
    return read_idx(raw / MNIST.files["test"][0].name, 3)[:6], read_idx(raw / MNIST.files["test"][1].name, 1)[:6]


def test_a_folder_of_some_digits_is_read_as_predict_reads_each_image(tmp_path: Path, mnist_digits):
    images, labels = mnist_digits
    files = [_digit_photo(tmp_path / "mine" / str(y) / f"{i}.jpg", x)
             for i, (x, y) in enumerate(zip(images, labels, strict=True))]
    split = load_folder(tmp_path / "mine", DIGITS)
    by_label = sorted(zip(labels.tolist(), files, strict=True), key=lambda t: (t[0], t[1].parent.name, t[1].name))
    assert split.labels.tolist() == [y for y, _ in by_label], "folder names are the labels; absent digits are fine"
    for image, (_, f) in zip(split.images, by_label, strict=True):
        assert np.array_equal(image[0].numpy(), load_image(f))


@pytest.mark.parametrize(("layout", "error", "words"), [
    ({}, ConfigError, "has no class folders"),
    ({"seven/a.png": "digit"}, ConfigError, "seven are not classes of this model"),
    ({"7/notes.txt": "text"}, ConfigError, "no images in them"),
    ({"7/a.png": "digit", "7/b.png": "broken"}, UnreadableInputs, "1 of 2 images could not be read"),
])
def test_a_bad_folder_is_one_clear_error(tmp_path: Path, mnist_digits, layout, error, words):
    (tmp_path / "mine").mkdir()
    for name, kind in layout.items():
        path = tmp_path / "mine" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if kind == "digit":
            _digit_photo(path, mnist_digits[0][0])
        else:
            path.write_bytes(b"\x89PNG not really" if kind == "broken" else b"hello")
    with pytest.raises(error, match=words):
        load_folder(tmp_path / "mine", DIGITS)


def test_finetune_on_a_bad_folder_is_exit_2_or_5_with_one_line_and_no_run(tmp_path: Path, model_checkpoint: Path,
                                                                       mnist_dir: Path, mnist_digits):
    _digit_photo(tmp_path / "mine" / "3" / "a.png", mnist_digits[0][0])
    (tmp_path / "mine" / "3" / "b.png").write_bytes(b"\x89PNG truncated")
    args = ("finetune", "--checkpoint", model_checkpoint, "--data-dir", mnist_dir, "--output-dir", tmp_path / "runs")
    unreadable = invoke(*args, tmp_path / "mine")
    assert unreadable.exit_code == 5 and "b.png" in one_error_line(unreadable)
    missing = invoke(*args, tmp_path / "nowhere")
    assert missing.exit_code == 2 and "is not a folder" in one_error_line(missing)
    assert not (tmp_path / "runs").exists()
