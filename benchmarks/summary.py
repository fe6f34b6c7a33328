"""Collect benchmarks/results/*.json into benchmarks/RESULTS.md: one table, every figure with its
target and whether it is met, plus the machine, date and commit of each run."""
from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, git_commit, machine_info  # noqa: E402

ORDER = ["sfm", "stereo", "labels", "tum_oracle", "pipeline", "batch", "mc"]
# benchmarks/studies/ (`make studies`, not `make bench`): listed when their results exist.
OPTIONAL = ["sfm_global", "tum_readout", "tum_windows"]
# Plots written by the scripts, with their captions; any other results/*.png is listed after them.
PLOTS = {
    "labels_filter_sweep.png": "Labels: AbsRel against density for the fusion filter's settings "
                               "(`benchmarks/labels.py`, synthetic clip, GT poses)",
    "labels_tum.png": "Labels on real footage: TUM fr1/rpy frames, raw depth, labels, Kinect depth and the "
                      "label error (`benchmarks/labels.py`, SfM poses, one scale per clip)",
    "stereo_throughput.png": "Stereo: plane-sweep hypotheses/s against planes and source views "
                             "(`benchmarks/stereo.py`)",
}


def plot_lines(results: Path = RESULTS) -> list:
    """Markdown lines of a "Plots" section linking the PNGs under ``results`` that exist (none: [])."""
    pngs = sorted(p.name for p in results.glob("*.png") if not p.name.startswith("."))
    names = [n for n in PLOTS if n in pngs] + [n for n in pngs if n not in PLOTS]
    lines = []
    for n in names:
        caption = PLOTS.get(n, n)
        lines += [f"**{caption}**", "", f"![{Path(n).stem}](results/{n})", ""]
    return ["## Plots", "", *lines] if lines else []


def _stage_times(r: dict) -> str:
    """Per-stage wall time and peak memory of an sfm row (the global-mapper comparison)."""
    t = r.get("timings") or {}
    parts = [f"{label} {t[k]:.1f} s" for label, k in (("features+matching", "features_matching_s"),
                                                      ("mapping", "mapping_s"), ("undistortion", "undistortion_s"))
             if t.get(k) is not None]
    if r.get("peak_rss_mb") is not None:
        parts.append(f"peak {r['peak_rss_mb']:.0f} MB")
    return ", ".join(parts)


def sfm_table(data: dict) -> list:
    rows = []
    by_name = {r["name"]: r for r in data.get("rows", [])}
    for r in data.get("rows", []):
        t = r.get("targets", {})
        # A "-global" row is a diagnostic (no target): the global mapper beside its incremental twin.
        twin = by_name.get(r["name"][: -len("-global")]) if r["name"].endswith("-global") else None
        diagnostic = not t
        if diagnostic:
            note = "diagnostic" + (f": global mapper; incremental twin `sfm {twin['name']}` "
                                   f"({_stage_times(twin)})" if twin else "")
        if r.get("status") != "ok":
            measured = f"failed: {str(r.get('error', ''))[:80]}"
            if diagnostic and _stage_times(r):
                measured += f"; {_stage_times(r)}"
            rows.append({"name": f"sfm {r['name']}", "measured": measured,
                         "target": note if diagnostic else ", ".join(f"{k} {v}" for k, v in t.items()),
                         "met": None if diagnostic else False})
            continue
        if "max_pose_diff" in t:
            measured = f"max pose diff {r.get('max_pose_diff', 0):.1e}"
        else:
            measured = f"reg {r['registered_fraction']:.0%}, RMSE {r['rmse_pct']:.2f}% of path, rot {r['rot_err_mean_deg']:.2f}°, focal {r['focal_err_pct']:+.1f}%"
            if r.get("readout_ms"):
                measured += f", rolling-shutter readout {r['readout_ms']:g} ms"
            if r.get("rmse_vs_best_of_prior_on_off") is not None:
                measured += f", {r['rmse_vs_best_of_prior_on_off']:.2f}x the better of prior on/off"
            if r.get("sparse_absrel") is not None:
                measured += f"; SfM points vs Kinect AbsRel {100 * r['sparse_absrel']:.1f}%"
                if r.get("sparse_median_relerr") is not None:
                    measured += f" (median {100 * r['sparse_median_relerr']:.1f}%)"
            warned = [w.split(":")[0] for w in r.get("warnings") or []]
            if warned:
                measured += "; warned: " + "; ".join(warned)
            if diagnostic:
                measured += f"; {_stage_times(r)}"
        target = ", ".join(filter(None, [
            f"reg >= {t['min_reg']:.0%}" if "min_reg" in t else "",
            f"RMSE <= {t['max_rmse_pct']}%" if "max_rmse_pct" in t else "",
            f"focal within {t['max_focal_pct']}%" if "max_focal_pct" in t else "",
            f"pose diff <= {t['max_pose_diff']:g}" if "max_pose_diff" in t else "",
            f"RMSE <= {t['max_rmse_vs_prior_twin']:g}x the better of prior on/off" if "max_rmse_vs_prior_twin" in t else ""]))
        rows.append({"name": f"sfm {r['name']}", "measured": measured, "target": note if diagnostic else target,
                     "met": None if diagnostic else r.get("met")})
    return rows


def labels_table(data: dict, table: list) -> list:
    """labels.json's table with its stereo_fusion row formatted afresh from ``colmap_fusion`` (by
    :func:`labels.colmap_fusion_table_row`: mean beside mean, median beside median), so a results
    file written before that format is shown like with like too."""
    from labels import COLMAP_ROW, colmap_fusion_table_row

    cf = data.get("colmap_fusion") or {}
    if cf.get("status") != "ok":
        return table
    return [colmap_fusion_table_row(cf) if row["name"] == COLMAP_ROW else row for row in table]


def main() -> None:
    lines = ["# Benchmark results", "",
             f"Collected by `benchmarks/summary.py` at commit `{git_commit()}` on {machine_info()['cpu_count']} cores "
             f"({machine_info()['cpu_model']}). Each script's own run is listed below the table; timings are from a "
             "shared, noisy machine, so speeds are quoted as ratios against a baseline of the same run where one exists.",
             "", "| benchmark | figure | measured | target | met |", "|---|---|---|---|---|"]
    runs = []
    for name in ORDER + [n for n in OPTIONAL if (RESULTS / f"{n}.json").exists()]:
        path = RESULTS / f"{name}.json"
        if not path.exists():
            lines.append(f"| {name} | (not run) | | | |")
            continue
        data = json.loads(path.read_text())
        table = data.get("table") or (sfm_table(data) if name in ("sfm", "sfm_global") else [])
        if name == "labels":
            table = labels_table(data, table)
        for row in table:
            met = {True: "yes", False: "**no**", None: ""}[row.get("met")]
            lines.append(f"| {name} | {row['name']} | {row['measured']} | {row.get('target', '')} | {met} |")
        m = data.get("machine", {})
        runs.append(f"- `{name}`: {data.get('date', '?')}, commit `{data.get('git_commit', '?')}`, "
                    f"{m.get('cpu_count', '?')} cores, {data.get('total_s', 0) or 0:.0f} s"
                    + (", quick" if data.get("quick") else "")
                    + "".join(f"; section `{k}` re-run alone on {v.get('date', '?')}" for k, v in data.items()
                              if isinstance(v, dict) and v.get("merged")))
    lines += ["", *plot_lines(), "## Runs", *runs, ""]
    out = Path(__file__).resolve().parent / "RESULTS.md"
    tmp = out.with_name(".RESULTS.md.tmp")
    tmp.write_text("\n".join(lines))
    tmp.replace(out)
    print(out)


if __name__ == "__main__":
    main()
