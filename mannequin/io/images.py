"""Image conversions and image files shared by the stages."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

#: ITU-R BT.601 luma weights (R, G, B).
GREY_WEIGHTS = np.array([0.299, 0.587, 0.114], dtype=np.float32)


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


def load_image(path: Path) -> np.ndarray:
    """The image file at ``path`` as (H, W, 3) uint8 RGB (grey images repeated, alpha dropped)."""
    import imageio.v3 as iio

    img = iio.imread(path)
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=2)
    return np.ascontiguousarray(img[..., :3])
