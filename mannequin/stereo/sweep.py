"""Public plane-sweep API: input checks, grey conversion, depth planes, view selection, and the
kernels' inputs and buffers.

The compiled loops live in :mod:`mannequin.stereo.kernels` (``stats`` before the sweep,
``fronto`` the sweep, ``finalize`` after it); this module prepares their inputs.

Conventions: ``K`` matrices are in pixels with pixel centres at i + 0.5 (COLMAP / MC: the centre of
pixel (row r, col c) is (c + 0.5, r + 0.5)).  ``R[i], t[i]`` map reference-camera points into
source ``i``: ``X_src = R X_ref + t``.  Depth is the z coordinate in the reference camera.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numba
import numpy as np

from mannequin.geometry import check_K, triangulation_angle_deg
from mannequin.io.images import to_grey
from mannequin.stereo.kernels import finalize, fronto, stats
from mannequin.stereo.kernels.fronto import Reference, RightWinners, Scratch, Sources, SweepParams, Winners

#: A reference window whose grey standard deviation (0..1 scale) is below this gets no estimate.
MIN_STD = 0.5 / 255.0
#: Cost gap (second-best local minimum more than 2 planes away, minus best) giving full distinctness.
CONF_SCALE = 0.5
#: With shiftable windows, a pixel takes the shifted-window winner instead of the centred one
#: when their depths differ by more than this (relative): a depth edge, where the centred window
#: fattens the foreground.  Elsewhere the centred window is kept (less noisy).
SHIFT_SWITCH_REL = 0.08
#: Edge-aware smoothing averages only neighbours whose inverse depth is within this (relative).
SMOOTH_MAX_REL = 0.05
#: Left-right check (``lr_check``): a pixel whose right-view winner differs from its own plane by
#: more than this many plane steps fails the check; its confidence becomes 0 (its depth is kept),
#: so it ranks below every passing pixel.
LR_MAX_DIFF = 2.0
#: Planes swept together row by row when every source takes the integer-shift path (see
#: :func:`integer_shift_sources`): a block's winner state is updated in one pass per row
#: (``fronto._track_rows4`` / ``_track_right4``).  Other sources: 1 (their per-plane ring buffers
#: grow with it).
PLANE_BLOCK = 4
#: A sweep along planes n·X = d (``plane_sweep(normal=...)``) leaves out the pixels whose rays
#: meet the planes at n·r (z = 1) at most this: grazing, so their depth d / (n·r) is ill-posed.
MIN_RAY_COS = 0.05
#: Rows per parallel chunk, roughly (the chunk count is rounded to a multiple of the threads):
#: a chunk re-warps its halo rows at every plane, and fewer, taller chunks balance worse.
CHUNK_ROWS = 60


def _checked_array(m: Any, shape: tuple[int, ...], name: str) -> np.ndarray:
    """``m`` as a float64 array of ``shape`` with finite values, or ValueError naming ``name``."""
    a = np.asarray(m, dtype=np.float64)
    if a.shape != shape:
        raise ValueError(f"{name} must have shape {shape}, got {a.shape}")
    if not np.isfinite(a).all():
        raise ValueError(f"{name} has non-finite values")
    return a


def inverse_depth_planes(near: float, far: float, n_planes: int) -> np.ndarray:
    """Plane inverse depths, evenly spaced from 1/near (index 0) to 1/far (index n-1), float64."""
    return np.linspace(1.0 / near, 1.0 / far, n_planes)


def plane_homographies(K_ref: np.ndarray, K_sources: Sequence[np.ndarray], R: Sequence[np.ndarray],
                       t: Sequence[np.ndarray], inv_depths: np.ndarray, normal: Any = None) -> np.ndarray:
    """(P,S,3,3) float64 homographies of the planes n·X = d (reference camera; fronto-parallel z = d
    when ``normal`` is None, n = (0,0,1)), ``inv_depths`` (P,) = 1/d, in array-index coordinates:
    reference index (c, r, 1) -> homogeneous source index coordinates.  ``K_ref``, ``K_sources[s]``
    3×3 intrinsics; ``R[s]``, ``t[s]`` reference camera to source s.

    H = T₋ K_src (R + t nᵀ / d) K_ref⁻¹ T₊; T₊ shifts index (c, r) to the pixel-centre convention
    (c + 0.5, r + 0.5) and T₋ shifts back.
    """
    tp = np.array([[1.0, 0, 0.5], [0, 1, 0.5], [0, 0, 1]])
    tm = np.array([[1.0, 0, -0.5], [0, 1, -0.5], [0, 0, 1]])
    kinv = np.linalg.inv(K_ref) @ tp
    n = np.array([0.0, 0.0, 1.0]) if normal is None else np.asarray(normal, dtype=np.float64)
    out = np.empty((len(inv_depths), len(K_sources), 3, 3))
    for s, (Ks, Rs, ts) in enumerate(zip(K_sources, R, t, strict=False)):
        a = tm @ Ks @ Rs @ kinv                      # plane at infinity
        b = tm @ Ks @ np.outer(ts, n) @ kinv         # times 1/d
        out[:, s] = a[None] + inv_depths[:, None, None] * b[None]
    return out


def ref_window_stats(grey: np.ndarray, window: int, min_std: float = MIN_STD) -> tuple[np.ndarray, np.ndarray]:
    """Window mean of the reference and 1/sqrt(Σ(I-Ī)²) (0 where the std is below ``min_std``).

    (H,W) grey -> two (H,W) float32 arrays; edges replicated, float64 sums
    (:func:`mannequin.stereo.kernels.stats.window_stats`, equal to scipy's uniform_filter up to rounding)."""
    g = np.ascontiguousarray(grey, dtype=np.float32)
    m = np.empty(g.shape, np.float32)
    isd = np.empty(g.shape, np.float32)
    stats.window_stats(g, int(window), float(min_std) ** 2, m, isd)
    return m, isd


def shift_only_sources(homs: np.ndarray, tol: float = 1e-9) -> np.ndarray:
    """(S,) uint8: 1 for a source whose plane homographies (P,S,3,3) are all pure horizontal shifts.

    That is the rectified case: R = I, t along x, and K_src equal to K_ref but for cx (then
    H = [[1, 0, a], [0, 1, 0], [0, 0, 1]] with a the x shift in px, up to float64 rounding).  Such
    a source is warped by a 1-D interpolation (no y interpolation, no gather) in the kernel; the
    result equals the bilinear warp up to float rounding.  ``tol``: allowed deviation of the
    other entries (after dividing by H[2,2]); the position error it allows is below tol × the
    image size in px.
    """
    h = homs / homs[:, :, 2:3, 2:3]
    ref = np.array([[1.0, 0, 0], [0, 1, 0], [0, 0, 1]])
    dev = np.abs(h - ref)
    dev[:, :, 0, 2] = 0.0
    return (dev.max(axis=(0, 2, 3)) <= tol).astype(np.uint8)


def integer_shift_sources(homs: np.ndarray, rect: np.ndarray, shapes: Sequence[tuple[int, ...]],
                          ref_shape: tuple[int, ...], tol: float = 1e-6) -> np.ndarray:
    """(S,) bool: rectified sources (``rect`` from :func:`shift_only_sources`; ``homs`` (P,S,3,3),
    ``shapes`` the sources' (h, w)) of the reference's size ``ref_shape`` whose x shift is an
    integer (within ``tol`` px) at every plane, e.g. a rectified pair swept at whole-pixel
    disparity steps.  Their warped rows are plain slices of the source, so the
    kernel takes the source's window statistics from a table computed once
    (:func:`mannequin.stereo.kernels.stats.rect_source_stats`) instead of summing them per plane."""
    a = homs[:, :, 0, 2] / homs[:, :, 2, 2]
    whole = np.abs(a - np.round(a)).max(axis=0) <= tol
    same = np.array([tuple(sh) == tuple(ref_shape) for sh in shapes], bool)
    return np.asarray(rect, bool) & whole & same


def _chunks(H: int, n_threads: int) -> np.ndarray:
    """(n + 1,) int64 row bounds of n ≈ H / CHUNK_ROWS parallel chunks, n a multiple of ``n_threads``."""
    n = n_threads * max(1, round(H / (n_threads * CHUNK_ROWS)))
    n = max(1, min(n, H))
    return np.linspace(0, H, n + 1).round().astype(np.int64)


def ray_normal_cos(K: np.ndarray, shape: tuple[int, int], normal: Any) -> np.ndarray:
    """(H,W) n·r for the pixel rays r = K⁻¹ (c + 0.5, r + 0.5, 1) (z = 1) of a ``shape`` = (H, W)
    image: a pixel's depth on the plane n·X = d is d / (n·r)."""
    H, W = shape
    K = np.asarray(K, dtype=np.float64)
    n = np.asarray(normal, dtype=np.float64)
    y = ((np.arange(H) + 0.5 - K[1, 2]) / K[1, 1])[:, None]
    x = (np.arange(W)[None, :] + 0.5 - K[0, 2] - K[0, 1] * y) / K[0, 0]
    return n[0] * x + n[1] * y + n[2]


def triangulation_angles(R: Sequence[np.ndarray], t: Sequence[np.ndarray], depth: float,
                         K_ref: np.ndarray | None = None, shape: tuple[int, int] | None = None,
                         grid: int = 5) -> np.ndarray:
    """(S,) float64 triangulation angle in degrees of each source (``R[i], t[i]``: reference to
    source ``i``) at reference depth ``depth`` (z, pose units).

    Without ``K_ref``/``shape``: the angle at the reference-axis point (0, 0, depth).  With them
    (``shape`` = (H, W)): the median of the angles at the points of a ``grid``×``grid`` lattice of
    reference pixels, which keeps a source that moves along the viewing direction (no parallax only
    near the epipole) from being dropped.
    """
    if K_ref is None or shape is None:
        pts = np.array([[0.0, 0.0, depth]])
    else:
        H, W = shape
        u, v = np.meshgrid(np.linspace(0.5, W - 0.5, grid), np.linspace(0.5, H - 0.5, grid))
        rays = np.linalg.inv(K_ref) @ np.stack([u.ravel(), v.ravel(), np.ones(u.size)])
        pts = (rays / rays[2] * depth).T
    out = []
    for Rs, ts in zip(R, t, strict=False):
        C = -np.asarray(Rs).T @ np.asarray(ts)     # source centre in the reference frame
        out.append(float(np.median(triangulation_angle_deg(np.zeros(3), C, pts))))
    return np.array(out)


def plane_sweep(ref: Any, sources: Sequence[Any], K_ref: Any, K_sources: Sequence[Any], R: Sequence[Any],
                t: Sequence[Any], depth_range: Any, n_planes: int = 128, *, window: int = 7, top_k: int = 2,
                min_angle_deg: float = 1.0, subpixel: bool = True, n_threads: int | None = None,
                return_cost: bool = False, shift: int | None = None, smooth: int | None = None,
                lr_check: bool = False, normal: Any = None,
                min_ray_cos: float = MIN_RAY_COS) -> tuple[np.ndarray, ...]:
    """Plane-sweep stereo of ``ref`` against ``sources`` (ZNCC, top-k views).

    ``ref`` and ``sources``: (H, W) or (H, W, 3) uint8 / uint16 / float images (see
    :func:`mannequin.io.images.to_grey`); ``K_ref``, ``K_sources``: 3×3 intrinsics in pixels;
    ``R[i]``, ``t[i]``: reference camera to source ``i`` (module docstring).

    Fronto-parallel planes by default.  With ``normal`` (a 3-vector in the reference camera) the
    planes are n·X = d instead (a second sweep direction, e.g. along the ground: Gallup et al.
    2007), ``depth_range`` is then the range of d (pose units, n normalised), and a pixel's depth
    is d / (n·r) for its ray r (z = 1); pixels whose rays meet the planes at ``n·r <=
    min_ray_cos`` (near the horizon or above it) get no estimate, and only the image rows that
    hold any other pixel are swept.  Everything below holds in d for such a sweep.

    Returns ``(depth, confidence)``: (H,W) float32, depth 0 = no estimate, confidence in [0,1].
    With ``return_cost`` a third (H,W) float32 array holds the winning aggregated cost
    1 - ZNCC in [0,2] (NaN where there is no estimate).

    Planes are evenly spaced in inverse depth over ``depth_range = (near, far)``.  Per pixel and
    plane the cost is the mean of the ``top_k`` best source costs among the valid ones (a source
    votes only where the warped window centre falls inside it); sources whose median
    triangulation angle over the image at the middle depth (the middle plane, 2/(1/near + 1/far))
    is below ``min_angle_deg`` get no vote at all (an empty result when none is left).  The
    winner is refined by a parabola in inverse depth when ``subpixel``; a winner on the first or the
    last plane is no minimum of the cost, only its edge, and gives no estimate.  Confidence is
    clip(1 - best) · clip((second - best) / CONF_SCALE), with ``second`` the lowest local minimum
    of the pixel's cost curve more than two planes from the winner.  Memory is O(H·W), whatever
    ``n_planes``; the grey images, state and outputs take a few dozen H×W float32 planes.

    Depth edges (``shift`` > 0, default ``window // 2``; 0 = off): a second winner is tracked on
    *shiftable windows*, the plane cost being the minimum over the window positions within
    ±``shift`` rows and columns that still contain the pixel.  Near a depth edge a pixel can then
    use a window that lies on its own side, which stops the foreground from fattening over the
    background.  As that minimum is noisier, a pixel keeps the centred-window winner unless the
    two differ by more than :data:`SHIFT_SWITCH_REL` (relative).  About 25% more work per plane.

    Noise (``smooth`` > 1, default ``window``; 0 or 1 = off): the inverse depth is finally
    averaged over a ``smooth``×``smooth`` neighbourhood, only over neighbours within
    :data:`SMOOTH_MAX_REL` of the pixel's own (edge-aware: never across a depth edge).

    Left-right check (``lr_check``, two-view rectified pairs only: exactly one source, kept, whose
    plane homographies are pure x shifts, else ValueError): while sweeping, the kernel also keeps
    the winning plane of every *right*-image pixel, read from the same window costs along the
    diagonals (right pixel x at plane p has the cost of reference column x - shift(p)); no second
    sweep, O(H·W) memory.  A reference pixel whose right pixel's winner differs from its own plane
    by more than :data:`LR_MAX_DIFF` plane steps (an occlusion, or a wrong match) keeps its depth
    but gets confidence 0.

    ``n_threads``: Numba threads (default: all).  Raises ValueError naming the argument for any
    unusable input.
    """
    kw = dict(window=window, top_k=top_k, min_angle_deg=min_angle_deg, subpixel=subpixel, n_threads=n_threads,
              shift=shift, smooth=smooth, lr_check=lr_check)
    if normal is not None:
        return _plane_sweep_along(ref, sources, K_ref, K_sources, R, t, depth_range, n_planes, normal,
                                  min_ray_cos, return_cost, **kw)
    out = _plane_sweep(ref, sources, K_ref, K_sources, R, t, depth_range, n_planes, None, **kw)
    return out if return_cost else out[:2]


def _plane_sweep_along(ref, sources, K_ref, K_sources, R, t, depth_range, n_planes, normal, min_ray_cos,
                       return_cost, **kw):
    """:func:`plane_sweep` along planes n·X = d: sweep the rows that see the planes, then d -> depth."""
    n = _checked_array(np.ravel(normal), (3,), "normal")
    if not np.linalg.norm(n) > 0:
        raise ValueError("normal must be a non-zero 3-vector")
    n = n / np.linalg.norm(n)
    if not (math.isfinite(float(min_ray_cos)) and 0 < min_ray_cos < 1):
        raise ValueError(f"min_ray_cos must be in (0, 1), got {min_ray_cos!r}")
    g_ref = to_grey(ref, "ref")
    H, W = g_ref.shape
    K = check_K(K_ref, "K_ref")
    cos = ray_normal_cos(K, (H, W), n)
    rows = np.flatnonzero((cos > min_ray_cos).any(axis=1))
    depth = np.zeros((H, W), np.float32)
    conf = np.zeros((H, W), np.float32)
    cost = np.full((H, W), np.nan, np.float32)
    r0, r1 = (int(rows[0]), int(rows[-1]) + 1) if rows.size else (0, 0)
    if r1 - r0 >= 3:
        Kc = K.copy()
        Kc[1, 2] -= r0  # the crop's pixel centres: rows r0.. become 0..
        img = np.asarray(ref)[r0:r1]
        d, c, k = _plane_sweep(img, sources, Kc, K_sources, R, t, depth_range, n_planes, n, **kw)
        cs = cos[r0:r1]
        ok = (d > 0) & (cs > min_ray_cos)
        depth[r0:r1] = np.where(ok, d / np.where(ok, cs, 1.0), 0.0)
        conf[r0:r1] = np.where(ok, c, 0.0)
        cost[r0:r1] = np.where(ok, k, np.nan)
    return (depth, conf, cost) if return_cost else (depth, conf)


@dataclass
class _SweepInput:
    """The checked inputs of one sweep (see :func:`plane_sweep`)."""

    ref: np.ndarray              # (H, W) float32 grey in [0, 1]
    greys: list[np.ndarray]      # the sources, grey
    K_ref: np.ndarray
    Ks: list[np.ndarray]
    Rs: list[np.ndarray]
    ts: list[np.ndarray]
    near: float
    far: float
    n_planes: int
    window: int
    shift: int
    smooth: int
    top_k: int
    min_angle_deg: float
    n_threads: int
    lr: bool
    subpixel: bool


def _plane_sweep(ref, sources, K_ref, K_sources, R, t, depth_range, n_planes, normal, **kw):
    """:func:`plane_sweep` of the whole image: returns (depth, confidence, cost)."""
    inp = _check_inputs(ref, sources, K_ref, K_sources, R, t, depth_range, n_planes, **kw)
    H, W = inp.ref.shape
    depth = np.zeros((H, W), np.float32)
    conf = np.zeros((H, W), np.float32)
    cost = np.full((H, W), np.nan, np.float32)
    inv_d = inverse_depth_planes(inp.near, inp.far, inp.n_planes)
    keep = _voting_sources(inp)
    if not keep:
        return depth, conf, cost
    homs = plane_homographies(inp.K_ref, [inp.Ks[i] for i in keep], [inp.Rs[i] for i in keep],
                              [inp.ts[i] for i in keep], inv_d, normal)
    rect = shift_only_sources(homs)
    if inp.lr and (len(keep) != 1 or not rect[0]):
        raise ValueError("lr_check needs exactly one source (with enough parallax) whose plane "
                         "homographies are pure x shifts (a rectified pair)")
    old_threads = numba.get_num_threads()
    numba.set_num_threads(inp.n_threads)
    try:
        _sweep_and_finalize(inp, [inp.greys[i] for i in keep], homs, rect, inv_d, depth, conf, cost)
    finally:
        numba.set_num_threads(old_threads)
    cost[cost < 0] = np.nan
    return depth, conf, cost


def _check_inputs(ref, sources, K_ref, K_sources, R, t, depth_range, n_planes, *, window, top_k,
                  min_angle_deg, subpixel, n_threads, shift, smooth, lr_check) -> _SweepInput:
    """The inputs of :func:`plane_sweep` checked and converted, or ValueError naming the first bad one."""
    g_ref = to_grey(ref, "ref")
    greys, K_ref, Ks, Rs, ts = _check_views(sources, K_ref, K_sources, R, t)
    try:
        near, far = (float(v) for v in depth_range)
    except (TypeError, ValueError):
        raise ValueError("depth_range must be a pair (near, far)") from None
    if not (math.isfinite(near) and math.isfinite(far) and 0 < near < far):
        raise ValueError(f"depth_range must satisfy 0 < near < far (finite), got {depth_range!r}")
    n_planes = _checked_int("n_planes", n_planes, lambda v: v >= 2, "an integer >= 2")
    window = _checked_int("window", window, lambda v: v >= 3 and v % 2 == 1, "an odd integer >= 3")
    shift = window // 2 if shift is None else shift
    shift = _checked_int("shift", shift, lambda v: 0 <= v <= window // 2, "None or an integer in [0, window // 2]")
    smooth = window if smooth is None else smooth
    smooth = _checked_int("smooth", smooth, lambda v: v >= 0, "None or an integer >= 0")
    top_k = _checked_int("top_k", top_k, lambda v: v >= 1, "an integer >= 1")
    if not (math.isfinite(float(min_angle_deg)) and min_angle_deg >= 0):
        raise ValueError(f"min_angle_deg must be a finite number >= 0, got {min_angle_deg!r}")
    max_threads = numba.config.NUMBA_NUM_THREADS  # type: ignore[attr-defined]
    if n_threads is not None:
        n_threads = _checked_int("n_threads", n_threads, lambda v: v >= 1, "a positive integer or None")
    n_threads = min(max_threads if n_threads is None else n_threads, max_threads)
    if not isinstance(lr_check, (bool, np.bool_)):
        raise ValueError(f"lr_check must be True or False, got {lr_check!r}")
    return _SweepInput(g_ref, greys, K_ref, Ks, Rs, ts, near, far, n_planes, window, shift, smooth, top_k,
                       min_angle_deg, n_threads, bool(lr_check), bool(subpixel))


def _checked_int(name: str, value: Any, ok: Callable[[Any], bool], what: str) -> int:
    """``value`` as an int if it is an integer (not a bool) with ``ok(value)``, else ValueError
    "``name`` must be ``what``"."""
    if isinstance(value, bool) or int(value) != value or not ok(value):
        raise ValueError(f"{name} must be {what}, got {value!r}")
    return int(value)


def _check_views(sources, K_ref, K_sources, R, t):
    """The source images (grey) and the cameras checked: (greys, K_ref, Ks, Rs, ts)."""
    if isinstance(sources, np.ndarray) and sources.ndim < 3:
        raise ValueError("sources must be a list of images, got a single 2-D array")
    try:
        n_src = len(sources)
    except TypeError:
        raise ValueError("sources must be a list of images") from None
    if n_src < 1:
        raise ValueError("sources must hold at least one image")
    for name, seq in (("K_sources", K_sources), ("R", R), ("t", t)):
        try:
            n = len(seq)
        except TypeError:
            raise ValueError(f"{name} must be a sequence with one entry per source") from None
        if n != n_src:
            raise ValueError(f"{name} has {n} entries but there are {n_src} sources")
    greys = [to_grey(s, f"sources[{i}]") for i, s in enumerate(sources)]
    K_ref = check_K(K_ref, "K_ref")
    Ks = [check_K(k, f"K_sources[{i}]") for i, k in enumerate(K_sources)]
    Rs = [_checked_array(r, (3, 3), f"R[{i}]") for i, r in enumerate(R)]
    for i, r in enumerate(Rs):
        if not np.allclose(r @ r.T, np.eye(3), atol=1e-3) or np.linalg.det(r) < 0:
            raise ValueError(f"R[{i}] is not a rotation matrix")
    ts = [_checked_array(np.ravel(v), (3,), f"t[{i}]") for i, v in enumerate(t)]
    return greys, K_ref, Ks, Rs, ts


def _voting_sources(inp: _SweepInput) -> list[int]:
    """Indices of the sources whose median triangulation angle at the middle plane's depth is at
    least ``inp.min_angle_deg``."""
    mid_depth = 2.0 / (1.0 / inp.near + 1.0 / inp.far)
    angles = triangulation_angles(inp.Rs, inp.ts, mid_depth, inp.K_ref, inp.ref.shape)
    return [i for i in range(len(inp.greys)) if angles[i] >= inp.min_angle_deg]


def _sweep_and_finalize(inp: _SweepInput, greys: list[np.ndarray], homs: np.ndarray, rect: np.ndarray,
                        inv_d: np.ndarray, depth: np.ndarray, conf: np.ndarray, cost: np.ndarray) -> None:
    """Run the kernels on the voting sources ``greys`` (homographies ``homs``, rectified flags
    ``rect``): window statistics, sweep, finalisation and smoothing into depth, conf, cost (H, W)."""
    H, W = inp.ref.shape
    # centre the grey values: ZNCC ignores the offset, float32 running sums like it small
    ref_c = inp.ref - np.float32(0.5)
    ref_mean, ref_isd = ref_window_stats(ref_c, inp.window)
    reference = Reference(ref_c, ref_mean, ref_isd)
    var_floor = np.float32(inp.window * inp.window * MIN_STD ** 2)
    src, whole = _kernel_sources(greys, homs, rect, inp.window, (H, W), var_floor)
    chunks = _chunks(H, inp.n_threads)
    prm = SweepParams(inp.window, inp.shift, var_floor, chunks, inp.lr)
    nv = 2 if inp.shift > 0 else 1
    win = Winners(np.empty((nv, H, W), np.float32), np.empty((nv, H, W), np.int32),
                  np.empty((nv, H, W), np.float32), np.empty((nv, H, W), np.float32),
                  np.empty((nv, H, W), np.float32), np.empty((nv, 2, H, W), np.float32))
    a_shift = homs[:, 0, 0, 2] / homs[:, 0, 2, 2]           # (P,) x shift of the first source
    if inp.lr:
        right = RightWinners(np.round(a_shift).astype(np.int64), np.empty((nv, H, W), np.float32),
                             np.empty((nv, H, W), np.int32))
    else:
        right = RightWinners(np.zeros(inp.n_planes, np.int64), np.empty((nv, 0, 0), np.float32),
                             np.empty((nv, 0, 0), np.int32))
    nb = PLANE_BLOCK if whole.all() else 1
    scr = _scratch(len(chunks) - 1, nb, len(greys), inp.window, W, min(inp.top_k, len(greys)), inp.shift)
    for s in np.flatnonzero(whole):
        stats.rect_source_stats(greys[s] - np.float32(0.5), inp.window, src.pad, float(var_floor),
                                src.istat[src.int_id[s]])
    with numba.parallel_chunksize(1):   # chunks go to whichever thread is free
        fronto.sweep_fronto(reference, src, prm, win, right, scr)
    tmp = np.empty((4 if inp.lr else 3, H, W) if nv > 1 or inp.lr else (0, H, W), np.float32)
    finalize.finalize_all(win, right, inp.lr, inv_d, inp.subpixel, np.float32(CONF_SCALE),
                          np.float32(SHIFT_SWITCH_REL), float(a_shift[0]), float(a_shift[-1]),
                          np.float32(LR_MAX_DIFF), tmp, depth, conf, cost)
    if inp.smooth > 1:
        raw = depth.copy()
        finalize.smooth_inverse(raw, inp.smooth, np.float32(SMOOTH_MAX_REL), depth)


def _kernel_sources(greys: list[np.ndarray], homs: np.ndarray, rect: np.ndarray, window: int,
                    ref_shape: tuple[int, int], var_floor: np.float32) -> tuple[Sources, np.ndarray]:
    """The :class:`~mannequin.stereo.kernels.fronto.Sources` of the voting sources, and the (S,)
    bool mask of the integer-shift ones (their ``istat`` allocated, not yet filled)."""
    H, W = ref_shape
    src_flat = np.concatenate([g.ravel() for g in greys]) - np.float32(0.5)
    sizes = np.array([g.size for g in greys], np.int64)
    if sizes.sum() >= 2**31 - 1:
        raise ValueError("sources hold too many pixels in all (the kernel indexes with int32)")
    src_off = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
    src_shape = np.array([g.shape for g in greys], np.int64)
    x_shift = homs[:, :, 0, 2] / homs[:, :, 2, 2]          # (P,S) x shift per plane (rectified)
    whole = integer_shift_sources(homs, rect, [g.shape for g in greys], (H, W))
    int_id = np.where(whole, np.cumsum(whole) - 1, -1).astype(np.int64)
    ishift = np.round(x_shift).astype(np.int64)
    if whole.any():
        pad = int(np.abs(ishift[:, whole]).max()) + window // 2 + 1
        istat = np.empty((int(whole.sum()), 5, H, W + 2 * pad), np.float32)
    else:
        pad = 0
        istat = np.empty((0, 5, 1, 1), np.float32)
    return Sources(src_flat, src_off, src_shape, homs, rect, int_id, ishift, istat, pad), whole


def _scratch(nc: int, nb: int, S: int, window: int, W: int, k: int, shift: int) -> Scratch:
    """Uninitialised :class:`~mannequin.stereo.kernels.fronto.Scratch` for ``nc`` chunks, blocks of
    ``nb`` planes, ``S`` sources, rows of ``W`` px and a top-``k`` list."""
    return Scratch(ring=np.empty((nc, nb, S, window, W), np.float32),
                   vring=np.empty((nc, nb, S, window, W), np.float32),
                   vsum=np.empty((nc, nb, S, 3, W), np.float32),
                   work=np.empty((nc, 10, W), np.float32),
                   iwork=np.empty((nc, W), np.int32),
                   topk=np.empty((nc, k, W), np.float32),
                   cring=np.empty((nc, nb, 2 * shift + 1, W), np.float32),
                   oring=np.empty((nc, nb, 2 * shift + 1, W), np.float32),
                   vmin4=np.empty((nc, nb, W), np.float32))
