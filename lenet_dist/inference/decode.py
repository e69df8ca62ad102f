"""An image file (or an upload's bytes) as upright uint8 grayscale, opened safely, with its memory
bounded by its pixels.

Opening refuses empty, truncated and animated files, pipes, and images over `max_pixels` (read
from the header, before any pixel is decoded). A very large image is reduced as it decodes, since
a digit needs 28x28: JPEGs are decoded at 1/2, 1/4 or 1/8 scale by the decoder itself (draft mode),
other formats are box-reduced right after decoding, so every later step (EXIF rotation, the
transparency composite, grayscale, preprocessing) works on at most about REDUCE_TO pixels a side.
Images up to twice REDUCE_TO a side are decoded as they are.
"""

from __future__ import annotations

import contextlib
import io
import stat
import warnings
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

MAX_PIXELS = 40_000_000  # larger images are refused: decompression-bomb guard
REDUCE_TO = 2048  # a larger image is reduced while decoding to no less than this on its longer side


class PreprocessError(Exception):
    """An input that cannot be turned into a digit; the message is for the user."""


Reserve = Callable[[int], AbstractContextManager]  # holds room for this many decoded pixels while it lasts


def read_gray(source: Path | bytes, max_pixels: int = MAX_PIXELS, reserve: Reserve | None = None) -> np.ndarray:
    """Steps 1–3 of the preprocessing: the image as uint8 grayscale, upright, transparency on white."""
    with _opened(source, max_pixels) as img:
        w, h = img.size
        with reserve(w * h) if reserve else contextlib.nullcontext():
            factor = max(w, h) // REDUCE_TO
            if factor > 1 and img.format == "JPEG":
                img.draft(img.mode, (w // factor, h // factor))
            img = _load(img)
            if factor > 1 and img.size == (w, h):
                info = img.info  # the EXIF orientation, for exif_transpose below
                img = img.reduce(factor)
                img.info = info
            return _grayscale(ImageOps.exif_transpose(img) or img)


@contextlib.contextmanager
def _opened(source: Path | bytes, max_pixels: int):
    """The image, its header read and checked, its pixels not yet decoded."""
    Image.MAX_IMAGE_PIXELS = max(max_pixels, MAX_PIXELS)
    if isinstance(source, bytes):
        size = len(source)
    else:
        st = Path(source).stat()
        if not stat.S_ISREG(st.st_mode):
            raise PreprocessError("not a regular file (a pipe, socket or device); save the image to a file first")
        size = st.st_size
    if size == 0:
        raise PreprocessError("empty file (0 bytes)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(source) if isinstance(source, bytes) else source)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise PreprocessError(f"image too large to open safely (over {max_pixels:,} pixels)") from None
    except UnidentifiedImageError:
        raise PreprocessError("not an image file PIL can read") from None
    except OSError as exc:
        raise PreprocessError(f"unreadable or truncated image ({exc})") from None
    with img:
        w, h = img.size
        if w * h > max_pixels:
            raise PreprocessError(f"image too large to open safely: {w} x {h} is {w * h:,} pixels, over the "
                                  f"limit of {max_pixels:,}; send a smaller image")
        frames = getattr(img, "n_frames", 1)
        if frames > 1:
            raise PreprocessError(f"animated image ({frames} frames); give a single still image")
        yield img


def _load(img: Image.Image) -> Image.Image:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img.load()
    except OSError as exc:
        raise PreprocessError(f"unreadable or truncated image ({exc})") from None
    return img


def _grayscale(img: Image.Image) -> np.ndarray:
    """uint8 luminance, with transparency composited onto white; 16-bit scaled, not clipped."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(img, dtype=np.float32)
        peak = 65535.0 if img.mode.startswith("I;16") or arr.max() > 255 else 255.0
        return np.clip(arr * (255.0 / peak) + 0.5, 0, 255).astype(np.uint8)
    if img.mode == "P" or img.mode == "PA":
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA") and img.getchannel("A").getextrema()[0] == 255:  # opaque (a canvas)
        return np.asarray(img.convert("L"), dtype=np.uint8)
    if img.mode in ("RGBA", "LA", "RGBa", "La"):
        img = img.convert("RGBA")
        paper = Image.new("RGBA", img.size, (255, 255, 255, 255))
        img = Image.alpha_composite(paper, img)
    return np.asarray(img.convert("L"), dtype=np.uint8)
