"""The smooth-motion adjustment of a video's self-calibrated model (``sfm.accel_sigma``).

The adjustment itself (a bundle adjustment with a prior on the camera centres' acceleration) is
pure numpy in :mod:`mannequin.sfm.motion_prior`; this module feeds it a pycolmap model's poses,
points and observations and writes the result back.  Poses are world-to-camera, OpenCV axes.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import pycolmap

from mannequin.sfm.motion_prior import mean_reprojection_px, smooth_bundle_adjust

#: Levenberg-Marquardt stops after this many steps or when a step lowers the cost by under this
#: fraction (the trade-off measured on TUM: docs/FINDINGS.md).
MOTION_MAX_ITERATIONS = 30
MOTION_TOLERANCE = 1e-5
#: ``sfm.accel_sigma`` is the prior's width for a model whose mean reprojection error is this many
#: pixels or more (it was tuned on TUM fr1/rpy, about 1.0-1.1 px); a model that fits its images more
#: closely gets a proportionally wider prior (:func:`prior_width`), so the prior gives way where the
#: images decide.
REFERENCE_NOISE_PX = 1.0
#: The reprojection noise used for :func:`prior_width` is at least this (pixels).
MIN_NOISE_PX = 0.05


def prior_width(accel_sigma: float, depth: float, noise_px: float) -> float:
    """The smooth-motion prior's standard deviation in model units per s².

    ``accel_sigma`` (median depths per s²), ``depth`` (the median scene depth, model units) and
    ``noise_px`` (the model's mean reprojection error, pixels).  The adjustment weighs every
    reprojection residual as if its noise were 1 px; for a model that fits its images more closely
    than :data:`REFERENCE_NOISE_PX`, the width grows by that ratio (the same balance as the images
    weighed at their own noise, floored at :data:`MIN_NOISE_PX`), so well-measured centres follow
    their images.  It never narrows: at or above the reference it is ``accel_sigma × depth``.
    """
    if not (accel_sigma > 0 and depth > 0 and np.isfinite(noise_px)):
        raise ValueError(f"need accel_sigma > 0, depth > 0 and a finite noise, got {accel_sigma}, {depth}, {noise_px}")
    return accel_sigma * depth * REFERENCE_NOISE_PX / min(max(noise_px, MIN_NOISE_PX), REFERENCE_NOISE_PX)


@dataclass
class _Observations:
    """A model's observations in :func:`~mannequin.sfm.motion_prior.smooth_bundle_adjust`'s terms."""

    point_ids: list[int]  #: pycolmap ids of the points, in the order of ``X``
    X: np.ndarray  #: (M, 3) points, world frame
    frame: np.ndarray  #: (K,) index of each observation's image
    point: np.ndarray  #: (K,) index of each observation's point
    xy: np.ndarray  #: (K, 2) normalised undistorted image coordinates


def _observations(rec: pycolmap.Reconstruction, images: list[pycolmap.Image]) -> _Observations:
    pids = sorted(rec.points3D)
    index = {p: k for k, p in enumerate(pids)}
    X = np.array([rec.points3D[p].xyz for p in pids], dtype=np.float64).reshape(-1, 3)
    of: list[int] = []
    op: list[int] = []
    xy = []
    for fi, im in enumerate(images):
        cam = rec.camera(im.camera_id)
        pts = [q for q in im.points2D if q.has_point3D()]
        if not pts:
            continue
        xy.append(np.asarray(cam.cam_from_img(np.ascontiguousarray([q.xy for q in pts], dtype=np.float64))))
        of += [fi] * len(pts)
        op += [index[q.point3D_id] for q in pts]
    return _Observations(pids, X, np.asarray(of), np.asarray(op), np.concatenate(xy))


def smooth_motion(rec: pycolmap.Reconstruction, timestamps: dict[str, int], accel_sigma: float, loss_px: float,
                  is_video: bool) -> dict[str, Any]:
    """Adjust ``rec``'s poses and points in place under a smooth-motion prior on the camera centres
    (:func:`mannequin.sfm.motion_prior.smooth_bundle_adjust`; intrinsics fixed).  Returns a report.

    ``timestamps``: image file name → µs.  ``accel_sigma`` is in median scene depths per s² (the
    model has no metric scale): the median depth of the observations sets the unit, and the width
    used is :func:`prior_width` (wider where the model fits its images more closely than 1 px);
    ``loss_px`` is the Cauchy loss scale (0 = squared).  Skipped (and said so) when ``accel_sigma`` is 0, on an
    image folder (``is_video`` false: no frame times), or with fewer than 5 registered frames."""
    if accel_sigma <= 0:
        return {"applied": False, "skipped": "sfm.accel_sigma is 0"}
    if not is_video:
        return {"applied": False, "skipped": "not a video (no frame times)"}
    images = sorted((rec.image(i) for i in rec.reg_image_ids()), key=lambda im: timestamps.get(im.name, 0))
    times = np.array([timestamps.get(im.name, 0) for im in images], dtype=np.float64) * 1e-6
    if len(images) < 5 or not np.all(np.diff(times) > 0):
        return {"applied": False, "skipped": "fewer than 5 registered frames with increasing times"}
    t0 = time.perf_counter()
    obs = _observations(rec, images)
    R = np.array([im.cam_from_world().rotation.matrix() for im in images])
    C = np.array([im.projection_center() for im in images])
    z = np.einsum("kj,kj->k", R[obs.frame][:, 2], obs.X[obs.point] - C[obs.frame])
    zmed = float(np.median(z))
    K = rec.camera(images[0].camera_id).calibration_matrix()
    focal_px = 0.5 * float(K[0, 0] + K[1, 1])
    noise = mean_reprojection_px(R, C, obs.X, obs.frame, obs.point, obs.xy, focal_px)
    width = prior_width(accel_sigma, zmed, noise)
    R2, C2, X2, report = smooth_bundle_adjust(
        R, C, obs.X, obs.frame, obs.point, obs.xy, times, focal_px=focal_px,
        accel_sigma=width, loss_px=loss_px, max_iterations=MOTION_MAX_ITERATIONS,
        tolerance=MOTION_TOLERANCE)
    for im, Ri, Ci in zip(images, R2, C2, strict=False):
        rec.frame(im.frame_id).rig_from_world = pycolmap.Rigid3d(pycolmap.Rotation3d(Ri), -Ri @ Ci)
    for p, x in zip(obs.point_ids, X2, strict=False):
        rec.points3D[p].xyz = x
    # The report's accelerations in median depths per s², like accel_sigma.
    for k in ("accel_before", "accel_after"):
        report[k] /= zmed
    return {"applied": True, "accel_sigma": accel_sigma, "noise_px": noise,
            "prior_width": width / zmed, **report, "seconds": time.perf_counter() - t0}
