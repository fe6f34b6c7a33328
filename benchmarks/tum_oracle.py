"""What TUM fr1/rpy allows: plane-sweep depth with the *mocap* poses and the given calibration.

Run by hand:  ``python benchmarks/tum_oracle.py [--refs 5,15,25]``

The labels benchmark asks for AbsRel <= 3% at >= 40% density on the first 30 frames of
../shared/data/tum_fr1_rpy with SfM poses.  This script asks the prior question: how good can
multi-view stereo be on these frames when the poses are the mocap ground truth and the camera is the
TUM calibration (no SfM at all)?  Two measurements per reference frame:

- **Photo-consistency at the true depth.**  Each source frame is warped into the reference frame
  through the Kinect depth (scaled by f = 0.95 ... 1.05) and the mocap poses; the median 7×7 ZNCC
  over the pixels with Kinect depth says whether the images prefer the true depth (f = 1) to a 3% or
  5% wrong one.  Stereo cannot beat what this curve allows.
- **Plane sweep with the mocap poses** (:func:`mannequin.plane_sweep`, 128 planes over 0.4–4 m, the
  four sources with the widest baselines among those turned less than 20°): AbsRel, median relative
  error and δ(1.05) against the Kinect depth, over all estimates and over the 40% most confident.
- Both again with the frames and the Kinect depth corrected for a 30 ms rolling-shutter readout
  (:mod:`mannequin.sfm.rolling_shutter`, the mocap's angular velocity): the camera turns at up to 60°/s,
  which skews a rolling-shutter frame by as much as the baselines' parallax.

Frames are undistorted with OpenCV (the given k1 k2 p1 p2 k3), the Kinect depth (registered to the
distorted image) with the same map, nearest neighbour.  Writes ``benchmarks/results/tum_oracle.json``
and prints a table.  About 30 s.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, SHARED, header, print_target_table  # noqa: E402

TUM = SHARED / "tum_fr1_rpy"
K = np.array([[517.3, 0.0, 318.6], [0.0, 516.5, 255.3], [0.0, 0.0, 1.0]])  # OpenCV convention
DIST = np.array([0.2624, -0.9531, -0.0054, 0.0026, 1.1633])
FACTORS = (0.95, 0.97, 1.0, 1.03, 1.05)
READOUT_MS = 30.0


def _project(X):
    """Camera points (M, 3) → pixels of the recorded (distorted) TUM image, centres at +0.5."""
    from mannequin.evaluate import project_opencv

    return project_opencv(X, (K[0, 0], K[1, 1], K[0, 2], K[1, 2], DIST))


def load(n_frames: int = 30, readout_ms: float = 0.0):
    """Undistorted grey frames (N, H, W) float32, Kinect depth (N, H, W) metres, camera-to-world
    rotations (N, 3, 3) and centres (N, 3) from the mocap, for the first ``n_frames`` staged frames.

    ``readout_ms`` > 0: frames and depth are also corrected for the rolling shutter
    (:func:`mannequin.sfm.rolling_shutter.rectify_image`), with the mocap's angular velocities."""
    import cv2
    from scipy.spatial.transform import Rotation

    from mannequin.sfm import angular_velocities, rectify_image

    rows = [ln.split() for ln in (TUM / "frames_gt_interp.txt").read_text().splitlines()
            if ln.strip() and not ln.startswith("#")][:n_frames]
    if readout_ms <= 0:
        m1, m2 = cv2.initUndistortRectifyMap(K, DIST, None, K, (640, 480), cv2.CV_32FC1)
    Rs = np.array([Rotation.from_quat([float(v) for v in r[6:10]]).as_matrix() for r in rows])
    Cs = np.array([[float(v) for v in r[3:6]] for r in rows])
    omega = angular_velocities(Rs, np.array([float(r[0]) for r in rows]))
    Kc = K.copy()
    Kc[:2, 2] += 0.5
    rgb, depth = [], []
    for i, r in enumerate(rows):
        img = cv2.imread(str(TUM / r[1]), cv2.IMREAD_COLOR)[..., ::-1]
        d = cv2.imread(str(TUM / r[2]), cv2.IMREAD_UNCHANGED).astype(np.float32) / 5000.0
        if readout_ms > 0:
            rgb.append(rectify_image(img, _project, Kc, (640, 480), omega[i], readout_ms * 1e-3))
            depth.append(rectify_image(d, _project, Kc, (640, 480), omega[i], readout_ms * 1e-3, order=0))
        else:
            rgb.append(cv2.remap(np.ascontiguousarray(img), m1, m2, cv2.INTER_LINEAR))
            depth.append(cv2.remap(d, m1, m2, cv2.INTER_NEAREST))
    return np.stack(rgb), np.stack(depth), Rs, Cs


def relative(Rw, C, i, j):
    """(R, t) taking reference-camera i coordinates to camera j: X_j = R @ X_i + t."""
    R = Rw[j].T @ Rw[i]
    return R, Rw[j].T @ (C[i] - C[j])


def zncc_map(a, b, r: int = 3):
    from scipy.ndimage import uniform_filter

    k = 2 * r + 1
    ma, mb = uniform_filter(a, k), uniform_filter(b, k)
    va = uniform_filter(a * a, k) - ma * ma
    vb = uniform_filter(b * b, k) - mb * mb
    return (uniform_filter(a * b, k) - ma * mb) / np.sqrt(np.maximum(va * vb, 1e-6))


def warp(src_grey, depth, R, t):
    """Source grey image sampled at the projections of the reference pixels' 3-D points."""
    from scipy.ndimage import map_coordinates

    H, W = depth.shape
    v, u = np.mgrid[0:H, 0:W].astype(np.float64)
    x, y = (u - K[0, 2]) / K[0, 0], (v - K[1, 2]) / K[1, 1]
    X = np.stack([x * depth, y * depth, depth], -1) @ R.T + t
    z = np.where(X[..., 2] > 1e-6, X[..., 2], np.nan)
    us, vs = K[0, 0] * X[..., 0] / z + K[0, 2], K[1, 1] * X[..., 1] / z + K[1, 2]
    return map_coordinates(src_grey, [vs, us], order=1, cval=np.nan)


def pick_sources(Rw, C, i, n: int = 4, max_turn_deg: float = 20.0):
    from scipy.spatial.transform import Rotation

    cand = []
    for j in range(len(C)):
        turn = np.degrees(Rotation.from_matrix(Rw[j].T @ Rw[i]).magnitude())
        if j != i and turn < max_turn_deg:
            cand.append((-np.linalg.norm(C[j] - C[i]), j))
    return [j for _, j in sorted(cand)[:n]]


def depth_errors(pred, conf, gt, keep: float = 1.0) -> dict:
    m = (gt > 0) & (pred > 0)
    p, g, c = pred[m], gt[m], conf[m]
    if keep < 1.0:
        order = np.argsort(-c, kind="stable")[: max(1, int(keep * len(c)))]
        p, g = p[order], g[order]
    rel = np.abs(p - g) / g
    ratio = np.maximum(p / g, g / p)
    return {"absrel": float(rel.mean()), "median_rel": float(np.median(rel)),
            "delta_1.05": float(np.mean(ratio < 1.05)), "n": int(len(rel))}


def run(refs, readout_ms: float = 0.0) -> dict:
    from mannequin import plane_sweep

    t0 = time.perf_counter()
    rgb, depth, Rw, C = load(readout_ms=readout_ms)
    grey = rgb.astype(np.float64).mean(-1)
    # plane_sweep takes COLMAP's convention (pixel centres at +0.5).
    Kc = K.copy()
    Kc[0, 2] += 0.5
    Kc[1, 2] += 0.5
    frames = []
    for i in refs:
        srcs = pick_sources(Rw, C, i)
        gt = depth[i]
        valid = gt > 0
        photo = {}
        for j in srcs:
            R, t = relative(Rw, C, i, j)
            curve = []
            for f in FACTORS:
                w = warp(grey[j], gt * f, R, t)
                m = valid & np.isfinite(w)
                curve.append(float(np.median(zncc_map(grey[i], np.nan_to_num(w))[m])))
            photo[str(j)] = curve
        Rs, ts = zip(*(relative(Rw, C, i, j) for j in srcs), strict=False)
        d, c = plane_sweep(rgb[i], [rgb[j] for j in srcs], Kc, [Kc] * len(srcs), list(Rs), list(ts),
                           (0.4, 4.0), 128, min_angle_deg=0.5)
        frames.append({
            "ref": i, "readout_ms": readout_ms, "sources": srcs,
            "baselines_mm": [round(float(np.linalg.norm(C[j] - C[i])) * 1000, 1) for j in srcs],
            "kinect_depth_median_m": float(np.median(gt[valid])),
            "zncc_at_depth_factor": photo,
            "sweep_all": depth_errors(d, c, gt),
            "sweep_top40": depth_errors(d, c, gt, keep=0.4),
        })
    return {"factors": list(FACTORS), "frames": frames, "total_s": time.perf_counter() - t0}


def table(result: dict) -> list:
    rows = []
    for fr in result["frames"]:
        mean_curve = np.mean(list(fr["zncc_at_depth_factor"].values()), axis=0)
        best = result["factors"][int(np.argmax(mean_curve))]
        curve = " ".join(f"{f:g}:{z:.3f}" for f, z in zip(result["factors"], mean_curve, strict=False))
        rs = f", rolling shutter {fr['readout_ms']:g} ms" if fr.get("readout_ms") else ""
        rows.append({"name": f"tum mocap-pose oracle{rs}, ref {fr['ref']}: ZNCC at Kinect depth x f (mean of "
                             f"{len(fr['sources'])} sources, baselines {min(fr['baselines_mm']):.0f}-"
                             f"{max(fr['baselines_mm']):.0f} mm)",
                     "measured": f"{curve} (best f = {best:g})", "target": "", "met": None})
        a, b = fr["sweep_all"], fr["sweep_top40"]
        rows.append({"name": f"tum mocap-pose oracle{rs}, ref {fr['ref']}: plane sweep vs Kinect",
                     "measured": f"all: AbsRel {a['absrel']:.1%}, median {a['median_rel']:.1%}, d1.05 "
                                 f"{a['delta_1.05']:.1%}; 40% most confident: AbsRel {b['absrel']:.1%}, "
                                 f"median {b['median_rel']:.1%}",
                     "target": "", "met": None})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--refs", default="5,15,25", help="reference frames (0-29), comma-separated")
    args = ap.parse_args()
    if not TUM.is_dir():
        sys.exit(f"tum_oracle: {TUM}: data folder not found")
    refs = [int(v) for v in args.refs.split(",")]
    result = run(refs)
    # The same with the frames and depth corrected for a 30 ms rolling-shutter readout (the time the
    # sfm stage's search picks on these frames is 20–30 ms), angular velocities from the mocap.
    rs = run(refs, readout_ms=READOUT_MS)
    result["frames"] += rs["frames"]
    result["total_s"] += rs["total_s"]
    out = {**header("tum_oracle"), **result}
    out["table"] = table(result)
    print_target_table([(r["name"], r["measured"], r["target"], r["met"]) for r in out["table"]])
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / "tum_oracle.json"
    tmp = path.with_name("." + path.name + ".tmp")
    tmp.write_text(json.dumps(out, indent=2))
    tmp.replace(path)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
