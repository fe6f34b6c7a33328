"""Known-pose sfm (``--poses``): a camera file's intrinsics and world-to-camera poses used exactly,
sparse points triangulated with them held fixed.

The camera file (MC / RealEstate10K format, :mod:`mannequin.io.cameras`) has one line per input
frame; the frames stage may have dropped some (:func:`poses_for_frames`).
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pycolmap

from mannequin.errors import InputError, StageError
from mannequin.frames import input_line_of
from mannequin.io.cameras import CameraFile, CameraFrame, read_cameras, to_reconstruction
from mannequin.workspace import Workspace


def check_known_cameras(cam_file: CameraFile, label: str) -> None:
    """Refuse (InputError naming ``label``, the file) a camera file that known-pose import cannot
    use as given: intrinsics that differ between frames (one shared camera per clip), or
    non-zero distortion terms (the format's are always 0; the frames must be undistorted)."""
    f0 = cam_file.frames[0]
    for i, f in enumerate(cam_file.frames):
        if not np.allclose([f.fx, f.fy, f.cx, f.cy], [f0.fx, f0.fy, f0.cx, f0.cy], rtol=1e-9, atol=1e-12):
            raise InputError(f"{label}, frame line {i + 1}: intrinsics differ from the first frame's; "
                             "one shared camera per clip is supported")
        if f.k1 != 0 or f.k2 != 0:
            raise InputError(f"{label}, frame line {i + 1}: distortion terms {f.k1:g} {f.k2:g} are not "
                             "supported (the format's are always 0); undistort the frames first")


def poses_for_frames(cam_file: CameraFile, poses: os.PathLike | str, ws: Workspace, names: Sequence[str]) -> CameraFile:
    """The camera lines of the frames the frames stage kept, in the order of ``names``.

    A camera file has one line per input frame (:func:`mannequin.frames.stage.input_line_of`), dropped
    frames included (blurred, or past ``max_frames``); the lines of dropped frames are left out.
    Raises :class:`InputError` naming ``poses`` when the counts do not match.
    """
    if not ws.frames_csv.exists():
        if len(cam_file) != len(names):
            raise InputError(f"{poses}: {len(cam_file)} camera lines for {len(names)} frames in {ws.frames_dir}")
        return cam_file
    try:
        line_of = input_line_of(ws.frames_csv, ws.frames_json, len(cam_file), str(poses))
    except InputError as exc:
        raise InputError(str(exc).replace(" lines for ", " camera lines for ", 1)) from None
    missing = [n for n in names if n not in line_of]
    if missing:
        raise InputError(f"{ws.frames_csv}: frame {missing[0]} is not listed; run the frames stage again")
    return CameraFile(url=cam_file.url, frames=[cam_file.frames[line_of[n]] for n in names])


def load_known_poses(poses: os.PathLike | str, ws: Workspace, names: Sequence[str]) -> CameraFile:
    """Read the camera file ``poses``, check it (:func:`check_known_cameras`) and keep the lines of
    the frames ``names`` (:func:`poses_for_frames`)."""
    cam_file = read_cameras(poses)
    check_known_cameras(cam_file, str(poses))
    return poses_for_frames(cam_file, poses, ws, names)


def known_camera(cam_file: CameraFile, width: int, height: int) -> tuple[str, str]:
    """The shared PINHOLE camera of ``cam_file`` on ``width`` × ``height`` frames: ("PINHOLE",
    "fx,fy,cx,cy" in pixels, COLMAP's convention) for the database."""
    intr = cam_file.frames[0].intrinsics(width, height)
    return "PINHOLE", ",".join(repr(v) for v in (intr.fx, intr.fy, intr.cx, intr.cy))


def triangulate_known(cam_file: CameraFile, image_names: Sequence[str], width: int, height: int, db_path: Path,
                      image_dir: Path, work: Path) -> pycolmap.Reconstruction:
    """Triangulate the database's matches with the poses and intrinsics of ``cam_file`` held fixed.

    ``image_names``: the frames' file names, in the camera file's order (the database holds the one
    shared camera with id 1 and images 1..N in sorted-name order).  Scratch goes to
    ``work/triangulated``."""
    rec = to_reconstruction(cam_file.frames, list(image_names), width, height)
    out = work / "triangulated"
    out.mkdir()
    return pycolmap.triangulate_points(rec, str(db_path), str(image_dir), str(out), refine_intrinsics=False)


def check_known_poses_fit(rec: pycolmap.Reconstruction, poses: os.PathLike | str) -> None:
    """Known poses that do not fit the frames (wrong intrinsics, lines out of order, camera-to-world
    instead of world-to-camera) triangulate points that some frame sees behind it: a clear error
    naming the camera file, instead of a failure deep in stereo."""
    # Imported here: mannequin.stereo loads Numba, which the rest of the sfm stage does not need.
    from mannequin.stereo import depth_range, sparse_geometry

    geo = sparse_geometry(rec)
    for i in range(len(geo.names)):
        try:
            depth_range(geo, i)
        except StageError as exc:
            raise StageError(f"{poses}: {exc}; the camera file does not fit the frames (check its intrinsics, "
                             "the order of its lines, and that [R|t] is world-to-camera)") from None


def keep_input_poses(frames: Sequence[CameraFrame], reg_names: Sequence[str], cam_file: CameraFile,
                     image_names: Sequence[str]) -> None:
    """Give ``frames`` (registered images ``reg_names``) the input poses of ``cam_file`` (whose lines
    are those of ``image_names``) bit-exact, in place: the model round-trip goes through quaternions."""
    by_name = dict(zip(image_names, cam_file.frames, strict=False))
    for f, n in zip(frames, reg_names, strict=False):
        f.pose = by_name[n].pose
