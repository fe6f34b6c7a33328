"""The sfm stage: camera poses and intrinsics (pycolmap, or a camera file) to WS/sparse and WS/images."""
from mannequin.sfm.intrinsics import parse_intrinsics
from mannequin.sfm.known_poses import check_known_cameras
from mannequin.sfm.rolling_shutter import angular_velocities, from_frame_time, rectify_image
from mannequin.sfm.stage import run_sfm

__all__ = [
    "angular_velocities", "check_known_cameras", "from_frame_time", "parse_intrinsics",
    "rectify_image", "run_sfm",
]
