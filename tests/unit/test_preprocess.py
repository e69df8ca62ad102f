"""Preprocessing of user images, in-process on real held-out digits: a photo-like digit comes out
looking like its MNIST original; MNIST-form input passes through; bad files get a clear reason."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lenet_dist.data.datasets import MNIST
from lenet_dist.data.tensors import read_idx
from lenet_dist.inference.preprocess import PreprocessError, load_image, to_mnist


@pytest.fixture(scope="module")
def digits(mnist_dir: Path) -> np.ndarray:
    return read_idx(MNIST.raw_dir(mnist_dir) / MNIST.files["test"][0].name, 3)[:20]


def _photo(digit: np.ndarray, size: int, canvas: tuple[int, int], at: tuple[int, int]) -> np.ndarray:
    """Dark ink on light paper, scaled and off-centre."""
    ink = np.asarray(Image.fromarray(digit).resize((size, size), Image.Resampling.BICUBIC), dtype=np.float32) / 255
    page = np.full(canvas, 235.0, dtype=np.float32)
    y, x = at
    page[y:y + size, x:x + size] -= 200 * ink
    return np.clip(page, 0, 255).astype(np.uint8)


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.ravel().astype(np.float64), b.ravel().astype(np.float64)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def test_a_photo_like_digit_comes_out_like_its_mnist_original(digits: np.ndarray):
    for digit in digits:
        out = to_mnist(_photo(digit, 120, (300, 260), (150, 20)))
        assert out.shape == (28, 28) and out.dtype == np.float32 and out.min() >= 0 and out.max() <= 1
        assert _cosine(out, digit / 255.0) > 0.75


def test_the_digit_is_centred_by_its_centre_of_mass(digits: np.ndarray):
    out = to_mnist(_photo(digits[0], 90, (200, 400), (5, 300)))
    ys, xs = np.indices(out.shape)
    assert abs((ys * out).sum() / out.sum() - 14) < 1 and abs((xs * out).sum() / out.sum() - 14) < 1


def test_a_blank_page_is_an_error():
    with pytest.raises(PreprocessError, match="no ink"):
        to_mnist(np.full((100, 100), 240, dtype=np.uint8))


def test_mnist_form_input_passes_through_unchanged(digits: np.ndarray, tmp_path: Path):
    Image.fromarray(digits[3]).save(tmp_path / "d.png")
    assert np.array_equal(load_image(tmp_path / "d.png", mnist_like=True), digits[3] / np.float32(255))


@pytest.mark.parametrize(("content", "reason"), [
    (b"", "empty file"),
    (b"this is not an image", "not an image"),
    (b"\x89PNG\r\n\x1a\n" + b"\x00" * 40, "not an image"),
])
def test_bad_files_get_a_reason(tmp_path: Path, content: bytes, reason: str):
    f = tmp_path / "x.png"
    f.write_bytes(content)
    with pytest.raises(PreprocessError, match=reason):
        load_image(f)


def test_a_truncated_png_is_an_error(digits: np.ndarray, tmp_path: Path):
    Image.fromarray(np.kron(digits[0], np.ones((8, 8), dtype=np.uint8))).save(tmp_path / "full.png")
    data = (tmp_path / "full.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(PreprocessError, match="truncated"):
        load_image(tmp_path / "cut.png")


def test_an_mnist_form_image_is_used_as_it_is(digits: np.ndarray):
    for digit in digits:
        assert np.array_equal(to_mnist(digit), digit / np.float32(255)), "held-out predictions stay identical"


def _photo_of(digit: np.ndarray, seed: int) -> np.ndarray:
    from lenet_dist.data.paper import digit_photo

    return np.asarray(digit_photo(digit, np.random.default_rng(seed)).convert("L"))


def test_a_digit_between_ruled_lines_is_found_without_the_lines(digits: np.ndarray):
    for i, digit in enumerate(digits):
        out = to_mnist(_photo_of(digit, i))
        assert _cosine(out, digit / 255.0) > 0.7, i  # a line left in, or a shrunken digit, scores far lower


def test_blank_and_lines_only_pages_are_errors():
    from lenet_dist.data.paper import empty_page

    with pytest.raises(PreprocessError, match="no (ink|digit) found"):
        to_mnist(np.full((120, 160), 230, dtype=np.uint8))
    for seed in range(12):  # seed 9: three blurred lines, each the full width and 12% of the height
        with pytest.raises(PreprocessError, match="no (ink|digit) found"):
            to_mnist(np.asarray(empty_page(np.random.default_rng(seed)).convert("L")))


def test_a_row_of_digits_is_read_left_to_right(digits: np.ndarray):
    from lenet_dist.data.paper import number_photo
    from lenet_dist.inference.preprocess import to_digits

    row = list(digits[:5])
    found = to_digits(np.asarray(number_photo(row, np.random.default_rng(3)).convert("L")))
    assert len(found) == 5
    assert all(_cosine(f, d / 255.0) > 0.5 for f, d in zip(found, row, strict=True))


def test_touching_digits_are_cut_apart_where_they_meet(digits: np.ndarray):
    from lenet_dist.inference.preprocess import to_digits

    glyphs = [np.asarray(Image.fromarray(d).resize((84, 84)), dtype=np.float32) for d in digits[:4]]
    page = np.full((120, 300), 235.0, dtype=np.float32)
    for k, g in enumerate(glyphs):  # 84-px boxes 50 px apart: the ink of neighbours runs together
        box = page[18:102, 10 + 50 * k:94 + 50 * k]
        box -= np.minimum(200 * g / 255, box)
    found = to_digits(np.clip(page, 0, 255).astype(np.uint8))
    assert len(found) == 4
    assert all(_cosine(f, d / 255.0) > 0.5 for f, d in zip(found, digits[:4], strict=True))


def test_a_scribble_as_wide_as_many_digits_is_an_error_not_a_guess():
    from lenet_dist.inference.preprocess import to_digits

    page = np.full((80, 900), 235.0, dtype=np.float32)
    page[30:50, 20:880] = 30  # one bar, eleven digits wide
    with pytest.raises(PreprocessError, match="as wide as"):
        to_digits(page.astype(np.uint8))


def test_a_faint_stroke_written_along_a_ruled_line_is_kept():
    from lenet_dist.inference.ink import find_ink

    page = np.full((120, 200), 230.0, dtype=np.float32)
    page[58:61, :] -= 40  # a ruled line across the page
    page[30:90, 95:99] -= 35  # a faint pencil stroke crossing it (a 1)
    page[58:61, 99:140] -= 35  # and one along it, on top of the line: the bar of a 7 or a 5
    ink = find_ink(np.clip(page, 0, 255).astype(np.uint8))
    row = ink.strength[int(59 * ink.strength.shape[0] / 120)]
    scale = ink.strength.shape[1] / 200
    assert row[int(120 * scale)] > 0.2, "the stroke on the line stays"
    assert row[int(20 * scale)] < 0.05 and row[int(180 * scale)] < 0.05, "the line itself goes"


def test_a_wide_digit_in_a_row_is_a_digit_not_two_touching(digits: np.ndarray):
    from lenet_dist.inference.preprocess import to_digits

    page = np.full((110, 330), 235.0, dtype=np.float32)
    for k, (d, width) in enumerate(((digits[0], 50), (digits[1], 100), (digits[2], 50))):  # the middle one flat
        g = np.asarray(Image.fromarray(d).resize((width, 70)), dtype=np.float32) / 255
        page[20:90, 10 + 105 * k:10 + 105 * k + width] -= 200 * g
    assert len(to_digits(np.clip(page, 0, 255).astype(np.uint8))) == 3


def _rotated(page: np.ndarray, degrees: float, surround: int) -> np.ndarray:
    return np.array(Image.fromarray(page).rotate(degrees, resample=Image.Resampling.BICUBIC, fillcolor=surround))


def test_a_small_digit_on_a_whole_ruled_page_is_read_from_the_full_resolution_photo(digits: np.ndarray):
    """A phone photo of a page (1800x1500) with one digit 110 px tall: 16 px in the 256 px working
    image, too few to read; the digit is found there and cut from the photo itself."""
    for i, digit in enumerate(digits[:8]):
        page = _photo(digit, 110, (1800, 1500), (300 + 97 * i, 200 + 131 * i))
        page[np.arange(1800) % 64 < 3] = 205  # ruled lines, the full width of the photo
        out = to_mnist(_rotated(page, 3.0, 235))
        assert _cosine(out, digit / 255.0) > 0.75, i


def test_the_pages_edge_against_a_dark_table_is_not_taken_for_the_digit(digits: np.ndarray):
    """A tilted page with the table showing past its edges: those edges are long, straight, run off
    the photo, and are often bigger than the digit (written upright here, to compare)."""
    for i, digit in enumerate(digits[:8]):
        page = _rotated(np.full((300, 260), 235, np.uint8), 8.0 if i % 2 else -8.0, 50)[:, 15:]
        ink = np.asarray(Image.fromarray(digit).resize((70, 70), Image.Resampling.BICUBIC), np.float32) / 255
        y, x = 60 + 11 * i, 40 + 9 * i
        page[y:y + 70, x:x + 70] = np.clip(page[y:y + 70, x:x + 70] - 200 * ink, 0, 255).astype(np.uint8)
        assert _cosine(to_mnist(page), digit / 255.0) > 0.8, i


def test_light_ink_is_found_whatever_share_of_the_photo_it_covers(digits: np.ndarray):
    """Chalk on a board, a light digit on black: also when the digit is a sliver of a large photo."""
    for size, canvas in ((120, (300, 260)), (60, (900, 800))):
        photo = 255 - _photo(digits[1], size, canvas, (canvas[0] // 3, canvas[1] // 2))
        assert _cosine(to_mnist(photo), digits[1] / 255.0) > 0.75, size


def test_a_row_on_a_page_lying_on_a_dark_table_is_read_without_the_pages_edges(digits: np.ndarray):
    """What line removal leaves of the page's edges and corners lies above and below the row, and one
    such piece spanning three digits' columns would have merged them into one."""
    from lenet_dist.inference.preprocess import to_digits

    for tilt in (-4.0, 3.0, 6.0):
        row = digits[4:9]
        page = np.full((400, 560), 240, np.uint8)
        for i, digit in enumerate(row):
            ink = np.asarray(Image.fromarray(digit).resize((48, 48), Image.Resampling.BICUBIC), np.float32) / 255
            y, x = 230, 30 + 50 * i
            page[y:y + 48, x:x + 48] = np.clip(page[y:y + 48, x:x + 48] - 200 * ink, 0, 255).astype(np.uint8)
        photo = np.asarray(Image.fromarray(page).rotate(tilt, resample=Image.Resampling.BICUBIC, expand=True,
                                                        fillcolor=50))
        out = to_digits(photo)
        assert len(out) == len(row), tilt
        assert all(_cosine(o, d / 255.0) > 0.7 for o, d in zip(out, row, strict=True)), tilt


def _row(digits: list[np.ndarray], seed: int = 5, **kwargs) -> list[np.ndarray]:
    from lenet_dist.data.paper import number_photo
    from lenet_dist.inference.preprocess import to_digits

    return to_digits(np.asarray(number_photo(digits, np.random.default_rng(seed), **kwargs).convert("L")))


def test_a_digit_much_smaller_or_lighter_than_its_neighbours_is_read_not_dropped(digits: np.ndarray):
    row = [digits[0], digits[3], digits[4]]  # 7 0 4, the 0 half as tall: "704" was read "74"
    small = _row(row, gaps=[1.0, 1.0], sizes=[1.0, 0.5, 1.0])
    assert len(small) == 3 and _cosine(small[1], digits[3] / 255.0) > 0.5
    row = [digits[1], digits[8], digits[3]]  # 2 5 0, the 5 in a pen 40% as dark: "250" was read "20"
    light = _row(row, seed=1, gaps=[1.0, 1.0], strengths=[1.0, 0.4, 1.0])
    assert len(light) == 3 and _cosine(light[1], digits[8] / 255.0) > 0.3  # faint and grainy, but there


def test_a_digit_drawn_in_two_strokes_that_do_not_touch_is_one_digit(mnist_dir: Path, digits: np.ndarray):
    import cv2

    four = read_idx(MNIST.raw_dir(mnist_dir) / MNIST.files["test"][0].name, 3)[49].copy()
    four[:, 9:12] = 0  # a gap where its corner meets its upright: "5247" was read "52417"
    assert cv2.connectedComponents((four > 60).astype(np.uint8))[0] == 3, "two strokes"
    found = _row([digits[0], four, digits[2]], seed=1, gaps=[1.0, 1.0])
    assert len(found) == 3
