"""The synthetic scene's geometry and camera path (world frame: x right, y forward, z up, metres).

The scene is a closed room (:data:`ROOM`, floor at z = 0) with 3–6 person-sized shapes (capsules,
ellipsoids, boxes, each with a head) standing 3–5 m in front of a camera that walks sideways with
small smooth handheld jitter, walks shaken and turning fast (handheld), or turns in place.  Posters
on the walls and a rug on the floor have a constant albedo (weakly textured patches); every other
surface has a solid texture (see :mod:`mannequin.testing.render`).  Every random draw comes from the
``rng`` passed in, in a fixed order, so the same generator state gives the same scene and path.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import ArrayLike

from mannequin.io.cameras import Pose

__all__ = ["ROOM", "MOTIONS", "SceneObject", "build_objects", "camera_path"]

STEP_M = 0.045              # lateral camera step per frame (metres) for clips up to MAX_WALK_M
MAX_WALK_M = 1.5            # longest sideways walk; longer clips take smaller steps
PAN_DEG = 1.5               # pan per frame (degrees) of a rotate-only clip, up to MAX_PAN_DEG
MAX_PAN_DEG = 40.0          # widest pan of a rotate-only clip; longer clips turn slower
TILT_DEG = 3.0              # tilt amplitude (degrees) of a rotate-only clip (one slow nod)
#: ``motion="handheld"``: positional and rotational jitter this many times the walk's, and a yaw swing
#: (``HANDHELD_SWING_S`` period) peaking at ``HANDHELD_TURN_DEG_S`` degrees per second.
HANDHELD_SHAKE = 4.0
HANDHELD_TURN_DEG_S = 35.0
HANDHELD_SWING_S = 2.0
MOTIONS = ("walk", "rotate", "handheld")
#: The room's inner walls: x from x0 to x1, y from y0 to y1, z from z0 (floor) to z1 (ceiling), metres.
ROOM = dict(x0=-3.5, x1=3.5, y0=-2.5, y1=7.0, z0=0.0, z1=2.8)


# --- meshes -----------------------------------------------------------------------------------

@dataclass
class SceneObject:
    """One triangle mesh of the scene with its appearance (world frame, metres)."""

    V: np.ndarray            # (nv, 3) float64 vertices at rest (world)
    F: np.ndarray            # (nf, 3) int64
    N: np.ndarray            # (nv, 3) unit shading normals, pointing to the visible side
    base: np.ndarray         # (3,) albedo
    base2: np.ndarray        # (3,) second albedo mixed in by low-frequency noise
    textured: bool = True
    shift: np.ndarray = field(default_factory=lambda: np.zeros(3))  # texture-space offset
    motion: np.ndarray | None = None  # (n_frames, 3) translation per frame


def _grid_faces(n_rings: int, n_lon: int) -> np.ndarray:
    i, j = np.meshgrid(np.arange(n_rings - 1), np.arange(n_lon), indexing="ij")
    a = i * n_lon + j
    b = (i + 1) * n_lon + j
    c = (i + 1) * n_lon + (j + 1) % n_lon
    d = i * n_lon + (j + 1) % n_lon
    return np.concatenate([np.stack([a, b, c], -1).reshape(-1, 3), np.stack([a, c, d], -1).reshape(-1, 3)])


def _round_mesh(a: float, b: float, c: float, half: float, n_lon: int = 48, n_lat: int = 16):
    """Ellipsoid (half = 0) or capsule (cylinder of half-length ``half`` between two half-ellipsoid
    caps) with semi-axes a, b (horizontal) and c (cap height), centred at the origin, z up."""
    lat = np.concatenate([np.linspace(-np.pi / 2, 0, n_lat + 1), np.linspace(0, np.pi / 2, n_lat + 1)])
    off = np.where(np.arange(lat.size) <= n_lat, -half, half)
    lon = np.linspace(0, 2 * np.pi, n_lon, endpoint=False)
    cl, sl = np.cos(lat)[:, None], np.sin(lat)[:, None]
    ux, uy, uz = cl * np.cos(lon), cl * np.sin(lon), np.broadcast_to(sl, (lat.size, n_lon))
    V = np.stack([a * ux, b * uy, c * uz + off[:, None]], -1).reshape(-1, 3)
    N = np.stack([ux / a, uy / b, uz / c], -1).reshape(-1, 3)
    N /= np.linalg.norm(N, axis=1, keepdims=True)
    return V, _grid_faces(lat.size, n_lon), N


def _box_mesh(sx: float, sy: float, sz: float):
    """Axis-aligned box centred at the origin, 4 vertices per face so normals are face normals."""
    V: list[np.ndarray] = []
    F: list[np.ndarray] = []
    N: list[np.ndarray] = []
    for axis in range(3):
        for sign in (-1.0, 1.0):
            u, v = [k for k in range(3) if k != axis]
            quad = np.zeros((4, 3))
            quad[:, axis] = sign
            quad[:, u] = [-1, 1, 1, -1]
            quad[:, v] = [-1, -1, 1, 1]
            n = np.zeros(3)
            n[axis] = sign
            F.append(np.array([[0, 1, 2], [0, 2, 3]]) + 4 * len(V))
            V.append(quad * (np.array([sx, sy, sz]) / 2))
            N.append(np.tile(n, (4, 1)))
    return np.concatenate(V), np.concatenate(F), np.concatenate(N)


def _quad(corner, e1, e2, normal):
    corner, e1, e2 = (np.asarray(v, dtype=np.float64) for v in (corner, e1, e2))
    V = np.stack([corner, corner + e1, corner + e1 + e2, corner + e2])
    n = np.asarray(normal, dtype=np.float64)
    return V, np.array([[0, 1, 2], [0, 2, 3]]), np.tile(n / np.linalg.norm(n), (4, 1))


def _rot_z(yaw: float) -> np.ndarray:
    c, s = math.cos(yaw), math.sin(yaw)
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1.0]])


def _merge(*parts):
    V, F, N, n = [], [], [], 0
    for v, f, nn in parts:
        V.append(v)
        F.append(f + n)
        N.append(nn)
        n += len(v)
    return np.concatenate(V), np.concatenate(F), np.concatenate(N)


def _person(rng, x: float, y: float):
    """One person-sized shape (body + head), standing on the floor at (x, y)."""
    kind = int(rng.integers(3))
    width = rng.uniform(0.4, 0.6)
    depth = width * rng.uniform(0.5, 0.8)
    height = rng.uniform(1.5, 1.9)
    yaw = rng.uniform(-0.6, 0.6)
    r_head = rng.uniform(0.10, 0.12)
    h_body = height - 2 * r_head
    if kind == 0:  # capsule
        cap = 0.8 * width / 2
        V, F, N = _round_mesh(width / 2, depth / 2, cap, h_body / 2 - cap)
    elif kind == 1:  # ellipsoid
        V, F, N = _round_mesh(width / 2, depth / 2, h_body / 2, 0.0)
    else:  # box
        V, F, N = _box_mesh(width, depth, h_body)
    R = _rot_z(yaw)
    body = (V @ R.T + [x, y, h_body / 2], F, N @ R.T)
    Vh, Fh, Nh = _round_mesh(r_head, r_head, r_head, 0.0, n_lon=32, n_lat=12)
    head = (Vh + [x, y, h_body + r_head * 0.95], Fh, Nh)
    return _merge(body, head)


class _SceneBuilder:
    """Collects the scene's objects; each :meth:`add` draws the object's texture offset from ``rng``."""

    def __init__(self, rng: np.random.Generator):
        self.rng = rng
        self.objs: list[SceneObject] = []

    def add(self, mesh: tuple[np.ndarray, np.ndarray, np.ndarray], base: ArrayLike,
            base2: ArrayLike | None = None, textured: bool = True) -> None:
        """Add the mesh (V, F, N) with RGB albedo ``base`` in [0, 1] (and ``base2``, mixed in by the texture)."""
        V, F, N = mesh
        b1 = np.asarray(base, dtype=np.float64)
        b2 = b1 if base2 is None else np.asarray(base2, dtype=np.float64)
        self.objs.append(SceneObject(V, F.astype(np.int64), N, b1, b2, textured,
                                     self.rng.uniform(-100, 100, 3)))

    def jitter(self, c: list[float], s: float = 0.08) -> np.ndarray:
        """The colour ``c`` with each channel moved by up to ±``s``, kept in [0.05, 0.95]."""
        return np.clip(np.asarray(c) + self.rng.uniform(-s, s, 3), 0.05, 0.95)


def _add_room(b: _SceneBuilder) -> None:
    """The six room surfaces (normals pointing inwards), two posters and a rug."""
    r, rng, add, jitter = ROOM, b.rng, b.add, b.jitter
    X, Y, Z = r["x1"] - r["x0"], r["y1"] - r["y0"], r["z1"] - r["z0"]
    add(_quad([r["x0"], r["y0"], r["z0"]], [X, 0, 0], [0, Y, 0], [0, 0, 1]),
        jitter([0.55, 0.42, 0.30]), jitter([0.35, 0.30, 0.25]))                   # floor
    add(_quad([r["x0"], r["y0"], r["z1"]], [X, 0, 0], [0, Y, 0], [0, 0, -1]),
        jitter([0.85, 0.85, 0.82]), jitter([0.70, 0.72, 0.75]))                   # ceiling
    add(_quad([r["x0"], r["y1"], r["z0"]], [X, 0, 0], [0, 0, Z], [0, -1, 0]),
        jitter([0.78, 0.74, 0.66]), jitter([0.55, 0.62, 0.70]))                   # back wall
    add(_quad([r["x0"], r["y0"], r["z0"]], [X, 0, 0], [0, 0, Z], [0, 1, 0]),
        jitter([0.70, 0.70, 0.70]), jitter([0.50, 0.55, 0.60]))                   # wall behind camera
    add(_quad([r["x0"], r["y0"], r["z0"]], [0, Y, 0], [0, 0, Z], [1, 0, 0]),
        jitter([0.66, 0.74, 0.70]), jitter([0.75, 0.65, 0.55]))                   # left wall
    add(_quad([r["x1"], r["y0"], r["z0"]], [0, Y, 0], [0, 0, Z], [-1, 0, 0]),
        jitter([0.74, 0.68, 0.72]), jitter([0.60, 0.70, 0.55]))                   # right wall
    # weakly textured patches: constant albedo, 1 cm in front of their surface
    px, pz = rng.uniform(-1.8, 1.8), rng.uniform(1.2, 1.8)
    add(_quad([px - 0.5, r["y1"] - 0.01, pz - 0.4], [1.0, 0, 0], [0, 0, 0.8], [0, -1, 0]),
        rng.uniform(0.2, 0.9, 3), textured=False)                                 # back-wall poster
    py = rng.uniform(3.5, 5.5)
    add(_quad([r["x0"] + 0.01, py - 0.6, 1.0], [0, 1.2, 0], [0, 0, 0.9], [1, 0, 0]),
        rng.uniform(0.2, 0.9, 3), textured=False)                                 # left-wall poster
    rx, ry = rng.uniform(-1.5, 1.5), rng.uniform(5.3, 6.2)
    add(_quad([rx - 0.8, ry - 0.5, 0.005], [1.6, 0, 0], [0, 1.0, 0], [0, 0, 1]),
        rng.uniform(0.2, 0.8, 3), textured=False)                                 # rug


def _add_people(b: _SceneBuilder) -> np.ndarray:
    """3–6 people, centres at least 0.8 m apart, 3–5 m in front of the camera path; (n, 2) their xy."""
    rng = b.rng
    n_people = int(rng.integers(3, 7))
    xy: list[np.ndarray] = []
    while len(xy) < n_people:
        p = np.array([rng.uniform(-1.6, 1.6), rng.uniform(3.0, 5.0)])
        if all(np.linalg.norm(p - q) > 0.8 for q in xy):
            xy.append(p)
    for p in xy:
        b.add(_person(rng, p[0], p[1]), rng.uniform(0.15, 0.85, 3), rng.uniform(0.15, 0.85, 3))
    return np.array(xy)


def build_objects(rng: np.random.Generator, n_frames: int,
                  moving: bool) -> tuple[list[SceneObject], np.ndarray, int | None]:
    """The room, its weakly textured patches and the people.

    Returns (objects, people xy (n, 2) in metres, mover): with ``moving`` the person nearest the
    group's mean x translates 0.25–0.4 m in a random horizontal direction over the clip (smoothstep
    in time, ``motion`` (n_frames, 3)) and ``mover`` is its index in objects, else None.
    """
    b = _SceneBuilder(rng)
    _add_room(b)
    first_person = len(b.objs)
    xy_arr = _add_people(b)
    objs = b.objs

    mover = None
    if moving:
        mover = first_person + int(np.argmin(np.abs(xy_arr[:, 0] - xy_arr[:, 0].mean())))
        ang = rng.uniform(0, 2 * np.pi)
        amp = rng.uniform(0.25, 0.4)
        s = np.linspace(0.0, 1.0, n_frames) if n_frames > 1 else np.zeros(1)
        s = s * s * (3 - 2 * s)
        objs[mover].motion = amp * s[:, None] * np.array([math.cos(ang), math.sin(ang), 0.0])
    return objs, xy_arr, mover


# --- camera path ------------------------------------------------------------------------------

def _smooth_noise(rng, times: np.ndarray, amplitude: float, n_axes: int = 3) -> np.ndarray:
    """(len(times), n_axes) sums of three sinusoids (0.3–2 Hz, random phase), about ±amplitude."""
    out = np.zeros((times.size, n_axes))
    for _k in range(3):
        f = rng.uniform(0.3, 2.0, n_axes)
        ph = rng.uniform(0, 2 * np.pi, n_axes)
        a = amplitude * rng.uniform(0.3, 0.6, n_axes)
        out += a * np.sin(2 * np.pi * f * times[:, None] + ph)
    return out


def _rodrigues(w: np.ndarray) -> np.ndarray:
    th = np.linalg.norm(w)
    if th < 1e-15:
        return np.eye(3)
    k = w / th
    Kx = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    return np.eye(3) + math.sin(th) * Kx + (1 - math.cos(th)) * Kx @ Kx


def camera_path(rng: np.random.Generator, n_frames: int, fps: float, people_xy: np.ndarray,
                motion: str = "walk") -> list[Pose]:
    """The clip's N = ``n_frames`` world-to-camera poses (OpenCV axes: x right, y down, z forward).

    Default ``motion="walk"``: a sideways walk along world x at y ≈ 0 and 1.45–1.7 m high, looking
    at the group (``people_xy`` (n, 2), metres: their mean, 0.9–1.2 m high), ``STEP_M`` per frame
    (at most ``MAX_WALK_M`` in all), with smooth positional and rotational handheld jitter on the
    time scale set by ``fps``.

    ``motion="rotate"``: the camera stays at the walk's midpoint (no translation at all, no
    positional jitter) and turns in place: it pans ``PAN_DEG`` per frame (at most ``MAX_PAN_DEG``
    in all) across the group and tilts ±``TILT_DEG`` once over the clip, with the same rotational
    jitter.  The random draws are the walk's, so the scene and the jitter match the walking clip.

    ``motion="handheld"``: the walk, with ``HANDHELD_SHAKE`` times its jitter (centre accelerations
    of a few m/s², as a hand-held phone) and a yaw swing about the vertical through the camera
    (±``HANDHELD_TURN_DEG_S`` · ``HANDHELD_SWING_S`` / 2π degrees) that turns at up to
    ``HANDHELD_TURN_DEG_S`` degrees per second: the fast turns that wake the rolling-shutter search.
    """
    target = np.array([people_xy[:, 0].mean(), people_xy[:, 1].mean(), rng.uniform(0.9, 1.2)])
    height = rng.uniform(1.45, 1.7)
    step = STEP_M if n_frames <= 1 or STEP_M * (n_frames - 1) <= MAX_WALK_M else MAX_WALK_M / (n_frames - 1)
    sign = 1.0 if rng.random() < 0.5 else -1.0
    x_mid = 0.5 * target[0] + rng.uniform(-0.2, 0.2)
    drift = rng.uniform(-0.05, 0.05)  # forward/backward drift per metre walked
    times = np.arange(n_frames) / fps
    shake = HANDHELD_SHAKE if motion == "handheld" else 1.0
    pos_jit = shake * _smooth_noise(rng, times, 0.008)
    rot_jit = shake * _smooth_noise(rng, times, math.radians(0.4))
    swing_phase = rng.uniform(0, 2 * np.pi) if motion == "handheld" else 0.0
    swing = math.radians(HANDHELD_TURN_DEG_S) * HANDHELD_SWING_S / (2 * math.pi)
    pan = math.radians(min(PAN_DEG, MAX_PAN_DEG / max(n_frames - 1, 1)))
    poses = []
    for i in range(n_frames):
        s = (i - (n_frames - 1) / 2) * step
        if motion == "rotate":
            C = np.array([x_mid, 0.0, height])
            f = target - C
            f /= np.linalg.norm(f)
            k = i - (n_frames - 1) / 2
            turn = _rot_z(-sign * pan * k)  # pan about the vertical through the camera centre
            f = turn @ f
        else:
            C = np.array([x_mid + sign * s, drift * s, height]) + pos_jit[i]
            f = target - C
            f /= np.linalg.norm(f)
            if motion == "handheld":
                f = _rot_z(swing * math.sin(2 * math.pi * times[i] / HANDHELD_SWING_S + swing_phase)) @ f
        x = np.cross(f, [0.0, 0.0, 1.0])
        x /= np.linalg.norm(x)
        y = np.cross(f, x)
        R_c2w = np.stack([x, y, f], axis=1) @ _rodrigues(rot_jit[i])
        if motion == "rotate":
            tilt = math.radians(TILT_DEG) * math.sin(2 * math.pi * i / max(n_frames - 1, 1))
            R_c2w = R_c2w @ _rodrigues(np.array([tilt, 0.0, 0.0]))  # about the camera's x axis
        poses.append(Pose.from_cam_to_world(R_c2w, C))
    return poses
