"""Which frames the frames stage keeps: sampling, the cap, and the blur and motion tests.

All deterministic.  Grey values here are BT.601 luma on the 0-255 scale (:func:`luma_255`), the
scale of ``frames.csv``'s ``sharpness`` column and of ``FramesConfig.min_motion``.
"""
from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import numpy as np

from mannequin.config import FramesConfig
from mannequin.errors import InputError
from mannequin.frames.sources import Source
from mannequin.io.images import resize_max, to_grey, to_rgb

MIN_FRAME_SIDE = 16    # px, after resizing: below it SIFT finds nothing and no stereo window fits


class FrameWriter(Protocol):
    """Where kept frames go (:class:`mannequin.io.images.PngWriter`)."""

    def write(self, name: str, rgb: np.ndarray) -> None: ...


# --------------------------------------------------------------------------------------------
# Sampling
# --------------------------------------------------------------------------------------------
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
        return _nearest_by_time(n, float(fps), timestamps_us)
    if fps is not None and source_fps:
        return _nearest_by_index(n, float(source_fps) / float(fps))
    return list(range(0, n, max(1, int(stride))))


def _nearest_by_time(n: int, fps: float, timestamps_us: Sequence[int]) -> list[int]:
    """Indices of the frames (times ``timestamps_us``, µs) nearest to k / ``fps`` s, deduplicated."""
    ts = np.asarray(timestamps_us, dtype=np.float64)[:n]
    period = 1e6 / fps
    source_period = float(np.median(np.diff(ts))) if len(ts) > 1 else period
    if len(ts) < 2 or period <= source_period:
        return list(range(n))
    targets = np.arange(0.0, ts[-1] + source_period / 2, period)
    j = np.clip(np.searchsorted(ts, targets), 1, len(ts) - 1)
    nearest = np.where(targets - ts[j - 1] < ts[j] - targets, j - 1, j)
    return sorted(set(int(i) for i in nearest))


def _nearest_by_index(n: int, step: float) -> list[int]:
    """``floor(k · step + 0.5)`` for k = 0, 1, ... below ``n``, deduplicated (all when step ≤ 1)."""
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


def even_subset(m: int, k: int) -> list[int]:
    """``k`` evenly spaced positions in ``range(m)`` (first and last included), or all when k ≤ 0 or
    k ≥ m.  Positions are ``floor(i·(m-1)/(k-1) + 0.5)``: deterministic and strictly increasing."""
    if k <= 0 or k >= m:
        return list(range(m))
    if k == 1:
        return [0]
    return [int(math.floor(i * (m - 1) / (k - 1) + 0.5)) for i in range(k)]


def frames_at_timestamps(src: Source, timestamps_us: Sequence[int], label: str) -> list[int]:
    """Source frame indices of a video at the given timestamps (µs, increasing), each the nearest
    frame within half a frame period.  ``label`` names the timestamps' file in errors (InputError)."""
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


# --------------------------------------------------------------------------------------------
# Measures
# --------------------------------------------------------------------------------------------
def luma_255(rgb: np.ndarray) -> np.ndarray:
    """(H, W, 3|4) RGB on the 0-255 scale (any real dtype) -> (H, W) float32 BT.601 luma on the same scale.

    :func:`mannequin.io.images.to_grey` of the values as float32: it is linear on float input, so this
    is ``to_grey(rgb_uint8) * 255`` computed without rounding through [0, 1].  Alpha is ignored.  A 2-D
    array is returned as float32 unchanged.
    """
    a = np.asarray(rgb)
    if a.ndim == 2:
        return a.astype(np.float32, copy=False)
    return to_grey(a[..., :3].astype(np.float32), "frame")


def sharpness(grey: np.ndarray) -> float:
    """Variance of the 4-neighbour Laplacian of a grey image (0-255 scale), over the interior.

    ``grey``: (H, W) array; an (H, W, 3) RGB array (0-255 scale) is converted with :func:`luma_255`
    first.  Higher is sharper; a constant image gives 0.  Images smaller than 3×3 give 0.
    """
    if np.ndim(grey) == 3 and min(np.shape(grey)[:2]) < 3:
        return 0.0
    g = luma_255(grey) if np.ndim(grey) == 3 else np.asarray(grey, dtype=np.float32)
    if g.shape[0] < 3 or g.shape[1] < 3:
        return 0.0
    lap = (g[1:-1, :-2] + g[1:-1, 2:] + g[:-2, 1:-1] + g[2:, 1:-1]) - 4.0 * g[1:-1, 1:-1]
    return float(lap.var(dtype=np.float64))


# --------------------------------------------------------------------------------------------
# Streaming selection
# --------------------------------------------------------------------------------------------
class _Selector:
    """The blur and motion decisions over a stream of frames, in order, with ``half`` frames of lookahead."""

    def __init__(self, cfg: FramesConfig, rows: dict, writer: FrameWriter, m: int):
        self.cfg, self.rows, self.writer, self.m = cfg, rows, writer, m
        self.half = max(0, int(cfg.blur_window)) // 2
        self.use_blur = cfg.blur_ratio > 0 and cfg.blur_window > 1
        self.sharp: list[float] = []
        self.pending: dict[int, tuple[int, np.ndarray, np.ndarray]] = {}  # position -> (index, rgb, grey)
        self.prev: np.ndarray | None = None
        self.kept = 0

    def add(self, pos: int, idx: int, rgb: np.ndarray) -> None:
        """Measure the frame at stream position ``pos`` (source index ``idx``), then decide the one
        ``half`` positions back, whose blur window is now complete."""
        grey = luma_255(rgb)
        s = sharpness(grey)
        self.sharp.append(s)
        self.rows[idx]["sharpness"] = s
        self.pending[pos] = (idx, rgb, grey)
        if pos - self.half >= 0:
            self.decide(pos - self.half)

    def finish(self, delivered: int) -> None:
        """Decide the frames still pending once the stream delivered ``delivered`` frames."""
        self.m = delivered  # a truncated stream may deliver fewer frames than counted
        for p in sorted(self.pending):
            self.decide(p)

    def decide(self, pos: int) -> None:
        """Keep (and write) or drop the pending frame at ``pos``: ``blurry``, ``no motion``."""
        idx, rgb, grey = self.pending.pop(pos)
        row, cfg = self.rows[idx], self.cfg
        if self.use_blur:
            lo, hi = max(0, pos - self.half), min(self.m, pos + self.half + 1)
            med = float(np.median(self.sharp[lo:hi]))
            if self.sharp[pos] < cfg.blur_ratio * med:
                row.update(kept=False, reason="blurry")
                return
        if cfg.min_motion > 0 and self.prev is not None:
            motion = float(np.mean(np.abs(grey - self.prev), dtype=np.float64))
            if motion < cfg.min_motion:
                row.update(kept=False, reason="no motion")
                return
        row.update(kept=True, reason="")
        self.prev = grey
        self.kept += 1
        self.writer.write(row["name"], rgb)


def select_and_write(src: Source, chosen: Sequence[int], rows: dict, cfg: FramesConfig,
                     writer: FrameWriter, tick: Callable[[], None], meta: dict | None = None) -> int:
    """Stream the ``chosen`` source indices: convert to RGB, resize (``cfg.max_size``), measure, drop
    ``blurry`` frames (``cfg.blur_ratio`` × the median sharpness of the centred ``cfg.blur_window``)
    and frames with ``no motion`` (mean |grey difference| to the last kept frame < ``cfg.min_motion``),
    and hand kept frames to ``writer``.  Returns the number kept.

    ``rows``: source index -> its frames.csv row; fills in ``sharpness``, ``kept`` and ``reason``
    (``not decoded`` for chosen frames the stream did not deliver).  ``meta``: gets ``source_size``
    and ``size`` ([W, H] px before and after resizing) from the first frame.  Raises
    :class:`InputError` when the resized frames are under :data:`MIN_FRAME_SIDE` px.
    """
    sel = _Selector(cfg, rows, writer, len(chosen))
    pos = 0
    with contextlib.closing(src.frames(chosen, tick)) as stream:  # stops ffmpeg on any failure
        for idx, rgb in stream:
            sel.add(pos, idx, _prepare(rgb, cfg, meta, src.label))
            pos += 1
    sel.finish(pos)
    for idx in chosen[pos:]:
        rows[idx].update(kept=False, reason="not decoded")
    return sel.kept


def _prepare(rgb: Any, cfg: FramesConfig, meta: dict | None, label: str) -> np.ndarray:
    """A decoded frame as resized (H, W, 3) uint8 RGB; records the sizes in ``meta`` on the first call."""
    rgb = to_rgb(rgb)
    if meta is not None and "source_size" not in meta:
        meta["source_size"] = [int(rgb.shape[1]), int(rgb.shape[0])]
    rgb = resize_max(rgb, int(cfg.max_size))
    if meta is not None and "size" not in meta:
        meta["size"] = [int(rgb.shape[1]), int(rgb.shape[0])]
        if min(rgb.shape[:2]) < MIN_FRAME_SIDE:
            raise InputError(f"{label}: frames of {rgb.shape[1]}x{rgb.shape[0]} px are too small for "
                             f"structure from motion and stereo (at least {MIN_FRAME_SIDE} px per side)")
    return rgb
