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

import contextlib
import csv
import io
import logging
import math
import os
import re
import struct
import zlib
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from mannequin.config import FramesConfig
from mannequin.errors import InputError, StageError, one_line
from mannequin.result import StageResult
from mannequin.workspace import atomic_path, write_json, write_text

IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
log = logging.getLogger(__name__)
MIN_FRAME_SIDE = 16    # px, after resizing: below it SIFT finds nothing and no stereo window fits
MAX_NAME_BYTES = 180   # a frame name, leaving room for suffixes and temporary names within 255 bytes
CSV_COLUMNS = ("name", "source_index", "timestamp_us", "sharpness", "kept", "reason")
PNG_COMPRESS_LEVEL = 1  # fast zlib level: several times quicker than PIL's default 6
_GREY_WEIGHTS = np.array([0.299, 0.587, 0.114], dtype=np.float32)  # ITU-R BT.601 luma


# --------------------------------------------------------------------------------------------
# Small reusable helpers
# --------------------------------------------------------------------------------------------
def list_images(folder) -> list[Path]:
    """Image files directly inside ``folder``, sorted by file name.

    Images are files with a png/jpg/jpeg/bmp/tif/tiff/webp extension in any case; hidden files (names
    starting with ``.``), sub-folders and other files are ignored.  Raises :class:`InputError`
    when ``folder`` is not a folder, or holds a broken link with an image name (a frame that is
    missing, not a file to ignore).
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"{folder}: not a folder")
    found = [p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTS and not p.name.startswith(".")]
    for p in found:
        if p.is_symlink() and not p.exists():
            raise InputError(f"{p}: broken link (its target {os.readlink(p)} is missing)")
    return sorted((p for p in found if p.is_file()), key=lambda p: p.name)


def read_image_rgb(path) -> np.ndarray:
    """Read an image file as an (H, W, 3) uint8 RGB array.

    EXIF orientation is applied; grey, palette, grey+alpha and RGBA images are converted to RGB
    (alpha dropped, not composited); 16-bit and 32-bit integer images are scaled to 0-255.
    Raises :class:`InputError` naming the file when it is missing or cannot be decoded.
    """
    from PIL import Image, ImageOps

    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: image not found")
    try:
        with Image.open(path) as im:
            im.load()
            im = ImageOps.exif_transpose(im)
            return _pil_to_rgb(im)
    except InputError:
        raise
    except Exception as exc:  # PIL raises OSError, UnidentifiedImageError, SyntaxError, ValueError...
        raise InputError(f"{path}: cannot read image ({one_line(exc)})") from None


def to_rgb(image: np.ndarray) -> np.ndarray:
    """Any (H, W), (H, W, 1), (H, W, 3) or (H, W, 4) array -> (H, W, 3) uint8 RGB.

    uint16 is scaled by 1/257, floats are taken as 0-1 when their maximum is ≤ 1 (else 0-255),
    alpha is dropped.
    """
    a = np.asarray(image)
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[..., 0]
    if a.ndim == 2:
        a = np.repeat(a[..., None], 3, axis=2)
    if a.ndim != 3 or a.shape[2] not in (3, 4):
        raise ValueError(f"not an image array: shape {a.shape}")
    a = a[..., :3]
    if a.dtype == np.uint8:
        return np.ascontiguousarray(a)
    if a.dtype == np.bool_:
        return a.astype(np.uint8) * 255
    if a.dtype == np.uint16:
        return np.round(a.astype(np.float32) / 257.0).astype(np.uint8)
    a = a.astype(np.float64)
    if np.issubdtype(image.dtype, np.floating) and np.nanmax(a, initial=0.0) <= 1.0:
        a = a * 255.0
    return np.clip(np.round(np.nan_to_num(a)), 0, 255).astype(np.uint8)


def to_grey(rgb: np.ndarray) -> np.ndarray:
    """(H, W, 3) RGB (any dtype, 0-255) -> (H, W) float32 BT.601 luma on the 0-255 scale.

    A 2-D array is returned as float32 unchanged.
    """
    a = np.asarray(rgb)
    if a.ndim == 2:
        return a.astype(np.float32, copy=False)
    return a[..., :3].astype(np.float32) @ _GREY_WEIGHTS


def sharpness(grey: np.ndarray) -> float:
    """Variance of the 4-neighbour Laplacian of a grey image (0-255 scale), over the interior.

    ``grey``: (H, W) array; an (H, W, 3) RGB array is converted with :func:`to_grey` first.
    Higher is sharper; a constant image gives 0.  Images smaller than 3×3 give 0.
    """
    g = to_grey(grey) if np.ndim(grey) == 3 else np.asarray(grey, dtype=np.float32)
    if g.shape[0] < 3 or g.shape[1] < 3:
        return 0.0
    lap = (g[1:-1, :-2] + g[1:-1, 2:] + g[:-2, 1:-1] + g[2:, 1:-1]) - 4.0 * g[1:-1, 1:-1]
    return float(lap.var(dtype=np.float64))


def resize_max(rgb: np.ndarray, max_size: int) -> np.ndarray:
    """Downscale an (H, W, 3) uint8 image so its longest side is ``max_size`` px (aspect kept).

    ``max_size`` ≤ 0, or an image already small enough, returns the input unchanged (no upscaling).
    Uses PIL's Lanczos filter, which widens its kernel when shrinking (antialiased).
    """
    from PIL import Image

    h, w = rgb.shape[:2]
    if max_size <= 0 or max(h, w) <= max_size:
        return rgb
    scale = max_size / max(h, w)
    nw = max(1, int(math.floor(w * scale + 0.5)))
    nh = max(1, int(math.floor(h * scale + 0.5)))
    if w >= h:
        nw = max_size
    else:
        nh = max_size
    out = Image.fromarray(np.ascontiguousarray(rgb)).resize((nw, nh), Image.Resampling.LANCZOS)
    return np.asarray(out)


def sample_indices(n: int, stride: int = 1, fps: float | None = None,
                   source_fps: float | None = None, timestamps_us: Sequence[int] | None = None) -> list[int]:
    """Candidate source indices out of ``n`` frames: every ``stride``-th from 0, or with ``fps`` and
    ``source_fps`` both set, the frames nearest to the times k / fps (k = 0, 1, ...), deduplicated.

    ``timestamps_us``: the frames' own times ((n,) µs, increasing; a variable-frame-rate video),
    measured against instead of ``index / source_fps``.  A target rate at or above the source rate
    keeps every frame.
    """
    if n <= 0:
        return []
    if fps is not None and source_fps and timestamps_us is not None:
        ts = np.asarray(timestamps_us, dtype=np.float64)[:n]
        period = 1e6 / float(fps)
        source_period = float(np.median(np.diff(ts))) if len(ts) > 1 else period
        if len(ts) < 2 or period <= source_period:
            return list(range(n))
        targets = np.arange(0.0, ts[-1] + source_period / 2, period)
        j = np.clip(np.searchsorted(ts, targets), 1, len(ts) - 1)
        nearest = np.where(targets - ts[j - 1] < ts[j] - targets, j - 1, j)
        return sorted(set(int(i) for i in nearest))
    if fps is not None and source_fps:
        step = float(source_fps) / float(fps)
        if step <= 1.0:
            return list(range(n))
        out: list[int] = []
        k = 0
        while True:
            idx = int(math.floor(k * step + 0.5))
            if idx >= n:
                break
            if not out or idx != out[-1]:
                out.append(idx)
            k += 1
        return out
    return list(range(0, n, max(1, int(stride))))


def even_subset(m: int, k: int) -> list[int]:
    """``k`` evenly spaced positions in ``range(m)`` (first and last included), or all when k ≤ 0 or
    k ≥ m.  Positions are ``floor(i·(m-1)/(k-1) + 0.5)``: deterministic and strictly increasing."""
    if k <= 0 or k >= m:
        return list(range(m))
    if k == 1:
        return [0]
    return [int(math.floor(i * (m - 1) / (k - 1) + 0.5)) for i in range(k)]


def read_frames_csv(path) -> list[dict]:
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
            kept = r["kept"].strip().lower()
            if kept not in ("true", "false"):
                raise ValueError(f"kept must be true or false, got {r['kept']!r}")
            s = (r["sharpness"] or "").strip()
            rows.append({
                "name": r["name"],
                "source_index": int(r["source_index"]),
                "timestamp_us": int(r["timestamp_us"]),
                "sharpness": float(s) if s else None,
                "kept": kept == "true",
                "reason": r["reason"] or "",
            })
        except (ValueError, TypeError, AttributeError) as exc:
            raise InputError(f"{path}: line {line_no}: {one_line(exc)}") from None
    return rows


def input_line_of(frames_csv, frames_json, n_lines: int, label: str) -> dict:
    """Frame name → line of a file with one line per input frame (a camera file, GT poses).

    DESIGN.md: the i-th line belongs to the i-th input frame in sorted order, i.e. to the i-th row
    of ``frames_csv`` (dropped frames included).  A file with one line per source frame of a
    video sampled with a stride (``source_frames`` in ``frames_json``) is matched by source index.
    Raises :class:`InputError` naming ``label`` when ``n_lines`` fits neither.
    """
    import json

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


def kept_names(path) -> list[str]:
    """Names of the kept frames listed in a frames.csv, in source order."""
    return [r["name"] for r in read_frames_csv(path) if r["kept"]]


# --------------------------------------------------------------------------------------------
# Sources
# --------------------------------------------------------------------------------------------
@dataclass
class _Source:
    """What the selection logic needs from a video or an image folder."""

    label: str                      # the input, as named in messages
    n: int                          # source frames
    fps: float | None            # a video's rate (used for the target-rate sampling)
    names: Callable[[int], str]
    timestamp_us: Callable[[int], int]
    frames: Callable[[Sequence[int], Callable[[], None]], Iterator[tuple[int, np.ndarray]]]
    progress_total: Callable[[Sequence[int]], int]


def _video_source(path: Path, cfg: FramesConfig) -> _Source:
    label = str(path)
    n, stamps = _probe_frames(path)
    if not n:
        raise InputError(f"{label}: the video has no frames")
    if n < 2:
        raise InputError(f"{label}: need at least 2 frames, the video has {n}")

    try:
        meta = _video_meta(path)
    except Exception as exc:
        raise InputError(f"{label}: ffmpeg cannot decode it as a video ({_ffmpeg_reason(exc)})") from None
    fps = float(meta.get("fps") or 0.0)
    if fps <= 0:
        fps = (n - 1) * 1e6 / stamps[-1] if stamps else float(cfg.image_fps)
    if stamps is None:
        log.warning("%s: the video has no frame times; assuming %g fps", label, fps)
        stamps = [int(math.floor(i * 1e6 / fps + 0.5)) for i in range(n)]
    w, h = meta["size"]
    frame_bytes = w * h * 3

    def frames(indices: Sequence[int], tick: Callable[[], None]) -> Iterator[tuple[int, np.ndarray]]:
        wanted = set(indices)
        last = max(indices) if indices else -1
        try:
            gen = _open_video(path)
            with _quiet_imageio_ffmpeg():
                next(gen)
        except Exception as exc:
            raise InputError(f"{label}: ffmpeg cannot decode it as a video ({_ffmpeg_reason(exc)})") from None
        try:
            for i, raw in enumerate(gen):
                if i > last:
                    break
                tick()
                if i in wanted:
                    if len(raw) != frame_bytes:
                        raise InputError(f"{label}: frame {i} has an unexpected size")
                    yield i, np.frombuffer(raw, np.uint8).reshape(h, w, 3)
        except RuntimeError as exc:
            raise InputError(f"{label}: ffmpeg failed while decoding ({_ffmpeg_reason(exc)})") from None
        finally:
            gen.close()

    return _Source(
        label=label, n=int(n), fps=fps,
        names=lambda i: f"{i:06d}",
        timestamp_us=lambda i: stamps[i],
        frames=frames,
        progress_total=lambda idx: (max(idx) + 1) if idx else 0,
    )


_SHOWINFO_FRAME = re.compile(rb"\bn:\s*(\d+)\s+pts:\s*(-?\d+|NOPTS)")
_SHOWINFO_TB = re.compile(rb"config in time_base:\s*(\d+)/(\d+)")


def _probe_frames(path: Path) -> tuple[int, list | None]:
    """(frames, timestamps_us or None) of the first video stream, by a full decode through ffmpeg's
    ``showinfo`` filter, in presentation order and with ``-fps_mode passthrough`` (no frame
    duplicated or dropped, as the reader delivers them).  Timestamps are the frames' own
    presentation times relative to the first frame, so a variable-frame-rate phone clip keeps its
    true times; None when the stream has none.  ffmpeg exits with an error on a damaged file (e.g.
    truncated); the frames it decoded before the damage still count, because the reader delivers
    exactly those.  Raises :class:`InputError` when nothing can be decoded."""
    import subprocess

    import imageio_ffmpeg

    def probe(vf: str):
        cmd = [imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-nostdin", "-i", str(path), "-map", "0:v:0",
               "-vf", vf, "-fps_mode", "passthrough", "-f", "null", "-"]
        return subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, check=False)

    out = probe("showinfo=checksum=0")
    if out.returncode != 0 and b"checksum" in out.stdout and not _SHOWINFO_FRAME.search(out.stdout):
        out = probe("showinfo")  # an older ffmpeg without the option
    frames = {int(n): pts for n, pts in _SHOWINFO_FRAME.findall(out.stdout)}
    n = (max(frames) + 1) if frames else 0
    if not n:
        text = out.stdout.decode(errors="replace")
        if out.returncode == 0:
            raise InputError(f"{path}: the video has no frames")
        if "matches no streams" in text and "Input #0" in text:  # ffmpeg read the file: no video in it
            raise InputError(f"{path}: the file holds no video stream (zero frames, or audio only)")
        raise InputError(f"{path}: ffmpeg cannot decode it as a video ({_ffmpeg_reason(RuntimeError(text))})")
    tb = _SHOWINFO_TB.search(out.stdout)
    pts = [frames.get(i) for i in range(n)]
    if tb is None or int(tb.group(2)) == 0 or any(v in (None, b"NOPTS") for v in pts):
        return n, None
    num, den = int(tb.group(1)), int(tb.group(2))
    ticks = [int(v) for v in pts]
    stamps = [int(math.floor((t - ticks[0]) * num * 1e6 / den + 0.5)) for t in ticks]
    if any(b <= a for a, b in zip(stamps, stamps[1:], strict=False)):
        return n, None  # not strictly increasing: not usable as frame times
    return n, stamps


def _open_video(path: Path):
    """imageio-ffmpeg frame generator: first video stream, rgb24, one output frame per decoded frame
    (``-fps_mode passthrough``: no duplication or dropping, matching :func:`_probe_frames`)."""
    import imageio_ffmpeg

    with _quiet_imageio_ffmpeg():
        return imageio_ffmpeg.read_frames(
            str(path), pix_fmt="rgb24",
            input_params=["-nostdin"],
            output_params=["-map", "0:v:0", "-fps_mode", "passthrough"],
        )


def _video_meta(path: Path) -> dict:
    """imageio-ffmpeg's header dict (``size`` is the output size, after auto-rotation; ``fps``)."""
    gen = _open_video(path)
    try:
        with _quiet_imageio_ffmpeg():
            return next(gen)
    finally:
        gen.close()


@contextlib.contextmanager
def _quiet_imageio_ffmpeg():
    """imageio-ffmpeg logs a warning when the output size differs from the stored size, which is
    exactly what auto-rotation does; silence it while opening."""
    logger = logging.getLogger("imageio_ffmpeg")
    old = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(old)


def _folder_source(folder: Path, cfg: FramesConfig) -> _Source:
    label = str(folder)
    files = list_images(folder)
    if not files:
        raise InputError(f"{label}: no images found (looked for {'/'.join(e[1:] for e in IMAGE_EXTS)})")
    if len(files) < 2:
        raise InputError(f"{label}: need at least 2 frames, the folder has 1 image ({files[0].name})")
    seen: dict[str, str] = {}
    for f in files:
        if len(f.stem.encode("utf-8")) > MAX_NAME_BYTES:
            raise InputError(f"{label}: the name of {f.name[:40]}... is longer than {MAX_NAME_BYTES} bytes; the "
                             "workspace files built from it would exceed the file system's limit")
        if f.stem in seen:
            raise InputError(f"{label}: {seen[f.stem]} and {f.name} have the same name {f.stem!r}; "
                             "frame names must be unique")
        seen[f.stem] = f.name

    # Header pass: sizes of all images (cheap, PIL reads lazily), so a mismatch is found whatever
    # the sampling, and files PIL cannot identify are named early.
    first_size = None
    for f in files:
        size = _header_size(f)
        if first_size is None:
            first_size = size
        elif size != first_size:
            raise InputError(
                f"{label}: {f.name} is {size[0]}x{size[1]} but {files[0].name} is "
                f"{first_size[0]}x{first_size[1]}; all images must have the same size")

    step = int(math.floor(1e6 / float(cfg.image_fps) + 0.5))

    def frames(indices: Sequence[int], tick: Callable[[], None]) -> Iterator[tuple[int, np.ndarray]]:
        for i in indices:
            rgb = read_image_rgb(files[i])
            if (rgb.shape[1], rgb.shape[0]) != first_size:  # header lied (should not happen)
                raise InputError(f"{files[i]}: decoded size {rgb.shape[1]}x{rgb.shape[0]} differs from "
                                 f"{first_size[0]}x{first_size[1]}")
            tick()
            yield i, rgb

    return _Source(
        label=label, n=len(files), fps=None,
        names=lambda i: files[i].stem,
        timestamp_us=lambda i: i * step,
        frames=frames,
        progress_total=len,
    )


def _header_size(path: Path) -> tuple[int, int]:
    """(W, H) of an image as displayed (EXIF orientation 5-8 swaps the axes), from its header."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            w, h = im.size
            try:
                orientation = im.getexif().get(0x0112, 1)
            except Exception:
                orientation = 1
    except Exception as exc:
        raise InputError(f"{path}: cannot read image ({one_line(exc)})") from None
    return (h, w) if orientation in (5, 6, 7, 8) else (w, h)


# --------------------------------------------------------------------------------------------
# The stage
# --------------------------------------------------------------------------------------------
def frames_at_timestamps(src: _Source, timestamps_us: Sequence[int], label: str) -> list[int]:
    """Source frame indices of a video at the given timestamps (µs, increasing), each the nearest
    frame within half a frame period.  ``label`` names the timestamps' file in errors."""
    if not src.fps:
        raise InputError(f"{src.label}: frames at {label}'s timestamps need a video input, not an image folder")
    half = 0.5e6 / src.fps + 1.0
    out: list[int] = []
    for k, t in enumerate(timestamps_us):
        i = int(round(float(t) * src.fps / 1e6))
        if not 0 <= i < src.n or abs(src.timestamp_us(i) - float(t)) > half:
            raise InputError(f"{label} line {k + 2}: timestamp {t} µs is no frame of {src.label} "
                             f"({src.n} frames at {src.fps:g} fps, 0 to {src.timestamp_us(src.n - 1)} µs)")
        if out and i <= out[-1]:
            raise InputError(f"{label} line {k + 2}: timestamp {t} µs is not after the previous line's")
        out.append(i)
    return out


def extract_frames(input, ws, cfg: FramesConfig | None = None, progress: bool = False,
                   timestamps_us: Sequence[int] | None = None, timestamps_label: str = "camera file") -> StageResult:
    """Extract, select and write the frames of ``input`` into workspace ``ws``.

    Returns a :class:`~mannequin.result.StageResult` whose ``output`` is ``ws.frames_dir`` and whose
    report holds ``frames`` (kept) and ``candidates`` (rows of frames.csv).

    ``input``: a video file (anything the bundled ffmpeg decodes) or a folder of images.
    ``ws``: a :class:`mannequin.workspace.Workspace`.  ``cfg``: :class:`FramesConfig` (defaults if None).
    Writes ``ws.frames_dir/<name>.png`` ((H, W, 3) uint8 RGB, longest side ≤ ``cfg.max_size``) for
    every kept frame and ``ws.frames_csv`` (see the module docstring for what it lists).
    ``timestamps_us``: take exactly the video frames at these timestamps (:func:`frames_at_timestamps`,
    ``timestamps_label`` names their file in errors) instead of sampling; no blur or motion rejection.
    Raises :class:`InputError` (message names the input) for missing, empty, undecodable or
    inconsistent inputs, and :class:`StageError` when fewer than 2 frames survive the selection.
    Nothing is left behind on failure; on success the old frames folder is replaced.
    """
    from tqdm import tqdm

    cfg = cfg or FramesConfig()
    _check_config(cfg)
    path = Path(input)
    frames_dir, frames_csv = Path(ws.frames_dir), Path(ws.frames_csv)
    src = _open_source(path, cfg)
    if frames_dir.exists() and not frames_dir.is_dir():
        raise InputError(f"{frames_dir}: exists and is not a folder; remove it")
    if frames_csv.is_dir():
        raise InputError(f"{frames_csv}: exists and is a folder; remove it")

    if timestamps_us is not None:
        candidates = chosen = frames_at_timestamps(src, timestamps_us, timestamps_label)
        cfg = replace(cfg, blur_ratio=0.0, min_motion=0.0)  # the camera file decides the frames
    else:
        candidates = sample_indices(src.n, cfg.stride, cfg.fps if src.fps else None, src.fps,
                                    [src.timestamp_us(i) for i in range(src.n)] if src.fps and cfg.fps else None)
        chosen = [candidates[p] for p in even_subset(len(candidates), int(cfg.max_frames))]
    rows = {i: {"name": src.names(i), "source_index": i, "timestamp_us": src.timestamp_us(i),
                "sharpness": None, "kept": False, "reason": "max_frames"} for i in candidates}

    meta: dict = {"input": str(path), "fps": src.fps, "source_frames": src.n}
    with atomic_path(frames_dir, is_dir=True) as tmp_dir:
        tmp_dir.mkdir(parents=True)
        bar = tqdm(total=src.progress_total(chosen), unit="frame", desc=f"frames {path.name}",
                   disable=not progress, leave=False, dynamic_ncols=True)
        try:
            with _PngWriter(tmp_dir) as writer:
                n_kept = _select_and_write(src, chosen, rows, cfg, writer, bar.update, meta)
        finally:
            bar.close()
        if n_kept < 2:
            raise StageError(
                f"{src.label}: only {n_kept} frame(s) left after selection, need at least 2 "
                f"(stride={cfg.stride}, fps={cfg.fps}, max_frames={cfg.max_frames}, "
                f"blur_ratio={cfg.blur_ratio}, min_motion={cfg.min_motion})")
        csv_text = _format_csv(rows[i] for i in candidates)
        # A stale csv must not describe the new folder, even for an instant: drop it first.
        if frames_csv.exists():
            frames_csv.unlink()
    write_json(ws.frames_json, meta)  # input and source frame size (for --intrinsics)
    write_text(frames_csv, csv_text)  # last: its presence means the folder is complete
    return StageResult("frames", frames_dir, {"frames": n_kept, "candidates": len(candidates)})


def _select_and_write(src: _Source, chosen: Sequence[int], rows: dict, cfg: FramesConfig,
                      writer: _PngWriter, tick: Callable[[], None], meta: dict | None = None) -> int:
    """Stream the chosen frames: resize, measure, decide blur with a half-window of lookahead,
    then motion against the last kept frame, and hand kept frames to ``writer``.  Returns the
    number kept.  Fills ``rows[i]['sharpness'/'kept'/'reason']``."""
    half = max(0, int(cfg.blur_window)) // 2
    use_blur = cfg.blur_ratio > 0 and cfg.blur_window > 1
    sharp: list[float] = []
    pending: dict[int, tuple[int, np.ndarray, np.ndarray]] = {}  # position -> (index, rgb, grey)
    state = {"prev": None, "kept": 0}
    m = len(chosen)

    def decide(pos: int) -> None:
        idx, rgb, grey = pending.pop(pos)
        row = rows[idx]
        if use_blur:
            lo, hi = max(0, pos - half), min(m, pos + half + 1)
            med = float(np.median(sharp[lo:hi]))
            if sharp[pos] < cfg.blur_ratio * med:
                row.update(kept=False, reason="blurry")
                return
        if cfg.min_motion > 0 and state["prev"] is not None:
            motion = float(np.mean(np.abs(grey - state["prev"]), dtype=np.float64))
            if motion < cfg.min_motion:
                row.update(kept=False, reason="no motion")
                return
        row.update(kept=True, reason="")
        state["prev"] = grey
        state["kept"] += 1
        writer.write(row["name"], rgb)

    pos = 0
    with contextlib.closing(src.frames(chosen, tick)) as stream:  # stops ffmpeg on any failure
        for idx, rgb in stream:
            rgb = to_rgb(rgb)
            if meta is not None and "source_size" not in meta:
                meta["source_size"] = [int(rgb.shape[1]), int(rgb.shape[0])]
            rgb = resize_max(rgb, int(cfg.max_size))
            if meta is not None and "size" not in meta:
                meta["size"] = [int(rgb.shape[1]), int(rgb.shape[0])]
                if min(rgb.shape[:2]) < MIN_FRAME_SIDE:
                    raise InputError(f"{src.label}: frames of {rgb.shape[1]}x{rgb.shape[0]} px are too small for "
                                     f"structure from motion and stereo (at least {MIN_FRAME_SIDE} px per side)")
            grey = to_grey(rgb)
            s = sharpness(grey)
            sharp.append(s)
            rows[idx]["sharpness"] = s
            pending[pos] = (idx, rgb, grey)
            if pos - half >= 0:
                decide(pos - half)
            pos += 1
    m = pos  # a truncated stream may deliver fewer frames than counted
    for p in sorted(pending):
        decide(p)
    for idx in chosen[m:]:
        rows[idx].update(kept=False, reason="not decoded")
    return state["kept"]


class _PngWriter:
    """Writes PNGs on a small thread pool (zlib releases the GIL); bounded number in flight."""

    def __init__(self, folder: Path, workers: int = 2, max_pending: int = 8):
        self.folder = Path(folder)
        self.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="png")
        self.max_pending = max_pending
        self.futures: list = []

    def write(self, name: str, rgb: np.ndarray) -> None:
        self.futures.append(self.pool.submit(_save_png, self.folder / f"{name}.png", rgb))
        while len(self.futures) > self.max_pending:
            self.futures.pop(0).result()

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        try:
            if exc_type is None:
                for f in self.futures:
                    f.result()
            else:
                for f in self.futures:
                    f.cancel()
        finally:
            self.pool.shutdown(wait=True)
        return False


def _save_png(path: Path, rgb: np.ndarray) -> None:
    Path(path).write_bytes(encode_png(rgb))


def encode_png(rgb: np.ndarray, level: int = PNG_COMPRESS_LEVEL) -> bytes:
    """Encode an (H, W, 3) uint8 RGB image as PNG bytes (8-bit, "Up" row filter, zlib ``level``).

    About twice as fast as PIL's encoder at a similar size (the frames stage writes hundreds of
    frames); deterministic; lossless.  zlib releases the GIL, so threads help.
    """
    a = np.ascontiguousarray(rgb, dtype=np.uint8)
    if a.ndim != 3 or a.shape[2] != 3:
        raise ValueError(f"expected an (H, W, 3) image, got shape {a.shape}")
    h, w = a.shape[:2]
    rows = a.reshape(h, w * 3)
    raw = np.empty((h, w * 3 + 1), np.uint8)
    raw[:, 0] = 2  # filter type Up: each byte minus the byte above (mod 256)
    raw[0, 0] = 0  # first row: no filter
    raw[0, 1:] = rows[0]
    np.subtract(rows[1:], rows[:-1], out=raw[1:, 1:])

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))

    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)  # 8-bit truecolour, no interlace
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr)
            + chunk(b"IDAT", zlib.compress(raw.tobytes(), level)) + chunk(b"IEND", b""))


def _open_source(path: Path, cfg: FramesConfig) -> _Source:
    if not path.exists():
        raise InputError(f"{path}: input not found")
    if path.is_dir():
        return _folder_source(path, cfg)
    if not path.is_file():
        raise InputError(f"{path}: not a regular file or folder")
    if path.stat().st_size == 0:
        raise InputError(f"{path}: empty file")
    if path.suffix.lower() in IMAGE_EXTS:
        raise InputError(f"{path}: a single image; need a video or a folder of images")
    return _video_source(path, cfg)


def _check_config(cfg: FramesConfig) -> None:
    if int(cfg.stride) < 1:
        raise InputError(f"frames.stride must be at least 1, got {cfg.stride}")
    if cfg.fps is not None and not float(cfg.fps) > 0:
        raise InputError(f"frames.fps must be positive, got {cfg.fps}")
    if int(cfg.max_frames) < 0:
        raise InputError(f"frames.max_frames must be 0 (no cap) or positive, got {cfg.max_frames}")
    if int(cfg.max_size) < 0:
        raise InputError(f"frames.max_size must be 0 (keep) or positive, got {cfg.max_size}")
    if not float(cfg.image_fps) > 0:
        raise InputError(f"frames.image_fps must be positive, got {cfg.image_fps}")


def _format_csv(rows) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(CSV_COLUMNS)
    for r in rows:
        s = r["sharpness"]
        w.writerow([r["name"], r["source_index"], r["timestamp_us"],
                    "" if s is None else f"{s:.4f}", "true" if r["kept"] else "false", r["reason"]])
    return buf.getvalue()


def _pil_to_rgb(im) -> np.ndarray:
    mode = im.mode
    if mode.startswith("I;16") or mode in ("I", "F"):
        a = np.asarray(im)
        if mode == "I" and a.size and a.max() <= 255:
            return to_rgb(a.astype(np.uint8))
        if mode == "F":
            return to_rgb(a.astype(np.float32))
        return to_rgb(np.clip(a, 0, 65535).astype(np.uint16))
    if mode != "RGB":
        im = im.convert("RGB")
    return np.asarray(im, dtype=np.uint8).copy()


_FFMPEG_NOISE = re.compile(r"^(\[[^\]]*\]\s*)+")


def _ffmpeg_reason(exc: BaseException) -> str:
    """The most telling line of an ffmpeg error dump, without the ``[in#0 @ 0x..]`` prefix."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    keys = ("moov atom", "invalid data", "no such file", "matches no streams", "does not contain",
            "error", "not found", "could not")
    for key in keys:
        for ln in lines:
            if key in ln.lower() and not ln.lower().startswith(("ffmpeg version", "configuration")):
                return _FFMPEG_NOISE.sub("", ln)
    return _FFMPEG_NOISE.sub("", lines[-1]) if lines else type(exc).__name__


