"""Stage ``sfm``: poses and intrinsics from pycolmap on the CPU, or import of known poses.

Input: ``WS/frames/*.png`` (stage frames).  Output: ``WS/images`` (undistorted, pinhole),
``WS/sparse`` (PINHOLE COLMAP model of WS/images), ``WS/cameras.txt`` (MC format, timestamps from
frames.csv) and ``WS/sfm/summary.json``.  pycolmap's glog output goes to ``WS/logs/sfm.log``;
scratch goes to ``WS/sfm/work``.

Two modes, each one path of named steps:

- self-calibrated (:func:`_self_calibrated`): features and matching (:mod:`mannequin.sfm.colmap`),
  mapping with staged self-calibration (:mod:`mannequin.sfm.mapping`), the rolling-shutter pass
  (:mod:`mannequin.sfm.readout`), the smooth-motion adjustment (:mod:`mannequin.sfm.smoothing`),
  undistortion (:mod:`mannequin.sfm.undistort`), the checks (:mod:`mannequin.sfm.diagnostics`);
- known poses (:func:`_known_poses`, :mod:`mannequin.sfm.known_poses`): features and matching,
  triangulation with the poses held fixed, with ``sfm.given_poses = "refine"`` their bundle
  adjustment (:mod:`mannequin.sfm.given_poses`), undistortion, the fit check.

With a camera file and ``sfm.given_poses = "check"`` the self-calibrated path runs, ignoring the
file's poses, and the summary compares them with SfM's (:func:`mannequin.sfm.given_poses.camera_moves`).

Both end in :func:`_write_outputs`.
"""
from __future__ import annotations

import contextlib
import csv
import json
import logging
import os
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pycolmap

from mannequin.config import SfmConfig, check_section
from mannequin.errors import InputError
from mannequin.io.cameras import CameraFile, Pose, from_reconstruction, write_cameras
from mannequin.result import StageResult
from mannequin.sfm.colmap import create_database, exhaustive_fallback_allowed, exhaustive_first, native_output_to, start_colmap
from mannequin.sfm.diagnostics import (
    check_parallax,
    check_points,
    check_registration,
    check_triangulation,
    median_triangulation_angle,
    rotation_parallax,
    rotation_reversal,
    summary_warnings,
)
from mannequin.sfm.given_poses import camera_moves, given_by_name, median_depth, model_poses, refine_poses
from mannequin.sfm.intrinsics import initial_camera, max_extra_param, parse_intrinsics
from mannequin.sfm.known_poses import check_known_poses_fit, keep_input_poses, known_camera, load_known_poses, triangulate_known
from mannequin.sfm.mapping import MappingJob, map_frames
from mannequin.sfm.readout import readout_pass, rectify_rolling_shutter
from mannequin.sfm.smoothing import smooth_motion
from mannequin.sfm.undistort import read_undistorted, undistort
from mannequin.workspace import Workspace, atomic_path, write_json

log = logging.getLogger(__name__)


def run_sfm(ws: Workspace, cfg: SfmConfig, poses: str | os.PathLike | None = None, *, seed: int = 0,
            progress: bool = False) -> StageResult:
    """Run stage sfm on workspace ``ws``.

    Returns a :class:`~mannequin.result.StageResult` (output ``ws.sparse_dir``) whose report holds
    the registration counts, the focal, the triangulation angle, the reprojection error, the
    rolling-shutter readout and the warnings (the full summary is ``WS/sfm/summary.json``).

    Without ``poses``: SIFT, sequential matching and incremental (or global) mapping with one shared
    camera; the model with the most registered frames is kept; fails with :class:`StageError`
    when fewer than ``cfg.min_registered`` of the frames register, when the matches show less
    parallax beyond a pure rotation than ``cfg.min_parallax_deg``
    (:func:`~mannequin.sfm.diagnostics.rotation_parallax`: the camera only turns in place), or when
    the median triangulation angle is below ``cfg.min_triangulation_deg`` (no parallax: static
    camera or pure rotation).  With ``poses`` (an MC/RealEstate10K file): its intrinsics and
    world-to-camera poses are used exactly and sparse points are triangulated with the poses fixed
    (no parallax checks); ``cfg.given_poses`` = "refine" then bundle-adjusts those poses (intrinsics
    fixed; the refined poses, Sim(3)-aligned back onto the given ones, replace them in WS/sparse and
    WS/cameras.txt), and "check" ignores them, runs the self-calibrated path and compares.  With
    ``poses`` the summary and the report hold ``given_poses`` (:func:`~mannequin.sfm.given_poses.camera_moves`:
    each camera's move from its given pose; the report has the mode and the medians).  Options out
    of range raise :class:`InputError` before any work.
    A failed run leaves no scratch behind (``WS/sfm/work``); its log stays in ``WS/logs/sfm.log``.
    """
    try:
        summary = _run_sfm(ws, cfg, poses, seed=seed, progress=progress)
    except BaseException:
        shutil.rmtree(ws.sfm_dir / "work", ignore_errors=True)
        raise
    report = {k: summary.get(k) for k in ("registered", "total_frames", "registered_fraction", "points",
                                          "focal_px", "median_triangulation_deg", "reprojection_error_px", "warnings")}
    report["rolling_shutter_readout_ms"] = (summary.get("rolling_shutter") or {}).get("readout_ms", 0.0)
    if "given_poses" in summary:
        report["given_poses"] = {k: v for k, v in summary["given_poses"].items() if k != "frames"}
    return StageResult("sfm", ws.sparse_dir, report)


def _run_sfm(ws: Workspace, cfg: SfmConfig, poses: str | os.PathLike | None, *, seed: int, progress: bool) -> dict[str, Any]:
    """The stage; returns the summary (written to ``WS/sfm/summary.json``)."""
    _check_options(cfg)
    if poses is None and cfg.given_poses != "use":
        raise InputError(f"sfm.given_poses = {cfg.given_poses!r} needs a camera file "
                         "(--poses, or a sequence's file with 'mannequin mc')")
    start_colmap(seed)
    names = ws.frame_names()
    if len(names) < 2:
        raise InputError(f"{ws.frames_dir}: need at least 2 frames for sfm, found {len(names)} (run the frames stage first)")
    if poses is None:
        return _self_calibrated(ws, cfg, names, seed=seed, progress=progress)
    if cfg.given_poses == "check":
        given = _Given("check", load_known_poses(poses, ws, names), names)
        return _self_calibrated(ws, cfg, names, seed=seed, progress=progress, given=given)
    return _known_poses(ws, cfg, names, poses, progress=progress)


def _check_options(cfg: SfmConfig) -> None:
    """Refuse (InputError) sfm options out of range (:func:`mannequin.config.check_section`) and a
    vocabulary tree that is not a file, before any work (else the check in
    :func:`mannequin.sfm.colmap.match` came after feature extraction)."""
    check_section(cfg)
    if cfg.vocab_tree and not Path(cfg.vocab_tree).is_file():
        raise InputError(f"sfm.vocab_tree {cfg.vocab_tree}: vocabulary tree file not found "
                         "(loop detection needs a local file)")


@dataclass(frozen=True)
class _Given:
    """A run's camera file and what is done with it (``sfm.given_poses``)."""

    mode: str  #: "use", "refine" or "check"
    cam_file: CameraFile  #: the lines of the frames ``names``, in order
    names: list[str]  #: frame stems, sorted

    @property
    def poses(self) -> dict[str, Pose]:
        """Frame stem → given world-to-camera pose."""
        return given_by_name(self.cam_file, self.names)


@dataclass
class _Run:
    """What the steps of one run share."""

    ws: Workspace
    cfg: SfmConfig
    names: list[str]  #: frame stems, sorted
    width: int  #: frame size, pixels
    height: int
    timestamps: dict[str, int]  #: image file name -> timestamp, µs (frames.csv; empty without it)
    work: Path  #: scratch, WS/sfm/work
    timings: dict[str, float] = field(default_factory=dict)
    started: float = field(default_factory=time.perf_counter)
    given: _Given | None = None  #: the camera file, with known poses or "check"

    @property
    def image_names(self) -> list[str]:
        """The frames' file names, sorted (the database's image ids 1..N)."""
        return [f"{n}.png" for n in self.names]

    @property
    def db_path(self) -> Path:
        return self.work / "database.db"

    @property
    def model_dir(self) -> Path:
        """The distorted model, as mapped."""
        return self.work / "model"

    @property
    def undistorted(self) -> Path:
        return self.work / "undistorted"


def _self_calibrated(ws: Workspace, cfg: SfmConfig, names: list[str], *, seed: int, progress: bool,
                     given: _Given | None = None) -> dict[str, Any]:
    """Self-calibrated sfm: poses and intrinsics from the frames (given intrinsics, ``cfg.intrinsics``,
    held fixed unless ``cfg.refine_intrinsics``); ``given``: a camera file to compare with ("check")."""
    width, height = _frame_size(ws, names)
    intrinsics = parse_intrinsics(cfg.intrinsics, *_source_size(ws, width, height)) if cfg.intrinsics else None
    run = _start_run(ws, cfg, names, width, height, given)
    fixed = bool(cfg.intrinsics) and not cfg.refine_intrinsics
    job = MappingJob(run.db_path, ws.frames_dir, cfg, seed, len(names), width, fixed, max_extra_param(intrinsics))
    exhaustive = exhaustive_first(cfg, names, fixed)
    summary: dict[str, Any] = {"total_frames": len(names), "mode": "sfm"}
    with _steps(run, progress) as step:
        camera_model, params = initial_camera(cfg, width, height, intrinsics)
        with step("features_matching_s"):
            run.timings.update(create_database(run.db_path, ws.frames_dir, run.image_names, cfg, camera_model, params,
                                               exhaustive=exhaustive))
        with step("mapping_s"):
            rec = _map_and_adjust(run, job, exhaustive, summary)
        with step("undistortion_s"):
            undistort(run.model_dir, ws.frames_dir, run.undistorted)
            if summary["rolling_shutter"].get("readout_ms", 0) > 0:
                rectify_rolling_shutter(rec, run.undistorted, ws.frames_dir, summary["rolling_shutter"])
    check_registration(rec, len(names), cfg)
    check_points(rec, cfg, ws.frames_dir)
    summary["parallax"] = rotation_parallax(rec, run.db_path)
    check_parallax(summary["parallax"], cfg, ws.frames_dir)
    median_angle = median_triangulation_angle(rec)
    check_triangulation(median_angle, cfg, ws.frames_dir)
    return _write_outputs(run, rec, summary, camera_model, median_angle)


def _map_and_adjust(run: _Run, job: MappingJob, exhaustive: bool, summary: dict[str, Any]) -> pycolmap.Reconstruction:
    """Mapping (with the exhaustive fallback), the rolling-shutter pass and the smooth-motion
    adjustment; the model goes to ``work/model`` and ``summary`` gets their reports (``matching``,
    ``calibration``, ``rolling_shutter``, ``motion_prior``)."""
    cfg = run.cfg
    fallback = exhaustive_fallback_allowed(cfg, run.names, job.fixed_intrinsics)
    t0 = time.perf_counter()
    rec, summary["calibration"], summary["matching"] = map_frames(job, run.work, exhaustive=exhaustive, fallback=fallback)
    t1 = time.perf_counter()
    is_video = _is_video(run.ws)
    rec, summary["rolling_shutter"] = readout_pass(rec, job, run.work, run.image_names, run.timestamps, is_video)
    t2 = time.perf_counter()
    summary["motion_prior"] = smooth_motion(rec, run.timestamps, cfg.accel_sigma, cfg.ba_loss_px, is_video)
    # Where mapping_s goes: the mapping (field-of-view starts, refits), the rolling-shutter pass, the smoothing.
    run.timings.update({"map_s": t1 - t0, "rolling_shutter_s": t2 - t1, "motion_prior_s": time.perf_counter() - t2})
    _write_model(run, rec)
    return rec


def _known_poses(ws: Workspace, cfg: SfmConfig, names: list[str], poses: str | os.PathLike, *, progress: bool) -> dict[str, Any]:
    """Known-pose sfm: the camera file ``poses`` (intrinsics and world-to-camera poses) used exactly,
    sparse points triangulated with them held fixed; with ``cfg.given_poses = "refine"`` the poses
    are then bundle-adjusted (:func:`~mannequin.sfm.given_poses.refine_poses`)."""
    cam_file = load_known_poses(poses, ws, names)
    width, height = _frame_size(ws, names)
    given = _Given("refine" if cfg.given_poses == "refine" else "use", cam_file, names)
    run = _start_run(ws, cfg, names, width, height, given)
    # Nothing to register: sequential pairs give the points (see SfmConfig.exhaustive_max_frames).
    summary: dict[str, Any] = {"total_frames": len(names), "mode": "known poses", "matching": "sequential"}
    with _steps(run, progress) as step:
        camera_model, params = known_camera(cam_file, width, height)
        with step("features_matching_s"):
            run.timings.update(create_database(run.db_path, ws.frames_dir, run.image_names, cfg, camera_model, params,
                                               known_poses=True))
        with step("mapping_s"):
            rec = triangulate_known(cam_file, run.image_names, width, height, run.db_path, ws.frames_dir, run.work)
            if given.mode == "refine":
                t0 = time.perf_counter()
                rec = refine_poses(rec, given.poses, run.db_path, ws.frames_dir, run.work, cfg.ba_loss_px)
                run.timings["refine_s"] = time.perf_counter() - t0
            _write_model(run, rec)
        with step("undistortion_s"):
            undistort(run.model_dir, ws.frames_dir, run.undistorted)
    check_known_poses_fit(rec, poses)
    return _write_outputs(run, rec, summary, camera_model, median_triangulation_angle(rec))


def _start_run(ws: Workspace, cfg: SfmConfig, names: list[str], width: int, height: int,
               given: _Given | None = None) -> _Run:
    """A run with the frames' timestamps and a fresh scratch folder."""
    timestamps = _timestamps(ws)
    work = ws.sfm_dir / "work"
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    return _Run(ws, cfg, names, width, height, timestamps, work, given=given)


@contextlib.contextmanager
def _steps(run: _Run, progress: bool) -> Iterator[Callable[[str], contextlib.AbstractContextManager[None]]]:
    """Native output (glog) to ``WS/logs/sfm.log`` and a progress bar of the three steps.  Yields
    ``step(timing)``: a context manager that times one step into ``run.timings[timing]`` and
    advances the bar."""
    with native_output_to(run.ws.logs_dir / "sfm.log") as term:
        from tqdm import tqdm

        bar = tqdm(total=3, desc="sfm", unit="step", file=term, disable=not progress)

        @contextlib.contextmanager
        def step(timing: str) -> Iterator[None]:
            t0 = time.perf_counter()
            yield
            run.timings[timing] = time.perf_counter() - t0
            bar.update(1)

        yield step
        bar.close()


def _write_model(run: _Run, rec: pycolmap.Reconstruction) -> None:
    run.model_dir.mkdir()
    rec.write(str(run.model_dir))


def _write_outputs(run: _Run, rec: pycolmap.Reconstruction, summary: dict[str, Any], camera_model: str,
                   median_angle: float) -> dict[str, Any]:
    """Move the results into place, each atomically: ``WS/images`` and ``WS/sparse`` (undistorted,
    PINHOLE), ``WS/cameras.txt`` (with poses used as given, the camera file's poses bit-exact), and
    ``WS/sfm/summary.json`` (``summary`` completed with the model's figures, the rotation, the
    comparison with given poses and the warnings, which are logged too).  Returns the summary."""
    und = run.undistorted
    und_rec = read_undistorted(und)
    reg_names, frames = from_reconstruction(und_rec, run.timestamps)
    cam_file = run.given.cam_file if run.given is not None else None
    if run.given is not None and run.given.mode == "use":
        keep_input_poses(frames, reg_names, run.given.cam_file, run.image_names)
    with atomic_path(run.ws.images_dir, is_dir=True) as tmp:
        shutil.copytree(und / "images", tmp)
    with atomic_path(run.ws.sparse_dir, is_dir=True) as tmp:
        shutil.copytree(und / "sparse", tmp)
    write_cameras(run.ws.cameras_txt, frames, url=cam_file.url if cam_file else "mannequin sfm")
    summary.update(_model_summary(run, rec, und_rec, reg_names, camera_model, median_angle))
    summary["rotation"] = rotation_reversal(rec, run.timestamps, run.cfg.max_rotation_rate_deg_s)
    if run.given is not None:
        summary["given_poses"] = _given_block(run.given, rec, summary, run.width)
    summary["warnings"] = summary_warnings(summary, run.cfg)
    for w in summary["warnings"]:
        log.warning("%s: %s", run.ws.root.name, w)
    write_json(run.ws.sfm_dir / "summary.json", summary)
    shutil.rmtree(und, ignore_errors=True)
    return summary


def _given_block(given: _Given, rec: pycolmap.Reconstruction, summary: dict[str, Any], width: int) -> dict[str, Any]:
    """The summary's ``given_poses``: ``{"mode": "use"}``, or each camera's move from its given pose
    (:func:`~mannequin.sfm.given_poses.camera_moves`), with "check" also ``focal_ratio`` (SfM's
    focal over the given one, both on the ``width``-pixel frames)."""
    if given.mode == "use":
        return {"mode": "use"}
    block = camera_moves(given.mode, given.poses, model_poses(rec), median_depth(rec))
    if given.mode == "check":
        block["focal_ratio"] = summary["camera_params_distorted"][0] / given.cam_file.frames[0].intrinsics(width, 1).fx
    return block


def _model_summary(run: _Run, rec: pycolmap.Reconstruction, und_rec: pycolmap.Reconstruction, reg_names: list[str],
                   camera_model: str, median_angle: float) -> dict[str, Any]:
    """The summary's figures of the distorted model ``rec`` and the undistorted ``und_rec``."""
    cam = und_rec.camera(und_rec.image(und_rec.reg_image_ids()[0]).camera_id)
    distorted = rec.camera(rec.image(rec.reg_image_ids()[0]).camera_id)
    return {
        "registered": rec.num_reg_images(),
        "registered_fraction": rec.num_reg_images() / len(run.names),
        "unregistered": sorted(set(run.names) - {Path(n).stem for n in reg_names}),
        "points": rec.num_points3D(),
        "reprojection_error_px": float(rec.compute_mean_reprojection_error()),
        "median_triangulation_deg": median_angle,
        "camera_model": camera_model,
        "camera_params_distorted": [float(v) for v in distorted.params],
        "focal_px": float(cam.calibration_matrix()[0, 0]),
        "image_size": [int(cam.width), int(cam.height)],
        "timings": {**run.timings, "total_s": time.perf_counter() - run.started},
    }


def _timestamps(ws: Workspace) -> dict[str, int]:
    """Image file name (``<name>.png``) → timestamp_us from frames.csv (empty when absent)."""
    if not ws.frames_csv.exists():
        return {}
    with open(ws.frames_csv, newline="") as fh:
        return {f'{r["name"]}.png': int(float(r["timestamp_us"])) for r in csv.DictReader(fh)}


def _source_size(ws: Workspace, width: int, height: int) -> tuple[int, int]:
    """Size of the input frames before any resize (frames.json), or the frame size itself."""
    try:
        w, h = json.loads(ws.frames_json.read_text())["source_size"]
        return int(w), int(h)
    except (OSError, KeyError, ValueError):
        return width, height


def _frame_size(ws: Workspace, names: list[str]) -> tuple[int, int]:
    """(width, height) of the first frame, pixels."""
    import imageio.v3 as iio

    h, w = iio.improps(ws.frames_dir / f"{names[0]}.png").shape[:2]
    return int(w), int(h)


def _is_video(ws: Workspace) -> bool:
    """Whether the frames came from a video (frames.json has its frame rate), not an image folder."""
    try:
        return bool(json.loads(ws.frames_json.read_text()).get("fps"))
    except (OSError, ValueError, AttributeError):
        return False
