"""Diagnostics of an sfm model: triangulation angles, parallax beyond a pure rotation, rotation
reversals, the checks that fail a run, and the warnings of ``WS/sfm/summary.json``.

Models are ``pycolmap.Reconstruction``: poses world-to-camera, OpenCV axes (x right, y down,
z forward), angles in degrees.  The measurements behind the thresholds are in docs/FINDINGS.md.
"""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import pycolmap

from mannequin.config import SfmConfig
from mannequin.errors import StageError


def point_triangulation_angles(rec: pycolmap.Reconstruction) -> np.ndarray:
    """Triangulation angle of each 3-D point of ``rec`` seen by at least two registered images: the
    largest angle (degrees) between its rays to two of their centres, over every pair.  Returns
    (P,) float64, in the model's point order.

    The angle of one pair is :func:`mannequin.geometry.triangulation_angle_deg`'s up to rounding;
    here every pair of a point comes from one product of its normalised rays."""
    centers = {iid: rec.image(iid).projection_center() for iid in rec.reg_image_ids()}
    out = []
    for pt in rec.points3D.values():
        ids = sorted({el.image_id for el in pt.track.elements})
        if len(ids) < 2:
            continue
        rays = np.array([centers[i] for i in ids]) - pt.xyz
        rays /= np.linalg.norm(rays, axis=1, keepdims=True)
        cos = np.clip(rays @ rays.T, -1, 1)
        out.append(math.degrees(math.acos(cos.min())))
    return np.array(out)


def median_triangulation_angle(rec: pycolmap.Reconstruction) -> float:
    """Median of :func:`point_triangulation_angles` (degrees), 0 without a point."""
    angles = point_triangulation_angles(rec)
    return float(np.median(angles)) if len(angles) else 0.0


def best_rotation(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The rotation R (3, 3) minimising sum |b_k - R a_k|^2 over unit vectors a, b (K, 3) (Kabsch)."""
    U, _, Vt = np.linalg.svd(a.T @ b)
    D = np.diag([1.0, 1.0, np.sign(np.linalg.det(Vt.T @ U.T))])
    return Vt.T @ D @ U.T


def _unit_bearings(rec: pycolmap.Reconstruction, db: pycolmap.Database, image_ids: set[int]) -> dict[int, np.ndarray]:
    """Each image's database keypoints as unit bearings (K, 3) through ``rec``'s camera (NaN where
    the lens model cannot undistort them)."""
    bearings = {}
    for i in image_ids:
        cam = rec.camera(rec.image(i).camera_id)
        xy = np.asarray(cam.cam_from_img(db.read_keypoints(i)[:, :2].astype(np.float64)), dtype=np.float64)
        b = np.hstack([xy, np.ones((len(xy), 1))])
        bearings[i] = b / np.linalg.norm(b, axis=1, keepdims=True)
    return bearings


def _pair_parallax(a: np.ndarray, b: np.ndarray) -> float:
    """Median angle (degrees) left between matched bearings ``b`` and ``a`` rotated by their best
    rotation, fitted three times on the 90 % best matches."""
    keep = np.ones(len(a), dtype=bool)
    for _ in range(3):
        R = best_rotation(a[keep], b[keep])
        ang = np.degrees(np.arccos(np.clip(np.sum((a @ R.T) * b, axis=1), -1.0, 1.0)))
        keep = ang <= np.percentile(ang, 90)
    return float(np.median(ang))


def rotation_parallax(rec: pycolmap.Reconstruction, db_path: os.PathLike | str, min_matches: int = 20) -> dict[str, Any]:
    """How much parallax the verified matches show beyond what a pure camera rotation explains.

    For every verified pair of frames registered in ``rec`` with at least ``min_matches`` inlier
    matches in the COLMAP database ``db_path``, the keypoints become unit bearings through the
    model's camera (refined intrinsics and distortion), the rotation that best maps one frame's
    bearings onto the other's is fitted (Kabsch, re-fitted twice on the 90 % best matches), and the
    pair's parallax is the median angle left between the rotated and the observed bearings.

    A camera that only turns in place sees every match move by one rotation: what is left is feature
    noise.  A translating camera leaves the parallax of the scene's depth differences, which no
    rotation absorbs.  Unlike the triangulation angle, this uses neither the model's 3-D points nor
    its camera centres, which pure rotation leaves undetermined.

    Returns {"parallax_deg": the 90th percentile of the pairs' parallax (None without a qualifying
    pair), "median_pair_deg", "max_pair_deg", "pairs"}.
    """
    reg = set(rec.reg_image_ids())
    db = pycolmap.Database.open(str(db_path))
    try:
        pair_ids, geometries = db.read_two_view_geometries()
        bearings = _unit_bearings(rec, db, reg)
    finally:
        db.close()
    per_pair = []
    for pid, geo in zip(pair_ids, geometries, strict=False):
        i, j = pycolmap.pair_id_to_image_pair(pid)
        m = np.asarray(geo.inlier_matches)
        if i not in reg or j not in reg or len(m) < min_matches:
            continue
        a, b = bearings[i][m[:, 0]], bearings[j][m[:, 1]]
        finite = np.isfinite(a).all(axis=1) & np.isfinite(b).all(axis=1)  # keypoints the lens model cannot undistort
        if finite.sum() < min_matches:
            continue
        per_pair.append(_pair_parallax(a[finite], b[finite]))
    if not per_pair:
        return {"parallax_deg": None, "median_pair_deg": None, "max_pair_deg": None, "pairs": 0}
    v = np.array(per_pair)
    return {"parallax_deg": float(np.percentile(v, 90)), "median_pair_deg": float(np.median(v)),
            "max_pair_deg": float(v.max()), "pairs": len(v)}


def rotation_reversal(rec: pycolmap.Reconstruction, timestamps: dict[str, int], max_rate_deg_s: float = 30.0) -> dict[str, Any]:
    """Angular velocity of the camera along the clip and whether fast rotation reverses.

    The rotation rate between registered frames three apart (degrees per second, from
    ``timestamps``, image file name → µs, else 30 fps) is projected on its dominant axis.
    ``reversal`` is true when it exceeds ``max_rate_deg_s`` one way somewhere and the other way
    elsewhere: a rolling-shutter image is sheared or stretched in proportion to the rate, so frames
    turning one way do not fit one global-shutter model with frames turning the other way.  Returns
    {"max_rate_deg_s", "reversal"} and, with a reversal, "reversal_frame" (the stem of the first
    frame after the sign change between the two fastest opposite turns), "rate_before_deg_s" and
    "rate_after_deg_s" (the fastest rates on either side).
    """
    from scipy.spatial.transform import Rotation

    ids = sorted(rec.reg_image_ids(), key=lambda i: rec.image(i).name)
    if len(ids) < 3:
        return {"max_rate_deg_s": 0.0, "reversal": False}
    names = [rec.image(i).name for i in ids]
    Rs = [rec.image(i).cam_from_world().rotation.matrix() for i in ids]
    step = min(3, len(ids) - 1)  # over ~0.1 s: a per-frame rate would amplify pose noise
    per_step = []
    for k in range(len(ids) - step):
        t0, t1 = timestamps.get(names[k]), timestamps.get(names[k + step])
        dt = (t1 - t0) * 1e-6 if t0 is not None and t1 is not None and t1 > t0 else step / 30
        per_step.append(np.degrees(Rotation.from_matrix(Rs[k + step] @ Rs[k].T).as_rotvec()) / dt)
    rates = np.array(per_step)
    s = rates @ np.linalg.svd(rates, full_matrices=False)[2][0]
    out: dict[str, Any] = {"max_rate_deg_s": float(np.linalg.norm(rates, axis=1).max()), "reversal": False}
    hi, lo = int(np.argmax(s)), int(np.argmin(s))
    if s[hi] > max_rate_deg_s and -s[lo] > max_rate_deg_s:
        a, b = sorted((hi, lo))
        cross = next((k for k in range(a + 1, b + 1) if np.sign(s[k]) != np.sign(s[a])), b)
        first_after = names[min(cross + (step + 1) // 2, len(names) - 1)]
        out.update({"reversal": True, "reversal_frame": Path(first_after).stem,
                    "rate_before_deg_s": float(abs(s[a])), "rate_after_deg_s": float(abs(s[b]))})
    return out


def readout_warning(rs: dict[str, Any], sure_gain: float) -> str | None:
    """The warning for a rolling-shutter readout chosen by the auto search with a gain under
    ``sure_gain`` (:class:`SfmConfig` readout_sure_gain), or None.  ``rs``: the ``rolling_shutter``
    report of ``sfm/summary.json`` (``readout_ms``, ``gain``, ``median_reprojection_px``)."""
    gain = rs.get("gain")
    if not rs.get("readout_ms") or gain is None or gain >= sure_gain:
        return None
    scores = {float(k): v for k, v in (rs.get("median_reprojection_px") or {}).items()}
    cand = [v for k, v in scores.items() if k > 0]
    seen = (f" (candidates {min(cand):.3f}-{max(cand):.3f} px, none {scores[0.0]:.3f} px)"
            if cand and 0.0 in scores else "")
    return (f"rolling-shutter readout poorly determined: the {rs['readout_ms']:g} ms chosen lowers the "
            f"reprojection error by only {gain:.1%}{seen}, so the model absorbed most of the skew; on a "
            "camera that mostly turns it does so by bending depth (near too far, far too near); pass "
            "--readout-ms if the camera's readout time is known")


def _reversal_warning(motion: dict[str, Any], readout_ms: float) -> str:
    return (f"the camera turns at up to {motion['rate_before_deg_s']:.0f}°/s one way and "
            f"{motion['rate_after_deg_s']:.0f}°/s the other (reversal at frame {motion['reversal_frame']}): "
            "with a rolling-shutter camera the image distortion flips sign there, so frames on the two "
            "sides disagree and poses and depth are unreliable; the rolling-shutter correction was "
            + ("off" if readout_ms == 0 else "not applied") +
            " (pass --readout-ms with the camera's readout time, or split the clip at that frame)")


def _focal_spread_warning(calibration: dict[str, Any]) -> str:
    starts = ", ".join(f"{t['focal_px']:.0f} px from " + (f"{t['fov_prior_deg']:g}°" if t.get("fov_prior_deg") is not None
                                                         else f"{t.get('prior_focal_px') or 0:.0f} px")
                       for t in calibration["starts"])
    return (f"focal length poorly determined: refined focals spread {calibration['focal_spread']:.0%} across priors "
            f"({starts}); pass --intrinsics if the calibration is known")


def summary_warnings(summary: dict[str, Any], cfg: SfmConfig) -> list[str]:
    """The warnings of an sfm summary (``WS/sfm/summary.json`` without them): a fast rotation that
    reverses with no rolling-shutter correction applied (self-calibrated runs only: known poses are
    used as given), a poorly determined readout (:func:`readout_warning`), and a focal that spreads
    by more than ``cfg.max_focal_spread`` across the field-of-view priors."""
    warnings = []
    rs = summary.get("rolling_shutter") or {}
    motion = summary["rotation"]
    if summary["mode"] == "sfm" and motion.get("reversal") and not rs.get("readout_ms"):
        warnings.append(_reversal_warning(motion, cfg.readout_ms))
    readout_doubt = readout_warning(rs, cfg.readout_sure_gain)
    if readout_doubt:
        warnings.append(readout_doubt)
    calibration = summary.get("calibration") or {}
    spread = calibration.get("focal_spread")
    if spread is not None and spread > cfg.max_focal_spread:
        warnings.append(_focal_spread_warning(calibration))
    return warnings


def check_registration(rec: pycolmap.Reconstruction, n_frames: int, cfg: SfmConfig) -> None:
    """Fail (StageError) when fewer than ``cfg.min_registered`` of the ``n_frames`` frames registered."""
    frac = rec.num_reg_images() / n_frames
    if frac < cfg.min_registered:
        raise StageError(f"only {rec.num_reg_images()} of {n_frames} frames registered "
                         f"({frac:.0%} < {cfg.min_registered:.0%} required)")


def check_points(rec: pycolmap.Reconstruction, cfg: SfmConfig, frames_dir: Path) -> None:
    """Fail (StageError) a degenerate model: fewer than ``cfg.min_points`` 3-D points."""
    if rec.num_points3D() < cfg.min_points:
        raise StageError(
            f"{frames_dir}: the model has only {rec.num_points3D()} 3-D points for "
            f"{rec.num_reg_images()} frames (< {cfg.min_points}): a degenerate reconstruction "
            "(too little texture or parallax)")


def check_parallax(parallax: dict[str, Any], cfg: SfmConfig, frames_dir: Path) -> None:
    """Fail (StageError) a camera that only rotates: :func:`rotation_parallax` below
    ``cfg.min_parallax_deg``."""
    p = parallax["parallax_deg"]
    if p is not None and p < cfg.min_parallax_deg:
        raise StageError(
            f"{frames_dir}: the camera only rotates: no parallax to give depth (the matches show "
            f"{p:.3f}° beyond a pure rotation, below sfm.min_parallax_deg {cfg.min_parallax_deg}°)")


def check_triangulation(median_angle: float, cfg: SfmConfig, frames_dir: Path) -> None:
    """Fail (StageError) when the median triangulation angle (degrees) is below
    ``cfg.min_triangulation_deg``: depth is unobservable."""
    if median_angle < cfg.min_triangulation_deg:
        raise StageError(
            f"{frames_dir}: median triangulation angle {median_angle:.2f}° is below "
            f"{cfg.min_triangulation_deg}°: the camera barely translates (static or pure rotation), "
            "so depth is unobservable")
