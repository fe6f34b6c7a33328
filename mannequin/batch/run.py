"""Many videos through :func:`mannequin.pipeline.run_video` on a Dask cluster: :func:`run_batch`.

Videos go out largest input first, at most one per worker thread at a time: the next one starts
on whichever worker frees up first, so a slow video never waits in another worker's queue.  A
video whose stage stamps all match its input, camera file and config is ``skipped`` without
starting a worker, so re-running a batch redoes only what failed or changed; a re-run of a failed
video resumes from its finished stages.  The futures are submitted with ``retries=retries``, which
re-runs a task whose error escaped it (e.g. it could not be unpickled on the worker).  After the
last task (or Ctrl-C), ``ROOT/status.csv`` and ``ROOT/status.json`` are written atomically.
"""
from __future__ import annotations

import contextlib
import logging
import os
import sys
import time
from collections import deque
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from mannequin.batch.cluster import SCHEDULER_ADDRESS, cpu_count, failure_reason, open_client, task_slots, threads_by_host
from mannequin.batch.inputs import Job, expand_inputs, input_size
from mannequin.batch.status import Row, format_row, status_row, write_status
from mannequin.batch.video import is_finished, process_video
from mannequin.config import Config
from mannequin.errors import InputError, MannequinError

log = logging.getLogger("mannequin.batch")


def run_batch(inputs: Iterable[str | os.PathLike[str]] | str | os.PathLike[str], out_root: str | os.PathLike[str], *,
              config: Config | None = None, scheduler: Any = None, workers: int | None = None,
              progress: bool = False, retries: int = 2) -> list[Row]:
    """Run every video of ``inputs`` into ``out_root/<name>/`` on a Dask cluster; returns the status rows.

    ``inputs``: video files, folders of videos, ``.csv``/``.txt`` manifests
    (:mod:`mannequin.batch.inputs`).  ``config``: the :class:`Config` of every video (default preset
    when None).  ``scheduler``: None for an embedded ``LocalCluster`` of ``workers`` processes
    (default: usable cores, at most one per video to run), else a scheduler address, a
    ``distributed.Client`` or a cluster.  ``progress``: an overall bar and one line per finished
    video on stderr.  ``retries``: how often a video is re-run after its worker process died
    (embedded cluster; an external scheduler uses its own ``allowed-failures``).

    One row per video, in input order (:mod:`mannequin.batch.status`), also written to
    ``out_root/status.csv`` and ``status.json`` (atomically) before returning.  Raises
    :class:`InputError` for bad inputs (nothing runs) or an unreachable scheduler; a failed video
    never raises.
    """
    root = Path(out_root)
    check_arguments(root, scheduler, workers, retries)
    jobs = expand_inputs(inputs)
    if not jobs:
        raise InputError("no videos to process")
    return run_jobs(jobs, root, config=config, scheduler=scheduler, workers=workers, progress=progress,
                    retries=retries)


def run_jobs(items: Sequence[Job | Row], out_root: str | os.PathLike[str], *, config: Config | None = None,
             scheduler: Any = None, workers: int | None = None, progress: bool = False, retries: int = 2,
             desc: str = "batch", unit: str = "video") -> list[Row]:
    """Run the :class:`Job` s of ``items`` on a Dask cluster as :func:`run_batch` does; returns one
    row per item, in order, also written to ``out_root/status.csv`` and ``status.json``.

    An item that is a :class:`Job` runs into ``out_root/<name>/`` (skipped when finished); an item
    that is already a row (a status dict, e.g. a ``missing`` sequence of ``mannequin mc``) is
    reported and written as it is.  The jobs' names must be unique.  The arguments are those of
    :func:`run_batch`, which the caller has checked (:func:`check_arguments`); ``desc`` and ``unit``
    label the progress bar.  No cluster starts when no job is left to run.
    """
    cfg = config or Config()
    root = Path(out_root)
    jobs = [item for item in items if isinstance(item, Job)]
    created_root = not root.exists()
    root.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    with _Progress(len(items), progress, desc, unit) as report:
        for item in items:
            if not isinstance(item, Job):
                report.record(item, keep=False)
        pending = [job for job in jobs if not _skip_if_finished(job, root, cfg, report)]
        if pending:
            _run_on_cluster(items, pending, root, cfg, report, scheduler=scheduler, workers=workers,
                            retries=retries, created_root=created_root)
    ordered = _in_order(items, report.rows)
    write_status(root, ordered, cfg)
    log.debug("%s of %d items in %.1f s", desc, len(items), time.perf_counter() - t_start)
    return ordered


def _in_order(items: Sequence[Job | Row], rows: dict[str, Row]) -> list[Row]:
    """The row of each item: a job's recorded row, or the item itself when it is a row."""
    return [rows[item.name] if isinstance(item, Job) else item for item in items]


def check_arguments(root: Path, scheduler: Any, workers: int | None, retries: int) -> None:
    """Refuse (InputError) bad workers, retries, scheduler address or output root; warn that
    ``workers`` is ignored with a scheduler."""
    if workers is not None and (isinstance(workers, bool) or int(workers) != workers):
        raise InputError(f"--workers {workers}: must be a positive integer")
    if workers is not None and workers < 1:
        raise InputError(f"--workers {workers}: must be at least 1")
    if isinstance(retries, bool) or int(retries) != retries or retries < 0:
        raise InputError(f"--retries {retries}: must be 0 or more")
    if isinstance(scheduler, str) and not SCHEDULER_ADDRESS.match(scheduler.strip()):
        raise InputError(f"--scheduler {scheduler}: not a Dask scheduler address (like tcp://host:8786 or host:8786)")
    if scheduler is not None and workers is not None:
        log.warning("--workers %s is ignored with --scheduler: the cluster has its own workers", workers)
    if root.exists() and not root.is_dir():
        raise InputError(f"{root}: output root exists and is not a folder")


class _Progress:
    """The finished rows by name, an overall bar, and one line per finished video (on stderr with
    ``show``, else in the log)."""

    def __init__(self, total: int, show: bool, desc: str = "batch", unit: str = "video") -> None:
        from tqdm import tqdm

        self.rows: dict[str, Row] = {}
        self.show = show
        self.bar = tqdm(total=total, unit=unit, desc=desc, disable=not show, dynamic_ncols=True, file=sys.stderr)

    def __enter__(self) -> _Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.bar.close()

    def record(self, row: Row, *, keep: bool = True) -> None:
        """Show ``row`` as finished; ``keep``: store it by name (a job's row, not a settled item)."""
        if keep:
            self.rows[row["name"]] = row
        if self.show:
            self.bar.write(format_row(row), file=sys.stderr)
        else:
            log.info("%s", format_row(row))
        self.bar.update(1)

    def status(self, text: str) -> None:
        self.bar.set_postfix_str(text)


def _skip_if_finished(job: Job, root: Path, cfg: Config, report: _Progress) -> bool:
    """Record ``job`` as skipped when all its stages are up to date; returns whether it was."""
    if is_finished(root / job.name, job.video, job.cameras, cfg):
        report.record(status_row(job, root, "skipped"))
        return True
    return False


def _run_on_cluster(items: Sequence[Job | Row], pending: list[Job], root: Path, cfg: Config, report: _Progress, *,
                    scheduler: Any, workers: int | None, retries: int, created_root: bool) -> None:
    """Run ``pending`` on the cluster, recording each row as it finishes.  On Ctrl-C the videos not
    finished are recorded (done when their stamps say so, else failed: interrupted) and the status
    files written, before the cluster closes and the interrupt goes on."""
    futures: dict[Any, Job] = {}
    n_workers = max(1, min(int(workers or cpu_count()), len(pending)))
    with contextlib.ExitStack() as stack:
        try:
            try:
                client = stack.enter_context(open_client(scheduler, n_workers, retries, on_start=report.status))
            except MannequinError:
                if scheduler is not None and created_root and not any(root.iterdir()):
                    root.rmdir()  # nothing ran: leave no empty output root behind
                raise
            report.status("")
            _longest_first(client, pending, root, cfg, report, futures, retries=retries, n_workers=n_workers)
        except KeyboardInterrupt:
            _record_interrupted([j for j in items if isinstance(j, Job)], futures, root, cfg, report.rows)
            write_status(root, _in_order(items, report.rows), cfg)
            raise


def _longest_first(client: Any, pending: list[Job], root: Path, cfg: Config, report: _Progress,
                   futures: dict[Any, Job], *, retries: int, n_workers: int) -> None:
    """Submit ``pending`` largest input first, never more tasks than the cluster has worker threads:
    the next video goes to whichever worker frees up first, so one slow video does not wait behind
    another that the scheduler queued on the same worker.  ``futures`` collects future -> job."""
    from distributed import as_completed

    threads = threads_by_host(client)
    cfg_dict = cfg.to_dict()
    queue = deque(sorted(pending, key=input_size, reverse=True))
    running = as_completed(loop=client.loop)

    in_flight = 0

    def submit_while_free(fallback: int) -> None:
        nonlocal in_flight
        while queue and in_flight < task_slots(client, fallback):
            job = queue.popleft()
            fut = client.submit(process_video, job, str(root), cfg_dict, threads, pure=False,
                                retries=retries, key=f"mannequin-video-{job.name}-{os.urandom(4).hex()}")
            futures[fut] = job
            running.add(fut)
            in_flight += 1

    submit_while_free(n_workers)
    for fut in running:
        in_flight -= 1
        job = futures[fut]
        finished = fut.status == "finished"
        report.record(fut.result() if finished else status_row(job, root, "failed", failure_reason(fut, retries)))
        submit_while_free(1)


def _record_interrupted(jobs: list[Job], futures: dict[Any, Job], root: Path, cfg: Config,
                        rows: dict[str, Row]) -> None:
    """Cancel the unfinished futures and give every video without a row one: done when its every
    stage finished before its result came back, else failed ("interrupted")."""
    def interrupted(job: Job) -> Row:
        if is_finished(root / job.name, job.video, job.cameras, cfg):
            return status_row(job, root, "done")
        return status_row(job, root, "failed", "interrupted")

    for fut, job in futures.items():
        if job.name not in rows:
            fut.cancel()
            rows[job.name] = interrupted(job)
    for job in jobs:
        if job.name not in rows:
            rows[job.name] = interrupted(job)
