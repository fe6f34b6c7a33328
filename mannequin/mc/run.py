"""``mannequin mc``: a dataset of MC / RealEstate10K camera files through the batch path: :func:`run_mc`.

Each sequence runs ``run_video(video, ROOT/<id>, poses=camera_file, config)`` with
``frames.pose_timestamps`` on (the video frames at the file's timestamps) on the same Dask path as
``mannequin batch`` (:func:`mannequin.batch.run_jobs`: embedded LocalCluster or ``--scheduler``,
retries, a dead worker's sequence re-run, finished sequences skipped, ``status.csv`` /
``status.json``).  The given poses are used as they are, refined (``--refine-poses``) or checked
against SfM (``--sfm``): ``sfm.given_poses``.  A sequence whose video is absent is ``missing``,
not failed; one whose camera file does not parse, or whose id another file has, fails without
running.  Then ``ROOT/index.csv``, ``ROOT/frames.csv`` and ``ROOT/missing_videos.txt``
(:mod:`mannequin.mc.index`).  Nothing is written outside ROOT; nothing is downloaded.
"""
from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from mannequin.batch import Job, Row, check_arguments, run_jobs, status_row
from mannequin.config import Config
from mannequin.errors import InputError
from mannequin.mc.dataset_files import McSequence, VideoFinder, find_camera_files, read_sequences
from mannequin.mc.index import write_index

log = logging.getLogger("mannequin.mc")


class NoCameraFiles(InputError):
    """CAMERAS named no camera file (the command line's fault: ``mannequin mc`` exits 2)."""


def mc_config(config: Config | None = None, *, refine_poses: bool = False, sfm: bool = False) -> Config:
    """``config`` (default preset when None) with ``frames.pose_timestamps`` on and
    ``sfm.given_poses`` set by the flags: ``refine`` with ``refine_poses``, ``check`` with ``sfm``
    (neither: the config's own value, ``use`` by default).  Both flags are an :class:`InputError`."""
    if refine_poses and sfm:
        raise InputError("--refine-poses and --sfm exclude each other: refine the given poses, or check them "
                         "against SfM")
    over: dict[str, dict[str, Any]] = {"frames": {"pose_timestamps": True}}
    if refine_poses or sfm:
        over["sfm"] = {"given_poses": "refine" if refine_poses else "check"}
    return (config or Config()).replace(**over)


def run_mc(cameras: Iterable[str | os.PathLike[str]] | str | os.PathLike[str], videos: str | os.PathLike[str],
           out_root: str | os.PathLike[str], *, refine_poses: bool = False, sfm: bool = False,
           config: Config | None = None, scheduler: Any = None, workers: int | None = None,
           progress: bool = False, retries: int = 2) -> list[Row]:
    """Rebuild the depth of a Mannequin Challenge / RealEstate10K dataset into ``out_root``.

    ``cameras``: camera files (``.txt``) or folders searched recursively for them; a sequence's id
    is its file's stem.  ``videos``: a folder of ``ID.<ext>`` files (ID from the URL line:
    YouTube ``watch?v=ID``, ``youtu.be/ID``, ``shorts/ID``, else its last path component) or a CSV
    of ``url,path`` rows.  ``refine_poses`` / ``sfm``: ``sfm.given_poses`` = ``refine`` / ``check``
    (:func:`mc_config`).  ``config``, ``scheduler``, ``workers``, ``progress``, ``retries``: as
    :func:`mannequin.batch.run_batch`.

    Writes ``out_root/<id>/`` (a workspace per sequence), ``status.csv`` / ``status.json`` (states
    done, skipped, failed, missing), ``index.csv``, ``frames.csv`` and ``missing_videos.txt``
    (docs/FORMATS.md).  Returns the status rows, one per sequence in id order.  Raises
    :class:`NoCameraFiles` when ``cameras`` holds no camera file and :class:`InputError` for bad
    arguments, before anything is written; a sequence that fails never raises.
    """
    root = Path(out_root)
    cfg = mc_config(config, refine_poses=refine_poses, sfm=sfm)
    check_arguments(root, scheduler, workers, retries)
    files = find_camera_files(cameras)
    if not files:
        raise NoCameraFiles(f"{' '.join(str(c) for c in _as_list(cameras)) or 'CAMERAS'}: no camera files (.txt)")
    sequences = read_sequences(files, VideoFinder(videos))
    items = [_item(seq, root) for seq in sequences]
    rows = run_jobs(items, root, config=cfg, scheduler=scheduler, workers=workers, progress=progress,
                    retries=retries, desc="mc", unit="sequence")
    write_index(root, sequences, rows, cfg.sfm.given_poses)
    missing = sum(r["state"] == "missing" for r in rows)
    if missing:
        log.info("%d of %d sequences have no video: their URLs are in %s", missing, len(rows),
                    root / "missing_videos.txt")
    return rows


def _as_list(cameras: Iterable[str | os.PathLike[str]] | str | os.PathLike[str]) -> list[str | os.PathLike[str]]:
    return [cameras] if isinstance(cameras, (str, os.PathLike)) else list(cameras)


def _item(seq: McSequence, root: Path) -> Job | Row:
    """The batch item of one sequence: a :class:`Job` to run, or its ``failed`` / ``missing`` row."""
    job = Job(seq.id, seq.video or Path(seq.expected), seq.camera_file, str(seq.camera_file))
    if seq.error:
        row = status_row(job, root, "failed", seq.error)
        row["input"] = str(seq.video) if seq.video else None
        return row
    if seq.video is None:
        row = status_row(job, root, "missing", f"video not found: {seq.expected} (URL {seq.url.strip()})")
        row.update(input=seq.url.strip(), frames=None, labels=None, verdict=None)  # no run of this video now
        return row
    return job
