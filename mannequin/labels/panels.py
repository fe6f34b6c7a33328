"""Preview images: the per-frame panel ``frame | raw depth | labels``, contact sheets, and the writer.

Pure image functions (numpy in, ``(H, W, 3) uint8`` RGB out) plus :func:`write_previews`, which
puts its files under ``WS/preview/`` through :mod:`mannequin.workspace` (atomic writes, no half
files).  Depth maps follow the conventions of :mod:`mannequin.labels.colour`: ``(H, W)`` floats in
pose units, ``0`` or non-finite = no depth (black).
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Sequence, Sized
from pathlib import Path

import numpy as np

from mannequin.labels.colour import colorize_depth, depth_range, valid_depth
from mannequin.workspace import save_image

__all__ = ["frame_panel", "contact_sheet", "write_previews"]

MAX_PANEL_WIDTH = 960      # px: panels written to disk are downscaled to at most this width
THUMB_WIDTH = 320          # px: contact-sheet thumbnail width
MAX_THUMBS = 64            # contact sheet keeps at most this many evenly spaced thumbnails
SHEET_PAD = 4              # px: gap around contact-sheet cells
CAPTION_H = 14             # px: caption strip under each contact-sheet thumbnail
DYNAMIC_TINT = np.array([255, 0, 255], np.float32)  # magenta for dynamic (moving) pixels


# --- image helpers ------------------------------------------------------------------------------

def _as_rgb(image: np.ndarray) -> np.ndarray:
    """``(H, W)``, ``(H, W, 1|3|4)`` uint8 or float in [0, 1] -> ``(H, W, 3) uint8``."""
    img = np.asarray(image)
    if img.dtype != np.uint8:
        img = img.astype(np.float64)
        if img.size and np.nanmax(img) <= 1.0:
            img = img * 255
        img = np.clip(np.nan_to_num(img), 0, 255).astype(np.uint8)
    if img.ndim == 2:
        img = img[..., None]
    if img.ndim != 3:
        raise ValueError(f"expected an (H, W) or (H, W, C) image, got shape {img.shape}")
    if img.shape[2] == 1:
        img = np.repeat(img, 3, axis=2)
    return np.ascontiguousarray(img[..., :3])


def _resize(img: np.ndarray, size_wh: tuple[int, int], *, nearest: bool = False) -> np.ndarray:
    """Resize an ``(H, W, 3) uint8`` image to ``size_wh`` (PIL; area filter unless ``nearest``)."""
    from PIL import Image

    w, h = max(1, int(size_wh[0])), max(1, int(size_wh[1]))
    if img.shape[1] == w and img.shape[0] == h:
        return img
    resample = Image.Resampling.NEAREST if nearest else Image.Resampling.BOX
    return np.asarray(Image.fromarray(img).resize((w, h), resample))


def _resize_map(a: np.ndarray, shape_hw: tuple[int, int]) -> np.ndarray:
    """Nearest-neighbour resize of an ``(h, w)`` map to ``shape_hw`` (index arithmetic, any dtype)."""
    a = np.asarray(a)
    if a.shape[:2] == tuple(shape_hw):
        return a
    H, W = shape_hw
    rows = np.minimum((np.arange(H) + 0.5) * a.shape[0] / H, a.shape[0] - 1).astype(np.intp)
    cols = np.minimum((np.arange(W) + 0.5) * a.shape[1] / W, a.shape[1] - 1).astype(np.intp)
    return a[rows[:, None], cols[None, :]]


def _draw_text(img: np.ndarray, xy: tuple[int, int], text: str, *, box: bool = True) -> np.ndarray:
    """Draw ``text`` (PIL default bitmap font, white on a dark box) onto a copy of ``img``."""
    from PIL import Image, ImageDraw

    pil = Image.fromarray(img)
    draw = ImageDraw.Draw(pil)
    if box:
        l, t, r, b = draw.textbbox(xy, text)
        draw.rectangle((l - 2, t - 2, r + 2, b + 2), fill=(0, 0, 0))
    draw.text(xy, text, fill=(255, 255, 255))
    return np.asarray(pil)


# --- panels and sheets --------------------------------------------------------------------------

def frame_panel(image: np.ndarray, raw_depth: np.ndarray, label: np.ndarray,
                dynamic: np.ndarray | None = None, *, vmin: float | None = None,
                vmax: float | None = None, titles: bool = True) -> np.ndarray:
    """Side-by-side panel ``frame | raw depth | labels``: ``(H, 3 W, 3) uint8`` (no margins).

    image: ``(H, W, 3)`` uint8 (grey or float images are converted).  raw_depth, label: ``(h, w)``
    depth in pose units (0 = none), resized to ``(H, W)`` by nearest neighbour when they differ.
    dynamic: optional ``(h, w)`` bool mask of moving pixels, tinted magenta on the label panel.
    vmin, vmax: shared colour range in depth units; by default the 2nd/98th percentiles of the
    valid pixels of raw depth and labels together, so both panels use the same colours.
    titles: draw "frame" / "raw depth" / "labels" in the top-left corner of each panel.
    """
    img = _as_rgb(image)
    H, W = img.shape[:2]
    raw = _resize_map(np.asarray(raw_depth, np.float32), (H, W))
    lab = _resize_map(np.asarray(label, np.float32), (H, W))
    if vmin is None or vmax is None:
        auto = depth_range(raw, lab) or (1.0, 2.0)
        vmin = auto[0] if vmin is None else vmin
        vmax = auto[1] if vmax is None else vmax
    raw_rgb = colorize_depth(raw, vmin, vmax)
    lab_rgb = colorize_depth(lab, vmin, vmax)
    if dynamic is not None:
        dyn = _resize_map(np.asarray(dynamic, bool), (H, W))
        if dyn.any():
            tinted = 0.45 * lab_rgb[dyn].astype(np.float32) + 0.55 * DYNAMIC_TINT
            lab_rgb[dyn] = np.clip(np.rint(tinted), 0, 255).astype(np.uint8)
    panels = [img, raw_rgb, lab_rgb]
    if titles:
        names = ["frame", "raw depth", "labels" + (" (magenta: dynamic)" if dynamic is not None else "")]
        panels = [_draw_text(p, (4, 3), n) for p, n in zip(panels, names, strict=False)]
    return np.concatenate(panels, axis=1)


def contact_sheet(images: Sequence[np.ndarray], cols: int = 4, thumb_width: int = THUMB_WIDTH,
                  captions: Sequence[str] | None = None) -> np.ndarray:
    """Grid of thumbnails: ``(H, W, 3) uint8``.

    Each image is resized to ``thumb_width`` px wide (aspect kept); cells are as tall as the
    tallest thumbnail plus a ``CAPTION_H`` px caption strip when ``captions`` is given.  With
    ``n`` images, ``c = min(cols, n)`` columns and ``r = ceil(n / c)`` rows, the sheet is
    ``W = c (thumb_width + SHEET_PAD) + SHEET_PAD`` by ``H = r (cell_h + SHEET_PAD) + SHEET_PAD``.
    An empty list gives a blank ``(2 SHEET_PAD, thumb_width + 2 SHEET_PAD, 3)`` image.
    """
    if cols < 1 or thumb_width < 1:
        raise ValueError("contact_sheet: cols and thumb_width must be >= 1")
    if captions is not None and len(captions) != len(images):
        raise ValueError(f"contact_sheet: {len(captions)} captions for {len(images)} images")
    pad = SHEET_PAD
    if len(images) == 0:
        return np.zeros((2 * pad, thumb_width + 2 * pad, 3), np.uint8)
    thumbs = []
    for im in images:
        im = _as_rgb(im)
        h = max(1, round(im.shape[0] * thumb_width / im.shape[1]))
        thumbs.append(_resize(im, (thumb_width, h)))
    n = len(thumbs)
    c = min(cols, n)
    r = math.ceil(n / c)
    cap_h = CAPTION_H if captions is not None else 0
    cell_h = max(t.shape[0] for t in thumbs) + cap_h
    sheet = np.full((r * (cell_h + pad) + pad, c * (thumb_width + pad) + pad, 3), 24, np.uint8)
    for i, t in enumerate(thumbs):
        y = pad + (i // c) * (cell_h + pad)
        x = pad + (i % c) * (thumb_width + pad)
        sheet[y:y + t.shape[0], x:x + thumb_width] = t
    if captions is not None:
        sheet = _draw_captions(sheet, captions, c, cell_h, cap_h, thumb_width)
    return sheet


def _draw_captions(sheet: np.ndarray, captions: Sequence[str], c: int, cell_h: int, cap_h: int,
                   thumb_width: int) -> np.ndarray:
    """``sheet`` with each caption drawn in the strip under its cell (``c`` columns, light grey)."""
    from PIL import Image, ImageDraw

    pad = SHEET_PAD
    pil = Image.fromarray(sheet)
    draw = ImageDraw.Draw(pil)
    for i, text in enumerate(captions):
        y = pad + (i // c) * (cell_h + pad) + cell_h - cap_h + 1
        x = pad + (i % c) * (thumb_width + pad) + 2
        draw.text((x, y), str(text), fill=(230, 230, 230))
    return np.asarray(pil)


# --- the writer ---------------------------------------------------------------------------------

def _valid_fraction(label: np.ndarray) -> float:
    """Fraction of pixels of ``label`` that hold a label (finite and > 0)."""
    label = np.asarray(label)
    return float(valid_depth(label).mean()) if label.size else 0.0


def _progress(iterable, total, enabled: bool, desc: str):
    if not enabled:
        return iterable
    try:
        from tqdm import tqdm
    except ImportError:  # pragma: no cover - tqdm is a core dependency
        return iterable
    return tqdm(iterable, total=total, unit="frame", desc=desc, leave=False, dynamic_ncols=True)


def _frame_name(item: dict) -> str:
    """The item's ``name``, which becomes a file name in the preview folder: no path parts."""
    name = str(item["name"])
    if not name or "/" in name or "\\" in name or name.startswith("."):
        raise ValueError(f"write_previews: bad frame name {name!r}")
    return name


def _item_panel(item: dict, max_width: int, vmin: float | None, vmax: float | None) -> np.ndarray:
    """The :func:`frame_panel` of one item, its inputs first shrunk so the panel is at most ``max_width`` px wide.

    Shrinking the inputs rather than the panel is cheaper and keeps the titles legible.
    """
    image = _as_rgb(item["image"])
    raw, label, dyn = item["raw_depth"], item["label"], item.get("dynamic")
    H, W = image.shape[:2]
    if max_width < 3 * W:
        w = max(1, max_width // 3)
        h = max(1, round(H * w / W))
        image = _resize(image, (w, h))
        raw, label = _resize_map(raw, (h, w)), _resize_map(label, (h, w))
        dyn = None if dyn is None else _resize_map(dyn, (h, w))
    return frame_panel(image, raw, label, dyn, vmin=vmin, vmax=vmax)


def _label_thumbnail(panel: np.ndarray) -> np.ndarray:
    """``THUMB_WIDTH`` px wide thumbnail of a panel's right third (the labels)."""
    third = panel.shape[1] // 3
    label_panel = np.ascontiguousarray(panel[:, 2 * third:])
    th = max(1, round(label_panel.shape[0] * THUMB_WIDTH / max(1, label_panel.shape[1])))
    return _resize(label_panel, (THUMB_WIDTH, th))


class _SpacedThumbnails:
    """At most ``limit`` (index, thumbnail, caption) of evenly spaced frames, kept as the frames go by.

    Frames whose index is a multiple of ``stride`` are kept; when there are too many, ``stride``
    doubles and the frames off the new stride are dropped.
    """

    def __init__(self, limit: int):
        self.limit = limit
        self.stride = 1
        self.kept: list[tuple[int, np.ndarray, str]] = []

    def wants(self, index: int) -> bool:
        return index % self.stride == 0

    def add(self, index: int, thumb: np.ndarray, caption: str) -> None:
        self.kept.append((index, thumb, caption))
        while len(self.kept) > self.limit:
            self.stride *= 2
            self.kept = [k for k in self.kept if k[0] % self.stride == 0]


def write_previews(preview_dir: str | Path, items: Iterable[dict], *, vmin: float | None = None,
                   vmax: float | None = None, progress: bool = False, fmt: str = "jpg",
                   max_width: int = MAX_PANEL_WIDTH, max_thumbs: int = MAX_THUMBS,
                   total: int | None = None) -> list[Path]:
    """Write one panel per frame and a contact sheet into ``preview_dir``; return the paths written.

    items: iterable (a generator is best for long clips: one frame in memory at a time) of dicts
    ``{name, image (H,W,3) uint8, raw_depth (h,w), label (h,w), dynamic (h,w) bool (optional),
    caption (optional)}``.  Writes ``preview_dir/<name>.<fmt>`` (``fmt`` "jpg" or "png"): the
    :func:`frame_panel`, its inputs first downscaled so that it is at most ``max_width`` px wide.  Then writes
    ``preview_dir/contact_sheet.png``: thumbnails of the label panels captioned with the name and
    valid-label percentage (or ``caption``); for long clips at most ``max_thumbs`` evenly spaced
    frames are kept, built as the frames go by.  vmin, vmax: one colour range (depth units) for
    every frame; by default each frame gets its own robust range.  ``total``: the number of items
    when ``items`` is a generator (for the progress bar's ETA).  Every write is atomic.
    """
    fmt = fmt.lower().lstrip(".")
    if fmt not in ("jpg", "jpeg", "png"):
        raise ValueError(f"write_previews: unsupported format {fmt!r} (jpg or png)")
    preview_dir = Path(preview_dir)
    preview_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    thumbs = _SpacedThumbnails(max_thumbs)
    total = len(items) if isinstance(items, Sized) else total
    for i, item in enumerate(_progress(items, total, progress, "previews")):
        name = _frame_name(item)
        panel = _item_panel(item, max_width, vmin, vmax)
        if thumbs.wants(i):
            caption = item.get("caption") or f"{name}  {100 * _valid_fraction(item['label']):.1f}%"
            thumbs.add(i, _label_thumbnail(panel), str(caption))
        written.append(save_image(preview_dir / f"{name}.{fmt}", panel))
        del panel, item  # one frame in memory at a time
    sheet = contact_sheet([k[1] for k in thumbs.kept], captions=[k[2] for k in thumbs.kept])
    written.append(save_image(preview_dir / "contact_sheet.png", sheet))
    return written
