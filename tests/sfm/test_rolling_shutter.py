"""Rolling-shutter correction: pure geometry (mannequin.sfm.rolling_shutter) and its config checks."""
import argparse

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from mannequin.config import SfmConfig
from mannequin.errors import InputError
from mannequin.sfm import rolling_shutter as rs

K = np.array([[300.0, 0.0, 160.0], [0.0, 300.0, 120.0], [0.0, 0.0, 1.0]])  # pixel centres at +0.5
H, W = 240, 320


def project(X):
    X = np.asarray(X, dtype=np.float64)
    return np.column_stack([K[0, 0] * X[:, 0] / X[:, 2] + K[0, 2], K[1, 1] * X[:, 1] / X[:, 2] + K[1, 2]])


def test_rotation_matrices_match_scipy():
    rng = np.random.default_rng(0)
    rv = rng.normal(size=(50, 3)) * 0.7
    np.testing.assert_allclose(rs.rotation_matrices(rv), Rotation.from_rotvec(rv).as_matrix(), atol=1e-12)
    np.testing.assert_allclose(rs.rotation_matrices(np.zeros(3)), np.eye(3))
    with pytest.raises(ValueError):
        rs.rotation_matrices(np.zeros((4, 2)))


def test_angular_velocities_recover_a_constant_turn():
    omega = np.array([0.3, -1.1, 0.4])  # rad/s, camera axes
    t = np.arange(12) / 30.0
    R0 = Rotation.from_rotvec([0.2, 0.1, -0.3]).as_matrix()
    R_wc = np.array([R0 @ Rotation.from_rotvec(omega * ti).as_matrix() for ti in t])
    np.testing.assert_allclose(rs.angular_velocities(R_wc, t), np.tile(omega, (12, 1)), atol=1e-9)
    assert np.all(rs.angular_velocities(R_wc[:1], t[:1]) == 0)
    with pytest.raises(ValueError, match="increasing"):
        rs.angular_velocities(R_wc, t[::-1])
    with pytest.raises(ValueError, match="shape"):
        rs.angular_velocities(R_wc, t[:3])


def test_row_time_is_zero_at_the_middle_row():
    assert rs.row_time(H / 2, H, 0.03) == 0
    np.testing.assert_allclose(rs.row_time([0, H], H, 0.03), [-0.015, 0.015])
    with pytest.raises(ValueError):
        rs.row_time(1, 0, 0.03)


def test_from_frame_time_inverts_to_frame_time():
    rng = np.random.default_rng(1)
    X = np.column_stack([rng.uniform(-0.5, 0.5, 200), rng.uniform(-0.4, 0.4, 200), rng.uniform(1, 3, 200)])
    omega, readout = np.array([0.4, 1.0, -0.2]), 0.03  # ~63°/s, 30 ms
    X_row, px = rs.from_frame_time(X, project, omega, readout, H)
    np.testing.assert_allclose(np.linalg.norm(X_row, axis=1), np.linalg.norm(X, axis=1))  # a rotation
    np.testing.assert_allclose(px, project(X_row), atol=1e-9)  # pixel of the row camera...
    b = np.column_stack([(px[:, 0] - K[0, 2]) / K[0, 0], (px[:, 1] - K[1, 2]) / K[1, 1], np.ones(len(px))])
    back = rs.to_frame_time(b, px[:, 1], omega, readout, H)  # ...whose row time brings it back to X
    cos = np.sum(back * X, axis=1) / np.linalg.norm(back, axis=1) / np.linalg.norm(X, axis=1)
    assert np.degrees(np.arccos(np.clip(cos, -1, 1))).max() < 1e-4
    # The correction is not negligible: several pixels at the top and bottom rows.
    assert np.abs(px - project(X)).max() > 3
    # No readout, no change.
    X0, px0 = rs.from_frame_time(X, project, omega, 0.0, H)
    np.testing.assert_allclose(X0, X)


def _panorama(dirs):
    """Intensity of a smooth texture at infinity, as a function of world directions (M, 3)."""
    d = dirs / np.linalg.norm(dirs, axis=1, keepdims=True)
    return 128 + 60 * np.sin(40 * d[:, 0]) * np.cos(31 * d[:, 1]) + 40 * np.sin(23 * d[:, 0] + 17 * d[:, 1])


def test_rectify_image_undoes_a_rendered_rolling_shutter():
    """A camera turning at 60°/s in front of a texture at infinity: the rolling-shutter image, once
    rectified, matches the global-shutter image of the frame time."""
    omega, readout = np.radians([20.0, 55.0, 10.0]), 0.03
    v, u = np.mgrid[0:H, 0:W].astype(np.float64)
    rays = np.column_stack([((u + 0.5 - K[0, 2]) / K[0, 0]).ravel(), ((v + 0.5 - K[1, 2]) / K[1, 1]).ravel(),
                            np.ones(u.size)])
    global_img = _panorama(rays).reshape(H, W)
    # Recorded: row v looks along expm([omega] dt(v)) @ ray in the frame-time camera.
    rec_dirs = rs.to_frame_time(rays, (v + 0.5).ravel(), omega, readout, H)
    recorded = _panorama(rec_dirs).reshape(H, W)
    out = rs.rectify_image(recorded, project, K, (W, H), omega, readout)
    inner = (slice(20, H - 20), slice(20, W - 20))
    before = np.abs(recorded - global_img)[inner].mean()
    after = np.abs(out - global_img)[inner].mean()
    assert before > 5 and after < before / 50, (before, after)
    # Integer images keep their dtype; colour channels are resampled alike.
    rgb = np.repeat(np.clip(recorded, 0, 255).astype(np.uint8)[..., None], 3, axis=2)
    out_rgb = rs.rectify_image(rgb, project, K, (W, H), omega, readout)
    assert out_rgb.dtype == np.uint8 and out_rgb.shape == (H, W, 3)
    assert np.array_equal(out_rgb[..., 0], out_rgb[..., 2])
    with pytest.raises(ValueError):
        rs.rectify_image(np.zeros(5), project, K, (W, H), omega, readout)


def test_readout_config_is_checked():
    from mannequin.sfm.stage import _check_options

    _check_options(SfmConfig())
    _check_options(SfmConfig(readout_ms=0.0))
    _check_options(SfmConfig(readout_ms=25.0))
    with pytest.raises(InputError, match="readout_ms"):
        _check_options(SfmConfig(readout_ms=5000.0))
    with pytest.raises(InputError, match="readout_candidates_ms"):
        _check_options(SfmConfig(readout_candidates_ms=(10.0, -1.0)))


def test_cli_readout_flag_reaches_the_config():
    from mannequin.cli import resolve_config

    args = argparse.Namespace(preset=None, config=None, max_size=None, intrinsics=None, readout_ms=30.0)
    assert resolve_config(args).sfm.readout_ms == 30.0
    args.readout_ms = None
    assert resolve_config(args).sfm.readout_ms == SfmConfig().readout_ms


def test_eval_compares_through_the_recorded_rows():
    """A plane 2 m in front of a camera turning at 60°/s: labels on the corrected frame and GT
    registered to the recorded frame agree once the rows' rotation is taken into account."""
    from mannequin.evaluate import sample_through_points

    omega, readout = np.radians([40.0, 45.0, 5.0]), 0.03
    cam = (K[0, 0], K[1, 1], K[0, 2] - 0.5, K[1, 2] - 0.5, [0.0] * 5)  # OpenCV convention
    v, u = np.mgrid[0:H, 0:W].astype(np.float64)
    rays_row = np.column_stack([((u + 0.5 - K[0, 2]) / K[0, 0]).ravel(), ((v + 0.5 - K[1, 2]) / K[1, 1]).ravel(),
                                np.ones(u.size)])
    ray_frame = rs.to_frame_time(rays_row, (v + 0.5).ravel(), omega, readout, H)
    X_frame = ray_frame * (2.0 / ray_frame[:, 2:3])  # on the plane z = 2 of the frame-time camera
    dt = rs.row_time((v + 0.5).ravel(), H, readout)
    X_row = np.einsum("nij,nj->ni", rs.rotation_matrices(-omega[None, :] * dt[:, None]), X_frame)
    gt = X_row[:, 2].reshape(H, W).astype(np.float32)
    label = np.zeros((H, W), np.float32)
    label[30:-30, 30:-30] = 2.0
    p, g = sample_through_points(label, K, gt, cam, (omega, readout))
    m = g > 0
    assert m.mean() > 0.95
    assert np.abs(p[m] - g[m]).max() / 2.0 < 2e-3
    p0, g0 = sample_through_points(label, K, gt, cam)  # ignoring the rolling shutter
    assert np.abs(p0 - g0).max() / 2.0 > 5 * np.abs(p[m] - g[m]).max() / 2.0


def test_interpolated_map_matches_the_traced_one():
    """TUM's lens (k1 0.26, k2 -0.95, k3 1.16) turning at 60°/s with a 30 ms readout: the map traced
    every MAP_STEP pixels and interpolated stays within 0.05 px of the map traced at every pixel."""
    from mannequin.evaluate import distort_opencv

    dist = [0.2624, -0.9531, -0.0054, 0.0026, 1.1633]
    Kt = np.array([[517.3, 0, 319.1], [0, 516.5, 255.8], [0, 0, 1.0]])

    def project_tum(X):
        xd, yd = distort_opencv(X[:, 0] / X[:, 2], X[:, 1] / X[:, 2], dist)
        return np.column_stack([Kt[0, 0] * xd + Kt[0, 2], Kt[1, 1] * yd + Kt[1, 2]])

    omega = np.radians([30.0, 50.0, 10.0])
    exact = rs.rectify_map(project_tum, Kt, (640, 480), omega, 0.03, 480, step=1)
    fast = rs.rectify_map(project_tum, Kt, (640, 480), omega, 0.03, 480)
    assert exact.shape == fast.shape == (480, 640, 2)
    assert np.abs(exact - fast).max() < 0.05
    assert np.abs(exact[0, 0] - [0.5, 0.5]).max() > 5  # and the map is far from the identity
    with pytest.raises(ValueError):
        rs.rectify_map(project_tum, Kt, (640, 480), omega, 0.03, 480, step=0)


@pytest.mark.parametrize("best_ms, expected_scored", [
    (0.0, [0.0, 10.0]),                                   # global shutter: rises at once, 2 scores
    (20.0, [0.0, 10.0, 15.0, 20.0, 25.0, 30.0]),          # stops after the batch that turns up
    (40.0, [0.0, 10.0, 15.0, 20.0, 25.0, 30.0, 35.0, 40.0]),  # the longest readout: every candidate
])
def test_readout_search_stops_once_the_score_rises(monkeypatch, best_ms, expected_scored):
    """The auto search scores readouts in ascending batches (two at a time here) and stops once the
    last scored is worse than the best: on a score with one minimum it picks what scoring every
    candidate would, with fewer adjustments."""
    from mannequin.sfm import readout

    scored = []

    def score(rec, omegas, readout_s, refine_focal=False):
        ms = round(readout_s * 1e3, 6)
        scored.append(ms)
        return 0.5 + 0.001 * (ms - best_ms) ** 2

    monkeypatch.setattr(readout, "readout_score", score)
    monkeypatch.setattr(readout, "worker_threads", lambda: 2)
    report: dict = {}
    found = readout._search_readout(None, {}, SfmConfig(), False, report)
    assert sorted(scored) == expected_scored
    assert found == (None if best_ms == 0.0 else best_ms)
    assert sorted(float(k) for k in report["median_reprojection_px"]) == expected_scored
