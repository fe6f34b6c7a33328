"""What the rolling-shutter readout does to SfM on TUM fr1/rpy, and why its search cannot tell.

Run by hand (about 10 minutes; not part of ``make bench``):
``python benchmarks/studies/tum_readout.py [--readouts 0,20,40,60,80] [--windows a,b]``

The camera of fr1/rpy mostly turns (up to 60°/s) and moves a few centimetres, so SfM's structure
hangs on small rotations: an offset in inverse depth trades against them (the bas-relief
ambiguity), and a rolling shutter skews every frame by as much as the parallax.  For each 30-frame
window (``a`` = frames 0–29, ``b`` = 30–59, the sfm benchmark's rows, fed the same way as an H.264
video with the TUM calibration given) and each forced readout time (``SfmConfig.readout_ms``), one
SfM run, scored four ways:

- ``reproj px``: the final model's mean reprojection error, what a GT-free search can see;
- ``rmse%``: camera centres against the mocap after Sim(3), % of the path (the sfm benchmark's figure);
- ``sparse%``: AbsRel of the SfM points against the Kinect depth, one scale per clip
  (``mannequin eval --which sparse``): the structure the depth labels inherit;
- ``omega ratio``: the median over frames of |angular velocity| of the model / of the mocap.

Writes ``benchmarks/results/tum_readout.json`` and prints a table.  The default search
(``readout_ms = -1``) scores 10–40 ms by reprojection error on the first model's tracks; the sfm
benchmark's rows report what it picks.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from sfm import DATA, TUM_CALIB, tum_clip, tum_sfm  # noqa: E402

from common import finish_diagnostic  # noqa: E402

WINDOWS = {"a": (0, 30), "b": (30, 60)}


def omega_ratio(ws, gt: dict, times: dict) -> float:
    """Median over registered frames of |omega| of the model's rotations / of the GT rotations."""
    import pycolmap

    from mannequin.sfm import angular_velocities

    rec = pycolmap.Reconstruction(str(ws.sparse_dir))
    ims = sorted(rec.images.values(), key=lambda i: i.name)
    names = [Path(i.name).stem for i in ims]
    t = np.array([times[n] for n in names])
    est = angular_velocities(np.array([i.cam_from_world().rotation.matrix().T for i in ims]), t)
    ref = angular_velocities(np.array([gt[n].R.T for n in names]), t)
    return float(np.median(np.linalg.norm(est, axis=1) / np.maximum(np.linalg.norm(ref, axis=1), 1e-9)))


def run_window(key: str, readouts: list, work: Path) -> list:
    from mannequin.config import SfmConfig

    lo, hi = WINDOWS[key]
    video, gt, depth, times = tum_clip(lo, hi, work / f"{key}.mp4")
    rows = []
    for ms in readouts:
        t0 = time.perf_counter()
        ws, summary, metrics = tum_sfm(video, gt, depth, SfmConfig(intrinsics=TUM_CALIB, readout_ms=float(ms)),
                                       work / f"{key}-{ms:g}")
        row = {"window": key, "frames": f"{lo}-{hi - 1}", "readout_ms": ms,
               "reprojection_error_px": summary.get("reprojection_error_px"), "points": summary.get("points")}
        row.update({k: v for k, v in metrics.items()
                    if k in ("rmse_pct", "registered", "rot_err_mean_deg") or k.startswith("sparse_")})
        row["omega_ratio"] = omega_ratio(ws, gt, times)
        row["seconds"] = time.perf_counter() - t0
        print(f"[tum_readout] {key} {ms:g} ms: sparse {100 * row['sparse_absrel']:.1f}%, reproj "
              f"{row['reprojection_error_px']:.3f} px ({row['seconds']:.0f} s)", file=sys.stderr, flush=True)
        rows.append(row)
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--readouts", default="0,20,40,60,80", help="forced readout times in ms (0 = none)")
    ap.add_argument("--windows", default="a,b", help="a = frames 0-29, b = 30-59")
    args = ap.parse_args(argv)
    if not (DATA / "tum_fr1_rpy").is_dir():
        print(f"[tum_readout] {DATA / 'tum_fr1_rpy'} not found", file=sys.stderr)
        return 1
    readouts = [float(v) for v in args.readouts.split(",") if v.strip()]
    keys = [k.strip() for k in args.windows.split(",") if k.strip()]
    bad = [k for k in keys if k not in WINDOWS]
    if bad or any(not 0 <= r <= 1000 for r in readouts):
        ap.error(f"windows must be among {list(WINDOWS)} and readouts in [0, 1000] ms")
    t0 = time.perf_counter()
    rows = []
    with tempfile.TemporaryDirectory(prefix="mannequin-tum-readout-") as tmp:
        for key in keys:
            rows += run_window(key, readouts, Path(tmp))
    table = [{"name": f"TUM fr1/rpy frames {r['frames']}, readout forced to {r['readout_ms']:g} ms",
              "measured": (f"reproj {r['reprojection_error_px']:.3f} px, camera RMSE {r['rmse_pct']:.2f}%, SfM points "
                           f"vs Kinect AbsRel {100 * r['sparse_absrel']:.1f}%, turn rate x{r['omega_ratio']:.2f} "
                           f"of mocap, {r['points']} points"),
              "target": "(diagnostic)", "met": None} for r in rows]
    print(finish_diagnostic("tum_readout", t0, rows, table))
    return 0


if __name__ == "__main__":
    sys.exit(main())
