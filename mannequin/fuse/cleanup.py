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


def moving_mask(n_agree: Any, n_moved: Any, *, min_views: int = 2, min_moved: int = 2, window_px: int = 15,
                min_share: float = 0.5) -> np.ndarray:
    """Pixels of people who moved in a frozen scene: confident in their own frame, contradicted by others.

    A pixel is a *candidate* when at least ``min_views`` sources agree with its depth (it would get
    a label), and *evidence* when, besides, at least ``min_moved`` sources contradict it far beyond
    the clip's depth noise (``n_moved`` of :class:`~mannequin.fuse.consistency.Votes`).  A pixel no
    view measures well has no agreeing sources and is never marked.  A mover is a region, a stereo
    failure is scattered: the mask is every candidate in whose ``window_px`` square at least
    ``min_share`` of the candidates are evidence.

    Args:
        n_agree, n_moved: (H, W) integer counts of :class:`~mannequin.fuse.consistency.Votes`.
        min_views: agreeing sources that make a candidate (>= 1).
        min_moved: contradicting sources that make evidence (>= 1).
        window_px: side of the square, px (odd, >= 1).
        min_share: share of evidence among the square's candidates, in (0, 1].

    Returns:
        (H, W) bool, True = moved.
    """
    from scipy.ndimage import uniform_filter

    a = np.asarray(n_agree)
    m = np.asarray(n_moved)
    if a.shape != m.shape or a.ndim != 2:
        raise ValueError(f"n_agree {a.shape} and n_moved {m.shape} must be the same (H, W) shape")
    if min_views < 1 or min_moved < 1:
        raise ValueError(f"min_views and min_moved must be >= 1, got {min_views} and {min_moved}")
    if int(window_px) != window_px or window_px < 1 or window_px % 2 == 0:
        raise ValueError(f"window_px must be an odd integer >= 1, got {window_px}")
    if not 0 < min_share <= 1:
        raise ValueError(f"min_share must lie in (0, 1], got {min_share}")
    cand = a >= min_views
    evidence = cand & (m >= min_moved)
    if not evidence.any():
        return evidence
    share = (uniform_filter(evidence.astype(np.float32), int(window_px), mode="constant")
             / np.maximum(uniform_filter(cand.astype(np.float32), int(window_px), mode="constant"), 1e-6))
    return cand & (share >= min_share - 1e-6)


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
