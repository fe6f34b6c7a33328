"""mannequin.sfm.motion_prior: the acceleration operator and the smooth-motion bundle adjustment."""
import numpy as np
import pytest

from mannequin.metrics import ate_rmse
from mannequin.sfm.motion_prior import acceleration_operator, mean_reprojection_px, smooth_bundle_adjust
from mannequin.sfm.rolling_shutter import rotation_matrices
from mannequin.sfm.smoothing import MIN_NOISE_PX, prior_width


def test_acceleration_operator_is_exact_on_a_parabola_with_uneven_times():
    t = np.array([0.0, 0.033, 0.1, 0.133, 0.2, 0.3])  # frames dropped for blur
    a, v, c0 = np.array([0.5, -1.0, 2.0]), np.array([0.1, 0.2, -0.3]), np.array([1.0, 2.0, 3.0])
    C = c0 + v * t[:, None] + 0.5 * a * t[:, None] ** 2
    op = acceleration_operator(t)
    acc = op[:, 0, None] * C[:-2] + op[:, 1, None] * C[1:-1] + op[:, 2, None] * C[2:]
    np.testing.assert_allclose(acc, np.broadcast_to(a, acc.shape), atol=1e-9)


@pytest.mark.parametrize("times", [[0.0, 1.0], [0.0, 1.0, 1.0], [0.0, 2.0, 1.0]])
def test_acceleration_operator_rejects_short_or_unordered_times(times):
    with pytest.raises(ValueError):
        acceleration_operator(times)


def _observe(rng, t, R, C, X, noise_px, f):
    """Every point each camera sees within ±0.6 of its optical axis (normalised coordinates), with
    Gaussian noise of ``noise_px`` per axis: (t, R, C, X, frame and point index of each
    observation, its coordinates, f)."""
    of, op, xy = [], [], []
    for i in range(len(t)):
        Xc = (R[i] @ (X - C[i]).T).T
        uv = Xc[:, :2] / Xc[:, 2:]
        ok = (np.abs(uv) < 0.6).all(1)
        of += [i] * int(ok.sum())
        op += list(np.nonzero(ok)[0])
        xy.append(uv[ok] + rng.normal(0, noise_px / f, (int(ok.sum()), 2)))
    return t, R, C, X, np.array(of), np.array(op), np.concatenate(xy), f


def _turning_clip(seed=0, n=30, noise_px=0.5, f=500.0):
    """A camera that mostly turns (±8°) while its centre drifts 6 cm on a smooth arc, looking at
    points 2-5 m away: its centres are weakly observed.  Returns truth and noisy observations."""
    rng = np.random.default_rng(seed)
    t = np.arange(n) / 30.0
    C = np.stack([0.06 * t / t[-1], 0.01 * np.sin(2 * t), 0.005 * t], axis=1)
    yaw = np.radians(8.0) * np.sin(2.0 * t)
    pitch = np.radians(3.0) * np.sin(3.0 * t + 1.0)
    R = rotation_matrices(np.stack([pitch, yaw, np.zeros(n)], axis=1))  # world-to-camera
    X = np.column_stack([rng.uniform(-2, 2, 400), rng.uniform(-1.5, 1.5, 400), rng.uniform(2, 5, 400)])
    return _observe(rng, t, R, C, X, noise_px, f)


def test_the_prior_removes_centre_jitter_that_the_images_leave_free():
    t, R, C, X, of, op, xy, f = _turning_clip()
    rng = np.random.default_rng(1)
    # Start from the truth with each frame's centre pushed sideways and its rotation turned to
    # compensate at 3 m: the images barely notice (the ambiguity of a camera that mostly turns).
    C0, R0 = C.copy(), R.copy()
    for i in range(1, len(C)):
        d = rng.normal(0, 0.004, 3)
        C0[i] += d
        R0[i] = rotation_matrices(np.cross([0, 0, 1.0], R[i] @ d) / 3.0) @ R[i]
    kw = dict(focal_px=f, loss_px=0.5, max_iterations=60, tolerance=1e-9)
    zmed = 3.5
    _, C_free, _, rep_free = smooth_bundle_adjust(R0, C0, X, of, op, xy, t, accel_sigma=1e4 * zmed, **kw)
    R_s, C_s, X_s, rep = smooth_bundle_adjust(R0, C0, X, of, op, xy, t, accel_sigma=0.3 * zmed, **kw)
    err_free = ate_rmse(C_free, C)["rmse"]
    err_s = ate_rmse(C_s, C)["rmse"]
    assert err_s < 0.6 * err_free, (err_s, err_free)  # measured 0.57 against 1.32 mm
    assert rep["accel_after"] < 0.5 * rep_free["accel_after"]
    assert rep["reprojection_after_px"] < 1.0  # 0.5 px noise: the prior costs the images little
    # The gauge: frame 0's pose and its distance to the farthest frame are held exactly.
    np.testing.assert_allclose(R_s[0], R0[0])
    np.testing.assert_allclose(C_s[0], C0[0])
    far = int(np.argmax(np.linalg.norm(C0 - C0[0], axis=1)))
    assert np.linalg.norm(C_s[far] - C_s[0]) == pytest.approx(np.linalg.norm(C0[far] - C0[0]), rel=1e-9)
    assert X_s.shape == X.shape and np.isfinite(X_s).all()


def test_smooth_bundle_adjust_checks_its_inputs():
    t, R, C, X, of, op, xy, f = _turning_clip(n=6)
    with pytest.raises(ValueError, match="R_cw"):
        smooth_bundle_adjust(R[:, :2], C, X, of, op, xy, t, focal_px=f, accel_sigma=1.0)
    with pytest.raises(ValueError, match="disagree"):
        smooth_bundle_adjust(R, C, X, of, op, xy[:-1], t, focal_px=f, accel_sigma=1.0)
    with pytest.raises(ValueError, match="out of range"):
        smooth_bundle_adjust(R, C, X, of, op + len(X), xy, t, focal_px=f, accel_sigma=1.0)
    with pytest.raises(ValueError, match="accel_sigma"):
        smooth_bundle_adjust(R, C, X, of, op, xy, t, focal_px=f, accel_sigma=0.0)
    with pytest.raises(ValueError, match="coincide"):
        smooth_bundle_adjust(R, np.zeros_like(C), X, of, op, xy, t, focal_px=f, accel_sigma=1.0)


def test_a_point_behind_a_camera_does_not_stall_the_adjustment():
    """A robust adjustment upstream can leave a point behind a camera; its observations are left
    out, and the rest of the clip is still smoothed."""
    t, R, C, X, of, op, xy, f = _turning_clip(n=12)
    rng = np.random.default_rng(2)
    C0 = C + np.vstack([np.zeros(3), rng.normal(0, 0.004, (len(C) - 1, 3))])
    X = X.copy()
    X[op[0]] = C[of[0]] - 2.0 * R[of[0]][2]  # 2 m behind the camera that observes it
    _, C_s, _, rep = smooth_bundle_adjust(R, C0, X, of, op, xy, t, focal_px=f, accel_sigma=0.3 * 3.5,
                                          max_iterations=20)
    assert rep["observations_behind_camera"] >= 1
    assert rep["cost_after"] < 0.5 * rep["cost_before"]
    assert ate_rmse(C_s, C)["rmse"] < ate_rmse(C0, C)["rmse"]


def _shaken_walk(seed=0, n=30, noise_px=0.1, f=500.0):
    """A camera that walks 0.9 m sideways past points 2-5 m away, shaken at 2-3 Hz by ±1.5 cm
    (accelerations about 4 m/s², above the prior's 0.3 median depths/s²): its centres are
    well observed.  Returns truth and noisy observations, as :func:`_turning_clip`."""
    rng = np.random.default_rng(seed)
    t = np.arange(n) / 30.0
    shake = 0.015 * np.stack([np.sin(2 * np.pi * 2.5 * t), np.sin(2 * np.pi * 2.0 * t + 1), np.sin(2 * np.pi * 3.0 * t)], 1)
    C = np.stack([0.9 * t / t[-1], np.zeros(n), np.zeros(n)], axis=1) + shake
    R = rotation_matrices(np.stack([np.zeros(n), np.radians(4.0) * np.sin(2.0 * t), np.zeros(n)], axis=1))
    X = np.column_stack([rng.uniform(-2, 3, 400), rng.uniform(-1.5, 1.5, 400), rng.uniform(2, 5, 400)])
    return _observe(rng, t, R, C, X, noise_px, f)


def test_mean_reprojection_px_measures_the_noise():
    t, R, C, X, of, op, xy, f = _turning_clip(noise_px=0.5)
    # 2-D Gaussian noise of 0.5 px per axis: mean length 0.5 * sqrt(pi / 2) = 0.63 px.
    assert mean_reprojection_px(R, C, X, of, op, xy, f) == pytest.approx(0.5 * np.sqrt(np.pi / 2), rel=0.05)
    with pytest.raises(ValueError, match="shapes"):
        mean_reprojection_px(R, C, X, of, op, xy[:-1], f)


def test_prior_width_widens_as_the_images_fit_better():
    assert prior_width(0.3, 4.0, 1.0) == pytest.approx(1.2)
    assert prior_width(0.3, 4.0, 2.0) == pytest.approx(1.2)  # never narrower than at 1 px
    assert prior_width(0.3, 4.0, 0.25) == pytest.approx(4.8)
    assert prior_width(0.3, 4.0, 0.0) == prior_width(0.3, 4.0, MIN_NOISE_PX)
    for bad in [(0.0, 4.0, 1.0), (0.3, 0.0, 1.0), (0.3, 4.0, float("nan"))]:
        with pytest.raises(ValueError):
            prior_width(*bad)


def test_the_prior_gives_way_where_the_images_decide():
    """On a shaken walk seen at 0.1 px, the prior at its 1 px width bends the path; scaled to the
    images' own noise it leaves it where the images put it."""
    t, R, C, X, of, op, xy, f = _shaken_walk()
    kw = dict(focal_px=f, loss_px=0.5, max_iterations=60, tolerance=1e-9)
    zmed = 3.5
    noise = mean_reprojection_px(R, C, X, of, op, xy, f)
    _, C_free, _, _ = smooth_bundle_adjust(R, C, X, of, op, xy, t, accel_sigma=1e4 * zmed, **kw)
    _, C_fixed, _, _ = smooth_bundle_adjust(R, C, X, of, op, xy, t, accel_sigma=0.3 * zmed, **kw)
    _, C_scaled, _, _ = smooth_bundle_adjust(R, C, X, of, op, xy, t, accel_sigma=prior_width(0.3, zmed, noise), **kw)
    err_free, err_fixed, err_scaled = (ate_rmse(c, C)["rmse"] for c in (C_free, C_fixed, C_scaled))
    assert err_fixed > 2 * err_free, (err_fixed, err_free)
    assert err_scaled < 1.5 * err_free, (err_scaled, err_free)
