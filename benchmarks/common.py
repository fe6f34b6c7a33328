"""Shared helpers of the benchmark scripts: machine info, git commit, tables, atomic JSON."""
from __future__ import annotations

import datetime
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"


def git_commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True,
                              text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo, or "unknown"."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return "unknown"
    for line in text.splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "unknown"


def print_target_table(rows) -> None:
    """Print (name, measured, target, met) rows; met None prints as '-'."""
    hdr = ("name", "measured", "target", "met")
    cells = [(n, m, t, "-" if ok is None else ("yes" if ok else "NO")) for n, m, t, ok in rows]
    w = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(hdr)]
    print("  ".join(h.ljust(x) for h, x in zip(hdr, w, strict=False)))
    print("  ".join("-" * x for x in w))
    for c in cells:
        print("  ".join(v.ljust(x) for v, x in zip(c, w, strict=False)))


def machine_info() -> dict:
    cpu = cpu_model()
    try:
        load = os.getloadavg()[0]
    except OSError:
        load = None
    return {"cpu_count": os.cpu_count(), "cpu_model": cpu, "platform": platform.platform(),
            "python": sys.version.split()[0], "load_1min_at_start": load}


def header(name: str) -> dict:
    return {"benchmark": name, "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "git_commit": git_commit(), "machine": machine_info()}


def write_results(name: str, data: dict) -> Path:
    """benchmarks/results/<name>.json, atomically."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")
    os.replace(tmp, path)
    return path


def finish_diagnostic(name: str, t0: float, rows: list, table: list) -> Path:
    """End of a by-hand diagnostic script: print its table (dicts with name, measured, target, met)
    and write ``results/<name>.json`` with the header, the run time since ``t0`` (perf_counter),
    the rows and the table.  Returns the path."""
    print_target_table([(t["name"], t["measured"], t["target"], t["met"]) for t in table])
    return write_results(name, {**header(name), "total_s": time.perf_counter() - t0, "rows": rows, "table": table})


def print_table(rows: list, columns: list) -> None:
    """Print dict rows as an aligned text table (columns: list of (key, title, format))."""
    cells = [[t for _, t, _ in columns]]
    for r in rows:
        cells.append([("" if r.get(k) is None else (f.format(r[k]) if f else str(r[k]))) for k, _, f in columns])
    widths = [max(len(c[i]) for c in cells) for i in range(len(columns))]
    for i, c in enumerate(cells):
        print("  ".join(v.ljust(w) for v, w in zip(c, widths, strict=False)))
        if i == 0:
            print("  ".join("-" * w for w in widths))


def save_figure(fig, path: Path) -> Path:
    """Save a matplotlib figure as PNG atomically (a temporary sibling, then a rename) and close it."""
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(path)
    return path
