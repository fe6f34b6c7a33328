"""Camera and pose types; MC/RealEstate10K, COLMAP (pycolmap) and TUM trajectory I/O.

Conventions (docs/FORMATS.md):
- Intrinsics in pixels use COLMAP's pixel-centre convention: the centre of pixel (0, 0) is (0.5, 0.5).
  The MC file stores them normalised by width and height (top-left corner 0, bottom-right 1).
- A :class:`Pose` is world-to-camera ``X_cam = R @ X_world + t`` in OpenCV axes (x right, y down,
  z forward); the camera centre is ``-R.T @ t``.
- TUM trajectories are camera-to-world: ``timestamp tx ty tz qx qy qz qw`` (seconds, metres).
"""
from __future__ import annotations

import math
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mannequin.errors import InputError
from mannequin.workspace import write_text

ROTATION_TOL = 1e-3  # max |RᵀR − I| entry and |det R − 1| accepted from a text file


@dataclass(frozen=True)
class Intrinsics:
    """Pinhole intrinsics in pixels of a ``width`` × ``height`` image (pixel centres at i + 0.5)."""

    fx: float
    fy: float
    cx: float
    cy: float
    width: int
    height: int

    @property
    def K(self) -> np.ndarray:
        """(3, 3) float64 calibration matrix."""
        return np.array([[self.fx, 0, self.cx], [0, self.fy, self.cy], [0, 0, 1]], dtype=np.float64)

    def normalised(self) -> tuple[float, float, float, float]:
        """(fx/W, fy/H, cx/W, cy/H) as stored in the MC file."""
        return self.fx / self.width, self.fy / self.height, self.cx / self.width, self.cy / self.height

    @classmethod
    def from_normalised(cls, fx: float, fy: float, cx: float, cy: float, width: int, height: int) -> Intrinsics:
        """From the MC file's normalised (fx/W, fy/H, cx/W, cy/H) for a ``width`` × ``height`` image."""
        return cls(fx * width, fy * height, cx * width, cy * height, int(width), int(height))

    def scaled(self, width: int, height: int) -> Intrinsics:
        """The same camera for an image resized to ``width`` × ``height``."""
        sx, sy = width / self.width, height / self.height
        return Intrinsics(self.fx * sx, self.fy * sy, self.cx * sx, self.cy * sy, int(width), int(height))


@dataclass(frozen=True, eq=False)
class Pose:
    """World-to-camera rigid transform: ``X_cam = R @ X_world + t``.  R (3, 3), t (3,), float64."""

    R: np.ndarray
    t: np.ndarray

    def __post_init__(self):
        object.__setattr__(self, "R", np.asarray(self.R, dtype=np.float64).reshape(3, 3))
        object.__setattr__(self, "t", np.asarray(self.t, dtype=np.float64).reshape(3))

    @classmethod
    def identity(cls) -> Pose:
        return cls(np.eye(3), np.zeros(3))

    @classmethod
    def from_cam_to_world(cls, R_c2w: Any, center: Any) -> Pose:
        """From a camera-to-world rotation and the camera centre in world coordinates."""
        R = np.asarray(R_c2w, dtype=np.float64).T
        return cls(R, -R @ np.asarray(center, dtype=np.float64))

    @classmethod
    def from_matrix(cls, M: Any) -> Pose:
        """From a (3, 4) or (4, 4) world-to-camera matrix."""
        M = np.asarray(M, dtype=np.float64)
        return cls(M[:3, :3], M[:3, 3])

    @property
    def center(self) -> np.ndarray:
        """Camera centre in world coordinates, (3,)."""
        return -self.R.T @ self.t

    @property
    def matrix(self) -> np.ndarray:
        """(4, 4) world-to-camera matrix."""
        M = np.eye(4)
        M[:3, :3], M[:3, 3] = self.R, self.t
        return M

    def inverse(self) -> Pose:
        """The camera-to-world transform as a Pose object."""
        return Pose(self.R.T, -self.R.T @ self.t)

    def __matmul__(self, other: Pose) -> Pose:
        """Composition: ``(a @ b)`` applies ``b`` first."""
        return Pose(self.R @ other.R, self.R @ other.t + self.t)

    def apply(self, X: np.ndarray) -> np.ndarray:
        """Transform points (N, 3) from world to camera."""
        return np.asarray(X) @ self.R.T + self.t

    def relative_to(self, ref: Pose) -> Pose:
        """This camera from ``ref``'s camera: ``X_this = R X_ref + t`` (the plane-sweep convention)."""
        return self @ ref.inverse()

    def allclose(self, other: Pose, atol: float = 1e-9) -> bool:
        return np.allclose(self.R, other.R, atol=atol) and np.allclose(self.t, other.t, atol=atol)


@dataclass(eq=False)
class CameraFrame:
    """One frame line of an MC camera file: timestamp, normalised intrinsics, world-to-camera pose."""

    timestamp_us: int
    fx: float
    fy: float
    cx: float
    cy: float
    pose: Pose
    k1: float = 0.0
    k2: float = 0.0

    def intrinsics(self, width: int, height: int) -> Intrinsics:
        """Pixel intrinsics for an image of ``width`` × ``height``."""
        return Intrinsics.from_normalised(self.fx, self.fy, self.cx, self.cy, width, height)

    @classmethod
    def from_intrinsics(cls, timestamp_us: int, intr: Intrinsics, pose: Pose) -> CameraFrame:
        fx, fy, cx, cy = intr.normalised()
        return cls(int(timestamp_us), fx, fy, cx, cy, pose)


@dataclass(eq=False)
class CameraFile:
    """A parsed MC/RealEstate10K camera file: the first line (URL or any text) and its frames."""

    url: str
    frames: list[CameraFrame] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.frames)


MAX_TRANSLATION = 1e9  # pose units; beyond it the geometry overflows float32 depth maps


def _check_rotation(R: np.ndarray) -> str | None:
    err = np.abs(R.T @ R - np.eye(3)).max()
    det = np.linalg.det(R)
    if err > ROTATION_TOL or abs(det - 1) > ROTATION_TOL:
        return f"R is not a rotation (|RᵀR−I| = {err:.2g}, det = {det:.4g})"
    return None


def read_cameras(path: str | os.PathLike) -> CameraFile:
    """Parse an MC/RealEstate10K camera file.

    Raises :class:`InputError` with ``file:line: fault`` for a missing file, a wrong column count,
    a value that is not a number, NaN or inf, a focal length that is not positive, a principal
    point outside the image, an R that is not a rotation, a translation beyond ``MAX_TRANSLATION``,
    or a timestamp that is not after the previous line's.
    """
    path = Path(path)
    lines = _camera_file_lines(path)
    out = CameraFile(url=lines[0].strip())
    for lineno, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        frame = _parse_camera_line(line, f"{path}:{lineno}")
        if out.frames and frame.timestamp_us <= out.frames[-1].timestamp_us:
            raise InputError(f"{path}:{lineno}: timestamp {frame.timestamp_us} is not after the previous line's "
                             f"({out.frames[-1].timestamp_us}): the lines must follow the frames in time")
        out.frames.append(frame)
    if not out.frames:
        raise InputError(f"{path}: camera file has no frame lines")
    return out


def _camera_file_lines(path: Path) -> list[str]:
    """The lines of a camera file (at least one); InputError when missing, not a file, not UTF-8 or empty."""
    if not path.exists():
        raise InputError(f"{path}: camera file not found")
    if not path.is_file():
        raise InputError(f"{path}: " + ("is a folder, not a camera file" if path.is_dir() else "camera file is not a file"))
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError:
        raise InputError(f"{path}: camera file is not UTF-8 text") from None
    if not lines:
        raise InputError(f"{path}: camera file is empty (expected a URL line, then one line per frame)")
    return lines


def _parse_camera_line(line: str, where: str) -> CameraFrame:
    """One frame line (19 columns) as a :class:`CameraFrame`; InputError prefixed with ``where`` (``file:line``)."""
    parts = line.split()
    if len(parts) != 19:
        raise InputError(f"{where}: expected 19 columns, found {len(parts)}")
    try:
        vals = [float(p) for p in parts]
    except ValueError:
        bad = next(p for p in parts if not _is_float(p))
        raise InputError(f"{where}: {bad!r} is not a number") from None
    if not all(math.isfinite(v) for v in vals):
        raise InputError(f"{where}: NaN or inf value")
    ts = vals[0]
    if ts != int(ts):
        raise InputError(f"{where}: timestamp {parts[0]!r} is not an integer (microseconds)")
    fx, fy, cx, cy, k1, k2 = vals[1:7]
    if fx <= 0 or fy <= 0:
        raise InputError(f"{where}: focal lengths must be positive, got fx={fx:g} fy={fy:g}")
    if not (0 < cx < 1 and 0 < cy < 1):
        raise InputError(f"{where}: principal point cx/W={cx:g}, cy/H={cy:g} lies outside the image "
                         "(normalised values are between 0 and 1)")
    M = np.array(vals[7:], dtype=np.float64).reshape(3, 4)
    fault = _check_rotation(M[:, :3])
    if fault:
        raise InputError(f"{where}: {fault}")
    if np.abs(M[:, 3]).max() > MAX_TRANSLATION:
        raise InputError(f"{where}: translation {np.abs(M[:, 3]).max():g} is out of range "
                         f"(at most {MAX_TRANSLATION:g} in pose units)")
    return CameraFrame(int(ts), fx, fy, cx, cy, Pose(M[:, :3], M[:, 3]), k1, k2)


def _is_float(s: str) -> bool:
    try:
        float(s)
        return True
    except ValueError:
        return False


def format_cameras(frames: Sequence[CameraFrame], url: str = "") -> str:
    """The text of an MC camera file (repr-exact floats, so a read gives the same numbers)."""
    rows = [url.replace("\n", " ")]
    for f in frames:
        M = np.hstack([f.pose.R, f.pose.t[:, None]]).reshape(-1)
        nums = [f.fx, f.fy, f.cx, f.cy, f.k1, f.k2, *M.tolist()]
        rows.append(" ".join([str(int(f.timestamp_us))] + [repr(float(v)) for v in nums]))
    return "\n".join(rows) + "\n"


def write_cameras(path: str | os.PathLike, frames: Sequence[CameraFrame] | CameraFile, url: str = "") -> Path:
    """Write an MC camera file atomically.  ``frames``: a list of :class:`CameraFrame` or a CameraFile."""
    if isinstance(frames, CameraFile):
        url = url or frames.url
        frames = frames.frames
    return write_text(path, format_cameras(frames, url))


# --- TUM trajectories -------------------------------------------------------------------------

def read_tum(path: str | os.PathLike) -> tuple[np.ndarray, list[Pose]]:
    """Read a TUM trajectory (camera-to-world).  Returns (timestamps (N,) seconds, world-to-camera poses)."""
    from scipy.spatial.transform import Rotation

    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: trajectory file not found")
    ts, poses = [], []
    for lineno, line in enumerate(path.read_text().splitlines(), start=1):
        s = line.strip()
        if not s or s.startswith("#"):
            continue
        parts = s.split()
        if len(parts) != 8:
            raise InputError(f"{path}:{lineno}: expected 8 columns (timestamp tx ty tz qx qy qz qw), found {len(parts)}")
        try:
            v = np.array([float(p) for p in parts])
        except ValueError:
            raise InputError(f"{path}:{lineno}: not a number") from None
        if not np.all(np.isfinite(v)):
            raise InputError(f"{path}:{lineno}: NaN or inf value")
        q = v[4:8]
        if abs(np.linalg.norm(q) - 1) > 1e-2:
            raise InputError(f"{path}:{lineno}: quaternion is not unit length (|q| = {np.linalg.norm(q):.4g})")
        R_c2w = Rotation.from_quat(q).as_matrix()
        ts.append(v[0])
        poses.append(Pose.from_cam_to_world(R_c2w, v[1:4]))
    if not poses:
        raise InputError(f"{path}: trajectory has no poses")
    return np.array(ts), poses


def format_tum(timestamps: Iterable[float], poses: Sequence[Pose]) -> str:
    """The text of a TUM trajectory (camera-to-world; seconds, pose units) of world-to-camera ``poses``."""
    from scipy.spatial.transform import Rotation

    rows = ["# timestamp tx ty tz qx qy qz qw (camera-to-world)"]
    for ts, p in zip(timestamps, poses, strict=False):
        inv = p.inverse()
        q = Rotation.from_matrix(inv.R).as_quat()
        rows.append(" ".join(repr(float(v)) for v in [ts, *inv.t, *q]))
    return "\n".join(rows) + "\n"


def write_tum(path: str | os.PathLike, timestamps: Iterable[float], poses: Sequence[Pose]) -> Path:
    """Write a TUM trajectory (camera-to-world) atomically."""
    return write_text(path, format_tum(timestamps, poses))


# --- pycolmap ---------------------------------------------------------------------------------

def to_reconstruction(frames: Sequence[CameraFrame], names: Sequence[str], width: int, height: int,
                      image_ids: Sequence[int] | None = None) -> Any:
    """Build a ``pycolmap.Reconstruction`` with PINHOLE cameras and the given poses (no points).

    Frames with identical intrinsics share one camera.  ``image_ids`` default to 1..N in order
    (what ``import_images`` assigns to sorted names).
    """
    import pycolmap

    if len(frames) != len(names):
        raise ValueError(f"{len(frames)} camera frames for {len(names)} names")
    rec = pycolmap.Reconstruction()
    cam_ids: dict[tuple[float, float, float, float], int] = {}
    ids = list(image_ids) if image_ids is not None else list(range(1, len(frames) + 1))
    for f, name, iid in zip(frames, names, ids, strict=False):
        intr = f.intrinsics(width, height)
        key = (intr.fx, intr.fy, intr.cx, intr.cy)
        if key not in cam_ids:
            cam = pycolmap.Camera(model="PINHOLE", width=int(width), height=int(height),
                                  params=[intr.fx, intr.fy, intr.cx, intr.cy], camera_id=len(cam_ids) + 1)
            rec.add_camera_with_trivial_rig(cam)
            cam_ids[key] = cam.camera_id
        img = pycolmap.Image(name=name, camera_id=cam_ids[key], image_id=int(iid))
        rec.add_image_with_trivial_frame(img, pycolmap.Rigid3d(pycolmap.Rotation3d(f.pose.R), f.pose.t))
    return rec


def from_reconstruction(rec: Any, timestamps_us: dict | None = None) -> tuple[list[str], list[CameraFrame]]:
    """Registered images of a reconstruction as (names, CameraFrames), sorted by name.

    Intrinsics come from each camera's calibration matrix (distortion is dropped: use it on an
    undistorted, PINHOLE model).  ``timestamps_us`` maps name → timestamp (default: 0).
    """
    items = []
    for iid in rec.reg_image_ids():
        img = rec.image(iid)
        cam = rec.camera(img.camera_id)
        K = cam.calibration_matrix()
        T = img.cam_from_world()
        intr = Intrinsics(K[0, 0], K[1, 1], K[0, 2], K[1, 2], cam.width, cam.height)
        pose = Pose(T.rotation.matrix(), np.asarray(T.translation))
        ts = (timestamps_us or {}).get(img.name, 0)
        items.append((img.name, CameraFrame.from_intrinsics(ts, intr, pose)))
    items.sort(key=lambda x: x[0])
    return [n for n, _ in items], [f for _, f in items]
