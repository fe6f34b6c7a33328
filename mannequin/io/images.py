"""Image conversions and image files shared by the stages.

Arrays are (H, W) grey or (H, W, 3) RGB, top row first; pixel (r, c) covers ``[c, c+1) × [r, r+1)``.
"""
from __future__ import annotations

import math
import os
import struct
import zlib
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from mannequin.errors import InputError, one_line

#: ITU-R BT.601 luma weights (R, G, B).
GREY_WEIGHTS = np.array([0.299, 0.587, 0.114], dtype=np.float32)
#: File extensions read as images (compared in lower case).
IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
#: zlib level of :func:`encode_png`: fast, several times quicker than PIL's default 6.
PNG_COMPRESS_LEVEL = 1


def to_grey(img: Any, name: str = "image") -> np.ndarray:
    """Grey image in [0, 1]: (H, W) or (H, W, 3|1) uint8, uint16 or float -> (H, W) float32, C-contiguous.

    Integer images are scaled by their dtype's maximum; float images are taken as already in [0, 1].
    Colour is BT.601 luma (:data:`GREY_WEIGHTS`).  Raises ValueError naming ``name`` for another
    shape, a side under 2 px, another dtype or non-finite values.
    """
    a = np.asarray(img)
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[:, :, 0]
    if not (a.ndim == 2 or (a.ndim == 3 and a.shape[2] == 3)):
        raise ValueError(f"{name} must be (H,W) or (H,W,3), got shape {a.shape}")
    if a.shape[0] < 2 or a.shape[1] < 2:
        raise ValueError(f"{name} must be at least 2x2 pixels, got shape {a.shape}")
    if a.dtype in (np.uint8, np.uint16):
        a = a.astype(np.float32) * np.float32(1.0 / np.iinfo(a.dtype).max)
    elif np.issubdtype(a.dtype, np.floating):
        a = a.astype(np.float32, copy=False)
        if not np.isfinite(a).all():
            raise ValueError(f"{name} has non-finite values")
    else:
        raise ValueError(f"{name} must be uint8, uint16 or float, got {a.dtype}")
    if a.ndim == 3:
        a = (a @ GREY_WEIGHTS).astype(np.float32)
    return np.ascontiguousarray(a)


def to_rgb(image: np.ndarray) -> np.ndarray:
    """Any (H, W), (H, W, 1), (H, W, 3) or (H, W, 4) array -> (H, W, 3) uint8 RGB.

    uint16 is scaled by 1/257, floats are taken as 0-1 when their maximum is ≤ 1 (else 0-255),
    alpha is dropped.  Raises ValueError for another shape.
    """
    a = np.asarray(image)
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[..., 0]
    if a.ndim == 2:
        a = np.repeat(a[..., None], 3, axis=2)
    if a.ndim != 3 or a.shape[2] not in (3, 4):
        raise ValueError(f"not an image array: shape {a.shape}")
    a = a[..., :3]
    if a.dtype == np.uint8:
        return np.ascontiguousarray(a)
    if a.dtype == np.bool_:
        return a.astype(np.uint8) * 255
    if a.dtype == np.uint16:
        return np.round(a.astype(np.float32) / 257.0).astype(np.uint8)
    a = a.astype(np.float64)
    if np.issubdtype(image.dtype, np.floating) and np.nanmax(a, initial=0.0) <= 1.0:
        a = a * 255.0
    return np.clip(np.round(np.nan_to_num(a)), 0, 255).astype(np.uint8)


def resize_max(rgb: np.ndarray, max_size: int) -> np.ndarray:
    """Downscale an (H, W, 3) uint8 image so its longest side is ``max_size`` px (aspect kept).

    ``max_size`` ≤ 0, or an image already small enough, returns the input unchanged (no upscaling).
    Uses PIL's Lanczos filter, which widens its kernel when shrinking (antialiased).  The other side
    is ``floor(side · max_size / longest + 0.5)``, at least 1.
    """
    from PIL import Image

    h, w = rgb.shape[:2]
    if max_size <= 0 or max(h, w) <= max_size:
        return rgb
    scale = max_size / max(h, w)
    nw = max(1, int(math.floor(w * scale + 0.5)))
    nh = max(1, int(math.floor(h * scale + 0.5)))
    if w >= h:
        nw = max_size
    else:
        nh = max_size
    out = Image.fromarray(np.ascontiguousarray(rgb)).resize((nw, nh), Image.Resampling.LANCZOS)
    return np.asarray(out)


# --------------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------------
def list_images(folder: str | os.PathLike) -> list[Path]:
    """Image files directly inside ``folder``, sorted by file name.

    Images are files with an :data:`IMAGE_EXTS` extension in any case; hidden files (names
    starting with ``.``), sub-folders and other files are ignored.  Raises :class:`InputError`
    when ``folder`` is not a folder, or holds a broken link with an image name (a frame that is
    missing, not a file to ignore).
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"{folder}: not a folder")
    found = [p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTS and not p.name.startswith(".")]
    for p in found:
        if p.is_symlink() and not p.exists():
            raise InputError(f"{p}: broken link (its target {os.readlink(p)} is missing)")
    return sorted((p for p in found if p.is_file()), key=lambda p: p.name)


def read_image_rgb(path: str | os.PathLike) -> np.ndarray:
    """Read an image file as an (H, W, 3) uint8 RGB array.

    EXIF orientation is applied; grey, palette, grey+alpha and RGBA images are converted to RGB
    (alpha dropped, not composited); 16-bit and 32-bit integer images are scaled to 0-255.
    Raises :class:`InputError` naming the file when it is missing or cannot be decoded.
    """
    from PIL import Image, ImageOps

    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: image not found")
    try:
        with Image.open(path) as im:
            im.load()
            im = ImageOps.exif_transpose(im)
            return _pil_to_rgb(im)
    except InputError:
        raise
    except Exception as exc:  # PIL raises OSError, UnidentifiedImageError, SyntaxError, ValueError...
        raise InputError(f"{path}: cannot read image ({one_line(exc)})") from None


def _pil_to_rgb(im: Any) -> np.ndarray:
    """A PIL image -> (H, W, 3) uint8 RGB (16/32-bit integer and float modes through :func:`to_rgb`)."""
    mode = im.mode
    if mode.startswith("I;16") or mode in ("I", "F"):
        a = np.asarray(im)
        if mode == "I" and a.size and a.max() <= 255:
            return to_rgb(a.astype(np.uint8))
        if mode == "F":
            return to_rgb(a.astype(np.float32))
        return to_rgb(np.clip(a, 0, 65535).astype(np.uint16))
    if mode != "RGB":
        im = im.convert("RGB")
    return np.asarray(im, dtype=np.uint8).copy()


def image_header_size(path: str | os.PathLike) -> tuple[int, int]:
    """(W, H) in px of an image as displayed (EXIF orientation 5-8 swaps the axes), from its header.

    Raises :class:`InputError` naming the file when PIL cannot identify it.
    """
    from PIL import Image

    try:
        with Image.open(path) as im:
            w, h = im.size
            try:
                orientation = im.getexif().get(0x0112, 1)
            except Exception:
                orientation = 1
    except Exception as exc:
        raise InputError(f"{path}: cannot read image ({one_line(exc)})") from None
    return (h, w) if orientation in (5, 6, 7, 8) else (w, h)


def load_image(path: Path) -> np.ndarray:
    """The image file at ``path`` as (H, W, 3) uint8 RGB (grey images repeated, alpha dropped)."""
    import imageio.v3 as iio

    img = iio.imread(path)
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=2)
    return np.ascontiguousarray(img[..., :3])


# --------------------------------------------------------------------------------------------
# Writing PNG
# --------------------------------------------------------------------------------------------
def encode_png(rgb: np.ndarray, level: int = PNG_COMPRESS_LEVEL) -> bytes:
    """Encode an (H, W, 3) uint8 RGB image as PNG bytes (8-bit, "Up" row filter, zlib ``level``).

    Deterministic and lossless; zlib releases the GIL, so threads help (:class:`PngWriter`).
    Raises ValueError for another shape.
    """
    a = np.ascontiguousarray(rgb, dtype=np.uint8)
    if a.ndim != 3 or a.shape[2] != 3:
        raise ValueError(f"expected an (H, W, 3) image, got shape {a.shape}")
    h, w = a.shape[:2]
    rows = a.reshape(h, w * 3)
    raw = np.empty((h, w * 3 + 1), np.uint8)
    raw[:, 0] = 2  # filter type Up: each byte minus the byte above (mod 256)
    raw[0, 0] = 0  # first row: no filter
    raw[0, 1:] = rows[0]
    np.subtract(rows[1:], rows[:-1], out=raw[1:, 1:])

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))

    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)  # 8-bit truecolour, no interlace
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr)
            + chunk(b"IDAT", zlib.compress(raw.tobytes(), level)) + chunk(b"IEND", b""))


def write_png(path: str | os.PathLike, rgb: np.ndarray) -> None:
    """Write an (H, W, 3) uint8 RGB image to ``path`` as :func:`encode_png` bytes (not atomic)."""
    Path(path).write_bytes(encode_png(rgb))


class PngWriter:
    """Writes ``<folder>/<name>.png`` files on a small thread pool, at most ``max_pending`` in flight.

    Use as a context manager: leaving it normally waits for every write (and raises the first
    failure); leaving it on an exception cancels the writes not yet started.
    """

    def __init__(self, folder: str | os.PathLike, workers: int = 2, max_pending: int = 8):
        self.folder = Path(folder)
        self.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="png")
        self.max_pending = max_pending
        self.futures: list[Future] = []

    def write(self, name: str, rgb: np.ndarray) -> None:
        """Queue ``rgb`` ((H, W, 3) uint8) for ``<folder>/<name>.png``; blocks while too many are in flight."""
        self.futures.append(self.pool.submit(write_png, self.folder / f"{name}.png", rgb))
        while len(self.futures) > self.max_pending:
            self.futures.pop(0).result()

    def __enter__(self) -> PngWriter:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        try:
            if exc_type is None:
                for f in self.futures:
                    f.result()
            else:
                for f in self.futures:
                    f.cancel()
        finally:
            self.pool.shutdown(wait=True)
