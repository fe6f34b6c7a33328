"""Plane-sweep stereo benchmark: speed, two-view and many-view accuracy on real data, synthetic accuracy.

Run by hand:  ``python benchmarks/stereo.py [--quick] [--threads N] [--out FILE]``

Prints a table (name, measured, target, met) and writes ``benchmarks/results/stereo.json``
(atomically: a temporary file, then a rename) with every number, the targets, the machine, the date
and the git commit.  Every timing that is compared with a baseline is measured in the same run
(the machine is shared and noisy: read the ratios, not the absolute seconds).  Only the public API
is called: :func:`mannequin.stereo.sweep.plane_sweep`, :func:`mannequin.testing.synth.render_clip`,
:func:`mannequin.metrics.depth_metrics`.

Sections
1. ``throughput``: hypotheses/s (pixel × plane × source view) of ``plane_sweep`` at 640×480, 128
   planes, 4 sources, ``--threads`` threads on the slanted textured plane of
   ``mannequin.testing.numpy_sweep.plane_scene``; best of 3 timed calls after one warm-up call with the same
   arguments.  Baseline: ``numpy_sweep.numpy_plane_sweep`` (same cost: map_coordinates +
   uniform_filter, float64 volume) timed on a few planes and scaled per hypothesis.  Compile time:
   the first call (small scene) in a fresh subprocess with ``NUMBA_CACHE_DIR`` an empty temporary
   folder (cold compile), and in a fresh subprocess with the normal cache (cached load; run twice,
   the second is reported, so that a cache made stale by an edit of the kernels is rebuilt first).
   Builds (issue 27): the same timings (on ``--threads`` threads and on one) and numpy baseline in a
   fresh subprocess per entry of ``BUILDS``, compiled into an empty cache for that instruction set:
   ``znver1`` (a first-generation AMD EPYC, AVX2 only) is ``NUMBA_CPU_NAME=znver1`` *with*
   ``NUMBA_CPU_FEATURES`` empty; the name alone keeps the host's AVX-512.  Targets for it: >= 2e8
   hypotheses/s and >= 30x numpy.  Its main kernel's assembly is counted (zmm/ymm registers, gathers).
   After install: what ``make install`` leaves, i.e. ``python -m mannequin.warmup`` (the Numba
   cache warm-up, :func:`mannequin.warmup.warm_numba_cache`) into an empty temporary
   ``NUMBA_CACHE_DIR``, then, in another fresh subprocess with that cache, the same first call and
   a tiny pipeline run on another clip (seed 1, 10 frames of 192×144, default preset); reported:
   the first call's seconds and the kernel signatures each compiled (target: none, under 2 s).
2. ``motorcycle``: the scikit-image Middlebury 2014 pair (left = reference).  Calibration from its
   PROVENANCE.md: f = 994.978 px, cx = 311.193, cy = 254.877, doffs = 31.086 px, baseline
   193.001 mm.  The right camera sits at +baseline on the left camera's x axis, so
   X_right = X_left − (B, 0, 0): R = I, t = (−B, 0, 0); its principal point is cx + doffs.  Then
   x_left − x_right = f·B/Z − doffs, i.e. disparity d = f·B/Z − doffs and Z = f·B/(d + doffs)
   (the Middlebury formula).  Planes are uniform in inverse depth = uniform in disparity over
   ``MOTO_DISP`` with ``--moto-step`` px steps, top_k = 1, ``lr_check=True`` (left-right check from
   the same window costs: a pixel whose right-image pixel prefers another plane (by more than
   ``LR_MAX_DIFF`` steps) gets confidence 0, its depth is kept; ``--no-moto-lr`` turns it off).
   At whole-pixel steps the right image takes the integer-shift path (source window statistics
   precomputed, blocks of 4 planes).  Baseline: OpenCV StereoSGBM (MODE_SGBM,
   colour input, blockSize 5, P1 = 8·3·5², P2 = 32·3·5², uniquenessRatio 10, disp12MaxDiff 1,
   speckle filter window 100 / range 2, numDisparities 128 as the issue asks (the GT maximum is
   59.9 px; SGBM leaves its leftmost numDisparities columns without disparity, which lowers its
   density), with ``cv2.setNumThreads(--threads)``.  Both timed as the best of 7, interleaved, after a warm-up.  bad-N = share of
   the pixels with GT and a prediction where |d − d*| > N px; density = share of the GT pixels with
   a prediction.  "bad-2 at SGBM's density": our GT pixels with a prediction, sorted by our
   confidence, the most confident kept until our density equals SGBM's.
3. ``cones``: Middlebury 2003 Cones, 9 collinear rectified views; references 2 and 6, sources the 8
   other views.  Geometry (PROVENANCE.md): camera i at (i·b, 0, 0), identical K; we take b = 1 (one
   view step), f = 450 px (arbitrary: no metric calibration exists), principal point at the image
   centre, so depth is in view-step units and d_step = f/Z.  Source s of reference r: R = I,
   t = (−(s − r), 0, 0).  GT value v: disparity between views 2 and 6 = v/4 px = 4·d_step, so our
   disparity in GT units is 4·f/Z.  Planes: 128, uniform in d_step over ``CONES_DSTEP`` (≈ 0.49 px
   steps in GT units).  ``min_angle_deg = 0``: with f arbitrary the triangulation angles are too
   (the 1-step neighbours subtend < 1° at f = 450 and would otherwise be dropped).  Reported:
   bad-1 (GT units) at several densities, obtained by thresholding our confidence (the most
   confident share of the GT pixels; density = share of the GT pixels, 0 = unknown in the GT).
4. ``synthetic``: ``render_clip(seed=0, n_frames=9, width=640, height=480)``, reference frame 4,
   sources frames 0, 1, 2, 6, 7, 8 (baselines 2–4 frame steps of 45 mm, all above the default
   1° triangulation-angle cut; the ±1 frames would be dropped by it), GT poses,
   depth_range = (p1 · 0.85, p99 · 1.15) of the reference's GT depth, 128 planes, defaults
   otherwise (top_k = 2, subpixel).  Reported: median relative error, δ(1.05) and density of the raw
   depth (depth_metrics), and the same for a plain 128-plane winner-take-all: the same sweep with
   no parabola refinement (subpixel = False), no shiftable windows (shift = 0) and no smoothing
   (smooth = 0).  The target row is met when ours is <= 0.35% *and* below the plain WTA's.

5. ``scaling`` (skipped under ``--quick``): hypotheses/s of ``plane_sweep`` against the number of
   planes ``SCALING_PLANES`` (at 4 sources) and against the number of source views
   ``SCALING_SOURCES`` (at 128 planes), at ``SCALING_SHAPE`` (smaller than section 1 to stay cheap)
   on the same slanted-plane scene with 8 sources, defaults otherwise (top_k 2, subpixel, shiftable
   windows, smoothing), ``--threads`` threads, best of 3 after a warm-up.  Plotted in
   ``results/stereo_throughput.png`` (next to ``--out``).

``--quick``: one timed call instead of 3, 2 numpy planes instead of 4, no cold-compile or after-install subprocesses,
Cones reference 2 only, no scaling section.
"""
from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import cpu_model, print_target_table, save_figure  # noqa: E402

sys.path.insert(0, str(REPO / "benchmarks"))
DATA = Path(os.environ.get("MANNEQUIN_DATA", REPO.parent / "shared" / "data"))
RESULTS = REPO / "benchmarks" / "results" / "stereo.json"

# skimage motorcycle calibration (PROVENANCE.md; valid for the 4x-downsampled pair)
MOTO_F, MOTO_CX, MOTO_CY, MOTO_DOFFS, MOTO_B = 994.978, 311.193, 254.877, 31.086, 193.001
MOTO_DISP = (4.0, 64.0)        # swept disparity range (px); GT spans 7.2 .. 59.9
SGBM_NUM_DISP = 128            # the setting (a multiple of 16 covering the GT maximum, 59.9 px)
SGBM_BLOCK = 5
# Middlebury Cones geometry (our convention, see the docstring)
CONES_F = 450.0
CONES_DSTEP = (0.5, 16.0)      # swept disparity per view step (px); GT spans 1.1 .. 13.75
CONES_PLANES = 128
CONES_DENSITIES = (1.0, 0.9, 0.8, 0.7, 0.5)
SYNTH_REF = 4
SCALING_SHAPE = (240, 320)
SCALING_PLANES = (32, 64, 128, 192)
SCALING_SOURCES = (1, 2, 4, 8)
SYNTH_SOURCES = (0, 1, 2, 6, 7, 8)

TARGETS = {
    "throughput_hyp_per_s": 2e8,
    "speedup_vs_numpy": 20.0,
    "moto_time_ratio_ours_over_sgbm": 1.0,
    "moto_bad2_at_sgbm_density_minus_sgbm": 0.0,
    "synth_median_rel_err": 0.0035,
}


# --------------------------------------------------------------------------- helpers
def _best_time(fn, repeats: int):
    """Best wall time of ``repeats`` calls after one warm-up call; returns (best, times, last result)."""
    out = fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return min(times), times, out


def _bad(pred_disp, gt_disp, thresholds=(1.0, 2.0)):
    """bad-N over pixels with GT and a prediction, and density over the GT pixels."""
    gt_ok = np.isfinite(gt_disp)
    both = gt_ok & np.isfinite(pred_disp)
    err = np.abs(pred_disp[both] - gt_disp[both])
    out = {f"bad_{t:g}": float(np.mean(err > t)) if err.size else float("nan") for t in thresholds}
    out["density"] = float(both.sum() / max(gt_ok.sum(), 1))
    out["n"] = int(both.sum())
    return out


def _at_density(pred_disp, conf, gt_disp, density: float, threshold: float):
    """bad-``threshold`` over our most confident GT pixels, as many as ``density`` of the GT pixels."""
    gt_ok = np.isfinite(gt_disp)
    both = gt_ok & np.isfinite(pred_disp)
    c = conf[both]
    e = np.abs(pred_disp[both] - gt_disp[both])
    n = min(int(round(density * gt_ok.sum())), c.size)
    if n == 0:
        return {"bad": float("nan"), "density": 0.0, "conf_threshold": float("nan"), "n": 0}
    order = np.argsort(-c, kind="stable")[:n]
    return {"bad": float(np.mean(e[order] > threshold)), "density": float(n / gt_ok.sum()),
            "conf_threshold": float(c[order[-1]]), "n": int(n)}


def _imread_rgb(path: Path) -> np.ndarray:
    import cv2

    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise FileNotFoundError(path)
    return np.ascontiguousarray(img[:, :, ::-1])


# --------------------------------------------------------------------------- 1. throughput
_FIRST_CALL = (
    "import sys,time,json;sys.path.insert(0,{repo!r});sys.path.insert(0,{bench!r});"
    "t0=time.perf_counter();from mannequin.stereo.sweep import plane_sweep;t1=time.perf_counter();"
    "from mannequin.testing import numpy_sweep as b;sc=b.plane_scene(48,64,2);"
    "t2=time.perf_counter();plane_sweep(sc['ref'],sc['sources'],sc['K_ref'],sc['K_sources'],"
    "sc['R'],sc['t'],sc['depth_range'],8,n_threads={threads});t3=time.perf_counter();"
    "from mannequin.warmup import compile_counts;c=compile_counts();"
    "print(json.dumps(dict(import_s=t1-t0,first_call_s=t3-t2,compiled=c['misses'],loaded=c['hits'])))")
# After the first call: the whole pipeline on a tiny clip unlike the warm-up's (another seed, size,
# frame count), then the signatures that run compiled (the first call's excluded).
_FIRST_RUN = (
    ";import tempfile;from pathlib import Path;from mannequin.pipeline import run_video;"
    "from mannequin.config import preset;from mannequin.testing.synth import synth;"
    "d=Path(tempfile.mkdtemp(prefix='mannequin-first-run-'));"
    "clip=synth(d/'clip',seed=1,n_frames=10,width=192,height=144,video=True);"
    "t4=time.perf_counter();run_video(clip/'video.mp4',d/'ws',poses=clip/'cameras.txt',"
    "config=preset('default').replace(fuse=dict(min_kept_frames=2)));t5=time.perf_counter();"
    "import shutil;shutil.rmtree(d);r=compile_counts();"
    "print(json.dumps(dict(run_s=t5-t4,run_compiled=r['misses']-c['misses'],run_loaded=r['hits']-c['hits'])))")


def _first_call(threads: int, cache_dir=None, pipeline: bool = False) -> dict:
    """The first ``plane_sweep`` call in a fresh subprocess (``NUMBA_CACHE_DIR`` = ``cache_dir`` when
    given): import and call seconds, signatures compiled / loaded; with ``pipeline`` also a tiny
    pipeline run afterwards (``run_s``, ``run_compiled``, ``run_loaded``)."""
    code = _FIRST_CALL.format(repo=str(REPO), bench=str(REPO / "benchmarks"), threads=threads)
    if pipeline:
        code += _FIRST_RUN
    env = dict(os.environ)
    if cache_dir is not None:
        env["NUMBA_CACHE_DIR"] = cache_dir
    out = subprocess.run([sys.executable, "-c", code], env=env, cwd=REPO, capture_output=True,
                         text=True, timeout=300)
    if out.returncode != 0:
        raise RuntimeError("first-call subprocess failed: " + " | ".join(out.stderr.strip().splitlines()[-3:]))
    res: dict = {}
    for line in out.stdout.strip().splitlines():
        if line.startswith("{"):
            res.update(json.loads(line))
    return res


def _after_install(threads: int) -> dict:
    """What ``make install`` leaves: :func:`mannequin.warmup.warm_numba_cache` into an empty temporary
    ``NUMBA_CACHE_DIR`` (a subprocess, timed), then :func:`_first_call` with a tiny pipeline run in
    another fresh subprocess with that cache."""
    with tempfile.TemporaryDirectory(prefix="mannequin-numba-install-") as d:
        env = dict(os.environ, NUMBA_CACHE_DIR=d)
        t0 = time.perf_counter()
        out = subprocess.run([sys.executable, "-m", "mannequin.warmup"], env=env, cwd=REPO,
                             capture_output=True, text=True, timeout=900)
        warm_s = time.perf_counter() - t0
        if out.returncode != 0:
            raise RuntimeError("warm-up subprocess failed: " + " | ".join(out.stderr.strip().splitlines()[-3:]))
        return dict(_first_call(threads, d, pipeline=True), warmup_s=warm_s)


#: The AVX2-only build (issue 27): a first-generation AMD EPYC.  ``NUMBA_CPU_NAME`` alone keeps the
#: host's instruction set (AVX-512 here); an empty ``NUMBA_CPU_FEATURES`` gives the named CPU's own.
BUILDS = {"znver1": {"NUMBA_CPU_NAME": "znver1", "NUMBA_CPU_FEATURES": ""}}
SPEEDUP_TARGET_AVX2 = 30.0
THROUGHPUT_TARGET_AVX2 = 2e8


def _throughput_core(threads: int, quick: bool) -> dict:
    """The timed part of the throughput section in this process (whatever Numba build it runs):
    ``plane_sweep`` best of 3 (1 when ``quick``) after a warm-up call, on ``threads`` threads and on
    one, and the numpy baseline, in that order."""
    from mannequin.stereo import plane_sweep
    from mannequin.testing import numpy_sweep as nb

    res: dict = {"shape": [480, 640], "planes": 128, "sources": 4, "threads": threads}
    H, W, S, P = 480, 640, 4, 128
    sc = nb.plane_scene(H, W, S, slant_deg=20, uint8=True)
    call = (sc["ref"], sc["sources"], sc["K_ref"], sc["K_sources"], sc["R"], sc["t"], sc["depth_range"])
    best, times, (depth, conf) = _best_time(lambda: plane_sweep(*call, P, n_threads=threads),
                                            1 if quick else 3)
    res.update(kernel_s=best, kernel_times=times, hyp_per_s=H * W * P * S / best)
    if threads != 1:
        best1, _, _ = _best_time(lambda: plane_sweep(*call, P, n_threads=1), 1 if quick else 3)
        res["hyp_per_s_1_thread"] = H * W * P * S / best1
    good = (depth > 0) & (sc["gt"] > 0)
    res["kernel_median_rel_err_plane"] = float(np.median(np.abs(depth[good] - sc["gt"][good]) / sc["gt"][good]))
    Pn = 2 if quick else 4
    t0 = time.perf_counter()
    nb.numpy_plane_sweep(*call, Pn, 7, 2)
    res["numpy_s"] = time.perf_counter() - t0
    res["numpy_planes"] = Pn
    res["numpy_hyp_per_s"] = H * W * Pn * S / res["numpy_s"]
    res["speedup"] = res["hyp_per_s"] / res["numpy_hyp_per_s"]
    return res


def _throughput_build(threads: int, quick: bool, env_vars: dict) -> dict:
    """:func:`_throughput_core` in a fresh subprocess with ``env_vars`` (a Numba build) and an empty
    temporary ``NUMBA_CACHE_DIR`` (the kernels compile for that build first, untimed), plus the
    instruction set of its main kernel (``zmm`` / ``ymm`` register uses and gathers in the assembly)."""
    code = ("import sys,json,re;sys.path.insert(0,{bench!r});import stereo as b;"
            "r=b._throughput_core({threads},{quick});"
            "from mannequin.stereo.kernels import fronto;"
            "a=''.join(fronto.sweep_fronto.inspect_asm().values());"
            "r['asm']={{'zmm':a.count('%zmm'),'ymm':a.count('%ymm'),'gathers':len(re.findall(r'v(p)?gather',a))}};"
            "print(json.dumps(r))").format(bench=str(REPO / "benchmarks"), threads=threads, quick=quick)
    with tempfile.TemporaryDirectory(prefix="mannequin-numba-build-") as d:
        env = dict(os.environ, NUMBA_CACHE_DIR=d, **env_vars)
        out = subprocess.run([sys.executable, "-c", code], env=env, cwd=REPO, capture_output=True, text=True,
                             timeout=1200)
    if out.returncode != 0:
        raise RuntimeError("build subprocess failed: " + " | ".join(out.stderr.strip().splitlines()[-3:]))
    return json.loads([ln for ln in out.stdout.splitlines() if ln.startswith("{")][-1])


def bench_throughput(threads: int, quick: bool) -> dict:
    res: dict = {}
    if not quick:
        with tempfile.TemporaryDirectory(prefix="mannequin-numba-cold-") as d:
            res["cold"] = _first_call(threads, d)
        res["after_install"] = _after_install(threads)
    res.update(_throughput_core(threads, quick))
    if not quick:
        res["builds"] = {name: dict(_throughput_build(threads, quick, env), env=env) for name, env in BUILDS.items()}
    # cached load: normal cache (the warm-up above has written it if it was stale); first run
    # re-validates it, the second is the one reported
    _first_call(threads)
    res["cached"] = _first_call(threads)
    return res


# --------------------------------------------------------------------------- 2. motorcycle
def bench_motorcycle(threads: int, quick: bool, step: float, lr_check: bool = True) -> dict:
    import cv2

    from mannequin.stereo import plane_sweep

    d = DATA / "skimage_motorcycle"
    left = _imread_rgb(d / "motorcycle_left.png")
    right = _imread_rgb(d / "motorcycle_right.png")
    gt = np.load(d / "motorcycle_disp.npz")["arr_0"].astype(np.float64)
    gt[~np.isfinite(gt)] = np.nan
    f, B, doffs = MOTO_F, MOTO_B, MOTO_DOFFS
    K_ref = np.array([[f, 0, MOTO_CX], [0, f, MOTO_CY], [0, 0, 1.0]])
    K_src = K_ref.copy()
    K_src[0, 2] += doffs
    dmin, dmax = MOTO_DISP
    n_planes = int(math.ceil((dmax - dmin) / step)) + 1
    near, far = f * B / (dmax + doffs), f * B / (dmin + doffs)
    reps = 1 if quick else 7

    def ours():
        return plane_sweep(left, [right], K_ref, [K_src], [np.eye(3)], [np.array([-B, 0.0, 0.0])],
                           (near, far), n_planes, top_k=1, n_threads=threads, lr_check=lr_check)

    old = cv2.getNumThreads()
    cv2.setNumThreads(threads)
    try:
        bs = SGBM_BLOCK
        sgbm = cv2.StereoSGBM_create(minDisparity=0, numDisparities=SGBM_NUM_DISP, blockSize=bs,
                                     P1=8 * 3 * bs * bs, P2=32 * 3 * bs * bs, disp12MaxDiff=1,
                                     uniquenessRatio=10, speckleWindowSize=100, speckleRange=2,
                                     mode=cv2.STEREO_SGBM_MODE_SGBM)
        lb, rb = np.ascontiguousarray(left[:, :, ::-1]), np.ascontiguousarray(right[:, :, ::-1])
        # Interleaved (ours, SGBM, ours, ...) after one warm-up each, best of each: a burst of load
        # from another job hits both sides alike.
        depth, conf = ours()
        raw = sgbm.compute(lb, rb)
        times_ours, times_sgbm = [], []
        for _ in range(reps):
            t0 = time.perf_counter()
            depth, conf = ours()
            times_ours.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            raw = sgbm.compute(lb, rb)
            times_sgbm.append(time.perf_counter() - t0)
        t_ours, t_sgbm = min(times_ours), min(times_sgbm)
    finally:
        cv2.setNumThreads(old)
    with np.errstate(divide="ignore"):
        disp = np.where(depth > 0, f * B / np.where(depth > 0, depth, 1.0) - doffs, np.nan)
    sd = raw.astype(np.float64) / 16.0
    sd[raw < 0] = np.nan            # invalid = (minDisparity - 1) * 16

    m_ours, m_sgbm = _bad(disp, gt), _bad(sd, gt)
    at = _at_density(disp, conf, gt, m_sgbm["density"], 2.0)
    return {"n_planes": n_planes, "lr_check": lr_check, "disp_range": list(MOTO_DISP), "disp_step": (dmax - dmin) / (n_planes - 1),
            "depth_range": [near, far], "threads": threads,
            "ours": dict(m_ours, seconds=t_ours, times=times_ours),
            "sgbm": dict(m_sgbm, seconds=t_sgbm, times=times_sgbm,
                         params=dict(mode="MODE_SGBM", minDisparity=0, numDisparities=SGBM_NUM_DISP,
                                     blockSize=SGBM_BLOCK, P1=8 * 3 * SGBM_BLOCK ** 2,
                                     P2=32 * 3 * SGBM_BLOCK ** 2, disp12MaxDiff=1, uniquenessRatio=10,
                                     speckleWindowSize=100, speckleRange=2, input="colour")),
            "ours_bad_2_at_sgbm_density": at["bad"], "ours_conf_threshold_at_sgbm_density": at["conf_threshold"],
            "time_ratio_ours_over_sgbm": t_ours / t_sgbm}


# --------------------------------------------------------------------------- 3. cones
def bench_cones(threads: int, quick: bool) -> dict:
    import cv2

    from mannequin.stereo import plane_sweep

    d = DATA / "middlebury_cones"
    ims = [_imread_rgb(d / f"im{i}.ppm") for i in range(9)]
    H, W = ims[0].shape[:2]
    f = CONES_F
    K = np.array([[f, 0, W / 2], [0, f, H / 2], [0, 0, 1.0]])
    lo, hi = CONES_DSTEP
    near, far = f / hi, f / lo
    out = {"f": f, "baseline": 1.0, "dstep_range": list(CONES_DSTEP), "n_planes": CONES_PLANES,
           "gt_step": 4 * (hi - lo) / (CONES_PLANES - 1), "refs": {}}
    for ref in ((2,) if quick else (2, 6)):
        raw = cv2.imread(str(d / f"disp{ref}.pgm"), cv2.IMREAD_UNCHANGED)
        if raw is None:
            raise FileNotFoundError(d / f"disp{ref}.pgm")
        gt = raw.astype(np.float64) / 4.0            # disparity between views 2 and 6
        gt[raw == 0] = np.nan
        srcs = [s for s in range(9) if s != ref]
        t0 = time.perf_counter()
        depth, conf = plane_sweep(ims[ref], [ims[s] for s in srcs], K, [K] * len(srcs),
                                  [np.eye(3)] * len(srcs), [np.array([-(s - ref), 0.0, 0.0]) for s in srcs],
                                  (near, far), CONES_PLANES, min_angle_deg=0.0, n_threads=threads)
        secs = time.perf_counter() - t0
        with np.errstate(divide="ignore"):
            disp = np.where(depth > 0, 4 * f / np.where(depth > 0, depth, 1.0), np.nan)
        curve = [dict(_at_density(disp, conf, gt, dens, 1.0), target_density=dens) for dens in CONES_DENSITIES]
        out["refs"][str(ref)] = {"sources": srcs, "seconds": secs, "all": _bad(disp, gt, (1.0, 2.0)),
                                 "bad_1_curve": curve}
    return out


# --------------------------------------------------------------------------- 4. synthetic
def bench_synthetic(threads: int, quick: bool) -> dict:
    from mannequin.metrics import depth_metrics
    from mannequin.stereo import plane_sweep, triangulation_angles
    from mannequin.testing.synth import render_clip

    t0 = time.perf_counter()
    clip = render_clip(seed=0, n_frames=9, width=640, height=480)
    render_s = time.perf_counter() - t0
    K = clip.intrinsics.K
    gt = clip.depth[SYNTH_REF].astype(np.float64)
    p1, p99 = np.percentile(gt[gt > 0], [1, 99])
    near, far = p1 * 0.85, p99 * 1.15
    P0 = clip.poses[SYNTH_REF]
    Rs, ts = [], []
    for s in SYNTH_SOURCES:          # source-from-reference: X_s = R_s R_0ᵀ (X_0 − t_0) + t_s
        Ps = clip.poses[s]
        R = Ps.R @ P0.R.T
        Rs.append(R)
        ts.append(Ps.t - R @ P0.t)
    angles = triangulation_angles(Rs, ts, 2.0 / (1.0 / near + 1.0 / far), K, gt.shape)
    srcs = [clip.images[s] for s in SYNTH_SOURCES]
    out = {"ref": SYNTH_REF, "sources": list(SYNTH_SOURCES), "angles_deg": angles.tolist(),
           "depth_range": [near, far], "render_s": render_s, "n_planes": 128}
    # ours: the defaults (subpixel, shiftable windows, smoothing); wta: none of the three
    for key, opts in (("ours", {}), ("wta", {"subpixel": False, "shift": 0, "smooth": 0})):
        t0 = time.perf_counter()
        depth, conf = plane_sweep(clip.images[SYNTH_REF], srcs, K, [K] * len(srcs), Rs, ts, (near, far), 128,
                                  n_threads=threads, **opts)
        secs = time.perf_counter() - t0
        m = depth_metrics(depth, gt)
        both = (depth > 0) & (gt > 0)
        rel = np.abs(depth[both] - gt[both]) / gt[both]
        out[key] = {"options": opts or "defaults", "seconds": secs, "median_rel_err": float(np.median(rel)) if rel.size else float("nan"),
                    **{k: m[k] for k in ("absrel", "delta_1.05", "delta_1.25", "density", "n")}}
    if quick:
        return out
    # Would a coarse-to-fine pass pay?  Finer planes over the same range: accuracy against planes.
    out["planes_study"] = {}
    for n_planes in (48, 96, 192):
        t0 = time.perf_counter()
        depth, _ = plane_sweep(clip.images[SYNTH_REF], srcs, K, [K] * len(srcs), Rs, ts, (near, far), n_planes,
                               n_threads=threads)
        secs = time.perf_counter() - t0
        both = (depth > 0) & (gt > 0)
        out["planes_study"][n_planes] = {"seconds": secs,
                                         "median_rel_err": float(np.median(np.abs(depth[both] - gt[both]) / gt[both]))}
    # The second sweep direction along the floor (the stage finds the plane in the sparse points;
    # here the room's floor z = 0 is given), merged per pixel by cost as the stage does.
    from mannequin.stereo import combine_sweeps
    from mannequin.testing.synth import ROOM

    n_cam = P0.R @ np.array([0.0, 0.0, -1.0])           # towards the floor, in the reference camera
    height = float((-P0.R.T @ P0.t)[2] - ROOM["z0"])     # the camera's distance to the floor
    t0 = time.perf_counter()
    fronto = plane_sweep(clip.images[SYNTH_REF], srcs, K, [K] * len(srcs), Rs, ts, (near, far), 128,
                         n_threads=threads, return_cost=True)
    along = plane_sweep(clip.images[SYNTH_REF], srcs, K, [K] * len(srcs), Rs, ts, (0.4 * height, 1.15 * height),
                        64, n_threads=threads, return_cost=True, normal=n_cam)
    depth, _ = combine_sweeps(fronto, along)
    secs = time.perf_counter() - t0
    jj, ii = np.meshgrid(np.arange(gt.shape[1]) + 0.5, np.arange(gt.shape[0]) + 0.5)
    rays = np.stack([(jj - K[0, 2]) / K[0, 0], (ii - K[1, 2]) / K[1, 1], np.ones_like(jj)], -1)
    floor = np.abs(((rays * gt[..., None] - P0.t) @ P0.R)[..., 2] - ROOM["z0"]) < 0.01
    study = {"seconds": secs, "floor_share": float(floor.mean())}
    for key, d in (("fronto", fronto[0]), ("ground", depth)):
        for region, mask in (("floor", floor), ("rest", ~floor)):
            ok = mask & (d > 0) & (gt > 0)
            study[f"{key}_{region}_median_rel_err"] = float(np.median(np.abs(d[ok] - gt[ok]) / gt[ok]))
    out["ground_study"] = study
    return out


# --------------------------------------------------------------------------- 5. scaling
def bench_scaling(threads: int, quick: bool) -> dict:
    from mannequin.stereo import plane_sweep
    from mannequin.testing import numpy_sweep as nb

    H, W = SCALING_SHAPE
    sc = nb.plane_scene(H, W, max(SCALING_SOURCES), slant_deg=20, uint8=True)
    settings = [(p, 4) for p in SCALING_PLANES] + [(128, s) for s in SCALING_SOURCES if (128, s) != (128, 4)]
    points = []
    for P, S in settings:
        call = (sc["ref"], sc["sources"][:S], sc["K_ref"], sc["K_sources"][:S], sc["R"][:S], sc["t"][:S],
                sc["depth_range"])
        best, times, (depth, _) = _best_time(lambda call=call, P=P: plane_sweep(*call, P, n_threads=threads),
                                             1 if quick else 3)
        points.append({"planes": P, "sources": S, "seconds": best, "times": times,
                       "hyp_per_s": H * W * P * S / best, "density": float((depth > 0).mean())})
    return {"shape": [H, W], "threads": threads, "points": points}


def plot_scaling(sc: dict, path: Path) -> Path:
    """hyp/s against planes (4 sources) and against source views (128 planes), two panels."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pts = sc["points"]
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.8), sharey=True)
    for ax, key, fixed, _other in ((axes[0], "planes", ("sources", 4), "sources"),
                                  (axes[1], "sources", ("planes", 128), "planes")):
        line = sorted((p for p in pts if p[fixed[0]] == fixed[1]), key=lambda p: p[key])
        xs, ys = [p[key] for p in line], [p["hyp_per_s"] / 1e6 for p in line]
        ax.plot(xs, ys, "o-")
        for p, x, y in zip(line, xs, ys, strict=False):
            ax.annotate(f"{p['seconds']:.2f} s", (x, y), fontsize=7, xytext=(3, 5), textcoords="offset points")
        ax.set_xscale("log", base=2)
        ax.set_xticks(xs)
        ax.set_xticklabels([str(x) for x in xs])
        ax.set_xlabel(f"{key} ({fixed[0]} = {fixed[1]})")
        ax.grid(True, alpha=0.3)
        ax.margins(x=0.12)
    axes[0].set_ylim(0, 1.15 * max(p["hyp_per_s"] for p in pts) / 1e6)
    axes[0].set_ylabel("million hypotheses / s (pixel x plane x view)")
    H, W = sc["shape"]
    load = sc.get("load_1min_at_start")
    fig.suptitle(f"plane_sweep throughput, {W}x{H}, {sc['threads']} threads, best of {len(pts[0]['times'])}"
                 + (f", load {load:.1f} on {os.cpu_count()} cores" if load is not None else "")
                 + " (labels: seconds per call)", fontsize=9)
    fig.tight_layout()
    return save_figure(fig, path)


# --------------------------------------------------------------------------- table, JSON
def _f(v, fmt):
    return "-" if v is None or (isinstance(v, float) and not math.isfinite(v)) else format(v, fmt)


def _throughput_rows(tp: dict) -> list:
    """Table rows of the throughput section."""
    rows: list = []
    if "error" in tp:
        rows.append(("throughput", "ERROR: " + tp["error"], "", False))
    elif tp:
        hp = tp["hyp_per_s"]
        rows.append((f"sweep hyp/s (640x480, 128 pl, 4 src, {tp['threads']} thr, best of {len(tp['kernel_times'])})",
                     f"{hp:.3g} ({tp['kernel_s']:.3f} s)", ">= 2e8", hp >= TARGETS["throughput_hyp_per_s"]))
        rows.append((f"numpy baseline hyp/s ({tp['numpy_planes']} planes, scaled)", f"{tp['numpy_hyp_per_s']:.3g}", "", None))
        rows.append(("speed-up sweep / numpy", f"{tp['speedup']:.1f}x", ">= 20x", tp["speedup"] >= TARGETS["speedup_vs_numpy"]))
        rows.append(("sweep median rel. err, slanted plane", f"{tp['kernel_median_rel_err_plane']:.2e}", "", None))
        if "hyp_per_s_1_thread" in tp:
            rows.append(("sweep hyp/s, 1 thread (native build)", f"{tp['hyp_per_s_1_thread']:.3g}", "", None))
        for name, b in tp.get("builds", {}).items():
            tag = f"{name} build (AVX2 only; " + ", ".join(f"{k}={v!r}" for k, v in b["env"].items()) + ")"
            rows.append((f"{tag}: sweep hyp/s, {b['threads']} thr / 1 thr",
                         f"{b['hyp_per_s']:.3g} / {b.get('hyp_per_s_1_thread', float('nan')):.3g}",
                         f">= {THROUGHPUT_TARGET_AVX2:.0e}", b["hyp_per_s"] >= THROUGHPUT_TARGET_AVX2))
            rows.append((f"{name} build: speed-up sweep / numpy (same subprocess)", f"{b['speedup']:.1f}x",
                         f">= {SPEEDUP_TARGET_AVX2:.0f}x", b["speedup"] >= SPEEDUP_TARGET_AVX2))
            rows.append((f"{name} build: median rel. err, slanted plane; main kernel's assembly",
                         f"{b['kernel_median_rel_err_plane']:.2e}; zmm {b['asm']['zmm']}, ymm {b['asm']['ymm']}, "
                         f"gathers {b['asm']['gathers']}", "", None))
        if "cold" in tp:
            rows.append(("first call, cold compile (empty NUMBA_CACHE_DIR)", f"{tp['cold']['first_call_s']:.2f} s", "", None))
        if "after_install" in tp:
            ai = tp["after_install"]
            rows.append((f"first call after `make install` (warm-up {ai['warmup_s']:.0f} s into an empty cache); "
                         "then a tiny pipeline run",
                         f"{ai['first_call_s']:.2f} s, {ai['compiled']} compiled; run: {ai['run_compiled']} compiled, "
                         f"{ai['run_loaded']} loaded", "< 2 s, 0 compiled",
                         ai["first_call_s"] < 2.0 and ai["compiled"] == 0 and ai["run_compiled"] == 0))
        rows.append(("first call, cached load (normal cache)", f"{tp['cached']['first_call_s']:.2f} s "
                     f"(+{tp['cached']['import_s']:.2f} s import)", "", None))
    return rows


def _motorcycle_rows(mo: dict) -> list:
    """Table rows of the motorcycle section."""
    rows: list = []
    if "error" in mo:
        rows.append(("motorcycle", "ERROR: " + mo["error"], "", False))
    elif mo:
        o, s = mo["ours"], mo["sgbm"]
        lr = ", LR check" if mo.get("lr_check") else ""
        rows.append((f"moto ours ({mo['n_planes']} pl, {mo['disp_step']:.2f} px step, top_k 1{lr}): time",
                     f"{o['seconds']:.3f} s", "", None))
        rows.append(("moto SGBM: time", f"{s['seconds']:.3f} s", "", None))
        rows.append(("moto time ours / SGBM", f"{mo['time_ratio_ours_over_sgbm']:.2f}", "<= 1", mo["time_ratio_ours_over_sgbm"] <= 1.0))
        rows.append(("moto ours bad-1 / bad-2 / density", f"{o['bad_1']:.1%} / {o['bad_2']:.1%} / {o['density']:.1%}", "", None))
        rows.append(("moto SGBM bad-1 / bad-2 / density", f"{s['bad_1']:.1%} / {s['bad_2']:.1%} / {s['density']:.1%}", "", None))
        b = mo["ours_bad_2_at_sgbm_density"]
        rows.append((f"moto ours bad-2 at SGBM density ({s['density']:.1%})", f"{b:.1%}",
                     f"<= SGBM {s['bad_2']:.1%}", bool(b <= s["bad_2"])))
    return rows


def _cones_rows(co: dict) -> list:
    """Table rows of the cones section."""
    rows: list = []
    if "error" in co:
        rows.append(("cones", "ERROR: " + co["error"], "", False))
    elif co:
        for ref, r in co["refs"].items():
            curve = " ".join(f"{c['target_density']:.0%}:{c['bad']:.1%}" for c in r["bad_1_curve"])
            rows.append((f"cones ref {ref} (8 src) bad-1 at density", curve, "", None))
    return rows


def _synthetic_rows(sy: dict) -> list:
    """Table rows of the synthetic section."""
    rows: list = []
    if "error" in sy:
        rows.append(("synthetic", "ERROR: " + sy["error"], "", False))
    elif sy:
        o, w = sy["ours"], sy["wta"]
        rows.append(("synth ours median rel. err (128 pl, defaults)", f"{o['median_rel_err']:.3%}",
                     f"<= 0.35% and < plain WTA {w['median_rel_err']:.3%}",
                     bool(o["median_rel_err"] <= TARGETS["synth_median_rel_err"]
                          and o["median_rel_err"] < w["median_rel_err"])))
        rows.append(("synth ours delta(1.05) / density", f"{o['delta_1.05']:.3f} / {o['density']:.3f}", "", None))
        if "planes_study" in sy:
            ps = sy["planes_study"]
            rows.append(("synth ours median rel. err / time vs planes (coarse-to-fine study)",
                         "  ".join(f"{k}: {v['median_rel_err']:.3%} {v['seconds']:.2f} s" for k, v in ps.items()), "", None))
        if "ground_study" in sy:
            gs = sy["ground_study"]
            rows.append((f"synth + ground-plane sweep (64 pl): median rel. err floor / rest ({gs['floor_share']:.0%} floor)",
                         f"{gs['ground_floor_median_rel_err']:.3%} / {gs['ground_rest_median_rel_err']:.3%} (fronto only "
                         f"{gs['fronto_floor_median_rel_err']:.3%} / {gs['fronto_rest_median_rel_err']:.3%})", "", None))
        rows.append(("synth plain 128-plane WTA (no subpixel, shift 0, no smoothing) median rel. err / density",
                     f"{w['median_rel_err']:.3%} / {w['density']:.3f}", "", None))
    return rows


def _scaling_rows(scl: dict) -> list:
    """Table rows of the scaling section."""
    rows: list = []
    if "error" in scl:
        rows.append(("scaling", "ERROR: " + scl["error"], "", False))
    elif scl:
        H, W = scl["shape"]
        for key, fixed in (("planes", ("sources", 4)), ("sources", ("planes", 128))):
            line = sorted((p for p in scl["points"] if p[fixed[0]] == fixed[1]), key=lambda p: p[key])
            rows.append((f"hyp/s vs {key} ({W}x{H}, {fixed[0]} {fixed[1]}; plot)",
                         " ".join(f"{p[key]}:{p['hyp_per_s']:.2g}" for p in line), "", None))
    return rows

def table_rows(res: dict) -> list:
    """[(name, measured, target, met)] with met True/False/None (no target)."""
    rows: list = []
    rows += _throughput_rows(res.get("throughput", {}))
    rows += _motorcycle_rows(res.get("motorcycle", {}))
    rows += _cones_rows(res.get("cones", {}))
    rows += _synthetic_rows(res.get("synthetic", {}))
    rows += _scaling_rows(res.get("scaling", {}))
    return rows

def git_commit():
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True,
                              timeout=10).stdout.strip() or None
        dirty = subprocess.run(["git", "--no-optional-locks", "status", "--porcelain", "--untracked-files=no"],
                               cwd=REPO, capture_output=True, text=True, timeout=10).stdout.strip()
        return head, bool(dirty)
    except Exception:
        return None, None


def machine_info(threads: int) -> dict:
    info = {"cpu_count": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
            "machine": platform.machine(), "threads_used": threads}
    with contextlib.suppress(Exception):
        info["sched_affinity"] = len(os.sched_getaffinity(0))
    info["cpu_model"] = cpu_model()
    for mod in ("numpy", "scipy", "numba", "cv2"):
        with contextlib.suppress(Exception):
            info[mod] = __import__(mod).__version__
    try:
        import numba

        info["numba_threading_layer"] = numba.threading_layer()
    except Exception:
        pass
    return info


def _load_1min():
    try:
        return os.getloadavg()[0]
    except OSError:
        return None


def _plot_scaling_into(res: dict, out: Path) -> None:
    if "points" in res.get("scaling", {}):
        png = plot_scaling(res["scaling"], out.with_name("stereo_throughput.png"))
        res["scaling"]["plot"] = str(png.relative_to(REPO)) if png.is_relative_to(REPO) else str(png)


def _write_json(doc: dict, out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(doc, indent=2, default=float) + "\n")
    os.replace(tmp, out)
    print(f"wrote {out}")


def scaling_only(args) -> int:
    """Section 5 alone, merged into the existing JSON (its own date and load recorded)."""
    doc = json.loads(args.out.read_text()) if args.out.exists() else {"benchmark": "stereo"}
    load = _load_1min()
    t0 = time.perf_counter()
    sc = bench_scaling(args.threads, False)
    sc.update(section_s=time.perf_counter() - t0, load_1min_at_start=load,
              date=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"), merged=True)
    doc["scaling"] = sc
    _plot_scaling_into(doc, args.out)
    rows = table_rows(doc)
    print_target_table(rows[-2:])
    doc["table"] = [{"name": n, "measured": m, "target": t, "met": ok} for n, m, t, ok in rows]
    doc["targets_missed"] = [n for n, _, _, ok in rows if ok is False]
    _write_json(doc, args.out)
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="a fast subset (see the module docstring)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--moto-step", type=float, default=1.0, help="plane spacing in disparity px (motorcycle)")
    ap.add_argument("--no-moto-lr", action="store_true", help="motorcycle without the left-right check")
    ap.add_argument("--out", type=Path, default=RESULTS)
    ap.add_argument("--scaling-only", action="store_true",
                    help="only redo section 5 (scaling) and its plot, merged into an existing --out JSON")
    args = ap.parse_args(argv)
    if args.scaling_only:
        return scaling_only(args)

    t_all = time.perf_counter()
    res = {}
    sections = [("throughput", lambda: bench_throughput(args.threads, args.quick)),
                ("motorcycle", lambda: bench_motorcycle(args.threads, args.quick, args.moto_step,
                                                        not args.no_moto_lr)),
                ("cones", lambda: bench_cones(args.threads, args.quick)),
                ("synthetic", lambda: bench_synthetic(args.threads, args.quick))]
    if not args.quick:
        sections.append(("scaling", lambda: bench_scaling(args.threads, args.quick)))
    for name, fn in sections:
        print(f"[stereo bench] {name} ...", file=sys.stderr, flush=True)
        load = _load_1min()
        t0 = time.perf_counter()
        try:
            res[name] = fn()
        except Exception as e:          # keep the other sections; record the failure
            res[name] = {"error": f"{type(e).__name__}: {e}", "traceback": traceback.format_exc()}
            print(res[name]["traceback"], file=sys.stderr)
        res[name]["section_s"] = time.perf_counter() - t0
        res[name]["load_1min_at_start"] = load
    _plot_scaling_into(res, args.out)
    total = time.perf_counter() - t_all
    rows = table_rows(res)
    print_target_table(rows)
    print(f"total {total:.0f} s")
    commit, dirty = git_commit()
    doc = {"benchmark": "stereo", "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
           "git_commit": commit, "git_dirty": dirty, "machine": machine_info(args.threads), "quick": args.quick,
           "total_s": total, "data": str(DATA), "targets": TARGETS,
           "table": [{"name": n, "measured": m, "target": t, "met": ok} for n, m, t, ok in rows],
           "targets_missed": [n for n, _, _, ok in rows if ok is False], **res}
    _write_json(doc, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
