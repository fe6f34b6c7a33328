"""Plane-sweep kernel (mannequin.stereo.kernels.fronto) through its public wrapper mannequin.stereo.sweep.plane_sweep.

Synthetic scenes: a textured plane rendered exactly (ray-plane intersection, cubic texture lookup)
into a reference and translated/rotated sources.  The numpy baseline in mannequin/testing/numpy_sweep.py
is the oracle for the cost.
"""
from __future__ import annotations

import math
import tracemalloc

import numpy as np
import pytest

from mannequin.stereo.sweep import plane_sweep
from mannequin.testing import numpy_sweep as nps


def _args(sc):
    return (sc["ref"], sc["sources"], sc["K_ref"], sc["K_sources"], sc["R"], sc["t"],
            sc["depth_range"])


def _rel_err(depth, gt, border=4):
    d = depth[border:-border, border:-border]
    g = gt[border:-border, border:-border]
    ok = d > 0
    return float(np.median(np.abs(d[ok] - g[ok]) / g[ok])), float(ok.mean())


@pytest.fixture(scope="module")
def fronto():
    return nps.plane_scene(120, 160, n_src=3, slant_deg=0.0, uint8=True, seed=1)


def test_fronto_parallel_plane(fronto):
    depth, conf = plane_sweep(*_args(fronto), n_planes=96, n_threads=2)
    assert depth.shape == conf.shape == fronto["ref"].shape
    assert depth.dtype == conf.dtype == np.float32
    err, valid = _rel_err(depth, fronto["gt"])
    assert valid > 0.95
    assert err < 0.005
    assert conf.min() >= 0.0 and conf.max() <= 1.0
    assert np.median(conf[depth > 0]) > 0.5


def test_subpixel_refinement_helps(fronto):
    coarse, _ = plane_sweep(*_args(fronto), n_planes=24, subpixel=False, n_threads=2)
    fine, _ = plane_sweep(*_args(fronto), n_planes=24, subpixel=True, n_threads=2)
    assert _rel_err(fine, fronto["gt"])[0] < 0.6 * _rel_err(coarse, fronto["gt"])[0]


def test_slanted_plane_rgb():
    sc = nps.plane_scene(120, 160, n_src=4, slant_deg=35.0, seed=2)
    sc["ref"] = np.repeat((sc["ref"] * 255).astype(np.uint8)[..., None], 3, axis=2)  # RGB uint8
    depth, conf = plane_sweep(*_args(sc), n_planes=128, n_threads=2)
    err, valid = _rel_err(depth, sc["gt"])
    assert valid > 0.9
    assert err < 0.01


def test_sources_of_another_size():
    sc = nps.plane_scene(96, 128, n_src=3, seed=3)
    # re-render source 1 at another size and focal length through the same plane
    H2, W2, f2 = 80, 150, 140.0
    K2 = np.array([[f2, 0, W2 / 2 + 3.0], [0, f2, H2 / 2 - 2.0], [0, 0, 1.0]])
    tex = nps.make_texture(1024, seed=3)
    f = sc["K_ref"][0, 0]
    img, _ = nps.render_plane(K2, sc["R"][1], sc["t"][1], (H2, W2), np.array([0, 0, 4.0]),
                              np.array([1.0, 0, 0]), np.array([0, 1.0, 0]), tex, 4.0 / f * 0.8)
    sc["sources"][1] = img.astype(np.float32)
    sc["K_sources"] = [sc["K_ref"], K2, sc["K_ref"]]
    depth, _ = plane_sweep(*_args(sc), n_planes=96, n_threads=2)
    assert _rel_err(depth, sc["gt"])[0] < 0.005


@pytest.mark.parametrize("shape, n_src, window, top_k", [
    ((48, 64), 3, 5, 2), ((40, 56), 4, 9, 3), ((33, 21), 2, 3, 1)])
def test_agrees_with_numpy_baseline(shape, n_src, window, top_k):
    sc = nps.plane_scene(*shape, n_src=n_src, slant_deg=25.0, seed=4)
    args = _args(sc)
    depth, conf, cost = plane_sweep(*args, n_planes=16, window=window, top_k=top_k,
                                    subpixel=False, n_threads=2, return_cost=True, shift=0,
                                    smooth=0)
    d_np, c_np, vol = nps.numpy_plane_sweep(*args, n_planes=16, window=window, top_k=top_k,
                                            return_volume=True)
    both = (depth > 0) & (d_np > 0)
    assert both.mean() > 0.95
    same = np.isclose(depth, d_np, rtol=1e-5) & both
    assert same.sum() / both.sum() > 0.95
    best_np = vol.min(axis=0)
    assert np.median(np.abs(cost[both] - best_np[both])) < 1e-4
    assert np.abs(cost[same] - best_np[same]).max() < 5e-3
    assert np.abs(conf[same] - c_np[same]).max() < 0.02
    # with refinement both sides use the same parabola
    d2, _ = plane_sweep(*args, n_planes=16, window=window, top_k=top_k, n_threads=1, shift=0,
                        smooth=0)
    d2_np, _ = nps.numpy_plane_sweep(*args, n_planes=16, window=window, top_k=top_k,
                                     subpixel=True)
    assert np.mean(np.isclose(d2, d2_np, rtol=1e-3)) > 0.95


@pytest.mark.parametrize("shape, n_src, window, top_k, shift", [
    ((48, 64), 3, 5, 2, 1), ((40, 56), 4, 9, 3, 4), ((33, 21), 2, 3, 1, 1), ((40, 56), 3, 7, 2, 3)])
def test_shiftable_windows_agree_with_numpy(monkeypatch, shape, n_src, window, top_k, shift):
    """The shifted winner is the WTA of the numpy volume min-filtered over ±shift window positions."""
    from scipy.ndimage import minimum_filter

    import mannequin.stereo.sweep as sc_mod

    monkeypatch.setattr(sc_mod, "SHIFT_SWITCH_REL", -1.0)     # always take the shifted winner
    sc = nps.plane_scene(*shape, n_src=n_src, slant_deg=25.0, seed=4)
    args = _args(sc)
    depth, conf, cost = plane_sweep(*args, n_planes=16, window=window, top_k=top_k, subpixel=False,
                                    n_threads=2, return_cost=True, shift=shift, smooth=0)
    _, _, vol = nps.numpy_plane_sweep(*args, n_planes=16, window=window, top_k=top_k,
                                      return_volume=True)
    # windows centred outside the image do not exist; a pixel without a cost of its own gets none
    shifted = minimum_filter(vol, size=(1, 2 * shift + 1, 2 * shift + 1), mode="constant",
                             cval=np.inf)
    shifted[~np.isfinite(vol)] = np.inf
    inv_d = np.linspace(1 / sc["depth_range"][0], 1 / sc["depth_range"][1], 16)
    d_np, c_np = nps.wta(shifted, inv_d)
    both = (depth > 0) & (d_np > 0)
    assert both.mean() > 0.95
    assert np.isclose(depth, d_np, rtol=1e-5)[both].mean() > 0.98
    assert np.median(np.abs(cost[both] - shifted.min(axis=0)[both])) < 1e-4


def _two_planes(H=96, W=128, fg_depth=2.5, bg_depth=5.0, n_src=4, seed=7):
    """A textured fronto-parallel square at fg_depth in front of a textured wall at bg_depth;
    sources to the left and right of the reference (every background pixel is seen by some)."""
    f = 1.0 * W
    K = np.array([[f, 0, W / 2], [0, f, H / 2], [0, 0, 1.0]])
    tex_bg = nps.make_texture(1024, seed=seed)
    tex_fg = nps.make_texture(1024, seed=seed + 1)
    e1, e2 = np.array([1.0, 0, 0]), np.array([0, 1.0, 0])
    half = 0.3 * fg_depth * W / (2 * f)                    # the square spans ~30 % of the width

    def render(R, t):
        bg, zb = nps.render_plane(K, R, t, (H, W), np.array([0, 0, bg_depth]), e1, e2, tex_bg,
                                  bg_depth / f * 0.8)
        fg, zf = nps.render_plane(K, R, t, (H, W), np.array([0, 0, fg_depth]), e1, e2, tex_fg,
                                  fg_depth / f * 0.8)
        rr, cc = np.mgrid[0:H, 0:W].astype(np.float64)
        rays = R.T @ np.linalg.inv(K) @ np.stack([cc.ravel() + 0.5, rr.ravel() + 0.5, np.ones(H * W)])
        o = -R.T @ t
        X = o[:, None] + (fg_depth - o[2]) / rays[2] * rays         # on the plane z = fg_depth
        inside = ((np.abs(X[0]) < half) & (np.abs(X[1]) < half)).reshape(H, W)
        return np.where(inside, fg, bg), np.where(inside, zf, zb)

    ref, gt = render(np.eye(3), np.zeros(3))
    rng = np.random.default_rng(seed)
    Rs, ts, srcs = [], [], []
    for i in range(n_src):
        cx = (-1) ** i * 0.12 * (1 + i // 2) + rng.uniform(-0.02, 0.02)
        t = -np.array([cx, rng.uniform(-0.03, 0.03), 0.0])
        img, _ = render(np.eye(3), t)
        Rs.append(np.eye(3))
        ts.append(t)
        srcs.append(img)
    return dict(ref=ref, sources=srcs, K_ref=K, K_sources=[K] * n_src, R=Rs, t=ts,
                depth_range=(fg_depth / 1.5, bg_depth * 1.5), gt=gt)


def test_shiftable_windows_reduce_fattening():
    sc = _two_planes()
    gt = sc["gt"]
    plain, _ = plane_sweep(*_args(sc), n_planes=64, shift=0, smooth=0, n_threads=2)
    shifted, _ = plane_sweep(*_args(sc), n_planes=64, smooth=0, n_threads=2)   # shift = 3
    from scipy.ndimage import minimum_filter
    # background pixels within 2 px of the foreground silhouette
    band = (gt > 4.0) & (minimum_filter(gt, 5) < 3.0)
    band[:4], band[-4:], band[:, :4], band[:, -4:] = False, False, False, False

    def fattened(d):
        return float(np.mean(d[band] < 0.9 * gt[band]))

    assert fattened(plain) > 0.25                 # the centred window paints the foreground
    assert fattened(shifted) < 0.3 * fattened(plain)
    # away from the edge the two agree (the centred winner is kept; float32 running sums
    # start at other rows, hence not bit-identical)
    inner = minimum_filter(np.abs(gt - gt[0, 0]) < 1e-6, 15) | minimum_filter(gt < 3.0, 15)
    inner[:8], inner[-8:], inner[:, :8], inner[:, -8:] = False, False, False, False
    ok = inner & (plain > 0) & (shifted > 0)
    assert np.mean(np.isclose(plain[ok], shifted[ok], rtol=1e-4)) > 0.95


def test_smoothing_lowers_noise_and_keeps_edges():
    from mannequin.stereo.kernels.finalize import smooth_inverse
    rng = np.random.default_rng(0)
    H, W = 60, 80
    gt = np.where(np.arange(W)[None, :] < 40, 2.0, 4.0) * np.ones((H, 1))
    noisy = (gt * (1 + 0.005 * rng.standard_normal((H, W)))).astype(np.float32)
    noisy[10:14, 10:14] = 0                        # holes stay holes
    out = np.empty_like(noisy)
    smooth_inverse(noisy, 7, np.float32(0.05), out)
    assert (out[10:14, 10:14] == 0).all()
    valid = noisy > 0
    err_in = np.abs(noisy - gt)[valid].mean()
    err_out = np.abs(out - gt)[valid].mean()
    assert err_out < 0.4 * err_in
    # no blending across the edge: columns next to it stay on their own side
    assert np.abs(out[:, 37:40] - 2.0).max() < 0.05 and np.abs(out[:, 40:43] - 4.0).max() < 0.1
    # through plane_sweep: on by default, and it lowers the error on a plane
    sc = nps.plane_scene(96, 128, n_src=3, slant_deg=20.0, seed=6)
    d0, _ = plane_sweep(*_args(sc), n_planes=48, smooth=0, n_threads=2)
    d1, _ = plane_sweep(*_args(sc), n_planes=48, n_threads=2)
    assert _rel_err(d1, sc["gt"], 8)[0] < _rel_err(d0, sc["gt"], 8)[0]


def test_threads_give_identical_results(fronto):
    a = plane_sweep(*_args(fronto), n_planes=16, n_threads=1)
    b = plane_sweep(*_args(fronto), n_planes=16, n_threads=2)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])


def test_small_baseline_source_gets_no_vote(fronto):
    sc = dict(fronto)
    # a fourth "source" at the reference pose (zero baseline) showing a different image
    rng = np.random.default_rng(0)
    junk = rng.integers(0, 255, fronto["ref"].shape).astype(np.uint8)
    sc["sources"] = list(fronto["sources"]) + [junk]
    sc["K_sources"] = list(fronto["K_sources"]) + [fronto["K_ref"]]
    sc["R"] = list(fronto["R"]) + [np.eye(3)]
    sc["t"] = list(fronto["t"]) + [np.array([1e-4, 0, 0])]
    with_junk, _ = plane_sweep(*_args(sc), n_planes=24, n_threads=2)
    without, _ = plane_sweep(*_args(fronto), n_planes=24, n_threads=2)
    np.testing.assert_array_equal(with_junk, without)
    # only tiny baselines: nothing to estimate
    only, conf = plane_sweep(fronto["ref"], [junk], fronto["K_ref"], [fronto["K_ref"]], [np.eye(3)],
                             [np.zeros(3)], (1.0, 10.0), 8)
    assert not only.any() and not conf.any()


def test_flat_reference_has_no_estimate(fronto):
    ref = fronto["ref"].copy()
    ref[40:80, 60:100] = 128
    depth, conf = plane_sweep(ref, *_args(fronto)[1:], n_planes=16, n_threads=2)
    assert not depth[50:70, 70:90].any()
    assert not conf[50:70, 70:90].any()
    assert (depth[10:30, 10:50] > 0).all()


def test_no_cost_volume_is_allocated():
    sc = nps.plane_scene(120, 160, n_src=3, seed=5)
    H, W = sc["ref"].shape
    plane_sweep(*_args(sc), n_planes=4)               # compile / load outside the trace
    peaks = {}
    for P in (8, 256):
        tracemalloc.start()
        plane_sweep(*_args(sc), n_planes=P)
        peaks[P] = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    hw4 = H * W * 4
    # inputs: 4 float images; state/outputs/stats: a few dozen H×W float32 planes at most
    assert peaks[256] < 40 * hw4
    # independent of the plane count, apart from the (P, S, 3, 3) float64 homographies
    assert peaks[256] < peaks[8] + 0.25 * hw4 + 256 * 3 * (72 + 8)
    assert peaks[256] < 0.2 * 256 * hw4               # far below one cost volume


def _good():
    K = np.array([[100.0, 0, 32], [0, 100.0, 24], [0, 0, 1]])
    ref = np.zeros((48, 64), np.uint8)
    return dict(ref=ref, sources=[ref], K_ref=K, K_sources=[K], R=[np.eye(3)],
                t=[np.array([0.1, 0, 0])], depth_range=(1.0, 5.0))


@pytest.mark.parametrize("change, word", [
    (dict(ref=np.zeros((48, 64, 4))), "ref"),
    (dict(ref=np.zeros((1, 64))), "ref"),
    (dict(ref=np.zeros((48, 64), bool)), "ref"),
    (dict(ref=np.full((48, 64), np.nan)), "ref"),
    (dict(sources=[]), "sources"),
    (dict(sources=np.zeros((48, 64))), "sources"),
    (dict(sources=[np.zeros((48, 64, 2))]), r"sources\[0\]"),
    (dict(K_ref=np.eye(2)), "K_ref"),
    (dict(K_ref=np.diag([-1.0, 1, 1])), "K_ref"),
    (dict(K_sources=[np.eye(3), np.eye(3)]), "K_sources"),
    (dict(K_sources=[np.full((3, 3), np.inf)]), r"K_sources\[0\]"),
    (dict(R=[np.eye(3) * 2]), r"R\[0\]"),
    (dict(R=[]), "R"),
    (dict(t=[np.zeros(2)]), r"t\[0\]"),
    (dict(t=[np.array([np.nan, 0, 0])]), r"t\[0\]"),
    (dict(depth_range=(5.0, 1.0)), "depth_range"),
    (dict(depth_range=(0.0, 1.0)), "depth_range"),
    (dict(depth_range=(1.0, np.inf)), "depth_range"),
    (dict(depth_range=3.0), "depth_range"),
    (dict(n_planes=1), "n_planes"),
    (dict(n_planes=2.5), "n_planes"),
    (dict(window=4), "window"),
    (dict(window=1), "window"),
    (dict(top_k=0), "top_k"),
    (dict(shift=4), "shift"),
    (dict(shift=-1), "shift"),
    (dict(smooth=-1), "smooth"),
    (dict(min_angle_deg=-1), "min_angle_deg"),
    (dict(n_threads=0), "n_threads"),
])
def test_invalid_inputs_raise(change, word):
    kw = _good()
    kw.update(change)
    extra = {k: kw.pop(k) for k in ("n_planes", "window", "top_k", "min_angle_deg", "n_threads",
                                    "shift", "smooth") if k in kw}
    with pytest.raises(ValueError, match=word):
        plane_sweep(kw["ref"], kw["sources"], kw["K_ref"], kw["K_sources"], kw["R"], kw["t"],
                    kw["depth_range"], **extra)


def test_geometry_helpers():
    from mannequin.stereo.sweep import plane_homographies, triangulation_angles
    K = np.array([[200.0, 0, 80], [0, 200.0, 60], [0, 0, 1]])
    R = np.eye(3)
    t = np.array([-0.5, 0.0, 0.0])
    Hs = plane_homographies(K, [K], [R], [t], np.array([1 / 4.0]))
    # pixel index (c, r) = (10, 20): centre (10.5, 20.5); depth 4 -> disparity f*b/z = 25 px
    q = Hs[0, 0] @ np.array([10.0, 20.0, 1.0])
    np.testing.assert_allclose(q[:2] / q[2], [10.0 - 25.0, 20.0], atol=1e-9)
    ang = triangulation_angles([R], [t], 4.0)[0]
    assert math.isclose(ang, math.degrees(math.atan(0.5 / 4.0)), rel_tol=1e-9)
    # sideways motion: the same angle everywhere at this depth
    grid = triangulation_angles([R], [t], 4.0, K, (120, 160))[0]
    assert 0.9 * ang < grid < 1.1 * ang
    # moving along the axis: no parallax at the epipole only, so the source keeps its vote
    fwd = np.array([0.0, 0.0, -0.5])
    assert triangulation_angles([R], [fwd], 4.0)[0] < 1e-9
    assert triangulation_angles([R], [fwd], 4.0, K, (120, 160))[0] > 1.0


@pytest.mark.parametrize("W", [1, 2, 5, 11, 12, 40, 64, 67, 300, 1000])
@pytest.mark.parametrize("h", [1, 3, 5, 10])
def test_horizontal_box_sums_are_exact_box_sums(W, h):
    """The horizontal box sums (sweep._hbox, one row: direct sums up to h = 3, then a running sum
    in four chains; sweep._hbox3, three rows in running sums) equal float64 box sums with
    replicated edges, at every column: rows shorter than the window, rows of several restart
    blocks (BOX_RUN, 4 * BOX_RUN) and partial blocks."""
    from mannequin.stereo.kernels import fronto as sweep

    rng = np.random.default_rng(W * 31 + h)
    rows = [((rng.random(W) - 0.5) * 7).astype(np.float32) for _ in range(3)]
    idx = np.clip(np.arange(W)[:, None] + np.arange(-h, h + 1)[None], 0, W - 1)
    want = [r.astype(np.float64)[idx].sum(axis=1) for r in rows]
    one = np.full(W, np.nan, np.float32)
    sweep._hbox(rows[0], one, h)
    three = [np.full(W, np.nan, np.float32) for _ in range(3)]
    sweep._hbox3(*rows, *three, h)
    # float32 running sums restarted every BOX_RUN columns: a few ulps of the window sums
    np.testing.assert_allclose(one, want[0], rtol=0, atol=2e-5)
    for got, ref in zip(three, want, strict=False):
        np.testing.assert_allclose(got, ref, rtol=0, atol=2e-5)


def _rectified_pair(H=64, W=96, seed=11):
    """A textured slanted plane seen by a reference and two x-translated sources (R = I, same K but
    for cx): the plane homographies are pure horizontal shifts."""
    sc = nps.plane_scene(H, W, n_src=2, slant_deg=20.0, seed=seed)
    K = sc["K_ref"]
    tex = nps.make_texture(1024, seed=seed)
    f = K[0, 0]
    Ks, ts, srcs = [], [], []
    for _i, (b, dcx) in enumerate(((-0.21, 0.0), (0.17, 3.3))):
        Kc = K.copy()
        Kc[0, 2] += dcx
        t = np.array([b, 0.0, 0.0])
        img, _ = nps.render_plane(Kc, np.eye(3), t, (H, W), np.array([0, 0, 4.0]),
                                  np.array([1.0, 0, 0]), np.array([0, 1.0, 0]), tex, 4.0 / f * 0.8)
        Ks.append(Kc)
        ts.append(t)
        srcs.append(img.astype(np.float32))
    ref, _ = nps.render_plane(K, np.eye(3), np.zeros(3), (H, W), np.array([0, 0, 4.0]),
                              np.array([1.0, 0, 0]), np.array([0, 1.0, 0]), tex, 4.0 / f * 0.8)
    return dict(ref=ref.astype(np.float32), sources=srcs, K_ref=K, K_sources=Ks,
                R=[np.eye(3)] * 2, t=ts, depth_range=(2.5, 7.0))


@pytest.mark.parametrize("top_k, shift", [(1, 0), (2, 3), (1, 2)])
def test_rectified_fast_path_equals_general_path(monkeypatch, top_k, shift):
    """Pure x-shift homographies take the 1-D warp; it must give the bilinear path's result."""
    from mannequin.stereo.sweep import plane_homographies, shift_only_sources

    sc = _rectified_pair()
    inv_d = np.linspace(1 / 2.5, 1 / 7.0, 8)
    homs = plane_homographies(sc["K_ref"], sc["K_sources"], sc["R"], sc["t"], inv_d)
    assert shift_only_sources(homs).tolist() == [1, 1]
    # not a pure shift: a rotation, a y translation, another focal length
    R = np.array([[1.0, 0, 0], [0, math.cos(0.01), -math.sin(0.01)], [0, math.sin(0.01), math.cos(0.01)]])
    K2 = sc["K_ref"].copy()
    K2[0, 0] *= 1.01
    other = plane_homographies(sc["K_ref"], [sc["K_ref"], sc["K_ref"], K2],
                               [R, np.eye(3), np.eye(3)],
                               [np.array([0.2, 0, 0]), np.array([0.2, 0.01, 0]), np.array([0.2, 0, 0])], inv_d)
    assert shift_only_sources(other).tolist() == [0, 0, 0]

    kw = dict(n_planes=48, top_k=top_k, shift=shift, smooth=0, n_threads=2, return_cost=True)
    _fast_equals_general(monkeypatch, sc, kw)


def _fast_equals_general(monkeypatch, sc, kw):
    """The rectified path (1-D warp) gives the bilinear path's result."""
    import mannequin.stereo.sweep as sc_mod

    fast = plane_sweep(*_args(sc), **kw)
    monkeypatch.setattr(sc_mod, "shift_only_sources", lambda h: np.zeros(h.shape[1], np.uint8))
    slow = plane_sweep(*_args(sc), **kw)
    both = (fast[0] > 0) & (slow[0] > 0)
    assert np.array_equal(fast[0] > 0, slow[0] > 0)
    assert both.mean() > 0.9
    assert np.isclose(fast[0], slow[0], rtol=1e-4)[both].mean() > 0.995
    dc = np.abs(fast[2] - slow[2])[both]
    assert np.median(dc) < 1e-5 and np.percentile(dc, 99) < 1e-3


@pytest.mark.parametrize("window, shift, W", [(7, 3, 96), (5, 0, 96), (9, 2, 7)])
def test_rectified_integer_disparities_equal_general_path(monkeypatch, window, shift, W):
    """Two-view rectified set-up as on Middlebury (R = I, t = (-B,0,0), source cx + doffs) with
    planes at integer disparities (integer shifts: interpolation weight 0), including an image
    narrower than the window (only edge columns)."""
    from mannequin.stereo.sweep import plane_homographies

    H, f, B, doffs = 40, 80.0, 0.25, 3.0
    sc = nps.plane_scene(H, W, n_src=1, slant_deg=0.0, seed=12)
    K = np.array([[f, 0, W / 2], [0, f, H / 2], [0, 0, 1.0]])
    Ks = K.copy()
    Ks[0, 2] += doffs
    tex = nps.make_texture(1024, seed=12)
    kw_r = dict(e1=np.array([1.0, 0, 0]), e2=np.array([0, 1.0, 0]), tex=tex, scale=4.0 / f * 0.8)

    def render(Kc, t):
        img, _ = nps.render_plane(Kc, np.eye(3), t, (H, W), np.array([0, 0, 4.0]), kw_r["e1"],
                                  kw_r["e2"], kw_r["tex"], kw_r["scale"])
        return img.astype(np.float32)

    t = np.array([-B, 0.0, 0.0])
    sc.update(ref=render(K, np.zeros(3)), sources=[render(Ks, t)], K_ref=K, K_sources=[Ks], R=[np.eye(3)],
              t=[t], depth_range=(f * B / 12.0, f * B / 1.0))       # disparities 1 .. 12 px
    n_planes = 12
    homs = plane_homographies(K, [Ks], [np.eye(3)], [t],
                              np.linspace(1 / sc["depth_range"][0], 1 / sc["depth_range"][1], n_planes))
    a = homs[:, 0, 0, 2]
    assert np.allclose(a, np.round(a), atol=1e-9)
    kw = dict(n_planes=n_planes, window=window, top_k=1, shift=shift, smooth=0, n_threads=2,
              return_cost=True, min_angle_deg=0.0)
    import mannequin.stereo.sweep as sc_mod

    assert sc_mod.shift_only_sources(homs).tolist() == [1]
    if window < W:
        _fast_equals_general(monkeypatch, sc, kw)
        return
    # too narrow for a meaningful depth: compare the costs only
    fast = plane_sweep(*_args(sc), **kw)
    monkeypatch.setattr(sc_mod, "shift_only_sources", lambda h: np.zeros(h.shape[1], np.uint8))
    slow = plane_sweep(*_args(sc), **kw)
    assert np.array_equal(np.isnan(fast[2]), np.isnan(slow[2]))
    ok = ~np.isnan(fast[2])
    assert np.abs(fast[2] - slow[2])[ok].max() < 1e-3


@pytest.mark.parametrize("slant", [60, 75])
def test_sweep_along_the_planes_of_a_slanted_surface(slant):
    """plane_sweep(normal=n) sweeps planes n·X = d: on a surface at a grazing angle it is several
    times more accurate than the fronto-parallel sweep; rays that meet the planes at n·r <= 0.05
    get no estimate.  The same scene transposed (x <-> y) takes the row-crop path and agrees."""
    sc = nps.plane_scene(120, 160, n_src=4, slant_deg=slant, seed=3, uint8=True)
    th = math.radians(slant)
    n = np.array([-math.sin(th), 0.0, math.cos(th)])  # the plane's normal; it passes through (0, 0, 4)
    offsets = (0.6 * 4.0 * math.cos(th), 1.4 * 4.0 * math.cos(th))
    args = (sc["ref"], sc["sources"], sc["K_ref"], sc["K_sources"], sc["R"], sc["t"])
    fronto, _ = plane_sweep(*args, sc["depth_range"], n_planes=96)
    along, conf = plane_sweep(*args, offsets, n_planes=96, normal=n)
    e_f, _ = _rel_err(fronto, sc["gt"])
    e_g, valid = _rel_err(along, sc["gt"])
    assert e_g < 0.002 and e_g < e_f / 3, (e_g, e_f)
    assert valid > 0.6 and np.all(conf[along == 0] == 0)
    from mannequin.stereo.sweep import ray_normal_cos

    assert np.all(along[ray_normal_cos(sc["K_ref"], along.shape, n) <= 0.05] == 0)
    P = np.array([[0.0, 1, 0], [1, 0, 0], [0, 0, 1]])  # swap x and y: a rotation conjugated by P
    KT = P @ sc["K_ref"] @ P
    argsT = (sc["ref"].T.copy(), [s.T.copy() for s in sc["sources"]], KT, [KT] * 4,
             [P @ R @ P for R in sc["R"]], [P @ t for t in sc["t"]])
    alongT, _ = plane_sweep(*argsT, offsets, n_planes=96, normal=P @ n)
    e_t, valid_t = _rel_err(alongT, sc["gt"].T)
    assert abs(e_t - e_g) < 2e-4 and abs(valid_t - valid) < 0.01
    with pytest.raises(ValueError, match="normal"):
        plane_sweep(*args, offsets, normal=[0, 0, 0])
