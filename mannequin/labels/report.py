"""The static ``report.html`` of a clip: verdict, counts, camera, stereo, timings, accuracy, frames.

One self-contained page (inline CSS, no scripts, relative links to the previews), built section by
section from the clip's ``report.json`` dict and its ``index.csv`` rows.  Every string from the
report is HTML-escaped.
"""
from __future__ import annotations

import html
import json
import math
import urllib.parse
from pathlib import Path

import numpy as np

from mannequin.workspace import write_text

__all__ = ["write_report_html"]

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
_DASH = "&ndash;"


# --- formatting ---------------------------------------------------------------------------------

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


def _fmt_num(x, nd: int = 2) -> str:
    """Numbers with ``nd`` decimals (integers as they are), anything else escaped."""
    if isinstance(x, bool) or x is None:
        return _e(x if x is not None else "")
    if isinstance(x, (int, np.integer)):
        return str(int(x))
    if isinstance(x, (float, np.floating)):
        return f"{float(x):.{nd}f}" if math.isfinite(float(x)) else _e(x)
    return _e(x)


def _num_or_dash(x, nd: int = 2) -> str:
    return _fmt_num(x, nd) if x is not None else _DASH


def _table(css_class: str, rows: list[tuple[str, object]], nd: int = 2) -> str:
    """A two-column ``<table>`` of (label, number) rows; a missing number shows as a dash."""
    body = "".join(f"<tr><th>{_e(k)}</th><td class=\"num\">{_num_or_dash(v, nd)}</td></tr>\n" for k, v in rows)
    return f"<table class=\"{css_class}\">\n{body}</table>\n"


# --- reading the report ------------------------------------------------------------------------

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


def _find_panel(base: Path, name: str) -> str | None:
    """File name of the frame's panel in ``base`` (``<name>.jpg``, ``.png`` or ``.jpeg``), or None."""
    for ext in ("jpg", "png", "jpeg"):
        if (base / f"{name}.{ext}").is_file():
            return f"{name}.{ext}"
    return None


# --- sections -------------------------------------------------------------------------------------

def _head(title: str, report: dict) -> str:
    out = ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
           f"<title>mannequin report: {_e(title)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n"
           f"<h1>mannequin report: {_e(title)}</h1>\n")
    if report.get("input") and report.get("input") != title:
        out += f"<p class=\"muted\">input: {_e(report['input'])}</p>\n"
    if report.get("poses"):
        out += f"<p class=\"muted\">poses: {_e(report['poses'])}</p>\n"
    return out


def _verdict_section(report: dict) -> str:
    verdict, reasons = _verdict(report)
    out = f"<p>verdict: <span class=\"verdict {verdict}\" id=\"verdict\">{_e(verdict)}</span></p>\n"
    if reasons:
        out += "<ul class=\"reasons\">\n" + "".join(f"<li>{_e(r)}</li>\n" for r in reasons) + "</ul>\n"
    return out


def _counts_section(report: dict, frames: list[dict]) -> str:
    """Frames total, registered, kept and dropped: from ``counts`` (or the report's top level), else the rows."""
    counts = dict(report.get("counts") or {})
    total = counts.get("frames", counts.get("total", report.get("frames_total", len(frames) or None)))
    n_kept = counts.get("kept", sum(1 for f in frames if f.get("kept")) if frames else None)
    n_dropped = counts.get("dropped", (total - n_kept) if (total is not None and n_kept is not None
                                                          and isinstance(total, int)) else None)
    rows = [("frames total", total), ("registered", counts.get("registered", report.get("registered"))),
            ("kept", n_kept), ("dropped", n_dropped)]
    return "<h2>Counts</h2>\n" + _table("counts", rows)


def _camera_section(stages: dict) -> str:
    """The sfm stage's camera: focal, reprojection error, triangulation angle, rolling shutter."""
    sfm = stages.get("sfm")
    if not (isinstance(sfm, dict) and sfm.get("focal_px") is not None):
        return ""
    rows = [("focal (px)", sfm.get("focal_px")), ("reprojection error (px)", sfm.get("reprojection_error_px")),
            ("median triangulation angle (°)", sfm.get("median_triangulation_deg")),
            ("rolling-shutter readout (ms, 0 = none)", sfm.get("rolling_shutter_readout_ms"))]
    return "<h2>Camera</h2>\n" + _table("camera", rows)


def _stereo_section(stages: dict) -> str:
    """The matching window (the base one, or a larger one for blurred footage) and the fuse noise and test."""
    stereo, fuse = stages.get("stereo"), stages.get("fuse")
    if not (isinstance(stereo, dict) and stereo.get("window") is not None):
        return ""
    agree = stereo.get("window_agreement") or {}
    tried = ", ".join(f"{k} px: {100 * float(a):.1f}%" for k, a in sorted(agree.items(), key=lambda kv: int(kv[0])))
    out = ["<h2>Stereo</h2>\n<table class=\"stereo\">\n",
           f"<tr><th>matching window (px)</th><td class=\"num\">{_fmt_num(stereo['window'])}</td></tr>\n"]
    if tried:
        out.append(f"<tr><th>probe pixels agreeing with a neighbour</th><td>{_e(tried)}</td></tr>\n")
    if isinstance(fuse, dict) and fuse.get("depth_noise_rel") is not None:
        noise = _fmt_num(100 * float(fuse["depth_noise_rel"]))
        out.append(f"<tr><th>depth noise between frames (%)</th><td class=\"num\">{noise}</td></tr>\n")
        out.append(f"<tr><th>no-evidence band of the fuse votes (%)</th><td class=\"num\">"
                   f"{_fmt_num(100 * float(fuse.get('noise_band_rel') or 0))}</td></tr>\n")
    if isinstance(fuse, dict) and fuse.get("rel_depth") is not None:
        out.append(f"<tr><th>fuse agreement test</th><td>within {_fmt_num(100 * float(fuse['rel_depth']))}% "
                   f"from {_e(fuse.get('min_views'))} views</td></tr>\n")
    if isinstance(fuse, dict) and fuse.get("moving_rel") is not None:
        out.append(f"<tr><th>moving-people mask</th><td>labelled regions 2 views contradict by more than "
                   f"{_fmt_num(100 * float(fuse['moving_rel']))}%: "
                   f"{_fmt_num(100 * float(fuse.get('mean_moving_fraction') or 0))}% of the pixels</td></tr>\n")
    out.append("</table>\n")
    return "".join(out)


def _stages_section(stages: dict) -> str:
    """Wall time, peak memory and skipped flag per stage, and the total time of the stages that ran."""
    out = ["<h2>Stages</h2>\n<table class=\"stages\">\n<tr><th>stage</th><th>wall time (s)</th>"
           "<th>peak memory (MB)</th><th>skipped</th></tr>\n"]
    tot_s = 0.0
    for stage, info in stages.items():
        info = info if isinstance(info, dict) else {}
        sec = info.get("seconds")
        if isinstance(sec, (int, float)) and not info.get("skipped"):
            tot_s += float(sec)
        out.append(f"<tr><td>{_e(stage)}</td><td class=\"num\">{_num_or_dash(sec)}</td>"
                   f"<td class=\"num\">{_num_or_dash(info.get('peak_mb'), 1)}</td>"
                   f"<td>{'yes' if info.get('skipped') else 'no'}</td></tr>\n")
    if stages:
        out.append(f"<tr><th>total (run)</th><td class=\"num\">{tot_s:.2f}</td><td></td><td></td></tr>\n")
    out.append("</table>\n")
    return "".join(out)


def _accuracy_section(ev) -> str:
    """The ``eval`` metrics: a table of the clip's scalars, or the JSON when it is not a dict."""
    if not ev:
        return ""
    out = ["<h2>Accuracy</h2>\n"]
    clip = ev.get("clip", ev) if isinstance(ev, dict) else None
    if isinstance(clip, dict):
        out.append("<table class=\"eval\">\n")
        for k, v in clip.items():
            if isinstance(v, (dict, list)):
                continue
            out.append(f"<tr><th>{_e(k)}</th><td class=\"num\">{_fmt_num(v, 4)}</td></tr>\n")
        out.append("</table>\n")
    else:
        out.append(f"<pre>{_e(json.dumps(ev, indent=2, default=str))}</pre>\n")
    return "".join(out)


def _config_section(report: dict) -> str:
    if report.get("config") is None:
        return ""
    cfg = json.dumps(report["config"], indent=2, sort_keys=True, default=str)
    return (f"<h2>Config</h2>\n<details><summary>config (hash {_e(report.get('config_hash', ''))})</summary>\n"
            f"<pre>{_e(cfg)}</pre>\n</details>\n")


def _contact_sheet_section(thumbs_base: Path, thumbnails_dir_rel: str) -> str:
    out = "<h2>Contact sheet</h2>\n"
    if (thumbs_base / "contact_sheet.png").is_file():
        src = _href(thumbnails_dir_rel, "contact_sheet.png")
        return out + f"<p><a href=\"{src}\"><img class=\"sheet\" src=\"{src}\" alt=\"contact sheet\"></a></p>\n"
    return out + "<p class=\"muted\">no contact sheet</p>\n"


def _frame_row(f: dict, thumbs_base: Path, thumbnails_dir_rel: str) -> str:
    """One ``<tr>``: name, valid %, kept, reason and the panel's thumbnail (linked) when it exists."""
    name = str(f.get("name", ""))
    vf = f.get("valid_fraction")
    try:
        vf_s = f"{100 * float(vf):.1f}" if vf is not None and vf != "" else _DASH
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
        thumb = f"<span class=\"muted\">{_DASH}</span>"
    return (f"<tr><td>{_e(name)}</td><td class=\"num\">{vf_s}</td><td>{kept_s}</td>"
            f"<td>{_e(f.get('reason') or '')}</td><td>{thumb}</td></tr>\n")


def _frames_section(frames: list[dict], thumbs_base: Path, thumbnails_dir_rel: str) -> str:
    return (f"<h2>Frames ({len(frames)})</h2>\n<table class=\"frames\">\n<tr><th>name</th><th>valid %</th>"
            "<th>kept</th><th>reason</th><th>panel</th></tr>\n"
            + "".join(_frame_row(f, thumbs_base, thumbnails_dir_rel) for f in frames)
            + "</table>\n")


# --- the report -----------------------------------------------------------------------------------

def write_report_html(path: str | Path, report: dict, frames: list[dict], *, thumbnails_dir_rel: str = ".") -> Path:
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
    stages = report.get("stages") or {}
    sections = [
        _head(title, report),
        _verdict_section(report),
        _counts_section(report, frames),
        _camera_section(stages),
        _stereo_section(stages),
        _stages_section(stages),
        _accuracy_section(report.get("eval")),
        _config_section(report),
        _contact_sheet_section(thumbs_base, thumbnails_dir_rel),
        _frames_section(frames, thumbs_base, thumbnails_dir_rel),
        "</body>\n</html>\n",
    ]
    return write_text(path, "".join(sections))
