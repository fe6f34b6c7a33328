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

The per-pixel work runs in the Numba kernels of :mod:`mannequin.fuse.kernels`; the clean-up of
the filtered maps and the masks of pixels to drop are in :mod:`mannequin.fuse.cleanup`.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from mannequin.fuse.kernels import (
    BILINEAR_MAX_REL,
    NO_SRC,
    OUTSIDE,
    SAMPLED,
    check_depth,
    check_E,
    reproject_kernel,
    vote_kernel,
)
from mannequin.geometry import check_K


def pair_matrices(K_ref: np.ndarray, E_ref: np.ndarray, K_src: np.ndarray,
                  E_src: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Fold intrinsics ((3, 3) px) and world-to-camera poses ((4, 4)) into two affine maps (float64).

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


def reproject(depth_ref: Any, K_ref: Any, E_ref: Any, depth_src: Any, K_src: Any,
              E_src: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
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
    dr = check_depth(depth_ref, "depth_ref")
    ds = check_depth(depth_src, "depth_src")
    P1, p1, P2, p2 = pair_matrices(check_K(K_ref, "K_ref"), check_E(E_ref, "E_ref"),
                                   check_K(K_src, "K_src"), check_E(E_src, "E_src"))
    status, (xs, ys, zs, dsamp, xr, yr, zr) = _run_reproject(dr, ds, P1, p1, P2, p2)
    sampled = (status == SAMPLED) & (zr > 0)
    front = (status == SAMPLED) | (status == NO_SRC) | ((status == OUTSIDE) & (zs > 0))
    nan = np.float32(np.nan)
    return (np.where(sampled, zr, np.float32(0)).astype(np.float32),
            np.where(sampled, xr, nan).astype(np.float32),
            np.where(sampled, yr, nan).astype(np.float32),
            np.where(front, xs, nan).astype(np.float32),
            np.where(front, ys, nan).astype(np.float32))


def _run_reproject(dr: np.ndarray, ds: np.ndarray, P1: np.ndarray, p1: np.ndarray, P2: np.ndarray,
                   p2: np.ndarray) -> tuple[np.ndarray, tuple[np.ndarray, ...]]:
    h, w = dr.shape
    status = np.zeros((h, w), dtype=np.int8)
    outs = tuple(np.zeros((h, w), dtype=np.float64) for _ in range(7))
    reproject_kernel(dr, ds, P1, p1, P2, p2, BILINEAR_MAX_REL, status, *outs)
    return status, outs


def check_geometric_consistency(depth_ref: Any, K_ref: Any, E_ref: Any, depth_src: Any, K_src: Any, E_src: Any, *,
                                max_rel_depth: float = 0.01, max_reproj_px: float = 1.5
                                ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
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
    dr = check_depth(depth_ref, "depth_ref")
    ds = check_depth(depth_src, "depth_src")
    P1, p1, P2, p2 = pair_matrices(check_K(K_ref, "K_ref"), check_E(E_ref, "E_ref"),
                                   check_K(K_src, "K_src"), check_E(E_src, "E_src"))
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


def _check_thresholds(max_rel_depth: float, max_reproj_px: float) -> None:
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
    * ``n_moved``: not one of the outcomes above but counted beside them (0 unless
      :func:`consistency_votes` gets a ``motion_rel``): sources that contradict the pixel by more
      than ``motion_rel``, seeing far behind it, or seeing in front of it something the reference
      itself sees through (see :func:`mannequin.fuse.kernels.vote_kernel`).  The evidence of motion.
    * ``depth_sum``: (H, W) float64, the sum of the agreeing reprojected depths.
    """

    n_agree: np.ndarray
    n_behind: np.ndarray
    n_front: np.ndarray
    n_other: np.ndarray
    n_near: np.ndarray
    n_no_src: np.ndarray
    n_outside: np.ndarray
    n_moved: np.ndarray
    depth_sum: np.ndarray

    @classmethod
    def zeros(cls, shape: tuple[int, int]) -> Votes:
        """All counts 0 for an (H, W) reference map."""
        def count() -> np.ndarray:
            return np.zeros(shape, dtype=np.int32)

        return cls(count(), count(), count(), count(), count(), count(), count(), count(),
                   np.zeros(shape, dtype=np.float64))

    @property
    def n_disagree(self) -> np.ndarray:
        """(H, W) sources where a valid source depth was sampled but disagrees (behind+front+other+near)."""
        return self.n_behind + self.n_front + self.n_other + self.n_near

    @property
    def n_checked(self) -> np.ndarray:
        """(H, W) sources where a valid source depth was sampled (agree + disagree)."""
        return self.n_agree + self.n_disagree


def consistency_votes(depth_ref: Any, K_ref: Any, E_ref: Any, neighbours: Sequence[tuple], *,
                      max_rel_depth: float = 0.01, max_reproj_px: float = 1.5,
                      noise_rel: float = 0.0, motion_rel: float = 0.0) -> Votes:
    """Check a reference depth map against every neighbour and count the outcomes per pixel.

    Args:
        depth_ref (H, W), K_ref (3, 3), E_ref (4, 4) world-to-camera: the reference view.
        neighbours: list of ``(depth (Hs, Ws), K (3, 3), E (4, 4))`` source views.
        max_rel_depth, max_reproj_px: the thresholds of :func:`check_geometric_consistency`.
        noise_rel: relative depth band (e.g. a multiple of the clip's depth noise, see
            :func:`depth_noise`) within which a sampled source depth that fails the agreement test
            counts as ``n_near`` instead of behind or in front; a band not wider than
            ``max_rel_depth`` changes nothing.
        motion_rel: relative contradiction that counts a source in ``n_moved`` (0 = none counted);
            meant to be well above the clip's depth noise.

    Returns:
        :class:`Votes` with the per-pixel counts.
    """
    _check_thresholds(max_rel_depth, max_reproj_px)
    if not (np.isfinite(noise_rel) and noise_rel >= 0):
        raise ValueError(f"noise_rel must be >= 0, got {noise_rel}")
    if not (np.isfinite(motion_rel) and motion_rel >= 0):
        raise ValueError(f"motion_rel must be >= 0, got {motion_rel}")
    near_rel = max(float(max_rel_depth), float(noise_rel))
    dr = check_depth(depth_ref, "depth_ref")
    Kr, Er = check_K(K_ref, "K_ref"), check_E(E_ref, "E_ref")
    h, w = dr.shape
    v = Votes.zeros((h, w))
    for i, nb in enumerate(neighbours):
        if len(nb) != 3:
            raise ValueError(f"neighbours[{i}] must be (depth, K, E), got {len(nb)} items")
        ds = check_depth(nb[0], f"neighbours[{i}] depth")
        P1, p1, P2, p2 = pair_matrices(Kr, Er, check_K(nb[1], f"neighbours[{i}] K"),
                                       check_E(nb[2], f"neighbours[{i}] E"))
        vote_kernel(dr, ds, P1, p1, P2, p2, BILINEAR_MAX_REL, float(max_rel_depth), float(max_reproj_px), near_rel,
                    float(motion_rel), v.n_agree, v.n_behind, v.n_front, v.n_other, v.n_near, v.n_no_src,
                    v.n_outside, v.n_moved, v.depth_sum)
    return v


def depth_noise(pairs: Sequence[tuple]) -> float:
    """The typical relative depth disagreement between depth maps of one clip.

    Args:
        pairs: list of ``(depth_a, K_a, E_a, depth_b, K_b, E_b)`` as in :func:`reproject`
            (E world-to-camera 4x4, K pixels with centres at +0.5).

    Returns:
        The median over all pairs' pixels of ``|z_reprojected - z_a| / z_a`` (:func:`reproject`'s
        round trip a → b → a), counting only pixels where a depth of b was sampled and whose round
        trip lands within 2 px; NaN when there are none.
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


def filter_depth(depth_ref: Any, K_ref: Any, E_ref: Any, neighbours: Sequence[tuple], *,
                 max_rel_depth: float = 0.01, max_reproj_px: float = 1.5, min_views: int = 2,
                 average: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
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
    dr = check_depth(depth_ref, "depth_ref")
    v = consistency_votes(dr, K_ref, E_ref, neighbours, max_rel_depth=max_rel_depth,
                          max_reproj_px=max_reproj_px)
    return votes_to_depth(dr, v, min_views=min_views, average=average), v.n_agree, v.n_disagree


def votes_to_depth(depth_ref: Any, votes: Votes, *, min_views: int = 2, average: bool = True) -> np.ndarray:
    """The filtered depth (H, W) float32 from a depth map and its :class:`Votes`.

    Keeps pixels with at least ``min_views`` agreeing sources; with ``average`` their depth is
    the mean of the reference depth and the agreeing reprojected depths.  0 = rejected.
    """
    dr = check_depth(depth_ref, "depth_ref")
    keep = (dr > 0) & (votes.n_agree >= min_views)
    if average:
        return np.where(keep, (dr + votes.depth_sum) / (1.0 + votes.n_agree), 0.0).astype(np.float32)
    return np.where(keep, dr, np.float32(0)).astype(np.float32)


def depth_to_points(depth: Any, K: Any, E: Any,
                    colors: np.ndarray | None = None) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
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
    d = check_depth(depth, "depth")
    Kinv = np.linalg.inv(check_K(K, "K"))
    Ew = check_E(E, "E")
    rows, cols = np.nonzero(d > 0)
    z = d[rows, cols].astype(np.float64)
    u, v = cols + 0.5, rows + 0.5
    # Elementwise 3×3 products: a (N, 3) @ (3, 3) matmul goes through BLAS, whose threads fight
    # Numba's for the cores.
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
