"""Make a user's image look like an MNIST digit before the model sees it.

MNIST digits are light ink on black, size-normalised into a 20x20 box keeping the aspect ratio,
anti-aliased, and centred by centre of mass in 28x28. A photo or scan of handwriting is dark ink
on light paper, any size, off-centre, RGB(A), JPEG, maybe rotated by EXIF. The steps, in order:

 1. open safely (truncated files and decompression bombs are refused) and apply EXIF orientation
 2. composite any transparency onto white paper
 3. convert to 8-bit grayscale (16-bit images are scaled, not clipped; CMYK and palette converted)
 4. invert when the background (the border's median) is light, so ink is bright as in MNIST
 5. stretch contrast between background and ink, and find the ink: pixels above half of that
    range; the box between the 1st and 99th percentile of ink coordinates, so specks of noise
    do not stretch it; no ink at all is an error
 6. resize the crop into 20x20 keeping its aspect ratio (anti-aliased)
 7. place it in 28x28 so that its centre of mass is at the centre
With `mnist_like=True` only steps 1–3 run, plus a plain resize to 28x28 when needed.
"""

from __future__ import annotations

import stat
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

MAX_PIXELS = 40_000_000  # larger images are refused: decompression-bomb guard
INK_FRACTION = 0.5
MIN_CONTRAST = 0.15  # ink must differ from the background by 15% of the full range
MIN_INK_PIXELS = 4


class PreprocessError(Exception):
    """An input that cannot be turned into a digit; the message is for the user."""


def _open(path: Path) -> Image.Image:
    Image.MAX_IMAGE_PIXELS = MAX_PIXELS
    try:
        st = Path(path).stat()
        if not stat.S_ISREG(st.st_mode):
            raise PreprocessError("not a regular file (a pipe, socket or device); save the image to a file first")
        if st.st_size == 0:
            raise PreprocessError("empty file (0 bytes)")
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(path)
            frames = getattr(img, "n_frames", 1)
            if frames > 1:
                raise PreprocessError(f"animated image ({frames} frames); give a single still image")
            img.load()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise PreprocessError(f"image too large to open safely (over {MAX_PIXELS:,} pixels)") from None
    except UnidentifiedImageError:
        raise PreprocessError("not an image file PIL can read") from None
    except OSError as exc:
        raise PreprocessError(f"unreadable or truncated image ({exc})") from None
    return img


def _grayscale(img: Image.Image) -> np.ndarray:
    """uint8 luminance, with transparency composited onto white."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(img, dtype=np.float64)
        peak = 65535.0 if img.mode.startswith("I;16") or arr.max() > 255 else 255.0
        return np.clip(arr / peak * 255.0 + 0.5, 0, 255).astype(np.uint8)
    if img.mode == "P" or img.mode == "PA":
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "RGBa", "La"):
        img = img.convert("RGBA")
        paper = Image.new("RGBA", img.size, (255, 255, 255, 255))
        img = Image.alpha_composite(paper, img)
    return np.asarray(img.convert("L"), dtype=np.uint8)


def _centre_of_mass(a: np.ndarray) -> tuple[float, float]:
    total = a.sum()
    ys, xs = np.indices(a.shape)
    return float((ys * a).sum() / total), float((xs * a).sum() / total)


def to_mnist(gray: np.ndarray) -> np.ndarray:
    """Steps 4–7 on a uint8 grayscale image: float32 28x28 in [0, 1], bright ink on black."""
    g = gray.astype(np.float32) / 255.0
    border = np.concatenate([g[0], g[-1], g[:, 0], g[:, -1]])
    if np.median(border) > 0.5:
        g = 1.0 - g
    background = float(np.median(np.concatenate([g[0], g[-1], g[:, 0], g[:, -1]])))
    peak = float(g.max())
    if peak - background < MIN_CONTRAST:
        raise PreprocessError("no ink found (blank or nearly uniform image)")
    g = np.clip((g - background) / (peak - background), 0.0, 1.0)
    ys, xs = np.nonzero(g > INK_FRACTION)
    if len(ys) < MIN_INK_PIXELS:
        raise PreprocessError("no ink found (blank or nearly uniform image)")
    y0, y1 = np.percentile(ys, [1, 99]).round().astype(int)
    x0, x1 = np.percentile(xs, [1, 99]).round().astype(int)
    crop = g[y0:y1 + 1, x0:x1 + 1]
    h, w = crop.shape
    scale = 20.0 / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    digit = Image.fromarray((crop * 255).astype(np.uint8)).resize(size, Image.Resampling.LANCZOS)
    d = np.asarray(digit, dtype=np.float32) / 255.0
    canvas = np.zeros((28, 28), dtype=np.float32)
    cy, cx = _centre_of_mass(d) if d.sum() > 0 else (d.shape[0] / 2, d.shape[1] / 2)
    top = int(np.clip(round(14 - cy), 0, 28 - d.shape[0]))
    left = int(np.clip(round(14 - cx), 0, 28 - d.shape[1]))
    canvas[top:top + d.shape[0], left:left + d.shape[1]] = d
    return canvas


def load_image(path: Path, mnist_like: bool = False) -> np.ndarray:
    """An image file as float32 28x28 in [0, 1] (bright ink on black), ready to normalise."""
    img = _open(path)
    img = ImageOps.exif_transpose(img) or img
    gray = _grayscale(img)
    if mnist_like:
        if gray.shape != (28, 28):
            gray = np.asarray(Image.fromarray(gray).resize((28, 28), Image.Resampling.BILINEAR))
        return gray.astype(np.float32) / 255.0
    return to_mnist(gray)
