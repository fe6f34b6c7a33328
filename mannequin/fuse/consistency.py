"""Multi-view geometric consistency of depth maps (pure: arrays in, arrays out, no I/O).

PatchmatchNet / MVSNet style forward-backward check: a reference pixel is back-projected with its
depth, projected into a source view, the source depth is sampled there, that source point is
back-projected and projected back into the reference.  The pixel is *consistent* with the source
when it lands near where it started (reprojection error in pixels) at nearly the same depth
(relative depth error).

Conventions (see :mod:`mannequin.io.cameras`):

* ``K`` (3, 3) in pixels, COLMAP / MC pixel centres: pixel (row r, col c) has its centre at
  ``(c + 0.5, r + 0.5)``.  All pixel coordinates returned here use that same convention, so the
  centre of pixel (r, c) is ``x = c + 0.5, y = r + 0.5`` and the image covers ``[0, W) × [0, H)``.
* ``E`` (4, 4) (or (3, 4), or a :class:`~mannequin.io.cameras.Pose`) is world-to-camera:
  ``X_cam = R X_world + t``, OpenCV axes (z forward).  Depth is the camera z coordinate.
* Depth maps are (H, W) floats in pose units; ``0`` (or negative, NaN, inf) means "no depth".

The per-pixel work is compiled with Numba (``parallel=True`` over rows); filtering one 640×480
frame against 6 neighbours takes a few milliseconds once compiled.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

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

def _check_depth(d, name: str) -> np.ndarray:
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


def _check_K(K, name: str) -> np.ndarray:
    if hasattr(K, "K") and not isinstance(K, np.ndarray):  # mannequin.io.cameras.Intrinsics
        K = K.K
    a = np.asarray(K, dtype=np.float64)
    if a.shape != (3, 3):
        raise ValueError(f"{name} must be a 3x3 intrinsics matrix, got shape {a.shape}")
    if not np.isfinite(a).all() or abs(np.linalg.det(a)) < 1e-12:
        raise ValueError(f"{name} must be finite and invertible")
    return a


def _check_E(E, name: str) -> np.ndarray:
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


def _pair_matrices(K_ref, E_ref, K_src, E_src):
    """Fold intrinsics and relative pose into two affine maps (float64).

    Forward:  ``q = d_ref * (P1 @ (u, v, 1)) + p1`` gives homogeneous source pixel coordinates
    (q_z is the depth of the point in the source camera).
    Backward: ``Y = d_src * (P2 @ (u_s, v_s, 1)) + p2`` gives homogeneous reference pixel
    coordinates of the source point (Y_z is its depth in the reference camera).
    """
    T = E_src @ np.linalg.inv(E_ref)          # ref camera -> src camera
    R, t = T[:3, :3], T[:3, 3]
    Kr_inv, Ks_inv = np.linalg.inv(K_ref), np.linalg.inv(K_src)
    P1 = K_src @ R @ Kr_inv
    p1 = K_src @ t
    Rt = np.linalg.inv(R)                     # == R.T for a rigid transform, robust otherwise
    P2 = K_ref @ Rt @ Ks_inv
    p2 = -(K_ref @ Rt @ t)
    return (np.ascontiguousarray(P1), np.ascontiguousarray(p1),
            np.ascontiguousarray(P2), np.ascontiguousarray(p2))


# --------------------------------------------------------------------------------------------
# Numba kernels

@njit(fastmath=True, cache=True, inline="always")
def _reproject_pixel(r, c, d, depth_src, P1, p1, P2, p2, interp_rel):
    """One reference pixel.  Returns (status, x_src, y_src, z_src, d_src, x_ref, y_ref, z_ref)."""
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
def _reproject_kernel(depth_ref, depth_src, P1, p1, P2, p2, interp_rel,
                      status, x_src, y_src, z_src, d_src, x_ref, y_ref, z_ref):
    h, w = depth_ref.shape
    for r in prange(h):
        for c in range(w):
            d = depth_ref[r, c]
            if d <= 0.0:
                status[r, c] = NO_REF
                continue
            st, xs, ys, zs, ds, xr, yr, zr = _reproject_pixel(r, c, d, depth_src, P1, p1, P2, p2,
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
def _vote_kernel(depth_ref, depth_src, P1, p1, P2, p2, interp_rel, max_rel, max_px, near_rel,
                 n_agree, n_behind, n_front, n_other, n_near, n_no_src, n_outside, depth_sum):
    """Check every reference pixel against one source and add to the per-pixel counters."""
    h, w = depth_ref.shape
    max_px2 = max_px * max_px
    for r in prange(h):
        for c in range(w):
            d = depth_ref[r, c]
            if d <= 0.0:
                continue
            st, xs, ys, zs, ds, xr, yr, zr = _reproject_pixel(r, c, d, depth_src, P1, p1, P2, p2,
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


@njit(cache=True)
def _speckle_labels(depth, max_diff_rel, labels, sizes_out):
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


# --------------------------------------------------------------------------------------------
# public API

def reproject(depth_ref, K_ref, E_ref, depth_src, K_src, E_src):
    """Forward-backward reprojection of every reference pixel through one source view.

    Args:
        depth_ref: (H, W) reference depth, pose units; 0 / NaN / inf / negative = none.
        K_ref: (3, 3) reference intrinsics, pixels, pixel centres at i + 0.5.
        E_ref: (4, 4) reference world-to-camera matrix (or (3, 4), or a ``Pose``).
        depth_src, K_src, E_src: the same for the source view, (Hs, Ws) may differ from (H, W).

    For each reference pixel (r, c) with depth d: the point ``d K_ref⁻¹ (c+0.5, r+0.5, 1)`` is
    moved into the source camera and projected to ``(x_src, y_src)``; the source depth is sampled
    there (bilinear in inverse depth, exact on planes, when the 4 neighbouring pixels are valid and
    span no depth edge, see :data:`BILINEAR_MAX_REL`; else the nearest pixel when it is valid;
    else nothing); that source
    point is back-projected and projected into the reference at ``(x_reproj, y_reproj)`` with
    depth ``depth_reprojected`` (z in the reference camera).

    Returns:
        ``(depth_reprojected, x_reproj, y_reproj, x_src, y_src)``, each (H, W) float32.
        ``depth_reprojected`` is 0 and ``x_reproj, y_reproj`` NaN where no source depth was
        sampled (no reference depth, outside the source image, no source depth there).
        ``x_src, y_src`` (source pixel coordinates, +0.5 convention) are given wherever the
        reference point lies in front of the source camera, also outside the source image;
        NaN elsewhere.
    """
    dr = _check_depth(depth_ref, "depth_ref")
    ds = _check_depth(depth_src, "depth_src")
    P1, p1, P2, p2 = _pair_matrices(_check_K(K_ref, "K_ref"), _check_E(E_ref, "E_ref"),
                                    _check_K(K_src, "K_src"), _check_E(E_src, "E_src"))
    status, (xs, ys, zs, dsamp, xr, yr, zr) = _run_reproject(dr, ds, P1, p1, P2, p2)
    sampled = (status == SAMPLED) & (zr > 0)
    front = (status == SAMPLED) | (status == NO_SRC) | ((status == OUTSIDE) & (zs > 0))
    nan = np.float32(np.nan)
    return (np.where(sampled, zr, np.float32(0)).astype(np.float32),
            np.where(sampled, xr, nan).astype(np.float32),
            np.where(sampled, yr, nan).astype(np.float32),
            np.where(front, xs, nan).astype(np.float32),
            np.where(front, ys, nan).astype(np.float32))


def _run_reproject(dr, ds, P1, p1, P2, p2):
    h, w = dr.shape
    status = np.zeros((h, w), dtype=np.int8)
    outs = tuple(np.zeros((h, w), dtype=np.float64) for _ in range(7))
    _reproject_kernel(dr, ds, P1, p1, P2, p2, BILINEAR_MAX_REL, status, *outs)
    return status, outs


def check_geometric_consistency(depth_ref, K_ref, E_ref, depth_src, K_src, E_src, *,
                                max_rel_depth: float = 0.01, max_reproj_px: float = 1.5):
    """Which reference pixels agree with one source depth map.

    Arguments as in :func:`reproject`.  A pixel is consistent when its forward-backward
    reprojection error ``hypot(x_reproj - (c+0.5), y_reproj - (r+0.5)) < max_reproj_px`` (pixels)
    and ``|depth_reprojected - depth_ref| / depth_ref < max_rel_depth``.

    Returns:
        ``(mask, depth_reprojected, rel_err, reproj_err)``, each (H, W): mask bool;
        depth_reprojected float32 (0 where nothing was sampled); rel_err and reproj_err float32,
        NaN where nothing was sampled (no reference depth, outside the source, no source depth),
        inf where the source point falls behind the reference camera.
    """
    _check_thresholds(max_rel_depth, max_reproj_px)
    dr = _check_depth(depth_ref, "depth_ref")
    ds = _check_depth(depth_src, "depth_src")
    P1, p1, P2, p2 = _pair_matrices(_check_K(K_ref, "K_ref"), _check_E(E_ref, "E_ref"),
                                    _check_K(K_src, "K_src"), _check_E(E_src, "E_src"))
    status, (xs, ys, zs, dsamp, xr, yr, zr) = _run_reproject(dr, ds, P1, p1, P2, p2)
    h, w = dr.shape
    rows, cols = np.mgrid[0:h, 0:w]
    sampled = status == SAMPLED
    ok = sampled & (zr > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        rel = np.where(ok, np.abs(zr - dr) / np.where(dr > 0, dr, 1), np.nan)
        rep = np.where(ok, np.hypot(xr - (cols + 0.5), yr - (rows + 0.5)), np.nan)
    rel[sampled & ~ok] = np.inf
    rep[sampled & ~ok] = np.inf
    mask = ok & (rel < max_rel_depth) & (rep < max_reproj_px)
    return (mask, np.where(ok, zr, 0).astype(np.float32), rel.astype(np.float32),
            rep.astype(np.float32))


def _check_thresholds(max_rel_depth, max_reproj_px):
    if not (np.isfinite(max_rel_depth) and max_rel_depth > 0):
        raise ValueError(f"max_rel_depth must be > 0, got {max_rel_depth}")
    if not (np.isfinite(max_reproj_px) and max_reproj_px > 0):
        raise ValueError(f"max_reproj_px must be > 0, got {max_reproj_px}")


@dataclass(eq=False)
class Votes:
    """Per-pixel outcome counts of one reference depth map checked against N sources.

    All count arrays are (H, W) int32; each (valid) reference pixel adds exactly one to one of
    them per source.  Pixels without a reference depth are 0 everywhere.

    * ``n_agree``: consistent (see :func:`check_geometric_consistency`).
    * ``n_behind``: a source depth was sampled and lies *behind* the reference point seen from the
      source (``d_src > z_src (1 + max_rel_depth)``): the source sees through where the reference
      claims a surface.  A free-space violation; the strongest evidence of motion or a bad depth.
    * ``n_front``: the sampled source depth lies clearly *in front* (``d_src < z_src (1 -
      max_rel_depth)``): something occludes the point in the source.  Legitimate occlusion is
      common near depth edges, so this is weaker evidence.
    * ``n_other``: a source depth was sampled and matches in the source, but the round trip fails
      (usually grazing surfaces or edges).
    * ``n_near``: the sampled source depth is off by more than ``max_rel_depth`` but within the
      ``noise_rel`` band of :func:`consistency_votes` either way: neither agreement nor evidence
      of a violation (always 0 when the band is not wider than ``max_rel_depth``).
    * ``n_no_src``: projects inside the source image onto a pixel without a valid depth.
    * ``n_outside``: projects outside the source image or behind the source camera.
    * ``depth_sum``: (H, W) float64, the sum of the agreeing reprojected depths.
    """

    n_agree: np.ndarray
    n_behind: np.ndarray
    n_front: np.ndarray
    n_other: np.ndarray
    n_near: np.ndarray
    n_no_src: np.ndarray
    n_outside: np.ndarray
    depth_sum: np.ndarray

    @property
    def n_disagree(self) -> np.ndarray:
        """(H, W) sources where a valid source depth was sampled but disagrees (behind+front+other+near)."""
        return self.n_behind + self.n_front + self.n_other + self.n_near

    @property
    def n_checked(self) -> np.ndarray:
        """(H, W) sources where a valid source depth was sampled (agree + disagree)."""
        return self.n_agree + self.n_disagree


def consistency_votes(depth_ref, K_ref, E_ref, neighbours: Sequence[tuple], *,
                      max_rel_depth: float = 0.01, max_reproj_px: float = 1.5,
                      noise_rel: float = 0.0) -> Votes:
    """Check a reference depth map against every neighbour and count the outcomes per pixel.

    Args:
        depth_ref (H, W), K_ref (3, 3), E_ref (4, 4) world-to-camera: the reference view.
        neighbours: list of ``(depth (Hs, Ws), K (3, 3), E (4, 4))`` source views.
        max_rel_depth, max_reproj_px: the thresholds of :func:`check_geometric_consistency`.
        noise_rel: relative depth band (e.g. a multiple of the clip's depth noise, see
            :func:`depth_noise`) within which a sampled source depth that fails the agreement test
            counts as ``n_near`` instead of behind or in front; a band not wider than
            ``max_rel_depth`` changes nothing.

    Returns:
        :class:`Votes` with the per-pixel counts.
    """
    _check_thresholds(max_rel_depth, max_reproj_px)
    if not (np.isfinite(noise_rel) and noise_rel >= 0):
        raise ValueError(f"noise_rel must be >= 0, got {noise_rel}")
    near_rel = max(float(max_rel_depth), float(noise_rel))
    dr = _check_depth(depth_ref, "depth_ref")
    Kr, Er = _check_K(K_ref, "K_ref"), _check_E(E_ref, "E_ref")
    h, w = dr.shape
    counts = [np.zeros((h, w), dtype=np.int32) for _ in range(7)]
    dsum = np.zeros((h, w), dtype=np.float64)
    for i, nb in enumerate(neighbours):
        if len(nb) != 3:
            raise ValueError(f"neighbours[{i}] must be (depth, K, E), got {len(nb)} items")
        ds = _check_depth(nb[0], f"neighbours[{i}] depth")
        P1, p1, P2, p2 = _pair_matrices(Kr, Er, _check_K(nb[1], f"neighbours[{i}] K"),
                                        _check_E(nb[2], f"neighbours[{i}] E"))
        _vote_kernel(dr, ds, P1, p1, P2, p2, BILINEAR_MAX_REL, float(max_rel_depth),
                     float(max_reproj_px), near_rel, *counts, dsum)
    return Votes(*counts, dsum)


def depth_noise(pairs: Sequence[tuple]) -> float:
    """The typical relative depth disagreement between depth maps of one clip.

    Args:
        pairs: list of ``(depth_a, K_a, E_a, depth_b, K_b, E_b)`` as in :func:`reproject`
            (E world-to-camera 4x4, K pixels with centres at +0.5).

    Returns:
        The median over all pairs' pixels of ``|z_reprojected - z_a| / z_a`` (:func:`reproject`'s
        round trip a → b → a), counting only pixels where a depth of b was sampled and whose round
        trip lands within 2 px; NaN when there are none.  Sharp synthetic clips: about 0.3%; the
        blurred TUM fr1/rpy sample: 3–4%.
    """
    rels = []
    for k, pair in enumerate(pairs):
        if len(pair) != 6:
            raise ValueError(f"pairs[{k}] must be (depth_a, K_a, E_a, depth_b, K_b, E_b), got {len(pair)} items")
        _, _, rel, rep = check_geometric_consistency(*pair, max_rel_depth=1.0, max_reproj_px=2.0)
        ok = np.isfinite(rel) & (rep < 2.0)
        rels.append(rel[ok])
    allr = np.concatenate(rels) if rels else np.zeros(0)
    return float(np.median(allr)) if allr.size else float("nan")


def filter_depth(depth_ref, K_ref, E_ref, neighbours: Sequence[tuple], *,
                 max_rel_depth: float = 0.01, max_reproj_px: float = 1.5, min_views: int = 2,
                 average: bool = True):
    """Multi-view geometric filtering of one depth map.

    Args:
        depth_ref (H, W), K_ref (3, 3), E_ref (4, 4) world-to-camera: the reference view.
        neighbours: list of ``(depth, K, E)`` source views (depth (Hs, Ws) may differ in size).
        max_rel_depth, max_reproj_px: per-source test of :func:`check_geometric_consistency`.
        min_views: a pixel is kept when at least this many sources agree with it.
        average: replace a kept depth by the mean of the reference depth and the agreeing
            reprojected depths (reduces noise); else keep the reference depth as is.

    Returns:
        ``(filtered, n_agree, n_disagree)``: filtered (H, W) float32, 0 = rejected / no depth;
        n_agree (H, W) int32, sources that agree; n_disagree (H, W) int32, sources where the
        pixel projects inside the source image onto a *valid* source depth and fails the test,
        whichever way (source surface behind, occluder in front, or round trip off; see
        :class:`Votes` and :func:`consistency_votes` for the separate counts).
        ``n_agree + n_disagree`` is the number of sources that could check the pixel.
    """
    if int(min_views) != min_views or min_views < 0:
        raise ValueError(f"min_views must be a non-negative integer, got {min_views}")
    dr = _check_depth(depth_ref, "depth_ref")
    v = consistency_votes(dr, K_ref, E_ref, neighbours, max_rel_depth=max_rel_depth,
                          max_reproj_px=max_reproj_px)
    return votes_to_depth(dr, v, min_views=min_views, average=average), v.n_agree, v.n_disagree


def votes_to_depth(depth_ref, votes: Votes, *, min_views: int = 2, average: bool = True) -> np.ndarray:
    """The filtered depth (H, W) float32 from a depth map and its :class:`Votes`.

    Keeps pixels with at least ``min_views`` agreeing sources; with ``average`` their depth is
    the mean of the reference depth and the agreeing reprojected depths.  0 = rejected.
    """
    dr = _check_depth(depth_ref, "depth_ref")
    keep = (dr > 0) & (votes.n_agree >= min_views)
    if average:
        return np.where(keep, (dr + votes.depth_sum) / (1.0 + votes.n_agree), 0.0).astype(np.float32)
    return np.where(keep, dr, np.float32(0)).astype(np.float32)


def dynamic_mask(n_agree, n_disagree, n_checked=None, *, min_disagree_frac: float = 0.7,
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


def remove_speckles(depth, max_size_px: int, max_diff_rel: float = 0.02) -> np.ndarray:
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
    dr = _check_depth(a, "depth")
    if max_diff_rel < 0 or not np.isfinite(max_diff_rel):
        raise ValueError(f"max_diff_rel must be >= 0, got {max_diff_rel}")
    h, w = dr.shape
    labels = np.zeros((h, w), dtype=np.int32)
    sizes = np.zeros(h * w + 1, dtype=np.int64)
    n = _speckle_labels(dr, float(max_diff_rel), labels, sizes)
    small = sizes[: n + 1] < max_size_px
    small[0] = True                          # label 0: no depth
    out_dtype = np.dtype(a.dtype if np.issubdtype(a.dtype, np.floating) else np.float32)
    src = a.astype(out_dtype, copy=False)    # keep the caller's values (labels used float32)
    return np.where(small[labels] | ~(np.isfinite(src) & (src > 0)), out_dtype.type(0), src)


@njit(parallel=True, fastmath=True, cache=True)
def _erode_edges_kernel(depth, radius, max_rel, out):
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


def erode_depth_edges(depth, radius_px: int, max_rel: float = 0.05) -> np.ndarray:
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
    d = _check_depth(depth, "depth")
    if int(radius_px) != radius_px or radius_px < 0:
        raise ValueError(f"radius_px must be a non-negative integer, got {radius_px}")
    if not (np.isfinite(max_rel) and max_rel > 0):
        raise ValueError(f"max_rel must be > 0, got {max_rel}")
    if radius_px == 0:
        return np.where(d > 0, d, np.float32(0)).astype(np.float32)
    out = np.empty_like(d)
    _erode_edges_kernel(d, int(radius_px), float(max_rel), out)
    return out


def free_space_mask(votes: Votes, max_frac: float = 0.5) -> np.ndarray:
    """Pixels with too many free-space violations: ``n_behind > max_frac * n_agree``.

    A source that sees *through* the reference point (``n_behind``) is direct evidence against
    it; a few are tolerated when enough sources agree.  Returns (H, W) bool (True = reject).
    """
    if not (np.isfinite(max_frac) and max_frac >= 0):
        raise ValueError(f"max_frac must be >= 0, got {max_frac}")
    return votes.n_behind > max_frac * votes.n_agree


def depth_to_points(depth, K, E, colors: np.ndarray | None = None):
    """Back-project the valid pixels of a depth map into world points.

    Args:
        depth: (H, W) depth (camera z, pose units; 0 / NaN / inf = none).
        K: (3, 3) intrinsics, pixel centres at i + 0.5: pixel (r, c) is the ray through
            ``(c + 0.5, r + 0.5)``.
        E: (4, 4) world-to-camera matrix (or (3, 4), or a ``Pose``).
        colors: optional (H, W, C) (or (H, W)) per-pixel colours.

    Returns:
        points (N, 3) float64 world coordinates of the valid pixels in row-major order; with
        ``colors`` also ``(points, colors[valid])`` with colours (N, C) in their own dtype.
    """
    d = _check_depth(depth, "depth")
    Kinv = np.linalg.inv(_check_K(K, "K"))
    Ew = _check_E(E, "E")
    rows, cols = np.nonzero(d > 0)
    z = d[rows, cols].astype(np.float64)
    u, v = cols + 0.5, rows + 0.5
    # Elementwise 3×3 products: a (N, 3) @ (3, 3) matmul goes through BLAS, whose threads fight
    # Numba's for the cores and made this 10× slower on a loaded 2-core machine.
    cam = [(Kinv[i, 0] * u + Kinv[i, 1] * v + Kinv[i, 2]) * z - Ew[i, 3] for i in range(3)]
    Rinv = np.linalg.inv(Ew[:3, :3])
    X_world = np.empty((len(z), 3), np.float64)
    for i in range(3):
        X_world[:, i] = Rinv[i, 0] * cam[0] + Rinv[i, 1] * cam[1] + Rinv[i, 2] * cam[2]
    if colors is None:
        return X_world
    col = np.asarray(colors)
    if col.shape[:2] != d.shape:
        raise ValueError(f"colors must be (H, W[, C]) matching depth {d.shape}, got {col.shape}")
    sel = col[rows, cols]
    return X_world, sel.reshape(len(z), -1)
