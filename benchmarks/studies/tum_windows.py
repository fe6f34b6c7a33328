"""How far the sfm benchmark's TUM figures move when the 30-frame window shifts by a few frames.

Run by hand (about 12 minutes; not part of ``make bench``):
``python benchmarks/studies/tum_windows.py [--offsets 0,2,4] [--windows a,b] [--modes self,calib]``

The sfm benchmark judges its TUM fr1/rpy rows (``a`` = frames 0–29, ``b`` = 30–59; self-calibrated
and with the TUM calibration) on one window each.  This script runs the same rows, configured the
same way (:func:`sfm.tum_clip`, default :class:`SfmConfig`, seed 0), on windows shifted by each
offset: ``a`` later (``a`` +2 = frames 2–31), ``b`` earlier (``b`` +2 = frames 28–57; the data end at
frame 59): footage of the same quality and motion, so the spread of a figure
over the offsets is how precisely one window measures it.  A target that sits inside that spread is
met or missed by the choice of window.  Per run: camera-centre RMSE (% of path, after Sim(3)
against the mocap), self-calibrated focal error, SfM points against the Kinect depth (AbsRel, one
scale per clip), the readout time chosen and the warnings.

Writes ``benchmarks/results/tum_windows.json`` and prints a table (one line per run, then the
range per row).
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from sfm import DATA, ROWS, TUM_CALIB, tum_clip, tum_sfm  # noqa: E402

from common import finish_diagnostic  # noqa: E402

# window -> (first frame, direction of the shift): the GT has 60 frames, so b shifts back.
WINDOWS = {"a": (0, 1), "b": (30, -1)}
LENGTH = 30


def run_one(key: str, mode: str, offset: int, work: Path) -> dict:
    """One SfM run: window ``key`` shifted by ``offset`` frames, ``mode`` self or calib."""
    from mannequin.config import SfmConfig

    first, direction = WINDOWS[key]
    lo = first + direction * offset
    tag = f"{key}+{offset}-{mode}"
    t0 = time.perf_counter()
    video, gt, depth, _ = tum_clip(lo, lo + LENGTH, work / f"{tag}.mp4")
    _, summary, metrics = tum_sfm(video, gt, depth, SfmConfig(intrinsics=TUM_CALIB) if mode == "calib" else SfmConfig(),
                                  work / tag)
    row = {"row": f"rpy-{key}-{mode}", "offset": offset, "frames": f"{lo}-{lo + LENGTH - 1}",
           "readout_ms": (summary.get("rolling_shutter") or {}).get("readout_ms"),
           "warnings": summary.get("warnings", [])}
    row.update({k: v for k, v in metrics.items()
                if k in ("rmse_pct", "registered_fraction", "focal_err_pct") or k.startswith("sparse_")})
    row["seconds"] = time.perf_counter() - t0
    print(f"[tum_windows] {tag}: RMSE {row['rmse_pct']:.2f}%, focal {row.get('focal_err_pct', 0):+.2f}%, "
          f"sparse {100 * row['sparse_absrel']:.1f}% ({row['seconds']:.0f} s)", file=sys.stderr, flush=True)
    return row


def spread_rows(rows: list) -> list:
    """Per benchmark row: the range of each figure over the offsets, against the sfm benchmark's target."""
    out = []
    for name in sorted({r["row"] for r in rows}):
        rs = [r for r in rows if r["row"] == name]
        targets = ROWS[name][2]
        rmse = [r["rmse_pct"] for r in rs]
        focal = [abs(r.get("focal_err_pct", 0.0)) for r in rs]
        sparse = [100 * r["sparse_absrel"] for r in rs]
        meets = [r["rmse_pct"] <= targets["max_rmse_pct"]
                 and abs(r.get("focal_err_pct", 0.0)) <= targets.get("max_focal_pct", float("inf")) for r in rs]
        text = f"RMSE {min(rmse):.2f}-{max(rmse):.2f}%"
        if "max_focal_pct" in targets:
            text += f", |focal err| {min(focal):.2f}-{max(focal):.2f}%"
        text += f", SfM points vs Kinect {min(sparse):.1f}-{max(sparse):.1f}%; targets met in {sum(meets)} of {len(rs)} windows"
        tgt = f"RMSE <= {targets['max_rmse_pct']:g}%" + (f", |focal| <= {targets['max_focal_pct']:g}%"
                                                         if "max_focal_pct" in targets else "")
        shifts = ", ".join(f"+{r['offset']}" for r in rs)
        out.append({"name": f"{name} over window shifts {shifts}",
                    "measured": text, "target": f"(diagnostic; sfm target {tgt})", "met": None})
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--offsets", default="0,2,4", help="window shifts in frames (a later, b earlier)")
    ap.add_argument("--windows", default="a,b", help="a = frames 0-29, b = 30-59 (before the shift)")
    ap.add_argument("--modes", default="self,calib", help="self-calibrated and/or the TUM calibration given")
    args = ap.parse_args(argv)
    if not (DATA / "tum_fr1_rpy").is_dir():
        print(f"[tum_windows] {DATA / 'tum_fr1_rpy'} not found", file=sys.stderr)
        return 1
    try:
        offsets = [int(v) for v in args.offsets.split(",") if v.strip()]
    except ValueError:
        ap.error(f"--offsets {args.offsets!r}: expected comma-separated whole numbers of frames")
    keys = [k.strip() for k in args.windows.split(",") if k.strip()]
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    if (not offsets or any(not 0 <= o <= 30 for o in offsets) or not keys or any(k not in WINDOWS for k in keys)
            or not modes or any(m not in ("self", "calib") for m in modes)):
        ap.error(f"offsets in [0, 30], windows among {list(WINDOWS)}, modes among self, calib")
    t0 = time.perf_counter()
    rows = []
    with tempfile.TemporaryDirectory(prefix="mannequin-tum-windows-") as tmp:
        for key in keys:
            for mode in modes:
                for off in offsets:
                    rows.append(run_one(key, mode, off, Path(tmp)))
    table = [{"name": f"{r['row']} frames {r['frames']}",
              "measured": (f"RMSE {r['rmse_pct']:.2f}%, focal {r.get('focal_err_pct', 0.0):+.2f}%, SfM points vs Kinect "
                           f"{100 * r['sparse_absrel']:.1f}%"
                           + (f" (median {100 * r['sparse_median_relerr']:.1f}%)" if r.get("sparse_median_relerr") is not None else "")
                           + f", readout {r['readout_ms']:g} ms"
                           + (f"; {len(r['warnings'])} warning(s)" if r["warnings"] else "")),
              "target": "(diagnostic)", "met": None} for r in rows]
    table += spread_rows(rows)
    print(finish_diagnostic("tum_windows", t0, rows, table))
    return 0


if __name__ == "__main__":
    sys.exit(main())
