"""Numba kernels of the fronto-parallel plane sweep (pure: arrays in, arrays out, no I/O).

The public wrapper with input checks, grey conversion and plane set-up is
:func:`mannequin.stereo.sweep.plane_sweep`; this module only holds the compiled loops.

Design (see ``sweep_fronto``):

* Rows are split into chunks (a multiple of the thread count) processed in parallel.  Inside a
  chunk the loops run plane -> row -> source, so everything one row needs stays in L1/L2:
  a bilinear homography warp of one source row (the homography is affine along a row in
  homogeneous coordinates, so one reciprocal per pixel), then a *vertical* running box sum of
  W, W² and I·W kept with a ring buffer of the last ``window`` warped rows, then a *horizontal*
  running box sum along the row (``_hbox3``: the three sums' add chains advance together in one
  loop, as a single running sum is add-latency bound; ``_hbox`` for one row splits it into four
  chains), restarted from a direct sum every ``BOX_RUN`` columns so that float32 rounding does
  not drift along the row.  Neither box sum's cost per hypothesis grows with the window size.
  The direct sums over shifted slices used before (``_hbox_direct``, vectorised, no loop-carried
  dependency) cost the same at 7×7 and more above it (640×480, 64 planes, 4 sources, 1 thread,
  shift and smoothing off: sweep time at window 21 / window 7 went from 1.71 to 1.12;
  docs/FINDINGS.md); they remain for a single row at h <= 3 (``HBOX_DIRECT_MAX_H``).  What still
  grows with the window: a chunk re-warps ``window - 1`` halo rows per plane (so chunks are
  tall, ~60 rows), and the shiftable-window and smoothing defaults scale with it.
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
  ``_vsum_update``, ``_hbox``, ``_hbox3``, ``_zncc_row``, ``_fold_topk``, ``_aggregate_row``, ``_hmin_row``,
  ``_vmin_rows``, ``_track_row``): compiled separately LLVM vectorises them, inlined into the big
  kernel it kept most of them scalar (aliasing run-time checks).  ``error_model="numpy"``
  everywhere: with Python's error model every float division carries a zero check that blocks
  vectorisation (all divisions here are guarded).
* Array indices inside the hot loops are the bare loop counter over a slice (``a = v[o:o + n]``,
  ``a[i]``) or unsigned (the gather): with a computed signed index (``v[c + o]``) Numba emits a
  negative-index wrap-around select per access, which keeps LLVM from vectorising (measured 3-7x
  slower for the shift warp and the min filter, 2x for the gather).
* Rectified sources (``rect``: every plane homography a pure x shift) skip the bilinear warp: a
  1-D interpolation with weights constant along the row (contiguous loads, no gather).
* Integer-shift sources (rectified, whole-pixel shifts at every plane, the reference's size: a
  rectified pair swept at 1 px disparity steps): the warped row is a slice of the source, so the
  source's window sums of W and W² are plane independent and precomputed once
  (``rect_source_stats``); per plane only Σ I·W is summed (``_viw_update``, ``_zncc_row_int``).
  When every source is one, planes go in blocks of 4 through the row loop and a row's winner
  state is updated once per block (``_track_rows4``, ``_track_right4``: loads, selects in
  registers, one store), which the per-plane masked-store updates of ``_track_row`` made the
  largest cost of the two-view sweep (~40% of it on the motorcycle pair).
* Left-right check (``lr``, one rectified source): the right image's cost at pixel x and plane p
  is the reference's cost at column x - shift(p) (same pair of windows), so a running argmin per
  right pixel (``_track_right``) gives the right view's winners during the same sweep, O(H·W).
* Everything after the sweep that is row-local (both winners' finalisation, the shiftable-window
  merge, the left-right check) is one parallel pass (``finalize_all``): on a loaded machine each
  parallel region waits for its slowest thread.

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
#: Horizontal box sums are running sums restarted from a direct sum every BOX_RUN columns (bounds
#: the float32 rounding that a running sum accumulates along the row).
BOX_RUN = 64
#: One row's box sum (``_hbox``, the integer-shift path) uses direct sums up to this half-window:
#: motorcycle pair, 1 thread, CPU s, best of 25 interleaved: window 7 direct 0.053, running 0.055;
#: window 11 0.063 / 0.059; window 21 0.088 / 0.071.
HBOX_DIRECT_MAX_H = 3


@njit(parallel=True, fastmath=True, error_model="numpy", cache=True)
def sweep_fronto(ref, ref_mean, ref_isd, src_flat, src_off, src_shape, homs, rect, window, top_k,
                 var_floor, chunk_start, shift,
                 best, bidx, second, bm1, bp1, hist,
                 ring, vring, vsum, work, iwork, topk, cring, oring, vmin4,
                 lr, lr_shift, rbest, ridx, int_id, ishift, istat, pad):
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
    Scratch: ring / vring (n_chunks,B,S,window,W) f32, vsum (n_chunks,B,S,3,W) f32,
    work (n_chunks,10,W) f32, iwork (n_chunks,W) i32, topk (n_chunks,top_k,W) f32,
    cring / oring (n_chunks,B,2*shift+1,W) f32.  B >= 1: planes swept together (the row loop
    runs over blocks of B planes, each row through its B planes in order, so a row's state
    stays in cache for B planes; every buffer above has one copy per plane of the block).
    vmin4 (n_chunks,B,W) f32: the shiftable-window cost rows of the block.  With B = 4 a full
    block is tracked by :func:`_track_rows4` (state loaded and stored once per 4 planes).

    Right-view winners (``lr`` true; one rectified source): the cost of right-image pixel x at
    plane p is the reference's cost at column c = x - lr_shift[p] (the same pair of windows, and
    for the shiftable windows the same min over window positions), so the sweep also keeps, per
    right pixel, the plane of its lowest cost (plain argmin): rbest (V,H,W) f32 (BIG = none), ridx
    (V,H,W) i32 (-1 = none), same V and validity as ``best``.  lr_shift (P,) int64 = round(x shift
    of plane p in px).  Without ``lr`` they are not touched (any shape).

    Integer-shift sources (``int_id[s]`` >= 0; rectified, every plane shift an integer, same
    size as the reference): the warped row is a slice of the source, so the window sums of W and W²
    do not depend on the plane; they come precomputed (:func:`rect_source_stats`) in
    istat (n_int,5,H,W+2 pad) f32, source ``s`` at istat[int_id[s]], padded by ``pad`` columns;
    ishift (P,S) int64 = the integer x shift of plane p.  Per plane only Σ I·W is summed.  Same
    costs as the other paths up to float rounding.  Sources with int_id -1 ignore istat.
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
            if lr:
                rbest[v_, r0:r1] = BIG
                ridx[v_, r0:r1] = -1
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
        single = (S == 1) and (T.shape[0] == 1)      # the plane cost is the source's cost
        B = oring.shape[1]
        for p0 in range(0, P, B):
            pb = min(B, P - p0)
            fused = pb == 4                  # _track_rows4 after the block's 4 planes
            ring[ch] = 0.0
            vring[ch] = 0.0
            vsum[ch] = 0.0
            rstart = r0 - m - h
            for rr in range(rstart, r1 + m + h):
                ry = min(max(rr, 0), H - 1)
                ro = min(max(rr - window, 0), H - 1)
                slot = (rr - rstart) % window
                rb = rr - h                      # centre row of the completed box
                out = rb >= r0 - m
                inb = (rb >= 0) & (rb < H)
                cslot = (rb - r0 + m) % nm
                for j in range(pb):
                    p = p0 + j
                    hp = p % 2
                    hm1 = (p + 1) % 2
                    r = rb
                    dst = oring[ch, j, cslot] if single else cost
                    if out and not single:
                        T[:, :] = BIG
                    In = ref[ry]
                    Io = ref[ro]
                    for s in range(S):
                        iid = int_id[s]
                        if iid >= 0:
                            # --- integer shift: source window stats precomputed, only Σ I·W here
                            st = istat[iid]
                            xo = ishift[p, s] + pad
                            viw = vsum[ch, j, s, 2]
                            _viw_update(In, st[0, ry, xo:xo + W], Io, st[0, ro, xo:xo + W],
                                        rr - rstart >= window, viw)
                            if not (out and inb):
                                continue
                            _hbox(viw, siw, h)
                            _zncc_row_int(siw, st[3, rb], st[4, rb], st[1, rb], st[2, rb], xo,
                                          ref_mean[r], ref_isd[r], inv_n, var_floor, h, dst)
                            if not single:
                                _fold_topk(T, cost)
                            continue
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
                        vs = vring[ch, j, s, slot]
                        if rect[s]:
                            # --- rectified: pure x shift, 1-D interpolation with constant weights
                            _warp_row_shift(src_flat, off + min(ry, sh - np.int32(1)) * swd, swd,
                                            hm[0, 2] / hm[2, 2], ry <= sh - 1, wrow, vs)
                        else:
                            _warp_row_bilinear(src_flat, off, sh, swd, x0, y0, w0, dx, dy, dw,
                                               wrow, vs, fxs, fys, kid)
                        # --- vertical running sums over the last `window` rows
                        rs = ring[ch, j, s, slot]
                        vw = vsum[ch, j, s, 0]
                        vww = vsum[ch, j, s, 1]
                        viw = vsum[ch, j, s, 2]
                        _vsum_update(wrow, rs, In, Io, vw, vww, viw)
                        if not (out and inb):
                            continue
                        # --- horizontal box sums (edge columns replicated)
                        _hbox3(vw, vww, viw, sw, sww, siw, h)
                        # --- ZNCC -> cost (BIG where the centre warp is outside or the ref is flat)
                        _zncc_row(sw, sww, siw, ref_mean[r], ref_isd[r],
                                  vring[ch, j, s, (rb - rstart) % window], inv_n, var_floor, dst)
                        # --- fold into the sorted top-k list (branch free)
                        if not single:
                            _fold_topk(T, cost)
                    if not out:
                        continue
                    # --- plane cost of box row rb: mean of the valid costs among the k best
                    orow = oring[ch, j, cslot]
                    if single:                   # written by the ZNCC step (BIG = none)
                        if not inb:
                            orow[:] = BIG
                    else:
                        _aggregate_row(T, orow, asum, acnt)
                    # --- shiftable windows: min over the window positions within +-m (rows, cols)
                    _hmin_row(orow, cring[ch, j, cslot], m)
                    if rb < r0 + m:
                        continue
                    r = rb - m
                    own = oring[ch, j, (r - r0 + m) % nm]
                    vm = vmin4[ch, j]
                    # --- local minimum at plane p-1?  (needs the costs at p-2, p-1, p)
                    if not fused:
                        _track_row(p, own, hist[0, hp, r], hist[0, hm1, r], best[0, r], bidx[0, r],
                                   second[0, r], bm1[0, r], bp1[0, r])
                    if lr and not fused:
                        _track_right(p, own, lr_shift[p], rbest[0, r], ridx[0, r])
                    if nv > 1:
                        _vmin_rows(cring[ch, j], own, vm)
                        if not fused:
                            _track_row(p, vm, hist[1, hp, r], hist[1, hm1, r], best[1, r],
                                       bidx[1, r], second[1, r], bm1[1, r], bp1[1, r])
                        if lr and not fused:
                            _track_right(p, vm, lr_shift[p], rbest[1, r], ridx[1, r])
                # --- four planes at once: the row's state is loaded and stored once
                if fused and out and rb >= r0 + m:
                    r = rb - m
                    sl = (r - r0 + m) % nm
                    h0 = p0 % 2
                    h1 = (p0 + 1) % 2
                    _track_rows4(p0, oring[ch, 0, sl], oring[ch, 1, sl], oring[ch, 2, sl],
                                 oring[ch, 3, sl], hist[0, h0, r], hist[0, h1, r], best[0, r],
                                 bidx[0, r], second[0, r], bm1[0, r], bp1[0, r])
                    if nv > 1:
                        _track_rows4(p0, vmin4[ch, 0], vmin4[ch, 1], vmin4[ch, 2], vmin4[ch, 3],
                                     hist[1, h0, r], hist[1, h1, r], best[1, r], bidx[1, r],
                                     second[1, r], bm1[1, r], bp1[1, r])
                    if lr:
                        _track_right4(p0, oring[ch, 0, sl], oring[ch, 1, sl], oring[ch, 2, sl],
                                      oring[ch, 3, sl], lr_shift, rbest[0, r], ridx[0, r])
                        if nv > 1:
                            _track_right4(p0, vmin4[ch, 0], vmin4[ch, 1], vmin4[ch, 2],
                                          vmin4[ch, 3], lr_shift, rbest[1, r], ridx[1, r])
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
    Two loops on purpose: coordinates (vectorised), then the four-tap gather (scalar; AVX-512
    gathers are not faster on the machines measured, and LLVM does not emit them here).
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
    us = np.uint64(swd)
    one = np.uint64(1)
    for c in range(W):
        k = np.uint64(kid[c])        # unsigned: no negative-index wrap-around select (2x faster)
        fx = fxs[c]
        fy = fys[c]
        a = src_flat[k]
        b = src_flat[k + one]
        cc = src_flat[k + us]
        d = src_flat[k + us + one]
        top = a + fx * (b - a)
        bot = cc + fx * (d - cc)
        wrow[c] = top + fy * (bot - top)


@njit(fastmath=True, error_model="numpy", cache=True)
def _warp_row_shift(src_flat, roff, swd, a, row_ok, wrow, vs):
    """Warp of one reference row by a pure horizontal shift (rectified pair).

    Reference column c samples the source row stored at ``src_flat[roff:roff + swd]`` at x = c + a
    (a: f64 shift in px), linearly interpolated, clamped to the row like the bilinear warp;
    ``vs`` = 1 where -0.5 <= x <= swd - 0.5 and ``row_ok`` (the row lies inside the source).
    Between the clamped edges the interpolation weights are constant: contiguous loads, no gather;
    left of the row (x < 0) the sample is the first pixel, right of it (x >= swd - 1) the last.
    The loops index slices with the bare loop counter: with computed indices Numba adds a
    negative-index wrap-around select that keeps LLVM from vectorising.
    """
    W = wrow.shape[0]
    k0 = np.int64(np.floor(a))
    fx = np.float32(a - k0)
    # interior: 0 <= c + k0 and c + k0 + 1 <= swd - 1  (both taps inside the row)
    c_lo = min(max(-k0, 0), W)
    c_hi = max(min(swd - 1 - k0, W), c_lo)
    row = src_flat[roff:roff + swd]
    first = row[0]
    last = row[swd - 1]
    wl = wrow[:c_lo]
    for c in range(c_lo):
        wl[c] = first
    n = c_hi - c_lo
    s0 = row[c_lo + k0:c_hi + k0]
    s1 = row[c_lo + k0 + 1:c_hi + k0 + 1]
    wm = wrow[c_lo:c_hi]
    for i in range(n):
        wm[i] = s0[i] + fx * (s1[i] - s0[i])
    wr = wrow[c_hi:]
    for i in range(W - c_hi):
        wr[i] = last
    af = np.float32(a)
    xlim = np.float32(swd - 0.5)
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
def _viw_update(In, sn, Io, so, drop, viw):
    """Vertical running sum of I·W for an integer-shift source: add In·sn (new reference row,
    source row slice at the shift), drop Io·so (the row leaving the window) when ``drop``."""
    W = viw.shape[0]
    if drop:
        for c in range(W):
            viw[c] += In[c] * sn[c] - Io[c] * so[c]
    else:
        for c in range(W):
            viw[c] += In[c] * sn[c]


@njit(fastmath=True, error_model="numpy", cache=True)
def _zncc_row_int(siw, bs1, isd, vs1, vs2, xo, mrow, irow, inv_n, var_floor, h, cost):
    """cost = 1 - ZNCC of one pixel row against an integer-shift source (see
    :func:`rect_source_stats`): reference column c sees padded source column x = c + xo.

    siw (W,) window sums of I·W; bs1 / isd (Wp,) box sum of W and 1/sqrt(max(Σ(W-W̄)², var_floor))
    of the source row in padded columns; vs1 / vs2 (Wp,) its vertical sums of W, W² (for the h
    edge columns on either side, where the reference's replicated-edge window differs from the
    source box).  BIG where the centre is outside the source (x - pad outside [0, W)) or the
    reference window is flat (irow = 0)."""
    W = cost.shape[0]
    Wp = bs1.shape[0]
    pad = (Wp - W) // 2
    k = xo - pad                     # shift: column c sees source column c + k
    c_lo = min(max(-k, 0), W)
    c_hi = max(min(W - k, W), c_lo)
    n = c_hi - c_lo
    b = bs1[c_lo + xo:c_hi + xo]
    q = isd[c_lo + xo:c_hi + xo]
    s_ = siw[c_lo:c_hi]
    m_ = mrow[c_lo:c_hi]
    i_ = irow[c_lo:c_hi]
    o = cost[c_lo:c_hi]
    for i in range(n):
        ncc = (s_[i] - m_[i] * b[i]) * i_[i] * q[i]
        ncc = min(max(ncc, np.float32(-1.0)), np.float32(1.0))
        o[i] = np.float32(1.0) - ncc if i_[i] > np.float32(0.0) else BIG
    for c in range(c_lo):
        cost[c] = BIG
    for c in range(c_hi, W):
        cost[c] = BIG
    # edge columns: the reference window replicates its edge column (c + j clamped to [0, W))
    for e in range(2 * h):
        c = e if e < h else W - 2 * h + e
        if c < c_lo or c >= c_hi or (e >= h and c < h):
            continue
        sw = np.float32(0.0)
        sww = np.float32(0.0)
        for j in range(-h, h + 1):
            x = min(max(c + j, 0), W - 1) + xo
            sw += vs1[x]
            sww += vs2[x]
        vwin = max(sww - sw * sw * inv_n, var_floor)
        ncc = (siw[c] - mrow[c] * sw) * irow[c] / np.sqrt(vwin)
        ncc = min(max(ncc, np.float32(-1.0)), np.float32(1.0))
        cost[c] = np.float32(1.0) - ncc if irow[c] > np.float32(0.0) else BIG


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


@njit(fastmath=True, error_model="numpy", cache=True)
def _box_at(v, c, h):
    """Σ_{|j|<=h} v[clamp(c + j)] (one box sum, O(h); edge columns replicated)."""
    W = v.shape[0]
    acc = np.float32(0.0)
    for j in range(-h, h + 1):
        acc += v[min(max(c + j, 0), W - 1)]
    return acc


@njit(fastmath=True, error_model="numpy", cache=True)
def _box_in(v, c, h):
    """Σ_{|j|<=h} v[c + j] for a column whose window lies inside the row (no clamping)."""
    w = v[c - h:c + h + 1]
    acc = np.float32(0.0)
    for j in range(w.shape[0]):
        acc += w[j]
    return acc


@njit(fastmath=True, error_model="numpy", cache=True)
def _hbox_direct(v, out, h):
    """:func:`_hbox` by direct sums: vectorised passes over shifted slices, three columns each.
    Cost grows with the window (2h + 1 loads and adds per pixel); for one row at h <= 3 it is
    ~5% cheaper than the running sums (no loop-carried dependency)."""
    W = v.shape[0]
    lo = min(h, W)
    hi = max(lo, W - h)
    n = hi - lo
    o = out[lo:hi]
    v0 = v[:n]
    for i in range(n):
        o[i] = v0[i]
    j = 1
    while j + 2 <= 2 * h:            # three columns per pass: fewer loads/stores of ``out``
        va = v[j:j + n]
        vb = v[j + 1:j + 1 + n]
        vc = v[j + 2:j + 2 + n]
        for i in range(n):
            o[i] += va[i] + vb[i] + vc[i]
        j += 3
    while j <= 2 * h:
        vj = v[j:j + n]
        for i in range(n):
            o[i] += vj[i]
        j += 1
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
def _hbox(v, out, h):
    """out[c] = Σ_{|j|<=h} v[clamp(c + j)] (box sum over ±h columns, edge columns replicated).

    Running sum, out[c] = out[c-1] + v[c+h] - v[c-h-1]: the cost per pixel does not grow with the
    window.  One array has one add chain (add-latency bound), so the interior goes in blocks of
    4 × BOX_RUN columns whose four quarters advance together in one loop (four independent
    chains); each quarter starts from a direct sum, so the float32 rounding adds up over at most
    BOX_RUN steps (no drift along the row).  Up to h = HBOX_DIRECT_MAX_H the direct sums of
    :func:`_hbox_direct` are used instead (cheaper there).  For the three sums of the general path
    see :func:`_hbox3`.
    """
    if h <= HBOX_DIRECT_MAX_H:
        _hbox_direct(v, out, h)
        return
    W = v.shape[0]
    lo = min(h + 1, W)            # columns < lo: the window's left end is clamped
    hi = max(lo, W - h)           # columns >= hi: its right end is
    s = _box_at(v, 0, h)
    out[0] = s
    for c in range(1, lo):
        s += v[min(c + h, W - 1)] - v[0]
        out[c] = s
    n = hi - lo
    a = v[lo + h:hi + h]          # interior column lo + i: v[lo + i + h] enters the window,
    b = v[lo - h - 1:hi - h - 1]  # v[lo + i - h - 1] leaves it
    o = out[lo:hi]
    q = 4 * BOX_RUN
    for g0 in range(0, n, q):
        m = min(q, n - g0)
        L = m // 4
        s0 = _box_in(v, lo + g0 - 1, h)
        s1 = _box_in(v, lo + g0 + L - 1, h)
        s2 = _box_in(v, lo + g0 + 2 * L - 1, h)
        s3 = _box_in(v, lo + g0 + 3 * L - 1, h)
        a0 = a[g0:g0 + L]
        a1 = a[g0 + L:g0 + 2 * L]
        a2 = a[g0 + 2 * L:g0 + 3 * L]
        a3 = a[g0 + 3 * L:g0 + 4 * L]
        b0 = b[g0:g0 + L]
        b1 = b[g0 + L:g0 + 2 * L]
        b2 = b[g0 + 2 * L:g0 + 3 * L]
        b3 = b[g0 + 3 * L:g0 + 4 * L]
        o0 = o[g0:g0 + L]
        o1 = o[g0 + L:g0 + 2 * L]
        o2 = o[g0 + 2 * L:g0 + 3 * L]
        o3 = o[g0 + 3 * L:g0 + 4 * L]
        for i in range(L):
            s0 += a0[i] - b0[i]
            s1 += a1[i] - b1[i]
            s2 += a2[i] - b2[i]
            s3 += a3[i] - b3[i]
            o0[i] = s0
            o1[i] = s1
            o2[i] = s2
            o3[i] = s3
        at = a[g0 + 4 * L:g0 + m]
        bt = b[g0 + 4 * L:g0 + m]
        ot = o[g0 + 4 * L:g0 + m]
        for i in range(m - 4 * L):
            s3 += at[i] - bt[i]
            ot[i] = s3
    if hi > lo:
        s = out[hi - 1]
    for c in range(max(hi, 1), W):
        s += v[W - 1] - v[max(c - h - 1, 0)]
        out[c] = s


@njit(fastmath=True, error_model="numpy", cache=True)
def _hbox3(v1, v2, v3, o1, o2, o3, h):
    """:func:`_hbox` of three rows at once (ΣW, ΣW², ΣI·W of the general path): one running sum
    per row, the three chains advancing together in one loop, each restarted from a direct sum
    every BOX_RUN columns."""
    W = v1.shape[0]
    lo = min(h + 1, W)
    hi = max(lo, W - h)
    s1 = _box_at(v1, 0, h)
    s2 = _box_at(v2, 0, h)
    s3 = _box_at(v3, 0, h)
    o1[0] = s1
    o2[0] = s2
    o3[0] = s3
    for c in range(1, lo):
        k = min(c + h, W - 1)
        s1 += v1[k] - v1[0]
        s2 += v2[k] - v2[0]
        s3 += v3[k] - v3[0]
        o1[c] = s1
        o2[c] = s2
        o3[c] = s3
    n = hi - lo
    for g0 in range(0, n, BOX_RUN):
        c0 = lo + g0
        c1 = lo + min(g0 + BOX_RUN, n)
        s1 = _box_in(v1, c0 - 1, h)
        s2 = _box_in(v2, c0 - 1, h)
        s3 = _box_in(v3, c0 - 1, h)
        a1 = v1[c0 + h:c1 + h]
        b1 = v1[c0 - h - 1:c1 - h - 1]
        a2 = v2[c0 + h:c1 + h]
        b2 = v2[c0 - h - 1:c1 - h - 1]
        a3 = v3[c0 + h:c1 + h]
        b3 = v3[c0 - h - 1:c1 - h - 1]
        p1 = o1[c0:c1]
        p2 = o2[c0:c1]
        p3 = o3[c0:c1]
        for i in range(c1 - c0):
            s1 += a1[i] - b1[i]
            s2 += a2[i] - b2[i]
            s3 += a3[i] - b3[i]
            p1[i] = s1
            p2[i] = s2
            p3[i] = s3
    if hi > lo:
        s1 = o1[hi - 1]
        s2 = o2[hi - 1]
        s3 = o3[hi - 1]
    for c in range(max(hi, 1), W):
        k = max(c - h - 1, 0)
        s1 += v1[W - 1] - v1[k]
        s2 += v2[W - 1] - v2[k]
        s3 += v3[W - 1] - v3[k]
        o1[c] = s1
        o2[c] = s2
        o3[c] = s3


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
    if k == 2:                       # T is sorted (t0 <= t1): one pass
        t0r = T[0]
        t1r = T[1]
        for c in range(W):
            t0 = t0r[c]
            t1 = t1r[c]
            one = t0 if t0 < VALID_LIMIT else BIG
            orow[c] = (t0 + t1) * np.float32(0.5) if t1 < VALID_LIMIT else one
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
def _hmin_row(orow, crow, m):
    """Horizontal min filter over ±m columns (columns outside the image do not count):
    crow[c] = min(orow[max(c - m, 0):c + m + 1]).  Interior columns take vectorised passes over
    slices (three columns each, indexed by the bare loop counter); the 2m edge columns a scalar
    loop."""
    W = crow.shape[0]
    lo = min(m, W)
    hi = max(lo, W - m)
    n = hi - lo
    out = crow[lo:hi]
    o0 = orow[:n]
    for i in range(n):
        out[i] = o0[i]
    j = 1
    while j + 2 <= 2 * m:
        oa = orow[j:j + n]
        ob = orow[j + 1:j + 1 + n]
        oc = orow[j + 2:j + 2 + n]
        for i in range(n):
            out[i] = min(out[i], min(oa[i], min(ob[i], oc[i])))
        j += 3
    while j <= 2 * m:
        oj = orow[j:j + n]
        for i in range(n):
            out[i] = min(out[i], oj[i])
        j += 1
    for c in range(lo):
        acc = orow[c]
        for cc in range(max(c - m, 0), min(c + m + 1, W)):
            acc = min(acc, orow[cc])
        crow[c] = acc
    for c in range(hi, W):
        acc = orow[c]
        for cc in range(max(c - m, 0), min(c + m + 1, W)):
            acc = min(acc, orow[cc])
        crow[c] = acc


@njit(fastmath=True, error_model="numpy", cache=True)
def _vmin_rows(cr, own, vmin):
    """vmin = min over the rows of ``cr`` (n, W), BIG where ``own`` (the pixel's own plain cost)
    is not valid (shifted costs exist only where the plain one does).  Three rows per pass."""
    W = vmin.shape[0]
    n = cr.shape[0]
    c0 = cr[0]
    for c in range(W):
        vmin[c] = c0[c]
    j = 1
    while j + 3 <= n:
        ca = cr[j]
        cb = cr[j + 1]
        cc = cr[j + 2]
        for c in range(W):
            vmin[c] = min(vmin[c], min(ca[c], min(cb[c], cc[c])))
        j += 3
    while j < n:
        cj = cr[j]
        for c in range(W):
            vmin[c] = min(vmin[c], cj[c])
        j += 1
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
        lm = (v < cm) & (v <= a) & (v < VALID_LIMIT) & (q >= 0)
        # the state is touched only at local minima (masked stores: vectorised with AVX-512,
        # ~15% faster than rewriting all five rows every plane)
        if lm:
            b = brow[c]
            sc = srow[c]
            far = (q - irow[c]) > np.int32(2)
            if v < b:
                srow[c] = b if far else sc
                brow[c] = v
                irow[c] = q
                mrow[c] = cm
                prow[c] = a
            elif far and v < sc:
                srow[c] = v


@njit(fastmath=True, error_model="numpy", cache=True)
def _track_rows4(p0, a0, a1, a2, a3, hold, hprev, brow, irow, srow, mrow, prow):
    """:func:`_track_row` for the four planes p0 .. p0+3 (cost rows a0 .. a3) in one pass: each
    pixel's state is loaded once, updated in registers with selects (branch free, no masked
    stores) and stored once, the same result as four ``_track_row`` calls.  ``hold`` / ``hprev``
    hold planes p0-2 / p0-1 on entry and p0+2 / p0+3 on return."""
    for c in range(a0.shape[0]):
        cm = hold[c]
        v = hprev[c]
        b = brow[c]
        ix = irow[c]
        sc = srow[c]
        mm = mrow[c]
        pp = prow[c]
        for t in range(4):
            a = a0[c] if t == 0 else (a1[c] if t == 1 else (a2[c] if t == 2 else a3[c]))
            q = np.int32(p0 + t - 1)
            lm = (v < cm) & (v <= a) & (v < VALID_LIMIT) & (q >= 0)
            far = (q - ix) > np.int32(2)
            win = lm & (v < b)
            sn = lm & far & (v < sc)
            s1 = b if far else sc
            s2 = v if sn else sc
            sc = s1 if win else s2
            b = v if win else b
            ix = q if win else ix
            mm = cm if win else mm
            pp = a if win else pp
            cm = v
            v = a
        hold[c] = cm
        hprev[c] = v
        brow[c] = b
        irow[c] = ix
        srow[c] = sc
        mrow[c] = mm
        prow[c] = pp


@njit(fastmath=True, error_model="numpy", cache=True)
def _track_right4(p0, a0, a1, a2, a3, lr_shift, rrow, irow):
    """:func:`_track_right` for the four planes p0 .. p0+3 (cost rows a0 .. a3, shifts
    lr_shift[p0:p0 + 4]): the right pixels every plane reaches in one pass (state loaded and
    stored once, selects in plane order), the few edge pixels plane by plane (same result)."""
    W = a0.shape[0]
    s0 = lr_shift[p0]
    s1 = lr_shift[p0 + 1]
    s2 = lr_shift[p0 + 2]
    s3 = lr_shift[p0 + 3]
    lo = min(max(max(max(s0, s1), max(s2, s3)), 0), W)
    hi = max(min(min(min(s0, s1), min(s2, s3)) + W, W), lo)
    n = hi - lo
    b0 = a0[lo - s0:hi - s0]
    b1 = a1[lo - s1:hi - s1]
    b2 = a2[lo - s2:hi - s2]
    b3 = a3[lo - s3:hi - s3]
    rb = rrow[lo:hi]
    ri = irow[lo:hi]
    q0 = np.int32(p0)
    for i in range(n):
        b = rb[i]
        ix = ri[i]
        v = b0[i]
        w = v < b
        b = v if w else b
        ix = q0 if w else ix
        v = b1[i]
        w = v < b
        b = v if w else b
        ix = q0 + np.int32(1) if w else ix
        v = b2[i]
        w = v < b
        b = v if w else b
        ix = q0 + np.int32(2) if w else ix
        v = b3[i]
        w = v < b
        b = v if w else b
        ix = q0 + np.int32(3) if w else ix
        rb[i] = b
        ri[i] = ix
    for t in range(4):                   # edge pixels outside [lo, hi), plane by plane
        sh = lr_shift[p0 + t]
        a = a0 if t == 0 else (a1 if t == 1 else (a2 if t == 2 else a3))
        for x in range(min(max(sh, 0), lo), lo):
            v = a[x - sh]
            if v < rrow[x]:
                rrow[x] = v
                irow[x] = np.int32(p0 + t)
        for x in range(hi, max(min(W + sh, W), hi)):
            v = a[x - sh]
            if v < rrow[x]:
                rrow[x] = v
                irow[x] = np.int32(p0 + t)


@njit(fastmath=True, error_model="numpy", cache=True)
def _track_right(p, arow, sh, rrow, irow):
    """Right-view running argmin: right pixel x = c + sh takes the reference cost ``arow[c]`` of
    plane p when it beats ``rrow[x]`` (then ``irow[x]`` = p).  Columns that map outside the row
    are skipped; slices indexed by the bare loop counter (vectorised, masked selects)."""
    W = arow.shape[0]
    lo = min(max(sh, 0), W)
    hi = max(min(W + sh, W), lo)
    n = hi - lo
    a = arow[lo - sh:hi - sh]
    rb = rrow[lo:hi]
    ri = irow[lo:hi]
    q = np.int32(p)
    for i in range(n):
        v = a[i]
        b = rb[i]
        better = v < b
        rb[i] = v if better else b
        ri[i] = q if better else ri[i]


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
        # far surface: on the synthetic mover every such pixel sat at the far plane, 90% off).
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
def finalize_all(best, bidx, second, bm1, bp1, inv_depths, subpixel, conf_scale, max_rel,
                 lr, ridx, a_first, a_last, lr_max, tmp, depth, conf, cost_out):
    """:func:`_finalize_row` of both winners, :func:`_merge_row` and the left-right check in one
    parallel pass over the rows (each step only needs its own row: one fork/join instead of four,
    which matters on a loaded machine where every parallel region waits for its slowest thread).

    best .. bp1 (V,H,W) from ``sweep_fronto`` (V = 1 or 2); with V = 2 the shiftable-window
    winner (index 1) replaces the plain one where their depths differ by more than ``max_rel``.
    lr: with ``ridx`` (V,H,W) and a_first / a_last (see :func:`lr_disagreement`), a pixel whose
    disagreement exceeds ``lr_max`` plane steps gets confidence 0.  tmp (4,H,W) f32 scratch (the
    shifted winner's depth, conf, cost; the disagreement).  depth, conf, cost_out (H,W) f32 as in
    :func:`_finalize_row`.
    """
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
