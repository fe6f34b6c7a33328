"""Public plane-sweep API: input checks, grey conversion, depth planes and view selection.

The compiled loops live in :mod:`mannequin.stereo.kernels.fronto`; this module prepares their inputs.

Conventions: ``K`` matrices are in pixels with pixel centres at i + 0.5 (COLMAP / MC: the centre of
pixel (row r, col c) is (c + 0.5, r + 0.5)).  ``R[i], t[i]`` map reference-camera points into
source ``i``: ``X_src = R X_ref + t``.  Depth is the z coordinate in the reference camera.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import numba
import numpy as np

from mannequin.stereo.kernels import fronto as sweep

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
#: so it ranks below every passing pixel.  Motorcycle pair (61 planes, 1 px steps), bad-2 of the
#: most confident 87.3%: 6.5% at 1 step (the check then fails 14.8% of the pixels, many of them
#: right), 5.8% at 2 and 3 steps.
LR_MAX_DIFF = 2.0
#: Planes swept together row by row when every source takes the integer-shift path (see
#: :func:`integer_shift_sources`); with 4 a block's winner state is updated in one pass per row
#: (``sweep._track_rows4`` / ``_track_right4``) instead of four masked-store passes.  Motorcycle
#: pair, 1 thread, CPU s (loaded machine): 0.107 -> 0.091 (0.117 -> 0.098 with lr_check); 2 or 8
#: (no fused pass) gained ~0-5%.  Other sources: 1 (their per-plane ring buffers grow with it).
PLANE_BLOCK = 4
#: A sweep along planes n·X = d (``plane_sweep(normal=...)``) leaves out the pixels whose rays
#: meet the planes at n·r (z = 1) at most this: grazing, so their depth d / (n·r) is ill-posed.
MIN_RAY_COS = 0.05
#: Rows per parallel chunk, roughly (the chunk count is rounded to a multiple of the threads).
#: Measured 16..250 on 640x480 (4 sources) and the 741x500 motorcycle pair (2 threads): 60-90
#: best; 16-45 slower (halo rows), 250 (two chunks) ~20% slower (cause not isolated).
CHUNK_ROWS = 60

_GREY = np.array([0.299, 0.587, 0.114])


def to_grey(img, name: str = "image") -> np.ndarray:
    """(H,W) or (H,W,3) uint8/uint16/float image -> (H,W) float32 grey.

    Integer images are scaled to [0, 1]; float images are used as given (assumed in [0, 1]).
    """
    a = np.asarray(img)
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[:, :, 0]
    if not (a.ndim == 2 or (a.ndim == 3 and a.shape[2] == 3)):
        raise ValueError(f"{name} must be (H,W) or (H,W,3), got shape {a.shape}")
    if a.shape[0] < 2 or a.shape[1] < 2:
        raise ValueError(f"{name} must be at least 2x2 pixels, got shape {a.shape}")
    if a.dtype == np.uint8 or a.dtype == np.uint16:
        scale = 1.0 / np.iinfo(a.dtype).max
        a = a.astype(np.float32) * np.float32(scale)
    elif np.issubdtype(a.dtype, np.floating):
        a = a.astype(np.float32, copy=False)
        if not np.isfinite(a).all():
            raise ValueError(f"{name} has non-finite values")
    else:
        raise ValueError(f"{name} must be uint8, uint16 or float, got {a.dtype}")
    if a.ndim == 3:
        a = (a @ _GREY.astype(np.float32)).astype(np.float32)
    return np.ascontiguousarray(a)


def _check_matrix(m, shape, name):
    a = np.asarray(m, dtype=np.float64)
    if a.shape != shape:
        raise ValueError(f"{name} must have shape {shape}, got {a.shape}")
    if not np.isfinite(a).all():
        raise ValueError(f"{name} has non-finite values")
    return a


def _check_K(K, name):
    K = _check_matrix(K, (3, 3), name)
    if K[0, 0] <= 0 or K[1, 1] <= 0 or not np.allclose(K[2], (0.0, 0.0, 1.0)):
        raise ValueError(f"{name} must be a pinhole matrix [[fx,s,cx],[0,fy,cy],[0,0,1]] with fx, fy > 0")
    return K


def inverse_depth_planes(near: float, far: float, n_planes: int) -> np.ndarray:
    """Plane inverse depths, evenly spaced from 1/near (index 0) to 1/far (index n-1), float64."""
    return np.linspace(1.0 / near, 1.0 / far, n_planes)


def plane_homographies(K_ref, K_sources, R, t, inv_depths, normal=None) -> np.ndarray:
    """(P,S,3,3) homographies of the planes n·X = d (reference camera; fronto-parallel z = d when
    ``normal`` is None, n = (0,0,1)), ``inv_depths`` = 1/d, in array-index coordinates.

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


def triangulation_angles(R, t, depth: float, K_ref=None, shape=None, grid: int = 5) -> np.ndarray:
    """Triangulation angle (degrees) of each source at reference depth ``depth`` (z).

    Without ``K_ref``/``shape``: the angle at the reference-axis point (0, 0, depth).  With them:
    the median of the angles at the points of a ``grid``×``grid`` lattice of reference pixels,
    which keeps a source that moves along the viewing direction (no parallax only near the
    epipole) from being dropped.
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
        a = pts
        b = pts - C
        c = np.sum(a * b, 1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1) + 1e-300)
        out.append(float(np.median(np.degrees(np.arccos(np.clip(c, -1.0, 1.0))))))
    return np.array(out)


def ref_window_stats(grey: np.ndarray, window: int, min_std: float = MIN_STD):
    """Window mean of the reference and 1/sqrt(Σ(I-Ī)²) (0 where the std is below ``min_std``).

    (H,W) grey -> two (H,W) float32 arrays; edges replicated, float64 sums
    (:func:`mannequin.stereo.kernels.fronto.window_stats`, equal to scipy's uniform_filter up to rounding)."""
    g = np.ascontiguousarray(grey, dtype=np.float32)
    m = np.empty(g.shape, np.float32)
    isd = np.empty(g.shape, np.float32)
    sweep.window_stats(g, int(window), float(min_std) ** 2, m, isd)
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


def integer_shift_sources(homs: np.ndarray, rect: np.ndarray, shapes, ref_shape, tol: float = 1e-6):
    """(S,) bool: rectified sources (``rect`` from :func:`shift_only_sources`) of the reference's
    size whose x shift is an integer (within ``tol`` px) at every plane, e.g. a rectified pair
    swept at whole-pixel disparity steps.  Their warped rows are plain slices of the source, so the
    kernel takes the source's window statistics from a table computed once
    (:func:`mannequin.stereo.kernels.fronto.rect_source_stats`) instead of summing them per plane."""
    a = homs[:, :, 0, 2] / homs[:, :, 2, 2]
    whole = np.abs(a - np.round(a)).max(axis=0) <= tol
    same = np.array([tuple(sh) == tuple(ref_shape) for sh in shapes], bool)
    return np.asarray(rect, bool) & whole & same


def _chunks(H: int, n_threads: int) -> np.ndarray:
    n = n_threads * max(1, round(H / (n_threads * CHUNK_ROWS)))
    n = max(1, min(n, H))
    return np.linspace(0, H, n + 1).round().astype(np.int64)


def ray_normal_cos(K, shape, normal) -> np.ndarray:
    """(H,W) n·r for the pixel rays r = K⁻¹ (c + 0.5, r + 0.5, 1) (z = 1) of a ``shape`` = (H, W)
    image: a pixel's depth on the plane n·X = d is d / (n·r)."""
    H, W = shape
    K = np.asarray(K, dtype=np.float64)
    n = np.asarray(normal, dtype=np.float64)
    y = ((np.arange(H) + 0.5 - K[1, 2]) / K[1, 1])[:, None]
    x = (np.arange(W)[None, :] + 0.5 - K[0, 2] - K[0, 1] * y) / K[0, 0]
    return n[0] * x + n[1] * y + n[2]


def plane_sweep(ref, sources: Sequence, K_ref, K_sources: Sequence, R: Sequence, t: Sequence,
                depth_range, n_planes: int = 128, *, window: int = 7, top_k: int = 2,
                min_angle_deg: float = 1.0, subpixel: bool = True, n_threads=None,
                return_cost: bool = False, shift=None, smooth=None, lr_check: bool = False,
                normal=None, min_ray_cos: float = MIN_RAY_COS):
    """Plane-sweep stereo of ``ref`` against ``sources`` (ZNCC, top-k views).

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
    """
    if normal is not None:
        return _plane_sweep_along(ref, sources, K_ref, K_sources, R, t, depth_range, n_planes, normal,
                                  min_ray_cos, return_cost, window=window, top_k=top_k,
                                  min_angle_deg=min_angle_deg, subpixel=subpixel, n_threads=n_threads,
                                  shift=shift, smooth=smooth, lr_check=lr_check)
    return _plane_sweep(ref, sources, K_ref, K_sources, R, t, depth_range, n_planes, None, window=window,
                        top_k=top_k, min_angle_deg=min_angle_deg, subpixel=subpixel, n_threads=n_threads,
                        return_cost=return_cost, shift=shift, smooth=smooth, lr_check=lr_check)


def _plane_sweep_along(ref, sources, K_ref, K_sources, R, t, depth_range, n_planes, normal, min_ray_cos,
                       return_cost, **kw):
    """:func:`plane_sweep` along planes n·X = d: sweep the rows that see the planes, then d -> depth."""
    n = _check_matrix(np.ravel(normal), (3,), "normal")
    if not np.linalg.norm(n) > 0:
        raise ValueError("normal must be a non-zero 3-vector")
    n = n / np.linalg.norm(n)
    if not (math.isfinite(float(min_ray_cos)) and 0 < min_ray_cos < 1):
        raise ValueError(f"min_ray_cos must be in (0, 1), got {min_ray_cos!r}")
    g_ref = to_grey(ref, "ref")
    H, W = g_ref.shape
    K = _check_K(K_ref, "K_ref")
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
        d, c, k = _plane_sweep(img, sources, Kc, K_sources, R, t, depth_range, n_planes, n, return_cost=True, **kw)
        cs = cos[r0:r1]
        ok = (d > 0) & (cs > min_ray_cos)
        depth[r0:r1] = np.where(ok, d / np.where(ok, cs, 1.0), 0.0)
        conf[r0:r1] = np.where(ok, c, 0.0)
        cost[r0:r1] = np.where(ok, k, np.nan)
    return (depth, conf, cost) if return_cost else (depth, conf)


def _plane_sweep(ref, sources, K_ref, K_sources, R, t, depth_range, n_planes, normal, *, window, top_k,
                 min_angle_deg, subpixel, n_threads, return_cost, shift, smooth, lr_check):
    g_ref = to_grey(ref, "ref")
    H, W = g_ref.shape
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
    K_ref = _check_K(K_ref, "K_ref")
    Ks = [_check_K(k, f"K_sources[{i}]") for i, k in enumerate(K_sources)]
    Rs = [_check_matrix(r, (3, 3), f"R[{i}]") for i, r in enumerate(R)]
    for i, r in enumerate(Rs):
        if not np.allclose(r @ r.T, np.eye(3), atol=1e-3) or np.linalg.det(r) < 0:
            raise ValueError(f"R[{i}] is not a rotation matrix")
    ts = [_check_matrix(np.ravel(v), (3,), f"t[{i}]") for i, v in enumerate(t)]
    try:
        near, far = (float(v) for v in depth_range)
    except (TypeError, ValueError):
        raise ValueError("depth_range must be a pair (near, far)") from None
    if not (math.isfinite(near) and math.isfinite(far) and 0 < near < far):
        raise ValueError(f"depth_range must satisfy 0 < near < far (finite), got {depth_range!r}")
    if isinstance(n_planes, bool) or int(n_planes) != n_planes or n_planes < 2:
        raise ValueError(f"n_planes must be an integer >= 2, got {n_planes!r}")
    n_planes = int(n_planes)
    if isinstance(window, bool) or int(window) != window or window < 3 or window % 2 == 0:
        raise ValueError(f"window must be an odd integer >= 3, got {window!r}")
    window = int(window)
    if shift is None:
        shift = window // 2
    if isinstance(shift, bool) or int(shift) != shift or not 0 <= shift <= window // 2:
        raise ValueError(f"shift must be None or an integer in [0, window // 2], got {shift!r}")
    shift = int(shift)
    if smooth is None:
        smooth = window
    if isinstance(smooth, bool) or int(smooth) != smooth or smooth < 0:
        raise ValueError(f"smooth must be None or an integer >= 0, got {smooth!r}")
    smooth = int(smooth)
    if isinstance(top_k, bool) or int(top_k) != top_k or top_k < 1:
        raise ValueError(f"top_k must be an integer >= 1, got {top_k!r}")
    if not (math.isfinite(float(min_angle_deg)) and min_angle_deg >= 0):
        raise ValueError(f"min_angle_deg must be a finite number >= 0, got {min_angle_deg!r}")
    max_threads = numba.config.NUMBA_NUM_THREADS
    if n_threads is None:
        n_threads = max_threads
    elif isinstance(n_threads, bool) or int(n_threads) != n_threads or n_threads < 1:
        raise ValueError(f"n_threads must be a positive integer or None, got {n_threads!r}")
    n_threads = min(int(n_threads), max_threads)
    if not isinstance(lr_check, (bool, np.bool_)):
        raise ValueError(f"lr_check must be True or False, got {lr_check!r}")

    depth = np.zeros((H, W), np.float32)
    conf = np.zeros((H, W), np.float32)
    cost = np.full((H, W), np.nan, np.float32)

    inv_d = inverse_depth_planes(near, far, n_planes)
    mid_depth = 2.0 / (1.0 / near + 1.0 / far)
    angles = triangulation_angles(Rs, ts, mid_depth, K_ref, (H, W))
    keep = [i for i in range(n_src) if angles[i] >= min_angle_deg]
    if not keep:
        return (depth, conf, cost) if return_cost else (depth, conf)
    k = min(int(top_k), len(keep))

    homs = plane_homographies(K_ref, [Ks[i] for i in keep], [Rs[i] for i in keep],
                              [ts[i] for i in keep], inv_d, normal)
    # centre the grey values: ZNCC ignores the offset, float32 running sums like it small
    ref_c = g_ref - np.float32(0.5)
    ref_mean, ref_isd = ref_window_stats(ref_c, window)
    src_flat = np.concatenate([greys[i].ravel() for i in keep]) - np.float32(0.5)
    sizes = np.array([greys[i].size for i in keep], np.int64)
    if sizes.sum() >= 2**31 - 1:
        raise ValueError("sources hold too many pixels in all (the kernel indexes with int32)")
    src_off = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
    src_shape = np.array([greys[i].shape for i in keep], np.int64)
    S = len(keep)
    rect = shift_only_sources(homs)
    lr = bool(lr_check)
    if lr and (S != 1 or not rect[0]):
        raise ValueError("lr_check needs exactly one source (with enough parallax) whose plane "
                         "homographies are pure x shifts (a rectified pair)")
    chunks = _chunks(H, n_threads)
    nc = len(chunks) - 1

    nv = 2 if shift > 0 else 1
    best = np.empty((nv, H, W), np.float32)
    bidx = np.empty((nv, H, W), np.int32)
    second = np.empty((nv, H, W), np.float32)
    bm1 = np.empty((nv, H, W), np.float32)
    bp1 = np.empty((nv, H, W), np.float32)
    hist = np.empty((nv, 2, H, W), np.float32)
    var_floor = np.float32(window * window * MIN_STD ** 2)
    x_shift = homs[:, :, 0, 2] / homs[:, :, 2, 2]          # (P,S) x shift per plane (rectified)
    a_shift = x_shift[:, 0]
    whole = integer_shift_sources(homs, rect, [greys[i].shape for i in keep], (H, W))
    nb = PLANE_BLOCK if whole.all() else 1
    ring = np.empty((nc, nb, S, window, W), np.float32)
    vring = np.empty((nc, nb, S, window, W), np.float32)
    vsum = np.empty((nc, nb, S, 3, W), np.float32)
    work = np.empty((nc, 10, W), np.float32)
    iwork = np.empty((nc, W), np.int32)
    topk = np.empty((nc, k, W), np.float32)
    cring = np.empty((nc, nb, 2 * shift + 1, W), np.float32)
    oring = np.empty((nc, nb, 2 * shift + 1, W), np.float32)
    vmin4 = np.empty((nc, nb, W), np.float32)
    int_id = np.where(whole, np.cumsum(whole) - 1, -1).astype(np.int64)
    ishift = np.round(x_shift).astype(np.int64)
    if whole.any():
        pad = int(np.abs(ishift[:, whole]).max()) + window // 2 + 1
        istat = np.empty((int(whole.sum()), 5, H, W + 2 * pad), np.float32)
    else:
        pad = 0
        istat = np.empty((0, 5, 1, 1), np.float32)
    if lr:
        lr_shift = np.round(a_shift).astype(np.int64)
        rbest = np.empty((nv, H, W), np.float32)
        ridx = np.empty((nv, H, W), np.int32)
    else:
        lr_shift = np.zeros(n_planes, np.int64)
        rbest = np.empty((nv, 0, 0), np.float32)
        ridx = np.empty((nv, 0, 0), np.int32)

    old_threads = numba.get_num_threads()
    numba.set_num_threads(n_threads)
    try:
        for s in np.flatnonzero(whole):
            sweep.rect_source_stats(greys[keep[s]] - np.float32(0.5), window, pad, float(var_floor),
                                    istat[int_id[s]])
        with numba.parallel_chunksize(1):   # chunks go to whichever thread is free
            sweep.sweep_fronto(ref_c, ref_mean, ref_isd, src_flat, src_off, src_shape, homs, rect,
                               window, k, var_floor, chunks, shift, best, bidx, second, bm1, bp1,
                               hist, ring, vring, vsum, work, iwork, topk, cring, oring, vmin4,
                               lr, lr_shift, rbest, ridx, int_id, ishift, istat, pad)
        tmp = np.empty((4 if lr else 3, H, W) if nv > 1 or lr else (0, H, W), np.float32)
        sweep.finalize_all(best, bidx, second, bm1, bp1, inv_d, bool(subpixel), np.float32(CONF_SCALE),
                           np.float32(SHIFT_SWITCH_REL), lr, ridx, float(a_shift[0]), float(a_shift[-1]),
                           np.float32(LR_MAX_DIFF), tmp, depth, conf, cost)
        if smooth > 1:
            raw = depth.copy()
            sweep.smooth_inverse(raw, smooth, np.float32(SMOOTH_MAX_REL), depth)
    finally:
        numba.set_num_threads(old_threads)
    if return_cost:
        cost[cost < 0] = np.nan
        return depth, conf, cost
    return depth, conf
