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

from typing import Any, NamedTuple

import numpy as np
from numpy.typing import ArrayLike

from mannequin.sfm.rolling_shutter import rotation_matrices


def acceleration_operator(times_s: ArrayLike) -> np.ndarray:
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


def mean_reprojection_px(R_cw: ArrayLike, C: ArrayLike, X: ArrayLike, obs_frame: ArrayLike, obs_point: ArrayLike,
                         obs_xy: ArrayLike, focal_px: float) -> float:
    """Mean reprojection error (pixels) of the observations of points in front of their camera.

    Arguments as :func:`smooth_bundle_adjust`'s (no times needed); NaN when no observation is in
    front of its camera."""
    R = np.asarray(R_cw, dtype=np.float64)
    C = np.asarray(C, dtype=np.float64)
    X = np.asarray(X, dtype=np.float64)
    f = np.asarray(obs_frame, dtype=np.int64)
    p = np.asarray(obs_point, dtype=np.int64)
    xy = np.asarray(obs_xy, dtype=np.float64)
    if R.shape != (len(C), 3, 3) or xy.shape != (len(f), 2) or p.shape != f.shape:
        raise ValueError(f"shapes do not agree: R_cw {R.shape}, C {C.shape}, obs {f.shape} {p.shape} {xy.shape}")
    Xc, e = _reprojection(R, C, X, f, p, xy, focal_px)
    front = Xc[:, 2] > 0
    if not front.any():
        return float("nan")
    return float(np.linalg.norm(e[front], axis=1).mean())


def _reprojection(R: np.ndarray, C: np.ndarray, X: np.ndarray, f: np.ndarray, p: np.ndarray, xy: np.ndarray,
                  focal_px: float) -> tuple[np.ndarray, np.ndarray]:
    """Each observation's point in its camera (K, 3) and its reprojection residual (K, 2), pixels."""
    Xc = np.einsum("kij,kj->ki", R[f], X[p] - C[f])
    return Xc, focal_px * (Xc[:, :2] / Xc[:, 2:3] - xy)


#: Fixed Levenberg-Marquardt damping of the point blocks, relative to their diagonal.
POINT_DAMPING = 1e-4
#: The reduced camera system is solved densely up to this many parameters (6 per frame: 4000 is
#: 667 frames, 128 MB), sparsely beyond.
DENSE_MAX_PARAMS = 4000


def _group_sum(index: np.ndarray, n: int):
    """A function summing (K, ...) values over the entries that share an ``index`` (K,) value in
    [0, n): returns (n, ...), zeros where no entry has that index."""
    order = np.argsort(index, kind="stable")
    has = np.bincount(index, minlength=n) > 0
    starts = np.searchsorted(index[order], np.arange(n))[has]

    def total(v: np.ndarray) -> np.ndarray:
        out = np.zeros((n,) + v.shape[1:])
        out[has] = np.add.reduceat(v[order], starts, axis=0)
        return out

    return total


def _check(R_cw: ArrayLike, C: ArrayLike, X: ArrayLike, obs_frame: ArrayLike, obs_point: ArrayLike, obs_xy: ArrayLike,
           times_s: ArrayLike) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The inputs of :func:`smooth_bundle_adjust` as float64 / int64 arrays, or ValueError."""
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


def smooth_bundle_adjust(R_cw: ArrayLike, C: ArrayLike, X: ArrayLike, obs_frame: ArrayLike, obs_point: ArrayLike,
                         obs_xy: ArrayLike, times_s: ArrayLike, *, focal_px: float,
                         accel_sigma: float, loss_px: float = 0.5, max_iterations: int = 50,
                         tolerance: float = 1e-7) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict]:
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
    Observations of points behind their camera are left out (``observations_behind_camera``).
    Report: costs, mean reprojection error (px) and mean acceleration before and after, iterations.
    """
    R, C0, X0, f, p, xy = _check(R_cw, C, X, obs_frame, obs_point, obs_xy, times_s)
    if not accel_sigma > 0 or not focal_px > 0:
        raise ValueError(f"accel_sigma and focal_px must be > 0, got {accel_sigma}, {focal_px}")
    # An observation of a point behind its camera (left by an earlier robust adjustment, which
    # hardly feels it) has no valid residual: it is left out, else every step would look infinite.
    behind = np.einsum("kj,kj->k", R[f][:, 2], X0[p] - C0[f]) <= 0
    if behind.any():
        f, p, xy = f[~behind], p[~behind], xy[~behind]
    problem = _Problem(C0, len(X0), f, p, xy, acceleration_operator(times_s), focal_px, accel_sigma, loss_px)
    state = problem.state(R, C0, X0)
    cost0 = problem.cost(state)
    report = {"observations_behind_camera": int(behind.sum()), "cost_before": cost0,
              "reprojection_before_px": float(np.linalg.norm(state.e, axis=1).mean()),
              "accel_before": float(np.linalg.norm(state.a, axis=1).mean() * accel_sigma)}
    lam, cur, iterations = 1e-4, cost0, 0
    while iterations < max_iterations:
        iterations += 1
        reduced = problem.reduced_system(state)
        state, cur, lam, improved, drop = problem.damped_step(state, reduced, lam, cur)
        if not improved or drop < tolerance:
            break
    report.update({"cost_after": cur, "iterations": iterations,
                   "reprojection_after_px": float(np.linalg.norm(state.e, axis=1).mean()),
                   "accel_after": float(np.linalg.norm(state.a, axis=1).mean() * accel_sigma)})
    return state.R, state.C, state.X, report


class _State(NamedTuple):
    """Poses and points, with their camera-frame points and residuals."""

    R: np.ndarray  #: (N, 3, 3) world-to-camera rotations
    C: np.ndarray  #: (N, 3) camera centres
    X: np.ndarray  #: (M, 3) points
    Xc: np.ndarray  #: (K, 3) each observation's point in its camera
    e: np.ndarray  #: (K, 2) reprojection residuals, pixels
    a: np.ndarray  #: (N-2, 3) centre accelerations divided by accel_sigma


class _Reduced(NamedTuple):
    """One Gauss-Newton linearisation with the points eliminated (Schur complement)."""

    S: Any  #: (6N, 6N) sparse reduced camera system, fixed parameters decoupled
    rhs: np.ndarray  #: (6N,)
    W: np.ndarray  #: (K, 6, 3) camera-point blocks
    Pinv: np.ndarray  #: (M, 3, 3) inverse damped point blocks
    gp: np.ndarray  #: (M, 3) point gradient
    Q: np.ndarray  #: (3, 3) basis of the far frame's centre increment


class _Problem:
    """The least-squares problem of :func:`smooth_bundle_adjust`: observations, prior and gauge.

    Parameters: 6 per frame (rotation increment, centre increment), then 3 per point.  Frame 0 is
    fixed, and the far frame (the one farthest from frame 0) moves its centre only across the
    direction to frame 0 (its centre increment is expressed in the basis [u, v1, v2] and the u
    coordinate held at 0; each step is then rescaled about frame 0 to keep the distance exact).
    """

    def __init__(self, C: np.ndarray, n_points: int, f: np.ndarray, p: np.ndarray, xy: np.ndarray, acc: np.ndarray,
                 focal_px: float, accel_sigma: float, loss_px: float):
        import scipy.sparse as sp

        self.f, self.p, self.xy, self.acc = f, p, xy, acc
        self.focal_px, self.accel_sigma = focal_px, accel_sigma
        self.N, self.M, self.K = len(C), n_points, len(f)
        N = self.N
        self.far = int(np.argmax(np.linalg.norm(C - C[0], axis=1)))
        self.d_far = float(np.linalg.norm(C[self.far] - C[0]))
        if self.far == 0 or self.d_far <= 0:
            raise ValueError("all camera centres coincide: no scale to hold")
        self.c2 = float(loss_px) ** 2
        self.fixed = np.r_[np.arange(6), 6 * self.far + 3]
        self.per_frame = _group_sum(f, N)  # sum (K, ...) over the observations of each frame -> (N, ...)
        self.per_point = _group_sum(p, self.M)
        # The prior's rows on the centre columns, before frame 0 is fixed and the far frame rotated.
        # Sparse throughout: a long clip must not cost O(N^2) memory.
        rows = 3 * np.arange(N - 2)[:, None, None] + np.arange(3)[None, None, :]  # (N-2, j, axis)
        cols = 6 * (np.arange(N - 2)[:, None, None] + np.arange(3)[None, :, None]) + 3 + np.arange(3)
        vals = np.broadcast_to((acc / accel_sigma)[:, :, None], rows.shape[:1] + (3, 3))
        self.A0 = sp.csc_matrix((vals.ravel(), (np.broadcast_to(rows, vals.shape).ravel(), cols.ravel())),
                                shape=(3 * (N - 2), 6 * N))

    def state(self, R: np.ndarray, C: np.ndarray, X: np.ndarray) -> _State:
        acc = self.acc
        Xc, e = _reprojection(R, C, X, self.f, self.p, self.xy, self.focal_px)
        a = (acc[:, 0, None] * C[:-2] + acc[:, 1, None] * C[1:-1] + acc[:, 2, None] * C[2:]) / self.accel_sigma
        return _State(R, C, X, Xc, e, a)

    def cost(self, s: _State) -> float:
        c2 = self.c2
        sq = (s.e ** 2).sum(1)
        rep = c2 * np.log1p(sq / c2).sum() if c2 > 0 else sq.sum()
        return float(rep + (s.a ** 2).sum())

    def basis(self, C: np.ndarray) -> np.ndarray:
        u = (C[self.far] - C[0]) / np.linalg.norm(C[self.far] - C[0])
        return np.linalg.svd(u[None, :])[2]  # (3, 3) orthonormal rows, the first is ±u

    def _jacobians(self, s: _State, Q: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per observation: camera Jacobian (K, 2, 6), point Jacobian (K, 2, 3) and residual (K, 2),
        weighted for the Cauchy loss (IRLS), frame 0's camera columns zeroed."""
        f, focal_px, c2, K = self.f, self.focal_px, self.c2, self.K
        x, y, z = s.Xc[:, 0], s.Xc[:, 1], s.Xc[:, 2]
        Jpi = np.zeros((K, 2, 3))
        Jpi[:, 0, 0] = Jpi[:, 1, 1] = focal_px / z
        Jpi[:, 0, 2] = -focal_px * x / z ** 2
        Jpi[:, 1, 2] = -focal_px * y / z ** 2
        skew = np.zeros((K, 3, 3))  # -[Xc]_x: d(Xc)/d(delta) for R <- expm([delta]) R
        skew[:, 0, 1], skew[:, 0, 2] = z, -y
        skew[:, 1, 0], skew[:, 1, 2] = -z, x
        skew[:, 2, 0], skew[:, 2, 1] = y, -x
        Rf = s.R[f]
        Jc = np.concatenate([Jpi @ skew, -Jpi @ Rf], axis=2)  # (K, 2, 6)
        Jp = Jpi @ Rf  # (K, 2, 3)
        at_far = f == self.far
        Jc[at_far, :, 3:] = Jc[at_far, :, 3:] @ Q.T
        if c2 > 0:  # IRLS weight of the Cauchy loss, per observation
            w = np.sqrt(1.0 / (1.0 + (s.e ** 2).sum(1) / c2))
            Jc, Jp, ew = Jc * w[:, None, None], Jp * w[:, None, None], s.e * w[:, None]
        else:
            ew = s.e
        Jc[f == 0] = 0.0
        return Jc, Jp, ew

    def normal_equations(self, s: _State) -> tuple[Any, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Gauss-Newton blocks: Hcc (6N, 6N) sparse, Hpp (M, 3, 3), W (K, 6, 3), gc (6N,), gp (M, 3), and Q."""
        import scipy.sparse as sp

        N, far = self.N, self.far
        Q = self.basis(s.C)
        Jc, Jp, ew = self._jacobians(s, Q)
        blocks = self.per_frame(np.einsum("kri,krj->kij", Jc, Jc))
        gc = self.per_frame(np.einsum("kri,kr->ki", Jc, ew)).ravel()
        rot = sp.identity(6 * N, format="lil")
        rot[6 * far + 3:6 * far + 6, 6 * far + 3:6 * far + 6] = Q.T
        rot[np.arange(6), np.arange(6)] = 0.0  # frame 0 is fixed
        A = self.A0 @ rot.tocsc()
        Hcc = sp.bsr_matrix((blocks, np.arange(N), np.arange(N + 1)), shape=(6 * N, 6 * N)) + A.T @ A
        gc += A.T @ s.a.ravel()
        Hpp = self.per_point(np.einsum("kri,krj->kij", Jp, Jp))
        gp = self.per_point(np.einsum("kri,kr->ki", Jp, ew))
        W = np.einsum("kri,krj->kij", Jc, Jp)
        return Hcc, Hpp, W, gc, gp, Q

    def reduced_system(self, s: _State) -> _Reduced:
        """Linearise at ``s`` and eliminate the points.

        Points get a fixed small damping (:data:`POINT_DAMPING`), which keeps near-parallel rays from
        running off along themselves without moving the optimum; the Schur complement then does not
        depend on lambda, so it is formed once per iteration: S = Hcc - sum_k,l W_k Pinv_p W_l^T = Hcc - G G^T.
        """
        import scipy.sparse as sp

        f, p, N, M = self.f, self.p, self.N, self.M
        Hcc, Hpp, W, gc, gp, Q = self.normal_equations(s)
        P = Hpp + (POINT_DAMPING * np.einsum("mii->mi", Hpp) + 1e-12)[:, :, None] * np.eye(3)
        Pinv = np.linalg.inv(P)
        L = np.linalg.cholesky(Pinv)  # (M, 3, 3), Pinv = L L^T
        # G as a block-sparse matrix: one (6, 3) block per observation, at (frame, point); scipy's
        # block product then costs one 6x3x6 product per pair of observations of a point.
        order = np.lexsort((p, f))  # BSR wants the blocks of each block row sorted by column
        indptr = np.searchsorted(f[order], np.arange(N + 1))
        G = sp.bsr_matrix(((W @ L[p])[order], p[order], indptr), shape=(6 * N, 3 * M))
        S = (Hcc - G @ G.T.tobsr(blocksize=(3, 6))).tocsr()
        Pg = np.einsum("mij,mj->mi", Pinv, gp)  # (M, 3)
        rhs = -gc + self.per_frame(np.einsum("kij,kj->ki", W, Pg[p])).ravel()
        free = np.ones(6 * N)
        free[self.fixed] = 0.0
        S = sp.diags(free) @ S @ sp.diags(free) + sp.diags(1.0 - free)  # fixed parameters: dx = 0
        rhs[self.fixed] = 0.0
        return _Reduced(S, rhs, W, Pinv, gp, Q)

    def apply(self, s: _State, dc: np.ndarray, dp: np.ndarray, Q: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Poses and points after the increments ``dc`` (6N,) and ``dp`` (M, 3), rescaled about frame
        0 to keep the far frame's distance (a similarity: reprojection unchanged)."""
        far = self.far
        dc = dc.reshape(self.N, 6).copy()
        dc[far, 3:] = Q.T @ dc[far, 3:]
        R2 = rotation_matrices(dc[:, :3]) @ s.R
        C2 = s.C + dc[:, 3:]
        X2 = s.X + dp
        scale = self.d_far / np.linalg.norm(C2[far] - C2[0])
        return R2, C2[0] + scale * (C2 - C2[0]), C2[0] + scale * (X2 - C2[0])

    def _solve(self, damped: Any, rhs: np.ndarray) -> np.ndarray:
        """The reduced system's solution; dense while it fits (it fills in where frames share
        points), sparse beyond :data:`DENSE_MAX_PARAMS`; NaN when singular."""
        from scipy.sparse.linalg import spsolve

        try:
            return (np.linalg.solve(damped.toarray(), rhs) if 6 * self.N <= DENSE_MAX_PARAMS
                    else spsolve(damped.tocsc(), rhs))
        except np.linalg.LinAlgError:
            return np.full(6 * self.N, np.nan)

    def damped_step(self, s: _State, r: _Reduced, lam: float, cur: float) -> tuple[_State, float, float, bool, float]:
        """One Levenberg-Marquardt step from ``s`` (cost ``cur``): raise the damping ``lam`` tenfold
        until a step lowers the cost (then lower it threefold), up to 1e8.  Returns (state, cost,
        lam, improved, relative cost drop)."""
        import scipy.sparse as sp

        D = r.S.diagonal()
        while lam < 1e8:
            dc = self._solve(r.S + sp.diags(lam * D + 1e-12), r.rhs)
            if not np.all(np.isfinite(dc)):
                lam *= 10
                continue
            t = self.per_point(np.einsum("kji,kj->ki", r.W, dc.reshape(self.N, 6)[self.f]))
            dp = -np.einsum("mij,mj->mi", r.Pinv, r.gp + t)
            s2 = self.state(*self.apply(s, dc, dp, r.Q))
            new = self.cost(s2) if np.all(s2.Xc[:, 2] > 0) else np.inf
            if new < cur:
                return s2, new, max(lam / 3, 1e-9), True, (cur - new) / cur
            lam *= 10
        return s, cur, lam, False, 0.0
