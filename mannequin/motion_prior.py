"""Bundle adjustment with a smooth-motion prior on the camera centres (pure numpy/scipy, no I/O).

A camera that mostly turns sees a small translation as almost the same image motion as a small
rotation: each frame's centre is then weakly observed, and plain bundle adjustment lets it jitter
(TUM fr1/rpy frames 0-29 with the given calibration: the centres' frame-to-frame acceleration is
8× the mocap's, camera RMSE 3.4% of the path).  A handheld camera's centre moves smoothly at video
rates, so the adjustment here adds, for each interior frame, its centre's acceleration (a second
difference over the frame times) divided by ``accel_sigma`` as a residual beside the reprojection
errors.  The jitter goes, for almost no reprojection error (docs/FINDINGS.md).

Conventions: world-to-camera rotations ``R_cw`` (N, 3, 3) and camera centres ``C`` (N, 3) in world
units, so a world point X is at ``R_cw @ (X - C)`` in the camera (x right, y down, z forward).
Observations are normalised image coordinates (x/z, y/z) of the undistorted bearing, (K, 2);
residuals are scaled to pixels by ``focal_px``.  Intrinsics are held fixed.
"""
from __future__ import annotations

from typing import Tuple

import numpy as np

from .rolling_shutter import rotation_matrices


def acceleration_operator(times_s) -> np.ndarray:
    """Coefficients of the centre's acceleration at each interior frame.

    times_s (N,): strictly increasing frame times, seconds.  Returns (N-2, 3): for interior frame i
    (1..N-2), ``a_i = c[i-1,0]*C[i-1] + c[i-1,1]*C[i] + c[i-1,2]*C[i+1]`` (units of C per s²), the
    second divided difference for uneven spacing (frames dropped for blur).
    """
    t = np.asarray(times_s, dtype=np.float64)
    if t.ndim != 1 or len(t) < 3:
        raise ValueError(f"times_s must have shape (N,) with N >= 3, got {t.shape}")
    if not np.all(np.diff(t) > 0):
        raise ValueError("times_s must be strictly increasing")
    h1, h2 = t[1:-1] - t[:-2], t[2:] - t[1:-1]
    a = 2.0 / (h1 * (h1 + h2))
    c = 2.0 / (h2 * (h1 + h2))
    return np.stack([a, -(a + c), c], axis=1)


def _check(R_cw, C, X, obs_frame, obs_point, obs_xy, times_s):
    R = np.asarray(R_cw, dtype=np.float64)
    C = np.asarray(C, dtype=np.float64)
    X = np.asarray(X, dtype=np.float64)
    N = len(C)
    if R.shape != (N, 3, 3) or C.shape != (N, 3):
        raise ValueError(f"R_cw must be (N, 3, 3) and C (N, 3), got {R.shape} and {C.shape}")
    if X.ndim != 2 or X.shape[1] != 3:
        raise ValueError(f"X must have shape (M, 3), got {X.shape}")
    f = np.asarray(obs_frame, dtype=np.int64)
    p = np.asarray(obs_point, dtype=np.int64)
    xy = np.asarray(obs_xy, dtype=np.float64)
    if f.shape != p.shape or xy.shape != (len(f), 2):
        raise ValueError(f"obs_frame, obs_point (K,) and obs_xy (K, 2) disagree: {f.shape}, {p.shape}, {xy.shape}")
    if len(f) and (f.min() < 0 or f.max() >= N or p.min() < 0 or p.max() >= len(X)):
        raise ValueError("observation indices out of range")
    if np.asarray(times_s).shape != (N,):
        raise ValueError(f"times_s must have shape ({N},), got {np.asarray(times_s).shape}")
    return R, C, X, f, p, xy


def smooth_bundle_adjust(R_cw, C, X, obs_frame, obs_point, obs_xy, times_s, *, focal_px: float,
                         accel_sigma: float, loss_px: float = 0.5, max_iterations: int = 50,
                         tolerance: float = 1e-7) -> Tuple[np.ndarray, np.ndarray, np.ndarray, dict]:
    """Adjust poses and points under a smooth-motion prior; intrinsics fixed.

    Args:
        R_cw: (N, 3, 3) world-to-camera rotations; C: (N, 3) camera centres; X: (M, 3) points.
        obs_frame, obs_point: (K,) frame and point index of each observation.
        obs_xy: (K, 2) normalised undistorted image coordinates of each observation.
        times_s: (N,) strictly increasing frame times, seconds (N >= 3).
        focal_px: scales normalised residuals to pixels.
        accel_sigma: standard deviation of the centre's acceleration, world units per s² (> 0).
        loss_px: Cauchy loss scale on the reprojection residuals, pixels (0 = squared).
        max_iterations / tolerance: Levenberg-Marquardt stops after this many steps, or when a step
            lowers the cost by less than ``tolerance`` (relative).

    Returns ``(R_cw, C, X, report)``.  The gauge is held by frame 0's pose and by the distance from
    frame 0 to the frame farthest from it (the prior is not scale-free, so the scale must be fixed),
    both exactly.
    Report: costs, mean reprojection error (px) and mean acceleration before and after, iterations.
    """
    import scipy.sparse as sp

    R, C, X, f, p, xy = _check(R_cw, C, X, obs_frame, obs_point, obs_xy, times_s)
    if not accel_sigma > 0 or not focal_px > 0:
        raise ValueError(f"accel_sigma and focal_px must be > 0, got {accel_sigma}, {focal_px}")
    N, M, K = len(C), len(X), len(f)
    acc = acceleration_operator(times_s)
    far = int(np.argmax(np.linalg.norm(C - C[0], axis=1)))
    d_far = float(np.linalg.norm(C[far] - C[0]))
    if far == 0 or d_far <= 0:
        raise ValueError("all camera centres coincide: no scale to hold")
    c2 = float(loss_px) ** 2
    nc = 6 * (N - 1)  # frame 0 is fixed
    # The far frame's centre moves only across the direction to frame 0 (to first order; each step is
    # then rescaled about frame 0 to keep the distance exact): T maps the free parameters to all.
    u = (C[far] - C[0]) / d_far
    basis = np.linalg.svd(u[None, :])[2][1:]  # (2, 3) orthonormal, orthogonal to u
    keep_cols = np.setdiff1d(np.arange(nc + 3 * M), 6 * (far - 1) + 3 + np.arange(3))
    T = sp.lil_matrix((nc + 3 * M, nc + 3 * M - 1))
    T[keep_cols[: 6 * (far - 1) + 3], np.arange(6 * (far - 1) + 3)] = 1.0
    T[6 * (far - 1) + 3: 6 * (far - 1) + 6, 6 * (far - 1) + 3: 6 * (far - 1) + 5] = basis.T
    T[keep_cols[6 * (far - 1) + 3:], np.arange(6 * (far - 1) + 5, nc + 3 * M - 1)] = 1.0
    T = T.tocsr()
    nc_free = nc - 1

    def residuals(R, C, X):
        Xc = np.einsum("kij,kj->ki", R[f], X[p] - C[f])
        z = Xc[:, 2]
        e = focal_px * (Xc[:, :2] / z[:, None] - xy)
        a = (acc[:, 0, None] * C[:-2] + acc[:, 1, None] * C[1:-1] + acc[:, 2, None] * C[2:]) / accel_sigma
        return Xc, e, a

    def cost(e, a):
        s = (e ** 2).sum(1)
        rep = c2 * np.log1p(s / c2).sum() if c2 > 0 else s.sum()
        return float(rep + (a ** 2).sum())

    # Fixed sparsity pattern: observation rows touch one frame (6) and one point (3).
    cam_col = np.where(f[:, None] > 0, 6 * (f[:, None] - 1) + np.arange(6), -1)  # (K, 6)
    pt_col = nc + 3 * p[:, None] + np.arange(3)  # (K, 3)
    obs_rows = np.arange(2 * K).reshape(K, 2)

    # Prior rows: the acceleration at interior frame i+1 (per axis) touches the centres of frames
    # i, i+1, i+2; frame 0 has no columns.
    pi, pj, pax = np.meshgrid(np.arange(N - 2), np.arange(3), np.arange(3), indexing="ij")
    prior_keep = (pi + pj) > 0
    prior_rows = (2 * K + 3 * pi + pax)[prior_keep]
    prior_cols = (6 * (pi + pj - 1) + 3 + pax)[prior_keep]
    prior_vals = (acc[pi, pj] / accel_sigma)[prior_keep]

    def jacobian(R, C, Xc, e, a):
        x, y, z = Xc[:, 0], Xc[:, 1], Xc[:, 2]
        Jpi = np.zeros((K, 2, 3))
        Jpi[:, 0, 0] = Jpi[:, 1, 1] = focal_px / z
        Jpi[:, 0, 2] = -focal_px * x / z ** 2
        Jpi[:, 1, 2] = -focal_px * y / z ** 2
        skew = np.zeros((K, 3, 3))  # -[Xc]_x: d(Xc)/d(delta) for R <- expm([delta]) R
        skew[:, 0, 1], skew[:, 0, 2] = z, -y
        skew[:, 1, 0], skew[:, 1, 2] = -z, x
        skew[:, 2, 0], skew[:, 2, 1] = y, -x
        Rf = R[f]
        J_rot = Jpi @ skew
        J_ctr = -Jpi @ Rf
        J_pt = Jpi @ Rf
        if c2 > 0:  # IRLS weight of the Cauchy loss, per observation
            w = np.sqrt(1.0 / (1.0 + (e ** 2).sum(1) / c2))[:, None, None]
            J_rot, J_ctr, J_pt = J_rot * w, J_ctr * w, J_pt * w
            ew = e * w[:, :, 0]
        else:
            ew = e
        rows, cols, vals = [], [], []
        keep = f > 0
        blocks = np.concatenate([J_rot, J_ctr], axis=2)[keep]  # (K', 2, 6)
        rows.append(np.broadcast_to(obs_rows[keep][:, :, None], blocks.shape).ravel())
        cols.append(np.broadcast_to(cam_col[keep][:, None, :], blocks.shape).ravel())
        vals.append(blocks.ravel())
        rows.append(np.broadcast_to(obs_rows[:, :, None], J_pt.shape).ravel())
        cols.append(np.broadcast_to(pt_col[:, None, :], J_pt.shape).ravel())
        vals.append(J_pt.ravel())
        rows.append(prior_rows)
        cols.append(prior_cols)
        vals.append(prior_vals)
        J = sp.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
                          shape=(2 * K + 3 * (N - 2), nc + 3 * M))
        return J @ T, np.concatenate([ew.ravel(), a.ravel()])

    def apply(R, C, X, dx):
        dc = dx[:nc].reshape(N - 1, 6)
        R2 = R.copy()
        R2[1:] = rotation_matrices(dc[:, :3]) @ R[1:]
        C2 = C.copy()
        C2[1:] += dc[:, 3:]
        X2 = X + dx[nc:].reshape(M, 3)
        s = d_far / np.linalg.norm(C2[far] - C2[0])  # a similarity: reprojection unchanged
        return R2, C2[0] + s * (C2 - C2[0]), C2[0] + s * (X2 - C2[0])

    Xc, e, a = residuals(R, C, X)
    cost0 = cost(e, a)
    report = {"cost_before": cost0, "reprojection_before_px": float(np.linalg.norm(e, axis=1).mean()),
              "accel_before": float(np.linalg.norm(a, axis=1).mean() * accel_sigma)}
    lam, cur, it = 1e-4, cost0, 0
    for it in range(1, max_iterations + 1):
        J, r = jacobian(R, C, Xc, e, a)
        H = (J.T @ J).tocsr()
        grad = J.T @ r
        Hcc = H[:nc_free, :nc_free].toarray()
        Hcp = H[:nc_free, nc_free:]
        Hpp = np.zeros((M, 3, 3))
        hpp = H[nc_free:, nc_free:].tocoo()
        Hpp[hpp.row // 3, hpp.row % 3, hpp.col % 3] = hpp.data
        improved, drop = False, 0.0
        while lam < 1e8:
            D = np.diagonal(Hcc).copy()
            A = Hcc + np.diag(lam * D + 1e-12)
            P = Hpp + (lam * np.einsum("mii->mi", Hpp) + 1e-12)[:, :, None] * np.eye(3)
            Pinv = np.linalg.inv(P)
            Pinv_sp = sp.bsr_matrix((Pinv, np.arange(M), np.arange(M + 1)), shape=(3 * M, 3 * M)).tocsr()
            gc, gp = grad[:nc_free], grad[nc_free:]
            S = A - (Hcp @ Pinv_sp @ Hcp.T).toarray()
            rhs = -gc + Hcp @ (Pinv_sp @ gp)
            try:
                dc = np.linalg.solve(S, rhs)
            except np.linalg.LinAlgError:
                lam *= 10
                continue
            dp = -(Pinv_sp @ (gp + Hcp.T @ dc))
            R2, C2, X2 = apply(R, C, X, T @ np.concatenate([dc, dp]))
            Xc2, e2, a2 = residuals(R2, C2, X2)
            new = cost(e2, a2) if np.all(Xc2[:, 2] > 0) else np.inf
            if new < cur:
                R, C, X, Xc, e, a = R2, C2, X2, Xc2, e2, a2
                drop = (cur - new) / cur
                cur, lam, improved = new, max(lam / 10, 1e-9), True
                break
            lam *= 10
        if not improved or drop < tolerance:
            break
    report.update({"cost_after": cur, "iterations": it,
                   "reprojection_after_px": float(np.linalg.norm(e, axis=1).mean()),
                   "accel_after": float(np.linalg.norm(a, axis=1).mean() * accel_sigma)})
    return R, C, X, report
