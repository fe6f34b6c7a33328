"""Given poses (``sfm.given_poses``): refine a camera file's poses, or check them against SfM.

A camera file's poses (MC / RealEstate10K, from ORB-SLAM) have an arbitrary scale and are not
exact.  ``"refine"`` bundle-adjusts them with the triangulated points, intrinsics held fixed
(:func:`refine_poses`); ``"check"`` runs self-calibrated SfM instead.  Either way
:func:`camera_moves` measures how far each camera lies from its given pose after a Sim(3)
alignment of the other poses onto the given ones (rotation in degrees, centre as a share of the
median scene depth), for ``WS/sfm/summary.json`` ``given_poses``.

Poses are world-to-camera (``X_cam = R X_world + t``), OpenCV axes.
"""
from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pycolmap

from mannequin.io.cameras import CameraFile, CameraFrame, Pose
from mannequin.metrics import project_so3, rotation_errors_deg
from mannequin.sfm.rolling_shutter import rotation_matrices

log = logging.getLogger(__name__)

#: Rounds of bundle adjustment and re-triangulation in :func:`refine_poses`: the first adjusts the
#: poses on the points the given poses triangulate, the next re-triangulates from the adjusted
#: poses (more tracks pass the reprojection test) and adjusts again.
REFINE_ROUNDS = 2

#: The refinement's bundle adjustments stop at this relative cost decrease or iteration count: on the
#: synthetic MC clip (tests/sfm/test_given_poses.py, 1° and 3% perturbations) 1e-9 and 200 iterations
#: gave the same cameras (0.015° and 0.01% of the depth from the exact ones) in twice the time.
BA_FUNCTION_TOLERANCE = 1e-6
BA_MAX_ITERATIONS = 50


def align_to_given(given: Sequence[Pose], est: Sequence[Pose]) -> tuple[float, np.ndarray, np.ndarray]:
    """The similarity ``X_given = s · A · X_est + t`` that carries the world of the poses ``est`` onto
    the world of ``given`` (the same cameras, in the same order; N ≥ 2).

    ``A`` (3, 3) is the chordal mean of the cameras' rotation offsets (``R_given_iᵀ R_est_i``), so a
    straight or even a single-line trajectory aligns too (Umeyama on the centres alone leaves the
    turn about such a line free); ``s`` and ``t`` (3,) are the least-squares fit of the centres
    under that ``A`` (``s`` = 1 when the ``est`` centres all coincide).  Returns ``(s, A, t)``.
    """
    if len(given) != len(est) or len(est) < 2:
        raise ValueError(f"need the same cameras, at least 2, in both: got {len(given)} and {len(est)}")
    A = project_so3(sum((g.R.T @ e.R for g, e in zip(given, est, strict=True)), np.zeros((3, 3))))
    cg = np.array([g.center for g in given])
    ce = np.array([e.center for e in est])
    a = (ce - ce.mean(0)) @ A.T
    b = cg - cg.mean(0)
    aa = float(np.sum(a * a))
    s = float(np.sum(a * b) / aa) if aa > 1e-300 else 1.0
    if not s > 0:
        s = 1.0
    t = cg.mean(0) - s * A @ ce.mean(0)
    return s, A, t


def transform_pose(pose: Pose, s: float, A: np.ndarray, t: np.ndarray) -> Pose:
    """``pose`` (world-to-camera in the old world) in the world ``X_new = s · A · X_old + t``."""
    R = pose.R @ A.T
    return Pose.from_cam_to_world(R.T, s * A @ pose.center + t)


def camera_moves(mode: str, given: Mapping[str, Pose], est: Mapping[str, Pose], median_depth_est: float) -> dict[str, Any]:
    """The ``given_poses`` block of ``WS/sfm/summary.json``: how far each camera of ``est`` lies
    from its pose in ``given`` (frame name → pose, world-to-camera) after :func:`align_to_given`.

    ``median_depth_est``: the median scene depth in ``est``'s units (:func:`median_depth`).  Per
    frame (the names in both): ``rotation_deg``, the angle between the two camera orientations, and
    ``centre_move_rel``, the distance between the centres over the median scene depth (both in the
    given world's units).  Also their medians and maxima, ``scale`` (given units per ``est`` unit),
    ``median_depth`` (given units) and ``compared`` (frames).
    """
    names = sorted(set(given) & set(est))
    if len(names) < 2:
        return {"mode": mode, "compared": len(names), "frames": {}}
    g = [given[n] for n in names]
    e = [est[n] for n in names]
    s, A, t = align_to_given(g, e)
    rot = rotation_errors_deg(np.array([p.R for p in e]), np.array([p.R for p in g]), A)
    depth = s * median_depth_est
    moved = np.array([s * A @ p.center + t for p in e]) - np.array([p.center for p in g])
    rel = np.linalg.norm(moved, axis=1) / depth if depth > 0 else np.full(len(names), np.nan)
    return {
        "mode": mode, "compared": len(names), "scale": s, "median_depth": depth,
        "median_rotation_deg": float(np.median(rot)), "median_centre_move_rel": float(np.median(rel)),
        "max_rotation_deg": float(np.max(rot)), "max_centre_move_rel": float(np.max(rel)),
        "frames": {n: {"rotation_deg": float(r), "centre_move_rel": float(c)} for n, r, c in zip(names, rot, rel, strict=True)},
    }


def median_depth(rec: pycolmap.Reconstruction) -> float:
    """Median z-depth (model units) of the 3-D points over all their observations in ``rec``; NaN
    without points."""
    poses = {iid: rec.image(iid).cam_from_world() for iid in rec.reg_image_ids()}
    rows = {iid: (np.asarray(T.rotation.matrix())[2], float(np.asarray(T.translation)[2])) for iid, T in poses.items()}
    z = [float(r @ np.asarray(p.xyz)) + tz
         for p in rec.points3D.values() for el in p.track.elements if el.image_id in rows
         for r, tz in (rows[el.image_id],)]
    return float(np.median(z)) if z else float("nan")


def model_poses(rec: pycolmap.Reconstruction) -> dict[str, Pose]:
    """Frame name (image file stem) → world-to-camera pose of each registered image of ``rec``."""
    out = {}
    for iid in rec.reg_image_ids():
        img = rec.image(iid)
        T = img.cam_from_world()
        out[Path(img.name).stem] = Pose(np.asarray(T.rotation.matrix()), np.asarray(T.translation))
    return out


def _bundle_adjust_poses(rec: pycolmap.Reconstruction, loss_px: float) -> None:
    """Bundle-adjust the poses and points of ``rec`` in place, every camera's intrinsics constant,
    with a Cauchy loss of scale ``loss_px`` (0 = plain least squares)."""
    opts = pycolmap.BundleAdjustmentOptions()
    opts.refine_focal_length = False
    opts.refine_principal_point = False
    opts.refine_extra_params = False
    opts.print_summary = False
    opts.ceres.solver_options.function_tolerance = BA_FUNCTION_TOLERANCE
    opts.ceres.solver_options.max_num_iterations = BA_MAX_ITERATIONS
    if loss_px > 0:
        opts.ceres.loss_function_type = pycolmap.LossFunctionType.CAUCHY
        opts.ceres.loss_function_scale = float(loss_px)
    pycolmap.bundle_adjustment(rec, opts)


def _align_back(rec: pycolmap.Reconstruction, given: Mapping[str, Pose]) -> None:
    """Carry ``rec`` (poses and points) by the Sim(3) that best puts its cameras on ``given``."""
    est = model_poses(rec)
    names = sorted(set(given) & set(est))
    s, A, t = align_to_given([given[n] for n in names], [est[n] for n in names])
    rec.transform(pycolmap.Sim3d(s, pycolmap.Rotation3d(A), t))


def refine_poses(rec: pycolmap.Reconstruction, given: Mapping[str, Pose], db_path: Path, image_dir: Path,
                 work: Path, loss_px: float) -> pycolmap.Reconstruction:
    """Refine the given poses of ``rec`` (triangulated with them held fixed): :data:`REFINE_ROUNDS`
    rounds of a bundle adjustment of poses and points with the intrinsics constant, each followed
    by the Sim(3) that puts the cameras back on ``given`` (frame name → pose) — the refined poses
    stay in the given frame and scale — and, but after the last, a re-triangulation of the
    database's matches (``db_path``, images in ``image_dir``) from the adjusted poses (scratch in
    ``work/refined_<k>``).  Returns the refined model."""
    for k in range(REFINE_ROUNDS):
        if k > 0:
            out = work / f"refined_{k}"
            out.mkdir()
            rec = pycolmap.triangulate_points(rec, str(db_path), str(image_dir), str(out), clear_points=True,
                                              refine_intrinsics=False)
        _bundle_adjust_poses(rec, loss_px)
        _align_back(rec, given)
    return rec


def given_by_name(cam_file: CameraFile, names: Sequence[str]) -> dict[str, Pose]:
    """Frame name → given pose: ``cam_file``'s lines are those of the frames ``names``, in order."""
    return {n: f.pose for n, f in zip(names, cam_file.frames, strict=True)}


def perturb_poses(frames: Sequence[CameraFrame], seed: int, rotation_deg: float, centre_sd: float) -> list[CameraFrame]:
    """Copies of ``frames`` with seeded noise on their poses (tests and benchmarks: poses like
    ORB-SLAM's, not exact): each camera turned about a random axis by a rotation vector with
    per-axis standard deviation ``rotation_deg`` / √3 (so the RMS angle is ``rotation_deg``), and its
    centre moved by Gaussian noise of standard deviation ``centre_sd`` / √3 per axis (pose units;
    RMS move ``centre_sd``).  Timestamps and intrinsics are kept."""
    rng = np.random.default_rng(seed)
    out = []
    for f in frames:
        w = np.radians(rotation_deg) / np.sqrt(3) * rng.standard_normal(3)
        dR = rotation_matrices(w)
        R = dR @ f.pose.R
        c = f.pose.center + centre_sd / np.sqrt(3) * rng.standard_normal(3)
        out.append(dataclasses.replace(f, pose=Pose.from_cam_to_world(R.T, c)))
    return out

