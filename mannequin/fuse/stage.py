"""Stage ``fuse``: raw depth → filtered labels, frame QC, moving-people masks and ``fused.ply``.

Per frame: confidence threshold, removal of the near-side rims of depth edges (foreground
fattening), multi-view geometric consistency against the frame's
neighbours (:mod:`mannequin.fuse.consistency`, pure), removal of labelled regions that other
frames contradict far beyond the depth noise (moving people: ``WS/labels/<name>.dynamic.png``,
:func:`mannequin.fuse.cleanup.moving_mask`) and of pixels that other views see through
(free-space violations), speckle removal, then QC (the share of
labelled pixels).  The labelled points of every frame are fused into a voxel grid as the frames
go by (:class:`VoxelAccumulator`: memory bounded by the scene, not the clip length), then written as
an open3d point cloud cleaned of statistical outliers.
Outputs: ``WS/labels/<name>.npy`` (float32, 0 = no label), ``<name>.conf.npy``,
``<name>.dynamic.png``, ``WS/labels/qc.json`` and ``WS/fused.ply``.
"""
from __future__ import annotations

import dataclasses
import logging
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mannequin.config import FuseConfig
from mannequin.errors import InputError
from mannequin.fuse.cleanup import erode_depth_edges, free_space_mask, moving_mask, remove_speckles
from mannequin.fuse.consistency import Votes, consistency_votes, depth_noise, depth_to_points, votes_to_depth
from mannequin.result import StageResult
from mannequin.stereo.views import neighbours_for, sparse_geometry, world_to_camera
from mannequin.workspace import (
    Workspace,
    atomic_path,
    check_maps,
    prune_frames,
    read_json_object,
    save_image,
    save_npy,
    write_json,
)

log = logging.getLogger("mannequin.fuse.stage")

#: Frame pairs whose disagreement measures the clip's depth noise (those of the stereo window choice).
NOISE_PROBES = 3


class _LRU:
    """A tiny least-recently-used cache of ``loader(key)`` values, so memory stays flat on long clips."""

    def __init__(self, loader: Callable[[Any], Any], size: int):
        self.loader, self.size = loader, size
        self.items: OrderedDict = OrderedDict()

    def get(self, key: Any) -> Any:
        """``loader(key)``, loaded once while among the ``size`` most recently used keys."""
        if key in self.items:
            self.items.move_to_end(key)
            return self.items[key]
        value = self.loader(key)
        self.items[key] = value
        if len(self.items) > self.size:
            self.items.popitem(last=False)
        return value


class VoxelAccumulator:
    """Running voxel-grid average of coloured points: the streaming equivalent of
    ``open3d.geometry.PointCloud.voxel_down_sample``.

    Points are added a frame at a time; each voxel (edge ``voxel`` in world units, cells
    ``floor(X / voxel)``) keeps the sum of its points, of their colours and their count, so the
    result (the mean point and colour of each occupied voxel) does not depend on the order of
    the frames, and memory stays O(occupied voxels + ``flush_points``) however long the clip.
    Points farther than ``2**20`` voxels from the origin on any axis (over a thousand scene radii
    at the default voxel) are dropped.
    """

    _BITS = 21
    _HALF = 1 << 20

    def __init__(self, voxel: float, flush_points: int = 1_000_000):
        if not voxel > 0:
            raise ValueError(f"VoxelAccumulator: voxel must be > 0, got {voxel}")
        self.voxel, self.flush_points = float(voxel), int(flush_points)
        self._keys = np.zeros(0, np.int64)
        self._sums = np.zeros((0, 7), np.float64)  # x, y, z, r, g, b, count
        self._pending: list = []
        self._n_pending = 0

    def add(self, points: np.ndarray, colours: np.ndarray) -> None:
        """points: (N, 3) world coordinates; colours: (N, 3) uint8 (or any 0-255 values)."""
        points = np.asarray(points, np.float64).reshape(-1, 3)
        colours = np.asarray(colours, np.float64)
        colours = colours.reshape(len(colours), -1)[:, :3] if colours.ndim > 1 else colours.reshape(-1, 3)
        if len(points) != len(colours):
            raise ValueError(f"VoxelAccumulator.add: {len(points)} points but {len(colours)} colours")
        cells = np.floor(points / self.voxel)
        ok = np.all(np.abs(cells) < self._HALF, axis=1) & np.all(np.isfinite(points), axis=1)
        cells = cells[ok].astype(np.int64) + self._HALF
        keys = (cells[:, 0] << (2 * self._BITS)) | (cells[:, 1] << self._BITS) | cells[:, 2]
        rows = np.concatenate([points[ok], colours[ok], np.ones((len(keys), 1))], axis=1)
        self._pending.append((keys, rows))
        self._n_pending += len(keys)
        if self._n_pending >= self.flush_points:
            self._flush()

    def _flush(self) -> None:
        if not self._pending:
            return
        keys = np.concatenate([self._keys] + [k for k, _ in self._pending])
        rows = np.concatenate([self._sums] + [r for _, r in self._pending])
        self._pending, self._n_pending = [], 0
        self._keys, inverse = np.unique(keys, return_inverse=True)
        sums = np.zeros((len(self._keys), rows.shape[1]), np.float64)
        for c in range(rows.shape[1]):
            sums[:, c] = np.bincount(inverse.ravel(), weights=rows[:, c], minlength=len(self._keys))
        self._sums = sums

    def __len__(self) -> int:
        self._flush()
        return len(self._keys)

    def result(self) -> tuple[np.ndarray, np.ndarray]:
        """(points (M, 3) float64, colours (M, 3) float64 in [0, 1]): each voxel's mean, sorted by cell."""
        self._flush()
        n = self._sums[:, 6:7]
        return self._sums[:, :3] / n, self._sums[:, 3:6] / n / 255.0


def filter_from_votes(depth: np.ndarray, votes: Votes, cfg: FuseConfig,
                      n_neighbours: int) -> tuple[np.ndarray, np.ndarray]:
    """The label of one frame from its raw depth and its consistency votes (pure, no I/O).

    ``depth`` (H, W) float32: the raw depth with the confidence threshold already applied (0 =
    none); ``votes``: :func:`mannequin.fuse.consistency.consistency_votes` of it against its
    ``n_neighbours`` neighbours with ``cfg.rel_depth`` / ``cfg.reproj_px`` (and, for the
    moving-people mask, ``motion_rel`` = :func:`motion_rel`; without it the mask is empty).  Applies
    ``cfg.min_views`` (and ``average``), the depth-edge rims, the moving-people mask, the
    free-space check and the speckle removal, as the ``fuse`` stage does.
    Returns ``(label (H, W) float32 in depth units, 0 = none; dynamic (H, W) bool)``.
    """
    filtered = votes_to_depth(depth, votes, min_views=cfg.min_views, average=cfg.average)
    if cfg.edge_px > 0:
        # the near side of depth edges (foreground fattening) gets no label; the neighbours
        # keep their rims for the check, so moving people stay visible to the dynamic mask
        filtered[erode_depth_edges(depth, cfg.edge_px, cfg.edge_rel) <= 0] = 0
    # Moving people: depths that hold in their own frame, contradicted by other frames, in regions
    dyn = moving_mask(votes.n_agree, votes.n_moved, min_views=cfg.min_views,
                      min_moved=min(cfg.moving_views, max(n_neighbours, 1)),
                      window_px=2 * int(round(cfg.moving_window * depth.shape[1] / 2)) + 1,
                      min_share=cfg.moving_share)
    filtered[dyn] = 0
    if cfg.max_behind_frac >= 0:
        filtered[free_space_mask(votes, cfg.max_behind_frac)] = 0
    if cfg.speckle_px > 0:
        filtered = remove_speckles(filtered, cfg.speckle_px)
    return filtered.astype(np.float32), dyn


def run_fuse(ws: Workspace, cfg: FuseConfig, *, progress: bool = False) -> StageResult:
    """Filter every raw depth map of ``ws`` into labels and fuse them.

    Reads ``WS/sparse``, ``WS/depth/<name>.npy`` and ``.conf.npy`` and ``WS/stereo/views.json``;
    writes the outputs listed in the module docstring.  Returns a
    :class:`~mannequin.result.StageResult` (output ``ws.labels_dir``) whose report holds the frame
    counts, the fused point count and the agreement test used.  Raises :class:`InputError` when the
    stereo outputs are missing or malformed.
    """
    from tqdm import tqdm

    clip = _open_clip(ws, cfg)
    ws.labels_dir.mkdir(parents=True, exist_ok=True)
    qc = []
    cloud = VoxelAccumulator(max(cfg.voxel_size * _scene_scale(clip.geo), 1e-9))
    rng = np.random.default_rng(0)
    noise, band = clip_noise_band(clip.names, clip.views, clip.index, clip.geo, clip.E, clip.cache, cfg)
    fcfg = _adapt_and_log(cfg, noise, band)
    motion = motion_rel(cfg, noise)
    bar = tqdm(clip.names, desc="fuse", unit="frame", disable=not progress, dynamic_ncols=True)
    for name in bar:
        row, label = _fuse_frame(ws, clip, name, cfg, fcfg, band, motion)
        if row["kept"]:
            _add_to_cloud(cloud, rng, ws, clip, name, label)
        qc.append(row)
    prune_frames(ws.labels_dir, [q["name"] for q in qc], (".conf.npy", ".dynamic.png", ".npy", ".png"))
    write_json(ws.labels_dir / "qc.json", qc)
    n_points = _write_cloud(ws.fused_ply, cloud)
    return StageResult("fuse", ws.labels_dir, {
        "frames": len(qc), "kept": sum(q["kept"] for q in qc), "fused_points": n_points,
        "mean_valid_fraction": round(float(np.mean([q["valid_fraction"] for q in qc])), 4),
        "depth_noise_rel": round(noise, 5) if np.isfinite(noise) else None, "noise_band_rel": round(band, 5),
        "rel_depth": fcfg.rel_depth, "min_views": fcfg.min_views, "moving_rel": round(motion, 5),
        "mean_moving_fraction": round(float(np.mean([q["dynamic_fraction"] for q in qc])), 4)})


@dataclass
class _Clip:
    """What the fuse stage reads of a workspace: the sparse geometry, the frames with a depth map
    (``names``, in the model's order), their stereo sources (``views``), each frame's index in the
    model and world-to-camera (4, 4) pose ``E``, and the cache of (depth, confidence) maps."""

    geo: Any
    names: list[str]
    views: dict
    index: dict[str, int]
    E: dict[str, np.ndarray]
    cache: _LRU

    def K(self, name: str) -> np.ndarray:
        """(3, 3) intrinsics of frame ``name`` in pixels (pixel centres at +0.5)."""
        return self.geo.K[self.index[name]]


def _open_clip(ws: Workspace, cfg: FuseConfig) -> _Clip:
    """Read and check the inputs of the fuse stage (InputError naming the file at fault)."""
    rec = ws.read_sparse()
    geo = sparse_geometry(rec)
    names = [n for n in geo.names if ws.depth_path(Path(n).stem).exists()]
    if not names:
        raise InputError(f"{ws.depth_dir}: no depth maps (run 'mannequin stereo {ws.root}' first)")
    views_path = ws.stereo_dir / "views.json"
    views = read_json_object(views_path) if views_path.exists() else {}
    if not isinstance(views, dict) or not all(isinstance(v, dict) and isinstance(v.get("sources", []), list)
                                              for v in views.values()):
        raise InputError(f"{views_path}: expected an object of frames with their sources; "
                         f"run 'mannequin stereo {ws.root}' again")
    index = {n: k for k, n in enumerate(geo.names)}
    shapes = [(geo.sizes[index[n]][1], geo.sizes[index[n]][0]) for n in names]
    check_maps([ws.depth_path(Path(n).stem) for n in names], shapes)
    check_maps([ws.conf_path(Path(n).stem) for n in names], shapes)
    E = {n: world_to_camera(geo, index[n]) for n in names}

    def load(name: str) -> tuple[np.ndarray, np.ndarray]:
        stem = Path(name).stem
        d = np.load(ws.depth_path(stem))
        c = np.load(ws.conf_path(stem))
        d = np.where(c >= cfg.min_confidence, d, 0).astype(np.float32)
        return d, c

    return _Clip(geo, names, views, index, E, _LRU(load, 2 * cfg.n_neighbors + 2))


def motion_rel(cfg: FuseConfig, noise: float) -> float:
    """The relative contradiction that is evidence of motion: ``cfg.moving_noise`` × the clip's depth
    noise (``cfg.rel_depth`` stands in for a noise that could not be measured); 0 = no moving mask."""
    return float(cfg.moving_noise) * (noise if np.isfinite(noise) and noise > 0 else cfg.rel_depth)


def _adapt_and_log(cfg: FuseConfig, noise: float, band: float) -> FuseConfig:
    """:func:`adapt_to_noise`, logging the noise band and any change of the agreement test."""
    if band > cfg.rel_depth:
        log.info("fuse: depth noise %.1f%% between frames: a source off by up to %.1f%% is no free-space "
                 "or motion evidence", 100 * noise, 100 * band)
    fcfg = adapt_to_noise(cfg, noise)
    if fcfg != cfg:
        log.info("fuse: depth noise %.1f%%: agreement within %.1f%% from %d views (instead of %.1f%% from %d)",
                 100 * noise, 100 * fcfg.rel_depth, fcfg.min_views, 100 * cfg.rel_depth, cfg.min_views)
    return fcfg


def _fuse_frame(ws: Workspace, clip: _Clip, name: str, cfg: FuseConfig, fcfg: FuseConfig,
                band: float, motion: float) -> tuple[dict, np.ndarray]:
    """Label one frame and write its label, confidence and dynamic mask.

    Returns (its qc.json row, label (H, W) float32 in depth units, 0 = none).
    """
    stem = Path(name).stem
    depth, conf = clip.cache.get(name)
    nbs = neighbours_for(clip.names, _sources(clip.views, name), name, cfg.n_neighbors)
    neighbours = [(clip.cache.get(s)[0], clip.K(s), clip.E[s]) for s in nbs]
    votes = consistency_votes(depth, clip.K(name), clip.E[name], neighbours,
                              max_rel_depth=fcfg.rel_depth, max_reproj_px=cfg.reproj_px, noise_rel=band,
                              motion_rel=motion)
    label, dyn = filter_from_votes(depth, votes, fcfg, len(neighbours))
    valid = float((label > 0).mean())
    kept = valid >= cfg.min_valid_fraction
    reason = "" if kept else f"valid fraction {valid:.2f} < {cfg.min_valid_fraction:.2f}"
    save_npy(ws.labels_dir / f"{stem}.conf.npy", np.where(label > 0, conf, 0).astype(np.float32))
    save_image(ws.labels_dir / f"{stem}.dynamic.png", (dyn * 255).astype(np.uint8))
    save_npy(ws.label_path(stem), label)  # the label last: it marks the frame done
    row = {"name": stem, "valid_fraction": round(valid, 4), "kept": kept, "reason": reason,
           "dynamic_fraction": round(float(dyn.mean()), 4)}
    return row, label


def _add_to_cloud(cloud: VoxelAccumulator, rng: np.random.Generator, ws: Workspace, clip: _Clip, name: str,
                  label: np.ndarray) -> None:
    """Add a random subset of the labelled pixels of ``name`` (about 60000 at most, drawn before
    back-projection, so the cloud stays small on long clips) to ``cloud``, coloured from WS/images."""
    from mannequin.io.images import load_image

    take = rng.random(label.shape) < min(1.0, 60000 / max(int((label > 0).sum()), 1))
    pts, col = depth_to_points(np.where(take, label, 0), clip.K(name), clip.E[name],
                               colors=load_image(ws.images_dir / name))
    cloud.add(pts, col)


def _sources(views: dict, name: str) -> list:
    """The stereo sources of ``name`` in WS/stereo/views.json's mapping (none when absent)."""
    return (views.get(name) or {}).get("sources", [])


def clip_noise_band(names: list[str], views: dict, index: dict, geo: Any, E: dict, cache: _LRU,
                    cfg: FuseConfig) -> tuple[float, float]:
    """(noise, band): the clip's depth noise (:func:`mannequin.fuse.consistency.depth_noise` over the
    stereo stage's probe pairs, :func:`mannequin.stereo.views.probe_pairs`) and the band
    ``cfg.noise_margin`` × noise within which a disagreeing source counts as ``n_near`` (no
    evidence of a free-space violation or of motion) rather than behind or in front.  The band is
    0 (no effect) when ``noise_margin`` is 0 or the noise is unknown."""
    from mannequin.stereo.views import probe_pairs

    if cfg.noise_margin <= 0 and cfg.noise_tolerance <= 0:
        return float("nan"), 0.0
    sources = {n: _sources(views, n) for n in names}
    pairs = [(cache.get(a)[0], geo.K[index[a]], E[a], cache.get(b)[0], geo.K[index[b]], E[b])
             for a, b in probe_pairs(names, sources, NOISE_PROBES)]
    noise = depth_noise(pairs) if pairs else float("nan")
    return noise, (float(cfg.noise_margin * noise) if np.isfinite(noise) and cfg.noise_margin > 0 else 0.0)


def adapt_to_noise(cfg: FuseConfig, noise: float) -> FuseConfig:
    """The agreement test matched to the clip's depth noise (pure).

    ``noise``: the clip's relative depth noise (:func:`clip_noise_band`; NaN = unknown).  When
    ``cfg.noise_tolerance`` × noise exceeds ``cfg.rel_depth`` (blurred or noisy footage), returns
    ``cfg`` with ``rel_depth`` = noise_tolerance × noise and ``min_views`` + 1; otherwise ``cfg``
    itself (sharp footage, unknown noise, or ``noise_tolerance`` = 0).
    """
    if cfg.noise_tolerance <= 0 or not np.isfinite(noise):
        return cfg
    tol = float(cfg.noise_tolerance * noise)
    if tol <= cfg.rel_depth:
        return cfg
    return dataclasses.replace(cfg, rel_depth=round(tol, 5), min_views=cfg.min_views + 1)


def _scene_scale(geo) -> float:
    """Median distance of the sparse points from the median camera centre (world units); 1 if none."""
    if len(geo.points) == 0 or len(geo.centers) == 0:
        return 1.0
    d = np.linalg.norm(geo.points - np.median(geo.centers, axis=0), axis=1)
    scale = float(np.median(d))
    return scale if np.isfinite(scale) and scale > 0 else 1.0


def _write_cloud(path: Path, cloud: VoxelAccumulator) -> int:
    """Remove statistical outliers from the voxel means and write a PLY atomically; returns points."""
    import open3d as o3d

    pcd = o3d.geometry.PointCloud()
    pts, col = cloud.result()
    if len(pts):
        pcd.points = o3d.utility.Vector3dVector(pts)
        pcd.colors = o3d.utility.Vector3dVector(col)
        if len(pcd.points) > 50:
            pcd, _ = pcd.remove_statistical_outlier(nb_neighbors=20, std_ratio=2.0)
    with atomic_path(path) as tmp:
        if len(pcd.points) == 0:  # open3d refuses to write an empty cloud; a valid empty PLY says it all
            tmp.write_text("ply\nformat ascii 1.0\nelement vertex 0\nproperty float x\nproperty float y\n"
                           "property float z\nend_header\n")
            return 0
        ply = tmp.with_name(tmp.name + ".ply")
        if not o3d.io.write_point_cloud(ply, pcd, write_ascii=False):
            raise OSError(f"{path}: open3d could not write the point cloud")
        ply.rename(tmp)
    return len(pcd.points)
