"""The clips of a batch: INPUT arguments and manifests become :class:`Job` s (:func:`expand_inputs`).

Each INPUT is a video file, a folder of videos (its files with a video extension, sorted by name,
not recursive; a folder holding no videos is one clip of images, or, holding no images either,
each of its sub-folders of images is a clip) or a manifest: a ``.csv`` with a header naming the
columns ``video`` and optionally ``cameras`` and ``name`` (without a header: video[,cameras] by
position), or a ``.txt`` with one ``VIDEO [CAMERAS]`` per line (shell quoting for paths with
spaces).  Relative manifest paths resolve against the manifest's folder; ``#`` starts a comment.
Every clip becomes the workspace ``ROOT/<name>/``, name = the file stem (or the manifest's
``name``).  Two different videos with the same name are an :class:`InputError` naming both: a
silent suffix would make a workspace's name depend on the order of the inputs, and a re-run could
then resume the wrong video.
"""
from __future__ import annotations

import csv
import io
import os
import shlex
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from mannequin.errors import InputError

VIDEO_EXTENSIONS = (".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v")


@dataclass(frozen=True)
class Job:
    """One clip of a batch: its name (workspace folder under ROOT), video (or image folder) and
    optional camera file; ``source`` says where it was listed (for error messages)."""

    name: str
    video: Path
    cameras: Path | None = None
    source: str = ""


def is_video(path: Path) -> bool:
    """Whether ``path`` has a video file extension (:data:`VIDEO_EXTENSIONS`)."""
    return path.suffix.lower() in VIDEO_EXTENSIONS


def input_size(job: Job) -> int:
    """Bytes of a job's input (a folder: its files), the estimate of its cost for longest-first order."""
    try:
        if job.video.is_dir():
            return sum(p.stat().st_size for p in job.video.iterdir() if p.is_file())
        return job.video.stat().st_size
    except OSError:
        return 0


def expand_inputs(inputs: Iterable[str | os.PathLike[str]] | str | os.PathLike[str]) -> list[Job]:
    """The clips of ``inputs`` (video files, folders of videos, a folder of images or of image
    folders, .csv/.txt manifests) as :class:`Job` s.

    Raises :class:`InputError` for a missing INPUT, an empty folder or manifest, a malformed
    manifest line, and for two different videos that would share a workspace name.  The same
    video listed twice (same file and camera file) is kept once.
    """
    if isinstance(inputs, (str, os.PathLike)):
        inputs = [inputs]
    jobs: list[Job] = []
    for item in inputs:
        jobs += _jobs_of(Path(item))
    return _unique(jobs)


def _jobs_of(path: Path) -> list[Job]:
    """The jobs one INPUT argument names."""
    if path.is_dir():
        return _folder_jobs(path)
    if not path.exists():
        raise InputError(f"{path}: input not found")
    suffix = path.suffix.lower()
    if suffix in (".csv", ".txt"):
        found = _read_csv_manifest(path) if suffix == ".csv" else _read_txt_manifest(path)
        if not found:
            raise InputError(f"{path}: the manifest lists no videos")
        return found
    return [Job(path.stem, path.absolute(), None, str(path))]


def _unique(jobs: list[Job]) -> list[Job]:
    """``jobs`` with repeats of the same video dropped; a name two different videos share raises."""
    unique: list[Job] = []
    by_name: dict[str, Job] = {}
    for job in jobs:
        check_name(job.name, f"{job.video} ({job.source})")  # a stem of '..' would leave ROOT
        key = job.name.casefold()   # case-insensitive file systems would merge Clip/ and clip/
        other = by_name.get(key)
        if other is None:
            by_name[key] = job
            unique.append(job)
        elif (other.video.resolve(), other.cameras and other.cameras.resolve()) != \
                (job.video.resolve(), job.cameras and job.cameras.resolve()):
            raise InputError(f"two videos share the workspace name {job.name!r}: {other.video} "
                             f"({other.source}) and {job.video} ({job.source}); rename one, or list them "
                             f"in a CSV manifest with a 'name' column")
    return unique


def check_name(name: str, where: str) -> str:
    """``name`` if it is usable as a workspace folder name under ROOT, else :class:`InputError`."""
    if not name or name in (".", "..") or name.startswith(".") or any(c in name for c in "/\\\0"):
        raise InputError(f"{where}: {name!r} is not usable as a workspace folder name")
    return name


def _resolve(base: Path, text: str) -> Path:
    p = Path(os.path.expanduser(text.strip()))
    return (p if p.is_absolute() else base / p).absolute()


def _manifest_text(path: Path) -> tuple[Path, str]:
    """(folder that relative paths resolve against, the manifest's text)."""
    try:
        return path.parent.absolute(), path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read manifest ({exc})") from None


def _read_csv_manifest(path: Path) -> list[Job]:
    base, text = _manifest_text(path)
    lines = [(i, line) for i, line in enumerate(text.splitlines(), 1)
             if line.strip() and not line.lstrip().startswith("#")]
    rows = list(csv.reader(io.StringIO("\n".join(line for _, line in lines))))
    jobs: list[Job] = []
    if not rows:
        return jobs
    header = [c.strip().lower() for c in rows[0]]
    if "video" in header:
        unknown = [c for c in header if c not in ("video", "cameras", "name")]
        if unknown:
            raise InputError(f"{path}: unknown manifest column(s) {', '.join(unknown)} "
                             f"(known: video, cameras, name)")
        col = {c: header.index(c) for c in header}
        body = list(zip([n for n, _ in lines[1:]], rows[1:], strict=False))
    else:
        col = {"video": 0, "cameras": 1}
        body = list(zip([n for n, _ in lines], rows, strict=False))
    for lineno, row in body:
        where = f"{path}:{lineno}"
        if len(row) > len(col) and any(c.strip() for c in row[len(col):]):
            raise InputError(f"{where}: expected the columns {', '.join(col)}, got {len(row)} fields")
        cell = {k: (row[i].strip() if i < len(row) else "") for k, i in col.items()}
        if not cell["video"]:
            raise InputError(f"{where}: empty video path")
        video = _resolve(base, cell["video"])
        cameras = _resolve(base, cell["cameras"]) if cell.get("cameras") else None
        name = check_name(cell["name"], where) if cell.get("name") else video.stem
        jobs.append(Job(name, video, cameras, where))
    return jobs


def _read_txt_manifest(path: Path) -> list[Job]:
    base, text = _manifest_text(path)
    jobs: list[Job] = []
    for lineno, line in enumerate(text.splitlines(), 1):
        where = f"{path}:{lineno}"
        try:
            fields = shlex.split(line, comments=True)
        except ValueError as exc:
            raise InputError(f"{where}: cannot parse the line ({exc})") from None
        if not fields:
            continue
        if len(fields) > 2:
            raise InputError(f"{where}: expected 'VIDEO [CAMERAS]', got {len(fields)} fields "
                             f"(is {path.name} a camera file rather than a manifest?)")
        video = _resolve(base, fields[0])
        cameras = _resolve(base, fields[1]) if len(fields) == 2 else None
        jobs.append(Job(video.stem, video, cameras, where))
    return jobs


def _folder_jobs(path: Path) -> list[Job]:
    """A folder INPUT: its videos; or, holding none, the folder itself as one clip of images; or,
    holding no images either, each sub-folder of images as a clip (a dataset of frame folders)."""
    from mannequin.frames import list_images

    videos = sorted((p for p in path.iterdir() if p.is_file() and is_video(p)), key=lambda p: p.name)
    if videos:
        return [Job(p.stem, p.absolute(), None, str(path)) for p in videos]
    if list_images(path):
        return [Job(path.absolute().name, path.absolute(), None, str(path))]
    subs = sorted((p for p in path.iterdir() if p.is_dir() and not p.name.startswith(".")), key=lambda p: p.name)
    clips = [Job(p.name, p.absolute(), None, str(path)) for p in subs if list_images(p)]
    if not clips:
        raise InputError(f"{path}: no videos, images or folders of images in this folder "
                         f"(video extensions: {', '.join(VIDEO_EXTENSIONS)})")
    return clips
