"""Plain numpy/scipy plane sweep (speed baseline and correctness oracle) and a throughput check.

``numpy_plane_sweep`` computes the same cost as :func:`mannequin.stereo_core.plane_sweep` —
bilinear warp through each fronto-parallel plane (``scipy.ndimage.map_coordinates``, order 1,
edge-replicated), ZNCC over a box window (``scipy.ndimage.uniform_filter``, edge-replicated),
invalid where the warped window centre leaves the source, mean of the best ``top_k`` valid source
costs — but holds the whole cost volume in float64.  It re-derives the warp by back-projecting
each pixel to 3-D instead of using the homography, so it also checks the kernel's geometry.

Run by hand:  ``python benchmarks/numpy_sweep.py [--quick]``  prints a table and writes
``benchmarks/results/numpy_sweep.json``: kernel hypotheses/s at 640×480, 128 planes, 4 sources,
2 threads; the numpy baseline's hypotheses/s (fewer planes, per hypothesis); compile vs cached
first-call times (fresh NUMBA_CACHE_DIR in subprocesses).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from scipy.ndimage import gaussian_filter, map_coordinates, uniform_filter

MIN_STD = 0.5 / 255.0   # same constants as mannequin.stereo_core
CONF_SCALE = 0.5
_GREY = np.array([0.299, 0.587, 0.114])


def _grey(img) -> np.ndarray:
    a = np.asarray(img)
    if a.dtype == np.uint8 or a.dtype == np.uint16:
        a = a.astype(np.float64) / np.iinfo(a.dtype).max
    else:
        a = a.astype(np.float64)
    if a.ndim == 3:
        a = a[..., :3] @ _GREY
    return a


def numpy_plane_sweep(ref, sources, K_ref, K_sources, R, t, depth_range, n_planes=128, window=7,
                      top_k=2, *, min_angle_deg=1.0, subpixel=False, return_volume=False):
    """Reference implementation.  Returns (depth, conf[, volume (P,H,W) float32, inf = no vote])."""
    I = _grey(ref) - 0.5
    H, W = I.shape
    near, far = depth_range
    inv_d = np.linspace(1.0 / near, 1.0 / far, n_planes)
    mid = 2.0 / (1.0 / near + 1.0 / far)
    srcs = []
    for img, Ks, Rs, ts in zip(sources, K_sources, R, t):
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


def wta(vol, inv_d, subpixel=False):
    """Winner-take-all over a (P,H,W) cost volume with the kernel's parabola and confidence.

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
def make_texture(size=512, sigma=1.5, seed=0) -> np.ndarray:
    """Smooth-ish random texture in about [0.1, 0.9]."""
    rng = np.random.default_rng(seed)
    fine = gaussian_filter(rng.standard_normal((size, size)), sigma)
    coarse = gaussian_filter(rng.standard_normal((size, size)), 6 * sigma)
    tex = fine / fine.std() + 0.7 * coarse / coarse.std()
    tex = (tex - tex.mean()) / tex.std()
    return np.clip(0.5 + 0.15 * tex, 0.0, 1.0)


def render_plane(K, R, t, shape, plane_point, e1, e2, texture, texel):
    """Render a textured plane seen by camera X_cam = R X + t (K: pixel centres at +0.5).

    The plane passes through ``plane_point`` with orthonormal in-plane axes ``e1, e2``; the texture
    is sampled (cubic) at (e1·(X-P0), e2·(X-P0)) / texel around its centre.  Returns (image float
    in [0,1], depth z in the camera).
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


def plane_scene(H=120, W=160, n_src=4, slant_deg=0.0, depth=4.0, f=None, baseline=0.35, seed=0,
                uint8=False):
    """A reference and ``n_src`` translated/rotated sources looking at one textured plane.

    Returns dict(ref, sources, K_ref, K_sources, R, t, depth_range, gt) with gt the true depth.
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


# --------------------------------------------------------------------------- throughput check
def _first_call_seconds(cache_dir: str) -> float:
    code = ("import time,sys;sys.path.insert(0,'benchmarks');import numpy_sweep as b;"
            "from mannequin.stereo_core import plane_sweep;sc=b.plane_scene(48,64,2);"
            "t0=time.perf_counter();plane_sweep(sc['ref'],sc['sources'],sc['K_ref'],sc['K_sources'],"
            "sc['R'],sc['t'],sc['depth_range'],8,n_threads=2);print(time.perf_counter()-t0)")
    env = dict(os.environ, NUMBA_CACHE_DIR=cache_dir)
    root = Path(__file__).resolve().parents[1]
    out = subprocess.run([sys.executable, "-c", code], env=env, cwd=root, capture_output=True,
                         text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer repeats, smaller numpy run")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--planes", type=int, default=128)
    args = ap.parse_args(argv)
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from mannequin.stereo_core import plane_sweep

    with tempfile.TemporaryDirectory() as d:
        compile_s = _first_call_seconds(d)
        cached_s = _first_call_seconds(d)

    H, W, S, P = 480, 640, 4, args.planes
    sc = plane_scene(H, W, S, slant_deg=20, uint8=True)
    call = (sc["ref"], sc["sources"], sc["K_ref"], sc["K_sources"], sc["R"], sc["t"], sc["depth_range"])
    plane_sweep(*call, 4, n_threads=args.threads)   # warm
    times = []
    for _ in range(1 if args.quick else 3):
        t0 = time.perf_counter()
        depth, conf = plane_sweep(*call, P, n_threads=args.threads)
        times.append(time.perf_counter() - t0)
    k_s = min(times)
    k_rate = H * W * P * S / k_s
    good = depth > 0
    relerr = float(np.median(np.abs(depth[good] - sc["gt"][good]) / sc["gt"][good]))

    Pn = 2 if args.quick else 4
    t0 = time.perf_counter()
    numpy_plane_sweep(*call, Pn, 7, 2)
    n_s = time.perf_counter() - t0
    n_rate = H * W * Pn * S / n_s

    label = f"kernel hypotheses/s (640x480, {P} planes, {S} src, {args.threads} thr)"
    rows = [(label, f"{k_rate:.3g}"),
            ("kernel seconds per call", f"{k_s:.3f}"),
            ("kernel median rel. depth error (slanted plane)", f"{relerr:.4f}"),
            ("numpy hypotheses/s (%d planes, extrapolated per hypothesis)" % Pn, f"{n_rate:.3g}"),
            ("speed-up kernel / numpy", f"{k_rate / n_rate:.1f}x"),
            ("first call, fresh compile (s)", f"{compile_s:.2f}"),
            ("first call, from numba cache (s)", f"{cached_s:.2f}")]
    wd = max(len(r[0]) for r in rows)
    for name, val in rows:
        print(f"{name:<{wd}}  {val}")
    res = dict(kernel_hyp_per_s=k_rate, kernel_seconds=k_s, kernel_times=times, numpy_hyp_per_s=n_rate,
               numpy_planes=Pn, speedup=k_rate / n_rate, compile_first_call_s=compile_s,
               cached_first_call_s=cached_s, median_rel_err=relerr, shape=[H, W], planes=P,
               sources=S, threads=args.threads)
    out = Path(__file__).resolve().parent / "results" / "numpy_sweep.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
