"""Label accuracy benchmark (issue 5): raw depth and labels against ground truth.

Rows:
- synthetic clips (3 seeds, 24 frames, 384×288), with GT poses and with SfM poses (one scale per
  clip): AbsRel, δ(1.05) and density of the labels and of the raw sweep.  Targets: GT poses AbsRel
  ≤ 0.5%, δ(1.05) ≥ 99%, density ≥ 80%; SfM poses AbsRel ≤ 1%, density ≥ 75%.
- diagnostic (no target, only with ``--diagnostics``): synthetic seed 2 with SfM poses but the true
  focal given (``--intrinsics``, held fixed): how much of the SfM-pose rows' error is the
  self-calibrated focal (0.82% against 0.49% at the last run with it, commit 0c5472e).
- TUM fr1/rpy, 30 frames (data/samples/tum_fr1_rpy), SfM poses with the given calibration, compared
  with the Kinect depth through 3-D points, one scale per clip.  Targets AbsRel ≤ 3%, density ≥ 40%.
  Diagnostic (no target): the same workspace re-fused without the free-space test.
- TUM fr1/desk, frames 0-29 of ../shared/data/tum_fr1_desk (a handheld Kinect walking round a desk,
  the rpy sample's calibration; MANNEQUIN_DATA overrides ../shared/data; skipped with a message when
  missing), against the Kinect depth through 3-D points (issue 25; targets AbsRel ≤ 2%,
  δ(1.05) ≥ 90%, density ≥ 50%): with SfM poses (the recorded frames, the given calibration, one
  scale per clip), and with the mocap poses as a camera file (``--poses``; its format has no room
  for the Kinect's k1 k2 p1 p2 k3 and ``--poses`` refuses distortion terms, so the frames are
  undistorted with the calibration first; metres, scale 1, the one fitted scale beside it as a
  diagnostic).  Issue 25 wants the mocap-pose labels no less accurate and no sparser than the SfM ones.
- issue 25's short fast clip: the 9 most blurred frames of the desk window (14-22) as a video, SfM
  poses, end to end: met when every frame is registered and labelled, the labels' AbsRel / density
  beside it.
- the moving-people mask (issue 25): on the static TUM clips (rpy, and desk with SfM poses), the
  share of pixels the fuse stage marks moving (``qc.json`` dynamic_fraction, mean over frames, max
  beside it; target ≤ 1%); on synthetic clips with a moving person (``synth --moving``, seeds 1-3,
  GT poses), the share of the mover's pixels that would otherwise get a label (fused again with the
  mask off) that the mask marks (≥ 80%).  Figure
  ``results/labels_tum.png``: frame, raw depth, label, Kinect depth and label error for 3 frames.
- diagnostic (no target): Middlebury Cones (data/samples/middlebury_cones, ``make demo``'s input),
  9 sharp real views, SfM poses, against the structured-light depth of views 2 and 6, one scale:
  what the labels reach on real footage without TUM's rolling shutter and motion blur.
- our filter against `pycolmap.stereo_fusion` on the same raw depth maps (synthetic seed 0, GT
  poses): points kept and their accuracy against the exact depth, like beside like (our mean
  relative error, AbsRel, beside COLMAP's mean; the medians beside each other).
- filter sweep (synthetic seed 0, GT poses): the fusion filter's settings (FuseConfig rel_depth ×
  min_views, and min_confidence) re-applied to the raw depth maps already computed for the first
  row, through the same pure functions as the ``fuse`` stage (no stereo re-run); AbsRel against
  density per setting, in ``labels.json`` (``filter_sweep``) and ``results/labels_filter_sweep.png``.
Usage: python benchmarks/labels.py [--quick] [--diagnostics] [--colmap-only] [--filter-only] [--tum-only] [--desk-only]
  (--quick: one seed, no TUM; --colmap-only / --filter-only: only the first row and the
  stereo_fusion comparison / the filter sweep, merged into labels.json; --tum-only: only the TUM
  rows (rpy and desk) and ``results/labels_tum.png``, merged; --desk-only: only the fr1/desk rows, merged)
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import REPO, RESULTS, header, print_table, save_figure, write_results  # noqa: E402

TUM = REPO / "data" / "samples" / "tum_fr1_rpy"
CONES = REPO / "data" / "samples" / "middlebury_cones"
# mannequin eval against the sample's Kinect depth, through 3-D points (registered to the distorted frames)
TUM_EVAL = ("--gt-depth", TUM / "depth", "--depth-scale", 5000, "--gt-intrinsics", TUM / "intrinsics.txt")
# The shared real clips, as benchmarks/sfm.py finds them (MANNEQUIN_DATA overrides).  fr1/desk: a
# handheld Kinect walking round a desk, the same freiburg1 calibration as the rpy sample (its
# intrinsics.txt, fx fy cx cy k1 k2 p1 p2 k3 in OpenCV's convention).
DATA = Path(os.environ.get("MANNEQUIN_DATA", REPO.parent / "shared" / "data"))
DESK = DATA / "tum_fr1_desk"
DESK_WINDOW = (0, 30)  # frames 0-29 of the staged 90 (sfm.py's desk-a window)
# The filter sweep: rel_depth × min_views at the default min_confidence, then min_confidence alone.
SWEEP_REL_DEPTH = (0.005, 0.01, 0.015, 0.03, 0.06)
SWEEP_MIN_VIEWS = (1, 2, 3, 4)
SWEEP_MIN_CONFIDENCE = (0.0, 0.02, 0.1, 0.2, 0.3)
MOVING_SEEDS = (1, 2, 3)  # the moving-mask rows' synthetic clips (tests/fuse/test_fusion.py looks at seed 0)


def mannequin(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mannequin", *map(str, args)], capture_output=True, text=True)


def evaluate(ws: Path, *eval_args) -> dict:
    out = {}
    for which in ("labels", "depth"):
        r = mannequin("eval", ws, *eval_args, "--which", which, "--quiet")
        if r.returncode:
            raise RuntimeError(r.stderr.strip())
        out[which] = json.loads(r.stdout)["clip"]
    return out


def synthetic_row(tmp: Path, seed: int, poses: str) -> dict:
    clip = tmp / f"syn{seed}"
    if not clip.exists():
        mannequin("synth", clip, "--seed", seed, "--frames", 24, "--size", "384x288", "--video")
    ws = tmp / f"ws{seed}-{poses}"
    gt_poses = poses in ("gt", "gt-ground-sweep")
    args = ["run", clip / "video.mp4", "--out", ws, "--quiet"] + (["--poses", clip / "cameras.txt"] if gt_poses else [])
    if poses == "gt-ground-sweep":
        # Diagnostic: the stereo stage with its second sweep direction along the floor (the quality
        # preset's stereo.ground_sweep), everything else the default.
        (tmp / "ground.json").write_text('{"stereo": {"ground_sweep": true}}')
        args += ["--config", tmp / "ground.json"]
    if poses == "sfm-true-focal":
        # Diagnostic: SfM poses, but the intrinsics given (held fixed) instead of self-calibrated.
        from mannequin.io.cameras import read_cameras

        intr = read_cameras(clip / "cameras.txt").frames[0].intrinsics(384, 288)
        args += ["--intrinsics", f"{intr.fx},{intr.fy},{intr.cx - 0.5},{intr.cy - 0.5}"]  # OpenCV convention
    t0 = time.perf_counter()
    r = mannequin(*args)
    row = {"name": f"synth-{seed}-{poses}-poses", "seconds": time.perf_counter() - t0}
    if r.returncode:
        return {**row, "status": "failed", "error": r.stderr.strip()}
    m = evaluate(ws, "--gt-depth", clip / "depth")
    row.update(_flatten(m), status="ok", ws=str(ws), window=_window(ws))
    if poses == "gt":
        row["targets"] = {"absrel": 0.005, "delta_1.05": 0.99, "density": 0.80}
    elif poses == "sfm":
        row["targets"] = {"absrel": 0.01, "density": 0.75}
    else:
        row["targets"] = {}
        if poses == "sfm-true-focal":
            row["sfm_focal_px"] = json.loads((ws / "sfm" / "summary.json").read_text())["focal_px"]
    return row


def cones_row(tmp: Path) -> dict:
    """Diagnostic: the demo's Middlebury Cones views through ``mannequin run`` (SfM poses)."""
    ws = tmp / "cones"
    t0 = time.perf_counter()
    r = mannequin("run", CONES / "images", "--out", ws, "--config", CONES / "config.json", "--quiet")
    row = {"name": "middlebury-cones-9-views-sfm-poses", "seconds": time.perf_counter() - t0, "targets": {}}
    if r.returncode:
        return {**row, "status": "failed", "error": r.stderr.strip()}
    row.update(_flatten(evaluate(ws, "--gt-depth", CONES / "gt")), status="ok", window=_window(ws))
    return row


def tum_row(tmp: Path) -> dict:
    ws = tmp / "tum"
    t0 = time.perf_counter()
    r = mannequin("run", TUM / "video.mp4", "--out", ws, "--intrinsics", TUM / "intrinsics.txt", "--quiet")
    row = {"name": "tum-fr1rpy-30-sfm-poses", "seconds": time.perf_counter() - t0}
    if r.returncode:
        return {**row, "status": "failed", "error": r.stderr.strip()}
    m = evaluate(ws, *TUM_EVAL)
    row.update(_flatten(m), status="ok", targets={"absrel": 0.03, "density": 0.40}, window=_window(ws), ws=str(ws))
    try:
        from common import RESULTS

        row["figure"] = tum_figure(ws, m["labels"]["scale"], RESULTS / "labels_tum.png").name
    except Exception as exc:  # reported, not fatal
        row["figure_error"] = f"{type(exc).__name__}: {exc}"
    return row


def moving_static_row(ws: Path, name: str = "moving-mask-tum-fr1rpy-30-static") -> dict:
    """The moving-people mask on a static TUM clip: share of each frame's pixels marked moving."""
    frac = [float(q["dynamic_fraction"]) for q in json.loads((ws / "labels" / "qc.json").read_text())]
    return {"name": name, "status": "ok", "moving": float(np.mean(frac)),
            "moving_max": float(np.max(frac)), "targets": {"moving_max_share": 0.01}}


def moving_synth_row(tmp: Path, seed: int) -> dict:
    """The moving-people mask on a synthetic clip with a moving person (GT poses): the share of the
    mover's pixels that would otherwise get a label (the same raw depth fused with the mask off,
    ``fuse.moving_noise`` 0, in a copy of the workspace) that the mask marks, pooled over the clip;
    the share of its pixels with raw depth marked, and of the other pixels marked, beside it."""
    import shutil

    import imageio.v3 as iio

    clip, ws = tmp / f"mov{seed}", tmp / f"ws-mov{seed}"
    mannequin("synth", clip, "--seed", seed, "--frames", 24, "--size", "384x288", "--video", "--moving")
    t0 = time.perf_counter()
    r = mannequin("run", clip / "video.mp4", "--out", ws, "--poses", clip / "cameras.txt", "--quiet")
    row = {"name": f"moving-mask-synth-{seed}-gt-poses-recall", "seconds": time.perf_counter() - t0,
           "targets": {"moving_min_recall": 0.8}}
    if r.returncode:
        return {**row, "status": "failed", "error": r.stderr.strip()}
    off = tmp / f"ws-mov{seed}-mask-off"
    shutil.rmtree(off, ignore_errors=True)
    shutil.copytree(ws, off)
    (tmp / "mask_off.json").write_text(json.dumps({"fuse": {"moving_noise": 0.0}}))
    r = mannequin("fuse", off, "--config", tmp / "mask_off.json", "--quiet")
    if r.returncode:
        return {**row, "status": "failed", "error": r.stderr.strip()}
    hit = would = raw_hit = raw = static = 0
    n_px = 0
    for truth_png in sorted((clip / "dynamic").glob("*.png")):
        n = truth_png.stem
        truth = iio.imread(truth_png) > 0
        dyn = iio.imread(ws / "labels" / f"{n}.dynamic.png") > 0
        unmasked = truth & (np.load(off / "labels" / f"{n}.npy") > 0)
        mover = truth & (np.load(ws / "depth" / f"{n}.npy") > 0)
        hit, would = hit + int((dyn & unmasked).sum()), would + int(unmasked.sum())
        raw_hit, raw = raw_hit + int((dyn & mover).sum()), raw + int(mover.sum())
        static, n_px = static + int((dyn & ~truth).sum()), n_px + truth.size
    return {**row, "status": "ok", "moving": hit / max(would, 1), "mover_px_would_be_labelled": would,
            "moving_of_raw_depth": raw_hit / max(raw, 1), "static_marked": static / max(n_px, 1)}


def moving_figure(tmp: Path, path: Path) -> Path | None:
    """The moving-people mask over the frames it marks most: the static desk clip (SfM poses; every
    marked pixel is a false alarm) and the synthetic movers (seeds ``MOVING_SEEDS``; the mask red,
    the mover's outline green).  None when neither workspace is in ``tmp``."""
    import imageio.v3 as iio
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from scipy.ndimage import binary_erosion

    panels = []
    for ws, truth in [(tmp / "desk-sfm", None)] + [(tmp / f"ws-mov{s}", tmp / f"mov{s}" / "dynamic") for s in MOVING_SEEDS]:
        qc_path = ws / "labels" / "qc.json"
        if not qc_path.exists():
            continue
        qc = sorted(json.loads(qc_path.read_text()), key=lambda q: (-q["dynamic_fraction"], q["name"]))
        for q in qc[:2]:
            n = q["name"]
            im = iio.imread(ws / "images" / f"{n}.png")[..., :3].copy()
            im[iio.imread(ws / "labels" / f"{n}.dynamic.png") > 0] = (255, 0, 0)
            if truth is not None:  # the mover's outline, 2 px
                t = iio.imread(truth / f"{n}.png") > 0
                im[t & ~binary_erosion(t, iterations=2)] = (0, 255, 0)
            what = "static desk" if truth is None else f"synthetic mover {ws.name[-1]}"
            panels.append((im, f"{what}, frame {n}: {q['dynamic_fraction']:.1%} marked"))
    if not panels:
        return None
    cols = 4
    rows = (len(panels) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.3 * rows), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, (im, title) in zip(axes.ravel(), panels, strict=False):
        ax.imshow(im)
        ax.set_title(title, fontsize=8)
    fig.suptitle("moving-people mask (red) on the frames it marks most; the synthetic mover outlined in green "
                 "(benchmarks/labels.py)", fontsize=10)
    fig.tight_layout()
    return save_figure(fig, path)


def tum_figure(ws: Path, scale: float, path: Path, names=("000005", "000015", "000025")) -> Path:
    """Rows of frame / raw depth / label / Kinect depth / label error for a few TUM frames.

    Depths in metres (the clip's one scale); the Kinect depth is shown on its own (distorted) grid,
    the error (label - Kinect) / Kinect on the label grid, through the same 3-D point sampling as
    ``mannequin eval --gt-intrinsics``."""
    import imageio.v3 as iio
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pycolmap

    from mannequin.evaluate import read_gt_depth, sample_through_points
    from mannequin.stereo import sparse_geometry

    intr = np.loadtxt(TUM / "intrinsics.txt").ravel()
    cam = (intr[0], intr[1], intr[2], intr[3], intr[4:])
    geo = sparse_geometry(pycolmap.Reconstruction(str(ws / "sparse")))
    K = {Path(n).stem: geo.K[k] for k, n in enumerate(geo.names)}
    rs = json.loads((ws / "sfm" / "summary.json").read_text()).get("rolling_shutter") or {}
    names = [n for n in names if n in K]
    fig, axes = plt.subplots(len(names), 5, figsize=(17, 2.9 * len(names)), squeeze=False)
    lo, hi = 0.5, 1.6
    for ax_row, name in zip(axes, names, strict=False):
        raw = np.load(ws / "depth" / f"{name}.npy") * scale
        label = np.load(ws / "labels" / f"{name}.npy") * scale
        gt = read_gt_depth(TUM / "depth" / f"{name}.png", 5000)
        rolling = ((np.asarray(rs["omega_rad_s"][name + ".png"]), rs["readout_ms"] * 1e-3)
                   if rs.get("readout_ms", 0) > 0 and name + ".png" in rs.get("omega_rad_s", {}) else None)
        p, g = sample_through_points(label, K[name], gt, cam, rolling)
        err = np.full(label.shape, np.nan)
        rows, cols = np.nonzero(label > 0)
        ok = g > 0
        err[rows[ok], cols[ok]] = (p[ok] - g[ok]) / g[ok]
        density = ok.sum() / max(int((gt > 0).sum()), 1)
        absrel = float(np.mean(np.abs(err[rows[ok], cols[ok]]))) if ok.any() else float("nan")
        panels = [(iio.imread(ws / "images" / f"{name}.png"), f"{name} (undistorted)", {}),
                  (np.where(raw > 0, raw, np.nan), "raw depth (m)", dict(vmin=lo, vmax=hi, cmap="turbo")),
                  (np.where(label > 0, label, np.nan), f"label: {density:.0%} of Kinect px", dict(vmin=lo, vmax=hi, cmap="turbo")),
                  (np.where(gt > 0, gt, np.nan), "Kinect depth (m, distorted grid)", dict(vmin=lo, vmax=hi, cmap="turbo")),
                  (err, f"label error, AbsRel {absrel:.1%}", dict(vmin=-0.1, vmax=0.1, cmap="RdBu_r"))]
        for ax, (img, title, kw) in zip(ax_row, panels, strict=False):
            im = ax.imshow(img, **kw)
            ax.set_title(title, fontsize=9)
            ax.axis("off")
            if kw:
                fig.colorbar(im, ax=ax, fraction=0.035)
    fig.suptitle("TUM fr1/rpy sample, SfM poses, one scale per clip (benchmarks/labels.py)", fontsize=10)
    fig.tight_layout()
    return save_figure(fig, path)


def tum_no_free_space_row(tmp: Path) -> dict:
    """Diagnostic: the TUM workspace re-fused without the free-space test (FuseConfig
    max_behind_frac = -1; frames, SfM and stereo are reused), the filter's accuracy-density dial on
    real footage.  The default keeps the test: on synthetic seed 2 (GT poses) it holds AbsRel at 0.50%."""
    ws = tmp / "tum"
    cfg = tmp / "no_free_space.json"
    cfg.write_text(json.dumps({"fuse": {"max_behind_frac": -1.0}}))
    t0 = time.perf_counter()
    r = mannequin("run", TUM / "video.mp4", "--out", ws, "--intrinsics", TUM / "intrinsics.txt", "--config", cfg, "--quiet")
    row = {"name": "tum-fr1rpy-30-sfm-poses-no-free-space-test", "seconds": time.perf_counter() - t0}
    if r.returncode:
        return {**row, "status": "failed", "error": r.stderr.strip()}
    m = evaluate(ws, *TUM_EVAL)
    row.update(_flatten(m), status="ok", targets={}, window=_window(ws))
    return row


def tum_rows(tmp: Path) -> list:
    """The TUM row, then (if it ran) the diagnostic re-fused without the free-space test."""
    rows = [tum_row(tmp)]
    print(f"{rows[-1]['name']}: {rows[-1].get('status')}", flush=True)
    if rows[0].get("status") == "ok":
        rows.append(moving_static_row(tmp / "tum"))  # before the diagnostic re-fuses that workspace
        rows.append(tum_no_free_space_row(tmp))
    return rows


def desk_clip(tmp: Path) -> Path:
    """Frames ``DESK_WINDOW`` of ../shared/data/tum_fr1_desk as ``mannequin run`` inputs (made once):

    - ``video.mp4``: the recorded (distorted) frames, a 30 fps H.264 video (CRF 8) as sfm.py's
      ``tum_clip`` writes it;
    - ``undistorted.mp4``: the same frames undistorted with the calibration (OpenCV k1 k2 p1 p2 k3,
      the same K kept, bilinear), since ``--poses`` refuses distortion terms (the camera file has only
      k1 k2, and ``known_poses`` wants them 0: "undistort the frames first");
    - ``cameras.txt``: the mocap poses (sfm.py's ``gt_tum``: camera-to-world, interpolated at each RGB
      timestamp) as an MC camera file, world-to-camera, the calibration's K normalised (pixel centres
      +0.5), k1 k2 = 0, timestamps those of the video's frames;
    - ``depth/<frame>.png``: links to the Kinect depth of each frame (registered to the distorted
      frames: ``mannequin eval --gt-intrinsics`` compares through 3-D points)."""
    clip = tmp / "desk"
    if clip.is_dir():
        return clip
    import cv2
    import imageio.v3 as iio
    from sfm import gt_tum

    from mannequin.io.cameras import CameraFrame, Intrinsics, write_cameras
    from mannequin.testing.synth import _write_video

    g = gt_tum(*DESK_WINDOW, DESK.name)
    order = sorted(g)  # the stems are the RGB timestamps
    images = np.stack([iio.imread(g[n][0]) for n in order])
    h, w = images.shape[1:3]
    intr = np.loadtxt(TUM / "intrinsics.txt").ravel()
    K = np.array([[intr[0], 0.0, intr[2]], [0.0, intr[1], intr[3]], [0.0, 0.0, 1.0]])  # OpenCV convention
    m1, m2 = cv2.initUndistortRectifyMap(K, intr[4:], None, K, (w, h), cv2.CV_32FC1)
    (clip / "depth").mkdir(parents=True)
    _write_video(clip / "video.mp4", images, 30.0)
    _write_video(clip / "undistorted.mp4", np.stack([cv2.remap(im, m1, m2, cv2.INTER_LINEAR) for im in images]), 30.0)
    pinhole = Intrinsics(intr[0], intr[1], intr[2] + 0.5, intr[3] + 0.5, w, h)  # COLMAP's pixel centres
    write_cameras(clip / "cameras.txt", [CameraFrame.from_intrinsics(round(k * 1e6 / 30.0), pinhole, g[n][1])
                                         for k, n in enumerate(order)],
                  url=f"TUM fr1/desk frames {DESK_WINDOW[0]}-{DESK_WINDOW[1] - 1}, mocap poses, undistorted frames")
    _link_kinect_depth(clip / "depth", g, order)
    return clip


def _link_kinect_depth(folder: Path, g: dict, order: list) -> None:
    """Links ``folder/<k:06d>.png`` to the Kinect depth of the ``k``-th frame of ``order`` (stems of
    ``g``, :func:`sfm.gt_tum`'s frames): the names the frames stage gives a video's frames."""
    for k, n in enumerate(order):
        link = folder / f"{k:06d}.png"
        if not link.exists():
            os.symlink(Path(g[n][2]).resolve(), link)


def _desk_eval(depth_dir: Path) -> tuple:
    """``mannequin eval`` arguments scoring against the Kinect depth in ``depth_dir`` (links of
    :func:`_link_kinect_depth`), through 3-D points with the TUM calibration."""
    return "--gt-depth", depth_dir, "--depth-scale", 5000, "--gt-intrinsics", TUM / "intrinsics.txt"


def desk_row(tmp: Path, poses: str) -> dict:
    """TUM fr1/desk frames 0-29 with SfM poses (the recorded frames, the given calibration, as the
    rpy row) or with the mocap poses (``--poses``, on the undistorted frames), against the Kinect
    depth through 3-D points.  SfM poses: one scale per clip; mocap poses: metres, scale 1 (what
    ``mannequin eval`` does with known poses), with the one fitted scale beside it as a diagnostic."""
    clip = desk_clip(tmp)
    ws = tmp / f"desk-{poses}"
    if poses == "sfm":
        args = ["run", clip / "video.mp4", "--out", ws, "--intrinsics", TUM / "intrinsics.txt", "--quiet"]
    else:
        args = ["run", clip / "undistorted.mp4", "--out", ws, "--poses", clip / "cameras.txt", "--quiet"]
    t0 = time.perf_counter()
    r = mannequin(*args)
    row = {"name": f"tum-fr1desk-30-{poses}-poses", "seconds": time.perf_counter() - t0}
    if poses == "mocap":
        row["note"] = "frames undistorted with the calibration first (--poses refuses distortion terms)"
    if r.returncode:
        return {**row, "status": "failed", "error": r.stderr.strip()}
    row.update(_flatten(evaluate(ws, *_desk_eval(clip / "depth"))), status="ok", targets={"absrel": 0.02, "delta_1.05": 0.90, "density": 0.50},
               window=_window(ws), ws=str(ws))
    if poses == "mocap":  # diagnostic: how much of the error one scale per clip (mocap vs Kinect) would take
        from mannequin.evaluate import evaluate as evaluate_ws
        from mannequin.workspace import Workspace

        fit = evaluate_ws(Workspace(ws), clip / "depth", depth_scale=5000, gt_camera=str(TUM / "intrinsics.txt"),
                          fit_scale=True)["clip"]
        row.update(lab_absrel_scale_fitted=fit["absrel"], lab_scale_fitted=fit["scale"])
    return row


DESK_SHORT = (14, 23)  #: the 9 most blurred frames of DESK_WINDOW, the fast short clip of issue 25


def desk_short_row(tmp: Path) -> dict:
    """Issue 25's short fast clip: frames ``DESK_SHORT`` of the desk window (a 30 fps video of the
    recorded frames, so the rolling-shutter search and the motion prior run; the calibration given),
    end to end.  Met when SfM registers every frame and every frame gets a label; the labels'
    AbsRel / density against the Kinect beside it (the depth links of :func:`desk_clip`, renamed)."""
    import imageio.v3 as iio
    from sfm import gt_tum

    from mannequin.testing.synth import _write_video

    desk_clip(tmp)
    short, ws = tmp / "desk-short", tmp / "desk-short-ws"
    (short / "depth").mkdir(parents=True, exist_ok=True)
    g = gt_tum(*DESK_WINDOW, DESK.name)
    order = sorted(g)[DESK_SHORT[0]:DESK_SHORT[1]]
    _write_video(short / "video.mp4", np.stack([iio.imread(g[n][0]) for n in order]), 30.0)
    _link_kinect_depth(short / "depth", g, order)
    t0 = time.perf_counter()
    r = mannequin("run", short / "video.mp4", "--out", ws, "--intrinsics", TUM / "intrinsics.txt", "--quiet")
    n = DESK_SHORT[1] - DESK_SHORT[0]
    row = {"name": f"tum-fr1desk-{n}-fast-frames-{DESK_SHORT[0]}-{DESK_SHORT[1] - 1}-sfm-poses",
           "seconds": time.perf_counter() - t0, "targets": {"labels_every_frame": True}}
    if r.returncode:
        return {**row, "status": "failed", "error": r.stderr.strip()}
    qc = json.loads((ws / "labels" / "qc.json").read_text())
    summary = json.loads((ws / "sfm" / "summary.json").read_text())
    m = evaluate(ws, *_desk_eval(short / "depth"))
    return {**row, **_flatten(m), "status": "ok", "frames": n, "registered": summary.get("registered"),
            "readout_ms": (summary.get("rolling_shutter") or {}).get("readout_ms"),
            "labelled_share": [q["valid_fraction"] for q in qc],
            "parallax_deg": (summary.get("parallax") or {}).get("parallax_deg"),
            "verdict": json.loads((ws / "report.json").read_text()).get("verdict", {}).get("verdict")}


def desk_rows(tmp: Path) -> list:
    """The fr1/desk rows: SfM poses, the moving mask on that static clip (from the SfM-pose run, as
    for rpy), mocap poses; none (with a message) when ../shared/data/tum_fr1_desk is missing."""
    if not DESK.is_dir():
        print(f"[labels bench] skipping the tum_fr1_desk rows: {DESK} not found", file=sys.stderr, flush=True)
        return []
    rows = [desk_row(tmp, "sfm")]
    print(f"{rows[-1]['name']}: {rows[-1].get('status')}", flush=True)
    if rows[0].get("status") == "ok":
        rows.append(moving_static_row(tmp / "desk-sfm", "moving-mask-tum-fr1desk-30-static"))
    rows.append(desk_row(tmp, "mocap"))
    print(f"{rows[-1]['name']}: {rows[-1].get('status')}", flush=True)
    rows.append(desk_short_row(tmp))
    print(f"{rows[-1]['name']}: {rows[-1].get('status')}", flush=True)
    return rows


def real_rows(tmp: Path) -> list:
    """The TUM rows: fr1/rpy (the repository's sample), then fr1/desk (the shared clip)."""
    return (tum_rows(tmp) if TUM.is_dir() else []) + desk_rows(tmp)


def _window(ws: Path):
    """The stereo stage's matching window (WS/stereo/window.json), or None."""
    path = ws / "stereo" / "window.json"
    return json.loads(path.read_text()).get("window") if path.exists() else None


def _flatten(m: dict) -> dict:
    out = {}
    for which, short in (("labels", "lab"), ("depth", "raw")):
        for k in ("absrel", "delta_1.05", "density", "scale"):
            out[f"{short}_{k}"] = m[which][k]
    return out


def _met(row: dict) -> bool:
    t = row.get("targets", {})
    ok = row.get("status") == "ok"
    if "moving_max_share" in t:
        return bool(ok and row["moving_max"] <= t["moving_max_share"])
    if "moving_min_recall" in t:
        return bool(ok and row["moving"] >= t["moving_min_recall"])
    if "labels_every_frame" in t:
        return bool(ok and row["registered"] == row["frames"] and min(row["labelled_share"]) > 0)
    if "absrel" in t:
        ok &= (row.get("lab_absrel") or 9) <= t["absrel"]
    if "delta_1.05" in t:
        ok &= (row.get("lab_delta_1.05") or 0) >= t["delta_1.05"]
    if "density" in t:
        ok &= (row.get("lab_density") or 0) >= t["density"]
    return bool(ok)


def colmap_fusion_row(ws: Path, clip: Path) -> dict:
    """pycolmap.stereo_fusion on our raw (photometric) maps vs our labels, both against exact depth."""
    import pycolmap

    from mannequin.io.cameras import read_cameras

    cams = read_cameras(clip / "cameras.txt")
    names = sorted(p.stem for p in (ws / "images").glob("*.png"))
    (ws / "stereo" / "fusion.cfg").write_text("\n".join(f"{n}.png" for n in names) + "\n")
    opts = pycolmap.StereoFusionOptions()
    t0 = time.perf_counter()
    out_dir = ws / "colmap_fused"
    out_dir.mkdir(exist_ok=True)
    rec = pycolmap.stereo_fusion(str(out_dir), str(ws), input_type="photometric", options=opts)
    fusion_s = time.perf_counter() - t0
    pts = np.array([p.xyz for p in rec.points3D.values()]).reshape(-1, 3)
    gts = [np.load(clip / "depth" / f"{n}.npy") for n in names]
    err = np.full(len(pts), np.inf)
    for f, gt in zip(cams.frames, gts, strict=False):
        h, w = gt.shape
        K = f.intrinsics(w, h).K
        X = pts @ f.pose.R.T + f.pose.t
        z = X[:, 2]
        front = z > 1e-6
        u = np.floor(K[0, 0] * X[:, 0] / np.where(front, z, 1) + K[0, 2]).astype(np.int64)
        v = np.floor(K[1, 1] * X[:, 1] / np.where(front, z, 1) + K[1, 2]).astype(np.int64)
        ok = front & (u >= 0) & (v >= 0) & (u < w) & (v < h)
        e = np.full(len(pts), np.inf)
        e[ok] = np.abs(z[ok] - gt[v[ok], u[ok]]) / gt[v[ok], u[ok]]
        err = np.minimum(err, e)
    err = err[np.isfinite(err)]
    ours_pts = sum(int((np.load(ws / "labels" / f"{n}.npy") > 0).sum()) for n in names)
    ours = evaluate(ws, "--gt-depth", clip / "depth")["labels"]
    return {"name": "filter-vs-colmap-fusion (synth-0, GT poses)", "status": "ok",
            "colmap_points": int(len(pts)), "colmap_median_rel_err": float(np.median(err)) if err.size else None,
            "colmap_mean_rel_err": float(np.mean(np.minimum(err, 1.0))) if err.size else None,  # capped at 100%
            "colmap_absrel": float(np.mean(err)) if err.size else None,
            "colmap_within_1pct": float((err < 0.01).mean()) if err.size else None, "colmap_seconds": fusion_s,
            "ours_points": ours_pts, "ours_absrel": ours["absrel"], "ours_median_rel_err": ours.get("median_relerr"),
            "ours_delta_1.05": ours["delta_1.05"]}


COLMAP_ROW = "filter vs pycolmap.stereo_fusion (same raw maps)"


def colmap_fusion_table_row(cf: dict) -> dict:
    """The RESULTS.md row of :func:`colmap_fusion_row`: like beside like from the same run, the mean
    relative error (AbsRel) of our labels beside COLMAP's mean, and the medians beside each other.
    A run from before ``colmap_absrel`` (uncapped) was recorded gives COLMAP's mean with each point's
    error capped at 100% (said so); one without our median shows only the means."""
    def pct(v):
        return f"{v:.2%}" if v is not None else "n/a"

    if cf.get("colmap_absrel") is not None:
        colmap_mean = pct(cf["colmap_absrel"])
    else:
        colmap_mean = f"{pct(cf.get('colmap_mean_rel_err'))} (per-point errors capped at 100%)"
    measured = f"mean rel. err (AbsRel): ours {pct(cf.get('ours_absrel'))}, COLMAP {colmap_mean}"
    if cf.get("ours_median_rel_err") is not None and cf.get("colmap_median_rel_err") is not None:
        measured += f"; median: ours {pct(cf['ours_median_rel_err'])}, COLMAP {pct(cf['colmap_median_rel_err'])}"
    measured += f"; ours {cf['ours_points']} labelled px, COLMAP {cf['colmap_points']} points"
    if cf.get("colmap_within_1pct") is not None:
        measured += f" ({cf['colmap_within_1pct']:.1%} within 1%)"
    return {"name": COLMAP_ROW, "measured": measured, "target": "", "met": None}


def filter_sweep(ws: Path, gt_dir: Path, plot_path: Path) -> dict:
    """AbsRel and density of the labels for several FuseConfig settings, on the raw depth of ``ws``.

    Each setting goes through :func:`mannequin.fuse.consistency.consistency_votes` and
    :func:`mannequin.fuse.stage.filter_from_votes` (the ``fuse`` stage's own per-frame filter) with the
    stage's neighbours; the votes are computed once per (min_confidence, rel_depth) and reused for
    every min_views.  Metrics as ``mannequin eval`` with known poses (scale 1): AbsRel over all the
    labelled GT pixels of the clip, density = mean over frames of the labelled share of GT pixels.
    """
    import dataclasses

    import pycolmap

    from mannequin.config import Config
    from mannequin.fuse import consistency_votes, filter_from_votes
    from mannequin.stereo import neighbours_for, sparse_geometry, world_to_camera

    t_start = time.perf_counter()
    base = Config.load(ws / "config.json").fuse if (ws / "config.json").exists() else Config().fuse
    geo = sparse_geometry(pycolmap.Reconstruction(str(ws / "sparse")))
    index = {n: k for k, n in enumerate(geo.names)}
    names = [n for n in geo.names if (ws / "depth" / f"{Path(n).stem}.npy").exists()]
    views_path = ws / "stereo" / "views.json"
    views = json.loads(views_path.read_text()) if views_path.exists() else {}
    raw = {n: (np.load(ws / "depth" / f"{Path(n).stem}.npy"), np.load(ws / "depth" / f"{Path(n).stem}.conf.npy"))
           for n in names}
    gts = {n: np.load(gt_dir / f"{Path(n).stem}.npy") for n in names}
    E = {n: world_to_camera(geo, index[n]) for n in names}
    nbs = {n: neighbours_for(names, (views.get(n) or {}).get("sources", []), n, base.n_neighbors) for n in names}

    def score(labels: dict) -> dict:
        err_sum, n_px, d105, dens = 0.0, 0, 0, []
        for n, lab in labels.items():
            g = gts[n]
            gt_ok = g > 0
            both = gt_ok & (lab > 0)
            rel = np.abs(lab[both].astype(np.float64) - g[both]) / g[both]
            err_sum += float(rel.sum())
            n_px += int(both.sum())
            d105 += int((np.maximum(lab[both] / g[both], g[both] / lab[both]) < 1.05).sum())
            dens.append(both.sum() / max(gt_ok.sum(), 1))
        return {"absrel": err_sum / n_px if n_px else None, "delta_1.05": d105 / n_px if n_px else None,
                "density": float(np.mean(dens)), "n": n_px}

    points = []

    def run(min_confidence: float, rel_depth: float, min_views_list, family: str) -> None:
        depth = {n: np.where(c >= min_confidence, d, 0).astype(np.float32) for n, (d, c) in raw.items()}
        votes = {n: consistency_votes(depth[n], geo.K[index[n]], E[n],
                                      [(depth[s], geo.K[index[s]], E[s]) for s in nbs[n]],
                                      max_rel_depth=rel_depth, max_reproj_px=base.reproj_px) for n in names}
        for mv in min_views_list:
            cfg = dataclasses.replace(base, min_confidence=min_confidence, rel_depth=rel_depth, min_views=mv)
            labels = {n: filter_from_votes(depth[n], votes[n], cfg, len(nbs[n]))[0] for n in names}
            is_default = (min_confidence, rel_depth, mv) == (base.min_confidence, base.rel_depth, base.min_views)
            points.append({"family": family, "min_confidence": min_confidence, "rel_depth": rel_depth,
                           "min_views": mv, "default": is_default, **score(labels)})

    for rd in SWEEP_REL_DEPTH:
        run(base.min_confidence, rd, SWEEP_MIN_VIEWS, "rel_depth x min_views")
    for mc in SWEEP_MIN_CONFIDENCE:
        if mc != base.min_confidence:
            run(mc, base.rel_depth, [base.min_views], "min_confidence")
    points.append({"family": "raw", "min_confidence": 0.0, "rel_depth": None, "min_views": 0, "default": False,
                   **score({n: d for n, (d, _) in raw.items()})})
    out = {"clip": "synth-0 (24 frames, 384x288, GT poses)", "frames": len(names),
           "defaults": {"rel_depth": base.rel_depth, "min_views": base.min_views,
                        "min_confidence": base.min_confidence, "reproj_px": base.reproj_px,
                        "n_neighbors": base.n_neighbors},
           "points": points, "seconds": time.perf_counter() - t_start}
    out["plot"] = str(plot_filter_sweep(out, plot_path).relative_to(REPO))
    return out


def plot_filter_sweep(sweep: dict, path: Path) -> Path:
    """AbsRel (log) against density, one line per min_views across rel_depth, plus min_confidence."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pts = sweep["points"]
    d = sweep["defaults"]
    fig, ax = plt.subplots(figsize=(8, 6.5))
    grid = [p for p in pts if p["family"] == "rel_depth x min_views" and p["absrel"] is not None]
    for k, mv in enumerate(sorted({p["min_views"] for p in grid})):
        line = sorted((p for p in grid if p["min_views"] == mv), key=lambda p: p["rel_depth"])
        ax.plot([100 * p["density"] for p in line], [100 * p["absrel"] for p in line], "o-", color=f"C{k}",
                label=f"min_views {mv} (rel_depth {line[0]['rel_depth']:g} .. {line[-1]['rel_depth']:g})")
        if mv == d["min_views"]:
            for p in line:
                ax.annotate(f"rel {p['rel_depth']:g}", (100 * p["density"], 100 * p["absrel"]), fontsize=7,
                            xytext=(3, -10), textcoords="offset points", color=f"C{k}")
    conf = sorted((p for p in pts if p["family"] == "min_confidence" or p["default"]),
                  key=lambda p: p["min_confidence"])
    if conf:
        ax.plot([100 * p["density"] for p in conf], [100 * p["absrel"] for p in conf], "s--", color="0.3",
                label=f"min_confidence {conf[0]['min_confidence']:g} .. {conf[-1]['min_confidence']:g} (defaults otherwise)")
        for p in conf:
            ax.annotate(f"c{p['min_confidence']:g}", (100 * p["density"], 100 * p["absrel"]), fontsize=7,
                        xytext=(4, 4), textcoords="offset points", color="0.3")
    for p in pts:
        if p["default"]:
            ax.plot(100 * p["density"], 100 * p["absrel"], "*", ms=16, mfc="gold", mec="k", zorder=5,
                    label=f"default (rel_depth {d['rel_depth']:g}, min_views {d['min_views']}, "
                          f"min_confidence {d['min_confidence']:g})")
    raw = next((p for p in pts if p["family"] == "raw" and p["absrel"] is not None), None)
    title = f"Fusion filter settings: AbsRel against density\n{sweep['clip']}"
    if raw:  # far above the filtered points: quoted, not plotted
        title += f"; raw sweep (no filter): AbsRel {100 * raw['absrel']:.2f}% at {100 * raw['density']:.1f}%"
    ax.set_xlabel("density (% of GT pixels labelled)")
    ax.set_ylabel("AbsRel (%)")
    ax.set_title(title, fontsize=9)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.12), ncol=2)
    fig.tight_layout()
    return save_figure(fig, path)


def filter_sweep_table_row(fs: dict) -> dict:
    pts = [p for p in fs["points"] if p["family"] != "raw" and p["absrel"] is not None]
    dflt = next((p for p in pts if p["default"]), None)
    dense = max((p for p in pts if p["absrel"] <= 0.005), key=lambda p: p["density"], default=None)
    measured = f"{len(pts)} settings in {fs['seconds']:.0f} s"
    if dflt:
        measured += f"; default {dflt['absrel']:.2%} at {dflt['density']:.1%}"
    if dense:
        measured += (f"; densest with AbsRel <= 0.5%: {dense['density']:.1%} (rel_depth {dense['rel_depth']:g}, "
                     f"min_views {dense['min_views']}, min_conf {dense['min_confidence']:g})")
    return {"name": "filter sweep AbsRel vs density (synth-0, GT poses; plot)", "measured": measured,
            "target": "", "met": None}


def run_filter_sweep(ws: Path, gt_dir: Path) -> dict:
    from common import RESULTS

    t0 = time.perf_counter()
    try:
        fs = filter_sweep(ws, gt_dir, RESULTS / "labels_filter_sweep.png")
    except Exception as exc:  # reported, not fatal
        fs = {"status": "failed", "error": f"{type(exc).__name__}: {exc}", "seconds": time.perf_counter() - t0}
    else:
        fs["status"] = "ok"
    print(f"filter sweep: {fs['status']} in {fs['seconds']:.1f} s", flush=True)
    return fs


def _redo_on_synth0(section) -> None:
    """Run the first synthetic row (GT poses) in a temporary folder, then ``section(row, tmp)`` ->
    (key, value, table row prefix, table row or None); merge it into the existing labels.json."""
    from common import RESULTS

    path = RESULTS / "labels.json"
    result = json.loads(path.read_text()) if path.exists() else header("labels")
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        row = synthetic_row(tmp, 0, "gt")
        if row.get("status") != "ok":
            raise SystemExit(f"synth-0 failed: {row.get('error')}")
        key, value, prefix, table_row = section(row, tmp)
    result[key] = value
    result["table"] = [r for r in result.get("table", []) if not r["name"].startswith(prefix)]
    if table_row is not None:
        result["table"].append(table_row)
    print(write_results("labels", result))


def filter_only() -> None:
    """Only the first synthetic row and the filter sweep, merged into an existing labels.json."""
    def section(row, tmp):
        fs = run_filter_sweep(Path(row["ws"]), tmp / "syn0" / "depth")
        fs.update(merged=True, date=header("labels")["date"])
        return "filter_sweep", fs, "filter sweep", filter_sweep_table_row(fs) if fs["status"] == "ok" else None

    _redo_on_synth0(section)


def colmap_only() -> None:
    """Only the first synthetic row and the stereo_fusion comparison, merged into labels.json."""
    def section(row, tmp):
        cf = colmap_fusion_row(Path(row["ws"]), tmp / "syn0")
        print(json.dumps(cf, indent=1))
        return "colmap_fusion", cf, "filter vs", colmap_fusion_table_row(cf)

    _redo_on_synth0(section)


def tum_only(desk_only: bool = False, moving_only: bool = False) -> None:
    """Only the TUM rows (fr1/rpy with its figure, and fr1/desk), or only the fr1/desk rows, or only
    the synthetic moving-mask rows, merged into an existing labels.json."""
    from common import RESULTS

    path = RESULTS / "labels.json"
    result = json.loads(path.read_text()) if path.exists() else header("labels")
    with tempfile.TemporaryDirectory() as d:
        if moving_only:
            rows = [moving_synth_row(Path(d), seed) for seed in MOVING_SEEDS]
        else:
            rows = desk_rows(Path(d)) if desk_only else real_rows(Path(d))
        if moving_only or desk_only:  # the figure shows what this run has (the other half: the full run)
            moving_figure(Path(d), RESULTS / "labels_moving.png")
    _finish(rows)
    names = {r["name"] for r in rows}
    result["rows"] = [r for r in result.get("rows", []) if r["name"] not in names] + rows
    result["table"] = [t for t in result.get("table", []) if not any(t["name"].startswith(f"labels {n}:") for n in names)]
    result["table"] += [table_row(r) for r in rows]
    result["moving_merged" if moving_only else "desk_merged" if desk_only else "tum_merged"] = header("labels")["date"]
    print(write_results("labels", result))


def _figure_name(path: Path | None) -> str | None:
    """A figure's file name for the JSON (None when it was not drawn)."""
    return path.name if path is not None else None


def _finish(rows: list) -> None:
    """Mark each row met / not met against its targets and drop its temporary workspace path."""
    for r in rows:
        r["met"] = _met(r) if r.get("targets") else None
        r.pop("ws", None)


def table_row(r: dict) -> dict:
    """The RESULTS.md row of one labels row."""
    if r.get("status") != "ok":
        return {"name": f"labels {r['name']}", "measured": f"failed: {r.get('error', '')[:80]}", "target": "", "met": False}
    t = r["targets"]
    if "moving" in r:
        return moving_table_row(r)
    if "labels_every_frame" in t:
        share = r["labelled_share"]
        return {"name": f"labels {r['name']}: registered, labelled share per frame, AbsRel / density",
                "measured": f"{r['registered']} of {r['frames']}, {min(share):.0%}-{max(share):.0%}, "
                            f"{r['lab_absrel']:.2%} / {r['lab_density']:.1%} (verdict {r['verdict']})",
                "target": "every frame registered and labelled", "met": r["met"]}
    target = ", ".join([f"AbsRel <= {t['absrel']:.1%}"] + ([f"d1.05 >= {t['delta_1.05']:.0%}"] if "delta_1.05" in t else [])
                       + [f"density >= {t['density']:.0%}"]) if t else "(diagnostic)"
    win = f", stereo window {r['window']}" if r.get("window") not in (None, 7) else ""
    note = f"; {r['note']}" if r.get("note") else ""
    return {"name": f"labels {r['name']}: AbsRel / d1.05 / density",
            "measured": f"{r['lab_absrel']:.2%} / {r['lab_delta_1.05']:.1%} / {r['lab_density']:.1%} "
                        f"(raw {r['raw_absrel']:.2%} / {r['raw_delta_1.05']:.1%} / {r['raw_density']:.1%}){win}{note}",
            "target": target, "met": r["met"]}


def moving_table_row(r: dict) -> dict:
    """The RESULTS.md row of a moving-mask row (static share, or the mover's recall)."""
    if "moving_max" in r:
        return {"name": f"labels {r['name']}: pixels marked moving, mean / max over frames",
                "measured": f"{r['moving']:.1%} / {r['moving_max']:.1%}", "target": "max <= 1%", "met": r["met"]}
    return {"name": f"labels {r['name']}: mover's pixels that would otherwise get a label, marked moving",
            "measured": f"{r['moving']:.1%} of {r['mover_px_would_be_labelled']} px (other pixels marked: "
                        f"{r['static_marked']:.2%})", "target": ">= 80%", "met": r["met"]}


def local_rows(tmp: Path, quick: bool, diagnostics: bool) -> list:
    """The synthetic rows (GT and SfM poses; unless ``quick``, the ground sweep, the moving-mask
    rows and Middlebury Cones; with ``diagnostics`` the true-focal row), each printed as it ends."""
    jobs = [(synthetic_row, seed, poses) for seed in ([0] if quick else [0, 1, 2]) for poses in ("gt", "sfm")]
    if not quick:  # what the ground-plane sweep does, and the moving mask, in the same run
        jobs += [(synthetic_row, 0, "gt-ground-sweep")] + [(moving_synth_row, seed) for seed in MOVING_SEEDS]
        if diagnostics:  # what limits the SfM-pose rows: the same clip with the true focal given
            jobs.append((synthetic_row, 2, "sfm-true-focal"))
        if CONES.is_dir():
            jobs.append((cones_row,))
    rows = []
    for fn, *job_args in jobs:
        rows.append(fn(tmp, *job_args))
        print(f"{rows[-1]['name']}: {rows[-1].get('status')}", flush=True)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--diagnostics", action="store_true", help="add the synthetic true-focal diagnostic row")
    ap.add_argument("--colmap-only", action="store_true", help="only redo the stereo_fusion comparison (merged into labels.json)")
    ap.add_argument("--filter-only", action="store_true", help="only redo the filter sweep (merged into labels.json)")
    ap.add_argument("--tum-only", action="store_true",
                    help="only redo the TUM rows (fr1/rpy and its figure, fr1/desk), merged into labels.json")
    ap.add_argument("--desk-only", action="store_true", help="only redo the TUM fr1/desk rows (merged into labels.json)")
    ap.add_argument("--moving-only", action="store_true",
                    help="only redo the synthetic moving-mask rows (merged into labels.json)")
    args = ap.parse_args()
    if args.tum_only or args.desk_only or args.moving_only:
        return tum_only(desk_only=args.desk_only, moving_only=args.moving_only)
    if args.colmap_only:
        return colmap_only()
    if args.filter_only:
        return filter_only()
    result = header("labels")
    t_all = time.perf_counter()
    rows = []
    with tempfile.TemporaryDirectory() as d, ThreadPoolExecutor(max_workers=1) as side:
        tmp = Path(d)
        # The TUM rows run beside the synthetic ones: their SfM maps on one thread for a minute
        # (SfmConfig.deterministic), which leaves a core free.  Accuracy is unchanged; the rows'
        # seconds then include sharing the CPU and are no speed figures (pipeline.py has those).
        tum = side.submit(real_rows, tmp) if not args.quick else None
        rows += local_rows(tmp, args.quick, args.diagnostics)
        if tum is not None:
            rows += tum.result()
        result["moving_figure"] = _figure_name(moving_figure(tmp, RESULTS / "labels_moving.png"))
        if rows[0].get("status") == "ok":
            try:
                result["colmap_fusion"] = colmap_fusion_row(Path(rows[0]["ws"]), tmp / "syn0")
            except Exception as exc:  # reported, not fatal: the comparison needs COLMAP's workspace layout
                result["colmap_fusion"] = {"status": "failed", "error": f"{type(exc).__name__}: {exc}"}
            result["filter_sweep"] = run_filter_sweep(Path(rows[0]["ws"]), tmp / "syn0" / "depth")
    _finish(rows)
    result["rows"] = rows
    result["total_s"] = time.perf_counter() - t_all
    result["table"] = [table_row(r) for r in rows]
    cf = result.get("colmap_fusion", {})
    if cf.get("status") == "ok":
        result["table"].append(colmap_fusion_table_row(cf))
    if result.get("filter_sweep", {}).get("status") == "ok":
        result["table"].append(filter_sweep_table_row(result["filter_sweep"]))
    cols = [("name", "set", None), ("lab_absrel", "AbsRel", "{:.2%}"), ("lab_delta_1.05", "d1.05", "{:.1%}"),
            ("lab_density", "density", "{:.1%}"), ("raw_absrel", "raw AbsRel", "{:.2%}"),
            ("raw_delta_1.05", "raw d1.05", "{:.1%}"), ("raw_density", "raw dens", "{:.1%}"),
            ("moving", "moving", "{:.1%}"), ("window", "win", "{}"), ("seconds", "s", "{:.0f}"), ("met", "met", None)]
    print_table(rows, cols)
    cf = result.get("colmap_fusion", {})
    if cf.get("status") == "ok":
        print(f"stereo_fusion on our raw maps: {colmap_fusion_table_row(cf)['measured']}")
    else:
        print(f"stereo_fusion comparison: {cf}")
    print(write_results("labels", result))


if __name__ == "__main__":
    main()
