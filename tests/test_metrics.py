"""Depth and trajectory metrics: hand-computed examples and property tests."""
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.spatial.transform import Rotation

from mannequin.metrics import (
    ate_rmse,
    depth_metrics,
    median_scale,
    rotation_angle_deg,
    rotation_errors_deg,
    umeyama,
)


def test_depth_metrics_hand_computed():
    pred = np.array([[1.0, 2.0], [0.0, 4.0], [np.nan, 3.0]])
    gt = np.array([[1.0, 1.0], [2.0, 4.5], [3.0, 0.0]])
    m = depth_metrics(pred, gt)
    # evaluated pixels: (1 vs 1), (2 vs 1), (4 vs 4.5); gt valid at 5 pixels
    assert m["n"] == 3
    assert m["absrel"] == pytest.approx((0 + 1 + 0.5 / 4.5) / 3)
    assert m["median_relerr"] == pytest.approx(0.5 / 4.5)  # relative errors 0, 1, 0.111
    assert m["rmse"] == pytest.approx(math.sqrt((0 + 1 + 0.25) / 3))
    assert m["delta_1.05"] == pytest.approx(1 / 3)     # ratios 1, 2, 1.125
    assert m["delta_1.25"] == pytest.approx(2 / 3)
    assert m["density"] == pytest.approx(3 / 5)
    for key in ("absrel", "rmse", "delta_1.05", "delta_1.25", "density", "n"):
        assert key in m


def test_depth_metrics_scale_and_mask():
    pred = np.array([[1.0, 2.0], [3.0, 4.0]])
    gt = 2 * pred
    m = depth_metrics(pred, gt, scale=2.0)
    assert m["absrel"] == 0 and m["rmse"] == 0 and m["delta_1.05"] == 1 and m["density"] == 1
    mask = np.array([[True, False], [False, False]])
    m = depth_metrics(pred, gt, mask)
    assert m["n"] == 1 and m["absrel"] == pytest.approx(0.5) and m["rmse"] == pytest.approx(1.0)
    assert m["delta_1.25"] == 0


def test_depth_metrics_empty_and_errors():
    m = depth_metrics(np.zeros((2, 2)), np.ones((2, 2)))
    assert m["n"] == 0 and m["density"] == 0 and math.isnan(m["absrel"])
    with pytest.raises(ValueError):
        depth_metrics(np.ones((2, 2)), np.ones((2, 3)))
    with pytest.raises(ValueError):
        depth_metrics(np.ones((2, 2)), np.ones((2, 2)), np.ones((3, 3), bool))
    with pytest.raises(ValueError):
        depth_metrics(np.ones((2, 2)), np.ones((2, 2)), scale=0)


def test_median_scale_over_all_frames():
    # frame 1 ratios d*/d: 1, 1, 1 ; frame 2 ratios: 4, 4 -> median over all 5 pixels is 1
    p1, g1 = np.array([[1.0, 2.0, 3.0]]), np.array([[1.0, 2.0, 3.0]])
    p2, g2 = np.array([[1.0, 2.0, 0.0]]), np.array([[4.0, 8.0, 5.0]])
    assert median_scale([p1, p2], [g1, g2]) == pytest.approx(1.0)
    assert median_scale(p2, g2) == pytest.approx(4.0)
    masks = [np.array([[False, False, False]]), np.ones((1, 3), bool)]
    assert median_scale([p1, p2], [g1, g2], masks) == pytest.approx(4.0)
    with pytest.raises(ValueError):
        median_scale([np.zeros((2, 2))], [np.ones((2, 2))])
    with pytest.raises(ValueError):
        median_scale([p1, p2], [g1])


def test_median_scale_invariance():
    rng = np.random.default_rng(3)
    gts = [rng.uniform(1, 10, (8, 9)) for _ in range(3)]
    preds = [g * rng.uniform(0.8, 1.2, g.shape) / 3.7 for g in gts]
    s = median_scale(preds, gts)
    assert median_scale([5 * p for p in preds], gts) == pytest.approx(s / 5)
    assert median_scale(preds, [2 * g for g in gts]) == pytest.approx(2 * s)
    # applying the clip scale makes the median ratio 1
    assert median_scale([s * p for p in preds], gts) == pytest.approx(1.0)
    assert depth_metrics(preds[0], gts[0], scale=s)["absrel"] < 0.25


def random_sim3(seed):
    rng = np.random.default_rng(seed)
    R = Rotation.random(random_state=seed).as_matrix()
    return float(rng.uniform(0.05, 20)), R, rng.normal(0, 5, 3), rng


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**31 - 1), st.integers(3, 40))
def test_umeyama_recovers_sim3(seed, n):
    s, R, t, rng = random_sim3(seed)
    X = rng.normal(0, 1, (n, 3))
    if np.linalg.svd(X - X.mean(0), compute_uv=False)[1] < 1e-3:
        return                                   # (nearly) collinear sample: rotation undefined
    Y = s * X @ R.T + t
    s2, R2, t2 = umeyama(X, Y)
    assert s2 == pytest.approx(s, rel=1e-8)
    assert np.allclose(R2, R, atol=1e-7) and np.allclose(t2, t, atol=1e-6 * max(1, abs(s)))
    assert np.linalg.det(R2) == pytest.approx(1.0)
    s3, R3, t3 = umeyama(X, X @ R.T + t, with_scale=False)
    assert s3 == 1.0 and np.allclose(R3, R, atol=1e-7)


def test_umeyama_matches_pycolmap():
    pycolmap = pytest.importorskip("pycolmap")
    s, R, t, rng = random_sim3(11)
    X = rng.normal(0, 1, (30, 3))
    Y = s * X @ R.T + t + rng.normal(0, 0.01, (30, 3))
    s2, R2, t2 = umeyama(X, Y)
    sim = pycolmap.estimate_sim3d(X, Y)
    assert sim is not None
    assert s2 == pytest.approx(sim.scale, rel=1e-6)
    assert np.allclose(R2, sim.rotation.matrix(), atol=1e-6)
    assert np.allclose(t2, np.asarray(sim.translation), atol=1e-6)


def test_umeyama_errors():
    with pytest.raises(ValueError):
        umeyama(np.zeros((2, 3)), np.zeros((2, 3)))
    with pytest.raises(ValueError):
        umeyama(np.zeros((4, 3)), np.zeros((5, 3)))
    with pytest.raises(ValueError):
        umeyama(np.ones((4, 3)), np.zeros((4, 3)))


def test_ate_zero_for_transformed_copy():
    s, R, t, rng = random_sim3(5)
    gt = np.cumsum(rng.normal(0, 0.1, (25, 3)), axis=0)
    est = (gt - t) @ R / s          # est world = inverse Sim(3) of gt world
    res = ate_rmse(est, gt)
    assert res["rmse"] < 1e-9 and res["max"] < 1e-9 and res["rmse_pct"] < 1e-6
    assert res["scale"] == pytest.approx(s)
    assert res["n"] == 25


def test_ate_hand_computed():
    e = 0.1
    gt = np.array([[1.0, 1, 0], [-1, 1, 0], [-1, -1, 0], [1, -1, 0]])
    est = gt + np.array([[0, 0, e], [0, 0, -e], [0, 0, e], [0, 0, -e]])
    # the saddle noise is uncorrelated with the square: R = I, t = 0, s = Σσ / var = 2 / (2 + e²)
    s = 2 / (2 + e * e)
    err = math.sqrt(2 * (s - 1) ** 2 + (s * e) ** 2)
    res = ate_rmse(est, gt)
    assert res["scale"] == pytest.approx(s)
    assert res["rmse"] == pytest.approx(err) and res["max"] == pytest.approx(err)
    assert res["length"] == pytest.approx(6.0)
    assert res["rmse_pct"] == pytest.approx(100 * err / 6)
    # invariant to a similarity applied to the estimate
    s0, R0, t0, _ = random_sim3(9)
    res2 = ate_rmse(s0 * est @ R0.T + t0, gt)
    assert res2["rmse"] == pytest.approx(err) and res2["scale"] == pytest.approx(s / s0)


def test_rotation_angle():
    for deg in (0.0, 1e-4, 5.0, 90.0, 179.9, 180.0):
        R = Rotation.from_rotvec(np.radians(deg) * np.array([0.6, 0.0, 0.8])).as_matrix()
        assert rotation_angle_deg(R) == pytest.approx(deg, abs=1e-9)


def test_rotation_errors_after_alignment():
    rng = np.random.default_rng(2)
    gt_R = Rotation.random(6, random_state=1).as_matrix()
    A = Rotation.random(random_state=2).as_matrix()      # est world -> gt world rotation
    est_R = gt_R @ A                                     # world-to-camera in the est world
    assert np.allclose(rotation_errors_deg(est_R, gt_R, A), 0, atol=1e-6)
    assert np.allclose(rotation_errors_deg(est_R, gt_R), 0, atol=1e-6)      # A estimated
    assert rotation_errors_deg(est_R, gt_R, np.eye(3)).min() > 1e-3
    delta = rng.uniform(0.5, 3, 6)
    noisy = np.stack([Rotation.from_rotvec(np.radians([d, 0, 0])).as_matrix() @ r
                      for d, r in zip(delta, est_R, strict=False)])
    assert np.allclose(rotation_errors_deg(noisy, gt_R, A), delta, atol=1e-9)


def test_rotation_errors_with_umeyama_of_centres():
    # gt cameras; the estimate lives in a similar world X_est = s B X_gt + t
    rng = np.random.default_rng(4)
    s, B, t, _ = random_sim3(4)
    gt_R = Rotation.random(8, random_state=5).as_matrix()
    gt_C = rng.normal(0, 1, (8, 3))
    est_C = s * gt_C @ B.T + t
    est_R = gt_R @ B.T
    _, A, _ = umeyama(est_C, gt_C)
    assert np.allclose(A, B.T, atol=1e-9)
    assert np.allclose(rotation_errors_deg(est_R, gt_R, A), 0, atol=1e-6)
    with pytest.raises(ValueError):
        rotation_errors_deg(est_R, gt_R[:3])
