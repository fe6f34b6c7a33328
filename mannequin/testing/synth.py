"""A synthetic frozen scene with exact ground truth: images, z-depth, poses, intrinsics.

:func:`render_clip` renders a clip in memory (a :class:`SynthClip`), :func:`write_clip` writes it
as a clip folder (frames, depth, cameras.txt, optionally video.mp4), and :func:`synth` does both.
The scene (a closed room with 3–6 people and a walking or turning camera, world frame z up,
metres) is built in :mod:`mannequin.testing.scene` and rendered in :mod:`mannequin.testing.render`
(Lambertian shading of a solid texture, 2×2 supersampled colour, depth at pixel centres, optional
COLMAP RADIAL distortion).

Everything comes from ``np.random.default_rng(seed)``: the same seed gives the same bytes.

The module is callable: ``mannequin.testing.synth(out, ...)`` is :func:`synth` (see
:mod:`mannequin._api`).
"""
from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mannequin._api import make_callable
from mannequin.errors import InputError
from mannequin.io.cameras import CameraFrame, Intrinsics, Pose, write_cameras
from mannequin.testing.render import Renderer, camera_rays, distort_normalised, render_frame, undistort_normalised
from mannequin.testing.scene import MOTIONS, ROOM, build_objects, camera_path
from mannequin.workspace import atomic_path, save_image, save_npy, write_json

__all__ = ["ROOM", "MOTIONS", "FOV_X_DEG", "SynthClip", "render_clip", "write_clip", "synth",
           "distort_normalised", "undistort_normalised"]

FOV_X_DEG = 60.0            # horizontal field of view


@dataclass
class SynthClip:
    """A rendered synthetic clip with exact ground truth.

    images: (N, H, W, 3) uint8 RGB frames.
    depth: (N, H, W) float32 z-depth (camera-frame z of the surface hit by the ray through each
        pixel centre, metres); 0 = no hit (does not happen inside the closed room).
    intrinsics: pinhole K in pixels, COLMAP convention (pixel (i, j) centre at (j + 0.5, i + 0.5)).
    poses: N world-to-camera poses, ``X_cam = R X_world + t``, OpenCV axes (x right, y down, z fwd).
    timestamps_us: N integer timestamps, ``round(i * 1e6 / fps)``.
    dynamic: (N, H, W) bool, pixels whose centre ray hits the moving person (``moving=True``), else None.
    distortion: (k1, k2) of the RADIAL model the images were rendered through ((0, 0) = pinhole).
    params: the arguments that made the clip (seed, n_frames, width, height, k1, k2, moving, fps).
    """

    images: np.ndarray
    depth: np.ndarray
    intrinsics: Intrinsics
    poses: list[Pose]
    timestamps_us: list[int]
    dynamic: np.ndarray | None = None
    distortion: tuple[float, float] = (0.0, 0.0)
    params: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.poses)


def _check_inputs(seed, n_frames, width, height, k1, k2, fps) -> None:
    """Raise :class:`InputError` unless seed and sizes are integers (n_frames >= 1, sizes >= 16),
    k1, k2 and fps finite, and fps positive."""
    for name, v in (("seed", seed), ("n_frames", n_frames), ("width", width), ("height", height)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
            raise InputError(f"synth: {name} must be an integer, got {v!r}")
    if n_frames < 1:
        raise InputError(f"synth: n_frames must be >= 1, got {n_frames}")
    if width < 16 or height < 16:
        raise InputError(f"synth: image size must be at least 16x16, got {width}x{height}")
    for name, v in (("k1", k1), ("k2", k2), ("fps", fps)):
        if not math.isfinite(float(v)):
            raise InputError(f"synth: {name} must be a finite number, got {v!r}")
    if fps <= 0:
        raise InputError(f"synth: fps must be positive, got {fps!r}")


def render_clip(seed: int = 0, n_frames: int = 24, width: int = 384, height: int = 288, *,
                moving: bool = False, k1: float = 0.0, k2: float = 0.0, fps: float = 30.0,
                motion: str = "walk") -> SynthClip:
    """Render a synthetic frozen-scene clip with exact ground truth.

    seed: everything (room colours, people, camera path, jitter, texture lattice) comes from
        ``np.random.default_rng(seed)``; the same arguments give identical arrays.
    n_frames, width, height: clip length and image size in pixels (n_frames >= 1, sizes >= 16).
    moving: one person translates 0.25–0.4 m smoothly over the clip; ``dynamic`` marks it.
    k1, k2: COLMAP RADIAL distortion the images are rendered through (normalised coordinates).
    fps: frame rate, sets ``timestamps_us`` and the handheld-jitter time scale.
    motion: ``"walk"`` (the default: a sideways walk, depth is observable) or ``"rotate"`` (the
        camera turns in place, panning 1.5° per frame and tilting ±3°: no parallax, a bad input
        for SfM; the same seed gives the same scene) or ``"handheld"`` (the walk shaken 4× harder
        and swinging its yaw at up to 35°/s, about 50°/s with the jitter: fast handheld motion).

    Returns a :class:`SynthClip`: images (N, H, W, 3) uint8, depth (N, H, W) float32 z-depth in
    metres at pixel centres, pinhole intrinsics (pixels, horizontal FOV 60°, principal point at the
    image centre (W/2, H/2)), world-to-camera OpenCV poses (world: z up, metres).  The camera walks
    sideways 45 mm per frame (at most 1.5 m in all) at 2.5–5 m from the people; depths are
    about 2.3–8 m.
    """
    _check_inputs(seed, n_frames, width, height, k1, k2, fps)
    if motion not in MOTIONS:
        raise InputError(f"synth: motion must be one of {', '.join(MOTIONS)}, got {motion!r}")
    n_frames, width, height = int(n_frames), int(width), int(height)
    k1, k2, fps = float(k1), float(k2), float(fps)
    rng = np.random.default_rng(seed)
    objs, people_xy, mover = build_objects(rng, n_frames, moving)
    poses = camera_path(rng, n_frames, fps, people_xy, motion)
    renderer = Renderer(objs, rng)
    f = (width / 2) / math.tan(math.radians(FOV_X_DEG) / 2)
    intr = Intrinsics(f, f, width / 2, height / 2, width, height)
    rays_cam = camera_rays(intr, k1, k2)
    images = np.empty((n_frames, height, width, 3), dtype=np.uint8)
    depth = np.empty((n_frames, height, width), dtype=np.float32)
    dynamic = np.zeros((n_frames, height, width), dtype=bool) if moving else None
    for i, pose in enumerate(poses):
        images[i], depth[i], gids = render_frame(renderer, i, pose, rays_cam, height, width)
        if dynamic is not None:
            dynamic[i] = gids == mover
    params = dict(seed=int(seed), n_frames=n_frames, width=width, height=height, size=[width, height],
                  k1=k1, k2=k2, moving=bool(moving), fps=fps, motion=motion)
    return SynthClip(images, depth, intr, poses, [int(round(i * 1e6 / fps)) for i in range(n_frames)],
                     dynamic, (k1, k2), params)


# --- output -----------------------------------------------------------------------------------

_NUMBERED = re.compile(r"^\d{6}\.(png|npy)$")


def _remove_stale(folder: Path, keep: set) -> None:
    """Delete the numbered files (``000000.png|npy``) of ``folder`` whose names are not in ``keep``."""
    if folder.is_dir():
        for p in folder.iterdir():
            if _NUMBERED.match(p.name) and p.name not in keep:
                p.unlink()


def _write_video(path: Path, images: np.ndarray, fps: float) -> Path:
    """Write (N, H, W, 3) uint8 frames to ``path`` as a near-lossless H.264 mp4 (CRF 8), atomically.

    yuv420p when width and height are even, else yuv444p (no padding: the video keeps the size).
    """
    import imageio_ffmpeg

    N, H, W, _ = images.shape
    pix_fmt = "yuv420p" if W % 2 == 0 and H % 2 == 0 else "yuv444p"
    with atomic_path(path) as tmp:
        writer = imageio_ffmpeg.write_frames(
            str(tmp), (W, H), fps=fps, codec="libx264", pix_fmt_out=pix_fmt, quality=None,
            macro_block_size=1, output_params=["-crf", "8", "-f", "mp4"], ffmpeg_log_level="error")
        writer.send(None)
        for im in images:
            writer.send(np.ascontiguousarray(im))
        writer.close()
    return path


def write_clip(clip: SynthClip, out: str | os.PathLike, *, video: bool = False) -> Path:
    """Write a clip under the folder ``out`` (created) and return ``out`` as a Path.

    Layout: ``frames/000000.png`` (RGB uint8), ``depth/000000.npy`` (float32 z-depth, metres),
    ``dynamic/000000.png`` (uint8 0/255, only for a moving clip), ``cameras.txt`` (MC format,
    normalised intrinsics, k1/k2 in the distortion columns, world-to-camera poses),
    ``video.mp4`` (H.264, near-lossless, only with ``video=True``), and ``synth.json`` (the
    parameters, written last).  Every file is written atomically; numbered files and a
    ``video.mp4`` left over from an earlier, different clip in ``out`` are removed.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise InputError(f"{out}: synth output exists and is not a folder")
    out.mkdir(parents=True, exist_ok=True)
    N = len(clip.poses)
    names = [f"{i:06d}" for i in range(N)]
    _remove_stale(out / "frames", {n + ".png" for n in names})
    _remove_stale(out / "depth", {n + ".npy" for n in names})
    _remove_stale(out / "dynamic", {n + ".png" for n in names} if clip.dynamic is not None else set())
    for i, n in enumerate(names):
        save_image(out / "frames" / f"{n}.png", clip.images[i])
        save_npy(out / "depth" / f"{n}.npy", np.ascontiguousarray(clip.depth[i], dtype=np.float32))
        if clip.dynamic is not None:
            save_image(out / "dynamic" / f"{n}.png", clip.dynamic[i].astype(np.uint8) * 255)
    k1, k2 = clip.distortion
    frames = []
    for ts, pose in zip(clip.timestamps_us, clip.poses, strict=False):
        fr = CameraFrame.from_intrinsics(ts, clip.intrinsics, pose)
        fr.k1, fr.k2 = float(k1), float(k2)
        frames.append(fr)
    seed = clip.params.get("seed", "?")
    write_cameras(out / "cameras.txt", frames, url=f"synthetic://mannequin/seed={seed}")
    fps = float(clip.params.get("fps", 30.0))
    if video:
        _write_video(out / "video.mp4", clip.images, fps)
    elif (out / "video.mp4").exists():
        os.remove(out / "video.mp4")
    params = dict(clip.params)
    params.update(n_frames=N, size=[clip.intrinsics.width, clip.intrinsics.height],
                  k1=float(k1), k2=float(k2), moving=clip.dynamic is not None, fps=fps, video=bool(video))
    write_json(out / "synth.json", params)
    return out


def synth(out: str | os.PathLike, seed: int = 0, n_frames: int = 24, width: int = 384, height: int = 288, *,
          video: bool = False, moving: bool = False, k1: float = 0.0, k2: float = 0.0,
          motion: str = "walk") -> Path:
    """Render a clip (:func:`render_clip`) and write it under ``out`` (:func:`write_clip`).

    Returns ``out`` as a Path.  Raises :class:`InputError` for bad sizes, frame counts or motions.
    """
    clip = render_clip(seed, n_frames, width, height, moving=moving, k1=k1, k2=k2, motion=motion)
    return write_clip(clip, out, video=video)


make_callable(__name__, synth)  # mannequin.testing.synth(...) is this function (see mannequin._api)
