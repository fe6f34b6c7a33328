"""Numba kernels run after the sweep (pure): depth and confidence from the running winners, the
shiftable-window merge, the left-right check and the edge-aware smoothing.

Inputs are the :class:`mannequin.stereo.kernels.fronto.Winners` / ``RightWinners`` arrays the
sweep leaves (BIG = no cost, -1 = no plane).
"""
from __future__ import annotations

import numpy as np
from numba import njit, prange

from mannequin.stereo.kernels.fronto import BIG, VALID_LIMIT


@njit(fastmath=True, error_model="numpy", cache=True)
def _finalize_row(brow, irow, srow, mrow, prow, inv_depths, subpixel, conf_scale, drow, crow, krow):
    """Winner-take-all depth of one row with parabola refinement in inverse depth, and a confidence.

    State rows (W,) in; inv_depths (P,) f64 plane inverse depths (evenly spaced).  Writes drow
    (depth, 0 = none), crow (conf in [0,1] = clip(1-best) * clip((second-best)/conf_scale)) and
    krow (best cost, -1 = none), all (W,); a winner on the first or last plane gives none.  Branch
    free (selects; the plane's inverse depth is inv_depths[0] + (i + x) step, the planes being
    evenly spaced), so that the loop vectorises."""
    P = inv_depths.shape[0]
    u0 = inv_depths[0]
    step = (inv_depths[P - 1] - u0) / (P - 1)
    sub = subpixel
    for c in range(brow.shape[0]):
        b = brow[c]
        i = irow[c]
        # A winner on the first or last plane is no minimum of the cost, only its edge: the surface
        # lies outside the range, or nothing fits (a moving person whose apparent motion mimics a
        # far surface; docs/FINDINGS.md, "Winners on the edge of the depth range").
        valid = (i > 0) & (i < P - 1) & (b < VALID_LIMIT)
        cm = mrow[c]
        cp = prow[c]
        den = cm - 2.0 * b + cp
        ok = sub & (i > 0) & (i < P - 1) & (cm < VALID_LIMIT) & (cp < VALID_LIMIT) & (den > 1e-9)
        x = 0.5 * (cm - cp) / max(den, 1e-9)
        x = min(max(x, -0.5), 0.5) if ok else 0.0
        inv = u0 + (np.float64(i) + x) * step
        good = valid & (inv > 0.0)
        drow[c] = np.float32(1.0 / inv) if good else np.float32(0.0)
        s2 = min(srow[c], np.float32(2.0))
        q = min(max(np.float32(1.0) - b, np.float32(0.0)), np.float32(1.0))
        dq = min(max((s2 - b) / conf_scale, np.float32(0.0)), np.float32(1.0))
        crow[c] = q * dq if valid else np.float32(0.0)
        krow[c] = b if valid else np.float32(-1.0)


@njit(parallel=True, fastmath=True, error_model="numpy", cache=True)
def finalize_all(win, right, lr, inv_depths, subpixel, conf_scale, max_rel, a_first, a_last, lr_max, tmp, depth,
                 conf, cost_out):
    """:func:`_finalize_row` of both winners, :func:`_merge_row` and the left-right check in one
    parallel pass over the rows (each step only needs its own row: one fork/join instead of four,
    which matters on a loaded machine where every parallel region waits for its slowest thread).

    ``win``: the :class:`~mannequin.stereo.kernels.fronto.Winners` of ``sweep_fronto`` (V = 1 or
    2); with V = 2 the shiftable-window winner (index 1) replaces the plain one where their depths
    differ by more than ``max_rel``.  inv_depths (P,) f64 plane inverse depths; ``subpixel``,
    ``conf_scale``: see :func:`_finalize_row`.  lr: with ``right.idx`` (V,H,W, a
    :class:`~mannequin.stereo.kernels.fronto.RightWinners`) and a_first / a_last (see
    :func:`lr_disagreement`), a pixel whose
    disagreement exceeds ``lr_max`` plane steps gets confidence 0.  tmp (4,H,W) f32 scratch (the
    shifted winner's depth, conf, cost; the disagreement).  depth, conf, cost_out (H,W) f32 as in
    :func:`_finalize_row`.
    """
    best, bidx, second, bm1, bp1 = win.best, win.bidx, win.second, win.bm1, win.bp1
    ridx = right.idx
    V, H, W = best.shape
    for r in prange(H):
        _finalize_row(best[0, r], bidx[0, r], second[0, r], bm1[0, r], bp1[0, r], inv_depths,
                      subpixel, conf_scale, depth[r], conf[r], cost_out[r])
        if V > 1:
            _finalize_row(best[1, r], bidx[1, r], second[1, r], bm1[1, r], bp1[1, r], inv_depths,
                          subpixel, conf_scale, tmp[0, r], tmp[1, r], tmp[2, r])
            _merge_row(depth[r], conf[r], cost_out[r], tmp[0, r], tmp[1, r], tmp[2, r], max_rel)
        if lr:
            lrow = tmp[3, r]
            _lr_row(r, depth[r], ridx, inv_depths, a_first, a_last, max_rel, lrow)
            crow = conf[r]
            for c in range(W):
                crow[c] = np.float32(0.0) if lrow[c] > lr_max else crow[c]


@njit(parallel=True, fastmath=True, error_model="numpy", cache=True)
def smooth_inverse(depth, window, max_rel, out):
    """Edge-aware smoothing: each valid pixel becomes the mean inverse depth of the valid pixels of
    its ``window``×``window`` neighbourhood whose inverse depth is within ``max_rel`` (relative) of
    its own, so noise is averaged out but no depth crosses a discontinuity.  0 = no depth.

    depth, out (H,W) f32 (distinct arrays).  The inverse depths are computed once into an
    (H+2h, W+2h) f32 temporary padded by h = window // 2 pixels; invalid and padding pixels get a
    negative sentinel that no tolerance band reaches, so the loops need no edge handling.  Per
    output row, each neighbourhood row takes vectorised passes over the image row, three
    neighbour columns per pass (sums equal to a per-pixel loop up to float rounding)."""
    H, W = depth.shape
    h = window // 2
    Wp = W + 2 * h
    inv = np.empty((H + 2 * h, Wp), np.float32)
    for r in prange(H + 2 * h):
        row = inv[r]
        for c in range(Wp):
            row[c] = np.float32(-1.0e30)
        if r >= h and r < H + h:
            drow = depth[r - h]
            irow = inv[r, h:h + W]
            for c in range(W):
                d = drow[c]
                irow[c] = np.float32(1.0) / d if d > 0.0 else np.float32(-1.0e30)
    acc = np.empty((H, W), np.float32)
    cnt = np.empty((H, W), np.float32)
    for r in prange(H):
        u0 = inv[r + h, h:h + W]
        a = acc[r]
        n = cnt[r]
        for c in range(W):
            a[c] = 0.0
            n[c] = 0.0
        for dr in range(window):
            urow = inv[r + dr]
            dc = 0
            while dc + 3 <= window:          # three neighbours per pass: fewer a/n loads, stores
                ua = urow[dc:dc + W]
                ub = urow[dc + 1:dc + 1 + W]
                uc = urow[dc + 2:dc + 2 + W]
                for c in range(W):
                    t = max_rel * u0[c]
                    oka = abs(ua[c] - u0[c]) <= t
                    okb = abs(ub[c] - u0[c]) <= t
                    okc = abs(uc[c] - u0[c]) <= t
                    a[c] += ((ua[c] if oka else np.float32(0.0)) + (ub[c] if okb else np.float32(0.0))
                             + (uc[c] if okc else np.float32(0.0)))
                    n[c] += ((np.float32(1.0) if oka else np.float32(0.0))
                             + (np.float32(1.0) if okb else np.float32(0.0))
                             + (np.float32(1.0) if okc else np.float32(0.0)))
                dc += 3
            while dc < window:
                u = urow[dc:dc + W]
                for c in range(W):
                    ok = abs(u[c] - u0[c]) <= max_rel * u0[c]
                    a[c] += u[c] if ok else np.float32(0.0)
                    n[c] += np.float32(1.0) if ok else np.float32(0.0)
                dc += 1
        orow = out[r]
        for c in range(W):
            orow[c] = n[c] / a[c] if u0[c] > 0.0 else np.float32(0.0)


@njit(parallel=True, error_model="numpy", cache=True)
def lr_disagreement(depth, ridx, inv_depths, a_first, a_last, max_rel, out):
    """Left-right consistency of a rectified pair, in plane steps.

    depth (H,W) f32 reference depth (0 = none; the final winner, before smoothing).  ridx (V,H,W)
    i32 right-view winning planes of ``sweep_fronto`` (-1 = none); with V = 2 the right pixel takes
    the shiftable-window plane (index 1) where its inverse depth differs from the plain one's
    (index 0) by more than ``max_rel`` relative to the larger, as :func:`_merge_row` does for
    the reference.  inv_depths (P,) f64 evenly spaced plane inverse depths; a_first / a_last: x
    shift in px of plane 0 / P-1 (affine in inverse depth in between).  The reference pixel (r, c)
    at fractional plane q = (1/depth - inv_depths[0]) / step looks at right pixel
    x = round(c + a(q)); out (H,W) f32 = |q - right winner of x| in plane steps, BIG where the
    pixel has no depth, x lies outside the image or x has no right winner.
    """
    for r in prange(depth.shape[0]):
        _lr_row(r, depth[r], ridx, inv_depths, a_first, a_last, max_rel, out[r])


@njit(error_model="numpy", cache=True)
def _lr_row(r, drow, ridx, inv_depths, a_first, a_last, max_rel, orow):
    """:func:`lr_disagreement` of reference row r: depth row (W,) in, disagreement row (W,) out."""
    W = drow.shape[0]
    V = ridx.shape[0]
    P = inv_depths.shape[0]
    u0 = inv_depths[0]
    step = (inv_depths[P - 1] - u0) / (P - 1)
    da = (a_last - a_first) / (P - 1)
    for c in range(W):
        d = drow[c]
        orow[c] = BIG
        if not d > 0.0:
            continue
        q = (1.0 / d - u0) / step
        x = int(np.floor(c + a_first + q * da + 0.5))
        if x < 0 or x >= W:
            continue
        i = ridx[0, r, x]
        if V > 1:
            j = ridx[1, r, x]
            if i >= 0 and j >= 0:
                ui = inv_depths[i]
                uj = inv_depths[j]
                if abs(uj - ui) > max_rel * max(ui, uj):
                    i = j
        if i < 0:
            continue
        orow[c] = np.float32(abs(q - i))


@njit(error_model="numpy", cache=True)
def _merge_row(drow, crow, krow, d1, c1, k1, max_rel):
    """Take the shiftable-window winner (d1, c1, k1) where both depths exist and their inverse
    depths differ by more than ``max_rel`` relative to the larger: |1/d - 1/d1| > max_rel ·
    max(1/d, 1/d1), i.e. |d1 - d| > max_rel · max(d, d1) (division free).  All rows (W,) f32;
    drow, crow, krow are updated in place.  No fastmath: a plain IEEE comparison."""
    for c in range(drow.shape[0]):
        d0 = drow[c]
        dd = d1[c]
        if d0 > 0.0 and dd > 0.0 and abs(dd - d0) > max_rel * max(d0, dd):
            drow[c] = dd
            crow[c] = c1[c]
            krow[c] = k1[c]
