"""The files of a Mannequin Challenge / RealEstate10K dataset: camera files, sequence ids, videos.

- :func:`find_camera_files`: CAMERAS arguments (``.txt`` files, or folders searched recursively,
  e.g. the dataset's ``train/``, ``validation/``, ``test/``) as a sorted list of files.
- :func:`video_id`: the video id in a camera file's URL line: YouTube ``watch?v=ID``,
  ``youtu.be/ID``, ``shorts/ID`` (also ``embed/``, ``live/``, ``v/``), else the URL's last path
  component.
- :class:`VideoFinder`: ``--videos``, a folder holding ``ID.<ext>`` (any extension ffmpeg reads;
  not recursive), or a CSV of ``url,path`` rows.
- :func:`read_sequences`: one :class:`McSequence` per camera file: its id (the file's stem), URL,
  frame count, video (None when missing) and, when it cannot run, why (a camera file that does not
  parse, an id two files share, a URL without a usable id).
"""
from __future__ import annotations

import csv
import io
import os
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from mannequin.errors import InputError, MannequinError

#: The video extensions preferred when ``DIR`` holds several files ``ID.<ext>`` (then sorted by name).
PREFERRED = (".mp4", ".mkv", ".webm", ".mov", ".m4v", ".avi")
#: Files beside the videos that are no video (downloaders' metadata, thumbnails, partial downloads).
NOT_VIDEO = frozenset({".txt", ".csv", ".json", ".md", ".part", ".ytdl", ".tmp", ".temp", ".jpg", ".jpeg",
                       ".png", ".webp", ".gif", ".vtt", ".srt", ".ass", ".description", ".log", ".html", ".sh"})
#: YouTube path prefixes followed by the video id.
_YOUTUBE_PATHS = ("shorts", "embed", "live", "v", "e")


@dataclass(frozen=True)
class McSequence:
    """One sequence of the dataset: ``id`` (its camera file's stem, the workspace ``ROOT/<id>``),
    ``camera_file`` (absolute), ``url`` (the file's first line), ``frames`` (its frame lines),
    ``video`` (the video file, None when missing), ``expected`` (where the video was looked for, for
    messages) and ``error`` (why it cannot run; empty when it can)."""

    id: str
    camera_file: Path
    url: str = ""
    frames: int = 0
    video: Path | None = None
    expected: str = ""
    error: str = ""


def find_camera_files(cameras: Iterable[str | os.PathLike[str]] | str | os.PathLike[str]) -> list[Path]:
    """The camera files that ``cameras`` names: each a ``.txt`` file, or a folder searched
    recursively for ``*.txt`` (hidden files and folders skipped).  Sorted by path, each file once
    (absolute).  Raises :class:`InputError` for a path that does not exist or a file that is not
    ``.txt``; an empty result is the caller's to refuse."""
    if isinstance(cameras, (str, os.PathLike)):
        cameras = [cameras]
    found: set[Path] = set()
    for item in cameras:
        path = Path(item)
        if path.is_dir():
            found.update(p.absolute() for p in path.rglob("*") if _is_camera_file(p, path))
        elif path.is_file():
            if path.suffix.lower() != ".txt":
                raise InputError(f"{path}: not a camera file (expected .txt, or a folder of them)")
            found.add(path.absolute())
        else:
            raise InputError(f"{path}: camera file or folder not found")
    return sorted(found)


def _is_camera_file(path: Path, top: Path) -> bool:
    """A ``.txt`` file under ``top`` with no hidden component below ``top``."""
    rel = path.relative_to(top).parts
    return path.suffix.lower() == ".txt" and path.is_file() and not any(p.startswith(".") for p in rel)


def video_id(url: str) -> str:
    """The video id of a camera file's URL line (YouTube ``watch?v=ID``, ``youtu.be/ID``,
    ``shorts/ID``, ``embed/ID``, ``live/ID``; any other URL: its last path component); "" when
    there is none."""
    text = url.strip()
    parts = urlsplit(text if "://" in text or text.startswith("//") else "//" + text)
    host = parts.netloc.lower().rsplit("@", 1)[-1].split(":", 1)[0]
    path = [p for p in parts.path.split("/") if p]
    if host == "youtu.be" or host.endswith(".youtu.be"):
        return path[0] if path else ""
    if host == "youtube.com" or host.endswith(".youtube.com") or host == "youtube-nocookie.com" \
            or host.endswith(".youtube-nocookie.com"):
        if path[:1] == ["watch"]:
            return (parse_qs(parts.query).get("v") or [""])[0].strip()
        if len(path) >= 2 and path[0] in _YOUTUBE_PATHS:
            return path[1]
    return path[-1] if path else ""


class VideoFinder:
    """``--videos``: a folder holding ``ID.<ext>`` files, or a CSV of ``url,path`` rows (a header
    ``url,path`` optional; relative paths against the CSV's folder; ``#`` comments).

    :meth:`find` gives (the video file or None, where it was looked for)."""

    def __init__(self, videos: str | os.PathLike[str]) -> None:
        self.source = Path(videos)
        self.by_url: dict[str, Path] = {}
        self.by_id: dict[str, list[Path]] = {}
        if self.source.is_dir():
            self._index_folder()
        elif self.source.is_file() and self.source.suffix.lower() == ".csv":
            self._read_csv()
        elif self.source.exists():
            raise InputError(f"--videos {self.source}: expected a folder of videos or a .csv of url,path rows")
        else:
            raise InputError(f"--videos {self.source}: folder not found")

    def _index_folder(self) -> None:
        for p in sorted(self.source.iterdir()):
            if p.name.startswith(".") or p.suffix.lower() in NOT_VIDEO or not p.is_file():
                continue
            self.by_id.setdefault(p.stem, []).append(p.absolute())
            if p.suffix.lower() in PREFERRED:
                self.by_id.setdefault(p.name, []).append(p.absolute())  # an id that is a file name
        for paths in self.by_id.values():
            paths.sort(key=_preference)

    def _read_csv(self) -> None:
        try:
            text = self.source.read_text(encoding="utf-8-sig")
        except (OSError, UnicodeDecodeError) as exc:
            raise InputError(f"--videos {self.source}: cannot read ({exc})") from None
        lines = [ln for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
        for k, row in enumerate(csv.reader(io.StringIO("\n".join(lines)))):
            if k == 0 and [c.strip().lower() for c in row[:2]] == ["url", "path"]:
                continue
            if len(row) != 2 or not row[0].strip() or not row[1].strip():
                raise InputError(f"--videos {self.source}: row {k + 1} is not 'url,path': {','.join(row)!r}")
            url, rel = row[0].strip(), Path(os.path.expanduser(row[1].strip()))
            path = (rel if rel.is_absolute() else self.source.parent / rel).absolute()
            self.by_url.setdefault(url, path)
            self.by_id.setdefault(video_id(url), []).append(path)

    def find(self, url: str) -> tuple[Path | None, str]:
        """(the video of ``url``, or None when it is missing; where it was looked for)."""
        vid = video_id(url)
        if self.by_url or not self.source.is_dir():   # a CSV: the URL's row, else its id's
            path = self.by_url.get(url.strip()) or next(iter(self.by_id.get(vid, [])), None)
            if path is None:
                return None, f"no row for {url.strip()} in {self.source}"
            return (path if path.is_file() else None), str(path)
        found = self.by_id.get(vid, [])
        return (found[0] if found else None), str(self.source / f"{vid}.*")


def _preference(path: Path) -> tuple[int, str]:
    """Sort key of the candidate videos of one id: :data:`PREFERRED` extensions first, in its order."""
    ext = path.suffix.lower()
    return (PREFERRED.index(ext) if ext in PREFERRED else len(PREFERRED)), path.name


def read_sequences(camera_files: Iterable[Path], finder: VideoFinder) -> list[McSequence]:
    """One :class:`McSequence` per camera file, sorted by id (then path).  A file that does not
    parse, a URL with no video id, an id that is no usable folder name, and an id that two files
    share (every one of them: no file can own ``ROOT/<id>``) set ``error``; a video that is absent
    leaves ``video`` None."""
    from mannequin.batch.inputs import check_name
    from mannequin.io.cameras import read_cameras

    sequences = []
    for path in camera_files:
        seq = McSequence(id=path.stem, camera_file=path)
        try:
            check_name(path.stem, str(path))
            cams = read_cameras(path)
        except MannequinError as exc:
            sequences.append(replace(seq, error=str(exc)))
            continue
        vid = video_id(cams.url)
        if not vid or vid in (".", ".."):
            sequences.append(replace(seq, url=cams.url, frames=len(cams), error=f"{path}:1: no video id in the "
                                   f"URL line {cams.url!r}"))
            continue
        video, expected = finder.find(cams.url)
        sequences.append(replace(seq, url=cams.url, frames=len(cams), video=video, expected=expected))
    return _mark_duplicates(sorted(sequences, key=lambda s: (s.id, str(s.camera_file))))


def _mark_duplicates(sequences: list[McSequence]) -> list[McSequence]:
    """``sequences`` with an error on each whose id (case-insensitive) another camera file has too."""
    by_id: dict[str, list[McSequence]] = {}
    for seq in sequences:
        by_id.setdefault(seq.id.casefold(), []).append(seq)
    out = []
    for seq in sequences:
        same = by_id[seq.id.casefold()]
        if len(same) > 1:
            others = ", ".join(str(s.camera_file) for s in same if s is not seq)
            seq = replace(seq, error=f"{seq.camera_file}: duplicate sequence id {seq.id!r}, also {others} "
                                   f"(each sequence needs its own ROOT/<id>/; remove or rename one)")
        out.append(seq)
    return out
