"""Stage ``fuse``: raw depth → filtered labels, frame QC, moving-people masks and ``fused.ply``.

Per frame: confidence threshold, removal of the near-side rims of depth edges (foreground
fattening), multi-view geometric consistency against the frame's
neighbours (:mod:`mannequin.consistency`, pure), removal of pixels that consistently disagree
(moving people: ``WS/labels/<name>.dynamic.png``) and of pixels that other views see through
(free-space violations), speckle removal, then QC (the share of
labelled pixels).  The labelled points of every frame are fused into an open3d point cloud,
voxel-downsampled and cleaned of statistical outliers.
Outputs: ``WS/labels/<name>.npy`` (float32, 0 = no label), ``<name>.conf.npy``,
``<name>.dynamic.png``, ``WS/labels/qc.json`` and ``WS/fused.ply``.
"""
from __future__ import annotations

import json
import logging
from collections import OrderedDict
from pathlib import Path

import numpy as np

from .config import FuseConfig
from .consistency import (
    consistency_votes,
    depth_to_points,
    dynamic_mask,
    erode_depth_edges,
    free_space_mask,
    remove_speckles,
    votes_to_depth,
)
from .errors import InputError
from .views import sparse_geometry
from .workspace import Workspace, atomic_path, save_image, save_npy, write_json

log = logging.getLogger("mannequin.fusion")


class _LRU(OrderedDict):
    """A tiny least-recently-used cache so memory stays flat on long clips."""

    def __init__(self, loader, size):
        super().__init__()
        self.loader, self.size = loader, size

    def get(self, key):
        if key in self:
            self.move_to_end(key)
            return self[key]
        value = self.loader(key)
        self[key] = value
        if len(self) > self.size:
            self.popitem(last=False)
        return value


def neighbours_for(names, views: dict, name: str, n: int) -> list:
    """The frame's stereo sources first, then the nearest frames in sequence, up to ``n``."""
    out = [s for s in views.get(name, {}).get("sources", []) if s in names and s != name][:n]
    i = names.index(name)
    for k in range(1, len(names)):
        for j in (i - k, i + k):
            if len(out) >= n:
                return out
            if 0 <= j < len(names) and names[j] not in out:
                out.append(names[j])
    return out


def run_fuse(ws: Workspace, cfg: FuseConfig, *, progress: bool = False) -> dict:
    """Filter every raw depth map of ``ws`` into labels and fuse them; returns counts for the report."""
    import pycolmap
    from tqdm import tqdm

    from .stereo import load_image

    rec = pycolmap.Reconstruction(str(ws.sparse_dir))
    geo = sparse_geometry(rec)
    names = [n for n in geo.names if ws.depth_path(Path(n).stem).exists()]
    if not names:
        raise InputError(f"{ws.depth_dir}: no depth maps (run 'mannequin stereo {ws.root}' first)")
    views_path = ws.stereo_dir / "views.json"
    views = json.loads(views_path.read_text()) if views_path.exists() else {}
    index = {n: k for k, n in enumerate(geo.names)}
    E = {}
    for n in names:
        M = np.eye(4)
        M[:3, :3], M[:3, 3] = geo.R[index[n]], geo.t[index[n]]
        E[n] = M

    def load(name):
        stem = Path(name).stem
        d = np.load(ws.depth_path(stem))
        c = np.load(ws.conf_path(stem))
        d = np.where(c >= cfg.min_confidence, d, 0).astype(np.float32)
        return d, c

    cache = _LRU(load, 2 * cfg.n_neighbors + 2)
    ws.labels_dir.mkdir(parents=True, exist_ok=True)
    qc, clouds, colours = [], [], []
    rng = np.random.default_rng(0)
    bar = tqdm(names, desc="fuse", unit="frame", disable=not progress, dynamic_ncols=True)
    for name in bar:
        stem = Path(name).stem
        depth, conf = cache.get(name)
        nbs = neighbours_for(names, views, name, cfg.n_neighbors)
        neighbours = [(cache.get(s)[0], geo.K[index[s]], E[s]) for s in nbs]
        votes = consistency_votes(depth, geo.K[index[name]], E[name], neighbours,
                                  max_rel_depth=cfg.rel_depth, max_reproj_px=cfg.reproj_px)
        filtered = votes_to_depth(depth, votes, min_views=cfg.min_views, average=cfg.average)
        if cfg.edge_px > 0:
            # the near side of depth edges (foreground fattening) gets no label; the neighbours
            # keep their rims for the check, so moving people stay visible to the dynamic mask
            filtered[erode_depth_edges(depth, cfg.edge_px, cfg.edge_rel) <= 0] = 0
        # Moving people: sources see *through* the claimed surface (or the round trip fails);
        # ordinary occlusions (something in front in the source) are not evidence of motion.
        dyn = dynamic_mask(votes.n_agree, votes.n_behind + votes.n_other,
                           votes.n_agree + votes.n_behind + votes.n_other,
                           min_checked=min(3, len(neighbours)))
        filtered[dyn] = 0
        if cfg.max_behind_frac >= 0:
            filtered[free_space_mask(votes, cfg.max_behind_frac)] = 0
        if cfg.speckle_px > 0:
            filtered = remove_speckles(filtered, cfg.speckle_px)
        label = filtered.astype(np.float32)
        valid = float((label > 0).mean())
        kept = valid >= cfg.min_valid_fraction
        reason = "" if kept else f"valid fraction {valid:.2f} < {cfg.min_valid_fraction:.2f}"
        save_npy(ws.labels_dir / f"{stem}.conf.npy", np.where(label > 0, conf, 0).astype(np.float32))
        save_image(ws.labels_dir / f"{stem}.dynamic.png", (dyn * 255).astype(np.uint8))
        save_npy(ws.label_path(stem), label)  # the label last: it marks the frame done
        qc.append({"name": stem, "valid_fraction": round(valid, 4), "kept": kept, "reason": reason,
                   "dynamic_fraction": round(float(dyn.mean()), 4)})
        if kept:
            # Subsample the points of each frame so the cloud stays small on long clips.
            pts, col = depth_to_points(label, geo.K[index[name]], E[name],
                                       colors=load_image(ws.images_dir / name))
            take = rng.random(len(pts)) < min(1.0, 60000 / max(len(pts), 1))
            clouds.append(pts[take].astype(np.float32))
            colours.append(col[take])
    write_json(ws.labels_dir / "qc.json", qc)
    n_points = _write_cloud(ws.fused_ply, clouds, colours, cfg, geo)
    return {"frames": len(qc), "kept": sum(q["kept"] for q in qc), "fused_points": n_points,
            "mean_valid_fraction": round(float(np.mean([q["valid_fraction"] for q in qc])), 4)}


def _write_cloud(path: Path, clouds, colours, cfg: FuseConfig, geo) -> int:
    """Voxel-downsample, remove statistical outliers and write a PLY atomically; returns points."""
    import open3d as o3d

    pcd = o3d.geometry.PointCloud()
    if clouds:
        pts = np.concatenate(clouds).astype(np.float64)
        pcd.points = o3d.utility.Vector3dVector(pts)
        pcd.colors = o3d.utility.Vector3dVector(np.concatenate(colours).astype(np.float64)[:, :3] / 255.0)
        scene = float(np.median(np.linalg.norm(pts - np.median(geo.centers, axis=0), axis=1)))
        pcd = pcd.voxel_down_sample(max(cfg.voxel_size * scene, 1e-9))
        if len(pcd.points) > 50:
            pcd, _ = pcd.remove_statistical_outlier(nb_neighbors=20, std_ratio=2.0)
    with atomic_path(path) as tmp:
        if len(pcd.points) == 0:  # open3d refuses to write an empty cloud; a valid empty PLY says it all
            tmp.write_text("ply\nformat ascii 1.0\nelement vertex 0\nproperty float x\nproperty float y\n"
                           "property float z\nend_header\n")
            return 0
        ply = tmp.with_name(tmp.name + ".ply")
        if not o3d.io.write_point_cloud(str(ply), pcd, write_ascii=False):
            raise OSError(f"{path}: open3d could not write the point cloud")
        ply.rename(tmp)
    return len(pcd.points)
