"""Numba kernels of the fronto-parallel plane sweep (pure: arrays in, arrays out, no I/O).

The public wrapper with input checks, grey conversion and plane set-up is
:func:`mannequin.stereo_core.plane_sweep`; this module only holds the compiled loops.

Design (see ``sweep_fronto``):

* Rows are split into chunks (a multiple of the thread count) processed in parallel.  Inside a
  chunk the loops run plane -> row -> source, so everything one row needs stays in L1/L2:
  a bilinear homography warp of one source row (the homography is affine along a row in
  homogeneous coordinates, so one reciprocal per pixel), then a *vertical* running box sum of
  W, W² and I·W kept with a ring buffer of the last ``window`` warped rows, then a *horizontal*
  running sum along the row.  The cost per hypothesis does not grow with the window size; a
  chunk re-warps ``window - 1`` halo rows per plane, so chunks are tall (~60 rows).
* The warp is two loops on purpose: coordinates, clamping and validity (SIMD-vectorised), then
  the four-tap gather (scalar).  Fused, LLVM keeps the whole loop scalar (about 1.6x slower).
* ZNCC uses the reference window mean and 1/sqrt(Σ(I-Ī)²) precomputed once per image.
* Source costs of a pixel are folded into a branch-free sorted top-k list as they are produced
  (fused into the ZNCC loop for the default top_k = 2);
  the plane cost is the mean of the valid ones among the k best.
* Shiftable windows (``shift`` > 0): the plane cost rows of the pixels (mean of the top k) go
  through a separable min filter over ±shift columns and rows (a ring of ``2 shift + 1`` rows,
  so chunks warp ``shift`` extra halo rows either side); the min-filtered curve gets its own
  running winner (state index 1) next to the plain one (index 0).
* No cost volume: per pixel the kernel keeps the costs of the last two planes (a 2-slot history),
  which is enough to spot the local minima of the cost curve as they pass.  Of those it keeps the
  best (cost, plane, costs either side for the parabola) and the lowest other local minimum more
  than two planes away (for the confidence: with dense planes the plain second-best plane just
  sits on the slope of the winner's basin).  All buffers come from the caller: O(H·W) memory.

* The row loops live in small helper functions that are *not* inlined (``_warp_row_*``,
  ``_vsum_update``, ``_hbox3``, ``_zncc_row``, ``_fold_topk``, ``_aggregate_row``, ``_hmin_row``,
  ``_vmin_rows``, ``_track_row``): compiled separately LLVM vectorises them, inlined into the big
  kernel it kept most of them scalar (aliasing run-time checks).  ``error_model="numpy"``
  everywhere: with Python's error model every float division carries a zero check that blocks
  vectorisation (all divisions here are guarded).
* Rectified sources (``rect``: every plane homography a pure x shift) skip the bilinear warp: a
  1-D interpolation with weights constant along the row (contiguous loads, no gather).

Coordinates inside the kernels are array indices: pixel (row r, col c) is the point (c, r).  The
caller folds the +0.5 pixel-centre convention of the intrinsics into the homographies.
"""
from __future__ import annotations

import numpy as np
from numba import njit, prange

#: Cost of a missing vote / no hypothesis.  Finite on purpose (kernels use fastmath: no inf/nan).
BIG = np.float32(1.0e4)
#: Below this the plane cost is treated as valid (valid costs lie in [0, 2]).
VALID_LIMIT = np.float32(10.0)


@njit(parallel=True, fastmath=True, error_model="numpy", cache=True)
def sweep_fronto(ref, ref_mean, ref_isd, src_flat, src_off, src_shape, homs, rect, window, top_k,
                 var_floor, chunk_start, shift,
                 best, bidx, second, bm1, bp1, hist,
                 ring, vring, vsum, work, iwork, topk, cring, oring):
    """Plane sweep with ZNCC, top-k view aggregation and running winners per pixel.

    ref (H,W) f32 grey (any offset); ref_mean (H,W) f32 window mean of ref; ref_isd (H,W) f32
    1/sqrt(Σ(I-Ī)²) over the window, 0 where the reference is too flat (pixel gets no vote).
    src_flat: all source images, flattened and concatenated (f32); src_off (S,) int64 offsets;
    src_shape (S,2) int64 (h, w) each at least 2×2.  homs (P,S,3,3) f64: plane p maps the
    reference index (c, r, 1) to homogeneous source index coordinates.
    rect (S,) u1: 1 where every plane's homography of that source is a pure horizontal shift
    (rectified pair: homs[p, s] = [[1,0,a],[0,1,0],[0,0,1]], a = x shift in px); such a source row is
    warped by a 1-D linear interpolation with weights constant along the row (no gather; equal to
    the bilinear warp, whose vertical weight is then 0, up to float rounding).
    window: odd box side; top_k >= 1; var_floor: floor of Σ(W-W̄)² (f32).
    chunk_start (n_chunks+1,) int64 row bounds of the parallel chunks.

    shift: 0 <= shift <= window // 2, half-range of the shiftable-window min filter.

    Outputs (all (V,H,W) unless noted, written in place; V = 1, or 2 when shift > 0: index 0 is
    the plain window cost, index 1 the shiftable-window cost): best f32 aggregated cost of the
    winning plane (BIG = none); bidx i32 winning plane (-1 = none); second f32 lowest *local
    minimum* of the cost curve more than two planes from the winner (BIG = none); bm1 / bp1 f32
    costs at winner-1 / winner+1 (BIG when unknown); hist (V,2,H,W) f32 is working state.
    Shifted costs exist only where the plain cost is valid (same validity).
    Scratch: ring / vring (n_chunks,S,window,W) f32, vsum (n_chunks,S,3,W) f32,
    work (n_chunks,10,W) f32, iwork (n_chunks,W) i32, topk (n_chunks,top_k,W) f32,
    cring / oring (n_chunks,2*shift+1,W) f32.
    """
    H, W = ref.shape
    P = homs.shape[0]
    S = homs.shape[1]
    h = window // 2
    m = shift
    nm = 2 * m + 1
    nv = best.shape[0]
    inv_n = np.float32(1.0 / (window * window))
    n_chunks = chunk_start.shape[0] - 1
    for ch in prange(n_chunks):
        r0 = chunk_start[ch]
        r1 = chunk_start[ch + 1]
        for v_ in range(nv):
            for r in range(r0, r1):
                for c in range(W):
                    best[v_, r, c] = BIG
                    bidx[v_, r, c] = -1
                    second[v_, r, c] = BIG
                    bm1[v_, r, c] = BIG
                    bp1[v_, r, c] = BIG
                    hist[v_, 0, r, c] = BIG
                    hist[v_, 1, r, c] = BIG
        wrow = work[ch, 0]
        fxs = work[ch, 1]
        fys = work[ch, 2]
        sw = work[ch, 3]
        sww = work[ch, 4]
        siw = work[ch, 5]
        cost = work[ch, 6]
        asum = work[ch, 7]
        acnt = work[ch, 8]
        kid = iwork[ch]
        T = topk[ch]
        vmin = work[ch, 9]
        for p in range(P):
            ring[ch] = 0.0
            vring[ch] = 0.0
            vsum[ch] = 0.0
            hp = p % 2
            hm1 = (p + 1) % 2
            rstart = r0 - m - h
            for rr in range(rstart, r1 + m + h):
                ry = min(max(rr, 0), H - 1)
                ro = min(max(rr - window, 0), H - 1)
                slot = (rr - rstart) % window
                rb = rr - h                      # centre row of the completed box
                out = rb >= r0 - m
                inb = (rb >= 0) & (rb < H)
                r = rb
                if out:
                    T[:, :] = BIG
                In = ref[ry]
                Io = ref[ro]
                for s in range(S):
                    hm = homs[p, s]
                    sh = np.int32(src_shape[s, 0])
                    swd = np.int32(src_shape[s, 1])
                    off = np.int32(src_off[s])
                    yf = np.float64(ry)
                    x0 = np.float32(hm[0, 1] * yf + hm[0, 2])
                    y0 = np.float32(hm[1, 1] * yf + hm[1, 2])
                    w0 = np.float32(hm[2, 1] * yf + hm[2, 2])
                    dx = np.float32(hm[0, 0])
                    dy = np.float32(hm[1, 0])
                    dw = np.float32(hm[2, 0])
                    vs = vring[ch, s, slot]
                    if rect[s]:
                        # --- rectified: pure x shift, 1-D interpolation with constant weights
                        _warp_row_shift(src_flat, off + min(ry, sh - np.int32(1)) * swd, swd,
                                        hm[0, 2] / hm[2, 2], ry <= sh - 1, wrow, vs)
                    else:
                        _warp_row_bilinear(src_flat, off, sh, swd, x0, y0, w0, dx, dy, dw,
                                           wrow, vs, fxs, fys, kid)
                    # --- vertical running sums over the last `window` rows
                    rs = ring[ch, s, slot]
                    vw = vsum[ch, s, 0]
                    vww = vsum[ch, s, 1]
                    viw = vsum[ch, s, 2]
                    _vsum_update(wrow, rs, In, Io, vw, vww, viw)
                    if not (out and inb):
                        continue
                    # --- horizontal box sums (edge columns replicated)
                    _hbox3(vw, vww, viw, sw, sww, siw, h)
                    # --- ZNCC -> cost (BIG where the centre warp is outside or the ref is flat)
                    _zncc_row(sw, sww, siw, ref_mean[r], ref_isd[r],
                              vring[ch, s, (rb - rstart) % window], inv_n, var_floor, cost)
                    # --- fold into the sorted top-k list (branch free)
                    _fold_topk(T, cost)
                if not out:
                    continue
                # --- plane cost of box row rb: mean of the valid costs among the k best
                cslot = (rb - r0 + m) % nm
                orow = oring[ch, cslot]
                _aggregate_row(T, orow, asum, acnt)
                # --- shiftable windows: min over the window positions within +-m (rows, cols)
                _hmin_row(orow, cring[ch, cslot], m)
                if rb < r0 + m:
                    continue
                r = rb - m
                own = oring[ch, (r - r0 + m) % nm]
                # --- local minimum at plane p-1?  (needs the costs at p-2, p-1, p)
                _track_row(p, own, hist[0, hp, r], hist[0, hm1, r], best[0, r], bidx[0, r],
                           second[0, r], bm1[0, r], bp1[0, r])
                if nv > 1:
                    _vmin_rows(cring[ch], own, vmin)
                    _track_row(p, vmin, hist[1, hp, r], hist[1, hm1, r], best[1, r], bidx[1, r],
                               second[1, r], bm1[1, r], bp1[1, r])
        # plane P-1 is a local minimum when it beats P-2 (a missing plane P costs BIG)
        for v_ in range(nv):
            hl = hist[v_, (P - 1) % 2]
            hb = hist[v_, P % 2]
            for r in range(r0, r1):
                for c in range(W):
                    v = hl[r, c]
                    if v < hb[r, c] and v < VALID_LIMIT:
                        _offer(P - 1, v, hb[r, c], BIG, best[v_, r], bidx[v_, r], second[v_, r],
                               bm1[v_, r], bp1[v_, r], c)


# The helpers below are deliberately *not* inlined (no ``inline="always"``): compiled as separate
# functions their row loops get SIMD-vectorised (the aliasing run-time checks stay per call), while
# inlined into the big kernel LLVM keeps them scalar (measured 1.3-2x slower per plane).

@njit(fastmath=True, error_model="numpy", cache=True)
def _warp_row_bilinear(src_flat, off, sh, swd, x0, y0, w0, dx, dy, dw, wrow, vs, fxs, fys, kid):
    """Bilinear warp of one reference row through a general homography (clamped sampling).

    Reference column c maps to ((x0 + c dx) / (w0 + c dw), (y0 + c dy) / (w0 + c dw)) in the source
    image stored at ``src_flat[off:]`` ((sh, swd), row-major).  Writes the samples to ``wrow`` (W,)
    and the validity of the (unclamped) position to ``vs`` (1 / 0).  fxs, fys, kid: scratch (W,).
    Two loops on purpose: coordinates (vectorised), then the four-tap gather (scalar).
    """
    W = wrow.shape[0]
    xmax = np.float32(swd - 1)
    ymax = np.float32(sh - 1)
    xlim = np.float32(swd - 0.5)
    ylim = np.float32(sh - 0.5)
    for c in range(W):
        cf = np.float32(c)
        wh = w0 + cf * dw
        ok = wh > np.float32(1e-8)
        wh = max(wh, np.float32(1e-8))
        iw = np.float32(1.0) / wh
        x = (x0 + cf * dx) * iw
        y = (y0 + cf * dy) * iw
        ok = ok & (x >= np.float32(-0.5)) & (x <= xlim)
        ok = ok & (y >= np.float32(-0.5)) & (y <= ylim)
        xc = min(max(x, np.float32(0.0)), xmax)
        yc = min(max(y, np.float32(0.0)), ymax)
        ix = min(max(np.int32(xc), np.int32(0)), swd - np.int32(2))
        iy = min(max(np.int32(yc), np.int32(0)), sh - np.int32(2))
        fxs[c] = xc - np.float32(ix)
        fys[c] = yc - np.float32(iy)
        kid[c] = off + iy * swd + ix
        vs[c] = np.float32(1.0) if ok else np.float32(0.0)
    for c in range(W):
        k = kid[c]
        fx = fxs[c]
        fy = fys[c]
        a = src_flat[k]
        b = src_flat[k + np.int32(1)]
        cc = src_flat[k + swd]
        d = src_flat[k + swd + np.int32(1)]
        top = a + fx * (b - a)
        bot = cc + fx * (d - cc)
        wrow[c] = top + fy * (bot - top)


@njit(fastmath=True, error_model="numpy", cache=True)
def _warp_row_shift(src_flat, roff, swd, a, row_ok, wrow, vs):
    """Warp of one reference row by a pure horizontal shift (rectified pair).

    Reference column c samples the source row stored at ``src_flat[roff:roff + swd]`` at x = c + a
    (a: f64 shift in px), linearly interpolated, clamped to the row like the bilinear warp;
    ``vs`` = 1 where -0.5 <= x <= swd - 0.5 and ``row_ok`` (the row lies inside the source).
    Between the clamped edges the interpolation weights are constant: contiguous loads, no gather.
    """
    W = wrow.shape[0]
    k0 = np.int64(np.floor(a))
    fx = np.float32(a - k0)
    # interior: 0 <= c + k0 and c + k0 + 1 <= swd - 1  (both taps inside the row)
    c_lo = min(max(-k0, 0), W)
    c_hi = max(min(swd - 1 - k0, W), c_lo)
    af = np.float32(a)
    xmax = np.float32(swd - 1)
    xlim = np.float32(swd - 0.5)
    for c in range(c_lo):
        xc = min(max(np.float32(c) + af, np.float32(0.0)), xmax)
        ix = min(max(np.int64(xc), 0), swd - 2)
        f = xc - np.float32(ix)
        s0 = src_flat[roff + ix]
        wrow[c] = s0 + f * (src_flat[roff + ix + 1] - s0)
    base = roff + k0
    for c in range(c_lo, c_hi):
        s0 = src_flat[base + c]
        wrow[c] = s0 + fx * (src_flat[base + c + 1] - s0)
    for c in range(c_hi, W):
        xc = min(max(np.float32(c) + af, np.float32(0.0)), xmax)
        ix = min(max(np.int64(xc), 0), swd - 2)
        f = xc - np.float32(ix)
        s0 = src_flat[roff + ix]
        wrow[c] = s0 + f * (src_flat[roff + ix + 1] - s0)
    for c in range(W):
        x = np.float32(c) + af
        ok = row_ok & (x >= np.float32(-0.5)) & (x <= xlim)
        vs[c] = np.float32(1.0) if ok else np.float32(0.0)


@njit(fastmath=True, error_model="numpy", cache=True)
def _vsum_update(wrow, rs, In, Io, vw, vww, viw):
    """Vertical running sums: add the new warped row ``wrow`` (reference row ``In``), drop the
    oldest ring row ``rs`` (reference row ``Io``), then store ``wrow`` in its ring slot.  One
    written array per loop, so that each loop vectorises (few aliasing checks)."""
    W = wrow.shape[0]
    for c in range(W):
        vw[c] += wrow[c] - rs[c]
    for c in range(W):
        vww[c] += wrow[c] * wrow[c] - rs[c] * rs[c]
    for c in range(W):
        viw[c] += In[c] * wrow[c] - Io[c] * rs[c]
    for c in range(W):
        rs[c] = wrow[c]


@njit(fastmath=True, error_model="numpy", cache=True)
def _hbox(v, out, h):
    """out[c] = Σ_{|j|<=h} v[clamp(c + j)] (box sum with replicated edge columns).

    Direct sums (2h+1 vectorised passes) rather than a running sum: no loop-carried dependency,
    and no drift along the row."""
    W = v.shape[0]
    lo = min(h, W)
    hi = max(lo, W - h)
    for c in range(lo, hi):
        out[c] = v[c - h]
    for j in range(1, 2 * h + 1):
        for c in range(lo, hi):
            out[c] += v[c - h + j]
    for c in range(lo):
        acc = np.float32(0.0)
        for j in range(-h, h + 1):
            acc += v[min(max(c + j, 0), W - 1)]
        out[c] = acc
    for c in range(hi, W):
        acc = np.float32(0.0)
        for j in range(-h, h + 1):
            acc += v[min(max(c + j, 0), W - 1)]
        out[c] = acc


@njit(fastmath=True, error_model="numpy", cache=True)
def _hbox3(vw, vww, viw, sw, sww, siw, h):
    """Horizontal running box sums over ±h columns (edge columns replicated) of the three
    vertical sums: sw[c] = Σ_{|j|<=h} vw[clamp(c + j)], likewise sww, siw."""
    W = vw.shape[0]
    aw = np.float32(h + 1) * vw[0]
    aww = np.float32(h + 1) * vww[0]
    aiw = np.float32(h + 1) * viw[0]
    for j in range(1, h + 1):
        jj = min(j, W - 1)
        aw += vw[jj]
        aww += vww[jj]
        aiw += viw[jj]
    # left edge, interior (no clamping), right edge
    c_a = min(h, W)
    c_b = max(c_a, W - h - 1)
    for c in range(c_a):
        sw[c] = aw
        sww[c] = aww
        siw[c] = aiw
        cin = min(c + h + 1, W - 1)
        aw += vw[cin] - vw[0]
        aww += vww[cin] - vww[0]
        aiw += viw[cin] - viw[0]
    for c in range(c_a, c_b):
        sw[c] = aw
        sww[c] = aww
        siw[c] = aiw
        aw += vw[c + h + 1] - vw[c - h]
        aww += vww[c + h + 1] - vww[c - h]
        aiw += viw[c + h + 1] - viw[c - h]
    for c in range(c_b, W):
        sw[c] = aw
        sww[c] = aww
        siw[c] = aiw
        cout = max(c - h, 0)
        aw += vw[W - 1] - vw[cout]
        aww += vww[W - 1] - vww[cout]
        aiw += viw[W - 1] - viw[cout]


@njit(fastmath=True, error_model="numpy", cache=True)
def _zncc_row(sw, sww, siw, mrow, irow, vc, inv_n, var_floor, cost):
    """cost = 1 - ZNCC of one pixel row from the window sums ΣW, ΣW², ΣI·W, the reference window
    mean ``mrow`` and 1/sqrt(Σ(I-Ī)²) ``irow``; BIG where the centre warp ``vc`` is invalid or the
    reference window is flat (irow = 0)."""
    for c in range(cost.shape[0]):
        vwin = sww[c] - sw[c] * sw[c] * inv_n
        vwin = max(vwin, var_floor)
        ncc = (siw[c] - mrow[c] * sw[c]) * irow[c] / np.sqrt(vwin)
        ncc = min(max(ncc, np.float32(-1.0)), np.float32(1.0))
        good = (vc[c] > np.float32(0.5)) & (irow[c] > np.float32(0.0))
        cost[c] = np.float32(1.0) - ncc if good else BIG


@njit(fastmath=True, error_model="numpy", cache=True)
def _fold_topk(T, cost):
    """Fold the cost row into the sorted top-k rows T (k, W) (branch free; ``cost`` is clobbered
    for k > 2)."""
    k = T.shape[0]
    if k == 1:
        t0r = T[0]
        for c in range(cost.shape[0]):
            t0r[c] = min(t0r[c], cost[c])
    elif k == 2:
        t0r = T[0]
        t1r = T[1]
        for c in range(cost.shape[0]):
            v = cost[c]
            t0 = t0r[c]
            t0r[c] = min(t0, v)
            t1r[c] = min(t1r[c], max(t0, v))
    else:
        for j in range(k):
            tj = T[j]
            for c in range(cost.shape[0]):
                t = tj[c]
                v = cost[c]
                tj[c] = min(t, v)
                cost[c] = max(t, v)


@njit(fastmath=True, error_model="numpy", cache=True)
def _aggregate_row(T, orow, asum, acnt):
    """Plane cost of one pixel row: mean of the valid (< VALID_LIMIT) costs among the top-k list
    ``T`` (k, W); BIG where none is valid.  asum, acnt: scratch (W,)."""
    k = T.shape[0]
    W = orow.shape[0]
    if k == 1:
        t0 = T[0]
        for c in range(W):
            t = t0[c]
            orow[c] = t if t < VALID_LIMIT else BIG
        return
    for c in range(W):
        asum[c] = 0.0
        acnt[c] = 0.0
    for j in range(k):
        tj = T[j]
        for c in range(W):
            t = tj[c]
            ok = t < VALID_LIMIT
            asum[c] += t if ok else np.float32(0.0)
            acnt[c] += np.float32(1.0) if ok else np.float32(0.0)
    for c in range(W):
        n = acnt[c]
        a = asum[c] / max(n, np.float32(1.0))
        orow[c] = a if n > np.float32(0.5) else BIG


@njit(fastmath=True, error_model="numpy", cache=True)
def _min_pass(crow, orow, o):
    """crow[c] = min(crow[c], orow[c + o], orow[c - o]) where those columns exist."""
    W = crow.shape[0]
    for c in range(W - o):
        crow[c] = min(crow[c], orow[c + o])
    for c in range(o, W):
        crow[c] = min(crow[c], orow[c - o])


@njit(fastmath=True, error_model="numpy", cache=True)
def _hmin_row(orow, crow, m):
    """Horizontal min filter over ±m columns (columns outside the image do not count)."""
    W = crow.shape[0]
    for c in range(W):
        crow[c] = orow[c]
    for o in range(1, m + 1):
        _min_pass(crow, orow, o)


@njit(fastmath=True, error_model="numpy", cache=True)
def _vmin_rows(cr, own, vmin):
    """vmin = min over the rows of ``cr`` (n, W), BIG where ``own`` (the pixel's own plain cost)
    is not valid (shifted costs exist only where the plain one does)."""
    W = vmin.shape[0]
    c0 = cr[0]
    for c in range(W):
        vmin[c] = c0[c]
    for j in range(1, cr.shape[0]):
        cj = cr[j]
        for c in range(W):
            vmin[c] = min(vmin[c], cj[c])
    for c in range(W):
        vmin[c] = vmin[c] if own[c] < VALID_LIMIT else BIG


@njit(fastmath=True, error_model="numpy", cache=True)
def _track_row(p, arow, hold, hprev, brow, irow, srow, mrow, prow):
    """Feed the cost row ``arow`` of plane p to one row of running state: is plane p-1 a local
    minimum (costs at p-2 = ``hold``, p-1 = ``hprev``, p = ``arow``)?  ``hold`` becomes plane p."""
    q = np.int32(p - 1)
    for c in range(arow.shape[0]):
        a = arow[c]
        v = hprev[c]
        cm = hold[c]
        hold[c] = a
        b = brow[c]
        bi = irow[c]
        sc = srow[c]
        lm = (v < cm) & (v <= a) & (v < VALID_LIMIT) & (q >= 0)
        better = lm & (v < b)
        far = (q - bi) > np.int32(2)
        s_if_better = b if far else sc
        s_else = min(sc, v) if (lm & far) else sc
        srow[c] = s_if_better if better else s_else
        brow[c] = v if better else b
        irow[c] = q if better else bi
        mrow[c] = cm if better else mrow[c]
        prow[c] = a if better else prow[c]


@njit(inline="always", fastmath=True, error_model="numpy", cache=True)
def _offer(q, v, cm, cp, brow, irow, srow, mrow, prow, c):
    """Offer the local minimum v at plane q (neighbour costs cm, cp) to pixel c's running state.

    Planes arrive in increasing order and local minima are at least two planes apart, so when a
    new winner appears the old winner is the best minimum before it: it becomes the second best
    if it lies more than two planes away, otherwise the second best is kept unchanged.
    """
    b = brow[c]
    if v < b:
        if q - irow[c] > 2:
            srow[c] = b
        brow[c] = v
        irow[c] = q
        mrow[c] = cm
        prow[c] = cp
    elif q - irow[c] > 2 and v < srow[c]:
        srow[c] = v


@njit(parallel=True, fastmath=True, error_model="numpy", cache=True)
def finalize(best, bidx, second, bm1, bp1, inv_depths, subpixel, conf_scale,
             depth, conf, cost_out):
    """Winner-take-all depth with parabola refinement in inverse depth, and a confidence.

    inv_depths (P,) f64 plane inverse depths (evenly spaced).  Writes depth (0 = none), conf in
    [0,1] = clip(1-best) * clip((second-best)/conf_scale), and cost_out (best cost, -1 = none).
    """
    H, W = best.shape
    P = inv_depths.shape[0]
    step = (inv_depths[P - 1] - inv_depths[0]) / (P - 1)
    for r in prange(H):
        for c in range(W):
            b = best[r, c]
            i = bidx[r, c]
            if i < 0 or b >= VALID_LIMIT:
                depth[r, c] = 0.0
                conf[r, c] = 0.0
                cost_out[r, c] = -1.0
                continue
            x = 0.0
            if subpixel and i > 0 and i < P - 1:
                cm = bm1[r, c]
                cp = bp1[r, c]
                if cm < VALID_LIMIT and cp < VALID_LIMIT:
                    den = cm - 2.0 * b + cp
                    if den > 1e-9:
                        x = 0.5 * (cm - cp) / den
                        x = min(max(x, -0.5), 0.5)
            inv = inv_depths[i] + x * step
            depth[r, c] = np.float32(1.0 / inv) if inv > 0.0 else np.float32(0.0)
            s2 = min(second[r, c], np.float32(2.0))
            q = min(max(np.float32(1.0) - b, np.float32(0.0)), np.float32(1.0))
            dq = min(max((s2 - b) / conf_scale, np.float32(0.0)), np.float32(1.0))
            conf[r, c] = q * dq
            cost_out[r, c] = b


@njit(parallel=True, fastmath=True, error_model="numpy", cache=True)
def smooth_inverse(depth, window, max_rel, out):
    """Edge-aware smoothing: each valid pixel becomes the mean inverse depth of the valid pixels of
    its ``window``×``window`` neighbourhood whose inverse depth is within ``max_rel`` (relative) of
    its own, so noise is averaged out but no depth crosses a discontinuity.  0 = no depth.

    depth, out (H,W) f32 (distinct arrays).  The inverse depths are computed once (an (H,W) f32
    temporary; invalid pixels get a negative sentinel that no tolerance band reaches)."""
    H, W = depth.shape
    h = window // 2
    inv = np.empty((H, W), np.float32)
    for r in prange(H):
        for c in range(W):
            d = depth[r, c]
            inv[r, c] = np.float32(1.0) / d if d > 0.0 else np.float32(-1.0e30)
    for r in prange(H):
        for c in range(W):
            u0 = inv[r, c]
            if u0 <= 0.0:
                out[r, c] = 0.0
                continue
            tol = max_rel * u0
            acc = np.float32(0.0)
            n = np.float32(0.0)
            for rr in range(max(r - h, 0), min(r + h + 1, H)):
                urow = inv[rr]
                for cc in range(max(c - h, 0), min(c + h + 1, W)):
                    u = urow[cc]
                    ok = abs(u - u0) <= tol
                    acc += u if ok else np.float32(0.0)
                    n += np.float32(1.0) if ok else np.float32(0.0)
            out[r, c] = n / acc
