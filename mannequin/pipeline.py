"""The one code path behind the CLI, make, the Python API and batch: :func:`run_video`.

Stages run in order frames → sfm → stereo → fuse → labels.  Each finished stage leaves a stamp
(``WS/stamps/<stage>.json``) holding a chained hash of its options and its inputs; a stage whose
stamp matches is skipped, and a stage that re-runs invalidates every stage after it.
"""
from __future__ import annotations

import hashlib
import logging
import os
import threading
import time
from pathlib import Path
from typing import Callable, Dict, Optional

from .config import STAGES, Config
from .errors import InputError
from .workspace import Workspace, clean_temporaries, read_json_or_empty, write_json

log = logging.getLogger("mannequin.pipeline")


class PeakMemory:
    """Samples the process's resident memory in a thread; ``peak_mb`` after the block."""

    def __init__(self, interval: float = 0.05):
        self.interval = interval
        self.peak_mb = 0.0
        self._stop = threading.Event()

    @staticmethod
    def rss_mb() -> float:
        try:
            with open("/proc/self/statm") as fh:
                return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
        except OSError:  # not Linux: fall back to the lifetime peak
            import resource

            return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    def _run(self):
        while not self._stop.is_set():
            self.peak_mb = max(self.peak_mb, self.rss_mb())
            self._stop.wait(self.interval)

    def __enter__(self):
        self.peak_mb = self.rss_mb()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak_mb = max(self.peak_mb, self.rss_mb())


def _file_id(path: Optional[Path]) -> str:
    """Identity of an input for the stamps: path, size and modification time (folders: their files)."""
    if path is None:
        return "none"
    path = Path(path).resolve()
    if path.is_dir():
        parts = [f"{p.name}:{p.stat().st_size}:{p.stat().st_mtime_ns}" for p in sorted(path.iterdir()) if p.is_file()]
        return f"{path}|" + ",".join(parts)
    if path.is_file():
        st = path.stat()
        return f"{path}|{st.st_size}|{st.st_mtime_ns}"
    return f"{path}|missing"


def stage_hashes(cfg: Config, input_path, poses=None) -> Dict[str, str]:
    """Chained hash per stage: a stage's hash covers its options, its inputs and every earlier stage."""
    out, prev = {}, _file_id(Path(input_path)) if input_path is not None else "workspace"
    for stage in STAGES:
        extra = _file_id(Path(poses)) if (stage == "sfm" and poses is not None) else ""
        prev = hashlib.sha256(f"{prev}|{cfg.stage_hash(stage)}|{extra}".encode()).hexdigest()[:16]
        out[stage] = prev
    return out


def run_video(input, out, poses=None, config: Optional[Config] = None, *, progress: bool = False,
              stages=STAGES, on_stage: Optional[Callable[[str, str], None]] = None) -> Workspace:
    """Run frames → sfm → stereo → fuse → labels for one video (or image folder) into ``out``.

    ``input``: video file or image folder.  ``out``: workspace folder (created).  ``poses``: an
    MC/RealEstate10K camera file to use instead of SfM.  ``config``: a :class:`Config` (default
    preset when None).  Stages whose stamp matches are skipped.  Writes ``WS/report.json``.
    Returns the :class:`Workspace`.  Raises :class:`~mannequin.errors.MannequinError` subclasses
    with a one-line message on bad input or a failed stage.
    """
    cfg = config or Config()
    input_path = Path(input)
    if not input_path.exists():
        raise InputError(f"{input_path}: input not found")
    if poses is not None and not Path(poses).is_file():
        raise InputError(f"{poses}: camera file not found")
    ws = Workspace(out).create()
    clean_temporaries(ws.root)
    write_json(ws.config_json, cfg.to_dict())
    hashes = stage_hashes(cfg, input_path, poses)
    report = read_json_or_empty(ws.report_json)
    report.update({"input": str(input_path), "poses": str(poses) if poses else None,
                   "config": cfg.to_dict(), "config_hash": cfg.hash()})
    report.setdefault("stages", {})
    invalid = False
    for stage in STAGES:
        if stage not in stages:
            continue
        if not invalid and ws.is_done(stage, hashes[stage]):
            report["stages"].setdefault(stage, {})["skipped"] = True
            if on_stage:
                on_stage(stage, "skipped")
            continue
        invalid = True
        for later in STAGES[STAGES.index(stage):]:
            ws.clear_stamp(later)
        if on_stage:
            on_stage(stage, "running")
        t0 = time.perf_counter()
        with PeakMemory() as mem:
            info = _STAGE_FUNCS[stage](ws, cfg, input_path=input_path, poses=poses, progress=progress,
                                       stage_hash=hashes[stage]) or {}
        seconds = time.perf_counter() - t0
        report["stages"][stage] = {"seconds": round(seconds, 3), "peak_mb": round(mem.peak_mb, 1),
                                   "skipped": False, **info}
        ws.write_stamp(stage, hashes[stage], seconds=round(seconds, 3))
        write_json(ws.report_json, report)
        log.info("%s: %s done in %.1f s (peak %.0f MB)", ws.root.name, stage, seconds, mem.peak_mb)
    write_json(ws.report_json, report)
    return ws


# --- stage adapters: (ws, cfg, **context) -> info dict for the report ------------------------

def _frames(ws, cfg, *, input_path, progress, **_):
    from .frames import extract_frames, read_frames_csv

    extract_frames(input_path, ws, cfg.frames, progress=progress)
    rows = read_frames_csv(ws.frames_csv)
    return {"frames": sum(r["kept"] for r in rows), "candidates": len(rows)}


def _sfm(ws, cfg, *, poses, progress, **_):
    from .sfm import run_sfm

    run_sfm(ws, cfg.sfm, poses=poses, seed=cfg.seed, progress=progress)
    s = read_json_or_empty(ws.sfm_dir / "summary.json")
    return {k: s.get(k) for k in ("registered", "total_frames", "registered_fraction", "points",
                                  "focal_px", "median_triangulation_deg", "reprojection_error_px")}


def _stereo(ws, cfg, *, progress, stage_hash, **_):
    from .stereo import run_stereo

    run_stereo(ws, cfg.stereo, stage_hash=stage_hash, progress=progress)
    return {"frames": len(list(ws.depth_dir.glob("*.conf.npy")))}


def _fuse(ws, cfg, *, progress, **_):
    from .fusion import run_fuse

    return run_fuse(ws, cfg.fuse, progress=progress)


def _labels(ws, cfg, *, progress, **_):
    from .labels import run_labels

    return run_labels(ws, cfg, progress=progress)


_STAGE_FUNCS = {"frames": _frames, "sfm": _sfm, "stereo": _stereo, "fuse": _fuse, "labels": _labels}
