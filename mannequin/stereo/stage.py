"""Stage ``stereo``: a dense depth map and confidence for every frame of WS/images.

Sources per frame come from the sparse model (:mod:`mannequin.stereo.views`) and are written to
``WS/stereo/views.json``; each frame's depth range comes from the sparse points it sees.  The
sweep itself is :func:`mannequin.stereo.sweep.plane_sweep` (Numba kernels in :mod:`mannequin.stereo.kernels.fronto`).
Frames finish one by one (atomic writes), so a killed run resumes at the first missing frame;
``WS/stereo/params.json`` holds the stage hash the finished frames were made with.
"""
from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from mannequin.config import FuseConfig, StereoConfig, check_section
from mannequin.errors import InputError
from mannequin.io.images import load_image
from mannequin.result import StageResult
from mannequin.stereo.views import (
    SparseGeometry,
    depth_range,
    ground_plane,
    plane_offset_range,
    probe_pairs,
    relative_pose,
    select_views,
    sparse_geometry,
    world_to_camera,
)
from mannequin.workspace import Workspace, prune_frames, save_npy, write_json

log = logging.getLogger("mannequin.stereo.stage")

WINDOW_FILE = "window.json"
GROUND_FILE = "ground.json"
#: A pixel takes the ground sweep's depth when its cost is lower than the fronto-parallel one's
#: by more than this (1 - ZNCC units).
GROUND_MARGIN = 0.0
#: The ground sweep's planes, as a share of ``n_planes`` (its offset range is narrower).
GROUND_PLANES = 0.5
#: ... and only where the two agree within this (relative): the ground sweep refines the floor; a
#: pixel elsewhere whose ground-plane cost happens to be lower at another depth keeps its own
#: (without this rule the synthetic clips lost 1-2 points of label density).
GROUND_AGREE = 0.05
# The window choice's agreement test: the fuse stage's defaults.
PROBE_REL_DEPTH = FuseConfig.rel_depth
PROBE_REPROJ_PX = FuseConfig.reproj_px


def run_stereo(ws: Workspace, cfg: StereoConfig, *, stage_hash: str = "", progress: bool = False) -> StageResult:
    """Plane-sweep every registered frame; writes WS/depth/<name>.npy and <name>.conf.npy.

    Frames already computed with the same ``stage_hash`` are kept.  Returns a
    :class:`~mannequin.result.StageResult` (output ``ws.depth_dir``) whose report holds the number of
    frames with depth, the matching window and its agreement per tried window (``{}`` when none was
    measured).  Raises :class:`InputError` without a sparse model of at least 2 images or for
    out-of-range options.
    """
    if not (ws.sparse_dir / "images.bin").exists() and not (ws.sparse_dir / "images.txt").exists():
        raise InputError(f"{ws.sparse_dir}: no sparse model (run 'mannequin sfm {ws.root}' first)")
    check_section(cfg)
    geo = sparse_geometry(ws.read_sparse())
    if len(geo.names) < 2:
        raise InputError(f"{ws.sparse_dir}: need at least 2 registered images, found {len(geo.names)}")
    views = select_views(geo, cfg.n_sources, cfg.min_angle_deg)
    ground = ground_plane(geo) if cfg.ground_sweep else None
    _discard_other_outputs(ws, stage_hash)
    frames = _FrameSweeper(ws, cfg, geo, views, ground)
    _write_plan(ws, cfg, frames, stage_hash)
    for name in geo.names:
        if not views[name]:
            log.warning("%s: no source view with parallax; no depth for this frame", name)
    choice = _choose_window(ws, cfg, geo, views, frames.sweep, frames.save, progress=progress)
    _sweep_missing_frames(ws, geo.names, choice.window, frames, progress)
    prune_frames(ws.depth_dir, [Path(n).stem for n in geo.names], (".conf.npy", ".npy"))
    if frames.timings:
        log.debug("stereo: %.2f s per frame", float(np.mean(frames.timings)))
    return StageResult("stereo", ws.depth_dir, {
        "frames": len(list(ws.depth_dir.glob("*.conf.npy"))), "window": choice.window,
        "window_agreement": choice.agreement})


def _discard_other_outputs(ws: Workspace, stage_hash: str) -> None:
    """Delete the depth maps and the window choice unless WS/stereo/params.json holds ``stage_hash``
    (outputs of other options, or of unknown origin, must not be mixed with new ones)."""
    previous = _read_json(ws.stereo_dir / "params.json")
    if previous.get("hash") != stage_hash or not stage_hash:
        for p in sorted(ws.depth_dir.glob("*.npy")) if ws.depth_dir.exists() else []:
            p.unlink()
        (ws.stereo_dir / WINDOW_FILE).unlink(missing_ok=True)
    ws.depth_dir.mkdir(parents=True, exist_ok=True)


def _write_plan(ws: Workspace, cfg: StereoConfig, frames: _FrameSweeper, stage_hash: str) -> None:
    """WS/stereo/views.json (sources, depth range and ground-plane offsets per frame), ground.json
    and params.json (the stage hash and options)."""
    ground = frames.ground
    write_json(ws.stereo_dir / "views.json", {
        n: {"sources": frames.views[n], "depth_range": list(frames.ranges[n]),
            **({"ground_offsets": list(frames.along[n][1])} if ground else {})}
        for n in frames.geo.names})
    write_json(ws.stereo_dir / GROUND_FILE, {"enabled": cfg.ground_sweep, "found": ground is not None,
                                             **({"normal": ground[0].tolist(), "offset": ground[1]} if ground else {})})
    if cfg.ground_sweep:
        log.info("stereo: %s", f"second sweep along the ground plane (normal {np.round(ground[0], 3).tolist()})"
                 if ground else "no ground plane in the sparse points: fronto-parallel sweep only")
    write_json(ws.stereo_dir / "params.json", {"hash": stage_hash, "config": _asdict(cfg)})


def _sweep_missing_frames(ws: Workspace, names: Sequence[str], window: int, frames: _FrameSweeper,
                          progress: bool) -> None:
    """Sweep and save every frame of ``names`` whose depth and confidence files are not there yet."""
    from tqdm import tqdm

    bar = tqdm(names, desc=f"stereo (window {window})", unit="frame", disable=not progress, dynamic_ncols=True)
    for name in bar:
        stem = Path(name).stem
        if ws.depth_path(stem).exists() and ws.conf_path(stem).exists():
            continue
        frames.save(name, *frames.sweep(name, window))


class _FrameSweeper:
    """The sweep of one frame against its sources with the stage's options (plus the ground sweep
    when a ground plane was found), and the saving of its maps; keeps a few images in memory."""

    def __init__(self, ws: Workspace, cfg: StereoConfig, geo: SparseGeometry, views: dict[str, list[str]],
                 ground: tuple[np.ndarray, float] | None) -> None:
        self.ws, self.cfg, self.geo, self.views, self.ground = ws, cfg, geo, views, ground
        self.index = {n: k for k, n in enumerate(geo.names)}
        #: per frame: (near, far) depth range
        self.ranges = {n: depth_range(geo, self.index[n], cfg.depth_percentiles, cfg.depth_margin)
                       for n in geo.names}
        #: per frame: the ground-plane normal in the camera and the plane offsets to sweep
        self.along = {n: plane_offset_range(geo, self.index[n], ground) for n in geo.names} if ground else {}
        #: seconds per swept frame
        self.timings: list[float] = []
        self._cache: dict[str, np.ndarray] = {}

    def image(self, name: str) -> np.ndarray:
        """The frame's image (H, W, 3) uint8, from a small cache."""
        if name not in self._cache:
            if len(self._cache) > 2 * self.cfg.n_sources + 2:
                self._cache.pop(next(iter(self._cache)))
            self._cache[name] = load_image(self.ws.images_dir / name)
        return self._cache[name]

    def sweep(self, name: str, window: int) -> tuple[np.ndarray, np.ndarray]:
        """(depth, confidence) (H, W) float32 of frame ``name`` with matching window ``window``
        (zeros for a frame without sources)."""
        from mannequin.stereo.sweep import plane_sweep

        geo, cfg, i = self.geo, self.cfg, self.index[name]
        srcs = self.views[name]
        if not srcs:
            h, w = geo.sizes[i][1], geo.sizes[i][0]
            return np.zeros((h, w), np.float32), np.zeros((h, w), np.float32)
        Rs, ts = zip(*(relative_pose(geo, i, self.index[s]) for s in srcs), strict=False)
        t0 = time.perf_counter()
        args = (self.image(name), [self.image(s) for s in srcs], geo.K[i], [geo.K[self.index[s]] for s in srcs],
                list(Rs), list(ts))
        kw: dict[str, Any] = dict(n_planes=cfg.n_planes, window=window, top_k=cfg.top_k,
                                  min_angle_deg=cfg.min_angle_deg, shift=None if cfg.shift < 0 else cfg.shift,
                                  smooth=None if cfg.smooth < 0 else cfg.smooth)
        if self.ground is None:
            depth, conf = plane_sweep(*args, self.ranges[name], **kw)
        else:
            fronto = plane_sweep(*args, self.ranges[name], return_cost=True, **kw)
            n_cam, offsets = self.along[name]
            kw["n_planes"] = max(8, int(round(cfg.n_planes * GROUND_PLANES)))
            along = plane_sweep(*args, offsets, return_cost=True, normal=n_cam, **kw)
            depth, conf = combine_sweeps(fronto, along)
        self.timings.append(time.perf_counter() - t0)
        return depth, conf

    def save(self, name: str, depth: np.ndarray, conf: np.ndarray) -> None:
        """Write the frame's maps atomically, depth last (it marks the frame done)."""
        stem = Path(name).stem
        save_npy(self.ws.conf_path(stem), conf.astype(np.float32))
        save_npy(self.ws.depth_path(stem), depth.astype(np.float32))


def combine_sweeps(fronto: Sequence[np.ndarray], ground: Sequence[np.ndarray],
                   margin: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Per pixel, the better of two sweeps' (depth, confidence, cost) triples (``plane_sweep(...,
    return_cost=True)``; cost 1 - ZNCC, NaN = none): the ground sweep's estimate where both have
    one, its cost is below the fronto-parallel one's by more than ``margin`` (default
    :data:`GROUND_MARGIN`) and the depths agree within :data:`GROUND_AGREE`.  Returns (depth,
    confidence) float32."""
    margin = GROUND_MARGIN if margin is None else margin
    (d, c, k), (gd, gc, gk) = fronto, ground
    use = (gd > 0) & np.isfinite(gk) & (d > 0) & np.isfinite(k) & (gk < k - margin)
    use &= np.abs(gd - d) <= GROUND_AGREE * d
    return np.where(use, gd, d).astype(np.float32), np.where(use, gc, c).astype(np.float32)




class WindowChoice(NamedTuple):
    """The clip's matching window (:func:`_choose_window`)."""

    #: odd window side in px
    window: int
    #: agreement share in [0, 1] per tried window (keys: the window as a string); {} when none was
    #: measured (None: a resumed run's window.json without one)
    agreement: dict[str, float] | None


def _choose_window(ws: Workspace, cfg: StereoConfig, geo: SparseGeometry, views: dict[str, list[str]],
                   sweep: Callable[[str, int], tuple[np.ndarray, np.ndarray]],
                   save: Callable[[str, np.ndarray, np.ndarray], None], *, progress: bool) -> WindowChoice:
    """The matching window of the clip: ``cfg.window``, or a larger one of
    ``cfg.window_candidates`` when the base window's depth maps agree poorly between frames.

    Agreement: the share of a probe frame's pixels whose depth agrees with its neighbour's (the
    fuse stage's test, :data:`PROBE_REL_DEPTH` and :data:`PROBE_REPROJ_PX`), averaged over
    :func:`~mannequin.stereo.views.probe_pairs`.  Below ``cfg.window_min_agreement`` (blurred or noisy footage: the labels
    would come out sparse), the candidates are tried in increasing size while the agreement grows,
    and the window with the highest agreement is kept.  The choice and the agreements go to
    ``WS/stereo/window.json`` (read back when a killed run resumes); the probe frames' depth maps
    of the chosen window are saved with ``save`` as the stage's outputs, so the base window costs
    nothing extra.  ``sweep(name, window)``: a frame's (depth, confidence).
    """
    path = ws.stereo_dir / WINDOW_FILE
    done = _read_json(path)
    if isinstance(done.get("window"), int):
        return WindowChoice(done["window"], done.get("agreement"))
    pairs = probe_pairs(geo.names, views, cfg.probe_frames) if cfg.window_candidates else []
    if not pairs:
        write_json(path, {"window": cfg.window, "agreement": {}, "probes": []})
        return WindowChoice(cfg.window, {})
    tried, best, best_maps = _try_windows(cfg, geo, pairs, sweep, progress)
    write_json(path, {"window": best, "agreement": {str(w): a for w, a in tried.items()},
                      "probes": [list(p) for p in pairs], "min_agreement": cfg.window_min_agreement})
    for name, (depth, conf) in best_maps.items():
        save(name, depth, conf)
    return WindowChoice(best, {str(w): a for w, a in tried.items()})


def _try_windows(cfg: StereoConfig, geo: SparseGeometry, pairs: list[tuple[str, str]],
                 sweep: Callable[[str, int], tuple[np.ndarray, np.ndarray]],
                 progress: bool) -> tuple[dict[int, float], int, dict[str, tuple[np.ndarray, np.ndarray]]]:
    """Sweep the probe frames with ``cfg.window``, then with the larger candidates while the
    agreement grows; returns (agreement per tried window, the best window, its probe maps)."""
    from tqdm import tqdm

    frames = sorted({n for pair in pairs for n in pair})
    tried: dict[int, float] = {}
    best: int = cfg.window
    best_maps: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for window in (cfg.window, *sorted(w for w in cfg.window_candidates if w > cfg.window)):
        maps = {n: sweep(n, window) for n in tqdm(frames, desc=f"stereo probe (window {window})", unit="frame",
                                                   disable=not progress, dynamic_ncols=True, leave=False)}
        tried[window] = _agreement(geo, pairs, maps)
        log.info("stereo: window %d: %.1f%% of probe pixels agree with a neighbour", window, 100 * tried[window])
        if best_maps and tried[window] <= tried[best]:
            break  # the agreement stopped growing
        best, best_maps = window, maps
        if window == cfg.window and tried[window] >= cfg.window_min_agreement:
            break
    return tried, best, best_maps


def _agreement(geo: SparseGeometry, pairs: list[tuple[str, str]], maps: dict[str, tuple[np.ndarray, np.ndarray]]) -> float:
    """Mean over the probe ``pairs`` of the share of the probe's pixels whose depth in ``maps``
    agrees with its neighbour's (:func:`mannequin.fuse.check_geometric_consistency`)."""
    from mannequin.fuse.consistency import check_geometric_consistency

    index = {n: k for k, n in enumerate(geo.names)}
    shares = []
    for a, b in pairs:
        ia, ib = index[a], index[b]
        mask = check_geometric_consistency(
            maps[a][0], geo.K[ia], world_to_camera(geo, ia), maps[b][0], geo.K[ib], world_to_camera(geo, ib),
            max_rel_depth=PROBE_REL_DEPTH, max_reproj_px=PROBE_REPROJ_PX)[0]
        shares.append(float(mask.mean()))
    return float(np.mean(shares))


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def _asdict(cfg) -> dict:
    import dataclasses

    return json.loads(json.dumps(dataclasses.asdict(cfg)))
