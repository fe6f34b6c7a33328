"""Undistortion of the frames and the model: ``WS/images`` and the PINHOLE ``WS/sparse``."""
from __future__ import annotations

from pathlib import Path

import pycolmap


def undistort(model_dir: Path, frames_dir: Path, out: Path) -> None:
    """Undistort the frames of ``frames_dir`` and the model in ``model_dir`` into ``out/images``
    and ``out/sparse`` (pycolmap).  Scale 1 keeps the frame size and principal point (labels stay on
    the input pixel grid); with strong distortion a few border pixels are blank."""
    opts = pycolmap.UndistortCameraOptions()
    opts.min_scale = opts.max_scale = 1.0
    pycolmap.undistort_images(str(out), str(model_dir), str(frames_dir), undistort_options=opts)


def as_pinhole(rec: pycolmap.Reconstruction) -> bool:
    """Make every camera of ``rec`` without distortion terms PINHOLE (fx, fy, cx, cy), in place;
    returns whether any changed.  pycolmap's undistortion copies a camera whose distortion terms are
    all 0 as it is (SIMPLE_RADIAL with k = 0, OPENCV with zeros), but WS/sparse is PINHOLE."""
    changed = False
    for cam in rec.cameras.values():
        if cam.model.name == "PINHOLE" or any(cam.params[i] != 0 for i in cam.extra_params_idxs()):
            continue
        K = cam.calibration_matrix()
        cam.model = type(cam.model).PINHOLE
        cam.params = [K[0, 0], K[1, 1], K[0, 2], K[1, 2]]
        changed = True
    return changed


def read_undistorted(out: Path) -> pycolmap.Reconstruction:
    """The undistorted model in ``out/sparse`` (:func:`undistort`), its cameras made PINHOLE
    (:func:`as_pinhole`, written back when any changed)."""
    rec = pycolmap.Reconstruction(str(out / "sparse"))
    if as_pinhole(rec):
        rec.write(str(out / "sparse"))
    return rec
