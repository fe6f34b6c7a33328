"""Numba kernels of the plane sweep itself (pure: arrays in, arrays out, no I/O).

:func:`sweep_fronto` sweeps every plane over the reference and keeps, per pixel, the running
winner of the plane cost.  Its inputs and buffers come in six named tuples (:class:`Reference`,
:class:`Sources`, :class:`SweepParams`, :class:`Winners`, :class:`RightWinners`,
:class:`Scratch`), all allocated by the caller, :func:`mannequin.stereo.sweep.plane_sweep`, which
also checks the inputs and sets up the planes.  The window statistics computed before the sweep
are in :mod:`mannequin.stereo.kernels.stats`, the steps after it in
:mod:`mannequin.stereo.kernels.finalize`.

How the sweep is laid out:

* Rows are split into chunks (a multiple of the thread count) processed in parallel
  (:func:`_sweep_chunk`).  Inside a chunk the loops run plane block -> row -> plane -> source, so
  everything one row needs stays in L1/L2.
* One source row of one plane takes one of three paths (:func:`_plane_cost_row`):

  - *bilinear* (:func:`_warp_bilinear_source`): a general homography; it is affine along a row
    in homogeneous coordinates, so one reciprocal per pixel.  Two loops on purpose: coordinates,
    clamping and validity (SIMD-vectorised), then the four-tap gather (scalar); fused, LLVM keeps
    the whole loop scalar.
  - *shift* (:func:`_warp_shift_source`, sources in ``Sources.rect``: every plane homography a
    pure x shift, a rectified pair): a 1-D interpolation with weights constant along the row
    (contiguous loads, no gather).
  - *integer shift* (:func:`_integer_shift_cost`, ``Sources.int_id`` >= 0: rectified, a whole-pixel
    shift at every plane, the reference's size): the warped row is a slice of the source, so the
    source's window sums of W and W² do not depend on the plane and come precomputed
    (:func:`mannequin.stereo.kernels.stats.rect_source_stats`); per plane only Σ I·W is summed.

  The first two then share :func:`_warped_cost`: a *vertical* running box sum of W, W² and I·W
  over a ring buffer of the last ``window`` warped rows, a *horizontal* running box sum along the
  row (:func:`_hbox3`, the three add chains advancing together in one loop; :func:`_hbox` for one
  row splits it into four chains, or sums directly up to ``HBOX_DIRECT_MAX_H``), restarted from a
  direct sum every ``BOX_RUN`` columns so that float32 rounding does not drift along the row
  (docs/FINDINGS.md, "Horizontal box sums"), and the ZNCC from the reference window mean and
  1/sqrt(Σ(I-Ī)²) precomputed once per image.  A chunk re-warps ``window - 1`` halo rows per
  plane, so chunks are tall (~60 rows).
* Source costs of a pixel are folded into a branch-free sorted top-k list as they are produced;
  the plane cost is the mean of the valid ones among the k best.
* Shiftable windows (``shift`` > 0): the plane cost rows go through a separable min filter over
  ±shift columns and rows (a ring of ``2 shift + 1`` rows, so chunks warp ``shift`` extra halo
  rows either side); the min-filtered curve gets its own running winner (state index 1) next to
  the plain one (index 0).
* No cost volume: per pixel the kernel keeps the costs of the last two planes (a 2-slot history),
  enough to spot the local minima of the cost curve as they pass.  Of those it keeps the best
  (cost, plane, costs either side for the parabola) and the lowest other local minimum more than
  two planes away (for the confidence).  O(H·W) memory, whatever the plane count.
* Plane blocks: with every source on the integer-shift path the caller sweeps planes in blocks
  of 4; a row's winner state is then updated once per block (:func:`_track_rows4`,
  :func:`_track_right4`: loads, selects in registers, one store) instead of once per plane with
  masked stores (:func:`_track_row`).
* Left-right check (``lr``, one rectified source): the right image's cost at pixel x and plane p
  is the reference's cost at column x - shift(p), so a running argmin per right pixel
  (:func:`_track_right`) gives the right view's winners during the same sweep, O(H·W).

Rules the code follows for speed (LLVM vectorisation):

* The row loops live in small helpers that are *not* inlined: compiled separately LLVM
  vectorises them; inlined into the big kernel it kept most of them scalar (aliasing run-time
  checks).  The step helpers of the sweep that only pick rows and call those
  (:func:`_plane_cost_row`, the three source paths, :func:`_track_plane`, :func:`_track_block4`)
  are inlined (``inline="always"``) into :func:`_sweep_chunk` instead: called once per row, plane
  and source, passing the named tuples would cost more than the work they dispatch.
* ``error_model="numpy"`` everywhere: with Python's error model every float division carries a
  zero check that blocks vectorisation (all divisions here are guarded).
* Array indices inside the hot loops are the bare loop counter over a slice (``a = v[o:o + n]``,
  ``a[i]``) or unsigned (the gather): with a computed signed index (``v[c + o]``) Numba emits a
  negative-index wrap-around select per access, which keeps LLVM from vectorising.
* Integers converted to float inside a vectorised loop are int32 (``np.float32(np.int32(c))``, the
  clamp bounds of a cast made int32 before the loop): Numba's integers are int64, and AVX2 has no
  vector int64 -> float conversion (AVX-512DQ has), so LLVM scalarises it, 8 conversions and
  inserts per vector (the AVX2 build's bilinear warp ran 2.6x slower for this).  Likewise a
  difference of int32 values is int64 in Numba: compare instead (``ix < q - 2``, not
  ``q - ix > 2``), which keeps the lanes 32-bit.
* Numba's on-disk cache (``cache=True``) is keyed on each function's own file: a kernel module
  holds its compiled entry points together with every helper they call, so that editing a helper
  invalidates its callers' cache too.

Coordinates inside the kernels are array indices: pixel (row r, col c) is the point (c, r).  The
caller folds the +0.5 pixel-centre convention of the intrinsics into the homographies.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numba import njit, prange

#: Cost of a missing vote / no hypothesis.  Finite on purpose (kernels use fastmath: no inf/nan).
BIG = np.float32(1.0e4)
#: Below this the plane cost is treated as valid (valid costs lie in [0, 2]).
VALID_LIMIT = np.float32(10.0)
#: Horizontal box sums are running sums restarted from a direct sum every BOX_RUN columns (bounds
#: the float32 rounding that a running sum accumulates along the row).
BOX_RUN = 64
#: One row's box sum (``_hbox``, the integer-shift path) uses direct sums up to this half-window
#: (cheaper than running sums there, dearer above it).
HBOX_DIRECT_MAX_H = 3


class Reference(NamedTuple):
    """The reference image, (H, W) float32 each."""

    #: grey values (any offset: ZNCC ignores it)
    grey: np.ndarray
    #: window mean of ``grey``
    mean: np.ndarray
    #: 1/sqrt(Σ(I-Ī)²) over the window; 0 where the reference is too flat (the pixel gets no vote)
    isd: np.ndarray


class Sources(NamedTuple):
    """The S source images and the P planes' mapping into them."""

    #: all source images (grey, same offset as the reference), flattened and concatenated, float32
    flat: np.ndarray
    #: (S,) int64 offset of each source in ``flat``
    off: np.ndarray
    #: (S, 2) int64 (h, w) of each source, each at least 2×2
    shape: np.ndarray
    #: (P, S, 3, 3) float64: plane p maps the reference index (c, r, 1) to homogeneous source
    #: index coordinates
    homs: np.ndarray
    #: (S,) uint8: 1 where every plane's homography of the source is a pure x shift
    #: ([[1, 0, a], [0, 1, 0], [0, 0, 1]], a in px): the shift path (equal to the bilinear warp,
    #: whose vertical weight is then 0, up to float rounding)
    rect: np.ndarray
    #: (S,) int64: >= 0 for an integer-shift source (rectified, a whole-pixel shift at every
    #: plane, the reference's size), its index into ``istat``; -1 for the others
    int_id: np.ndarray
    #: (P, S) int64: the integer x shift of plane p (integer-shift sources)
    ishift: np.ndarray
    #: (n_int, 5, H, W + 2 pad) float32: the integer-shift sources' window statistics
    #: (:func:`mannequin.stereo.kernels.stats.rect_source_stats`), padded by ``pad`` columns
    istat: np.ndarray
    #: the column padding of ``istat`` (> max |shift| + window // 2)
    pad: int


class SweepParams(NamedTuple):
    """Scalars and the chunking of one sweep."""

    #: odd box side of the matching window
    window: int
    #: 0 <= shift <= window // 2: half-range of the shiftable-window min filter (0 = off)
    shift: int
    #: floor of a source window's Σ(W-W̄)², float32
    var_floor: np.float32
    #: (n_chunks + 1,) int64 row bounds of the parallel chunks
    chunk_start: np.ndarray
    #: keep the right view's winners too (:class:`RightWinners`)
    lr: bool


class Winners(NamedTuple):
    """Running winners per pixel, (V, H, W) each, written in place.

    V = 1, or 2 with shiftable windows: index 0 follows the plain window cost, index 1 the
    shiftable-window cost (which exists only where the plain one is valid).
    """

    #: float32 aggregated cost of the winning plane (BIG = none)
    best: np.ndarray
    #: int32 winning plane (-1 = none)
    bidx: np.ndarray
    #: float32 lowest *local minimum* of the cost curve more than two planes from the winner
    #: (BIG = none)
    second: np.ndarray
    #: float32 cost at the winner - 1 (BIG when unknown)
    bm1: np.ndarray
    #: float32 cost at the winner + 1 (BIG when unknown)
    bp1: np.ndarray
    #: (V, 2, H, W) float32 working state: the costs of the last two planes
    hist: np.ndarray


class RightWinners(NamedTuple):
    """The right view's winners of a rectified pair (``SweepParams.lr``).

    The cost of right-image pixel x at plane p is the reference's cost at column x - shift[p]
    (the same pair of windows, and for the shiftable windows the same min over window positions),
    so the sweep also keeps, per right pixel, the plane of its lowest cost (plain argmin).
    Without ``lr`` the arrays are not touched (any shape).
    """

    #: (P,) int64 round(x shift of plane p in px)
    shift: np.ndarray
    #: (V, H, W) float32 lowest cost (BIG = none)
    best: np.ndarray
    #: (V, H, W) int32 plane of the lowest cost (-1 = none)
    idx: np.ndarray


class Scratch(NamedTuple):
    """Per-chunk working buffers (float32 unless noted), first axis the chunk.

    B >= 1 planes are swept together (the row loop runs over blocks of B planes, each row through
    its B planes in order); the buffers with a B axis hold one copy per plane of the block.
    """

    #: (n_chunks, B, S, window, W) the last ``window`` warped rows of each source
    ring: np.ndarray
    #: (n_chunks, B, S, window, W) their validity (1 / 0)
    vring: np.ndarray
    #: (n_chunks, B, S, 3, W) vertical running sums of W, W², I·W
    vsum: np.ndarray
    #: (n_chunks, 10, W) rows: warped row, x / y fractions, box sums of W, W², I·W, source cost,
    #: aggregation sum and count
    work: np.ndarray
    #: (n_chunks, W) int32 gather indices
    iwork: np.ndarray
    #: (n_chunks, top_k, W) the sorted top-k source costs
    topk: np.ndarray
    #: (n_chunks, B, 2 shift + 1, W) the column-min-filtered plane cost rows
    cring: np.ndarray
    #: (n_chunks, B, 2 shift + 1, W) the plane cost rows
    oring: np.ndarray
    #: (n_chunks, B, W) the shiftable-window cost row of each plane of the block
    vmin4: np.ndarray


@njit(parallel=True, fastmath=True, error_model="numpy", cache=True)
def sweep_fronto(ref, src, prm, win, right, scr):
    """Plane sweep with ZNCC, top-k view aggregation and running winners per pixel.

    ``ref`` :class:`Reference`, ``src`` :class:`Sources`, ``prm`` :class:`SweepParams`; writes
    ``win`` (:class:`Winners`) and, with ``prm.lr``, ``right`` (:class:`RightWinners`) in place;
    ``scr`` (:class:`Scratch`) is clobbered.  The cost of pixel (r, c) at plane p is the mean of
    the valid (< VALID_LIMIT) ones among the ``top_k`` lowest source costs 1 - ZNCC in [0, 2]; a
    source's cost is BIG where its warped window centre falls outside it or the reference window
    is flat.  The three source paths give the same costs up to float rounding.
    """
    n_chunks = prm.chunk_start.shape[0] - 1
    for ch in prange(n_chunks):
        r0 = prm.chunk_start[ch]
        r1 = prm.chunk_start[ch + 1]
        _reset_winners(win, right, prm.lr, r0, r1)
        _sweep_chunk(ch, r0, r1, ref, src, prm, win, right, scr)
        _last_plane_minima(win, src.homs.shape[0], r0, r1)


@njit(fastmath=True, error_model="numpy", cache=True)
def _reset_winners(win, right, lr, r0, r1):
    """No winner yet for rows r0 .. r1 - 1 (costs BIG, planes -1)."""
    W = win.best.shape[2]
    for v_ in range(win.best.shape[0]):
        for r in range(r0, r1):
            for c in range(W):
                win.best[v_, r, c] = BIG
                win.bidx[v_, r, c] = -1
                win.second[v_, r, c] = BIG
                win.bm1[v_, r, c] = BIG
                win.bp1[v_, r, c] = BIG
                win.hist[v_, 0, r, c] = BIG
                win.hist[v_, 1, r, c] = BIG
        if lr:
            right.best[v_, r0:r1] = BIG
            right.idx[v_, r0:r1] = -1


@njit(fastmath=True, error_model="numpy", cache=True)
def _sweep_chunk(ch, r0, r1, ref, src, prm, win, right, scr):
    """Every plane over the rows r0 .. r1 - 1 of chunk ``ch``: per block of planes, each warped
    row rr (halo rows included) goes through the block's planes; box row rb = rr - h gets its
    plane costs, and once the min filter has the rows it needs, row rb - shift is tracked."""
    P = src.homs.shape[0]
    h = prm.window // 2
    m = prm.shift
    B = scr.oring.shape[1]
    for p0 in range(0, P, B):
        pb = min(B, P - p0)
        fused = pb == 4                  # _track_block4 after the block's 4 planes
        scr.ring[ch] = 0.0
        scr.vring[ch] = 0.0
        scr.vsum[ch] = 0.0
        rstart = r0 - m - h
        for rr in range(rstart, r1 + m + h):
            rb = rr - h                  # centre row of the completed box
            for j in range(pb):
                _plane_cost_row(ch, j, p0 + j, rr, rstart, r0, ref, src, prm, scr)
                if rb >= r0 + m:
                    _track_plane(ch, j, p0 + j, rb - m, r0, prm, win, right, scr, fused)
            if fused and rb >= r0 + m:
                _track_block4(ch, p0, rb - m, r0, prm, win, right, scr)


@njit(inline="always", fastmath=True, error_model="numpy", cache=True)
def _plane_cost_row(ch, j, p, rr, rstart, r0, ref, src, prm, scr):
    """Plane p (slot j of the block) at warped row rr: every source's row goes into its running
    sums; for box row rb = rr - h inside the chunk's range (halo included) the plane cost row
    goes to ``scr.oring[ch, j]`` and its column min filter to ``scr.cring[ch, j]``."""
    H, W = ref.grey.shape
    S = src.homs.shape[1]
    window = prm.window
    h = window // 2
    m = prm.shift
    nm = 2 * m + 1
    inv_n = np.float32(1.0 / (window * window))
    ry = min(max(rr, 0), H - 1)
    ro = min(max(rr - window, 0), H - 1)
    slot = (rr - rstart) % window
    rb = rr - h
    out = rb >= r0 - m
    inb = (rb >= 0) & (rb < H)
    emit = out and inb
    cslot = (rb - r0 + m) % nm
    T = scr.topk[ch]
    cost = scr.work[ch, 6]
    single = (S == 1) and (T.shape[0] == 1)      # the plane cost is the source's cost
    dst = scr.oring[ch, j, cslot] if single else cost
    if out and not single:
        T[:, :] = BIG
    for s in range(S):
        if src.int_id[s] >= 0:
            _integer_shift_cost(ch, j, s, p, rr - rstart >= window, ry, ro, rb, emit, ref, src, scr, h, inv_n,
                                prm.var_floor, dst)
        else:
            vs = scr.vring[ch, j, s, slot]
            if src.rect[s]:
                _warp_shift_source(src, s, p, ry, scr.work[ch, 0], vs)
            else:
                _warp_bilinear_source(src, s, p, ry, scr.work[ch, 0], vs, scr.work[ch, 1], scr.work[ch, 2],
                                      scr.iwork[ch])
            _warped_cost(ch, j, s, slot, ry, ro, rb, emit, scr.vring[ch, j, s, (rb - rstart) % window], ref, scr,
                         h, inv_n, prm.var_floor, dst)
        if emit and not single:
            _fold_topk(T, cost)
    if not out:
        return
    orow = scr.oring[ch, j, cslot]
    if single:                           # written by the ZNCC step (BIG = none)
        if not inb:
            orow[:] = BIG
    else:
        _aggregate_row(T, orow, scr.work[ch, 7], scr.work[ch, 8])
    _hmin_row(orow, scr.cring[ch, j, cslot], m)


@njit(inline="always", fastmath=True, error_model="numpy", cache=True)
def _integer_shift_cost(ch, j, s, p, drop, ry, ro, rb, emit, ref, src, scr, h, inv_n, var_floor, dst):
    """Integer-shift path of source s at plane p: the source's window sums of W and W² come from
    ``src.istat``; only Σ I·W is summed (vertical running sum over the reference rows ry in / ro
    out, dropped once ``drop``).  With ``emit``, box row rb's cost 1 - ZNCC goes to ``dst``."""
    W = ref.grey.shape[1]
    st = src.istat[src.int_id[s]]
    xo = src.ishift[p, s] + src.pad
    viw = scr.vsum[ch, j, s, 2]
    _viw_update(ref.grey[ry], st[0, ry, xo:xo + W], ref.grey[ro], st[0, ro, xo:xo + W], drop, viw)
    if not emit:
        return
    siw = scr.work[ch, 5]
    _hbox(viw, siw, h)
    _zncc_row_int(siw, st[3, rb], st[4, rb], st[1, rb], st[2, rb], xo, ref.mean[rb], ref.isd[rb], inv_n,
                  var_floor, h, dst)


@njit(inline="always", fastmath=True, error_model="numpy", cache=True)
def _warp_shift_source(src, s, p, ry, wrow, vs):
    """Shift path: reference row ry of source s at plane p, a pure x shift of the source row
    (:func:`_warp_row_shift`), into ``wrow`` with its validity in ``vs``."""
    hm = src.homs[p, s]
    sh = np.int32(src.shape[s, 0])
    swd = np.int32(src.shape[s, 1])
    off = np.int32(src.off[s])
    _warp_row_shift(src.flat, off + min(ry, sh - np.int32(1)) * swd, swd, hm[0, 2] / hm[2, 2], ry <= sh - 1,
                    wrow, vs)


@njit(inline="always", fastmath=True, error_model="numpy", cache=True)
def _warp_bilinear_source(src, s, p, ry, wrow, vs, fxs, fys, kid):
    """Bilinear path: reference row ry of source s at plane p through its homography
    (:func:`_warp_row_bilinear`), into ``wrow`` with its validity in ``vs``; fxs, fys, kid:
    scratch rows."""
    hm = src.homs[p, s]
    sh = np.int32(src.shape[s, 0])
    swd = np.int32(src.shape[s, 1])
    off = np.int32(src.off[s])
    yf = np.float64(ry)
    x0 = np.float32(hm[0, 1] * yf + hm[0, 2])
    y0 = np.float32(hm[1, 1] * yf + hm[1, 2])
    w0 = np.float32(hm[2, 1] * yf + hm[2, 2])
    dx = np.float32(hm[0, 0])
    dy = np.float32(hm[1, 0])
    dw = np.float32(hm[2, 0])
    _warp_row_bilinear(src.flat, off, sh, swd, x0, y0, w0, dx, dy, dw, wrow, vs, fxs, fys, kid)


@njit(inline="always", fastmath=True, error_model="numpy", cache=True)
def _warped_cost(ch, j, s, slot, ry, ro, rb, emit, vc, ref, scr, h, inv_n, var_floor, dst):
    """After a warp (shift or bilinear path) of source s into ``scr.work[ch, 0]``: the vertical
    running sums of W, W², I·W take the row (ring slot ``slot``, reference rows ry in / ro out);
    with ``emit``, box row rb's cost 1 - ZNCC goes to ``dst`` (BIG where the window centre's warp
    ``vc`` is invalid or the reference window is flat)."""
    wrow = scr.work[ch, 0]
    vw = scr.vsum[ch, j, s, 0]
    vww = scr.vsum[ch, j, s, 1]
    viw = scr.vsum[ch, j, s, 2]
    _vsum_update(wrow, scr.ring[ch, j, s, slot], ref.grey[ry], ref.grey[ro], vw, vww, viw)
    if not emit:
        return
    sw = scr.work[ch, 3]
    sww = scr.work[ch, 4]
    siw = scr.work[ch, 5]
    _hbox3(vw, vww, viw, sw, sww, siw, h)        # edge columns replicated
    _zncc_row(sw, sww, siw, ref.mean[rb], ref.isd[rb], vc, inv_n, var_floor, dst)


@njit(inline="always", fastmath=True, error_model="numpy", cache=True)
def _track_plane(ch, j, p, r, r0, prm, win, right, scr, fused):
    """Row r's plane cost at plane p (slot j): the shiftable-window cost row (min over the rows
    of the column-min ring) into ``scr.vmin4[ch, j]``; unless the block is ``fused``, both costs
    go to the running winners (is plane p-1 a local minimum?) and the right-view argmin."""
    m = prm.shift
    nv = win.best.shape[0]
    own = scr.oring[ch, j, (r - r0 + m) % (2 * m + 1)]
    vm = scr.vmin4[ch, j]
    hp = p % 2
    hm1 = (p + 1) % 2
    if not fused:
        _track_row(p, own, win.hist[0, hp, r], win.hist[0, hm1, r], win.best[0, r], win.bidx[0, r],
                   win.second[0, r], win.bm1[0, r], win.bp1[0, r])
        if prm.lr:
            _track_right(p, own, right.shift[p], right.best[0, r], right.idx[0, r])
    if nv > 1:
        _vmin_rows(scr.cring[ch, j], own, vm)
        if not fused:
            _track_row(p, vm, win.hist[1, hp, r], win.hist[1, hm1, r], win.best[1, r], win.bidx[1, r],
                       win.second[1, r], win.bm1[1, r], win.bp1[1, r])
            if prm.lr:
                _track_right(p, vm, right.shift[p], right.best[1, r], right.idx[1, r])


@njit(inline="always", fastmath=True, error_model="numpy", cache=True)
def _track_block4(ch, p0, r, r0, prm, win, right, scr):
    """Row r's costs at the four planes p0 .. p0+3 to the running winners in one pass (the row's
    state loaded and stored once), the same result as four :func:`_track_plane` calls."""
    m = prm.shift
    sl = (r - r0 + m) % (2 * m + 1)
    o = scr.oring[ch]
    vm = scr.vmin4[ch]
    h0 = p0 % 2
    h1 = (p0 + 1) % 2
    _track_rows4(p0, o[0, sl], o[1, sl], o[2, sl], o[3, sl], win.hist[0, h0, r], win.hist[0, h1, r],
                 win.best[0, r], win.bidx[0, r], win.second[0, r], win.bm1[0, r], win.bp1[0, r])
    nv = win.best.shape[0]
    if nv > 1:
        _track_rows4(p0, vm[0], vm[1], vm[2], vm[3], win.hist[1, h0, r], win.hist[1, h1, r], win.best[1, r],
                     win.bidx[1, r], win.second[1, r], win.bm1[1, r], win.bp1[1, r])
    if prm.lr:
        _track_right4(p0, o[0, sl], o[1, sl], o[2, sl], o[3, sl], right.shift, right.best[0, r], right.idx[0, r])
        if nv > 1:
            _track_right4(p0, vm[0], vm[1], vm[2], vm[3], right.shift, right.best[1, r], right.idx[1, r])


@njit(fastmath=True, error_model="numpy", cache=True)
def _last_plane_minima(win, P, r0, r1):
    """Plane P-1 is a local minimum when it beats P-2 (a missing plane P costs BIG)."""
    W = win.best.shape[2]
    for v_ in range(win.best.shape[0]):
        hl = win.hist[v_, (P - 1) % 2]
        hb = win.hist[v_, P % 2]
        for r in range(r0, r1):
            for c in range(W):
                v = hl[r, c]
                if v < hb[r, c] and v < VALID_LIMIT:
                    _offer(P - 1, v, hb[r, c], BIG, win.best[v_, r], win.bidx[v_, r], win.second[v_, r],
                           win.bm1[v_, r], win.bp1[v_, r], c)


# The row helpers below are deliberately *not* inlined (no ``inline="always"``): compiled as
# separate functions their row loops get SIMD-vectorised (the aliasing run-time checks stay per
# call), while inlined into the big kernel LLVM keeps them scalar.

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
    ixmax = np.int32(swd - 2)
    iymax = np.int32(sh - 2)
    for c in range(W):
        cf = np.float32(np.int32(c))     # int32 -> float32 (int64 -> float has no AVX2 vector form)
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
        ix = min(max(np.int32(xc), np.int32(0)), ixmax)
        iy = min(max(np.int32(yc), np.int32(0)), iymax)
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
        x = np.float32(np.int32(c)) + af
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
    cheaper than the running sums (no loop-carried dependency)."""
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
            far = irow[c] < np.int32(p - 3)      # q - irow[c] > 2 (int32 compare)
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
            far = ix < np.int32(p0 + t - 3)      # q - ix > 2 as an int32 compare (no int64 lanes)
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
