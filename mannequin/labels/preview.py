"""Previews: colour-mapped depth, per-frame panels, a contact sheet and a static ``report.html``.

Pure image functions (numpy in, ``(H, W, 3) uint8`` out) plus two writers that put their files
under ``WS/preview/`` through :mod:`mannequin.workspace` (atomic writes, no half files).

Conventions
-----------
* Depth maps are ``(H, W)`` floats in the units of the poses; ``0`` or a non-finite value means
  "no depth" and is drawn black.
* Colour ranges (``vmin``, ``vmax``) are always given in depth units, whatever the colouring mode.
* The colormap is Google's *Turbo* (its 256-entry table, embedded): index 0 is dark blue (far),
  index 255 dark red (near).
"""
from __future__ import annotations

import html
import json
import math
import urllib.parse
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from mannequin.workspace import save_image, write_text

__all__ = [
    "TURBO_LUT",
    "turbo",
    "depth_range",
    "colorize_depth",
    "colorize_confidence",
    "frame_panel",
    "contact_sheet",
    "write_previews",
    "write_report_html",
]

MAX_PANEL_WIDTH = 960      # px: panels written to disk are downscaled to at most this width
THUMB_WIDTH = 320          # px: contact-sheet thumbnail width
MAX_THUMBS = 64            # contact sheet keeps at most this many evenly spaced thumbnails
SHEET_PAD = 4              # px: gap around contact-sheet cells
CAPTION_H = 14             # px: caption strip under each contact-sheet thumbnail
DYNAMIC_TINT = np.array([255, 0, 255], np.float32)  # magenta for dynamic (moving) pixels

# --- Turbo colormap ---------------------------------------------------------------------------
# Google's Turbo colormap (A. Mikhailov, 2019; Apache-2.0), its 256-entry sRGB table as hex RGB
# triplets.  The published degree-5 polynomial approximation is off by up to 32/255 at the dark
# ends, so the exact table is embedded instead (768 bytes).
_TURBO_HEX = (
    "30123b32154333184a341b51351e5836215f37246638276d392a733a2d793b2f803c32863d358b3e38913f3b973f3e9c"
    "4040a24143a74146ac4249b1424bb5434eba4451bf4454c34456c74559cb455ccf455ed34661d64664da4666dd4669e0"
    "466be3476ee64771e94773eb4776ee4778f0477bf2467df44680f64682f84685fa4687fb458afc458cfd448ffe4391fe"
    "4294ff4196ff4099ff3e9bfe3d9efe3ba0fd3aa3fc38a5fb37a8fa35abf833adf731aff52fb2f42eb4f22cb7f02ab9ee"
    "28bceb27bee925c0e723c3e422c5e220c7df1fc9dd1ecbda1ccdd81bd0d51ad2d21ad4d019d5cd18d7ca18d9c818dbc5"
    "18ddc218dec018e0bd19e2bb19e3b91ae4b61ce6b41de7b21fe9af20eaac22ebaa25eca727eea42aefa12cf09e2ff19b"
    "32f29835f39438f4913cf58e3ff68a43f78746f8844af8804ef97d52fa7a55fa7659fb735dfc6f61fc6c65fd6969fd66"
    "6dfe6271fe5f75fe5c79fe597dff5680ff5384ff5188ff4e8bff4b8fff4992ff4796fe4499fe429cfe409ffd3fa1fd3d"
    "a4fc3ca7fc3aa9fb39acfb38affa37b1f936b4f836b7f735b9f635bcf534bef434c1f334c3f134c6f034c8ef34cbed34"
    "cdec34d0ea34d2e935d4e735d7e535d9e436dbe236dde037dfdf37e1dd37e3db38e5d938e7d739e9d539ebd339ecd13a"
    "eecf3aefcd3af1cb3af2c93af4c73af5c53af6c33af7c13af8be39f9bc39faba39fbb838fbb637fcb336fcb136fdae35"
    "fdac34fea933fea732fea431fea130fe9e2ffe9b2dfe992cfe962bfe932afe9029fd8d27fd8a26fc8725fc8423fb8122"
    "fb7e21fa7b1ff9781ef9751df8721cf76f1af66c19f56918f46617f36315f26014f15d13f05b12ef5811ed5510ec530f"
    "eb500eea4e0de84b0ce7490ce5470be4450ae2430ae14109df3f08dd3d08dc3b07da3907d83706d63506d43305d23105"
    "d02f05ce2d04cc2b04ca2a04c82803c52603c32503c12302be2102bc2002b91e02b71d02b41b01b21a01af1801ac1701"
    "a91601a71401a41301a112019e10019b0f01980e01950d01920b018e0a018b09028808028507028106027e05027a0403"
)

#: ``(256, 3) uint8``: the Turbo table (index 0 = dark blue = far, 255 = dark red = near).
TURBO_LUT: np.ndarray = np.frombuffer(bytes.fromhex(_TURBO_HEX), np.uint8).reshape(256, 3).copy()
TURBO_LUT.setflags(write=False)


def turbo(t: np.ndarray) -> np.ndarray:
    """Map ``t`` (any shape, floats in [0, 1], clipped) to ``t.shape + (3,)`` uint8 Turbo colours."""
    idx = np.clip(np.rint(np.asarray(t, np.float64) * 255.0), 0, 255).astype(np.intp)
    return TURBO_LUT[idx]


# --- colour mapping ---------------------------------------------------------------------------

def _valid(depth: np.ndarray) -> np.ndarray:
    """``(H, W) bool``: finite and strictly positive depth."""
    d = np.asarray(depth)
    with np.errstate(invalid="ignore"):
        return np.isfinite(d) & (d > 0)


def depth_range(*depths: np.ndarray | None, lo: float = 2.0, hi: float = 98.0,
                max_samples: int = 1_000_000) -> tuple[float, float] | None:
    """Robust ``(vmin, vmax)`` in depth units: the ``lo``/``hi`` percentiles of all valid pixels.

    Takes any number of ``(H, W)`` depth maps (``None`` entries are ignored) and pools their valid
    pixels (subsampled to about ``max_samples`` for speed).  Returns None when no pixel is valid.
    ``vmax > vmin`` always holds for the returned pair.
    """
    samples = []
    for d in depths:
        if d is None:
            continue
        d = np.asarray(d, np.float32).ravel()
        step = max(1, d.size // max(1, max_samples))
        d = d[::step]
        samples.append(d[_valid(d)])
    vals = np.concatenate(samples) if samples else np.zeros(0, np.float32)
    if vals.size == 0:
        return None
    vmin, vmax = (float(v) for v in np.percentile(vals, [lo, hi]))
    if not vmax > vmin:  # flat scene or a single value: widen symmetrically
        eps = max(abs(vmin) * 1e-3, 1e-6)
        vmin, vmax = max(vmin - eps, vmin * 0.5), vmax + eps
    return vmin, vmax


def colorize_depth(depth: np.ndarray, vmin: float | None = None, vmax: float | None = None, *,
                   inverse: bool = True) -> np.ndarray:
    """Colour-map a depth map with Turbo; near is warm (red), far is cold (blue).

    depth: ``(H, W)`` float, pose units; ``0`` or non-finite = no depth.
    vmin, vmax: colour range in depth units (a missing bound comes from the 2nd/98th percentiles
    of the valid pixels).  Depths outside the range are clipped to the end colours.
    inverse: colour by inverse depth (``1/d``, linear in disparity: more detail near the camera)
    rather than by depth.  Either way nearer pixels get higher LUT indices.
    Returns ``(H, W, 3) uint8``; invalid pixels are black ``(0, 0, 0)``.
    """
    depth = np.asarray(depth)
    if depth.ndim != 2:
        raise ValueError(f"colorize_depth: expected an (H, W) depth map, got shape {depth.shape}")
    valid = _valid(depth)
    out = np.zeros(depth.shape + (3,), np.uint8)
    if not valid.any():
        return out
    if vmin is None or vmax is None:
        auto = depth_range(depth)
        assert auto is not None
        vmin = auto[0] if vmin is None else float(vmin)
        vmax = auto[1] if vmax is None else float(vmax)
    vmin, vmax = float(vmin), float(vmax)
    if vmin <= 0 and inverse:
        vmin = min(vmax, float(depth[valid].min())) if vmax > 0 else float(depth[valid].min())
    if not vmax > vmin:
        vmax = vmin * (1 + 1e-3) + 1e-6
    d = depth[valid].astype(np.float64)
    if inverse:
        lo, hi = 1.0 / vmax, 1.0 / vmin
        t = (1.0 / d - lo) / (hi - lo)
    else:
        t = (vmax - d) / (vmax - vmin)
    out[valid] = turbo(t)
    return out


def colorize_confidence(conf: np.ndarray) -> np.ndarray:
    """Grey ramp of a confidence map: ``(H, W)`` float in [0, 1] -> ``(H, W, 3) uint8``.

    ``0`` is black, ``1`` white; values are clipped to [0, 1] and non-finite values are black.
    """
    c = np.asarray(conf, np.float64)
    if c.ndim != 2:
        raise ValueError(f"colorize_confidence: expected an (H, W) map, got shape {c.shape}")
    c = np.where(np.isfinite(c), np.clip(c, 0.0, 1.0), 0.0)
    g = np.rint(c * 255).astype(np.uint8)
    return np.repeat(g[..., None], 3, axis=2)


# --- panels and sheets ------------------------------------------------------------------------

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
        from PIL import Image, ImageDraw

        pil = Image.fromarray(sheet)
        draw = ImageDraw.Draw(pil)
        for i, text in enumerate(captions):
            y = pad + (i // c) * (cell_h + pad) + cell_h - cap_h + 1
            x = pad + (i % c) * (thumb_width + pad) + 2
            draw.text((x, y), str(text), fill=(230, 230, 230))
        sheet = np.asarray(pil)
    return sheet


# --- writers ----------------------------------------------------------------------------------

def _valid_fraction(label: np.ndarray) -> float:
    """Fraction of pixels of ``label`` that hold a label (finite and > 0)."""
    label = np.asarray(label)
    return float(_valid(label).mean()) if label.size else 0.0


def _progress(iterable, total, enabled: bool, desc: str):
    if not enabled:
        return iterable
    try:
        from tqdm import tqdm
    except ImportError:  # pragma: no cover - tqdm is a core dependency
        return iterable
    return tqdm(iterable, total=total, unit="frame", desc=desc, leave=False, dynamic_ncols=True)


def write_previews(preview_dir, items: Iterable[dict], *, vmin: float | None = None,
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
    kept: list[tuple[int, np.ndarray, str]] = []  # (index, thumbnail, caption), evenly decimated
    stride = 1
    total = len(items) if hasattr(items, "__len__") else total
    for i, item in enumerate(_progress(items, total, progress, "previews")):
        name = str(item["name"])
        if not name or "/" in name or "\\" in name or name.startswith("."):
            raise ValueError(f"write_previews: bad frame name {name!r}")
        image = _as_rgb(item["image"])
        raw, label, dyn = item["raw_depth"], item["label"], item.get("dynamic")
        H, W = image.shape[:2]
        if max_width < 3 * W:  # shrink the inputs, not the panel: cheaper, and titles stay legible
            w = max(1, max_width // 3)
            h = max(1, round(H * w / W))
            image = _resize(image, (w, h))
            raw, label = _resize_map(raw, (h, w)), _resize_map(label, (h, w))
            dyn = None if dyn is None else _resize_map(dyn, (h, w))
        panel = frame_panel(image, raw, label, dyn, vmin=vmin, vmax=vmax)
        if i % stride == 0:  # thumbnail of the label panel (the right third), kept small
            third = panel.shape[1] // 3
            label_panel = np.ascontiguousarray(panel[:, 2 * third:])
            th = max(1, round(label_panel.shape[0] * THUMB_WIDTH / max(1, label_panel.shape[1])))
            thumb = _resize(label_panel, (THUMB_WIDTH, th))
            caption = item.get("caption") or f"{name}  {100 * _valid_fraction(item['label']):.1f}%"
            kept.append((i, thumb, str(caption)))
            while len(kept) > max_thumbs:
                stride *= 2
                kept = [k for k in kept if k[0] % stride == 0]
        written.append(save_image(preview_dir / f"{name}.{fmt}", panel))
        del panel, item, image, raw, label, dyn
    sheet = contact_sheet([k[1] for k in kept], captions=[k[2] for k in kept])
    written.append(save_image(preview_dir / "contact_sheet.png", sheet))
    return written


# --- report.html --------------------------------------------------------------------------------

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:1.5em;
color:#222;background:#fafafa}
h1{font-size:1.4em;margin-bottom:.2em} h2{font-size:1.1em;margin-top:1.6em}
table{border-collapse:collapse;margin:.4em 0} th,td{border:1px solid #ccc;padding:3px 8px;text-align:left}
th{background:#eee} td.num{text-align:right;font-variant-numeric:tabular-nums}
.verdict{display:inline-block;padding:.3em .8em;border-radius:4px;font-weight:bold;color:#fff}
.accepted{background:#2e7d32} .rejected{background:#c62828} .unknown{background:#757575}
.kept{color:#2e7d32} .dropped{color:#c62828} .muted{color:#777}
img.sheet{max-width:100%;border:1px solid #ccc} img.thumb{height:60px;border:1px solid #ccc}
pre{background:#f0f0f0;padding:.6em;overflow:auto}
"""


def _e(value) -> str:
    """HTML-escape anything (quotes included)."""
    return html.escape("" if value is None else str(value), quote=True)


def _href(*parts: str) -> str:
    """A relative URL from path parts (each percent-encoded), HTML-escaped for an attribute."""
    segs = []
    for p in parts:
        for s in str(p).replace("\\", "/").split("/"):
            if s in ("", "."):
                continue
            segs.append(urllib.parse.quote(s))
    return _e("/".join(segs) or ".")


def _verdict(report: dict) -> tuple[str, list[str]]:
    """``("accepted"|"rejected"|"unknown", reasons)`` from the flexible report layouts we accept."""
    v = report.get("verdict")
    reasons = report.get("reasons") or report.get("verdict_reasons") or []
    if isinstance(v, dict):
        reasons = v.get("reasons") or reasons
        acc = v.get("accepted")
        state = v.get("state") or v.get("verdict")
        v = ("accepted" if acc else "rejected") if acc is not None else state
    if isinstance(v, bool):
        v = "accepted" if v else "rejected"
    v = str(v).lower() if v is not None else "unknown"
    if v not in ("accepted", "rejected"):
        v = "unknown"
    if isinstance(reasons, str):
        reasons = [reasons]
    return v, [str(r) for r in reasons]


def _fmt_num(x, nd: int = 2) -> str:
    if isinstance(x, bool) or x is None:
        return _e(x if x is not None else "")
    if isinstance(x, (int, np.integer)):
        return str(int(x))
    if isinstance(x, (float, np.floating)):
        return f"{float(x):.{nd}f}" if math.isfinite(float(x)) else _e(x)
    return _e(x)


def _find_panel(base: Path, name: str) -> str | None:
    for ext in ("jpg", "png", "jpeg"):
        if (base / f"{name}.{ext}").is_file():
            return f"{name}.{ext}"
    return None


def write_report_html(path, report: dict, frames: list[dict], *, thumbnails_dir_rel: str = ".") -> Path:
    """Write a self-contained static HTML report (inline CSS, no scripts, relative links) to ``path``.

    report: the clip's ``report.json`` dict.  Read keys (all optional): ``name``/``clip``/``input``
    (title); ``verdict`` ("accepted"/"rejected", a bool, or ``{accepted, reasons}``) with
    ``reasons``; ``counts`` (or top-level) ``frames``/``total``, ``registered``, ``kept``,
    ``dropped``; ``stages[stage] = {seconds, peak_mb, skipped}``; ``eval`` (accuracy metrics,
    typically ``{"clip": {...}}``); ``config``.
    frames: rows ``{name, valid_fraction (0..1), kept (bool), reason}``.
    thumbnails_dir_rel: folder of ``contact_sheet.png`` and the panels ``<name>.jpg|png``, relative
    to the HTML file's folder; a frame's thumbnail appears when its panel exists there.
    Every string is HTML-escaped.  Returns ``path``.
    """
    path = Path(path)
    thumbs_base = path.parent / thumbnails_dir_rel
    title = report.get("name") or report.get("clip") or report.get("input") or path.parent.name
    verdict, reasons = _verdict(report)
    out: list[str] = []
    w = out.append
    w("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n")
    w(f"<title>mannequin report: {_e(title)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n")
    w(f"<h1>mannequin report: {_e(title)}</h1>\n")
    if report.get("input") and report.get("input") != title:
        w(f"<p class=\"muted\">input: {_e(report['input'])}</p>\n")
    if report.get("poses"):
        w(f"<p class=\"muted\">poses: {_e(report['poses'])}</p>\n")

    # verdict
    w(f"<p>verdict: <span class=\"verdict {verdict}\" id=\"verdict\">{_e(verdict)}</span></p>\n")
    if reasons:
        w("<ul class=\"reasons\">\n" + "".join(f"<li>{_e(r)}</li>\n" for r in reasons) + "</ul>\n")

    # counts
    counts = dict(report.get("counts") or {})
    total = counts.get("frames", counts.get("total", report.get("frames_total", len(frames) or None)))
    n_kept = counts.get("kept", sum(1 for f in frames if f.get("kept")) if frames else None)
    n_dropped = counts.get("dropped", (total - n_kept) if (total is not None and n_kept is not None
                                                          and isinstance(total, int)) else None)
    rows = [("frames total", total), ("registered", counts.get("registered", report.get("registered"))),
            ("kept", n_kept), ("dropped", n_dropped)]
    w("<h2>Counts</h2>\n<table class=\"counts\">\n")
    for k, v in rows:
        w(f"<tr><th>{_e(k)}</th><td class=\"num\">{_fmt_num(v) if v is not None else '&ndash;'}</td></tr>\n")
    w("</table>\n")

    # camera (stage sfm)
    sfm = (report.get("stages") or {}).get("sfm")
    if isinstance(sfm, dict) and sfm.get("focal_px") is not None:
        cam_rows = [("focal (px)", sfm.get("focal_px")), ("reprojection error (px)", sfm.get("reprojection_error_px")),
                    ("median triangulation angle (°)", sfm.get("median_triangulation_deg")),
                    ("rolling-shutter readout (ms, 0 = none)", sfm.get("rolling_shutter_readout_ms"))]
        w("<h2>Camera</h2>\n<table class=\"camera\">\n")
        for k, v in cam_rows:
            w(f"<tr><th>{_e(k)}</th><td class=\"num\">{_fmt_num(v, 2) if v is not None else '&ndash;'}</td></tr>\n")
        w("</table>\n")

    # matching window (stage stereo): the base one, or a larger one for blurred footage
    stereo = (report.get("stages") or {}).get("stereo")
    fuse = (report.get("stages") or {}).get("fuse")
    if isinstance(stereo, dict) and stereo.get("window") is not None:
        agree = stereo.get("window_agreement") or {}
        tried = ", ".join(f"{k} px: {100 * float(a):.1f}%" for k, a in sorted(agree.items(), key=lambda kv: int(kv[0])))
        w("<h2>Stereo</h2>\n<table class=\"stereo\">\n")
        w(f"<tr><th>matching window (px)</th><td class=\"num\">{_fmt_num(stereo['window'])}</td></tr>\n")
        if tried:
            w(f"<tr><th>probe pixels agreeing with a neighbour</th><td>{_e(tried)}</td></tr>\n")
        if isinstance(fuse, dict) and fuse.get("depth_noise_rel") is not None:
            noise = _fmt_num(100 * float(fuse["depth_noise_rel"]))
            w(f"<tr><th>depth noise between frames (%)</th><td class=\"num\">{noise}</td></tr>\n")
            w(f"<tr><th>no-evidence band of the fuse votes (%)</th><td class=\"num\">"
              f"{_fmt_num(100 * float(fuse.get('noise_band_rel') or 0))}</td></tr>\n")
        if isinstance(fuse, dict) and fuse.get("rel_depth") is not None:
            w(f"<tr><th>fuse agreement test</th><td>within {_fmt_num(100 * float(fuse['rel_depth']))}% "
              f"from {_e(fuse.get('min_views'))} views</td></tr>\n")
        w("</table>\n")

    # stages
    stages = report.get("stages") or {}
    w("<h2>Stages</h2>\n<table class=\"stages\">\n<tr><th>stage</th><th>wall time (s)</th>"
      "<th>peak memory (MB)</th><th>skipped</th></tr>\n")
    tot_s = 0.0
    for stage, info in stages.items():
        info = info if isinstance(info, dict) else {}
        sec = info.get("seconds")
        if isinstance(sec, (int, float)) and not info.get("skipped"):
            tot_s += float(sec)
        mb = info.get("peak_mb")
        sec_s = _fmt_num(sec) if sec is not None else "&ndash;"
        mb_s = _fmt_num(mb, 1) if mb is not None else "&ndash;"
        w(f"<tr><td>{_e(stage)}</td><td class=\"num\">{sec_s}</td><td class=\"num\">{mb_s}</td>"
          f"<td>{'yes' if info.get('skipped') else 'no'}</td></tr>\n")
    if stages:
        w(f"<tr><th>total (run)</th><td class=\"num\">{tot_s:.2f}</td><td></td><td></td></tr>\n")
    w("</table>\n")

    # accuracy
    ev = report.get("eval")
    if ev:
        w("<h2>Accuracy</h2>\n")
        clip = ev.get("clip", ev) if isinstance(ev, dict) else None
        if isinstance(clip, dict):
            w("<table class=\"eval\">\n")
            for k, v in clip.items():
                if isinstance(v, (dict, list)):
                    continue
                w(f"<tr><th>{_e(k)}</th><td class=\"num\">{_fmt_num(v, 4)}</td></tr>\n")
            w("</table>\n")
        else:
            w(f"<pre>{_e(json.dumps(ev, indent=2, default=str))}</pre>\n")

    # config
    if report.get("config") is not None:
        cfg = json.dumps(report["config"], indent=2, sort_keys=True, default=str)
        w(f"<h2>Config</h2>\n<details><summary>config (hash {_e(report.get('config_hash', ''))})</summary>\n"
          f"<pre>{_e(cfg)}</pre>\n</details>\n")

    # contact sheet
    w("<h2>Contact sheet</h2>\n")
    if (thumbs_base / "contact_sheet.png").is_file():
        src = _href(thumbnails_dir_rel, "contact_sheet.png")
        w(f"<p><a href=\"{src}\"><img class=\"sheet\" src=\"{src}\" alt=\"contact sheet\"></a></p>\n")
    else:
        w("<p class=\"muted\">no contact sheet</p>\n")

    # frames
    w(f"<h2>Frames ({len(frames)})</h2>\n<table class=\"frames\">\n<tr><th>name</th><th>valid %</th>"
      "<th>kept</th><th>reason</th><th>panel</th></tr>\n")
    for f in frames:
        name = str(f.get("name", ""))
        vf = f.get("valid_fraction")
        try:
            vf_s = f"{100 * float(vf):.1f}" if vf is not None and vf != "" else "&ndash;"
        except (TypeError, ValueError):
            vf_s = _e(vf)
        kept = f.get("kept")
        if isinstance(kept, str):
            kept = kept.strip().lower() in ("true", "1", "yes")
        kept_s = "<span class=\"kept\">yes</span>" if kept else "<span class=\"dropped\">no</span>"
        panel = _find_panel(thumbs_base, name) if name else None
        if panel:
            href = _href(thumbnails_dir_rel, panel)
            thumb = (f"<a href=\"{href}\"><img class=\"thumb\" src=\"{href}\" alt=\"{_e(name)}\""
                     " loading=\"lazy\"></a>")
        else:
            thumb = "<span class=\"muted\">&ndash;</span>"
        w(f"<tr><td>{_e(name)}</td><td class=\"num\">{vf_s}</td><td>{kept_s}</td>"
          f"<td>{_e(f.get('reason') or '')}</td><td>{thumb}</td></tr>\n")
    w("</table>\n</body>\n</html>\n")
    return write_text(path, "".join(out))
