"""Plain numpy/scipy plane sweep (speed baseline and correctness oracle) and its synthetic views.

``numpy_plane_sweep`` computes the same cost as :func:`mannequin.stereo.sweep.plane_sweep` —
bilinear warp through each fronto-parallel plane (``scipy.ndimage.map_coordinates``, order 1,
edge-replicated), ZNCC over a box window (``scipy.ndimage.uniform_filter``, edge-replicated),
invalid where the warped window centre leaves the source, mean of the best ``top_k`` valid source
costs — but holds the whole cost volume in float64.  It re-derives the warp by back-projecting
each pixel to 3-D instead of using the homography, so it also checks the kernel's geometry.

A helper module, not a benchmark script: ``benchmarks/stereo.py`` times the baseline beside the
kernel in the same run (and uses :func:`plane_scene`), and ``tests/stereo/kernels/test_fronto.py``
uses it as the oracle.  :func:`plane_scene` renders a reference and source views of one textured
plane with exact depth.

Conventions as in :mod:`mannequin.stereo.sweep`: pixel (i, j) has its centre at (j + 0.5, i + 0.5);
a source pose ``(R, t)`` maps reference-camera points to the source camera, ``X_s = R X + t``;
depth is the reference camera's z, in pose units.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy.ndimage import gaussian_filter, map_coordinates, uniform_filter

from mannequin.io.images import to_grey

MIN_STD = 0.5 / 255.0   # same constants as mannequin.stereo.sweep
CONF_SCALE = 0.5


def _grey(img: np.ndarray) -> np.ndarray:
    """(H, W) float64 grey in [0, 1]: :func:`mannequin.io.images.to_grey`, widened for the float64 volume."""
    return to_grey(img).astype(np.float64)


def numpy_plane_sweep(ref: np.ndarray, sources: Sequence[np.ndarray], K_ref: np.ndarray,
                      K_sources: Sequence[np.ndarray], R: Sequence[np.ndarray], t: Sequence[np.ndarray],
                      depth_range: tuple[float, float], n_planes: int = 128, window: int = 7, top_k: int = 2, *,
                      min_angle_deg: float = 1.0, subpixel: bool = False,
                      return_volume: bool = False) -> tuple[np.ndarray, ...]:
    """Fronto-parallel plane sweep of ``ref`` against ``sources``, the cost of ``plane_sweep``.

    ref, sources: (H, W) or (H, W, 3) images (uint8, uint16 or float in [0, 1]); K_ref, K_sources:
    (3, 3) intrinsics in pixels; R, t: per source the (3, 3) rotation and (3,) translation from the
    reference camera to the source camera; depth_range: (near, far), ``n_planes`` planes evenly
    spaced in inverse depth.  Sources whose median triangulation angle at the middle depth is under
    ``min_angle_deg`` get no vote.  Per plane the cost of a pixel is the mean of its ``top_k`` best
    valid source costs (1 − ZNCC over a ``window`` box); :func:`wta` picks the winner.

    Returns (depth (H, W) float32, 0 = no estimate, conf (H, W) float32 in [0, 1]) and, with
    ``return_volume``, the cost volume (n_planes, H, W) float32 (inf = no vote).
    """
    I = _grey(ref) - 0.5
    H, W = I.shape
    near, far = depth_range
    inv_d = np.linspace(1.0 / near, 1.0 / far, n_planes)
    mid = 2.0 / (1.0 / near + 1.0 / far)
    srcs = []
    for img, Ks, Rs, ts in zip(sources, K_sources, R, t, strict=False):
        Rs = np.asarray(Rs, float)
        ts = np.asarray(ts, float).ravel()
        C = -Rs.T @ ts
        u, v = np.meshgrid(np.linspace(0.5, W - 0.5, 5), np.linspace(0.5, H - 0.5, 5))
        X = np.linalg.solve(np.asarray(K_ref, float), np.stack([u.ravel(), v.ravel(), np.ones(25)]))
        X = X / X[2] * mid
        cosang = np.sum(X * (X - C[:, None]), 0) / (np.linalg.norm(X, axis=0)
                                                   * np.linalg.norm(X - C[:, None], axis=0))
        if np.median(np.degrees(np.arccos(np.clip(cosang, -1, 1)))) >= min_angle_deg:
            srcs.append((_grey(img) - 0.5, np.asarray(Ks, float), Rs, ts))
    vol = np.full((n_planes, H, W), np.inf, np.float32)
    if srcs:
        k = min(top_k, len(srcs))
        mI = uniform_filter(I, window, mode="nearest")
        varI = np.maximum(uniform_filter(I * I, window, mode="nearest") - mI * mI, 0)
        ref_ok = varI >= MIN_STD ** 2
        sdI = np.sqrt(np.maximum(varI, 1e-30))
        rr, cc = np.mgrid[0:H, 0:W].astype(np.float64)
        pix = np.stack([cc + 0.5, rr + 0.5, np.ones_like(cc)])          # pixel centres
        rays = np.einsum("ij,jhw->ihw", np.linalg.inv(np.asarray(K_ref, float)), pix)
        for p in range(n_planes):
            X = rays / rays[2] / inv_d[p]                                  # points on z = d
            costs = np.full((len(srcs), H, W), np.inf)
            for s, (src, Ks, Rs, ts) in enumerate(srcs):
                Xs = np.einsum("ij,jhw->ihw", Rs, X) + ts[:, None, None]
                q = np.einsum("ij,jhw->ihw", Ks, Xs)
                z = q[2]
                zs = np.where(z > 1e-12, z, 1e-12)
                x = q[0] / zs - 0.5                                        # array-index coords
                y = q[1] / zs - 0.5
                hs, ws = src.shape
                inside = (z > 1e-12) & (x >= -0.5) & (x <= ws - 0.5) & (y >= -0.5) & (y <= hs - 0.5)
                x = np.clip(x, 0, ws - 1)
                y = np.clip(y, 0, hs - 1)
                Wp = map_coordinates(src, [y, x], order=1, mode="nearest")
                mW = uniform_filter(Wp, window, mode="nearest")
                varW = uniform_filter(Wp * Wp, window, mode="nearest") - mW * mW
                cov = uniform_filter(I * Wp, window, mode="nearest") - mI * mW
                ncc = cov / (sdI * np.sqrt(np.maximum(varW, MIN_STD ** 2)))
                ok = inside & ref_ok
                costs[s][ok] = 1.0 - np.clip(ncc[ok], -1, 1)
            costs.sort(axis=0)
            top = costs[:k]
            fin = np.isfinite(top)
            n = fin.sum(0)
            agg = np.where(fin, top, 0).sum(0) / np.maximum(n, 1)
            vol[p] = np.where(n > 0, agg, np.inf)
    depth, conf = wta(vol, inv_d, subpixel)
    return (depth, conf, vol) if return_volume else (depth, conf)


def wta(vol: np.ndarray, inv_d: np.ndarray, subpixel: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Winner-take-all over a (P,H,W) cost volume with the kernel's parabola and confidence.

    inv_d: (P,) inverse depths of the planes, evenly spaced.  Returns (depth (H, W) float32, 0
    where every plane is inf; conf (H, W) float32).  With ``subpixel`` the winner moves by the
    vertex of the parabola through its neighbours' costs (at most half a plane).

    Confidence = clip(1 - best) * clip((second - best) / CONF_SCALE) where ``second`` is the
    lowest local minimum of the cost curve more than two planes from the winner (2 if none).
    """
    P, H, W = vol.shape
    idx = np.argmin(vol, axis=0)
    best = np.take_along_axis(vol, idx[None], 0)[0].astype(np.float64)
    has = np.isfinite(best)
    pad = np.full((1, H, W), np.inf, vol.dtype)
    below = np.concatenate([pad, vol[:-1]])            # cost at plane q-1
    above = np.concatenate([vol[1:], pad])             # cost at plane q+1
    locmin = (vol < below) & (vol <= above) & np.isfinite(vol)
    planes = np.arange(P)[:, None, None]
    far_from = np.abs(planes - idx[None]) > 2
    second = np.where(locmin & far_from, vol, np.inf).min(0)
    second = np.minimum(second, 2.0)
    x = idx.astype(np.float64)
    if subpixel:
        im = np.clip(idx - 1, 0, P - 1)
        ip = np.clip(idx + 1, 0, P - 1)
        cm = np.take_along_axis(vol, im[None], 0)[0].astype(np.float64)
        cp = np.take_along_axis(vol, ip[None], 0)[0].astype(np.float64)
        den = cm - 2 * best + cp
        use = (idx > 0) & (idx < P - 1) & np.isfinite(cm) & np.isfinite(cp) & (den > 1e-9)
        with np.errstate(invalid="ignore", divide="ignore"):
            delta = np.clip(0.5 * (cm - cp) / den, -0.5, 0.5)
        x = x + np.where(use, delta, 0.0)
    step = (inv_d[-1] - inv_d[0]) / (P - 1)
    inv = inv_d[0] + x * step
    depth = np.where(has, 1.0 / inv, 0.0).astype(np.float32)
    with np.errstate(invalid="ignore"):
        conf = np.clip(1 - best, 0, 1) * np.clip((second - best) / CONF_SCALE, 0, 1)
    conf = np.where(has, conf, 0.0).astype(np.float32)
    return depth, conf


# --------------------------------------------------------------------------- synthetic views
def make_texture(size: int = 512, sigma: float = 1.5, seed: int = 0) -> np.ndarray:
    """(size, size) float64 random texture in [0, 1] (mostly within [0.1, 0.9]).

    Fine noise (Gaussian blur ``sigma`` px) plus coarser noise (6 ``sigma``), normalised.
    """
    rng = np.random.default_rng(seed)
    fine = gaussian_filter(rng.standard_normal((size, size)), sigma)
    coarse = gaussian_filter(rng.standard_normal((size, size)), 6 * sigma)
    tex = fine / fine.std() + 0.7 * coarse / coarse.std()
    tex = (tex - tex.mean()) / tex.std()
    return np.clip(0.5 + 0.15 * tex, 0.0, 1.0)


def render_plane(K: np.ndarray, R: np.ndarray, t: np.ndarray, shape: tuple[int, int],
                 plane_point: np.ndarray, e1: np.ndarray, e2: np.ndarray, texture: np.ndarray,
                 texel: float) -> tuple[np.ndarray, np.ndarray]:
    """Render a textured plane seen by camera X_cam = R X + t (K: pixel centres at +0.5).

    shape: (H, W).  The plane passes through ``plane_point`` with orthonormal in-plane axes ``e1,
    e2``; the texture is sampled (cubic) at (e1·(X-P0), e2·(X-P0)) / texel around its centre
    (``texel``: the size of one texture cell, scene units).  Returns (image (H, W) float64 in [0,
    1], depth (H, W) float64: z in the camera).
    """
    H, W = shape
    R = np.asarray(R, float)
    t = np.asarray(t, float)
    rr, cc = np.mgrid[0:H, 0:W].astype(np.float64)
    pix = np.stack([cc + 0.5, rr + 0.5, np.ones_like(cc)])
    rays = R.T @ np.einsum("ij,jhw->ihw", np.linalg.inv(K), pix).reshape(3, -1)
    o = -R.T @ t
    n = np.cross(e1, e2)
    lam = (n @ (np.asarray(plane_point) - o)) / (n @ rays)
    X = o[:, None] + lam * rays
    d = X - np.asarray(plane_point)[:, None]
    a = (np.asarray(e1) @ d) / texel + texture.shape[1] / 2
    b = (np.asarray(e2) @ d) / texel + texture.shape[0] / 2
    img = map_coordinates(texture, [b, a], order=3, mode="reflect").reshape(H, W)
    z = (R @ X + t[:, None])[2].reshape(H, W)
    return np.clip(img, 0, 1), z


def plane_scene(H: int = 120, W: int = 160, n_src: int = 4, slant_deg: float = 0.0, depth: float = 4.0,
                f: float | None = None, baseline: float = 0.35, seed: int = 0, uint8: bool = False) -> dict:
    """A reference and ``n_src`` translated/rotated sources looking at one textured plane.

    The plane passes through (0, 0, ``depth``) in the reference camera, tilted by ``slant_deg``
    about the camera's y axis; the sources sit on an ellipse of radius ``baseline`` around the
    reference centre, turned a little towards the plane.  f: focal length in pixels (default W).
    Images are (H, W) float64 in [0, 1], or uint8 with ``uint8``.

    Returns dict(ref, sources, K_ref, K_sources, R, t, depth_range, gt): the arguments of
    :func:`numpy_plane_sweep` (``depth_range`` = (depth / 2, 2.5 depth)) and ``gt`` the true
    (H, W) depth of the reference.
    """
    f = f or 1.0 * W
    K = np.array([[f, 0, W / 2], [0, f, H / 2], [0, 0, 1.0]])
    rng = np.random.default_rng(seed)
    th = math.radians(slant_deg)
    e1 = np.array([math.cos(th), 0.0, math.sin(th)])
    e2 = np.array([0.0, 1.0, 0.0])
    P0 = np.array([0.0, 0.0, depth])
    tex = make_texture(1024, seed=seed)
    texel = depth / f * 0.8
    ref, gt = render_plane(K, np.eye(3), np.zeros(3), (H, W), P0, e1, e2, tex, texel)
    sources, Rs, ts = [], [], []
    for i in range(n_src):
        ang = 2 * math.pi * i / n_src + rng.uniform(-0.3, 0.3)
        C = baseline * np.array([math.cos(ang), 0.6 * math.sin(ang), rng.uniform(-0.2, 0.2)])
        yaw = math.atan2(-C[0], depth) * 0.5                 # turn a bit towards the plane
        Rs_ = np.array([[math.cos(yaw), 0, math.sin(yaw)], [0, 1, 0], [-math.sin(yaw), 0, math.cos(yaw)]])
        t_ = -Rs_ @ C
        img, _ = render_plane(K, Rs_, t_, (H, W), P0, e1, e2, tex, texel)
        sources.append(img)
        Rs.append(Rs_)
        ts.append(t_)
    if uint8:
        ref = np.round(ref * 255).astype(np.uint8)
        sources = [np.round(s * 255).astype(np.uint8) for s in sources]
    return dict(ref=ref, sources=sources, K_ref=K, K_sources=[K] * n_src, R=Rs, t=ts,
                depth_range=(depth / 2.0, depth * 2.5), gt=gt)
