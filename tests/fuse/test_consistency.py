"""Multi-view geometric consistency on analytic scenes (planes, exact depths by ray casting)."""
import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from mannequin.fuse.cleanup import erode_depth_edges, free_space_mask, moving_mask, remove_speckles
from mannequin.fuse.consistency import (
    check_geometric_consistency,
    consistency_votes,
    depth_noise,
    depth_to_points,
    filter_depth,
    reproject,
)
from mannequin.io.cameras import Intrinsics, Pose

W, H = 160, 120
K = np.array([[120.0, 0, 80.0], [0, 120.0, 60.0], [0, 0, 1]])
# world planes n·X = h: a back wall (z = 6) and a floor (y = 1.2, y points down)
PLANES = [(np.array([0.0, 0.0, 1.0]), 6.0), (np.array([0.0, 1.0, 0.0]), 1.2),
          (np.array([0.3, 0.0, 1.0]) / np.linalg.norm([0.3, 0.0, 1.0]), 5.0)]


def make_E(center, rotvec_deg):
    R_c2w = Rotation.from_rotvec(np.radians(rotvec_deg)).as_matrix()
    return Pose.from_cam_to_world(R_c2w, center).matrix


def render(E, K=K, w=W, h=H):
    """Exact camera-z depth of the plane scene (nearest positive hit), float64 (h, w)."""
    R, t = E[:3, :3], E[:3, 3]
    C = -R.T @ t
    rows, cols = np.mgrid[0:h, 0:w]
    pix = np.stack([cols + 0.5, rows + 0.5, np.ones_like(cols, dtype=float)], -1)
    dirs = pix @ np.linalg.inv(K).T @ R      # world direction per unit camera z: R^T K^-1 p
    depth = np.full((h, w), np.inf)
    for n, d in PLANES:
        den = dirs @ n
        with np.errstate(divide="ignore", invalid="ignore"):
            lam = (d - n @ C) / den
        depth = np.where((lam > 1e-6) & (lam < depth), lam, depth)
    return np.where(np.isfinite(depth), depth, 0.0)


CAMS = [make_E([0, 0, 0], [0, 0, 0]), make_E([0.3, 0.05, 0.1], [1, -3, 0.5]),
        make_E([-0.3, -0.05, -0.05], [-1, 3, 0]), make_E([0.1, -0.2, 0.2], [2, 1, -1]),
        make_E([-0.15, 0.15, -0.1], [-2, -2, 1])]
DEPTHS = [render(E) for E in CAMS]


def neighbours(depths, idx):
    return [(depths[i], K, CAMS[i]) for i in idx]


def test_identity_reprojection_hits_pixel_centres():
    d = DEPTHS[0]
    dr, xr, yr, xs, ys = reproject(d, K, CAMS[0], d, K, CAMS[0])
    rows, cols = np.mgrid[0:H, 0:W]
    assert np.allclose(xs, cols + 0.5, atol=1e-3) and np.allclose(ys, rows + 0.5, atol=1e-3)
    assert np.allclose(xr, cols + 0.5, atol=1e-3) and np.allclose(yr, rows + 0.5, atol=1e-3)
    assert np.allclose(dr, d, rtol=1e-5)


def test_exact_depths_are_consistent():
    for j in (1, 2):
        mask, dr, rel, rep = check_geometric_consistency(DEPTHS[0], K, CAMS[0], DEPTHS[j], K, CAMS[j])
        overlap = dr > 0
        assert overlap.mean() > 0.6
        assert mask[overlap].mean() >= 0.99
        assert np.nanmax(rep[mask]) < 1.5 and np.nanmax(rel[mask]) < 0.01
        assert mask.dtype == bool and dr.dtype == np.float32
        assert np.isnan(rel[~overlap]).all()


def test_perturbed_depth_fails():
    mask, dr, rel, _ = check_geometric_consistency(DEPTHS[0] * 1.03, K, CAMS[0], DEPTHS[1], K, CAMS[1])
    overlap = dr > 0
    assert overlap.mean() > 0.6
    assert mask[overlap].mean() < 0.01


def test_reproject_invalid_and_outside():
    d = DEPTHS[0].copy()
    d[:5] = 0
    d[5, 5] = np.nan
    dr, xr, yr, xs, ys = reproject(d, K, CAMS[0], DEPTHS[1], K, CAMS[1])
    assert (dr[:5] == 0).all() and dr[5, 5] == 0 and np.isnan(xr[:5]).all() and np.isnan(xs[:5]).all()
    # camera 1 sits to the right: the ref's left columns project outside the source image
    out = xs < 0
    assert out.any() and (dr[out] == 0).all() and np.isnan(xr[out]).all()


def test_accepts_pose_and_intrinsics_and_size_mismatch():
    intr = Intrinsics(120.0, 120.0, 80.0, 60.0, W, H)
    m1 = check_geometric_consistency(DEPTHS[0], intr, Pose.from_matrix(CAMS[0]), DEPTHS[1], K, CAMS[1])[0]
    m2 = check_geometric_consistency(DEPTHS[0], K, CAMS[0], DEPTHS[1], K, CAMS[1][:3])[0]
    assert (m1 == m2).all()
    # a half-size source with its scaled intrinsics
    Ks = intr.scaled(W // 2, H // 2).K
    ds = render(CAMS[1], Ks, W // 2, H // 2)
    mask, dr, _, _ = check_geometric_consistency(DEPTHS[0], K, CAMS[0], ds, Ks, CAMS[1], max_reproj_px=3)
    assert mask[dr > 0].mean() > 0.97


@pytest.mark.parametrize("bad", [
    lambda: reproject(np.ones(5), K, np.eye(4), np.ones((4, 4)), K, np.eye(4)),
    lambda: reproject(np.ones((4, 4)), np.eye(4), np.eye(4), np.ones((4, 4)), K, np.eye(4)),
    lambda: reproject(np.ones((4, 4)), K, np.eye(3), np.ones((4, 4)), K, np.eye(4)),
    lambda: check_geometric_consistency(np.ones((4, 4)), K, np.eye(4), np.ones((4, 4)), K, np.eye(4),
                                        max_rel_depth=0),
    lambda: filter_depth(np.ones((4, 4)), K, np.eye(4), [(np.ones((4, 4)), K)]),
    lambda: filter_depth(np.ones((4, 4)), K, np.eye(4), [], min_views=-1),
    lambda: moving_mask(np.zeros((2, 2)), np.zeros((2, 3))),
    lambda: moving_mask(np.zeros((2, 2)), np.zeros((2, 2)), window_px=4),
    lambda: moving_mask(np.zeros((2, 2)), np.zeros((2, 2)), min_share=0),
    lambda: consistency_votes(np.ones((4, 4)), K, np.eye(4), [], motion_rel=-1),
])
def test_bad_inputs_raise(bad):
    with pytest.raises(ValueError):
        bad()


def test_filter_exact_keeps_overlap():
    filt, n_agree, n_dis = filter_depth(DEPTHS[0], K, CAMS[0], neighbours(DEPTHS, [1, 2, 3, 4]))
    assert filt.dtype == np.float32 and filt.shape == (H, W)
    seen = (n_agree + n_dis) >= 2
    assert (filt[seen] > 0).mean() > 0.98
    kept = filt > 0
    err = np.abs(filt[kept] / DEPTHS[0][kept] - 1)    # bilinear across the floor/wall crease: < 1%
    assert err.max() < 0.01 and np.mean(err < 1e-3) > 0.98
    assert n_dis.sum() < 0.01 * (n_agree.sum())


def test_moving_blob_disagrees_and_is_dynamic():
    ref = DEPTHS[0].copy()
    blob = np.zeros((H, W), bool)
    blob[50:62, 70:82] = True
    ref[blob] *= 0.7                     # a "person" 30% closer in the reference only
    nbs = neighbours(DEPTHS, [1, 2, 3, 4])
    filt, n_agree, n_dis = filter_depth(ref, K, CAMS[0], nbs)
    assert (filt[blob] == 0).all()
    assert (n_dis[blob] >= 3).all()
    # seen from the sources, the background lies behind the blob: free-space violations
    v = consistency_votes(ref, K, CAMS[0], nbs)
    assert (v.n_behind[blob] >= 3).all()
    assert (v.n_disagree == n_dis).all() and (v.n_agree == n_agree).all()


def test_moving_mask_needs_own_frame_support_and_a_region():
    agree = np.full((20, 20), 3)
    moved = np.zeros((20, 20), int)
    moved[5:15, 5:15] = 2                       # a region contradicted by 2 sources
    moved[0, 19] = 5                            # one scattered pixel
    dyn = moving_mask(agree, moved, window_px=5)
    assert dyn[6:14, 6:14].all() and not dyn[0, 19] and dyn.sum() < 120
    assert not moving_mask(agree, np.where(moved > 0, 1, 0), window_px=5).any()   # min_moved 2
    assert moving_mask(agree, np.where(moved > 0, 1, 0), window_px=5, min_moved=1)[8, 8]
    assert not moving_mask(np.ones((20, 20), int), moved, window_px=5).any()       # no label support


def test_average_reduces_noise():
    rng = np.random.default_rng(0)
    noisy = [d * (1 + 0.005 * rng.standard_normal(d.shape)) for d in DEPTHS]
    filt, n_agree, _ = filter_depth(noisy[0], K, CAMS[0], neighbours(noisy, [1, 2, 3, 4]),
                                    max_rel_depth=0.03, min_views=2, average=True)
    kept = filt > 0
    assert kept.mean() > 0.5
    err_in = np.abs(noisy[0][kept] / DEPTHS[0][kept] - 1).mean()
    err_out = np.abs(filt[kept] / DEPTHS[0][kept] - 1).mean()
    assert err_out < 0.7 * err_in
    plain, _, _ = filter_depth(noisy[0], K, CAMS[0], neighbours(noisy, [1, 2, 3, 4]),
                               max_rel_depth=0.03, average=False)
    assert np.array_equal(plain[kept], noisy[0][kept].astype(np.float32))


def test_remove_speckles():
    d = np.full((40, 50), 5.0, np.float32)
    d[:, 25:] += np.linspace(0, 0.5, 25, dtype=np.float32)          # a smooth slope: one region
    d[10:12, 10:15] = 2.0            # a 10-pixel blob in front of the wall (touching it)
    d[30:32, 40:45] = 0              # hole ...
    d[30, 41:43] = 9.0               # ... holding a 2-pixel blob
    d[0, 0] = np.nan
    out = remove_speckles(d, max_size_px=20)
    assert out.dtype == np.float32
    assert (out[10:12, 10:15] == 0).all() and (out[30, 41:43] == 0).all()
    assert out[0, 0] == 0
    keep = np.isfinite(d) & (d > 0) & (d != 2.0) & (d != 9.0)
    assert np.array_equal(out[keep], d[keep])
    # a blob joined to the wall by a smooth depth ramp is not a speckle
    assert (remove_speckles(DEPTHS[0], 50) == DEPTHS[0]).all()
    # without the depth test (huge max_diff_rel) the touching blob belongs to the wall
    assert (remove_speckles(d, 20, max_diff_rel=10.0)[10:12, 10:15] == 2.0).all()


def test_depth_to_points_round_trip():
    E = CAMS[3]
    d = DEPTHS[3].copy()
    d[::7, ::5] = 0
    colors = np.random.default_rng(1).integers(0, 255, (H, W, 3), dtype=np.uint8)
    pts, col = depth_to_points(d, K, E, colors)
    valid = d > 0
    assert pts.shape == (valid.sum(), 3) and col.shape == (valid.sum(), 3) and col.dtype == np.uint8
    Xc = pts @ E[:3, :3].T + E[:3, 3]
    uv = Xc @ K.T
    uv = uv[:, :2] / uv[:, 2:]
    rows, cols = np.nonzero(valid)
    assert np.allclose(uv[:, 0], cols + 0.5, atol=1e-6) and np.allclose(uv[:, 1], rows + 0.5, atol=1e-6)
    assert np.allclose(Xc[:, 2], d[valid], rtol=1e-6)
    assert np.array_equal(col, colors[valid])
    # points of an exact depth lie on the scene planes
    on_plane = np.min([np.abs(pts @ n - h) for n, h in PLANES], axis=0)
    assert on_plane.max() < 1e-4


def test_votes_split_occlusion_from_free_space():
    ref = DEPTHS[0].copy()
    blob = np.zeros((H, W), bool)
    blob[50:62, 70:82] = True
    ref[blob] *= 1.3                     # the reference claims a surface *behind* the sources' view
    v = consistency_votes(ref, K, CAMS[0], neighbours(DEPTHS, [1, 2, 3, 4]))
    assert (v.n_front[blob] >= 3).all() and (v.n_behind[blob] == 0).all()
    total = v.n_agree + v.n_disagree + v.n_no_src + v.n_outside
    assert (total[ref > 0] == 4).all()


def test_erode_depth_edges_drops_the_near_side_only():
    d = np.full((40, 50), 5.0, np.float32)
    d[10:30, 15:35] = 2.0                      # a foreground square
    d[0, 0] = np.nan                           # invalid stays invalid
    d[35:38, 40:43] = 0.0                      # a hole is no depth edge
    out = erode_depth_edges(d, 2)
    assert out.dtype == np.float32 and out[0, 0] == 0
    fg = np.zeros(d.shape, bool)
    fg[10:30, 15:35] = True
    inner = np.zeros(d.shape, bool)
    inner[12:28, 17:33] = True
    assert (out[inner] == 2.0).all()           # the square loses a 2-px rim ...
    assert (out[fg & ~inner] == 0).all()
    bg = ~fg & np.isfinite(d) & (d > 0)
    assert np.array_equal(out[bg], d[bg])      # ... the background (far side) loses nothing
    assert np.array_equal(out[34:39, 39:44], d[34:39, 39:44])
    # small relative steps (slanted surfaces) are no edges; radius 0 only cleans
    ramp = np.tile(np.linspace(3.0, 3.3, 50, dtype=np.float32), (10, 1))
    assert np.array_equal(erode_depth_edges(ramp, 3), ramp)
    assert np.array_equal(erode_depth_edges(d, 0), np.nan_to_num(d, nan=0.0))
    with pytest.raises(ValueError):
        erode_depth_edges(d, -1)
    with pytest.raises(ValueError):
        erode_depth_edges(d, 2, max_rel=0.0)


def test_free_space_mask():
    ref = DEPTHS[0].copy()
    blob = np.zeros((H, W), bool)
    blob[50:62, 70:82] = True
    ref[blob] *= 0.8                     # a phantom surface in front: the sources see through it
    v = consistency_votes(ref, K, CAMS[0], neighbours(DEPTHS, [1, 2, 3, 4]))
    bad = free_space_mask(v)
    assert bad[blob].all()
    assert not bad[~blob & (ref > 0) & (v.n_agree >= 2)].any()
    # tolerated while enough sources agree: n_behind <= max_frac * n_agree
    assert not free_space_mask(v, max_frac=10.0)[(v.n_agree >= 1)].any()
    with pytest.raises(ValueError):
        free_space_mask(v, -1.0)


def test_noise_band_turns_small_disagreements_into_no_evidence():
    """Noisy maps (TUM-like, a few % between frames): a source a little behind is noise, not a
    free-space violation; one far behind still is."""
    rng = np.random.default_rng(3)
    noisy = [d * (1 + 0.03 * rng.standard_normal(d.shape)) for d in DEPTHS]
    ref = noisy[0].copy()
    blob = np.zeros((H, W), bool)
    blob[50:62, 70:82] = True
    ref[blob] *= 0.6                     # a phantom surface well in front: the sources see through it
    nbs = neighbours(noisy, [1, 2, 3, 4])
    plain = consistency_votes(ref, K, CAMS[0], nbs, max_rel_depth=0.015)
    banded = consistency_votes(ref, K, CAMS[0], nbs, max_rel_depth=0.015, noise_rel=0.1)
    assert (plain.n_near == 0).all()     # no band, no near votes: the votes of before
    assert (banded.n_agree == plain.n_agree).all() and (banded.n_disagree == plain.n_disagree).all()
    assert banded.n_near.sum() > 0 and (banded.n_behind <= plain.n_behind).all()
    ok = (ref > 0) & ~blob
    assert banded.n_behind[ok].mean() < 0.2 * plain.n_behind[ok].mean()
    assert (banded.n_behind[blob] >= 3).all()
    assert free_space_mask(banded)[blob].all()
    assert free_space_mask(banded)[ok].mean() < 0.5 * free_space_mask(plain)[ok].mean()
    with pytest.raises(ValueError):
        consistency_votes(ref, K, CAMS[0], nbs, noise_rel=-0.1)


def test_depth_noise_measures_the_disagreement_between_frames():
    assert depth_noise([(DEPTHS[0], K, CAMS[0], DEPTHS[1], K, CAMS[1])]) < 1e-3
    off = depth_noise([(DEPTHS[0], K, CAMS[0], DEPTHS[j] * 1.04, K, CAMS[j]) for j in (1, 2)])
    assert off == pytest.approx(0.04, rel=0.05)
    rng = np.random.default_rng(0)
    noisy = [d * (1 + 0.02 * rng.standard_normal(d.shape)) for d in DEPTHS]
    # the median |difference| of two maps with 2% noise each: 0.6745 * sqrt(2) * 2% ≈ 1.9%
    assert depth_noise([(noisy[0], K, CAMS[0], noisy[j], K, CAMS[j]) for j in (1, 2, 3)]) == pytest.approx(0.019, rel=0.2)
    assert np.isnan(depth_noise([]))
    with pytest.raises(ValueError):
        depth_noise([(DEPTHS[0], K, CAMS[0])])


def render_person(E, x_shift):
    """The plane scene with a "person": a rectangle facing the cameras at z = 3, x in
    [-0.4, 0.2] + x_shift, y in [-0.6, 0.6] (world metres); depth (H, W) float64."""
    depth = render(E)
    R, t = E[:3, :3], E[:3, 3]
    C = -R.T @ t
    rows, cols = np.mgrid[0:H, 0:W]
    dirs = np.stack([cols + 0.5, rows + 0.5, np.ones((H, W))], -1) @ np.linalg.inv(K).T @ R
    lam = (3.0 - C[2]) / dirs[..., 2]
    X = C + lam[..., None] * dirs
    hit = (lam > 0) & (X[..., 0] >= -0.4 + x_shift) & (X[..., 0] <= 0.2 + x_shift) & (np.abs(X[..., 1]) <= 0.6)
    return np.where(hit & (lam < depth), lam, depth)


@pytest.mark.parametrize("moves", [True, False])
def test_moved_person_is_marked_and_a_still_one_is_not(moves):
    # the person stands still for the reference and sources 1 and 2, then steps 0.5 m aside
    depths = [render_person(E, 0.5 if moves and i >= 3 else 0.0) for i, E in enumerate(CAMS)]
    person = render_person(CAMS[0], 0.0) < DEPTHS[0] - 1e-6
    v = consistency_votes(depths[0], K, CAMS[0], neighbours(depths, [1, 2, 3, 4]), max_rel_depth=0.01,
                          motion_rel=0.05)
    labelled = v.n_agree >= 2
    assert labelled[person].mean() > 0.9
    dyn = moving_mask(v.n_agree, v.n_moved, window_px=9)
    if moves:
        # a sixth of the rectangle overlaps where it stands later: that part did not move in 3-D
        assert (v.n_moved[person & labelled] >= 2).mean() > 0.8
        assert dyn[person & labelled].mean() > 0.8
        # behind where it stands later, the background is seen in front of by the later views: marked too
        later = render_person(CAMS[0], 0.5) < DEPTHS[0] - 1e-6
        assert dyn[~person & ~later].mean() < 0.01
    else:
        assert (v.n_moved > 0).mean() < 0.01 and not dyn.any()   # a few silhouette pixels, no region
    assert not consistency_votes(depths[0], K, CAMS[0], neighbours(depths, [1, 2, 3, 4])).n_moved.any()
