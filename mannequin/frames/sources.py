"""Frame sources of the frames stage: a video (decoded by the ffmpeg of imageio-ffmpeg) or a folder of images.

A :class:`Source` says how many frames there are, what each is named and when it was taken, and
streams the chosen ones as (H, W, 3) uint8 RGB arrays.

* *Video*: counted by a full decode through ffmpeg's ``showinfo`` filter, which also gives every
  frame's presentation time; then streamed frame by frame (never held in memory).  ffmpeg applies
  the display-rotation metadata, so a portrait phone clip comes out upright.  A frame is named by
  its source index zero-padded to 6 digits (``000123``); its time is its presentation time in µs
  relative to the first frame (variable frame rates are kept as recorded).
* *Folder*: the images of :func:`mannequin.io.images.list_images` in sorted-name order, read with
  :func:`mannequin.io.images.read_image_rgb`; named by their stem; the k-th is at
  ``k × round(1e6 / image_fps)`` µs.
"""
from __future__ import annotations

import contextlib
import logging
import math
import re
import subprocess
from collections.abc import Callable, Generator, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mannequin.config import FramesConfig
from mannequin.errors import InputError
from mannequin.io.images import IMAGE_EXTS, image_header_size, list_images, read_image_rgb

log = logging.getLogger("mannequin.frames.stage")
MAX_NAME_BYTES = 180   # a frame name, leaving room for suffixes and temporary names within 255 bytes

#: ``frames(indices, tick)``: the frames at ``indices`` (increasing) as (index, (H, W, 3) uint8);
#: ``tick()`` is called once per source frame decoded (the progress bar).
FrameStream = Callable[[Sequence[int], Callable[[], None]], Generator[tuple[int, np.ndarray], None, None]]


@dataclass
class Source:
    """What the selection logic needs from a video or an image folder."""

    label: str                      # the input, as named in messages
    n: int                          # source frames
    fps: float | None               # a video's rate (used for the target-rate sampling); None for a folder
    names: Callable[[int], str]     # source index -> frame name
    timestamp_us: Callable[[int], int]  # source index -> time in µs from the first frame
    frames: FrameStream
    progress_total: Callable[[Sequence[int]], int]  # chosen indices -> ticks that streaming them makes


def open_source(path: Path, cfg: FramesConfig) -> Source:
    """The :class:`Source` of ``path``: a folder of images or a video file.

    Raises :class:`InputError` naming ``path`` when it is missing, empty, a single image, not a
    regular file, or not decodable as described in the module docstring.
    """
    if not path.exists():
        raise InputError(f"{path}: input not found")
    if path.is_dir():
        return folder_source(path, cfg)
    if not path.is_file():
        raise InputError(f"{path}: not a regular file or folder")
    if path.stat().st_size == 0:
        raise InputError(f"{path}: empty file")
    if path.suffix.lower() in IMAGE_EXTS:
        raise InputError(f"{path}: a single image; need a video or a folder of images")
    return video_source(path, cfg)


# --------------------------------------------------------------------------------------------
# Video
# --------------------------------------------------------------------------------------------
def video_source(path: Path, cfg: FramesConfig) -> Source:
    """The :class:`Source` of a video file (at least 2 frames); ``cfg.image_fps`` is the rate assumed
    when the file states none.  Raises :class:`InputError` naming the file when ffmpeg cannot read it."""
    label = str(path)
    n, stamps = probe_frames(path)
    if not n:
        raise InputError(f"{label}: the video has no frames")
    if n < 2:
        raise InputError(f"{label}: need at least 2 frames, the video has {n}")

    try:
        meta = video_meta(path)
    except Exception as exc:
        raise InputError(f"{label}: ffmpeg cannot decode it as a video ({ffmpeg_reason(exc)})") from None
    fps = float(meta.get("fps") or 0.0)
    if fps <= 0:
        fps = (n - 1) * 1e6 / stamps[-1] if stamps else float(cfg.image_fps)
    if stamps is None:
        log.warning("%s: the video has no frame times; assuming %g fps", label, fps)
        stamps = [int(math.floor(i * 1e6 / fps + 0.5)) for i in range(n)]
    times: list[int] = stamps
    w, h = meta["size"]

    def frames(indices: Sequence[int], tick: Callable[[], None]) -> Generator[tuple[int, np.ndarray], None, None]:
        return _stream_video(path, label, (h, w), indices, tick)

    return Source(
        label=label, n=int(n), fps=fps,
        names=lambda i: f"{i:06d}",
        timestamp_us=lambda i: times[i],
        frames=frames,
        progress_total=lambda idx: (max(idx) + 1) if idx else 0,
    )


def _stream_video(path: Path, label: str, shape: tuple[int, int], indices: Sequence[int],
                  tick: Callable[[], None]) -> Generator[tuple[int, np.ndarray], None, None]:
    """Decode ``path`` up to the last of ``indices`` and yield (index, (H, W, 3) uint8) for those
    indices; ``shape`` = (H, W) of the decoded frames.  Stops ffmpeg when closed."""
    h, w = shape
    frame_bytes = w * h * 3
    wanted = set(indices)
    last = max(indices) if indices else -1
    try:
        gen = open_video(path)
        with _quiet_imageio_ffmpeg():
            next(gen)
    except Exception as exc:
        raise InputError(f"{label}: ffmpeg cannot decode it as a video ({ffmpeg_reason(exc)})") from None
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
        raise InputError(f"{label}: ffmpeg failed while decoding ({ffmpeg_reason(exc)})") from None
    finally:
        gen.close()


_SHOWINFO_FRAME = re.compile(rb"\bn:\s*(\d+)\s+pts:\s*(-?\d+|NOPTS)")
_SHOWINFO_TB = re.compile(rb"config in time_base:\s*(\d+)/(\d+)")


def probe_frames(path: Path) -> tuple[int, list[int] | None]:
    """(frames, timestamps_us or None) of the first video stream.

    A full decode through ffmpeg's ``showinfo`` filter, in presentation order and with
    ``-fps_mode passthrough`` (no frame duplicated or dropped, as the reader delivers them).
    Timestamps are the frames' own presentation times in µs relative to the first frame; None when
    the stream has none or they do not increase strictly.  On a damaged file (e.g. truncated) the
    frames decoded before the damage count, because the reader delivers exactly those.  Raises
    :class:`InputError` when nothing can be decoded.
    """
    import imageio_ffmpeg

    def probe(vf: str) -> subprocess.CompletedProcess:
        cmd = [imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-nostdin", "-i", str(path), "-map", "0:v:0",
               "-vf", vf, "-fps_mode", "passthrough", "-f", "null", "-"]
        return subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, check=False)

    out = probe("showinfo=checksum=0")
    if out.returncode != 0 and b"checksum" in out.stdout and not _SHOWINFO_FRAME.search(out.stdout):
        out = probe("showinfo")  # an older ffmpeg without the option
    frames = {int(n): pts for n, pts in _SHOWINFO_FRAME.findall(out.stdout)}
    n = (max(frames) + 1) if frames else 0
    if not n:
        _raise_no_frames(path, out.returncode, out.stdout.decode(errors="replace"))
    return n, _showinfo_stamps(out.stdout, [frames.get(i) for i in range(n)])


def _raise_no_frames(path: Path, returncode: int, text: str) -> None:
    """The :class:`InputError` for a video of which ffmpeg (exit status, output ``text``) decoded nothing."""
    if returncode == 0:
        raise InputError(f"{path}: the video has no frames")
    if "matches no streams" in text and "Input #0" in text:  # ffmpeg read the file: no video in it
        raise InputError(f"{path}: the file holds no video stream (zero frames, or audio only)")
    raise InputError(f"{path}: ffmpeg cannot decode it as a video ({ffmpeg_reason(RuntimeError(text))})")


def _showinfo_stamps(output: bytes, pts: list[bytes | None]) -> list[int] | None:
    """µs from the first frame of the frames' ``pts`` (showinfo's ticks, in the time base that
    ``output`` states); None when any is missing or they do not increase strictly."""
    tb = _SHOWINFO_TB.search(output)
    if tb is None or int(tb.group(2)) == 0 or any(v in (None, b"NOPTS") for v in pts):
        return None
    num, den = int(tb.group(1)), int(tb.group(2))
    ticks = [int(v) for v in pts if v is not None]
    stamps = [int(math.floor((t - ticks[0]) * num * 1e6 / den + 0.5)) for t in ticks]
    if any(b <= a for a, b in zip(stamps, stamps[1:], strict=False)):
        return None  # not strictly increasing: not usable as frame times
    return stamps


def open_video(path: Path) -> Any:
    """imageio-ffmpeg frame generator: first video stream, rgb24, one output frame per decoded frame
    (``-fps_mode passthrough``: no duplication or dropping, matching :func:`probe_frames`).  Its first
    item is the header dict, then each frame's raw bytes."""
    import imageio_ffmpeg

    with _quiet_imageio_ffmpeg():
        return imageio_ffmpeg.read_frames(
            str(path), pix_fmt="rgb24",
            input_params=["-nostdin"],
            output_params=["-map", "0:v:0", "-fps_mode", "passthrough"],
        )


def video_meta(path: Path) -> dict:
    """imageio-ffmpeg's header dict (``size`` = (W, H) px of the output, after auto-rotation; ``fps``)."""
    gen = open_video(path)
    try:
        with _quiet_imageio_ffmpeg():
            return next(gen)
    finally:
        gen.close()


@contextlib.contextmanager
def _quiet_imageio_ffmpeg() -> Iterator[None]:
    """imageio-ffmpeg logs a warning when the output size differs from the stored size, which is
    exactly what auto-rotation does; silence it while opening."""
    logger = logging.getLogger("imageio_ffmpeg")
    old = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(old)


_FFMPEG_NOISE = re.compile(r"^(\[[^\]]*\]\s*)+")


def ffmpeg_reason(exc: BaseException) -> str:
    """The most telling line of an ffmpeg error dump, without the ``[in#0 @ 0x..]`` prefix."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    keys = ("moov atom", "invalid data", "no such file", "matches no streams", "does not contain",
            "error", "not found", "could not")
    for key in keys:
        for ln in lines:
            if key in ln.lower() and not ln.lower().startswith(("ffmpeg version", "configuration")):
                return _FFMPEG_NOISE.sub("", ln)
    return _FFMPEG_NOISE.sub("", lines[-1]) if lines else type(exc).__name__


# --------------------------------------------------------------------------------------------
# Image folder
# --------------------------------------------------------------------------------------------
def folder_source(folder: Path, cfg: FramesConfig) -> Source:
    """The :class:`Source` of a folder of at least 2 images of one size with unique stems.

    ``cfg.image_fps`` sets the timestamps.  Raises :class:`InputError` naming the folder (or the
    file) for no or one image, names too long or not unique, images of different sizes or
    unreadable headers.
    """
    label = str(folder)
    files = list_images(folder)
    if not files:
        raise InputError(f"{label}: no images found (looked for {'/'.join(e[1:] for e in IMAGE_EXTS)})")
    if len(files) < 2:
        raise InputError(f"{label}: need at least 2 frames, the folder has 1 image ({files[0].name})")
    _check_names(label, files)
    first_size = _common_size(label, files)
    step = int(math.floor(1e6 / float(cfg.image_fps) + 0.5))

    def frames(indices: Sequence[int], tick: Callable[[], None]) -> Generator[tuple[int, np.ndarray], None, None]:
        for i in indices:
            rgb = read_image_rgb(files[i])
            if (rgb.shape[1], rgb.shape[0]) != first_size:  # header lied (should not happen)
                raise InputError(f"{files[i]}: decoded size {rgb.shape[1]}x{rgb.shape[0]} differs from "
                                 f"{first_size[0]}x{first_size[1]}")
            tick()
            yield i, rgb

    return Source(
        label=label, n=len(files), fps=None,
        names=lambda i: files[i].stem,
        timestamp_us=lambda i: i * step,
        frames=frames,
        progress_total=len,
    )


def _check_names(label: str, files: Sequence[Path]) -> None:
    """Refuse stems longer than :data:`MAX_NAME_BYTES` or shared by two files (InputError naming ``label``)."""
    seen: dict[str, str] = {}
    for f in files:
        if len(f.stem.encode("utf-8")) > MAX_NAME_BYTES:
            raise InputError(f"{label}: the name of {f.name[:40]}... is longer than {MAX_NAME_BYTES} bytes; the "
                             "workspace files built from it would exceed the file system's limit")
        if f.stem in seen:
            raise InputError(f"{label}: {seen[f.stem]} and {f.name} have the same name {f.stem!r}; "
                             "frame names must be unique")
        seen[f.stem] = f.name


def _common_size(label: str, files: Sequence[Path]) -> tuple[int, int]:
    """(W, H) shared by all ``files``, read from their headers (cheap, so a mismatch is found whatever
    the sampling, and files PIL cannot identify are named early); InputError naming ``label`` otherwise."""
    first_size = image_header_size(files[0])
    for f in files[1:]:
        size = image_header_size(f)
        if size != first_size:
            raise InputError(
                f"{label}: {f.name} is {size[0]}x{size[1]} but {files[0].name} is "
                f"{first_size[0]}x{first_size[1]}; all images must have the same size")
    return first_size
