"""One video of a batch, run on a Dask worker: :func:`process_video`, and :func:`is_finished`.

A task never raises: a :class:`MannequinError` (or any other exception) becomes a ``failed`` row
with a one-line reason; tracebacks of unexpected errors and the pipeline's log go to
``ROOT/<name>/logs/batch.log``, not to the terminal.
"""
from __future__ import annotations

import logging
import os
import threading
import time
import traceback
import warnings
from pathlib import Path
from typing import Any

from mannequin.batch.cluster import limit_threads
from mannequin.batch.inputs import Job
from mannequin.batch.status import Row, status_row
from mannequin.config import STAGES, Config
from mannequin.errors import MannequinError
from mannequin.workspace import Workspace

log = logging.getLogger("mannequin.batch")


def is_finished(workspace: str | os.PathLike[str], video: str | os.PathLike[str],
                cameras: str | os.PathLike[str] | None = None, config: Config | None = None) -> bool:
    """True when every stage of ``workspace`` is stamped with the hash that ``run_video`` would
    compute now for this video, camera file and config (so running it again would skip them all)."""
    from mannequin.pipeline import stage_hash

    cfg = config or Config()
    ws = Workspace(workspace)
    if not ws.root.is_dir() or not Path(video).exists():
        return False
    try:
        for stage in STAGES:
            if not ws.is_done(stage, stage_hash(ws, stage, cfg, Path(video), cameras)):
                return False
    except MannequinError:
        return False
    return True


def process_video(job: Job, root: str | os.PathLike[str], config: dict[str, Any] | None = None,
                  threads_by_host: dict[str, int] | None = None) -> Row:
    """Run one video into ``root/<name>`` and return its status row; never raises an Exception.

    ``config``: :meth:`Config.to_dict` of the run's config (None = defaults).  ``threads_by_host``:
    Numba threads per host (:func:`mannequin.batch.cluster.threads_by_host`).  The pipeline's log
    records (INFO and up) and Python warnings of this task go to ``WS/logs/batch.log``; an
    unexpected error's traceback too, with a one-line reason in the row.  The row also has
    ``cpu_seconds`` (this process and its children, for status.json).
    """
    root = Path(root)
    ws_root = root / job.name
    t0 = time.perf_counter()
    cpu0 = _cpu_seconds()
    pkg_log = logging.getLogger("mannequin")
    saved = (pkg_log.level, pkg_log.propagate)
    handler = None
    try:
        handler = _log_to_file(pkg_log, ws_root)
        state = _run(job, ws_root, config, threads_by_host)
        reason = ""
        log.info("%s: %s in %.1f s", job.name, state, time.perf_counter() - t0)
    except MannequinError as exc:
        state, reason = "failed", str(exc)
        log.warning("%s: failed: %s", job.name, reason)
    except OSError as exc:
        where = f"{exc.filename}: " if getattr(exc, "filename", None) else ""
        state, reason = "failed", f"{where}{exc.strerror or exc}"
        log.warning("%s: failed: %s", job.name, reason, exc_info=True)
    except Exception as exc:  # noqa: BLE001 - isolate every failure to its own video
        state = "failed"
        reason = (f"internal error: {type(exc).__name__}: {exc} "
                  f"(traceback in {ws_root / 'logs' / 'batch.log'})")
        log.error("%s: %s\n%s", job.name, reason, traceback.format_exc())
    finally:
        if handler is not None:
            pkg_log.removeHandler(handler)
            handler.close()
        pkg_log.setLevel(saved[0])
        pkg_log.propagate = saved[1]
    row = status_row(job, root, state, reason, time.perf_counter() - t0)
    row["cpu_seconds"] = round(_cpu_seconds() - cpu0, 2)   # status.json only: this process + its children
    return row


def _run(job: Job, ws_root: Path, config: dict[str, Any] | None, threads_by_host: dict[str, int] | None) -> str:
    """Run the pipeline on ``job`` with its warnings logged; returns "done", or "skipped" when every
    stage was up to date."""
    from mannequin.pipeline import run_video

    ran: list[str] = []
    with warnings.catch_warnings():
        warnings.simplefilter("default")
        warnings.showwarning = _log_warning
        threads = limit_threads(threads_by_host)
        log.info("%s: start (%s; cameras %s; %s Numba threads; pid %d)", job.name, job.video,
                 job.cameras or "none (SfM)", threads, os.getpid())
        cfg = Config.from_dict(config) if config is not None else Config()
        run_video(job.video, ws_root, poses=job.cameras, config=cfg, progress=False,
                  on_stage=lambda stage, state: ran.append(stage) if state == "done" else None)
    return "done" if ran else "skipped"


def _log_warning(message: Warning | str, category: type[Warning], filename: str, lineno: int,
                 *args: Any, **kwargs: Any) -> None:
    logging.getLogger("mannequin").warning("%s:%s: %s: %s", filename, lineno, category.__name__, message)


def _log_to_file(pkg_log: logging.Logger, ws_root: Path) -> logging.Handler:
    """Send this thread's records of ``pkg_log`` (INFO and up) to ``ws_root/logs/batch.log`` only
    (creating the folders); returns the handler, which the caller removes."""
    ws_root.mkdir(parents=True, exist_ok=True)
    (ws_root / "logs").mkdir(exist_ok=True)
    handler = logging.FileHandler(ws_root / "logs" / "batch.log", encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(_ThreadFilter())
    pkg_log.addHandler(handler)
    pkg_log.setLevel(logging.INFO)
    pkg_log.propagate = False       # nothing of this task reaches the worker's stderr
    return handler


class _ThreadFilter(logging.Filter):
    """Passes the records of the thread that made it (a worker may run other tasks in other threads)."""

    def __init__(self) -> None:
        super().__init__()
        self.ident = threading.get_ident()

    def filter(self, record: logging.LogRecord) -> bool:
        return threading.get_ident() == self.ident


def _cpu_seconds() -> float:
    import resource

    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime
