"""Stage ``labels``: exports of the filtered depth, the clip verdict, previews and report.html.

Reads ``WS/labels/<name>.npy`` and ``WS/labels/qc.json`` (stage fuse) and writes:
``WS/labels/<name>.png`` (uint16, depth × scale, 0 = no label), ``WS/labels/index.csv``
(name, valid_fraction, kept, reason, png_scale, clip_verdict), COLMAP depth and normal maps under
``WS/stereo/depth_maps`` and ``WS/stereo/normal_maps`` (``<image>.photometric.bin`` = raw sweep,
``<image>.geometric.bin`` = labels) so that COLMAP's ``stereo_fusion`` and viewers read them,
and the previews in ``WS/preview/``.
"""
from __future__ import annotations

import csv
import io
import logging
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from mannequin.config import LabelsConfig, worker_threads
from mannequin.errors import InputError
from mannequin.result import StageResult
from mannequin.workspace import Workspace, check_maps, prune_frames, read_json_object, read_json_or_empty, save_image, write_text

log = logging.getLogger("mannequin.labels.stage")

INDEX_COLUMNS = ["name", "valid_fraction", "kept", "reason", "png_scale", "clip_verdict"]


def depth_normals(depth: np.ndarray, K: np.ndarray) -> np.ndarray:
    """Unit normals (H, W, 3) float32 in camera coordinates from a depth map (H, W), facing the camera.

    Central differences of the back-projected points (pixel centres at +0.5); pixels without a
    full neighbourhood (a 0 among their 4 neighbours, or the image border) get (0, 0, -1).
    """
    depth = np.asarray(depth, np.float32)
    h, w = depth.shape
    n = np.zeros((h, w, 3), np.float32)
    n[..., 2] = -1
    if h < 3 or w < 3:
        return n
    fx, fy, cx, cy = (np.float32(v) for v in (K[0, 0], K[1, 1], K[0, 2], K[1, 2]))
    xs = ((np.arange(w, dtype=np.float32) + np.float32(0.5)) - cx) / fx  # (W,)
    ys = ((np.arange(h, dtype=np.float32) + np.float32(0.5)) - cy) / fy  # (H,)
    X, Y = depth * xs[None, :], depth * ys[:, None]
    # dx = P(v, u+1) - P(v, u-1), dy = P(v+1, u) - P(v-1, u) on the inner (H-2, W-2) pixels
    ax, ay, az = (a[1:-1, 2:] - a[1:-1, :-2] for a in (X, Y, depth))
    bx, by, bz = (a[2:, 1:-1] - a[:-2, 1:-1] for a in (X, Y, depth))
    cx_, cy_, cz_ = ay * bz - az * by, az * bx - ax * bz, ax * by - ay * bx
    norm = np.sqrt(cx_ * cx_ + cy_ * cy_ + cz_ * cz_)
    valid = (depth[1:-1, 2:] > 0) & (depth[1:-1, :-2] > 0) & (depth[2:, 1:-1] > 0) & (depth[:-2, 1:-1] > 0)
    valid &= norm > 0
    sign = np.where(cz_ > 0, np.float32(-1), np.float32(1)) / np.where(valid, norm, np.float32(1))
    inner = n[1:-1, 1:-1]
    for k, c in enumerate((cx_, cy_, cz_)):
        inner[..., k] = np.where(valid, c * sign, inner[..., k])
    return n


def clip_verdict(qc: list[dict], sfm_summary: dict, min_kept_frames: int) -> tuple[str, list[str]]:
    """``("accepted" | "rejected", reasons)`` for the clip: kept frames, registration and parallax.

    qc: the fuse stage's rows (``kept`` read); sfm_summary: ``WS/sfm/summary.json`` (``registered_fraction``,
    ``median_triangulation_deg`` and ``mode`` read, each optional).  Rejected when fewer than
    ``min_kept_frames`` frames are kept, under 90% of the frames are registered, or an SfM
    reconstruction's median triangulation angle is under 2°.
    """
    reasons = []
    kept = sum(1 for q in qc if q["kept"])
    if kept < min_kept_frames:
        reasons.append(f"only {kept} frames kept (< {min_kept_frames})")
    frac = sfm_summary.get("registered_fraction")
    if frac is not None and frac < 0.9:
        reasons.append(f"low registration: {frac:.0%} of frames")
    angle = sfm_summary.get("median_triangulation_deg")
    if angle is not None and sfm_summary.get("mode") == "sfm" and angle < 2.0:
        reasons.append(f"low parallax: median triangulation angle {angle:.1f}°")
    return ("rejected" if reasons else "accepted"), reasons


def _read_frames(ws: Workspace) -> tuple[list[dict], dict[str, tuple[str, np.ndarray]]]:
    """The fuse stage's qc rows and, per frame stem, its (image name, K (3, 3)) in the sparse model.

    Raises :class:`InputError` when qc.json is missing or not this workspace's frame list, or a
    label map is unreadable, of the wrong size, or holds NaN or inf.
    """
    from mannequin.stereo import sparse_geometry

    qc_path = ws.labels_dir / "qc.json"
    if not qc_path.exists():
        raise InputError(f"{qc_path}: missing (run 'mannequin fuse {ws.root}' first)")
    qc = read_json_object(qc_path)
    geo = sparse_geometry(ws.read_sparse())
    Ks = {Path(n).stem: (n, geo.K[k]) for k, n in enumerate(geo.names)}
    sizes = {Path(n).stem: (geo.sizes[k][1], geo.sizes[k][0]) for k, n in enumerate(geo.names)}
    if not isinstance(qc, list) or not all(isinstance(q, dict) and q.get("name") in Ks for q in qc):
        raise InputError(f"{qc_path}: not the frame list of this workspace; run 'mannequin fuse {ws.root}' again")
    check_maps([ws.label_path(q["name"]) for q in qc], [sizes[q["name"]] for q in qc])
    return qc, Ks


def _png_scale(ws: Workspace, qc: list[dict], png_max: int) -> float:
    """PNG value per depth unit: the clip's largest label depth maps to ``png_max`` (1.0 when all are 0)."""
    maxima = [float(np.load(ws.label_path(q["name"]), mmap_mode="r").max()) for q in qc]
    bad = [q["name"] for q, m in zip(qc, maxima, strict=False) if not np.isfinite(m)]
    if bad:
        raise InputError(f"{ws.label_path(bad[0])}: holds NaN or inf; run 'mannequin fuse {ws.root}' again")
    top = max(maxima + [0.0])
    return float(png_max / top) if top > 0 else 1.0


def run_labels(ws: Workspace, cfg: LabelsConfig, *, min_kept_frames: int, progress: bool = False) -> StageResult:
    """Write label PNGs, index.csv, COLMAP maps and previews.

    cfg: the ``labels`` section of the config.  min_kept_frames: the clip is rejected with fewer
    kept frames (``fuse.min_kept_frames``).  Returns a :class:`~mannequin.result.StageResult`
    (output ``ws.labels_dir``) whose report holds the frame counts, the PNG scale and the clip's
    verdict with its reasons.
    """
    from tqdm import tqdm

    qc, Ks = _read_frames(ws)
    scale = _png_scale(ws, qc, cfg.png_max)
    verdict, reasons = clip_verdict(qc, read_json_or_empty(ws.sfm_dir / "summary.json"), min_kept_frames)
    dm_dir, nm_dir = ws.stereo_dir / "depth_maps", ws.stereo_dir / "normal_maps"
    if cfg.colmap_maps:
        dm_dir.mkdir(parents=True, exist_ok=True)
        nm_dir.mkdir(parents=True, exist_ok=True)

    def export(q):
        stem = q["name"]
        label = np.load(ws.label_path(stem))
        save_image(ws.labels_dir / f"{stem}.png", np.round(label * scale).clip(0, 65535).astype(np.uint16))
        image_name, K = Ks[stem]
        if cfg.colmap_maps:
            raw = np.load(ws.depth_path(stem))
            for kind, d in (("photometric", raw), ("geometric", label)):
                _write_colmap_maps(dm_dir / f"{image_name}.{kind}.bin", nm_dir / f"{image_name}.{kind}.bin", d, K)
        return {"name": stem, "image_path": ws.images_dir / image_name, "raw_path": ws.depth_path(stem),
                "label_path": ws.label_path(stem), "dynamic_path": ws.labels_dir / f"{stem}.dynamic.png",
                "caption": f"{stem} {q['valid_fraction']:.0%}"}

    # Frames are independent and the work (zlib, numpy, file writes) mostly releases the GIL:
    # one thread per core.  map() keeps the frame order.
    with ThreadPoolExecutor(max_workers=worker_threads()) as pool:
        items = list(tqdm(pool.map(export, qc), total=len(qc), desc="labels", unit="frame",
                          disable=not progress, dynamic_ncols=True))
    stems = [q["name"] for q in qc]
    for folder in (dm_dir, nm_dir):
        prune_frames(folder, stems, (".png.photometric.bin", ".png.geometric.bin"))
    if cfg.previews:
        _previews(ws, items, progress)
    # Stale panels of frames no longer in the clip, and eval plots of the previous labels.
    prune_frames(ws.preview_dir, stems, (".jpg", ".png"), protect=("contact_sheet.png",))
    # The index last: with it the label PNGs and previews are all there.
    write_text(ws.labels_dir / "index.csv", _index_csv(qc, scale, verdict, reasons))
    return StageResult("labels", ws.labels_dir, {"frames": len(qc), "kept": sum(q["kept"] for q in qc),
                                                 "png_scale": scale, "verdict": verdict, "reasons": reasons})


def _index_csv(qc: list[dict], scale: float, verdict: str, reasons: list[str]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(INDEX_COLUMNS)
    v = verdict if not reasons else f"{verdict}: " + "; ".join(reasons)
    for q in qc:
        w.writerow([q["name"], f"{q['valid_fraction']:.4f}", "true" if q["kept"] else "false", q["reason"],
                    repr(scale), v])
    return buf.getvalue()


def read_index(path: str | Path) -> list[dict]:
    """Rows of index.csv as dicts (valid_fraction and png_scale as floats, kept as bool)."""
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    for r in rows:
        r["valid_fraction"] = float(r["valid_fraction"])
        r["png_scale"] = float(r["png_scale"])
        r["kept"] = r["kept"] == "true"
    return rows


def _write_colmap_maps(depth_path: Path, normal_path: Path, depth: np.ndarray, K: np.ndarray) -> None:
    import pycolmap

    from mannequin.workspace import atomic_path

    valid = depth[depth > 0]
    lo, hi = (float(np.percentile(valid, 1)), float(np.percentile(valid, 99))) if valid.size else (0.0, 1.0)
    with atomic_path(depth_path) as tmp:
        pycolmap.DepthMap.from_array(depth.astype(np.float32), lo, hi).write(str(tmp))
    with atomic_path(normal_path) as tmp:
        pycolmap.NormalMap.from_array(depth_normals(depth, K).astype(np.float32)).write(str(tmp))


def _previews(ws: Workspace, items: list[dict], progress: bool) -> None:
    """The preview panels and contact sheet of the exported frames (one frame in memory at a time)."""
    from mannequin.io.images import load_image
    from mannequin.labels.panels import write_previews

    def gen():
        for it in items:
            dyn = None
            if it["dynamic_path"].exists():
                import imageio.v3 as iio

                dyn = iio.imread(it["dynamic_path"]) > 0
            yield {"name": it["name"], "image": load_image(it["image_path"]), "raw_depth": np.load(it["raw_path"]),
                   "label": np.load(it["label_path"]), "dynamic": dyn, "caption": it["caption"]}

    write_previews(ws.preview_dir, gen(), progress=progress, total=len(items))


def write_report_html(ws: Workspace) -> Path:
    """``WS/preview/report.html`` from report.json and index.csv (counts, verdict, timings, thumbnails)."""
    from mannequin.labels import report as html_report

    report = read_json_or_empty(ws.report_json)
    report.setdefault("name", ws.root.name)
    frames = read_index(ws.labels_dir / "index.csv") if (ws.labels_dir / "index.csv").exists() else []
    return html_report.write_report_html(ws.preview_dir / "report.html", report, frames)
