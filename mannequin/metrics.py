"""Depth and trajectory accuracy metrics (pure: arrays in, numbers out).

Depth (docs/FORMATS.md): AbsRel = mean(|s·d − d*| / d*) over the pixels that have both a
prediction d and a ground truth d*, RMSE in ground-truth units, δ_t = share with
max(s·d/d*, d*/(s·d)) < t, density = share of the ground-truth pixels that have a prediction.
Monocular scale is free: one scale per clip, ``s = median(d*/d)`` over all pixels of all frames
(:func:`median_scale`), never one per frame.

Trajectories: Sim(3) alignment by Umeyama's method, ATE RMSE of the camera centres and the
rotation error of each camera after the alignment.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

DEPTH_KEYS = ("absrel", "rmse", "delta_1.05", "delta_1.25", "density", "n")


def _valid(a: np.ndarray) -> np.ndarray:
    return np.isfinite(a) & (a > 0)


def _depth_pair(pred: ArrayLike, gt: ArrayLike, mask: ArrayLike | None,
                i: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    sfx = "" if i is None else f"[{i}]"
    p = np.asarray(pred, dtype=np.float64)
    g = np.asarray(gt, dtype=np.float64)
    if p.ndim != 2 or p.shape != g.shape:
        raise ValueError(f"pred{sfx} {p.shape} and gt{sfx} {g.shape} must be the same (H, W) shape")
    m = np.ones(g.shape, dtype=bool)
    if mask is not None:
        m = np.asarray(mask, dtype=bool)
        if m.shape != g.shape:
            raise ValueError(f"mask{sfx} {m.shape} must have the shape of gt {g.shape}")
    return p, g, m


def depth_metrics(pred: ArrayLike, gt: ArrayLike, mask: ArrayLike | None = None, *,
                  scale: float = 1.0) -> dict[str, Any]:
    """Accuracy of one predicted depth map against ground truth.

    Args:
        pred: (H, W) predicted depth d (any units); 0, negative or non-finite = missing.
        gt: (H, W) ground-truth depth d*; 0, negative or non-finite = missing.
        mask: optional (H, W) bool, pixels to evaluate (e.g. static scene only).
        scale: s, multiplied into the prediction first (e.g. from :func:`median_scale`).

    Returns:
        dict with ``absrel`` = mean(|s·d − d*|/d*); ``median_relerr`` = median(|s·d − d*|/d*)
        (robust where a few points are far off, e.g. sparse SfM points); ``rmse`` = sqrt(mean((s·d − d*)²)) in gt
        units; ``delta_1.05`` and ``delta_1.25`` = share with max(s·d/d*, d*/(s·d)) < t;
        ``density`` = share of the valid-gt pixels (inside mask) that have a prediction;
        ``n`` = number of pixels evaluated (both valid, inside mask); ``scale`` = s.
        Averages over no pixel are NaN (density too, when no gt pixel is valid).
    """
    if not (np.isfinite(scale) and scale > 0):
        raise ValueError(f"scale must be a finite positive number, got {scale}")
    p, g, m = _depth_pair(pred, gt, mask)
    gt_ok = _valid(g) & m
    both = gt_ok & _valid(p)
    n = int(both.sum())
    n_gt = int(gt_ok.sum())
    out = {"absrel": float("nan"), "median_relerr": float("nan"), "rmse": float("nan"), "delta_1.05": float("nan"),
           "delta_1.25": float("nan"), "density": n / n_gt if n_gt else float("nan"), "n": n,
           "scale": float(scale)}
    if n:
        d = p[both] * scale
        t = g[both]
        diff = d - t
        ratio = np.maximum(d / t, t / d)
        rel = np.abs(diff) / t
        out.update({"absrel": float(np.mean(rel)), "median_relerr": float(np.median(rel)),
                    "rmse": float(np.sqrt(np.mean(diff * diff))),
                    "delta_1.05": float(np.mean(ratio < 1.05)),
                    "delta_1.25": float(np.mean(ratio < 1.25))})
    return out


def median_scale(preds: Sequence[ArrayLike] | np.ndarray, gts: Sequence[ArrayLike] | np.ndarray,
                 masks: Sequence[ArrayLike | None] | np.ndarray | None = None) -> float:
    """One scale for a whole clip: the median of d*/d over all valid pixels of all frames.

    Args:
        preds: list of (H, W) predicted depths (or one (H, W) array, or an (N, H, W) stack).
        gts: the matching ground-truth depths.
        masks: optional matching list of (H, W) bool masks (None entries allowed).

    Returns:
        s such that ``s · d`` best matches d* in the median sense (pixels where both are > 0 and
        finite).  Raises ValueError when no pixel has both.
    """
    P, G = _as_list(preds), _as_list(gts)
    if len(P) != len(G):
        raise ValueError(f"{len(P)} predictions for {len(G)} ground-truth maps")
    M: list[Any] = [None] * len(P) if masks is None else _as_list(masks)
    if len(M) != len(P):
        raise ValueError(f"{len(M)} masks for {len(P)} predictions")
    ratios = []
    for i, (pr, gt, mk) in enumerate(zip(P, G, M, strict=False)):
        p, g, m = _depth_pair(pr, gt, mk, i)
        both = _valid(p) & _valid(g) & m
        ratios.append((g[both] / p[both]).astype(np.float64))
    allr = np.concatenate(ratios) if ratios else np.empty(0)
    if allr.size == 0:
        raise ValueError("no pixel has both a prediction and a ground truth: scale is undefined")
    return float(np.median(allr))


def _as_list(x: Any) -> list[Any]:
    if isinstance(x, np.ndarray) and x.ndim == 2:
        return [x]
    if isinstance(x, np.ndarray) and x.ndim == 3:
        return list(x)
    return list(x)


def _check_points(a: ArrayLike, name: str) -> np.ndarray:
    p = np.asarray(a, dtype=np.float64)
    if p.ndim != 2 or p.shape[1] != 3:
        raise ValueError(f"{name} must be (N, 3), got shape {p.shape}")
    if not np.isfinite(p).all():
        raise ValueError(f"{name} has non-finite values")
    return p


def umeyama(src: ArrayLike, dst: ArrayLike, with_scale: bool = True) -> tuple[float, np.ndarray, np.ndarray]:
    """Least-squares similarity (Umeyama 1991) with ``dst ≈ s · R @ src + t``.

    Args:
        src: (N, 3) points, N >= 3 (e.g. estimated camera centres, estimated world frame).
        dst: (N, 3) corresponding points (e.g. ground-truth centres, ground-truth world frame).
        with_scale: estimate s; otherwise s = 1 (a rigid SE(3) fit).

    Returns:
        ``(s, R, t)``: s float, R (3, 3) rotation (det +1), t (3,), mapping src frame -> dst frame.
    """
    X = _check_points(src, "src")
    Y = _check_points(dst, "dst")
    if X.shape != Y.shape:
        raise ValueError(f"src {X.shape} and dst {Y.shape} must have the same shape")
    if len(X) < 3:
        raise ValueError(f"umeyama needs at least 3 point pairs, got {len(X)}")
    mx, my = X.mean(0), Y.mean(0)
    Xc, Yc = X - mx, Y - my
    var_x = float(np.mean(np.sum(Xc * Xc, axis=1)))
    if var_x <= 1e-300:
        raise ValueError("src points are all identical: the similarity is undefined")
    C = Yc.T @ Xc / len(X)
    U, D, Vt = np.linalg.svd(C)
    S = np.ones(3)
    if np.linalg.det(U) * np.linalg.det(Vt) < 0:
        S[2] = -1.0
    R = U @ np.diag(S) @ Vt
    s = float(np.sum(D * S) / var_x) if with_scale else 1.0
    t = my - s * R @ mx
    return s, R, t


def ate_rmse(est_centers: ArrayLike, gt_centers: ArrayLike) -> dict[str, Any]:
    """Absolute trajectory error of camera centres after a Sim(3) alignment (est -> gt).

    Args:
        est_centers: (N, 3) estimated camera centres (estimated world frame, any scale).
        gt_centers: (N, 3) ground-truth centres of the same cameras (gt units, e.g. metres).

    Returns:
        dict: ``rmse`` (gt units) of |s R c_est + t − c_gt| after :func:`umeyama`; ``rmse_pct``
        = 100 · rmse / (gt trajectory length = sum of consecutive gt centre distances; NaN if
        0); ``scale`` = s; ``max`` and ``mean`` error (gt units); ``length`` (gt units); ``n``.
        Use ``umeyama(est_centers, gt_centers)`` for the alignment itself (e.g. the R to pass to
        :func:`rotation_errors_deg`).
    """
    E = _check_points(est_centers, "est_centers")
    G = _check_points(gt_centers, "gt_centers")
    if E.shape != G.shape:
        raise ValueError(f"est_centers {E.shape} and gt_centers {G.shape} must have the same shape")
    s, R, t = umeyama(E, G)
    err = np.linalg.norm(s * E @ R.T + t - G, axis=1)
    rmse = float(np.sqrt(np.mean(err ** 2)))
    length = float(np.sum(np.linalg.norm(np.diff(G, axis=0), axis=1)))
    return {"rmse": rmse, "rmse_pct": 100.0 * rmse / length if length > 0 else float("nan"),
            "scale": float(s), "max": float(err.max()), "mean": float(err.mean()),
            "length": length, "n": int(len(E))}


def _check_rotations(a: ArrayLike, name: str) -> np.ndarray:
    R = np.asarray(a, dtype=np.float64)
    if R.ndim == 2:
        R = R[None]
    if R.ndim != 3 or R.shape[1:] != (3, 3):
        raise ValueError(f"{name} must be (N, 3, 3) rotations, got shape {R.shape}")
    if not np.isfinite(R).all():
        raise ValueError(f"{name} has non-finite values")
    return R


def project_so3(M: np.ndarray) -> np.ndarray:
    """The rotation (3, 3) nearest to ``M`` (3, 3) in the Frobenius norm (SVD, determinant +1)."""
    U, _, Vt = np.linalg.svd(M)
    S = np.diag([1.0, 1.0, np.sign(np.linalg.det(U @ Vt)) or 1.0])
    return U @ S @ Vt


def rotation_angle_deg(R: ArrayLike) -> np.ndarray:
    """Rotation angle in degrees of (N, 3, 3) (or (3, 3)) rotations, accurate near 0 and 180."""
    R = np.asarray(R, dtype=np.float64)
    tr = np.trace(R, axis1=-2, axis2=-1)
    w = np.stack([R[..., 2, 1] - R[..., 1, 2], R[..., 0, 2] - R[..., 2, 0],
                  R[..., 1, 0] - R[..., 0, 1]], axis=-1)
    return np.degrees(np.arctan2(0.5 * np.linalg.norm(w, axis=-1), 0.5 * (tr - 1.0)))


def rotation_errors_deg(est_R: ArrayLike, gt_R: ArrayLike, align_R: ArrayLike | None = None) -> np.ndarray:
    """Per-camera rotation error in degrees after aligning the estimated world to the gt world.

    Args:
        est_R: (N, 3, 3) estimated camera rotations, world-to-camera (``Pose.R``).
        gt_R: (N, 3, 3) ground-truth rotations in the same convention.  (Camera-to-world for
            both gives the same angles.)
        align_R: (3, 3) rotation of the Sim(3) est world -> gt world (``umeyama(est_centers,
            gt_centers)[1]``).  None: the rotation that best aligns the two sets of rotations
            (chordal L2 mean of ``R_est_iᵀ R_gt_i``); pass ``np.eye(3)`` for no alignment.

    Returns:
        (N,) float64 angles of ``R_gt_i · (R_est_i · align_Rᵀ)ᵀ`` in degrees, in [0, 180].
    """
    Re = _check_rotations(est_R, "est_R")
    Rg = _check_rotations(gt_R, "gt_R")
    if Re.shape != Rg.shape:
        raise ValueError(f"est_R {Re.shape} and gt_R {Rg.shape} must have the same shape")
    if align_R is None:
        A = project_so3(np.einsum("nji,njk->ik", Re, Rg)).T   # Σ R_estᵀ R_gt ≈ Aᵀ
    else:
        A = np.asarray(align_R, dtype=np.float64)
        if A.shape != (3, 3) or not np.isfinite(A).all():
            raise ValueError(f"align_R must be a finite (3, 3) rotation, got shape {A.shape}")
    D = np.einsum("nij,jk,nlk->nil", Rg, A, Re)   # R_gt A R_estᵀ
    return rotation_angle_deg(D)


__all__ = ["DEPTH_KEYS", "depth_metrics", "median_scale", "umeyama", "ate_rmse",
           "rotation_errors_deg", "rotation_angle_deg"]

