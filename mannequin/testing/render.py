"""Rendering the synthetic scene: lens model, solid texture, Lambertian shading, ray casting.

Appearance is Lambertian (albedo × (ambient + diffuse · max(0, n·l)) under a fixed directional
light, :data:`LIGHT_DIR`), so a surface point has the same colour in every view.  The albedo of a
textured object is a solid texture: a function of the 3-D point in the object's own frame
(multi-octave value noise on a seeded hash lattice), so it moves with a moving object.

Rays are cast with open3d's ``RaycastingScene``: colour from 2×2 supersampling (rays through the
four sub-pixel positions (j + 0.25|0.75, i + 0.25|0.75), averaged), depth from one ray through the
exact pixel centre (j + 0.5, i + 0.5) (COLMAP convention).  With ``k1``/``k2`` the image is what a
camera with COLMAP RADIAL distortion sees: pixel (u, v) → normalised distorted (x, y) →
undistorted (xu, yu) with ``distort(xu, yu) = (x, y)`` → ray through (xu, yu, 1).

The shading and ray set-up are Numba kernels (``_fbm``, ``_world_rays``, ``_shade_hits``).
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np
from numba import njit

from mannequin.errors import InputError
from mannequin.io.cameras import Intrinsics, Pose
from mannequin.testing.scene import SceneObject

__all__ = ["distort_normalised", "undistort_normalised", "camera_rays", "Renderer", "render_frame"]

LIGHT_DIR = np.array([-0.3, -0.5, 0.8]) / np.linalg.norm([-0.3, -0.5, 0.8])  # towards the light
AMBIENT, DIFFUSE = 0.4, 0.7

# fbm octaves: frequencies in cycles per metre and weights (luminance detail; colour variation)
_DETAIL_FREQ = np.array([0.9, 1.9, 3.9, 7.7, 14.0])
_DETAIL_AMP = np.array([0.9, 0.8, 0.7, 0.6, 0.45])
_COLOUR_FREQ = np.array([0.6, 1.4, 3.1])
_COLOUR_AMP = np.array([1.0, 0.6, 0.35])
_LATTICE = 1024             # hash lattice period (cells) per axis

# centre ray first, then the four 2×2 supersampling positions (offsets from the pixel centre)
_SUBPIXELS = ((0.0, 0.0), (-0.25, -0.25), (0.25, -0.25), (-0.25, 0.25), (0.25, 0.25))


# --- lens model -------------------------------------------------------------------------------

def distort_normalised(xu: np.ndarray | float, yu: np.ndarray | float, k1: float,
                       k2: float) -> tuple[np.ndarray, np.ndarray]:
    """COLMAP RADIAL distortion of normalised camera coordinates (z = 1 plane).

    ``(x, y) = (xu, yu) · (1 + k1 r² + k2 r⁴)`` with ``r² = xu² + yu²``.  Arrays of any shape.
    """
    xu, yu = np.asarray(xu, dtype=np.float64), np.asarray(yu, dtype=np.float64)
    r2 = xu * xu + yu * yu
    s = 1.0 + k1 * r2 + k2 * r2 * r2
    return xu * s, yu * s


def undistort_normalised(x: np.ndarray | float, y: np.ndarray | float, k1: float, k2: float,
                         iterations: int = 20) -> tuple[np.ndarray, np.ndarray]:
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


# --- solid texture and shading (Numba) ----------------------------------------------------------

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


# --- rendering --------------------------------------------------------------------------------

def camera_rays(intr: Intrinsics, k1: float, k2: float) -> np.ndarray:
    """(5, H*W, 3) camera-frame ray directions (z = 1): pixel centres, then the 2×2 sub-pixels.

    Pixel (i, j) has its centre at (j + 0.5, i + 0.5); the directions go through the undistorted
    normalised coordinates of each (sub-)pixel under RADIAL ``k1``, ``k2``.
    """
    H, W = intr.height, intr.width
    jj, ii = np.meshgrid(np.arange(W, dtype=np.float64), np.arange(H, dtype=np.float64))
    out = np.empty((len(_SUBPIXELS), H * W, 3))
    for s, (du, dv) in enumerate(_SUBPIXELS):
        x = ((jj + 0.5 + du - intr.cx) / intr.fx).ravel()
        y = ((ii + 0.5 + dv - intr.cy) / intr.fy).ravel()
        xu, yu = undistort_normalised(x, y, k1, k2)
        out[s, :, 0], out[s, :, 1], out[s, :, 2] = xu, yu, 1.0
    return out


class Renderer:
    """The scene's meshes packed for the shading kernel; builds the open3d scene and shades ray hits.

    objs: the scene (:func:`mannequin.testing.scene.build_objects`); object k is open3d geometry k.
    seed_rng: draws the texture lattice (a permutation of ``_LATTICE`` cells, then their values).
    The open3d scene is built once for a static scene, per frame when an object moves.
    """

    def __init__(self, objs: list[SceneObject], seed_rng: np.random.Generator):
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
        self._static_scene: Any = None

    def scene(self, frame: int) -> Any:
        """The open3d ``RaycastingScene`` of the objects at ``frame`` (moving ones displaced)."""
        import open3d as o3d

        static = all(o.motion is None for o in self.objs)
        if static and self._static_scene is not None:
            return self._static_scene
        sc = o3d.t.geometry.RaycastingScene()
        for k, o in enumerate(self.objs):
            V = o.V if o.motion is None else o.V + o.motion[frame]
            # open3d takes numpy arrays as tensors (its stubs list only Tensor)
            gid = sc.add_triangles(V.astype(np.float32), o.F.astype(np.uint32))  # type: ignore[call-overload]
            assert gid == k, (gid, k)
        if static:
            self._static_scene = sc
        return sc

    def motion_at(self, frame: int) -> np.ndarray:
        """(n_objects, 3) translation of each object at ``frame`` (metres; zero for static ones)."""
        return np.stack([np.zeros(3) if o.motion is None else o.motion[frame] for o in self.objs])

    def shade(self, rays: np.ndarray, hit: dict, n_pix: int, frame: int) -> np.ndarray:
        """(n_pix, 3) RGB in [0, 1]: the mean shaded colour of each pixel's sub-pixel rays.

        rays: (S n_pix, 6) float32 world rays, centre rays first; hit: open3d's ``cast_rays`` result.
        """
        return _shade_hits(rays, hit["t_hit"].numpy(), hit["geometry_ids"].numpy(),
                           hit["primitive_ids"].numpy(), hit["primitive_uvs"].numpy(), n_pix,
                           self.F, self.N, self.tri_offset, self.motion_at(frame), self.shift,
                           self.base, self.base2, self.textured, self.perm, self.vals,
                           _DETAIL_FREQ, _DETAIL_AMP, _COLOUR_FREQ, _COLOUR_AMP, LIGHT_DIR,
                           AMBIENT, DIFFUSE)


def render_frame(renderer: Renderer, frame: int, pose: Pose, rays_cam: np.ndarray, H: int,
                 W: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cast the centre and sub-pixel rays of one frame.

    pose: world-to-camera; rays_cam: (S, H W, 3) camera-frame directions from :func:`camera_rays`.
    Returns (image (H, W, 3) uint8, depth (H, W) float32 z-depth in metres, 0 = no hit,
    gids (H, W) int64: the object hit by the centre ray, -1 = none).
    """
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
