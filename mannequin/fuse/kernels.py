"""The Numba kernels of the fuse stage and the input checks that prepare their arrays.

Pure: arrays in, arrays out, no I/O.  Conventions (:mod:`mannequin.fuse.consistency`): depth maps
are (H, W) float32 camera z in pose units, ``<= 0`` = no depth (the kernels run with fastmath, so
NaN and inf are turned into 0 by :func:`check_depth` first); pixel (r, c) has its centre at
``(c + 0.5, r + 0.5)``; ``P1, p1, P2, p2`` are the affine maps of
:func:`mannequin.fuse.consistency.pair_matrices` (reference pixel -> homogeneous source pixel and back).
Loops run in parallel over rows (``prange``).
"""
from __future__ import annotations

from typing import Any

import numpy as np
from numba import njit, prange

#: Bilinear sampling of the source depth is used only when the 4 neighbours are all valid and
#: ``max <= min * (1 + BILINEAR_MAX_REL)``; across a larger jump (a depth edge) the nearest pixel
#: is used instead, so foreground and background are never blended into a phantom surface.
BILINEAR_MAX_REL = 0.1

# Per-pixel outcome of one reference/source reprojection (``status`` arrays, int8).
NO_REF = 0      #: the reference pixel has no depth
OUTSIDE = 1     #: projects behind the source camera or outside the source image
NO_SRC = 2      #: projects inside the source image, but there is no valid source depth there
SAMPLED = 3     #: a source depth was sampled and reprojected (outputs are defined)

_BIG = 1.0e9    # finite sentinel for coordinates (the kernels run with fastmath: no NaN/inf inside)



# --------------------------------------------------------------------------------------------
# input checks

def check_depth(d: Any, name: str) -> np.ndarray:
    """``d`` as a C-contiguous (H, W) float32 depth map, NaN / inf / negative -> 0; ValueError naming
    ``name`` for another shape or a non-real dtype."""
    a = np.asarray(d)
    if a.ndim != 2 or a.shape[0] < 1 or a.shape[1] < 1:
        raise ValueError(f"{name} must be a 2-D (H, W) depth map, got shape {a.shape}")
    if not np.issubdtype(a.dtype, np.number) or np.issubdtype(a.dtype, np.complexfloating):
        raise ValueError(f"{name} must be a real-valued array, got dtype {a.dtype}")
    a = np.ascontiguousarray(a, dtype=np.float32)
    # NaN / inf -> 0 here, so the fastmath kernels never see them (they treat <= 0 as "no depth")
    if not np.isfinite(a).all():
        a = np.where(np.isfinite(a) & (a > 0), a, np.float32(0))
    return a


def check_E(E: Any, name: str) -> np.ndarray:
    """``E`` (a (4, 4) or (3, 4) world-to-camera matrix, or a :class:`~mannequin.io.cameras.Pose`) as (4, 4)
    float64; ValueError naming ``name`` for another shape or non-finite values."""
    if hasattr(E, "matrix") and not isinstance(E, np.ndarray):  # mannequin.io.cameras.Pose
        E = E.matrix
    a = np.asarray(E, dtype=np.float64)
    if a.shape == (3, 4):
        a = np.vstack([a, [0.0, 0.0, 0.0, 1.0]])
    if a.shape != (4, 4):
        raise ValueError(f"{name} must be a 4x4 (or 3x4) world-to-camera matrix, got shape {a.shape}")
    if not np.isfinite(a).all():
        raise ValueError(f"{name} has non-finite values")
    return a



# --------------------------------------------------------------------------------------------
# kernels

@njit(fastmath=True, cache=True, inline="always")
def reproject_pixel(r: int, c: int, d: float, depth_src: np.ndarray, P1: np.ndarray, p1: np.ndarray, P2: np.ndarray,
                    p2: np.ndarray, interp_rel: float) -> tuple:
    """One reference pixel (row r, column c, depth d > 0) through the source map ``depth_src``.

    Returns (status, x_src, y_src, z_src, d_src, x_ref, y_ref, z_ref)."""
    u = c + 0.5
    v = r + 0.5
    qx = d * (P1[0, 0] * u + P1[0, 1] * v + P1[0, 2]) + p1[0]
    qy = d * (P1[1, 0] * u + P1[1, 1] * v + P1[1, 2]) + p1[1]
    qz = d * (P1[2, 0] * u + P1[2, 1] * v + P1[2, 2]) + p1[2]
    if qz <= 1e-12:
        return OUTSIDE, _BIG, _BIG, qz, 0.0, _BIG, _BIG, 0.0
    xs = qx / qz
    ys = qy / qz
    hs, ws = depth_src.shape
    if not (xs >= 0.0 and xs < ws and ys >= 0.0 and ys < hs):
        return OUTSIDE, xs, ys, qz, 0.0, _BIG, _BIG, 0.0
    # sample the source depth: bilinear on the 4 neighbours when all valid and no depth edge
    fx = xs - 0.5
    fy = ys - 0.5
    x0 = int(np.floor(fx))
    y0 = int(np.floor(fy))
    ds = 0.0
    if x0 >= 0 and y0 >= 0 and x0 + 1 < ws and y0 + 1 < hs:
        d00 = depth_src[y0, x0]
        d01 = depth_src[y0, x0 + 1]
        d10 = depth_src[y0 + 1, x0]
        d11 = depth_src[y0 + 1, x0 + 1]
        lo = min(min(d00, d01), min(d10, d11))
        hi = max(max(d00, d01), max(d10, d11))
        if lo > 0.0 and hi <= lo * (1.0 + interp_rel):
            ax = fx - x0
            ay = fy - y0
            # interpolate inverse depth: it is affine in pixel coordinates on a plane
            ds = 1.0 / ((1.0 - ay) * ((1.0 - ax) / d00 + ax / d01)
                        + ay * ((1.0 - ax) / d10 + ax / d11))
    if ds <= 0.0:
        ds = depth_src[int(ys), int(xs)]      # nearest pixel (xs, ys >= 0: int() is floor)
        if ds <= 0.0:
            return NO_SRC, xs, ys, qz, 0.0, _BIG, _BIG, 0.0
    Yx = ds * (P2[0, 0] * xs + P2[0, 1] * ys + P2[0, 2]) + p2[0]
    Yy = ds * (P2[1, 0] * xs + P2[1, 1] * ys + P2[1, 2]) + p2[1]
    Yz = ds * (P2[2, 0] * xs + P2[2, 1] * ys + P2[2, 2]) + p2[2]
    if Yz <= 1e-12:                           # the source point lies behind the reference camera
        return SAMPLED, xs, ys, qz, ds, _BIG, _BIG, Yz
    return SAMPLED, xs, ys, qz, ds, Yx / Yz, Yy / Yz, Yz


@njit(parallel=True, fastmath=True, cache=True)
def reproject_kernel(depth_ref: np.ndarray, depth_src: np.ndarray, P1: np.ndarray, p1: np.ndarray, P2: np.ndarray,
                     p2: np.ndarray, interp_rel: float, status: np.ndarray, x_src: np.ndarray, y_src: np.ndarray,
                     z_src: np.ndarray, d_src: np.ndarray, x_ref: np.ndarray, y_ref: np.ndarray,
                     z_ref: np.ndarray) -> None:
    """:func:`reproject_pixel` for every reference pixel: fills ``status`` (H, W) int8 (:data:`NO_REF`,
    :data:`OUTSIDE`, :data:`NO_SRC`, :data:`SAMPLED`) and the seven (H, W) float64 outputs (source pixel
    x, y and z of the reference point, sampled source depth, reprojected reference x, y and z)."""
    h, w = depth_ref.shape
    for r in prange(h):
        for c in range(w):
            d = depth_ref[r, c]
            if d <= 0.0:
                status[r, c] = NO_REF
                continue
            st, xs, ys, zs, ds, xr, yr, zr = reproject_pixel(r, c, d, depth_src, P1, p1, P2, p2,
                                                              interp_rel)
            status[r, c] = st
            x_src[r, c] = xs
            y_src[r, c] = ys
            z_src[r, c] = zs
            d_src[r, c] = ds
            x_ref[r, c] = xr
            y_ref[r, c] = yr
            z_ref[r, c] = zr


@njit(parallel=True, fastmath=True, cache=True)
def vote_kernel(depth_ref: np.ndarray, depth_src: np.ndarray, P1: np.ndarray, p1: np.ndarray, P2: np.ndarray,
                p2: np.ndarray, interp_rel: float, max_rel: float, max_px: float, near_rel: float,
                motion_rel: float, n_agree: np.ndarray, n_behind: np.ndarray, n_front: np.ndarray,
                n_other: np.ndarray, n_near: np.ndarray, n_no_src: np.ndarray, n_outside: np.ndarray,
                n_moved: np.ndarray, depth_sum: np.ndarray) -> None:
    """Check every reference pixel against one source and add one to one of its counters.

    The (H, W) int32 counters are those of :class:`mannequin.fuse.consistency.Votes`; ``depth_sum``
    (H, W) float64 gets the reprojected depth of agreeing pixels.  ``max_rel``: relative depth
    tolerance, ``max_px``: reprojection tolerance (px), ``near_rel``: the noise band (>= max_rel).
    ``n_moved`` counts the sources that contradict the pixel by more than ``motion_rel`` (relative,
    > 0; 0 = not counted): the source point Y (the source's depth where the pixel projects, in the
    reference camera at depth z_Y) lies behind the pixel's depth d, ``z_Y > d (1 + motion_rel)``,
    or in front of it, ``z_Y < d (1 - motion_rel)``, where the reference itself sees through Y (its
    depth at Y's pixel exceeds ``z_Y (1 + motion_rel)``), so Y was not there at the reference's time.
    """
    h, w = depth_ref.shape
    max_px2 = max_px * max_px
    for r in prange(h):
        for c in range(w):
            d = depth_ref[r, c]
            if d <= 0.0:
                continue
            st, xs, ys, zs, ds, xr, yr, zr = reproject_pixel(r, c, d, depth_src, P1, p1, P2, p2,
                                                              interp_rel)
            if st == OUTSIDE:
                n_outside[r, c] += 1
                continue
            if st == NO_SRC:
                n_no_src[r, c] += 1
                continue
            ex = xr - (c + 0.5)
            ey = yr - (r + 0.5)
            if ex * ex + ey * ey < max_px2 and abs(zr - d) < max_rel * d:
                n_agree[r, c] += 1
                depth_sum[r, c] += zr
            elif ds > zs * (1.0 + near_rel):
                n_behind[r, c] += 1               # source sees through the reference surface
            elif ds < zs * (1.0 - near_rel):
                n_front[r, c] += 1                # something in front in the source (occlusion)
            elif abs(ds - zs) <= max_rel * zs:
                n_other[r, c] += 1                # depth matches in the source, round trip does not
            else:
                n_near[r, c] += 1                 # off by no more than the clip's depth noise
            if motion_rel > 0.0 and zr > 0.0:
                if zr > d * (1.0 + motion_rel):
                    n_moved[r, c] += 1            # the source sees far behind the pixel
                elif zr < d * (1.0 - motion_rel):
                    ri = int(np.floor(yr))
                    ci = int(np.floor(xr))
                    if 0 <= ri < h and 0 <= ci < w and depth_ref[ri, ci] > zr * (1.0 + motion_rel):
                        n_moved[r, c] += 1        # what it sees in front is not there in the reference


@njit(cache=True)
def speckle_labels(depth: np.ndarray, max_diff_rel: float, labels: np.ndarray, sizes_out: np.ndarray) -> int:
    """Flood-fill 4-connected components of valid pixels, neighbours joined when
    ``|d1 - d2| < max_diff_rel * min(d1, d2)``.  Writes labels (0 = invalid, 1..n) and the size of
    each component into ``sizes_out[label]``; returns the number of components."""
    h, w = depth.shape
    stack = np.empty(h * w, dtype=np.int64)
    n = 0
    for r0 in range(h):
        for c0 in range(w):
            if depth[r0, c0] <= 0.0 or labels[r0, c0] != 0:
                continue
            n += 1
            labels[r0, c0] = n
            top = 0
            stack[0] = r0 * w + c0
            top = 1
            size = 0
            while top > 0:
                top -= 1
                idx = stack[top]
                r = idx // w
                c = idx - r * w
                size += 1
                d = depth[r, c]
                for k in range(4):
                    rr = r
                    cc = c
                    if k == 0:
                        rr = r - 1
                    elif k == 1:
                        rr = r + 1
                    elif k == 2:
                        cc = c - 1
                    else:
                        cc = c + 1
                    if rr < 0 or rr >= h or cc < 0 or cc >= w or labels[rr, cc] != 0:
                        continue
                    dn = depth[rr, cc]
                    if dn <= 0.0:
                        continue
                    if abs(dn - d) < max_diff_rel * min(dn, d):
                        labels[rr, cc] = n
                        stack[top] = rr * w + cc
                        top += 1
            sizes_out[n] = size
    return n


@njit(parallel=True, fastmath=True, cache=True)
def erode_edges_kernel(depth: np.ndarray, radius: int, max_rel: float, out: np.ndarray) -> None:
    """``out`` (H, W) = ``depth``, 0 where a pixel of the (2·radius + 1)-square around is farther than
    ``depth · (1 + max_rel)`` (and where there is no depth)."""
    h, w = depth.shape
    for r in prange(h):
        for c in range(w):
            d = depth[r, c]
            if d <= 0.0:
                out[r, c] = 0.0
                continue
            lim = d * (1.0 + max_rel)
            far = False
            for rr in range(max(r - radius, 0), min(r + radius + 1, h)):
                for cc in range(max(c - radius, 0), min(c + radius + 1, w)):
                    far = far | (depth[rr, cc] > lim)
            out[r, c] = 0.0 if far else d
