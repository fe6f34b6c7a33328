"""A batch's status: one row per video, ``ROOT/status.csv`` and ``ROOT/status.json``, the summary.

A row: name, state (done | failed | skipped | missing), reason (one line; empty unless failed or
missing), frames,
labels (kept frames), seconds (of this run), verdict, input, cameras, workspace; status.json's
rows also carry cpu_seconds.  Formats: docs/FORMATS.md.
"""
from __future__ import annotations

import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mannequin.batch.inputs import Job
from mannequin.config import Config
from mannequin.workspace import Workspace, csv_text, read_json_or_empty, write_json, write_text

# docs/FORMATS.md's columns first, in its order (a reader may go by position), then what batch adds.
STATUS_COLUMNS = ["name", "state", "reason", "frames", "seconds", "labels", "verdict", "input", "cameras",
                  "workspace"]
#: ``missing``: a sequence of ``mannequin mc`` whose video is not there (not run, not a failure).
STATES = ("done", "failed", "skipped", "missing")
#: The states whose frames and labels count in the summary (the workspace is complete).
FINISHED = ("done", "skipped")

#: One video's status row (see the module doc).
Row = dict[str, Any]


def status_row(job: Job, root: Path, state: str, reason: str = "", seconds: float = 0.0) -> Row:
    """The status row of ``job`` in state ``state``, with counts and verdict read from its
    workspace's report.json (none for a failed video's verdict)."""
    ws = Workspace(root / job.name)
    report = read_json_or_empty(ws.report_json)
    stages = report.get("stages", {})
    frames = (stages.get("labels") or {}).get("frames", (stages.get("frames") or {}).get("frames"))
    labels = (stages.get("labels") or {}).get("kept")
    verdict = (report.get("verdict") or {}).get("verdict") if state != "failed" else None
    return {"name": job.name, "state": state, "reason": " ".join(str(reason).split()),
            "frames": frames, "labels": labels, "seconds": round(float(seconds), 2), "verdict": verdict,
            "input": str(job.video), "cameras": str(job.cameras) if job.cameras else None,
            "workspace": str(ws.root)}


def write_status(root: str | os.PathLike[str], rows: Sequence[Row], config: Config | None = None) -> tuple[Path, Path]:
    """Write ``root/status.csv`` and ``root/status.json`` atomically; returns their paths."""
    root = Path(root)
    csv_path = write_text(root / "status.csv", csv_text(STATUS_COLUMNS, rows))
    json_path = write_json(root / "status.json", {
        "summary": summarize(rows), "videos": list(rows),
        "config_hash": (config or Config()).hash(), "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z")})
    return csv_path, json_path


def summarize(rows: Sequence[Row]) -> dict[str, int | float]:
    """Counts per state, frames and labels (kept frames) summed over done and skipped videos, and
    the videos' seconds summed."""
    ok = [r for r in rows if r["state"] in FINISHED]
    return {"videos": len(rows), **{s: sum(r["state"] == s for r in rows) for s in STATES},
            "frames": sum(r.get("frames") or 0 for r in ok), "labels": sum(r.get("labels") or 0 for r in ok),
            "seconds": round(sum(r.get("seconds") or 0 for r in rows), 2)}


def format_summary(rows: Sequence[Row], wall_seconds: float | None = None) -> str:
    """The final table: one line of totals (a ``missing`` column when a row is missing), then one
    line per failed video with its reason."""
    s = summarize(rows)
    cols = ["videos", "done", "failed", "skipped", *(["missing"] if s["missing"] else []), "frames", "labels"]
    head = "  ".join(f"{c:>7}" for c in cols)
    vals = "  ".join(f"{s[c]:>7}" for c in cols)
    if wall_seconds is not None:
        head += f"  {'wall s':>8}"
        vals += f"  {wall_seconds:>8.1f}"
    lines = [head, vals]
    lines += [f"failed: {r['name']}: {r['reason']}" for r in rows if r["state"] == "failed"]
    return "\n".join(lines)


def format_row(row: Row) -> str:
    """One finished video on one line (the progress output)."""
    if row["state"] in ("failed", "missing"):
        return f"{row['state']:<8} {row['name']}: {row['reason']}"
    extra = f", {row['verdict']}" if row.get("verdict") and row["verdict"] != "accepted" else ""
    return (f"{row['state']:<8} {row['name']}: {row.get('frames') or 0} frames, "
            f"{row.get('labels') or 0} labels{extra}, {row['seconds']:.1f} s")
