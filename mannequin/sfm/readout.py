"""The rolling-shutter pass of self-calibrated sfm: the readout-time search and its scores, the
keypoint correction and re-mapping, and the rectified frames (``sfm.readout_ms``, see
:class:`~mannequin.config.SfmConfig`).

The model of the rolling shutter itself (row times, rotations during readout, resampling) is pure
numpy in :mod:`mannequin.sfm.rolling_shutter`; this module applies it to pycolmap models and the
COLMAP database.  Angular velocities are (3,) rad/s in the camera's own axes (OpenCV: x right,
y down, z forward); readout times are ms in reports and configs, s in arguments named ``readout_s``.
"""
from __future__ import annotations

import dataclasses
import shutil
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pycolmap

from mannequin.config import SfmConfig, worker_threads
from mannequin.sfm.colmap import set_camera_params
from mannequin.sfm.mapping import MappingJob, final_adjustment, incremental
from mannequin.sfm.rolling_shutter import angular_velocities, rectify_image, to_frame_time

#: The auto search (``sfm.readout_ms`` -1) runs only on clips whose consecutive frames turn less than
#: this (degrees): the angular velocity is a finite difference between neighbours.
READOUT_MAX_STEP_DEG = 10.0


def frame_angular_velocities(rec: pycolmap.Reconstruction, names: Sequence[str],
                             timestamps: dict[str, int]) -> tuple[dict[str, np.ndarray], float, float]:
    """Per image file name (``names``, registered or not): the camera's angular velocity (3,) rad/s
    in its own axes, from the registered frames' rotations
    (:func:`mannequin.sfm.rolling_shutter.angular_velocities`; interpolated in time for the
    unregistered).  Frame times from ``timestamps`` (name → µs), else 30 fps.  Also the fastest
    rate (°/s) and the largest turn between consecutive registered frames (°)."""
    from scipy.spatial.transform import Rotation

    ids = sorted(rec.reg_image_ids(), key=lambda i: rec.image(i).name)
    reg = [rec.image(i).name for i in ids]
    every = sorted(set(names) | set(reg))
    times = {n: (timestamps[n] * 1e-6 if n in timestamps else every.index(n) / 30.0) for n in every}
    R_wc = np.array([rec.image(i).cam_from_world().rotation.matrix().T for i in ids])
    if len(ids) < 2:
        return {n: np.zeros(3) for n in every}, 0.0, 0.0
    t = np.array([times[n] for n in reg])
    om = angular_velocities(R_wc, t)
    steps = [np.degrees(Rotation.from_matrix(R_wc[k].T @ R_wc[k + 1]).magnitude()) for k in range(len(ids) - 1)]
    out = {n: np.array([np.interp(times[n], t, om[:, a]) for a in range(3)]) for n in every}
    out.update(zip(reg, om, strict=False))
    return out, float(np.degrees(np.linalg.norm(om, axis=1).max())), float(max(steps))


def _frame_time_pixels(cam: pycolmap.Camera, xy: Any, omega: np.ndarray, readout_s: float) -> np.ndarray:
    """Recorded pixels (M, 2) of camera ``cam`` (lens model included) → where a global-shutter
    camera at the frame time sees them (:func:`mannequin.sfm.rolling_shutter.to_frame_time`)."""
    xy = np.ascontiguousarray(xy, dtype=np.float64)
    b = np.asarray(cam.cam_from_img(xy), dtype=np.float64)
    if b.shape[1] == 2:
        b = np.column_stack([b, np.ones(len(b))])
    b = to_frame_time(b, xy[:, 1], omega, readout_s, cam.height)
    return np.asarray(cam.img_from_cam(np.ascontiguousarray(b)), dtype=np.float64)


def _correct_keypoints(db_path: Path, cam: pycolmap.Camera, omegas: dict[str, np.ndarray], readout_s: float) -> None:
    """Move every keypoint in the database to where a global-shutter camera at the frame time would
    have seen it (:func:`_frame_time_pixels` through the lens model ``cam``)."""
    db = pycolmap.Database.open(str(db_path))
    try:
        for img in db.read_all_images():
            om = omegas.get(img.name)
            kp = db.read_keypoints(img.image_id)
            if om is None or len(kp) == 0:
                continue
            kp2 = kp.copy()
            kp2[:, :2] = _frame_time_pixels(cam, kp[:, :2], om, readout_s)
            db.update_keypoints(img.image_id, kp2.astype(kp.dtype))
    finally:
        db.close()


def readout_pass(rec: pycolmap.Reconstruction, job: MappingJob, work: Path, names: Sequence[str],
                 timestamps: dict[str, int], is_video: bool) -> tuple[pycolmap.Reconstruction, dict[str, Any]]:
    """Rolling-shutter correction of the self-calibrated model ``rec``.  Returns (model, report).

    ``cfg.readout_ms`` 0: nothing.  A given readout time is always applied.  Auto (< 0) runs on
    videos that turn faster than ``cfg.max_rotation_rate_deg_s`` (:func:`_auto_skip_reason`) and
    picks the readout time with :func:`_search_readout`.  Applying one (:func:`_apply_readout`)
    corrects a copy of the database's keypoints and maps it again.  ``names``: the frames' file
    names; ``timestamps``: name → µs.  ``report["readout_ms"]`` is the readout applied (0 = none)
    and ``report["omega_rad_s"]`` each frame's angular velocity (from the uncorrected ``rec``), for
    the undistortion and for ``mannequin eval``.
    """
    cfg = job.cfg
    if cfg.readout_ms == 0:
        return rec, {"readout_ms": 0.0, "mode": "off"}
    omegas, rate, step = frame_angular_velocities(rec, names, timestamps)
    report: dict[str, Any] = {"readout_ms": 0.0, "mode": "auto" if cfg.readout_ms < 0 else "given",
                              "max_rate_deg_s": rate, "max_step_deg": step}
    if cfg.readout_ms > 0:
        ms = float(cfg.readout_ms)
    else:
        skip = _auto_skip_reason(cfg, is_video, rate, step)
        if skip:
            return rec, {**report, "skipped": skip}
        t0 = time.perf_counter()
        found = _search_readout(rec, omegas, cfg, not job.fixed_intrinsics, report)
        report["search_s"] = time.perf_counter() - t0
        if found is None:
            return rec, report
        ms = found
    t0 = time.perf_counter()
    rec, report = _apply_readout(rec, job, work, omegas, ms, report)
    report["apply_s"] = time.perf_counter() - t0
    return rec, report


def _auto_skip_reason(cfg: SfmConfig, is_video: bool, rate: float, step: float) -> str | None:
    """Why the auto search does not run (None: it runs): not a video, a camera turning at most
    ``cfg.max_rotation_rate_deg_s`` (``rate``, °/s), or frames too far apart to difference (``step``, °)."""
    if not is_video:
        return "not a video"
    if rate <= cfg.max_rotation_rate_deg_s:
        return f"turns at most {rate:.0f}°/s (<= {cfg.max_rotation_rate_deg_s:g})"
    if step > READOUT_MAX_STEP_DEG:
        return f"turns {step:.1f}° between frames (> {READOUT_MAX_STEP_DEG:g})"
    return None


def _search_readout(rec: pycolmap.Reconstruction, omegas: dict[str, np.ndarray], cfg: SfmConfig, free_focal: bool,
                    report: dict[str, Any]) -> float | None:
    """The auto search: the readout times (ms) of ``cfg.readout_candidates_ms``, and none, scored on
    ``rec``'s own observations (:func:`readout_score`; the focal free when ``free_focal``, as a
    self-calibrated focal absorbs part of the skew).  The same observations for every candidate make
    the scores comparable (re-mapping would not).  Returns the best readout time when it lowers the
    median reprojection error by ``cfg.readout_min_gain``, else None; ``report`` gets the scores
    (``median_reprojection_px``, the candidates scored) and the chosen one's ``gain``.

    Candidates are scored in ascending order, :func:`~mannequin.config.worker_threads` at a time,
    and the search stops once the last one scored is worse than the best so far: the score falls to
    the readout that fits and rises past it, so the rest cannot win (a global-shutter clip stops
    after none and the shortest readout)."""
    # Each score adjusts its own copy on one thread, so the scores are the same however many run
    # at once (pycolmap's adjustment releases the GIL).
    candidates = [0.0] + sorted(float(ms) for ms in cfg.readout_candidates_ms)
    step = max(2, worker_threads())
    scores: dict[float, float] = {}
    with ThreadPoolExecutor(max_workers=step) as pool:
        for k in range(0, len(candidates), step):
            batch = candidates[k:k + step]
            scores.update(zip(batch, pool.map(lambda ms: readout_score(rec, omegas, ms * 1e-3, free_focal), batch),
                              strict=True))
            if scores[batch[-1]] > min(scores.values()):
                break
    report["median_reprojection_px"] = {f"{k:g}": v for k, v in scores.items()}
    ms = min(scores, key=lambda k: (scores[k], k))
    if ms == 0.0 or scores[ms] > (1.0 - cfg.readout_min_gain) * scores[0.0]:
        return None
    report["gain"] = 1.0 - scores[ms] / scores[0.0]
    return ms


def _apply_readout(rec: pycolmap.Reconstruction, job: MappingJob, work: Path, omegas: dict[str, np.ndarray],
                   ms: float, report: dict[str, Any]) -> tuple[pycolmap.Reconstruction, dict[str, Any]]:
    """Correct a copy of the database (``work/readout.db``: the camera held at ``rec``'s
    intrinsics, every keypoint moved to the frame time for a readout of ``ms``) and map it again
    (``work/readout``).  The result replaces ``rec`` and the database when it registers as many
    frames, after its adjustment (:func:`~mannequin.sfm.mapping.final_adjustment`: a
    self-calibrated focal is refined again); else ``report["not_applied"]`` says why not."""
    cam = rec.camera(rec.image(rec.reg_image_ids()[0]).camera_id)
    db_rs = work / "readout.db"
    shutil.copyfile(job.db_path, db_rs)
    set_camera_params(db_rs, cam.params)
    _correct_keypoints(db_rs, cam, omegas, ms * 1e-3)
    r = incremental(dataclasses.replace(job, db_path=db_rs), work / "readout")
    n_reg = r.num_reg_images() if r is not None else 0
    if r is None or n_reg < rec.num_reg_images():
        report["not_applied"] = (f"with a {ms:g} ms readout only {n_reg} frames registered, against "
                                 f"{rec.num_reg_images()} without: kept the uncorrected model")
        return rec, report
    shutil.copyfile(db_rs, job.db_path)
    r, refine = final_adjustment(r, job)
    if refine is not None:
        report["refine"] = refine
    report["readout_ms"] = ms
    report["omega_rad_s"] = {n: [float(v) for v in om] for n, om in sorted(omegas.items())}
    return r, report


def _at_frame_time(rec: pycolmap.Reconstruction, omegas: dict[str, np.ndarray], readout_s: float) -> None:
    """Move ``rec``'s observations, in place, to where a global-shutter camera at the frame time
    sees them, for a readout time ``readout_s`` (0: unchanged)."""
    for iid in rec.reg_image_ids() if readout_s else ():
        img = rec.image(iid)
        n = len(img.points2D)
        if n == 0:
            continue
        new = _frame_time_pixels(rec.camera(img.camera_id), [p.xy for p in img.points2D], omegas[img.name], readout_s)
        for k in range(n):
            img.points2D[k].xy = new[k]


def _median_reprojection_px(rec: pycolmap.Reconstruction) -> float:
    """Median reprojection error (px) of ``rec``'s observations of 3-D points (inf without any)."""
    errs = []
    for iid in rec.reg_image_ids():
        img = rec.image(iid)
        cam = rec.camera(img.camera_id)
        T = img.cam_from_world()
        obs = [p for p in img.points2D if p.has_point3D()]
        if not obs:
            continue
        X = np.array([T * rec.points3D[p.point3D_id].xyz for p in obs])
        xy = np.array([p.xy for p in obs])
        proj = np.asarray(cam.img_from_cam(np.ascontiguousarray(X), False), dtype=np.float64)
        errs.append(np.linalg.norm(proj - xy, axis=1))
    return float(np.median(np.concatenate(errs))) if errs else float("inf")


def readout_score(rec: pycolmap.Reconstruction, omegas: dict[str, np.ndarray], readout_s: float,
                  refine_focal: bool = False) -> float:
    """Median reprojection error (px) of ``rec``'s observations after correcting them for a readout
    time ``readout_s`` (:func:`mannequin.sfm.rolling_shutter.to_frame_time`) and a bundle adjustment
    of poses and points (on a copy), with the intrinsics fixed or, ``refine_focal``, the focal free."""
    r = pycolmap.Reconstruction(rec)
    _at_frame_time(r, omegas, readout_s)
    opts = pycolmap.BundleAdjustmentOptions()
    opts.refine_principal_point = opts.refine_extra_params = False
    opts.refine_focal_length = bool(refine_focal)
    opts.print_summary = False
    pycolmap.bundle_adjustment(r, opts)
    return _median_reprojection_px(r)


def rectify_rolling_shutter(rec: pycolmap.Reconstruction, und: Path, frames_dir: Path, rs: dict[str, Any]) -> None:
    """Overwrite ``und/images`` (pycolmap's undistortion) with the recorded frames resampled through
    the lens model of ``rec`` *and* the rolling-shutter rotation
    (:func:`mannequin.sfm.rolling_shutter.rectify_image`), on the undistorted camera of
    ``und/sparse``, so that they agree with the corrected keypoints.  ``rs``: the readout pass's
    report (``readout_ms``, ``omega_rad_s``)."""
    import imageio.v3 as iio

    und_rec = pycolmap.Reconstruction(str(und / "sparse"))
    readout_s = float(rs["readout_ms"]) * 1e-3

    def one(iid: int) -> None:
        img = und_rec.image(iid)
        ucam = und_rec.camera(img.camera_id)
        dcam = rec.camera(rec.image(iid).camera_id)
        frame = iio.imread(frames_dir / img.name)
        out = rectify_image(frame, dcam.img_from_cam, ucam.calibration_matrix(),
                            (ucam.width, ucam.height), rs["omega_rad_s"][img.name], readout_s)
        iio.imwrite(und / "images" / img.name, out)

    # frames are independent (the resampling releases the GIL): one per thread
    with ThreadPoolExecutor(max_workers=worker_threads()) as pool:
        list(pool.map(one, sorted(und_rec.reg_image_ids())))
