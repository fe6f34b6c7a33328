"""Source-view selection and per-frame depth ranges from a sparse COLMAP model.

The functions take plain arrays extracted once from a ``pycolmap.Reconstruction`` by
:func:`sparse_geometry`, so they are easy to test on synthetic input.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from mannequin.errors import StageError
from mannequin.geometry import triangulation_angle_deg


@dataclass
class SparseGeometry:
    """What view selection needs from a sparse model.

    names: (N,) image names, sorted.  centers: (N, 3) camera centres (world).  R: (N, 3, 3) and
    t: (N, 3) world-to-camera.  K: (N, 3, 3) pixels (centres at +0.5).  sizes: (N, 2) (W, H).
    points: (P, 3) world points.  observations: per image, the indices into ``points`` it sees.
    """

    names: list[str]
    centers: np.ndarray
    R: np.ndarray
    t: np.ndarray
    K: np.ndarray
    sizes: np.ndarray
    points: np.ndarray
    observations: list[np.ndarray]


def sparse_geometry(rec: Any) -> SparseGeometry:
    """Extract a :class:`SparseGeometry` from a pycolmap Reconstruction (registered images only)."""
    ids = sorted(rec.reg_image_ids(), key=lambda i: rec.image(i).name)
    pid_index = {pid: k for k, pid in enumerate(sorted(rec.points3D))}
    points = np.array([rec.points3D[pid].xyz for pid in sorted(rec.points3D)], dtype=np.float64).reshape(-1, 3)
    names, centers, Rs, ts, Ks, sizes, obs = [], [], [], [], [], [], []
    for iid in ids:
        img = rec.image(iid)
        cam = rec.camera(img.camera_id)
        T = img.cam_from_world()
        names.append(img.name)
        Rs.append(T.rotation.matrix())
        ts.append(np.asarray(T.translation))
        centers.append(img.projection_center())
        Ks.append(cam.calibration_matrix())
        sizes.append((cam.width, cam.height))
        seen = [pid_index[p.point3D_id] for p in img.points2D if p.has_point3D()]
        obs.append(np.array(sorted(set(seen)), dtype=np.int64))
    return SparseGeometry(names, np.array(centers).reshape(-1, 3), np.array(Rs).reshape(-1, 3, 3),
                          np.array(ts).reshape(-1, 3), np.array(Ks).reshape(-1, 3, 3),
                          np.array(sizes, dtype=np.int64).reshape(-1, 2), points, obs)


def world_to_camera(geo: SparseGeometry, i: int) -> np.ndarray:
    """(4, 4) world-to-camera matrix of image ``i``."""
    M = np.eye(4)
    M[:3, :3], M[:3, 3] = geo.R[i], geo.t[i]
    return M


def sparse_depth_map(geo: SparseGeometry, i: int) -> np.ndarray:
    """The sparse points image ``i`` observes as a depth map: (H, W) float32 of their camera-frame
    z (pose units) at the pixel each projects to (``floor`` of the pixel coordinates, centres at
    +0.5), the nearest point where several land on one pixel, 0 elsewhere.  (W, H) is
    ``geo.sizes[i]``.  Lets the SfM structure be scored like a depth map (``mannequin eval --which
    sparse``), independently of the stereo."""
    W, H = (int(v) for v in geo.sizes[i])
    out = np.zeros((H, W), np.float32)
    X = geo.points[geo.observations[i]] @ geo.R[i].T + geo.t[i]
    X = X[X[:, 2] > 0]
    if not len(X):
        return out
    uv = X[:, :2] / X[:, 2:3] @ geo.K[i][:2, :2].T + geo.K[i][:2, 2]
    c, r = np.floor(uv[:, 0]).astype(np.int64), np.floor(uv[:, 1]).astype(np.int64)
    ok = (c >= 0) & (r >= 0) & (c < W) & (r < H)
    order = np.argsort(-X[ok, 2])  # far first, so the nearest point is written last
    out[r[ok][order], c[ok][order]] = X[ok, 2][order]
    return out


def neighbours_for(names: Sequence[str], sources: Sequence[str], name: str, n: int) -> list[str]:
    """Up to ``n`` neighbours of frame ``name``: its stereo ``sources`` first (those in ``names``),
    then the nearest frames of ``names`` in sequence."""
    names = list(names)
    out = [s for s in sources if s in names and s != name][:n]
    i = names.index(name)
    for k in range(1, len(names)):
        for j in (i - k, i + k):
            if len(out) >= n:
                return out
            if 0 <= j < len(names) and names[j] not in out:
                out.append(names[j])
    return out


def depth_range(geo: SparseGeometry, i: int, percentiles: tuple[float, float] = (1.0, 99.0),
                margin: float = 0.15, min_points: int = 20) -> tuple[float, float]:
    """(near, far) for image ``i``: robust percentiles of the z-depths of the points it sees,
    widened by ``margin`` (a fraction).  Falls back to all points in front of the camera when the
    image sees fewer than ``min_points``.  Units: those of the poses.  Raises :class:`StageError`
    when fewer than 2 points lie in front of the camera.
    """
    pts = geo.points[geo.observations[i]]
    if len(pts) < min_points:
        pts = geo.points
    z = pts @ geo.R[i][2] + geo.t[i][2]
    z = z[z > 0]
    if len(z) < 2:
        raise StageError(f"image {geo.names[i]}: no sparse points in front of the camera (poses and points "
                         "disagree, or the frames have too little texture)")
    lo, hi = np.percentile(z, percentiles)
    near, far = lo * (1 - margin), hi * (1 + margin)
    return float(max(near, 1e-6)), float(max(far, near * 1.01))


def ground_plane(geo: SparseGeometry, max_tilt_deg: float = 35.0, tol: float = 0.01,
                 min_inliers: float = 0.10, iterations: int = 2000, seed: int = 0) -> tuple[np.ndarray, float] | None:
    """The dominant plane below the cameras (a floor or ground), for a second sweep direction.

    RANSAC over ``geo.points`` (seeded) for the plane with the most points within ``tol`` × the
    scene's median point spread, among planes whose normal lies within ``max_tilt_deg`` of the
    cameras' mean "down" (their image y axis, OpenCV).  Returns ``(n, c)``: the unit normal
    (world, pointing from the cameras towards the plane) and ``c`` = n·X on the plane, or None when
    fewer than ``min_inliers`` (a share) of the points lie on any such plane, or a camera is not
    above it (no second sweep direction for such a clip).
    """
    P = np.asarray(geo.points, dtype=np.float64)
    if len(P) < 20 or len(geo.names) < 2:
        return None
    down = np.mean([np.asarray(R).T @ np.array([0.0, 1.0, 0.0]) for R in geo.R], axis=0)
    if not np.linalg.norm(down) > 0.5:  # the cameras disagree on "down" (rolled or looking around)
        return None
    down /= np.linalg.norm(down)
    spread = float(np.median(np.linalg.norm(P - np.median(P, axis=0), axis=1)))
    rng = np.random.default_rng(seed)
    cos_max = np.cos(np.radians(max_tilt_deg))
    best_count, best = 0, None
    for _ in range(iterations):
        a, b, c = P[rng.choice(len(P), 3, replace=False)]
        n = np.cross(b - a, c - a)
        norm = np.linalg.norm(n)
        if norm < 1e-12:
            continue
        n /= norm
        if n @ down < 0:
            n = -n
        if n @ down < cos_max:
            continue
        count = int(np.count_nonzero(np.abs((P - a) @ n) < tol * spread))
        if count > best_count:
            best_count, best = count, (n, float(n @ a))
    if best is None or best_count < min_inliers * len(P):
        return None
    n, _ = best
    inl = np.abs(P @ n - best[1]) < tol * spread  # refine: least squares through the inliers
    q = P[inl] - P[inl].mean(axis=0)
    n2 = np.linalg.svd(q, full_matrices=False)[2][-1]
    n2 = n2 if n2 @ n > 0 else -n2
    c2 = float(n2 @ P[inl].mean(axis=0))
    above = np.asarray(geo.centers) @ n2 < c2  # the plane lies ahead along n: the camera is above it
    return (n2, c2) if above.all() else None


def plane_offset_range(geo: SparseGeometry, i: int, plane: tuple[np.ndarray, float], low: float = 0.4,
                       margin: float = 0.15) -> tuple[np.ndarray, tuple[float, float]]:
    """For image ``i`` and a world ``plane`` = (n, c) from :func:`ground_plane`: the plane normal in
    the camera (``R n``) and the range of offsets d (n·X = d, camera frame) to sweep: from ``low``
    times the plane's own offset (surfaces parallel to it, up to part of the way to the camera) to
    the plane's offset plus ``margin``.  Raises :class:`StageError` when the camera is not above it."""
    n, c = plane
    n_cam = np.asarray(geo.R[i]) @ n
    d_plane = c - float(np.asarray(geo.centers[i]) @ n)  # the camera's distance to the plane
    if not d_plane > 0:
        raise StageError(f"image {geo.names[i]}: the camera is not above the ground plane")
    return n_cam, (low * d_plane, d_plane * (1 + margin))


def select_views(geo: SparseGeometry, n_sources: int = 6, min_angle_deg: float = 1.0,
                 good_angle_deg: float = 8.0, max_angle_deg: float = 45.0) -> dict[str, list[str]]:
    """For each image, up to ``n_sources`` source images with overlap, parallax and a spread of baselines.

    Score of a candidate = Σ over covisible points of w(θ), with w rising linearly to 1 at
    ``good_angle_deg`` and 0 outside [``min_angle_deg``, ``max_angle_deg``].  Sources are chosen
    greedily by score, discounted when a chosen source already has a similar baseline (direction
    within 20° and length within a factor 1.5), so that short and long, left and right baselines
    are all represented.  Returns {ref name: [source names, best first]}.
    """
    out: dict[str, list[str]] = {}
    sets = [set(o.tolist()) for o in geo.observations]
    for i, name in enumerate(geo.names):
        cands = []
        for j in range(len(geo.names)):
            if j == i:
                continue
            common = np.fromiter(sets[i] & sets[j], dtype=np.int64)
            if len(common) < 5:
                continue
            ang = triangulation_angle_deg(geo.centers[i], geo.centers[j], geo.points[common])
            w = np.clip(ang / good_angle_deg, 0, 1) * ((ang >= min_angle_deg) & (ang <= max_angle_deg))
            score = float(w.sum())
            if score > 0:
                cands.append((score, j))
        cands.sort(key=lambda s: (-s[0], s[1]))
        chosen: list[int] = []
        pool = list(cands)
        while pool and len(chosen) < n_sources:
            best, best_k = None, -1
            for k, (score, j) in enumerate(pool):
                s = score * _diversity(geo, i, j, chosen)
                if best is None or s > best:
                    best, best_k = s, k
            chosen.append(pool.pop(best_k)[1])
        out[name] = [geo.names[j] for j in chosen]
    return out


def _diversity(geo: SparseGeometry, i: int, j: int, chosen: Sequence[int]) -> float:
    """1, or 0.3 when ``j``'s baseline from ``i`` resembles one already chosen."""
    bj = geo.centers[j] - geo.centers[i]
    for k in chosen:
        bk = geo.centers[k] - geo.centers[i]
        nj, nk = np.linalg.norm(bj), np.linalg.norm(bk)
        if nj < 1e-12 or nk < 1e-12:
            continue
        cos = float(bj @ bk) / (nj * nk)
        if cos > np.cos(np.radians(20)) and max(nj, nk) / min(nj, nk) < 1.5:
            return 0.3
    return 1.0


def relative_pose(geo: SparseGeometry, ref: int, src: int) -> tuple[np.ndarray, np.ndarray]:
    """(R, t) of image ``src`` from image ``ref``: X_src = R X_ref + t."""
    R = geo.R[src] @ geo.R[ref].T
    t = geo.t[src] - R @ geo.t[ref]
    return R, t

def probe_pairs(names: Sequence[str], views: dict[str, list[str]], n: int) -> list[tuple[str, str]]:
    """``n`` (probe, neighbour) frame pairs for the window choice: probes evenly spread over the
    clip (never the first or last frame when there are more), each with its first fusion
    neighbour (:func:`mannequin.stereo.views.neighbours_for`: its first stereo source).  ``views``: the
    stereo sources per frame name."""
    names = list(names)
    if n <= 0 or len(names) < 2:
        return []
    picks = sorted({int(round(k)) for k in np.linspace(0, len(names) - 1, n + 2)[1:-1]})
    out = []
    for k in picks:
        nb = neighbours_for(names, views.get(names[k], []), names[k], 1)
        if nb:
            out.append((names[k], nb[0]))
    return out
