"""Stage ``stereo``: a dense depth map and confidence for every frame of WS/images.

Sources per frame come from the sparse model (:mod:`mannequin.views`) and are written to
``WS/stereo/views.json``; each frame's depth range comes from the sparse points it sees.  The
sweep itself is :func:`mannequin.stereo_core.plane_sweep` (Numba kernels in :mod:`mannequin.sweep`).
Frames finish one by one (atomic writes), so a killed run resumes at the first missing frame;
``WS/stereo/params.json`` holds the stage hash the finished frames were made with.
"""
from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import numpy as np

from .config import StereoConfig
from .errors import InputError
from .views import depth_range, relative_pose, select_views, sparse_geometry
from .workspace import Workspace, save_npy, write_json

log = logging.getLogger("mannequin.stereo")


def load_image(path: Path) -> np.ndarray:
    """(H, W, 3) uint8 image."""
    import imageio.v3 as iio

    img = iio.imread(path)
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=2)
    return np.ascontiguousarray(img[..., :3])


def run_stereo(ws: Workspace, cfg: StereoConfig, *, stage_hash: str = "", progress: bool = False) -> Path:
    """Plane-sweep every registered frame; writes WS/depth/<name>.npy and <name>.conf.npy.

    Returns ``ws.depth_dir``.  Frames already computed with the same ``stage_hash`` are kept.
    """
    import pycolmap
    from tqdm import tqdm

    from .stereo_core import plane_sweep

    if not (ws.sparse_dir / "images.bin").exists() and not (ws.sparse_dir / "images.txt").exists():
        raise InputError(f"{ws.sparse_dir}: no sparse model (run 'mannequin sfm {ws.root}' first)")
    rec = pycolmap.Reconstruction(str(ws.sparse_dir))
    geo = sparse_geometry(rec)
    if len(geo.names) < 2:
        raise InputError(f"{ws.sparse_dir}: need at least 2 registered images, found {len(geo.names)}")
    views = select_views(geo, cfg.n_sources, cfg.min_angle_deg)
    params_path = ws.stereo_dir / "params.json"
    previous = _read_json(params_path)
    if previous.get("hash") != stage_hash or not stage_hash:
        # Outputs of other options (or of unknown origin) must not be mixed with new ones.
        for p in sorted(ws.depth_dir.glob("*.npy")) if ws.depth_dir.exists() else []:
            p.unlink()
    ws.depth_dir.mkdir(parents=True, exist_ok=True)
    index = {n: k for k, n in enumerate(geo.names)}
    ranges = {n: depth_range(geo, index[n], cfg.depth_percentiles, cfg.depth_margin) for n in geo.names}
    write_json(ws.stereo_dir / "views.json", {
        n: {"sources": views[n], "depth_range": list(ranges[n])} for n in geo.names})
    write_json(params_path, {"hash": stage_hash, "config": _asdict(cfg)})
    cache: dict = {}

    def image(name):
        if name not in cache:
            if len(cache) > 2 * cfg.n_sources + 2:
                cache.pop(next(iter(cache)))
            cache[name] = load_image(ws.images_dir / name)
        return cache[name]

    timings = []
    bar = tqdm(geo.names, desc="stereo", unit="frame", disable=not progress, dynamic_ncols=True)
    for name in bar:
        stem = Path(name).stem
        if ws.depth_path(stem).exists() and ws.conf_path(stem).exists():
            continue
        i = index[name]
        srcs = views[name]
        if not srcs:
            log.warning("%s: no source view with parallax; no depth for this frame", name)
            h, w = geo.sizes[i][1], geo.sizes[i][0]
            depth, conf = np.zeros((h, w), np.float32), np.zeros((h, w), np.float32)
        else:
            Rs, ts = zip(*(relative_pose(geo, i, index[s]) for s in srcs))
            t0 = time.perf_counter()
            depth, conf = plane_sweep(
                image(name), [image(s) for s in srcs], geo.K[i], [geo.K[index[s]] for s in srcs],
                list(Rs), list(ts), ranges[name], n_planes=cfg.n_planes, window=cfg.window,
                top_k=cfg.top_k, min_angle_deg=cfg.min_angle_deg,
                shift=None if cfg.shift < 0 else cfg.shift, smooth=None if cfg.smooth < 0 else cfg.smooth)
            timings.append(time.perf_counter() - t0)
        save_npy(ws.conf_path(stem), conf.astype(np.float32))
        save_npy(ws.depth_path(stem), depth.astype(np.float32))  # depth last: it marks the frame done
    if timings:
        log.debug("stereo: %.2f s per frame", float(np.mean(timings)))
    return ws.depth_dir


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def _asdict(cfg) -> dict:
    import dataclasses

    return json.loads(json.dumps(dataclasses.asdict(cfg)))
