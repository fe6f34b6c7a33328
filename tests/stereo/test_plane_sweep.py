"""Two-view rectified fast paths of the plane sweep: left-right check, integer-shift sources,
plane blocks (mannequin.stereo.sweep.plane_sweep and the kernels in mannequin.stereo.kernels)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import mannequin.stereo.sweep as sc_mod
from mannequin.stereo.kernels import finalize, stats
from mannequin.stereo.kernels import fronto as sweep
from mannequin.stereo.sweep import plane_sweep

F, B = 100.0, 1.0                     # disparity d px  <->  depth F·B/d
D_BG, D_FG = 4, 12                    # background / foreground disparities (px)
D_RANGE = (2, 14)                     # swept disparities: 13 planes at 1 px


def _texture(h, w, seed):
    rng = np.random.default_rng(seed)
    t = rng.random((h, w))
    # a little smoothing: ZNCC over 7x7 likes some spatial correlation
    t = (t + np.roll(t, 1, 0) + np.roll(t, 1, 1) + np.roll(t, (1, 1), (0, 1))) / 4
    return t.astype(np.float32)


def occluded_pair(H=60, W=120, fg=(50, 90), seed=3):
    """A rectified pair: a textured background at disparity D_BG and a foreground band of columns
    ``fg`` (reference coordinates) at D_FG.  Right pixel x sees reference column x + d.  The
    reference columns [fg[0] - (D_FG - D_BG), fg[0]) show background that the foreground hides in
    the right image (occluded); returns (left, right, occluded mask, GT disparity)."""
    bg = _texture(H, W + 64, seed)
    fgt = _texture(H, W + 64, seed + 1)
    x = np.arange(W)
    in_fg = (x >= fg[0]) & (x < fg[1])
    left = np.where(in_fg[None], fgt[:, :W], bg[:, :W])
    right = np.empty_like(left)
    for xr in range(W):
        xf = xr + D_FG                      # reference column of the foreground at this right pixel
        if fg[0] <= xf < fg[1]:
            right[:, xr] = fgt[:, xf]
        else:
            right[:, xr] = bg[:, xr + D_BG]  # background texture column (reference coordinates)
    gt = np.where(in_fg, D_FG, D_BG).astype(np.float64)
    occ = np.zeros(W, bool)
    occ[fg[0] - (D_FG - D_BG):fg[0]] = True
    return left, right, np.broadcast_to(occ[None], (H, W)), np.broadcast_to(gt[None], (H, W))


def _sweep(left, right, **kw):
    K = np.array([[F, 0, left.shape[1] / 2], [0, F, left.shape[0] / 2], [0, 0, 1.0]])
    near, far = F * B / D_RANGE[1], F * B / D_RANGE[0]
    n = D_RANGE[1] - D_RANGE[0] + 1
    kw.setdefault("top_k", 1)
    kw.setdefault("n_threads", 2)
    return plane_sweep(left, [right], K, [K], [np.eye(3)], [np.array([-B, 0.0, 0.0])], (near, far), n,
                       min_angle_deg=0.0, **kw)


def _disp(depth):
    return np.where(depth > 0, F * B / np.where(depth > 0, depth, 1.0), np.nan)


def test_lr_check_marks_the_occluded_strip():
    left, right, occ, gt = occluded_pair()
    d0, c0 = _sweep(left, right)
    d1, c1 = _sweep(left, right, lr_check=True)
    assert np.array_equal(d0, d1)                    # the check changes confidence only
    H, W = left.shape
    core = np.zeros((H, W), bool)
    core[5:-5, 5:-5] = True                          # away from the image border
    inner_occ = occ & core
    ok = _disp(d1)
    right_match = np.abs(ok - gt) <= 1
    # occluded pixels: no true match; the check fails (nearly) all of them
    assert (c1[inner_occ] == 0).mean() > 0.9
    assert (c0[inner_occ] > 0).mean() > 0.5         # ... which the plain confidence does not see
    # visible, correctly matched pixels away from the edges keep their confidence
    far_from_edge = core & ~occ
    for x0 in (50, 90):
        far_from_edge[:, x0 - 12:x0 + 12] = False
    assert right_match[far_from_edge].mean() > 0.95
    assert (c1[far_from_edge] > 0).mean() > 0.95
    assert np.array_equal(c1[c1 > 0], c0[c1 > 0])


def test_lr_check_needs_one_rectified_source():
    left, right, _, _ = occluded_pair(H=24, W=48, fg=(20, 34))
    K = np.array([[F, 0, 24.0], [0, F, 12.0], [0, 0, 1.0]])
    t = np.array([-B, 0.0, 0.0])
    with pytest.raises(ValueError, match="lr_check"):
        plane_sweep(left, [right, right], K, [K, K], [np.eye(3)] * 2, [t, 2 * t], (10.0, 50.0), 8,
                    lr_check=True, min_angle_deg=0.0)
    c, s = np.cos(0.01), np.sin(0.01)
    Rz = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1.0]])
    with pytest.raises(ValueError, match="lr_check"):
        plane_sweep(left, [right], K, [K], [Rz], [t], (10.0, 50.0), 8, lr_check=True, min_angle_deg=0.0)
    with pytest.raises(ValueError, match="lr_check"):
        plane_sweep(left, [right], K, [K], [np.eye(3)], [t], (10.0, 50.0), 8, lr_check="yes",
                    min_angle_deg=0.0)


@pytest.mark.parametrize("shift, lr", [(3, True), (0, False), (2, True)])
def test_plane_blocks_give_identical_results(monkeypatch, shift, lr):
    """Blocks of 4 planes (fused tracking) equal the plane-by-plane sweep, tail block included."""
    left, right, _, _ = occluded_pair(H=50, W=90, fg=(35, 70))
    kw = dict(shift=shift, lr_check=lr, return_cost=True)
    monkeypatch.setattr(sc_mod, "PLANE_BLOCK", 4)
    a = _sweep(left, right, **kw)
    monkeypatch.setattr(sc_mod, "PLANE_BLOCK", 1)
    b = _sweep(left, right, **kw)
    for x, y in zip(a, b, strict=False):
        assert np.array_equal(x, y, equal_nan=True)


def test_integer_shift_sources():
    from mannequin.stereo.sweep import integer_shift_sources, plane_homographies, shift_only_sources

    K = np.array([[F, 0, 30.0], [0, F, 20.0], [0, 0, 1.0]])
    t = [np.array([-B, 0.0, 0.0])] * 3
    inv_whole = np.arange(2, 15) / (F * B)            # disparities 2 .. 14 px
    inv_half = np.arange(2, 15, 0.5) / (F * B)
    homs = plane_homographies(K, [K] * 3, [np.eye(3)] * 3, t, inv_whole)
    rect = shift_only_sources(homs)
    got = integer_shift_sources(homs, rect, [(40, 60), (40, 60), (40, 61)], (40, 60))
    assert got.tolist() == [True, True, False]        # another size: general rectified path
    homs = plane_homographies(K, [K], [np.eye(3)], t[:1], inv_half)
    assert integer_shift_sources(homs, shift_only_sources(homs), [(40, 60)], (40, 60)).tolist() == [False]


def test_rect_source_stats_match_numpy():
    from scipy.ndimage import uniform_filter

    rng = np.random.default_rng(0)
    src = rng.random((23, 31)).astype(np.float32) - 0.5
    window, pad, floor = 5, 9, 1e-4
    out = np.empty((5, 23, 31 + 2 * pad), np.float32)
    stats.rect_source_stats(src, window, pad, floor, out)
    padded = np.pad(src.astype(np.float64), ((0, 0), (pad, pad)), mode="edge")
    n = window * window
    v1 = uniform_filter(padded, (window, 1), mode="nearest") * window
    v2 = uniform_filter(padded ** 2, (window, 1), mode="nearest") * window
    b1 = uniform_filter(padded, window, mode="nearest") * n
    b2 = uniform_filter(padded ** 2, window, mode="nearest") * n
    isd = 1.0 / np.sqrt(np.maximum(b2 - b1 ** 2 / n, floor))
    assert np.array_equal(out[0], padded.astype(np.float32))
    for k, ref in ((1, v1), (2, v2), (3, b1), (4, isd)):
        np.testing.assert_allclose(out[k], ref, rtol=1e-5, atol=1e-5)


def _state(W, rng):
    big = sweep.BIG
    return [np.where(rng.random(W) < 0.2, big, rng.random(W)).astype(np.float32) for _ in range(2)] + [
        np.full(W, big, np.float32), np.full(W, -1, np.int32), np.full(W, big, np.float32),
        np.full(W, big, np.float32), np.full(W, big, np.float32)]


def test_track_rows4_equals_four_track_rows():
    rng = np.random.default_rng(1)
    W = 67
    s1 = _state(W, rng)
    s4 = [a.copy() for a in s1]
    P = 12
    costs = np.where(rng.random((P, W)) < 0.1, sweep.BIG, rng.random((P, W)) * 2).astype(np.float32)
    for p in range(P):                               # hist slots alternate: p % 2 holds plane p
        hold, hprev = (s1[0], s1[1]) if p % 2 == 0 else (s1[1], s1[0])
        sweep._track_row(p, costs[p], hold, hprev, *s1[2:])
    for p0 in range(0, P, 4):
        hold, hprev = (s4[0], s4[1]) if p0 % 2 == 0 else (s4[1], s4[0])
        sweep._track_rows4(p0, costs[p0], costs[p0 + 1], costs[p0 + 2], costs[p0 + 3], hold, hprev, *s4[2:])
    for a, b in zip(s1, s4, strict=False):
        assert np.array_equal(a, b)
    assert (s1[3] >= 0).any() and (s1[4] < sweep.BIG).any()


def test_track_right4_equals_track_right():
    rng = np.random.default_rng(2)
    W, P = 40, 8
    costs = np.where(rng.random((P, W)) < 0.1, sweep.BIG, rng.random((P, W))).astype(np.float32)
    costs[:, 5] = costs[0, 5]                        # ties: the first plane keeps the pixel
    shifts = np.array([-9, -8, -7, -6, -5, -3, -2, 0], np.int64)
    r1 = np.full(W, sweep.BIG, np.float32)
    i1 = np.full(W, -1, np.int32)
    r4, i4 = r1.copy(), i1.copy()
    for p in range(P):
        sweep._track_right(p, costs[p], shifts[p], r1, i1)
    for p0 in (0, 4):
        sweep._track_right4(p0, costs[p0], costs[p0 + 1], costs[p0 + 2], costs[p0 + 3], shifts, r4, i4)
    assert np.array_equal(r1, r4) and np.array_equal(i1, i4)
    # right pixel x at plane p has the cost of reference column x - shift
    x = 20
    p = int(i1[x])
    assert r1[x] == costs[p, x - shifts[p]] == min(costs[q, x - shifts[q]] for q in range(P))


def test_lr_disagreement_kernel():
    H, W, P = 2, 10, 5
    inv = np.linspace(0.1, 0.5, P)                   # plane q at inverse depth 0.1 + 0.1 q
    a_first, a_last = -2.0, -6.0                     # x shift of plane q: -2 - q px
    depth = np.zeros((H, W), np.float32)
    depth[0, 8] = 1.0 / 0.3                          # plane 2 -> right pixel 8 - 4 = 4
    depth[1, 3] = 1.0 / 0.5                          # plane 4 -> right pixel -3: outside
    ridx = np.full((1, H, W), -1, np.int32)
    ridx[0, 0, 4] = 4
    out = np.empty((H, W), np.float32)
    finalize.lr_disagreement(depth, ridx, inv, a_first, a_last, 0.08, out)
    assert out[0, 8] == pytest.approx(2.0, abs=1e-4)
    assert out[1, 3] == sweep.BIG and out[0, 0] == sweep.BIG


# --- real images: Middlebury Cones (data/samples/middlebury_cones, the demo's input) ---------------
CONES = Path(__file__).resolve().parents[2] / "data" / "samples" / "middlebury_cones"


def test_plane_sweep_on_real_cones_views():
    """Cones view 2 against the other 8 collinear rectified views (known geometry, 1 unit per view
    step, f = 450 px): on its 70% most confident pixels at most 5% are off by more than 1 px of
    Middlebury's disparity (views 2 to 6) against the structured-light ground truth; 4.1% when
    measured (benchmarks/stereo.py)."""
    import imageio.v3 as iio

    ims = [iio.imread(CONES / "images" / f"im{i}.png") for i in range(9)]
    H, W = ims[0].shape[:2]
    f = 450.0
    K = np.array([[f, 0, W / 2], [0, f, H / 2], [0, 0, 1.0]])
    srcs = [s for s in range(9) if s != 2]
    depth, conf = plane_sweep(ims[2], [ims[s] for s in srcs], K, [K] * 8, [np.eye(3)] * 8,
                              [np.array([-(s - 2.0), 0.0, 0.0]) for s in srcs], (f / 16.0, f / 0.5), 128,
                              min_angle_deg=0.0)
    gt_depth = np.load(CONES / "gt" / "im2.npy")  # 1 / (disparity per view step)
    ok = (gt_depth > 0) & (depth > 0)
    disp = 4 * f / depth[ok]                      # disparity between views 2 and 6, px
    gt = 4 / gt_depth[ok]
    top = conf[ok] >= np.quantile(conf[ok], 0.3)
    assert ok.mean() > 0.9
    bad1 = np.mean(np.abs(disp[top] - gt[top]) > 1.0)
    assert bad1 < 0.05, f"bad-1 {bad1:.1%} on the 70% most confident pixels"
    assert np.mean(np.abs(disp - gt) > 1.0) < 0.12  # all pixels (7.7% measured)


def test_a_surface_outside_the_range_gets_no_depth():
    """A winner on the first or last plane is the edge of the cost, not a minimum: a wall at
    disparity 12 swept over disparities 2..8 gives no pixel the depth of plane 2 or 8 (a quarter
    of them had plane 8, the nearest to the truth, and now get none; the rest match noise inside
    the range); swept over 2..16 the wall is found."""
    bg = _texture(40, 140, 5)
    left, right = bg[:, :100], bg[:, 12:112]           # right pixel x sees reference column x + 12
    K = np.array([[F, 0, 50.0], [0, F, 20.0], [0, 0, 1.0]])

    def sweep_over(d_lo, d_hi):
        return plane_sweep(left, [right], K, [K], [np.eye(3)], [np.array([-B, 0.0, 0.0])],
                           (F * B / d_hi, F * B / d_lo), d_hi - d_lo + 1, min_angle_deg=0.0, top_k=1)

    inner = (slice(5, -5), slice(5, 80))
    depth, conf = sweep_over(2, 8)
    disp = _disp(depth)
    assert not np.any(np.isclose(disp, 8.0, atol=1e-3) | np.isclose(disp, 2.0, atol=1e-3))
    assert (depth[inner] == 0).mean() > 0.2 and np.all(conf[depth == 0] == 0)
    depth, _ = sweep_over(2, 16)
    assert np.nanmedian(_disp(depth)[inner]) == pytest.approx(12.0, abs=0.1)
