"""Numba kernels of the window statistics computed once per image before the sweep (pure).

:func:`window_stats`: the reference's window mean and 1/sqrt(Σ(I-Ī)²); :func:`rect_source_stats`:
the plane-independent window sums of an integer-shift source (see
:mod:`mannequin.stereo.kernels.fronto`).  Both sum in float64 with replicated edges.
"""
from __future__ import annotations

import numpy as np
from numba import njit, prange


@njit(cache=True)
def _vertical_sums(src, r, h, pad, v1, v2):
    """Add to v1 / v2 (Wp,) f64 the sums of src (H,W) and src² over rows r-h .. r+h (rows clamped to
    [0, H)), column x of the buffers holding source column clamp(x - pad, 0, W-1)."""
    H, W = src.shape
    Wp = v1.shape[0]
    pl = min(pad, Wp)
    pr = max(Wp - pad - W, 0)
    for i in range(-h, h + 1):
        sr = src[min(max(r + i, 0), H - 1)]
        m1 = v1[pad:pad + W]
        m2 = v2[pad:pad + W]
        for c in range(W):
            v = np.float64(sr[c])
            m1[c] += v
            m2[c] += v * v
        a = np.float64(sr[0])
        z = np.float64(sr[W - 1])
        for x in range(pl):
            v1[x] += a
            v2[x] += a * a
        e1 = v1[pad + W:]
        e2 = v2[pad + W:]
        for x in range(pr):
            e1[x] += z
            e2[x] += z * z


@njit(parallel=True, error_model="numpy", cache=True)
def rect_source_stats(src, window, pad, var_floor, out):
    """Window statistics of an integer-shift source (see ``sweep_fronto``), in float64 sums.

    src (H,W) f32 grey (same offset as the reference); out (5,H,W+2 pad) f32, column x of the
    padded row is source column clamp(x - pad, 0, W-1) (replicated edges, as the warps clamp):
    [0] the padded source, [1] / [2] vertical sums of W / W² over ``window`` rows (rows clamped to
    [0, H)), [3] box sum of W over window × window (columns x ± h, h = window // 2), [4]
    1/sqrt(max(Σ W² - (Σ W)²/n, var_floor)) over that box (n = window²).  Columns within h of
    the padded edges of [3] / [4] use clamped columns (never read for pad > max |shift| + h).
    """
    H, W = src.shape
    Wp = out.shape[2]
    h = window // 2
    inv_n = 1.0 / (window * window)
    vf = np.float64(var_floor)
    pl = min(pad, Wp)
    for r in prange(H):              # one parallel region (each fork/join costs on a busy machine)
        row = src[r]
        o0 = out[0, r]
        for x in range(pl):
            o0[x] = row[0]
        mid = o0[pad:pad + W]
        for c in range(W):
            mid[c] = row[c]
        for x in range(pad + W, Wp):
            o0[x] = row[W - 1]
        v1 = np.zeros(Wp, np.float64)
        v2 = np.zeros(Wp, np.float64)
        _vertical_sums(src, r, h, pad, v1, v2)
        o1 = out[1, r]
        o2 = out[2, r]
        o3 = out[3, r]
        o4 = out[4, r]
        for x in range(Wp):
            o1[x] = np.float32(v1[x])
            o2[x] = np.float32(v2[x])
        b1 = np.zeros(Wp, np.float64)
        b2 = np.zeros(Wp, np.float64)
        lo = min(h, Wp)
        n = max(Wp - 2 * h, 0)
        for j in range(2 * h + 1):           # interior columns: sums over shifted slices
            s1 = v1[j:j + n]
            s2 = v2[j:j + n]
            t1 = b1[lo:lo + n]
            t2 = b2[lo:lo + n]
            for x in range(n):
                t1[x] += s1[x]
                t2[x] += s2[x]
        for x in range(Wp):
            if x >= lo and x < lo + n:
                continue
            a1 = 0.0
            a2 = 0.0
            for j in range(-h, h + 1):       # clamped edge columns
                xx = min(max(x + j, 0), Wp - 1)
                a1 += v1[xx]
                a2 += v2[xx]
            b1[x] = a1
            b2[x] = a2
        for x in range(Wp):
            var = max(b2[x] - b1[x] * b1[x] * inv_n, vf)
            o3[x] = np.float32(b1[x])
            o4[x] = np.float32(1.0 / np.sqrt(var))


@njit(parallel=True, error_model="numpy", cache=True)
def window_stats(g, window, min_var, mean_out, isd_out):
    """Window mean and 1/sqrt(Σ(I-Ī)²) of the grey image ``g`` (H,W) f32 over ``window``×``window``
    boxes with replicated edges (scipy's uniform_filter mode="nearest"), in float64.

    mean_out, isd_out (H,W) f32; isd is 0 where the window variance (mean of squares minus the
    squared mean, clipped at 0) is below ``min_var`` (f64)."""
    H, W = g.shape
    h = window // 2
    n = window * window
    inv_n = 1.0 / n
    Wp = W + 2 * h
    for r in prange(H):
        a1 = np.zeros(Wp, np.float64)
        a2 = np.zeros(Wp, np.float64)
        _vertical_sums(g, r, h, h, a1, a2)       # replicated edge columns
        m1 = np.zeros(W, np.float64)
        m2 = np.zeros(W, np.float64)
        for j in range(window):
            s1 = a1[j:j + W]
            s2 = a2[j:j + W]
            for c in range(W):
                m1[c] += s1[c]
                m2[c] += s2[c]
        mo = mean_out[r]
        io = isd_out[r]
        for c in range(W):
            m = m1[c] * inv_n
            var = max(m2[c] * inv_n - m * m, 0.0)
            mo[c] = np.float32(m)
            io[c] = np.float32(1.0 / np.sqrt(max(var, 1e-30) * n)) if var >= min_var else np.float32(0.0)
