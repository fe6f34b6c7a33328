"""Clean-up of depth maps and the masks of pixels to drop (pure: arrays in, arrays out, no I/O).

Depth maps are (H, W) camera z in pose units; 0 (or negative, NaN, inf) means "no depth".
Counts and :class:`~mannequin.fuse.consistency.Votes` come from
:func:`mannequin.fuse.consistency.consistency_votes`.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from mannequin.fuse.kernels import check_depth, erode_edges_kernel, speckle_labels

if TYPE_CHECKING:
    from mannequin.fuse.consistency import Votes


def dynamic_mask(n_agree: Any, n_disagree: Any, n_checked: Any = None, *, min_disagree_frac: float = 0.7,
                 min_checked: int = 3) -> np.ndarray:
    """Pixels that consistently disagree with the other views (moving people in a frozen scene).

    Args:
        n_agree, n_disagree: (H, W) integer counts from :func:`filter_depth` (or :class:`Votes`;
            pass ``votes.n_behind + votes.n_other`` as n_disagree to ignore plain occlusions).
        n_checked: (H, W) number of sources that could check the pixel; default
            ``n_agree + n_disagree``.  A larger count (e.g. also sources without depth there)
            makes the mask more conservative.
        min_disagree_frac: share of the checked sources that must disagree.
        min_checked: pixels checked by fewer sources are never marked.

    Returns:
        (H, W) bool: ``n_checked >= min_checked and n_disagree >= min_disagree_frac * n_checked``.
    """
    a = np.asarray(n_agree)
    d = np.asarray(n_disagree)
    if a.shape != d.shape or a.ndim != 2:
        raise ValueError(f"n_agree {a.shape} and n_disagree {d.shape} must be the same (H, W) shape")
    c = a + d if n_checked is None else np.asarray(n_checked)
    if c.shape != a.shape:
        raise ValueError(f"n_checked {c.shape} must have the shape of n_agree {a.shape}")
    if not 0 <= min_disagree_frac <= 1:
        raise ValueError(f"min_disagree_frac must lie in [0, 1], got {min_disagree_frac}")
    min_checked = max(int(min_checked), 1)
    return (c >= min_checked) & (d >= min_disagree_frac * c) & (d > 0)


def remove_speckles(depth: Any, max_size_px: int, max_diff_rel: float = 0.02) -> np.ndarray:
    """Remove small isolated blobs of depth (stereo speckles).

    Valid pixels (> 0, finite) are grouped into 4-connected components where two neighbours join
    only when ``|d1 - d2| < max_diff_rel * min(d1, d2)``, so a blob floating in front of a larger
    surface is its own component even when it touches it.  Components with fewer than
    ``max_size_px`` pixels are set to 0.

    Args:
        depth: (H, W) depth map (pose units; 0 / NaN / inf = none).
        max_size_px: blobs smaller than this many pixels are removed.
        max_diff_rel: relative depth jump that separates neighbours.

    Returns:
        (H, W) copy of ``depth`` (same dtype; invalid entries become 0) with speckles set to 0.
    """
    a = np.asarray(depth)
    dr = check_depth(a, "depth")
    if max_diff_rel < 0 or not np.isfinite(max_diff_rel):
        raise ValueError(f"max_diff_rel must be >= 0, got {max_diff_rel}")
    h, w = dr.shape
    labels = np.zeros((h, w), dtype=np.int32)
    sizes = np.zeros(h * w + 1, dtype=np.int64)
    n = speckle_labels(dr, float(max_diff_rel), labels, sizes)
    small = sizes[: n + 1] < max_size_px
    small[0] = True                          # label 0: no depth
    out_dtype = np.dtype(a.dtype if np.issubdtype(a.dtype, np.floating) else np.float32)
    src = a.astype(out_dtype, copy=False)    # keep the caller's values (labels used float32)
    return np.where(small[labels] | ~(np.isfinite(src) & (src > 0)), out_dtype.type(0), src)


def erode_depth_edges(depth: Any, radius_px: int, max_rel: float = 0.05) -> np.ndarray:
    """Remove the near side of depth discontinuities (foreground fattening of window matching).

    A valid pixel is set to 0 when a pixel of its ``(2 radius_px + 1)``-square neighbourhood is
    farther by more than ``max_rel`` (relative).  Window-based stereo paints the foreground's depth
    a few pixels beyond its silhouette, and these rims are consistent across views, so the
    geometric check alone keeps them; this drops them (and ``radius_px`` pixels of true foreground).

    Args:
        depth: (H, W) depth map (0 / NaN / inf = none).  radius_px: >= 0 (0 returns a copy).
        max_rel: relative depth jump that counts as a discontinuity (> 0).

    Returns:
        (H, W) float32 copy of ``depth`` with the rims set to 0 (invalid entries 0).
    """
    d = check_depth(depth, "depth")
    if int(radius_px) != radius_px or radius_px < 0:
        raise ValueError(f"radius_px must be a non-negative integer, got {radius_px}")
    if not (np.isfinite(max_rel) and max_rel > 0):
        raise ValueError(f"max_rel must be > 0, got {max_rel}")
    if radius_px == 0:
        return np.where(d > 0, d, np.float32(0)).astype(np.float32)
    out = np.empty_like(d)
    erode_edges_kernel(d, int(radius_px), float(max_rel), out)
    return out


def free_space_mask(votes: Votes, max_frac: float = 0.5) -> np.ndarray:
    """Pixels with too many free-space violations: ``n_behind > max_frac * n_agree``.

    A source that sees *through* the reference point (``n_behind``) is direct evidence against
    it; a few are tolerated when enough sources agree.  Returns (H, W) bool (True = reject).
    """
    if not (np.isfinite(max_frac) and max_frac >= 0):
        raise ValueError(f"max_frac must be >= 0, got {max_frac}")
    return votes.n_behind > max_frac * votes.n_agree
