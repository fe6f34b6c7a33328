"""The one code path behind the CLI, make, the Python API and batch: :func:`run_video`.

Stages run in order frames → sfm → stereo → fuse → labels.  Each finished stage leaves a stamp
(``WS/stamps/<stage>.json``) holding a chained hash of its options and its inputs; a stage whose
stamp matches is skipped, and a stage that re-runs invalidates every stage after it.
"""
from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from mannequin.config import STAGES, Config, validate
from mannequin.errors import InputError, MannequinError, one_line
from mannequin.result import StageResult
from mannequin.workspace import PathArg, Workspace, clean_temporaries, read_json_or_empty, write_json

log = logging.getLogger("mannequin.pipeline")

#: A file or folder argument.


class PeakMemory:
    """Samples the process's resident memory every ``interval`` s in a thread; ``peak_mb`` (MiB)
    after the block."""

    def __init__(self, interval: float = 0.05) -> None:
        self.interval = interval
        self.peak_mb = 0.0
        self._stop = threading.Event()

    @staticmethod
    def rss_mb() -> float:
        """The process's resident memory now, in MiB (elsewhere than Linux: its lifetime peak)."""
        try:
            with open("/proc/self/statm") as fh:
                return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
        except OSError:  # not Linux: fall back to the lifetime peak
            import resource

            return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak_mb = max(self.peak_mb, self.rss_mb())
            self._stop.wait(self.interval)

    def __enter__(self) -> PeakMemory:
        self.peak_mb = self.rss_mb()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak_mb = max(self.peak_mb, self.rss_mb())


def _file_id(path: PathArg | None) -> str:
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


def stage_hash(ws: Workspace, stage: str, cfg: Config, input_path: PathArg | None = None,
               poses: PathArg | None = None) -> str:
    """Chained hash of ``stage`` (16 hex digits): its options, its own inputs (frames: the input's
    path, size and time; sfm, or frames with ``pose_timestamps``: the camera file's) and the stamp
    of the stage before it.

    Raises :class:`InputError` when the stage before it has not finished.
    """
    if stage == "frames":
        prev = _file_id(Path(input_path)) if input_path is not None else "none"
    else:
        before = STAGES[STAGES.index(stage) - 1]
        stamp = ws.read_stamp(before)
        if not stamp:
            raise InputError(f"{ws.root}: stage {before} has not finished (run 'mannequin {before}' or 'mannequin run' first)")
        prev = stamp["hash"]
    uses_poses = stage == "sfm" or (stage == "frames" and cfg.frames.pose_timestamps)
    extra = _file_id(Path(poses)) if (uses_poses and poses is not None) else ""
    return hashlib.sha256(f"{prev}|{cfg.stage_hash(stage)}|{extra}".encode()).hexdigest()[:16]


def run_stage(ws: Workspace, stage: str, cfg: Config, *, input_path: PathArg | None = None,
              poses: PathArg | None = None, progress: bool = False, force: bool = False) -> str:
    """Run one stage on ``ws`` unless its stamp matches; returns "skipped" or "done".

    A stage that runs clears the stamps of every later stage first, and records its wall time,
    peak memory and counts (its :class:`~mannequin.result.StageResult` report) in
    ``WS/report.json`` before writing its own stamp.  The frames stage refuses an input that
    overlaps the workspace before writing anything, and a workspace it created is removed again
    when it fails.
    """
    if stage not in STAGES:
        raise ValueError(f"unknown stage {stage!r}")
    validate(cfg, "config")
    if stage == "frames":
        if input_path is None:
            raise TypeError("run_stage: the frames stage needs input_path")
        check_input_and_workspace(input_path, ws.root)
    h = stage_hash(ws, stage, cfg, input_path, poses)
    _check_earlier_stages(ws, stage, cfg)
    if not force and ws.is_done(stage, h):
        return "skipped"
    fresh = _prepare_workspace(ws, stage, cfg)
    t0 = time.perf_counter()
    try:
        with stage_log(ws, stage, h), PeakMemory() as mem:
            result = _STAGE_FUNCS[stage](ws, cfg, input_path=input_path, poses=poses, progress=progress,
                                         stage_hash=h)
    except MannequinError:
        if fresh:  # only the first stage can start a workspace: bad input leaves none behind
            shutil.rmtree(ws.root, ignore_errors=True)
        raise
    seconds = time.perf_counter() - t0
    _record_in_report(ws, stage, cfg, dict(result.report), seconds, mem.peak_mb, input_path, poses)
    ws.write_stamp(stage, h, seconds=round(seconds, 3), options=cfg.stage_hash(stage),
                   **({"input": str(input_path)} if stage == "frames" else {}))
    message = f"{ws.root.name}: {stage} done in {seconds:.1f} s (peak {mem.peak_mb:.0f} MB)"
    log.info(message)
    _log_to_file(ws, logging.INFO, message)
    return "done"


def _check_earlier_stages(ws: Workspace, stage: str, cfg: Config) -> None:
    """Refuse (InputError) to run ``stage`` when an earlier stage is unfinished, was run with other
    options than ``cfg``'s, or lost its outputs."""
    before = STAGES[:STAGES.index(stage)]
    stamps = {b: ws.read_stamp(b) for b in before}
    unfinished = [b for b in before if not stamps[b]]
    if unfinished:  # the chain checks only the stage before; a lost earlier stamp is as unfinished
        raise InputError(f"{ws.root}: stage {unfinished[0]} has not finished (run 'mannequin run' again)")
    stale = [b for b in before if (stamps[b] or {}).get("options", cfg.stage_hash(b)) != cfg.stage_hash(b)]
    if stale:  # e.g. 'mannequin sfm WS --max-size 200' on frames extracted at another size
        raise InputError(f"{ws.root}: stage {stale[0]} was run with other options than these "
                         f"(run 'mannequin {stale[0]}' with them first, or 'mannequin run')")
    if before and not ws.outputs_present(before[-1]):
        raise InputError(f"{ws.root}: the outputs of stage {before[-1]} are missing (deleted?); "
                         f"run 'mannequin {before[-1]}' or 'mannequin run' again")


def _prepare_workspace(ws: Workspace, stage: str, cfg: Config) -> bool:
    """Before ``stage`` runs: clear its stamp and every later one, remove their superseded outputs,
    create the workspace, drop temporaries of an interrupted write and write ``WS/config.json``.
    Returns whether the workspace folder was created here."""
    this_and_later = STAGES[STAGES.index(stage):]
    for later in this_and_later:
        ws.clear_stamp(later)
    for later in this_and_later:
        ws.remove_superseded(later)
    fresh = not ws.root.exists()
    try:
        ws.root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"{ws.root}: cannot create the workspace folder ({exc.strerror or one_line(exc)})") from exc
    clean_temporaries(ws.root)
    write_json(ws.config_json, cfg.to_dict())
    return fresh


def _record_in_report(ws: Workspace, stage: str, cfg: Config, info: dict[str, Any], seconds: float, peak_mb: float,
                      input_path: PathArg | None, poses: PathArg | None) -> None:
    """Put the finished stage's report ``info`` (with its seconds and peak MB) into ``WS/report.json``
    under ``stages.<stage>``, drop the later stages' entries, collect the warnings, and after the
    labels stage add the verdict and write ``WS/preview/report.html``."""
    report = read_json_or_empty(ws.report_json)
    report.update({"workspace": str(ws.root), "config": cfg.to_dict(), "config_hash": cfg.hash()})
    if stage == "frames":
        report.update({"input": str(input_path), "stages": {}})
    if stage == "sfm":
        report["poses"] = str(poses) if poses else None
    report.setdefault("stages", {})[stage] = {"seconds": round(seconds, 3), "peak_mb": round(peak_mb, 1), **info}
    report["warnings"] = [w for s in report["stages"].values() for w in (s.get("warnings") or [])]
    for later in STAGES[STAGES.index(stage) + 1:]:
        report["stages"].pop(later, None)
    if stage == "labels":
        report["verdict"] = {"verdict": info.get("verdict"), "accepted": info.get("verdict") == "accepted",
                             "reasons": info.get("reasons", [])}
    write_json(ws.report_json, report)
    if stage == "labels":
        from mannequin.labels import write_report_html

        write_report_html(ws)


LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


@contextlib.contextmanager
def stage_log(ws: Workspace, stage: str, stage_hash: str) -> Iterator[None]:
    """While a stage runs, append the ``mannequin`` logger's records (the level the caller set: the
    CLI keeps INFO even with ``--quiet``, which only quiets the terminal) to ``WS/logs/mannequin.log``
    with a time stamp, framed by a start line and, on failure, the one-line reason (written to the
    file only: the caller reports it).  pycolmap's own log goes to ``WS/logs/sfm.log``."""
    handler = _file_handler(ws)
    logger = logging.getLogger("mannequin")
    logger.addHandler(handler)
    try:
        handler.handle(log.makeRecord(log.name, logging.INFO, __file__, 0,
                                      f"{ws.root.name}: {stage} started (options {stage_hash[:12]})", (), None))
        yield
    except BaseException as exc:
        reason = "interrupted" if isinstance(exc, KeyboardInterrupt) else one_line(exc, 1000)
        handler.handle(log.makeRecord(log.name, logging.ERROR, __file__, 0,
                                      f"{ws.root.name}: {stage} failed: {reason}", (), None))
        raise
    finally:
        logger.removeHandler(handler)
        handler.close()


def _file_handler(ws: Workspace) -> logging.Handler:
    ws.logs_dir.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(ws.logs_dir / "mannequin.log", encoding="utf-8")
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    return handler


def _log_to_file(ws: Workspace, level: int, message: str) -> None:
    handler = _file_handler(ws)
    try:
        handler.handle(log.makeRecord(log.name, level, __file__, 0, message, (), None))
    finally:
        handler.close()


# What a workspace holds at its top level: an input of another name may sit beside them (a video).
WORKSPACE_NAMES = {"frames", "frames.csv", "frames.json", "images", "sparse", "cameras.txt", "sfm", "stereo",
                   "depth", "labels", "fused.ply", "preview", "report.json", "config.json", "stamps", "logs"}


def check_input_and_workspace(input_path: PathArg, ws_root: PathArg) -> None:
    """Refuse an input and a workspace that overlap: a workspace inside the input folder (its files
    would become frames), or an input inside the workspace (the frames and sfm stages replace
    ``WS/frames`` and ``WS/images`` wholesale, which would delete it); a video file at the
    workspace's top level, beside its folders, is fine.  Raises :class:`InputError`."""
    inp, root = Path(input_path).resolve(), Path(ws_root).resolve()
    if root == inp or inp in root.parents:
        if inp.is_file():
            raise InputError(f"{ws_root}: the workspace path runs through the input file {input_path}")
        raise InputError(f"{ws_root}: the workspace must not be inside the input folder {input_path}")
    if root in inp.parents and not (inp.parent == root and inp.is_file() and inp.name not in WORKSPACE_NAMES):
        raise InputError(f"{input_path}: the input must not be inside the workspace {ws_root} "
                         "(its stages replace their folders there)")


def check_poses_file(poses: PathArg | None) -> None:
    """Refuse (InputError) a camera file that is given but is no file, or does not parse
    (:func:`mannequin.io.cameras.read_cameras`), before any work."""
    if poses is None:
        return
    from mannequin.io.cameras import read_cameras
    from mannequin.sfm import check_known_cameras

    check_known_cameras(read_cameras(poses), str(poses))


def open_workspace(path: PathArg) -> Workspace:
    """The existing workspace at ``path`` (for a stage after frames); :class:`InputError` when there is none."""
    ws = Workspace(path)
    if not ws.root.is_dir():
        raise InputError(f"{ws.root}: workspace not found (run 'mannequin frames INPUT --out {ws.root}' first)")
    return ws


def run_stage_command(ws: Workspace, stage: str, cfg: Config, *, input_path: PathArg | None = None,
                      poses: PathArg | None = None, progress: bool = False) -> str:
    """One stage as ``mannequin <stage>`` runs it; returns "skipped" or "done".  frames: from
    ``input_path``, the camera file checked first.  A later stage: its input is the one the frames
    stage recorded (for the stamps)."""
    if stage == "frames":
        check_poses_file(poses)
    else:
        input_path = (ws.read_stamp("frames") or {}).get("input")
    return run_stage(ws, stage, cfg, input_path=input_path, poses=poses, progress=progress)


def run_video(input: PathArg, out: PathArg, poses: PathArg | None = None, config: Config | None = None, *,
              progress: bool = False,
              on_stage: Callable[[str, str], None] | None = None) -> Workspace:
    """Run frames → sfm → stereo → fuse → labels for one video (or image folder) into ``out``.

    ``input``: video file or image folder.  ``out``: workspace folder (created).  ``poses``: an
    MC/RealEstate10K camera file to use instead of SfM.  ``config``: a :class:`Config` (default
    preset when None).  A stage whose stamp matches its options and inputs is skipped; one that
    re-runs invalidates the stages after it.  Returns the :class:`Workspace`.  Raises
    :class:`~mannequin.errors.MannequinError` subclasses with a one-line message on bad input or
    a failed stage.  A workspace that this call created is removed again when the input fails
    the frames stage, so bad input leaves nothing behind.
    """
    cfg = validate(config or Config(), "config")
    input_path = Path(input)
    if not input_path.exists():
        raise InputError(f"{input_path}: input not found")
    check_poses_file(poses)
    if poses is None and cfg.sfm.given_poses != "use":
        raise InputError(f"{input_path}: sfm.given_poses = {cfg.sfm.given_poses!r} needs a camera file (--poses)")
    ws = Workspace(out)
    for stage in STAGES:
        if on_stage:
            on_stage(stage, "running")
        try:
            state = run_stage(ws, stage, cfg, input_path=input_path, poses=poses, progress=progress)
        except MannequinError as exc:
            if str(input_path) in str(exc) or (poses is not None and str(poses) in str(exc)):
                raise
            # Name the input the user gave, not only the workspace path inside the message.
            raise type(exc)(f"{input_path}: {stage}: {exc}") from exc
        if on_stage:
            on_stage(stage, state)
    return ws


# --- stage adapters: (ws, cfg, **context) -> StageResult ------------------------

def _frames(ws: Workspace, cfg: Config, *, input_path: PathArg, progress: bool, poses: PathArg | None = None,
            **_: Any) -> StageResult:
    from mannequin.frames import extract_frames
    from mannequin.io.cameras import read_cameras

    stamps = None
    if cfg.frames.pose_timestamps:
        if poses is None:
            raise InputError(f"{input_path}: frames.pose_timestamps takes the frames at a camera file's "
                             "timestamps: pass the file with --poses ('mannequin run', run_video(poses=...))")
        stamps = [f.timestamp_us for f in read_cameras(poses).frames]
    return extract_frames(input_path, ws, cfg.frames, progress=progress, timestamps_us=stamps,
                          timestamps_label=str(poses))


def _sfm(ws: Workspace, cfg: Config, *, poses: PathArg | None, progress: bool, **_: Any) -> StageResult:
    from mannequin.sfm import run_sfm

    return run_sfm(ws, cfg.sfm, poses=poses, seed=cfg.seed, progress=progress)


def _stereo(ws: Workspace, cfg: Config, *, progress: bool, stage_hash: str, **_: Any) -> StageResult:
    from mannequin.stereo import run_stereo

    return run_stereo(ws, cfg.stereo, stage_hash=stage_hash, progress=progress)


def _fuse(ws: Workspace, cfg: Config, *, progress: bool, **_: Any) -> StageResult:
    from mannequin.fuse import run_fuse

    return run_fuse(ws, cfg.fuse, progress=progress)


def _labels(ws: Workspace, cfg: Config, *, progress: bool, **_: Any) -> StageResult:
    from mannequin.labels import run_labels

    return run_labels(ws, cfg.labels, min_kept_frames=cfg.fuse.min_kept_frames, progress=progress)


_STAGE_FUNCS: dict[str, Callable[..., StageResult]] = {
    "frames": _frames, "sfm": _sfm, "stereo": _stereo, "fuse": _fuse, "labels": _labels}
