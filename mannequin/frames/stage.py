"""Stage ``frames``: a video or a folder of images -> ``WS/frames/<name>.png`` and ``WS/frames.csv``.

Pipeline (all deterministic):

1. *Source.*  A video is decoded by the ffmpeg bundled with imageio-ffmpeg, streamed frame by frame
   (never held in memory), after an explicit frame count that also reads every frame's presentation
   time (a decode through ffmpeg's ``showinfo`` filter).  ffmpeg applies the display-rotation metadata
   (auto-rotate), so a portrait phone clip comes out upright.  A folder of images is read in
   sorted-name order (png/jpg/jpeg/bmp/tif/tiff/webp, any case; other files and hidden files are
   ignored); EXIF orientation is applied; grey, palette and RGBA images become RGB (alpha dropped);
   16-bit images are scaled to 8 bits.
2. *Sampling.*  Candidates are every ``stride``-th source frame, or for a video with ``fps`` set, the
   source frames nearest to the times ``k / fps``.
3. *Cap.*  With ``max_frames > 0`` and more candidates than that, ``max_frames`` evenly spaced
   candidates are selected (the first and last included); the others are listed as ``max_frames``.
4. *Resize* so the longest side is at most ``max_size`` (PIL Lanczos, antialiased; never upscales).
5. *Blur.*  Sharpness = variance of the 4-neighbour Laplacian of the grey frame (after resizing).
   A selected frame is dropped as ``blurry`` when its sharpness is below ``blur_ratio`` × the median
   sharpness of the centred window of ``blur_window`` selected frames around it (itself included,
   clipped at the ends of the clip).
6. *Motion.*  With ``min_motion > 0``, a frame whose mean absolute grey difference (0-255) to the
   previous *kept* frame is below ``min_motion`` is dropped as ``no motion``.

``frames.csv`` lists every candidate of step 2 in source order (frames skipped by the stride or the
target rate are not listed; the gaps in ``source_index`` show them), with the columns
``name,source_index,timestamp_us,sharpness,kept,reason``.  ``sharpness`` is empty for candidates
dropped by the cap (they are not decoded into images).  ``reason`` is empty for kept frames, else
``max_frames``, ``blurry``, ``no motion``, or ``not decoded`` (a chosen frame that the decoder did
not deliver although the count promised it; not expected in practice).

Names are never renumbered: a video frame is named by its source index zero-padded to 6 digits
(``000123``), an image by its stem.  Timestamps in µs: a video frame's presentation time, relative to
the first frame (variable frame rates are kept as recorded), ``index × round(1e6 / image_fps)`` for a
folder (33333 µs steps at 30 fps).

Truncated videos: whatever ffmpeg can decode is used (a truncated file whose index is at the front
yields its first frames); a file ffmpeg cannot open at all (e.g. an mp4 cut before its ``moov`` atom)
raises :class:`InputError`.  Output is built in a temporary folder that replaces ``WS/frames`` only
at the end; ``frames.csv`` is written last, so a failure leaves no partial output.
"""
from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from mannequin.config import FramesConfig, check_section
from mannequin.errors import InputError, StageError, one_line
from mannequin.frames.selection import even_subset, frames_at_timestamps, sample_indices, select_and_write
from mannequin.frames.sources import Source, open_source
from mannequin.io.images import PngWriter
from mannequin.result import StageResult
from mannequin.workspace import atomic_path, write_json, write_text

CSV_COLUMNS = ("name", "source_index", "timestamp_us", "sharpness", "kept", "reason")


def extract_frames(input: str | os.PathLike, ws: Any, cfg: FramesConfig | None = None, progress: bool = False,
                   timestamps_us: Sequence[int] | None = None, timestamps_label: str = "camera file") -> StageResult:
    """Extract, select and write the frames of ``input`` into workspace ``ws``.

    Returns a :class:`~mannequin.result.StageResult` whose ``output`` is ``ws.frames_dir`` and whose
    report holds ``frames`` (kept) and ``candidates`` (rows of frames.csv).

    ``input``: a video file (anything the bundled ffmpeg decodes) or a folder of images.
    ``ws``: a :class:`mannequin.workspace.Workspace`.  ``cfg``: :class:`FramesConfig` (defaults if None).
    Writes ``ws.frames_dir/<name>.png`` ((H, W, 3) uint8 RGB, longest side ≤ ``cfg.max_size``) for
    every kept frame, ``ws.frames_json`` (input, fps, source frame count and sizes) and
    ``ws.frames_csv`` (see the module docstring for what it lists).
    ``timestamps_us``: take exactly the video frames at these timestamps (:func:`frames_at_timestamps`,
    ``timestamps_label`` names their file in errors) instead of sampling; no blur or motion rejection.
    Raises :class:`InputError` (message names the input) for missing, empty, undecodable or
    inconsistent inputs, and :class:`StageError` when fewer than 2 frames survive the selection.
    Nothing is left behind on failure; on success the old frames folder is replaced.
    """
    cfg = cfg or FramesConfig()
    check_section(cfg)
    path = Path(input)
    frames_dir, frames_csv = Path(ws.frames_dir), Path(ws.frames_csv)
    src = open_source(path, cfg)
    if frames_dir.exists() and not frames_dir.is_dir():
        raise InputError(f"{frames_dir}: exists and is not a folder; remove it")
    if frames_csv.is_dir():
        raise InputError(f"{frames_csv}: exists and is a folder; remove it")

    if timestamps_us is not None:
        candidates = chosen = frames_at_timestamps(src, timestamps_us, timestamps_label)
        cfg = replace(cfg, blur_ratio=0.0, min_motion=0.0)  # the camera file decides the frames
    else:
        candidates, chosen = _sample(src, cfg)
    rows = {i: {"name": src.names(i), "source_index": i, "timestamp_us": src.timestamp_us(i),
                "sharpness": None, "kept": False, "reason": "max_frames"} for i in candidates}

    meta: dict = {"input": str(path), "fps": src.fps, "source_frames": src.n}
    with atomic_path(frames_dir, is_dir=True) as tmp_dir:
        tmp_dir.mkdir(parents=True)
        n_kept = _write_frames(src, chosen, rows, cfg, tmp_dir, meta, progress, path.name)
        csv_text = format_frames_csv(rows[i] for i in candidates)
        # A stale csv must not describe the new folder, even for an instant: drop it first.
        if frames_csv.exists():
            frames_csv.unlink()
    write_json(ws.frames_json, meta)  # input and source frame size (for --intrinsics)
    write_text(frames_csv, csv_text)  # last: its presence means the folder is complete
    return StageResult("frames", frames_dir, {"frames": n_kept, "candidates": len(candidates)})


def _sample(src: Source, cfg: FramesConfig) -> tuple[list[int], list[int]]:
    """(candidates, chosen): the sampled source indices (``cfg.stride`` or ``cfg.fps``) and those of
    them that ``cfg.max_frames`` selects."""
    stamps = [src.timestamp_us(i) for i in range(src.n)] if src.fps and cfg.fps else None
    candidates = sample_indices(src.n, cfg.stride, cfg.fps if src.fps else None, src.fps, stamps)
    chosen = [candidates[p] for p in even_subset(len(candidates), int(cfg.max_frames))]
    return candidates, chosen


def _write_frames(src: Source, chosen: Sequence[int], rows: dict, cfg: FramesConfig, folder: Path,
                  meta: dict, progress: bool, desc: str) -> int:
    """:func:`select_and_write` into ``folder`` behind a progress bar; returns the number kept, or
    raises :class:`StageError` when it is under 2."""
    from tqdm import tqdm

    bar = tqdm(total=src.progress_total(chosen), unit="frame", desc=f"frames {desc}",
               disable=not progress, leave=False, dynamic_ncols=True)
    try:
        with PngWriter(folder) as writer:
            n_kept = select_and_write(src, chosen, rows, cfg, writer, bar.update, meta)
    finally:
        bar.close()
    if n_kept < 2:
        raise StageError(
            f"{src.label}: only {n_kept} frame(s) left after selection, need at least 2 "
            f"(stride={cfg.stride}, fps={cfg.fps}, max_frames={cfg.max_frames}, "
            f"blur_ratio={cfg.blur_ratio}, min_motion={cfg.min_motion})")
    return n_kept


# --------------------------------------------------------------------------------------------
# frames.csv
# --------------------------------------------------------------------------------------------
def format_frames_csv(rows: Iterable[dict]) -> str:
    """The text of ``frames.csv``: the header :data:`CSV_COLUMNS`, then one line per row dict (keys
    as :func:`read_frames_csv` returns them; sharpness with 4 decimals, empty when None)."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(CSV_COLUMNS)
    for r in rows:
        s = r["sharpness"]
        w.writerow([r["name"], r["source_index"], r["timestamp_us"],
                    "" if s is None else f"{s:.4f}", "true" if r["kept"] else "false", r["reason"]])
    return buf.getvalue()


def read_frames_csv(path: str | os.PathLike) -> list[dict]:
    """Read ``WS/frames.csv`` as a list of dicts, one per listed candidate, in file order.

    Keys: ``name`` (str), ``source_index`` (int), ``timestamp_us`` (int, µs), ``sharpness`` (float,
    or None when not measured), ``kept`` (bool), ``reason`` (str, "" when kept).
    Raises :class:`InputError` naming the file when it is missing or malformed.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: frames.csv not found (run the frames stage first)")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read ({one_line(exc)})") from None
    reader = csv.DictReader(io.StringIO(text))
    if tuple(reader.fieldnames or ()) != CSV_COLUMNS:
        raise InputError(f"{path}: expected columns {','.join(CSV_COLUMNS)}, "
                         f"got {','.join(reader.fieldnames or ()) or 'none'}")
    rows = []
    for line_no, r in enumerate(reader, start=2):
        try:
            rows.append(_parse_row(r))
        except (ValueError, TypeError, AttributeError) as exc:
            raise InputError(f"{path}: line {line_no}: {one_line(exc)}") from None
    return rows


def _parse_row(r: dict) -> dict:
    """One csv.DictReader row of frames.csv as typed values; ValueError for a bad ``kept``."""
    kept = r["kept"].strip().lower()
    if kept not in ("true", "false"):
        raise ValueError(f"kept must be true or false, got {r['kept']!r}")
    s = (r["sharpness"] or "").strip()
    return {
        "name": r["name"],
        "source_index": int(r["source_index"]),
        "timestamp_us": int(r["timestamp_us"]),
        "sharpness": float(s) if s else None,
        "kept": kept == "true",
        "reason": r["reason"] or "",
    }


def input_line_of(frames_csv: str | os.PathLike, frames_json: str | os.PathLike, n_lines: int,
                  label: str) -> dict[str, int]:
    """Frame name → line of a file with one line per input frame (a camera file, GT poses).

    The i-th line belongs to the i-th input frame in sorted order, i.e. to the i-th row of
    ``frames_csv`` (dropped frames included).  A file with one line per source frame of a video
    sampled with a stride (``source_frames`` in ``frames_json``) is matched by source index.
    Raises :class:`InputError` naming ``label`` when ``n_lines`` fits neither.
    """
    rows = read_frames_csv(frames_csv)
    try:
        n_source = json.loads(Path(frames_json).read_text()).get("source_frames")
    except (OSError, ValueError, AttributeError):
        n_source = None
    if n_lines == len(rows):
        return {r["name"]: i for i, r in enumerate(rows)}
    if isinstance(n_source, int) and n_lines == n_source:
        return {r["name"]: r["source_index"] for r in rows}
    kept = sum(r["kept"] for r in rows)
    source = f" of {n_source} in the video" if isinstance(n_source, int) and n_source != len(rows) else ""
    raise InputError(f"{label}: {n_lines} lines for {len(rows)} input frames{source} ({kept} kept); "
                     "the counts must match")


def kept_names(path: str | os.PathLike) -> list[str]:
    """Names of the kept frames listed in a frames.csv, in source order."""
    return [r["name"] for r in read_frames_csv(path) if r["kept"]]
