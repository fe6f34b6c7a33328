"""Mannequin Challenge benchmark (issue 26): given poses against the SfM path, and pose refinement.

The dataset: one synthetic MC-style sequence, a ``mannequin synth --video`` clip (48 frames,
384×288) and camera files listing every 3rd frame (16 frames) under a YouTube-style URL: the exact
poses, and the same poses perturbed like ORB-SLAM's (seeded: 1° RMS turn, centres moved 0.2 pose
units RMS, about 4% of the median GT depth).  Each row is one ``pipeline.run_video`` call in this
process, with ``frames.pose_timestamps`` (the frames at the file's timestamps) and the fast preset:

- ``given``: exact poses, ``sfm.given_poses = "use"``;
- ``perturbed``: perturbed poses used as given;
- ``refined``: perturbed poses, ``"refine"`` (bundle adjustment, intrinsics fixed);
- ``sfm``: perturbed file, ``"check"`` (SfM ignores the poses and reports their error).

Timings: seconds per frame of the whole run and of the sfm stage, all in the same run after a
warm-up that compiles the Numba kernels.  Target: with given poses, at most a third of the SfM
path's time per frame.  Accuracy: the labels against the synthetic GT depth (``mannequin.evaluate``:
AbsRel, δ < 1.05, density, after one fitted scale per clip for every row: MC poses have an
arbitrary scale, and the perturbation shifts it by a few per cent), and the cameras against the exact
poses after a Sim(3) alignment.  Target: refined labels' AbsRel within 1.5× of the exact poses'.
Writes benchmarks/results/mc.json.
Usage: python benchmarks/mc.py [--frames N] [--size WxH]
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import header, print_table, print_target_table, write_results  # noqa: E402
from mannequin.config import Config, preset  # noqa: E402
from mannequin.evaluate import evaluate  # noqa: E402
from mannequin.io.cameras import read_cameras, write_cameras  # noqa: E402
from mannequin.pipeline import run_video  # noqa: E402
from mannequin.sfm.given_poses import camera_moves, perturb_poses  # noqa: E402
from mannequin.testing.synth import synth  # noqa: E402

STEP = 3  # the camera files list every STEP-th frame of the video (MC files list a subset)
ROTATION_DEG, CENTRE_SD, SEED = 1.0, 0.2, 7  # the perturbation (perturb_poses)
URL = "https://www.youtube.com/watch?v=mannequinsynth"
#: (row, camera file, sfm.given_poses)
RUNS = [("given", "exact", "use"), ("perturbed", "perturbed", "use"), ("refined", "perturbed", "refine"),
        ("sfm", "perturbed", "check")]


def config(mode: str) -> Config:
    """The fast preset at the clip's size, frames at the camera file's timestamps, ``mode``."""
    return preset("fast").replace(frames={"max_size": 0, "blur_ratio": 0.0, "pose_timestamps": True},
                                  fuse={"min_kept_frames": 4}, sfm={"given_poses": mode})


def make_dataset(tmp: Path, n_frames: int, width: int, height: int) -> Path:
    """The clip and its two camera files (``exact.txt``, ``perturbed.txt``) under ``tmp``."""
    clip = synth(tmp / "clip", seed=2, n_frames=n_frames, width=width, height=height, video=True)
    frames = read_cameras(clip / "cameras.txt").frames[::STEP]
    write_cameras(tmp / "exact.txt", frames, url=URL)
    write_cameras(tmp / "perturbed.txt", perturb_poses(frames, SEED, ROTATION_DEG, CENTRE_SD), url=URL)
    return clip


def median_gt_depth(depth_dir: Path) -> float:
    """Median of the synthetic GT depth maps (pose units; 0 = none)."""
    d = np.concatenate([np.load(p).ravel() for p in sorted(depth_dir.glob("*.npy"))])
    return float(np.median(d[d > 0]))


def camera_error(cameras: Path, exact: Path) -> dict[str, float]:
    """Median rotation (degrees) and centre error (share of the median scene depth) of ``cameras``
    against ``exact`` after a Sim(3) alignment."""
    est = {str(i): f.pose for i, f in enumerate(read_cameras(cameras).frames)}
    gt = {str(i): f.pose for i, f in enumerate(read_cameras(exact).frames)}
    err = camera_moves("exact", gt, est, median_depth_est=1.0)
    return {"rotation_deg": err["median_rotation_deg"], "centre_err": err["median_centre_move_rel"] * err["median_depth"]}


def run_row(tmp: Path, clip: Path, name: str, poses: str, mode: str, depth: float) -> dict[str, Any]:
    """One ``run_video`` of the dataset: timings, label accuracy, camera error, the given_poses block."""
    ws_root = tmp / f"ws_{name}"
    t0 = time.perf_counter()
    ws = run_video(clip / "video.mp4", ws_root, poses=tmp / f"{poses}.txt", config=config(mode))
    wall = time.perf_counter() - t0
    n = len(ws.frame_names())
    stages = json.loads(ws.report_json.read_text())["stages"]
    m = evaluate(ws, clip / "depth", fit_scale=True)["clip"]
    block = json.loads((ws.sfm_dir / "summary.json").read_text())["given_poses"]
    cams = camera_error(ws.cameras_txt, tmp / "exact.txt")
    timings = json.loads((ws.sfm_dir / "summary.json").read_text())["timings"]
    return {"name": name, "poses": poses, "given_poses": mode, "frames": n, "wall_s": wall, "s_per_frame": wall / n,
            "sfm_s_per_frame": stages["sfm"]["seconds"] / n,
            "sfm_steps_s": {k: v for k, v in timings.items() if k != "total_s"},
            "features_matching_s_per_frame": timings["features_matching_s"] / n, "stereo_s_per_frame": stages["stereo"]["seconds"] / n,
            "absrel": m["absrel"], "delta_1.05": m["delta_1.05"], "density": m["density"], "label_scale": m["scale"],
            "camera_rotation_deg": cams["rotation_deg"], "camera_centre_rel": cams["centre_err"] / depth,
            "moved_rotation_deg": block.get("median_rotation_deg"), "moved_centre_rel": block.get("median_centre_move_rel")}


def table_rows(rows: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """The target rows: given poses' time per frame against the SfM path's (whole run, sfm stage), and
    the refined labels' AbsRel against the exact poses'."""
    g, s, r, e = rows["given"], rows["sfm"], rows["refined"], rows["given"]
    whole = g["s_per_frame"] / s["s_per_frame"]
    stage = g["sfm_s_per_frame"] / s["sfm_s_per_frame"]
    acc = r["absrel"] / e["absrel"]
    return [
        {"name": "given poses / SfM path, whole run s/frame", "measured": f"{g['s_per_frame']:.2f} / {s['s_per_frame']:.2f} "
         f"= {whole:.2f}", "target": "<= 0.33", "met": whole <= 1 / 3},
        {"name": "given poses / SfM path, sfm stage s/frame", "measured": f"{g['sfm_s_per_frame']:.2f} / "
         f"{s['sfm_s_per_frame']:.2f} = {stage:.2f}", "target": "<= 0.33", "met": stage <= 1 / 3},
        {"name": "refined / exact poses, labels AbsRel", "measured": f"{r['absrel']:.4f} / {e['absrel']:.4f} = {acc:.2f}",
         "target": "<= 1.5", "met": acc <= 1.5},
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=48, help="video frames (the camera files list every 3rd)")
    ap.add_argument("--size", default="384x288", help="WxH")
    args = ap.parse_args()
    width, height = (int(v) for v in args.size.lower().split("x"))
    result = header("mc")
    t_start = time.perf_counter()
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        warm = synth(tmp / "warm", seed=1, n_frames=8, width=160, height=120, video=True)
        run_video(warm / "video.mp4", tmp / "warm_ws", poses=warm / "cameras.txt",
                  config=preset("fast").replace(fuse={"min_kept_frames": 1}))  # compiles the Numba kernels
        clip = make_dataset(tmp, args.frames, width, height)
        depth = median_gt_depth(clip / "depth")
        rows = {name: run_row(tmp, clip, name, poses, mode, depth) for name, poses, mode in RUNS}
        perturbed = camera_error(tmp / "perturbed.txt", tmp / "exact.txt")
    result.update({"dataset": {"video_frames": args.frames, "size": args.size, "step": STEP,
                               "perturbation": {"rotation_deg_rms": ROTATION_DEG, "centre_sd": CENTRE_SD, "seed": SEED},
                               "median_depth": depth, "perturbed_vs_exact": perturbed},
                   "rows": list(rows.values()), "table": table_rows(rows)})
    cols = [("name", "run", None), ("frames", "frames", None), ("s_per_frame", "s/frame", "{:.2f}"),
            ("sfm_s_per_frame", "sfm s/f", "{:.2f}"), ("features_matching_s_per_frame", "of which match", "{:.2f}"),
            ("stereo_s_per_frame", "stereo s/f", "{:.2f}"),
            ("absrel", "AbsRel", "{:.4f}"), ("label_scale", "scale", "{:.3f}"), ("delta_1.05", "d<1.05", "{:.3f}"), ("density", "density", "{:.3f}"),
            ("camera_rotation_deg", "cam rot deg", "{:.3f}"), ("camera_centre_rel", "cam centre/depth", "{:.4f}"),
            ("moved_rotation_deg", "moved deg", "{:.3f}"), ("moved_centre_rel", "moved/depth", "{:.4f}")]
    print_table(list(rows.values()), cols)
    print()
    print_target_table([(t["name"], t["measured"], t["target"], t["met"]) for t in result["table"]])
    result["total_s"] = round(time.perf_counter() - t_start, 1)
    print(write_results("mc", result))


if __name__ == "__main__":
    main()
