"""Intrinsics for self-calibrated sfm: given calibrations (``--intrinsics``), the field-of-view
prior, and the shared camera the COLMAP database starts from.

Pixels follow COLMAP's convention (the centre of the top-left pixel is (0.5, 0.5)) unless said
otherwise; calibration tools' values (OpenCV's convention, centres at integers) are converted.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from mannequin.config import SfmConfig
from mannequin.errors import InputError
from mannequin.io.cameras import Intrinsics

#: A given calibration: the intrinsics and the distortion terms (empty, 4 or 5 values, OpenCV order).
GivenIntrinsics = tuple[Intrinsics, tuple[float, ...]]


def parse_intrinsics(spec: str, width: int, height: int, option: str = "--intrinsics") -> GivenIntrinsics:
    """Parse ``fx,fy,cx,cy[,k1,k2,p1,p2[,k3]]`` (pixels of the input frames) or a file holding it.

    The values follow OpenCV's convention (the centre of the top-left pixel is (0, 0)), as
    calibration tools write them; the returned intrinsics use COLMAP's (+0.5).

    Returns the intrinsics for a ``width`` × ``height`` input frame and the distortion tuple
    (empty, 4 or 5 values, OpenCV order).  Raises :class:`InputError` naming ``option`` for text that
    is not 4, 8 or 9 finite numbers, non-positive focal lengths, or a radial distortion that folds
    back inside the frame (:func:`radial_fold_radius`; not checked when the size is 1 × 1, unknown).
    """
    text = spec
    p = Path(spec)
    if "," not in spec:
        if not p.is_file():
            raise InputError(f"{option} {spec!r}: no such file, and not fx,fy,cx,cy[,k1,k2,p1,p2[,k3]]")
        try:
            text = p.read_text(encoding="utf-8").replace("\n", ",").replace(" ", ",")
        except (OSError, UnicodeDecodeError):
            raise InputError(f"{option} {spec}: cannot read the file as text") from None
    vals = [v for v in text.split(",") if v.strip()]
    try:
        nums = [float(v) for v in vals]
    except ValueError:
        raise InputError(f"{option} {spec!r}: expected numbers fx,fy,cx,cy[,k1,k2,p1,p2[,k3]]") from None
    if len(nums) not in (4, 8, 9) or not all(math.isfinite(v) for v in nums):
        raise InputError(f"{option} {spec!r}: expected 4, 8 or 9 finite numbers, got {len(nums)}")
    fx, fy, cx, cy = nums[:4]
    if fx <= 0 or fy <= 0:
        raise InputError(f"{option} {spec!r}: focal lengths must be positive")
    dist = tuple(nums[4:])
    if dist and width > 1 and height > 1:
        _check_no_fold(spec, option, (fx, fy, cx, cy), dist, width, height)
    # Calibration tools (OpenCV, TUM) put pixel centres at integers; COLMAP at +0.5.
    return Intrinsics(fx, fy, cx + 0.5, cy + 0.5, width, height), dist


def _check_no_fold(spec: str, option: str, K: tuple[float, float, float, float], dist: tuple[float, ...],
                   width: int, height: int) -> None:
    """Refuse (InputError) distortion whose radial model folds back inside the frame's corners."""
    fx, fy, cx, cy = K
    k1, k2, k3 = dist[0], dist[1], (dist[4] if len(dist) > 4 else 0.0)
    fold = radial_fold_radius(k1, k2, k3)
    corners = [math.hypot((u - cx) / fx, (v - cy) / fy) for u in (-0.5, width - 0.5) for v in (-0.5, height - 0.5)]
    r_fold = fold * (1 + k1 * fold ** 2 + k2 * fold ** 4 + k3 * fold ** 6) if math.isfinite(fold) else math.inf
    if r_fold < max(corners):
        raise InputError(
            f"{option} {spec!r}: the radial distortion (k1 {k1:g}, k2 {k2:g}, k3 {k3:g}) folds back "
            f"{r_fold * fx:.0f} px from the principal point, inside the {width}x{height} frame (corner at "
            f"{max(corners) * fx:.0f} px), so the frames cannot be undistorted; give all the calibration's "
            "coefficients (OpenCV order k1,k2,p1,p2,k3)")


def radial_fold_radius(k1: float, k2: float, k3: float = 0.0, r_max: float = 4.0) -> float:
    """The smallest undistorted normalised radius r in (0, ``r_max``] where OpenCV's radial model
    ``r (1 + k1 r^2 + k2 r^4 + k3 r^6)`` stops growing (its derivative ``1 + 3 k1 r^2 + 5 k2 r^4 +
    7 k3 r^6`` reaches 0): beyond it two rays land on one pixel and the image cannot be undistorted.
    ``inf`` when the model grows all the way (r_max 4 is a 152° field of view)."""
    r = np.linspace(0.0, r_max, 4001)
    d = 1 + 3 * k1 * r ** 2 + 5 * k2 * r ** 4 + 7 * k3 * r ** 6
    bad = np.nonzero(d <= 0)[0]
    return float(r[bad[0]]) if bad.size else math.inf


def focal_from_fov(width: int, fov_deg: float) -> float:
    """Focal length (pixels) of a ``width``-pixel-wide image with a horizontal field of view ``fov_deg``."""
    return 0.5 * width / math.tan(math.radians(fov_deg) / 2)


def max_extra_param(intrinsics: GivenIntrinsics | None) -> float:
    """COLMAP's bound on the distortion terms while mapping (``max_extra_param``): 1, or twice the
    largest given term."""
    return max([1.0] + [2 * abs(v) for v in (intrinsics[1] if intrinsics else ())])


def initial_camera(cfg: SfmConfig, width: int, height: int, intrinsics: GivenIntrinsics | None = None) -> tuple[str, str]:
    """COLMAP camera model and initial parameters (comma string, COLMAP's order, pixels) of the shared
    camera of ``width`` × ``height`` frames: the given ``intrinsics`` (PINHOLE, OPENCV or FULL_OPENCV
    after their distortion terms), else ``cfg.camera_model`` with the focal of ``cfg.fov_deg``, the
    principal point at the centre and no distortion.  Raises :class:`InputError` for a camera model
    it cannot start."""
    if intrinsics is not None:
        intr, dist = intrinsics
        k = intr.scaled(width, height)
        base = [k.fx, k.fy, k.cx, k.cy]
        if not dist:
            return "PINHOLE", ",".join(repr(v) for v in base)
        if len(dist) == 4:
            return "OPENCV", ",".join(repr(v) for v in base + list(dist))
        return "FULL_OPENCV", ",".join(repr(v) for v in base + list(dist) + [0.0, 0.0, 0.0])
    f = focal_from_fov(width, cfg.fov_deg)
    if cfg.camera_model == "SIMPLE_RADIAL":
        return "SIMPLE_RADIAL", f"{f},{width / 2},{height / 2},0"
    if cfg.camera_model == "RADIAL":
        return "RADIAL", f"{f},{width / 2},{height / 2},0,0"
    if cfg.camera_model == "OPENCV":
        return "OPENCV", f"{f},{f},{width / 2},{height / 2},0,0,0,0"
    if cfg.camera_model in ("PINHOLE", "SIMPLE_PINHOLE"):
        return cfg.camera_model, (f"{f},{f}," if cfg.camera_model == "PINHOLE" else f"{f},") + f"{width / 2},{height / 2}"
    raise InputError(f"sfm.camera_model {cfg.camera_model!r}: use SIMPLE_RADIAL, RADIAL, OPENCV, PINHOLE or SIMPLE_PINHOLE")
