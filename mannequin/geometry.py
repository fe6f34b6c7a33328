"""Pure camera-geometry helpers shared by the stages.

Conventions (docs/FORMATS.md): intrinsics K are 3×3 in pixels with pixel centres at i + 0.5;
poses are world-to-camera, X_cam = R X_world + t, OpenCV axes (x right, y down, z forward).
"""
from __future__ import annotations

from typing import Any

import numpy as np


def check_K(K: Any, name: str = "K") -> np.ndarray:
    """Return ``K`` as a (3, 3) float64 pinhole matrix, or raise ValueError naming ``name``.

    ``K``: a (3, 3) array-like ``[[fx, s, cx], [0, fy, cy], [0, 0, 1]]`` in pixels, or an object with
    a ``K`` attribute (:class:`mannequin.io.cameras.Intrinsics`).  Refused: another shape,
    non-finite values, fx or fy ≤ 0, a last row other than (0, 0, 1).
    """
    if hasattr(K, "K") and not isinstance(K, np.ndarray):
        K = K.K
    a = np.asarray(K, dtype=np.float64)
    if a.shape != (3, 3):
        raise ValueError(f"{name} must be a 3x3 intrinsics matrix, got shape {a.shape}")
    if not np.isfinite(a).all():
        raise ValueError(f"{name} has non-finite values")
    if a[0, 0] <= 0 or a[1, 1] <= 0 or not np.allclose(a[2], (0.0, 0.0, 1.0)):
        raise ValueError(f"{name} must be a pinhole matrix [[fx,s,cx],[0,fy,cy],[0,0,1]] with fx, fy > 0")
    return a


def triangulation_angle_deg(c_a: np.ndarray, c_b: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Triangulation angle in degrees at each point: the angle between its rays to two camera centres.

    ``c_a``, ``c_b``: (3,) camera centres; ``points``: (P, 3), all in one frame and unit.
    Returns (P,) float64 in [0, 180].
    """
    a = np.asarray(c_a, dtype=np.float64) - points
    b = np.asarray(c_b, dtype=np.float64) - points
    cos = np.sum(a * b, 1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1) + 1e-300)
    return np.degrees(np.arccos(np.clip(cos, -1.0, 1.0)))
