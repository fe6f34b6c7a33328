"""A synthetic frozen scene with exact ground truth: images, z-depth, poses, intrinsics.

The scene is a closed room (world frame: x right, y forward away from the camera path, z up,
metres; floor at z = 0) with 3–6 person-sized shapes (capsules, ellipsoids, boxes, each with a
head) standing 3–5 m in front of a camera that walks sideways with small smooth handheld jitter.

Appearance is Lambertian (albedo × (ambient + diffuse · max(0, n·l)) under a fixed directional
light), so a surface point has the same colour in every view.  The albedo is a solid texture: a
function of the 3-D point in the object's own frame (multi-octave value noise on a seeded hash
lattice), so it moves with a moving object.  Posters on the walls and a rug on the floor have a
constant albedo (weakly textured patches).

Rendering uses open3d's ``RaycastingScene``: colour from 2×2 supersampling (rays through the four
sub-pixel positions (j + 0.25|0.75, i + 0.25|0.75), averaged), depth from one ray through the exact
pixel centre (j + 0.5, i + 0.5) (COLMAP convention).  With ``k1``/``k2`` the image is what a camera
with COLMAP RADIAL distortion sees: pixel (u, v) → normalised distorted (x, y) → undistorted
(xu, yu) with ``distort(xu, yu) = (x, y)`` → ray through (xu, yu, 1).

Everything comes from ``np.random.default_rng(seed)``: the same seed gives the same bytes.
"""
from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from numba import njit

from mannequin._api import make_callable
from mannequin.errors import InputError
from mannequin.io.cameras import CameraFrame, Intrinsics, Pose, write_cameras
from mannequin.workspace import atomic_path, save_image, save_npy, write_json

FOV_X_DEG = 60.0            # horizontal field of view
STEP_M = 0.045              # lateral camera step per frame (metres) for clips up to MAX_WALK_M
MAX_WALK_M = 1.5            # longest sideways walk; longer clips take smaller steps
PAN_DEG = 1.5               # pan per frame (degrees) of a rotate-only clip, up to MAX_PAN_DEG
MAX_PAN_DEG = 40.0          # widest pan of a rotate-only clip; longer clips turn slower
TILT_DEG = 3.0              # tilt amplitude (degrees) of a rotate-only clip (one slow nod)
MOTIONS = ("walk", "rotate")
LIGHT_DIR = np.array([-0.3, -0.5, 0.8]) / np.linalg.norm([-0.3, -0.5, 0.8])  # towards the light
AMBIENT, DIFFUSE = 0.4, 0.7
ROOM = dict(x0=-3.5, x1=3.5, y0=-2.5, y1=7.0, z0=0.0, z1=2.8)

# fbm octaves: frequencies in cycles per metre and weights (luminance detail; colour variation)
_DETAIL_FREQ = np.array([0.9, 1.9, 3.9, 7.7, 14.0])
_DETAIL_AMP = np.array([0.9, 0.8, 0.7, 0.6, 0.45])
_COLOUR_FREQ = np.array([0.6, 1.4, 3.1])
_COLOUR_AMP = np.array([1.0, 0.6, 0.35])
_LATTICE = 1024             # hash lattice period (cells) per axis

# centre ray first, then the four 2×2 supersampling positions (offsets from the pixel centre)
_SUBPIXELS = ((0.0, 0.0), (-0.25, -0.25), (0.25, -0.25), (-0.25, 0.25), (0.25, 0.25))


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


# --- lens model -------------------------------------------------------------------------------

def distort_normalised(xu, yu, k1: float, k2: float):
    """COLMAP RADIAL distortion of normalised camera coordinates (z = 1 plane).

    ``(x, y) = (xu, yu) · (1 + k1 r² + k2 r⁴)`` with ``r² = xu² + yu²``.  Arrays of any shape.
    """
    xu, yu = np.asarray(xu, dtype=np.float64), np.asarray(yu, dtype=np.float64)
    r2 = xu * xu + yu * yu
    s = 1.0 + k1 * r2 + k2 * r2 * r2
    return xu * s, yu * s


def undistort_normalised(x, y, k1: float, k2: float, iterations: int = 20):
    """Inverse of :func:`distort_normalised`: the (xu, yu) with ``distort(xu, yu) = (x, y)``.

    Solves ``r (1 + k1 r² + k2 r⁴) = r_d`` for the undistorted radius by Newton's method.
    Raises :class:`InputError` when the distortion is too strong to invert over the given points
    (the radial map is not monotonic there).
    """
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if k1 == 0.0 and k2 == 0.0:
        return x.copy(), y.copy()
    rd = np.hypot(x, y)
    r = rd.copy()
    for _ in range(iterations):
        r2 = r * r
        f = r * (1.0 + k1 * r2 + k2 * r2 * r2) - rd
        df = 1.0 + 3.0 * k1 * r2 + 5.0 * k2 * r2 * r2
        r = r - f / np.where(np.abs(df) > 1e-12, df, 1e-12)
    r2 = r * r
    resid = np.abs(r * (1.0 + k1 * r2 + k2 * r2 * r2) - rd)
    df = 1.0 + 3.0 * k1 * r2 + 5.0 * k2 * r2 * r2
    if r.size and (not np.all(np.isfinite(r)) or resid.max() > 1e-9 or df.min() <= 0 or r.min() < 0):
        raise InputError(f"distortion k1={k1:g} k2={k2:g} is too strong to invert over the image")
    scale = np.where(rd > 0, r / np.where(rd > 0, rd, 1.0), 1.0)
    return x * scale, y * scale


# --- solid texture ----------------------------------------------------------------------------

@njit(cache=True, inline="always")
def _fbm(x, y, z, perm, vals, freqs, amps):  # pragma: no cover - numba
    """Multi-octave value noise at the point (x, y, z): smoothstep-faded trilinear interpolation of
    seeded lattice values.  Returns the amplitude-weighted mean of the octaves, in [0, 1] (mean 0.5)."""
    mask = perm.shape[0] - 1
    acc = 0.0
    total = 0.0
    for o in range(freqs.shape[0]):
        f = freqs[o]
        px = x * f + 17.31 * o
        py = y * f + 41.07 * o
        pz = z * f + 73.93 * o
        fx0 = math.floor(px)
        fy0 = math.floor(py)
        fz0 = math.floor(pz)
        ix = np.int64(fx0)
        iy = np.int64(fy0)
        iz = np.int64(fz0)
        tx = px - fx0
        ty = py - fy0
        tz = pz - fz0
        tx = tx * tx * (3.0 - 2.0 * tx)
        ty = ty * ty * (3.0 - 2.0 * ty)
        tz = tz * tz * (3.0 - 2.0 * tz)
        v = 0.0
        for dx in range(2):
            wx = tx if dx else 1.0 - tx
            hx = perm[(ix + dx) & mask]
            for dy in range(2):
                wy = ty if dy else 1.0 - ty
                hy = perm[(hx + iy + dy) & mask]
                for dz in range(2):
                    wz = tz if dz else 1.0 - tz
                    v += wx * wy * wz * vals[perm[(hy + iz + dz) & mask]]
        acc += amps[o] * v
        total += amps[o]
    return acc / total


@njit(cache=True)
def _world_rays(d_cam, R, C):  # pragma: no cover - numba
    """(K, 6) float32 rays (origin C, direction Rᵀ d_cam) from camera-frame directions (K, 3)."""
    out = np.empty((d_cam.shape[0], 6), dtype=np.float32)
    for k in range(d_cam.shape[0]):
        out[k, 0] = C[0]
        out[k, 1] = C[1]
        out[k, 2] = C[2]
        for j in range(3):
            out[k, 3 + j] = R[0, j] * d_cam[k, 0] + R[1, j] * d_cam[k, 1] + R[2, j] * d_cam[k, 2]
    return out


@njit(cache=True)
def _shade_hits(rays, t_hit, gids, prims, uvs, n_pix, F, N, tri_offset, motion, shift, base, base2,
                textured, perm, vals, dfreq, damp, cfreq, camp, light, ambient, diffuse):  # pragma: no cover
    """Colour of the supersampled hits, averaged per pixel.

    rays (S*n_pix, 6) float32 (origin, direction), centre rays first (skipped here), then S-1
    blocks of sub-pixel rays; t_hit, gids, prims, uvs: open3d's cast_rays outputs.  Returns
    (n_pix, 3) float64 RGB in [0, 1].
    """
    n_obj = base.shape[0]
    n_sub = rays.shape[0] // n_pix - 1
    img = np.zeros((n_pix, 3))
    for m in range(n_pix):
        r = 0.0
        g = 0.0
        b = 0.0
        for s in range(1, n_sub + 1):
            k = s * n_pix + m
            t = np.float64(t_hit[k])
            gi = np.int64(gids[k])
            if not (t < np.inf) or gi >= n_obj:
                continue
            px = rays[k, 0] + t * rays[k, 3]
            py = rays[k, 1] + t * rays[k, 4]
            pz = rays[k, 2] + t * rays[k, 5]
            tri = tri_offset[gi] + np.int64(prims[k])
            u = np.float64(uvs[k, 0])
            v = np.float64(uvs[k, 1])
            w = 1.0 - u - v
            a0 = F[tri, 0]
            a1 = F[tri, 1]
            a2 = F[tri, 2]
            nx = w * N[a0, 0] + u * N[a1, 0] + v * N[a2, 0]
            ny = w * N[a0, 1] + u * N[a1, 1] + v * N[a2, 1]
            nz = w * N[a0, 2] + u * N[a1, 2] + v * N[a2, 2]
            nn = math.sqrt(nx * nx + ny * ny + nz * nz)
            if nn < 1e-12:
                nn = 1e-12
            lam = (nx * light[0] + ny * light[1] + nz * light[2]) / nn
            sh = ambient + diffuse * max(lam, 0.0)
            if textured[gi]:
                qx = px - motion[gi, 0] + shift[gi, 0]
                qy = py - motion[gi, 1] + shift[gi, 1]
                qz = pz - motion[gi, 2] + shift[gi, 2]
                detail = _fbm(qx, qy, qz, perm, vals, dfreq, damp)
                mix = _fbm(qx + 500.0, qy + 500.0, qz + 500.0, perm, vals, cfreq, camp)
                mix = min(max(0.5 + 2.5 * (mix - 0.5), 0.0), 1.0)
                lum = min(max(0.6 + 2.6 * (detail - 0.5), 0.15), 1.2)
                cr = ((1.0 - mix) * base[gi, 0] + mix * base2[gi, 0]) * lum
                cg = ((1.0 - mix) * base[gi, 1] + mix * base2[gi, 1]) * lum
                cb = ((1.0 - mix) * base[gi, 2] + mix * base2[gi, 2]) * lum
            else:
                cr = base[gi, 0]
                cg = base[gi, 1]
                cb = base[gi, 2]
            r += min(max(cr * sh, 0.0), 1.0)
            g += min(max(cg * sh, 0.0), 1.0)
            b += min(max(cb * sh, 0.0), 1.0)
        img[m, 0] = r / n_sub
        img[m, 1] = g / n_sub
        img[m, 2] = b / n_sub
    return img


# --- geometry ---------------------------------------------------------------------------------

@dataclass
class _Object:
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
    V, F, N = [], [], []
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


def _build_objects(rng, n_frames: int, moving: bool):
    """The room, its weakly textured patches and the people.  Returns (objects, people xy, mover)."""
    r = ROOM
    objs: list[_Object] = []

    def add(mesh, base, base2=None, textured=True):
        V, F, N = mesh
        base = np.asarray(base, dtype=np.float64)
        b2 = base if base2 is None else np.asarray(base2, dtype=np.float64)
        objs.append(_Object(V, F.astype(np.int64), N, base, b2, textured,
                            rng.uniform(-100, 100, 3)))

    def jitter(c, s=0.08):
        return np.clip(np.asarray(c) + rng.uniform(-s, s, 3), 0.05, 0.95)

    X, Y, Z = r["x1"] - r["x0"], r["y1"] - r["y0"], r["z1"] - r["z0"]
    # room surfaces, normals pointing inwards
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

    # people: 3-6, centres 0.8 m apart at least, 3-5 m in front of the camera path
    n_people = int(rng.integers(3, 7))
    xy: list[np.ndarray] = []
    while len(xy) < n_people:
        p = np.array([rng.uniform(-1.6, 1.6), rng.uniform(3.0, 5.0)])
        if all(np.linalg.norm(p - q) > 0.8 for q in xy):
            xy.append(p)
    first_person = len(objs)
    for p in xy:
        add(_person(rng, p[0], p[1]), rng.uniform(0.15, 0.85, 3), rng.uniform(0.15, 0.85, 3))
    xy_arr = np.array(xy)

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


def _camera_path(rng, n_frames: int, fps: float, people_xy: np.ndarray, motion: str = "walk") -> list[Pose]:
    """A sideways walk along world x at y ≈ 0, looking at the group, with handheld jitter.

    ``motion="rotate"``: the camera stays at the walk's midpoint (no translation at all, no
    positional jitter) and turns in place: it pans ``PAN_DEG`` per frame (at most ``MAX_PAN_DEG``
    in all) across the group and tilts ±``TILT_DEG`` once over the clip, with the same rotational
    jitter.  The random draws are the walk's, so the scene and the jitter match the walking clip.
    """
    target = np.array([people_xy[:, 0].mean(), people_xy[:, 1].mean(), rng.uniform(0.9, 1.2)])
    height = rng.uniform(1.45, 1.7)
    step = STEP_M if n_frames <= 1 or STEP_M * (n_frames - 1) <= MAX_WALK_M else MAX_WALK_M / (n_frames - 1)
    sign = 1.0 if rng.random() < 0.5 else -1.0
    x_mid = 0.5 * target[0] + rng.uniform(-0.2, 0.2)
    drift = rng.uniform(-0.05, 0.05)  # forward/backward drift per metre walked
    times = np.arange(n_frames) / fps
    pos_jit = _smooth_noise(rng, times, 0.008)
    rot_jit = _smooth_noise(rng, times, math.radians(0.4))
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
        x = np.cross(f, [0.0, 0.0, 1.0])
        x /= np.linalg.norm(x)
        y = np.cross(f, x)
        R_c2w = np.stack([x, y, f], axis=1) @ _rodrigues(rot_jit[i])
        if motion == "rotate":
            tilt = math.radians(TILT_DEG) * math.sin(2 * math.pi * i / max(n_frames - 1, 1))
            R_c2w = R_c2w @ _rodrigues(np.array([tilt, 0.0, 0.0]))  # about the camera's x axis
        poses.append(Pose.from_cam_to_world(R_c2w, C))
    return poses


# --- rendering --------------------------------------------------------------------------------

def _camera_rays(intr: Intrinsics, k1: float, k2: float) -> np.ndarray:
    """(5, H*W, 3) camera-frame ray directions (z = 1): pixel centres, then the 2×2 sub-pixels."""
    H, W = intr.height, intr.width
    jj, ii = np.meshgrid(np.arange(W, dtype=np.float64), np.arange(H, dtype=np.float64))
    out = np.empty((len(_SUBPIXELS), H * W, 3))
    for s, (du, dv) in enumerate(_SUBPIXELS):
        x = ((jj + 0.5 + du - intr.cx) / intr.fx).ravel()
        y = ((ii + 0.5 + dv - intr.cy) / intr.fy).ravel()
        xu, yu = undistort_normalised(x, y, k1, k2)
        out[s, :, 0], out[s, :, 1], out[s, :, 2] = xu, yu, 1.0
    return out


class _Renderer:
    """Builds the open3d scene (per frame when something moves) and shades ray hits."""

    def __init__(self, objs: list[_Object], seed_rng):
        self.objs = objs
        counts = np.array([len(o.F) for o in objs])
        self.tri_offset = np.concatenate([[0], np.cumsum(counts)[:-1]])
        v_off = np.concatenate([[0], np.cumsum([len(o.V) for o in objs])[:-1]])
        self.F = np.concatenate([o.F + vo for o, vo in zip(objs, v_off, strict=False)])
        self.N = np.concatenate([o.N for o in objs])
        self.base = np.stack([o.base for o in objs])
        self.base2 = np.stack([o.base2 for o in objs])
        self.textured = np.array([o.textured for o in objs], dtype=np.bool_)
        self.tri_offset = self.tri_offset.astype(np.int64)
        self.shift = np.stack([o.shift for o in objs])
        self.perm = seed_rng.permutation(_LATTICE).astype(np.int64)
        self.vals = seed_rng.random(_LATTICE)
        self._static_scene = None

    def scene(self, frame: int):
        import open3d as o3d

        static = all(o.motion is None for o in self.objs)
        if static and self._static_scene is not None:
            return self._static_scene
        sc = o3d.t.geometry.RaycastingScene()
        for k, o in enumerate(self.objs):
            V = o.V if o.motion is None else o.V + o.motion[frame]
            gid = sc.add_triangles(V.astype(np.float32), o.F.astype(np.uint32))
            assert gid == k, (gid, k)
        if static:
            self._static_scene = sc
        return sc

    def motion_at(self, frame: int) -> np.ndarray:
        return np.stack([np.zeros(3) if o.motion is None else o.motion[frame] for o in self.objs])

    def shade(self, rays, hit, n_pix: int, frame: int) -> np.ndarray:
        """(n_pix, 3) RGB in [0, 1]: the mean shaded colour of each pixel's sub-pixel rays."""
        return _shade_hits(rays, hit["t_hit"].numpy(), hit["geometry_ids"].numpy(),
                           hit["primitive_ids"].numpy(), hit["primitive_uvs"].numpy(), n_pix,
                           self.F, self.N, self.tri_offset, self.motion_at(frame), self.shift,
                           self.base, self.base2, self.textured, self.perm, self.vals,
                           _DETAIL_FREQ, _DETAIL_AMP, _COLOUR_FREQ, _COLOUR_AMP, LIGHT_DIR,
                           AMBIENT, DIFFUSE)


def _render_frame(renderer: _Renderer, frame: int, pose: Pose, rays_cam: np.ndarray, H: int, W: int):
    """Cast the centre and sub-pixel rays of one frame: (image uint8, depth float32, centre gids)."""
    S, M, _ = rays_cam.shape
    rays = _world_rays(rays_cam.reshape(-1, 3), pose.R, pose.center)
    hit = renderer.scene(frame).cast_rays(rays)
    t = hit["t_hit"].numpy()[:M]
    gid = hit["geometry_ids"].numpy()[:M].astype(np.int64)
    ok = np.isfinite(t) & (gid < len(renderer.objs))
    # depth: the centre ray's parameter is the camera z (its direction has camera z = 1)
    depth = np.where(ok, t, 0.0).astype(np.float32).reshape(H, W)
    gid_centre = np.where(ok, gid, -1).reshape(H, W)
    img = renderer.shade(rays, hit, M, frame).reshape(H, W, 3)
    img = np.clip(np.round(img * 255.0), 0, 255).astype(np.uint8)
    return img, depth, gid_centre


def _check_inputs(seed, n_frames, width, height, k1, k2, fps):
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
        for SfM; the same seed gives the same scene).

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
    objs, people_xy, mover = _build_objects(rng, n_frames, moving)
    poses = _camera_path(rng, n_frames, fps, people_xy, motion)
    renderer = _Renderer(objs, rng)
    f = (width / 2) / math.tan(math.radians(FOV_X_DEG) / 2)
    intr = Intrinsics(f, f, width / 2, height / 2, width, height)
    rays_cam = _camera_rays(intr, k1, k2)
    images = np.empty((n_frames, height, width, 3), dtype=np.uint8)
    depth = np.empty((n_frames, height, width), dtype=np.float32)
    dynamic = np.zeros((n_frames, height, width), dtype=bool) if moving else None
    for i, pose in enumerate(poses):
        images[i], depth[i], gids = _render_frame(renderer, i, pose, rays_cam, height, width)
        if moving:
            dynamic[i] = gids == mover
    params = dict(seed=int(seed), n_frames=n_frames, width=width, height=height, size=[width, height],
                  k1=k1, k2=k2, moving=bool(moving), fps=fps, motion=motion)
    return SynthClip(images, depth, intr, poses, [int(round(i * 1e6 / fps)) for i in range(n_frames)],
                     dynamic, (k1, k2), params)


# --- output -----------------------------------------------------------------------------------

_NUMBERED = re.compile(r"^\d{6}\.(png|npy)$")


def _remove_stale(folder: Path, keep: set) -> None:
    if folder.is_dir():
        for p in folder.iterdir():
            if _NUMBERED.match(p.name) and p.name not in keep:
                p.unlink()


def _write_video(path: Path, images: np.ndarray, fps: float) -> Path:
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


def write_clip(clip: SynthClip, out, *, video: bool = False) -> Path:
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


def synth(out, seed: int = 0, n_frames: int = 24, width: int = 384, height: int = 288, *,
          video: bool = False, moving: bool = False, k1: float = 0.0, k2: float = 0.0,
          motion: str = "walk") -> Path:
    """Render a clip (:func:`render_clip`) and write it under ``out`` (:func:`write_clip`).

    Returns ``out`` as a Path.  Raises :class:`InputError` for bad sizes, frame counts or motions.
    """
    clip = render_clip(seed, n_frames, width, height, moving=moving, k1=k1, k2=k2, motion=motion)
    return write_clip(clip, out, video=video)


make_callable(__name__, synth)  # mannequin.testing.synth(...) is this function (see mannequin._api)
