"""Stage sfm on small synthetic clips: SfM accuracy, known-pose import, and clear failures."""
import json

import numpy as np
import pytest

from mannequin.config import FramesConfig, SfmConfig
from mannequin.errors import InputError, StageError
from mannequin.frames import extract_frames, read_frames_csv
from mannequin.io.cameras import read_cameras
from mannequin.metrics import ate_rmse
from mannequin.sfm import parse_intrinsics, run_sfm
from mannequin.testing.synth import render_clip, synth, write_clip
from mannequin.workspace import Workspace


@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory):
    return synth(tmp_path_factory.mktemp("clip"), seed=1, n_frames=16, width=384, height=288, video=True)


def _frames(clip_dir, tmp_path):
    ws = Workspace(tmp_path / "ws").create()
    extract_frames(clip_dir / "video.mp4", ws, FramesConfig())
    return ws


def test_sfm_recovers_synthetic_trajectory(clip_dir, tmp_path):
    ws = _frames(clip_dir, tmp_path)
    run_sfm(ws, SfmConfig(max_features=2048))
    gt = read_cameras(clip_dir / "cameras.txt")
    est = read_cameras(ws.cameras_txt)
    assert len(est) == len(gt) == 16
    assert [f.timestamp_us for f in est.frames] == [f.timestamp_us for f in gt.frames]
    err = ate_rmse(np.array([f.pose.center for f in est.frames]), np.array([f.pose.center for f in gt.frames]))
    assert err["rmse_pct"] < 0.5
    assert abs(est.frames[0].fx / gt.frames[0].fx - 1) < 0.01
    assert sorted(p.name for p in ws.images_dir.iterdir()) == sorted(p.name for p in ws.frames_dir.iterdir())
    assert {"cameras.bin", "images.bin", "points3D.bin"} <= {p.name for p in ws.sparse_dir.iterdir()}
    import pycolmap

    # WS/sparse is PINHOLE, though pycolmap's undistortion copies a SIMPLE_RADIAL camera with k = 0 as is
    assert [c.model.name for c in pycolmap.Reconstruction(str(ws.sparse_dir)).cameras.values()] == ["PINHOLE"]
    import json

    summary = json.loads((ws.sfm_dir / "summary.json").read_text())
    par = summary["parallax"]
    assert par["parallax_deg"] > 3 * SfmConfig().min_parallax_deg, par  # a walk: far from a pure rotation
    rs = summary["rolling_shutter"]  # auto: a slow walk needs no rolling-shutter search
    assert rs["readout_ms"] == 0 and rs["mode"] == "auto" and rs["skipped"].startswith("turns at most"), rs
    mp = summary["motion_prior"]  # a video: its centres were smoothed, at no cost to the images
    assert mp["applied"] and mp["reprojection_after_px"] < 1.05 * mp["reprojection_before_px"] + 0.01, mp


def test_fast_global_shutter_clip_gets_no_readout(clip_dir, tmp_path):
    """The synthetic walk (a global shutter) played at 300 fps turns at ~200°/s: the auto search runs,
    and every readout time scores worse than none, so nothing is corrected."""
    import json

    import imageio.v3 as iio

    from mannequin.testing.synth import _write_video

    frames = sorted((clip_dir / "frames").glob("*.png"))
    video = _write_video(tmp_path / "fast.mp4", np.stack([iio.imread(p) for p in frames]), 300.0)
    ws = Workspace(tmp_path / "ws").create()
    extract_frames(video, ws, FramesConfig())
    run_sfm(ws, SfmConfig(max_features=2048))
    rs = json.loads((ws.sfm_dir / "summary.json").read_text())["rolling_shutter"]
    assert rs["max_rate_deg_s"] > SfmConfig().max_rotation_rate_deg_s and "skipped" not in rs, rs
    scores = rs["median_reprojection_px"]
    assert rs["readout_ms"] == 0 and "omega_rad_s" not in rs
    assert all(v > scores["0"] for k, v in scores.items() if k != "0"), scores


def test_given_readout_corrects_keypoints_and_frames(clip_dir, tmp_path):
    """--readout-ms 30: keypoints corrected, mapping re-run, frames resampled per row (the slow
    synthetic walk barely turns, so the model stays as accurate and the frames change little)."""
    import json

    import imageio.v3 as iio

    ws = _frames(clip_dir, tmp_path)
    run_sfm(ws, SfmConfig(max_features=2048, readout_ms=30.0))
    rs = json.loads((ws.sfm_dir / "summary.json").read_text())["rolling_shutter"]
    assert rs["readout_ms"] == 30.0 and rs["mode"] == "given"
    assert sorted(rs["omega_rad_s"]) == sorted(p.name for p in ws.frames_dir.iterdir())
    gt = read_cameras(clip_dir / "cameras.txt")
    est = read_cameras(ws.cameras_txt)
    err = ate_rmse(np.array([f.pose.center for f in est.frames]), np.array([f.pose.center for f in gt.frames]))
    assert err["rmse_pct"] < 0.5
    name = sorted(rs["omega_rad_s"])[8]
    a = iio.imread(ws.images_dir / name).astype(float)
    b = iio.imread(ws.frames_dir / name).astype(float)
    assert a.shape == b.shape
    inner = (slice(10, -10), slice(10, -10))
    assert 0 < np.abs(a - b)[inner].mean() < 5


def test_known_poses_are_kept_exactly(clip_dir, tmp_path):
    ws = _frames(clip_dir, tmp_path)
    run_sfm(ws, SfmConfig(max_features=2048), poses=clip_dir / "cameras.txt")
    gt = read_cameras(clip_dir / "cameras.txt")
    est = read_cameras(ws.cameras_txt)
    for a, b in zip(gt.frames, est.frames, strict=False):
        np.testing.assert_allclose(b.pose.matrix, a.pose.matrix, atol=1e-6)
        assert (b.fx, b.fy, b.cx, b.cy) == pytest.approx((a.fx, a.fy, a.cx, a.cy), abs=1e-9)
    import pycolmap

    assert pycolmap.Reconstruction(str(ws.sparse_dir)).num_points3D() > 100
    # Nothing to register: sequential pairs give the points (see SfmConfig.exhaustive_max_frames).
    assert json.loads((ws.sfm_dir / "summary.json").read_text())["matching"] == "sequential"


def test_known_poses_count_mismatch(clip_dir, tmp_path):
    ws = _frames(clip_dir, tmp_path)
    lines = (clip_dir / "cameras.txt").read_text().splitlines()
    short = tmp_path / "short.txt"
    short.write_text("\n".join(lines[:-2]) + "\n")
    with pytest.raises(InputError, match="14 camera lines for 16 input frames"):
        run_sfm(ws, SfmConfig(), poses=short)
    assert not ws.sparse_dir.exists() and not ws.cameras_txt.exists()


def test_known_poses_skip_the_lines_of_dropped_frames(clip_dir, tmp_path):
    """A camera file has one line per input frame; when the frames stage drops a blurred frame,
    its line is left out and every kept frame keeps its own pose."""
    import imageio.v3 as iio
    from scipy.ndimage import uniform_filter

    folder = tmp_path / "images"
    folder.mkdir()
    for i, p in enumerate(sorted((clip_dir / "frames").glob("*.png"))):
        im = iio.imread(p)
        if i == 5:
            im = uniform_filter(im.astype(float), size=(15, 15, 1)).astype(np.uint8)
        iio.imwrite(folder / p.name, im)
    ws = Workspace(tmp_path / "ws").create()
    extract_frames(folder, ws, FramesConfig())
    rows = read_frames_csv(ws.frames_csv)
    assert [r["reason"] for r in rows if not r["kept"]] == ["blurry"] and not rows[5]["kept"]
    run_sfm(ws, SfmConfig(max_features=2048), poses=clip_dir / "cameras.txt")
    gt = read_cameras(clip_dir / "cameras.txt").frames
    est = read_cameras(ws.cameras_txt).frames
    assert len(est) == 15
    for a, b in zip([g for i, g in enumerate(gt) if i != 5], est, strict=False):
        np.testing.assert_allclose(b.pose.matrix, a.pose.matrix, atol=1e-9)
    # eval pairs GT poses with input frames the same way: the dropped frame's line is skipped.
    from mannequin.evaluate import evaluate

    poses = evaluate(ws, clip_dir / "depth", gt_poses=clip_dir / "cameras.txt", which="sparse")["poses"]
    assert poses["rmse_pct"] < 1e-6


def test_known_poses_with_distortion_are_refused(clip_dir, tmp_path):
    ws = _frames(clip_dir, tmp_path)
    lines = (clip_dir / "cameras.txt").read_text().splitlines()
    parts = lines[3].split()
    parts[5] = "0.1"
    bad = tmp_path / "dist.txt"
    bad.write_text("\n".join(lines[:3] + [" ".join(parts)] + lines[4:]) + "\n")
    with pytest.raises(InputError, match="frame line 3: distortion terms 0.1 0 are not supported"):
        run_sfm(ws, SfmConfig(), poses=bad)


def test_static_camera_fails_clearly(tmp_path):
    clip = render_clip(seed=2, n_frames=2, width=256, height=192)
    clip.images = np.repeat(clip.images[:1], 8, axis=0)
    clip.depth = np.repeat(clip.depth[:1], 8, axis=0)
    clip.poses = [clip.poses[0]] * 8
    clip.timestamps_us = [i * 33333 for i in range(8)]
    write_clip(clip, tmp_path / "static", video=True)
    ws = _frames(tmp_path / "static", tmp_path)
    with pytest.raises(StageError, match="triangulation|no model|registered"):
        run_sfm(ws, SfmConfig(max_features=1024, restarts=1))
    assert not ws.cameras_txt.exists()


def test_pure_rotation_fails_clearly(tmp_path):
    """A camera that turns in place (1.5° pan per frame, no translation) is rejected by the
    rotation-parallax check with a one-line reason, and writes no cameras (issue 8)."""
    clip = render_clip(seed=2, n_frames=10, width=192, height=144, motion="rotate")
    write_clip(clip, tmp_path / "rotate", video=True)
    ws = _frames(tmp_path / "rotate", tmp_path)
    with pytest.raises(StageError, match="camera only rotates: no parallax to give depth") as exc:
        run_sfm(ws, SfmConfig(max_features=1024, restarts=1))
    assert "\n" not in str(exc.value)
    assert not ws.cameras_txt.exists() and not ws.sparse_dir.exists()
    assert not (ws.sfm_dir / "work").exists()  # no scratch of the failed stage
    # the measure itself: feature noise, far below the threshold (walking clips: 0.5° and more)
    import re

    measured = float(re.search(r"matches show ([0-9.]+)° beyond", str(exc.value)).group(1))
    assert measured < SfmConfig().min_parallax_deg / 2, str(exc.value)


def test_rotation_parallax_of_exact_rotations():
    """Bearings related by an exact rotation leave no parallax; translated ones leave some."""
    from mannequin.sfm.diagnostics import best_rotation

    rng = np.random.default_rng(0)
    X = rng.uniform([-2, -1, 2], [2, 1, 8], (200, 3))
    a = X / np.linalg.norm(X, axis=1, keepdims=True)
    from scipy.spatial.transform import Rotation

    R = Rotation.from_euler("yx", [5.0, 2.0], degrees=True).as_matrix()
    np.testing.assert_allclose(best_rotation(a, a @ R.T), R, atol=1e-12)
    Y = X @ R.T + [0.2, 0, 0]  # and a 20 cm step
    b = Y / np.linalg.norm(Y, axis=1, keepdims=True)
    Rb = best_rotation(a, b)
    res = np.degrees(np.arccos(np.clip(np.sum((a @ Rb.T) * b, 1), -1, 1)))
    assert np.median(res) > 0.5


def test_point_triangulation_angles_take_the_widest_pair():
    """Each point's angle is the widest between the rays to any two of its cameras (not only
    neighbours), points seen once are left out, and the median follows."""
    from types import SimpleNamespace

    from mannequin.sfm.diagnostics import median_triangulation_angle, point_triangulation_angles

    rng = np.random.default_rng(1)
    centers = {i: np.array([0.3 * i, 0.05 * i * i, 0.0]) for i in range(1, 7)}
    points, expected = {}, []
    for pid in range(40):
        xyz = rng.uniform([-2, -1, 3], [2, 1, 6])
        ids = sorted(rng.choice(6, size=rng.integers(1, 7), replace=False) + 1)
        points[pid] = SimpleNamespace(xyz=xyz, track=SimpleNamespace(elements=[SimpleNamespace(image_id=int(i))
                                                                                for i in ids + ids[:1]]))
        if len(ids) >= 2:
            rays = np.array([centers[i] - xyz for i in ids])
            rays /= np.linalg.norm(rays, axis=1, keepdims=True)
            expected.append(np.degrees(np.arccos(np.clip(rays @ rays.T, -1, 1).min())))
    rec = SimpleNamespace(reg_image_ids=lambda: list(centers), points3D=points,
                          image=lambda i: SimpleNamespace(projection_center=lambda i=i: centers[i]))
    angles = point_triangulation_angles(rec)
    assert len(angles) == len(expected) > 20
    np.testing.assert_allclose(np.sort(angles), np.sort(expected), rtol=0, atol=1e-9)
    assert median_triangulation_angle(rec) == pytest.approx(float(np.median(expected)), abs=1e-9)
    empty = SimpleNamespace(reg_image_ids=lambda: [], points3D={}, image=None)
    assert len(point_triangulation_angles(empty)) == 0 and median_triangulation_angle(empty) == 0.0


def test_parse_intrinsics(tmp_path):
    intr, dist = parse_intrinsics("517.3,516.5,318.6,255.3", 640, 480)
    assert intr.fx == 517.3 and dist == ()
    intr, dist = parse_intrinsics("517.3,516.5,318.6,255.3,0.26,-0.95,-0.005,0.003,1.16", 640, 480)
    assert len(dist) == 5
    f = tmp_path / "K.txt"
    f.write_text("500 500 320 240\n")
    assert parse_intrinsics(str(f), 640, 480)[0].cx == 320.5  # OpenCV centre convention -> COLMAP
    for bad in ["1,2,3", "a,b,c,d", "-5,5,1,1", "1,1,1,1,nan,0,0,0"]:
        with pytest.raises(InputError, match="--intrinsics"):
            parse_intrinsics(bad, 640, 480)
    with pytest.raises(InputError, match="--intrinsics 'nocalib.txt': no such file"):
        parse_intrinsics("nocalib.txt", 640, 480)
    with pytest.raises(InputError, match="--gt-intrinsics '1,2,3'"):
        parse_intrinsics("1,2,3", 1, 1, option="--gt-intrinsics")


def test_intrinsics_whose_distortion_folds_inside_the_frame_are_refused():
    """TUM's calibration without its k3 folds back 328 px from the centre, inside the 640x480 frame
    (corner 411 px): the frames cannot be undistorted there, which once ended in an SVD error."""
    from mannequin.sfm.intrinsics import radial_fold_radius

    tum = "517.3,516.5,318.6,255.3,0.2624,-0.9531,-0.0054,0.0026"
    with pytest.raises(InputError, match="folds back .* inside the 640x480 frame") as err:
        parse_intrinsics(tum, 640, 480)
    assert len(str(err.value).splitlines()) == 1
    assert parse_intrinsics(tum + ",1.1633", 640, 480)[1][4] == 1.1633  # the full calibration is fine
    narrow = "517.3,516.5,239.5,179.5,0.2624,-0.9531,-0.0054,0.0026"
    assert parse_intrinsics(narrow, 480, 360)[1]  # a frame that ends before the fold (corner 300 px) is fine
    assert parse_intrinsics(tum, 1, 1)  # size unknown (eval's GT camera): no check
    assert radial_fold_radius(0.1, 0.0) == float("inf")
    # k2 alone: 1 + 5 k2 r^4 = 0 at r = (1 / (5 |k2|))^(1/4)
    assert radial_fold_radius(0.0, -0.2) == pytest.approx(1.0, abs=1e-3)


def test_self_calibration_recovers_focal_and_distortion(tmp_path):
    """A clip rendered through radial distortion: focal within 1%, k1 within 0.02 (issue 10)."""
    out = synth(tmp_path / "dist", seed=3, n_frames=24, width=384, height=288, video=True, k1=-0.12)
    ws = _frames(out, tmp_path)
    run_sfm(ws, SfmConfig(max_features=2048))
    import json

    summary = json.loads((ws.sfm_dir / "summary.json").read_text())
    f, _, _, k = summary["camera_params_distorted"]
    f_true = read_cameras(out / "cameras.txt").frames[0].fx * 384
    assert abs(f / f_true - 1) < 0.01
    assert abs(k - (-0.12)) < 0.02
    assert summary["warnings"] == []
    assert summary["matching"] == "sequential"  # every frame registered: no exhaustive fallback


def test_robust_loss_pins_weakly_observed_focal(tmp_path):
    """Synthetic seed 2 (24 frames, a walk that barely turns: the focal is weakly observed): with
    plain least squares the far-off observations the mapper keeps pull the focal ~3% long; the
    Cauchy loss (sfm.ba_loss_px) brings it within 1.5%."""
    out = synth(tmp_path / "clip", seed=2, n_frames=24, width=384, height=288, video=True)
    f_true = read_cameras(out / "cameras.txt").frames[0].fx * 384
    errs = {}
    for loss in (0.0, SfmConfig().ba_loss_px):
        ws = Workspace(tmp_path / f"ws{loss}").create()
        extract_frames(out / "video.mp4", ws, FramesConfig())
        run_sfm(ws, SfmConfig(ba_loss_px=loss))
        errs[loss] = abs(read_cameras(ws.cameras_txt).frames[0].fx * 384 / f_true - 1)
    assert errs[SfmConfig().ba_loss_px] < 0.015, errs
    assert errs[0.0] > 2 * errs[SfmConfig().ba_loss_px], errs


def test_bad_loss_scale_is_refused(clip_dir, tmp_path):
    ws = _frames(clip_dir, tmp_path)
    with pytest.raises(InputError, match="ba_loss_px"):
        run_sfm(ws, SfmConfig(ba_loss_px=-1.0))


def _turning_rec(rates_deg_s, fps=30.0):
    """A model whose camera pitches at the given rates (deg/s, one per frame step), no points."""
    from scipy.spatial.transform import Rotation

    from mannequin.io.cameras import CameraFrame, Intrinsics, Pose, to_reconstruction

    angles = np.concatenate([[0.0], np.cumsum(np.asarray(rates_deg_s, float) / fps)])
    intr = Intrinsics(500, 500, 320, 240, 640, 480)
    rots = Rotation.from_euler("x", angles[:, None], degrees=True).as_matrix()
    poses = [Pose(R, [0.01 * k, 0, 0]) for k, R in enumerate(rots)]
    frames = [CameraFrame.from_intrinsics(int(k * 1e6 / fps), intr, p) for k, p in enumerate(poses)]
    names = [f"{k:06d}.png" for k in range(len(frames))]
    return to_reconstruction(frames, names, 640, 480), {n: f.timestamp_us for n, f in zip(names, frames, strict=False)}


def test_rotation_reversal_flags_fast_turn_back():
    """TUM fr1/rpy: +55°/s pitch, then -50°/s from frame 12: rolling-shutter frames disagree (warned)."""
    from mannequin.sfm.diagnostics import rotation_reversal

    rec, ts = _turning_rec([55] * 10 + [20, -10] + [-50] * 12)
    out = rotation_reversal(rec, ts, 30.0)
    assert out["reversal"] and out["reversal_frame"] in ("000011", "000012")
    assert out["rate_before_deg_s"] == pytest.approx(55, abs=1)
    assert out["rate_after_deg_s"] == pytest.approx(50, abs=1)
    for rates in ([55] * 20, [20] * 8 + [-20] * 8, [60] * 8 + [0] * 8):  # one way, slow, or stopping
        assert not rotation_reversal(*_turning_rec(rates), 30.0)["reversal"]


def test_init_angle_schedule():
    """Restarts lower the initial-pair angle (4°, 2°, 1°) but never below 1° or the configured angle."""
    from mannequin.sfm.mapping import init_angle

    assert [init_angle(SfmConfig(), k) for k in range(4)] == [4.0, 2.0, 1.0, 1.0]
    assert init_angle(SfmConfig(init_min_tri_angle=0.5), 2) == 0.5


def test_exhaustive_matching_choice():
    """Fixed camera + short clip: exhaustive from the start; self-calibrated short clip: sequential
    first, exhaustive only as a fallback; long clips or a vocabulary tree: never."""
    from mannequin.sfm.colmap import exhaustive_fallback_allowed, exhaustive_first

    cfg = SfmConfig(exhaustive_max_frames=5)
    short, long_ = list("abcd"), list("abcdefgh")
    assert exhaustive_first(cfg, short, True) and not exhaustive_fallback_allowed(cfg, short, True)
    assert not exhaustive_first(cfg, short, False) and exhaustive_fallback_allowed(cfg, short, False)
    assert not exhaustive_first(cfg, long_, True) and not exhaustive_fallback_allowed(cfg, long_, False)
    tree = SfmConfig(exhaustive_max_frames=5, vocab_tree="/x/tree.bin")
    assert not exhaustive_first(tree, short, True) and not exhaustive_fallback_allowed(tree, short, False)


def test_sfm_is_reproducible(clip_dir, tmp_path):
    """Same frames, same seed: the same cameras, to the last digit (cfg.deterministic, the default)."""
    texts = []
    for k in range(2):
        ws = Workspace(tmp_path / f"ws{k}").create()
        extract_frames(clip_dir / "video.mp4", ws, FramesConfig())
        run_sfm(ws, SfmConfig(max_features=1024))
        texts.append(ws.cameras_txt.read_text())
    assert texts[0] == texts[1]


def test_far_off_prior_is_refit(clip_dir, tmp_path):
    """A 30° field-of-view prior on a 60° clip (focal prior 2x too long): the refined focal disagrees
    with the prior, registration runs again from it, and the focal comes out within 1%."""
    import json

    ws = _frames(clip_dir, tmp_path)
    run_sfm(ws, SfmConfig(max_features=2048, fov_deg=30.0, fov_candidates=()))
    calib = json.loads((ws.sfm_dir / "summary.json").read_text())["calibration"]
    priors = [s["fov_prior_deg"] for s in calib["starts"]]
    assert priors[0] == 30.0 and len(priors) >= 2 and set(priors[1:]) == {None}
    assert calib["chosen_refit"] and calib["starts"][1]["refit_of_prior_deg"] == 30.0
    assert calib["starts"][0]["superseded"]
    f_true = read_cameras(clip_dir / "cameras.txt").frames[0].fx
    assert abs(read_cameras(ws.cameras_txt).frames[0].fx / f_true - 1) < 0.01


def test_matching_options_follow_config():
    from mannequin.sfm.colmap import matching_options

    assert matching_options(SfmConfig(), True).guided_matching is True
    assert matching_options(SfmConfig(), False).guided_matching is False
    assert matching_options(SfmConfig(guided_matching="all"), False).guided_matching is True
    assert matching_options(SfmConfig(guided_matching="off"), True).guided_matching is False
    # Known poses: nothing to register, so no guiding unless asked for everywhere.
    assert matching_options(SfmConfig(), True, known_poses=True).guided_matching is False
    assert matching_options(SfmConfig(guided_matching="all"), True, known_poses=True).guided_matching is True
    with pytest.raises(InputError, match="guided_matching"):
        matching_options(SfmConfig(guided_matching="yes"), True)


def test_readout_warning_only_when_the_search_barely_chose():
    """The scores the auto search saw on TUM fr1/rpy: frames 30-59 (flat: SfM points 31% off the
    Kinect depth) get the warning, frames 0-29 (a clear minimum: 8% off) do not; nor does a clip
    with no readout applied or one given by the user."""
    from mannequin.sfm.diagnostics import readout_warning

    flat = {"readout_ms": 20.0, "gain": 0.036, "median_reprojection_px": {
        "0": 1.051, "10": 1.023, "15": 1.014, "20": 1.013, "25": 1.015, "30": 1.014, "35": 1.016, "40": 1.017}}
    clear = {"readout_ms": 25.0, "gain": 0.275, "median_reprojection_px": {
        "0": 1.074, "10": 0.987, "15": 0.958, "20": 0.822, "25": 0.778, "30": 0.807, "35": 0.886, "40": 0.93}}
    sure = SfmConfig().readout_sure_gain
    w = readout_warning(flat, sure)
    assert w and "20 ms" in w and "3.6%" in w and "1.013-1.023 px, none 1.051 px" in w and "--readout-ms" in w
    assert readout_warning(clear, sure) is None
    assert readout_warning({"readout_ms": 0.0, "mode": "auto", "median_reprojection_px": flat["median_reprojection_px"]},
                           sure) is None
    assert readout_warning({"readout_ms": 30.0, "mode": "given"}, sure) is None


def test_thin_model_test_counts_at_most_fifty_frames():
    """A long clip of one scene re-sees its points: 2306 points over 120 frames is not thin, while
    a short clip still needs min_points_per_frame per frame, and a long one at least 50 × that."""
    from types import SimpleNamespace

    from mannequin.sfm.mapping import THIN_TEST_MAX_FRAMES, good_enough

    def rec(reg, points):
        return SimpleNamespace(num_reg_images=lambda: reg, num_points3D=lambda: points)

    cfg = SfmConfig()
    assert THIN_TEST_MAX_FRAMES == 50 and cfg.min_points_per_frame == 20
    assert good_enough(rec(120, 2306), cfg, 120)
    assert not good_enough(rec(120, 999), cfg, 120)
    assert good_enough(rec(30, 600), cfg, 30) and not good_enough(rec(30, 599), cfg, 30)
    assert not good_enough(rec(119, 5000), cfg, 120)  # a frame left out: try again


def test_real_fountain_views_self_calibrated(shared_data, tmp_path):
    """Strecha fountain-P11 (11 real views, 3072×2048, downscaled to 640 px), self-calibrated from
    the 60° prior: every view registers, the camera centres lie within 1% of the path of the
    calibrated ones after Sim(3) (0.03% measured at 768 px by benchmarks/sfm.py) and the focal
    within 3% of the true one."""
    root = shared_data / "strecha_fountain-P11"
    cams = sorted((root / "gt_dense_cameras").glob("*.camera"))
    gt_c, gt_fx = {}, {}
    for cam in cams:
        v = [float(x) for x in cam.read_text().split()]
        name = cam.name[: -len(".jpg.camera")]
        gt_c[name] = np.array(v[21:24])               # camera centre
        gt_fx[name] = v[0] * 640 / v[24]               # focal at 640 px wide
    ws = Workspace(tmp_path / "ws").create()
    extract_frames(root / "images", ws, FramesConfig(max_size=640, blur_ratio=0.0))
    run_sfm(ws, SfmConfig(), seed=0)
    summary = json.loads((ws.sfm_dir / "summary.json").read_text())
    assert summary["registered"] == len(cams) == 11
    assert summary["motion_prior"] == {"applied": False, "skipped": "not a video (no frame times)"}
    est = read_cameras(ws.cameras_txt).frames
    stems = sorted(p.stem for p in (root / "images").glob("*.jpg"))
    rows = [ln.split(",") for ln in (ws.root / "frames.csv").read_text().splitlines()[1:]]
    names = [stems[int(r[1])] for r in rows if r[4] == "true"]  # source_index of each kept frame
    ate = ate_rmse(np.array([f.pose.center for f in est]), np.array([gt_c[n] for n in names]))
    assert ate["rmse_pct"] < 1.0, ate
    fx = est[0].fx * 640
    assert abs(fx / gt_fx[names[0]] - 1) < 0.03, (fx, gt_fx[names[0]])


def test_real_tum_clip_with_its_calibration_places_its_cameras_within_two_percent(tmp_path):
    """The shipped TUM fr1/rpy sample (30 frames of a handheld Kinect that mostly turns, as a
    video) with its calibration: the smooth-motion adjustment keeps the camera centres from
    jittering along the turn/translate ambiguity, so they lie within 2% of the path of the mocap
    after Sim(3): 0.8% measured, 2.3% without it (sfm.accel_sigma = 0)."""
    from pathlib import Path

    sample = Path(__file__).resolve().parents[2] / "data" / "samples" / "tum_fr1_rpy"
    ws = Workspace(tmp_path / "ws").create()
    extract_frames(sample / "video.mp4", ws, FramesConfig(max_size=640, blur_ratio=0.0))
    run_sfm(ws, SfmConfig(intrinsics=str(sample / "intrinsics.txt")), seed=0)
    summary = json.loads((ws.sfm_dir / "summary.json").read_text())
    assert summary["registered"] == 30 and summary["motion_prior"]["applied"]
    gt = {}
    for line in (sample / "groundtruth.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            v = line.split()
            gt[v[0]] = np.array([float(x) for x in v[2:5]])
    est = read_cameras(ws.cameras_txt).frames
    ate = ate_rmse(np.array([f.pose.center for f in est]), np.array([gt[n] for n in ws.image_names()]))
    assert ate["rmse_pct"] < 2.0, ate


# ------------------------------------------------------------------------------------------------
# Untested paths found by the audit of issue 3: too few frames registered, the camera model,
# a missing vocabulary tree, and glog kept off the terminal.
# ------------------------------------------------------------------------------------------------
GLOG_LINE = r"(?m)^[IWEF]\d{8} \d\d:\d\d:\d\d\.\d+ +\d+ \S+:\d+\]"


@pytest.fixture(scope="module")
def small_clip(tmp_path_factory):
    """A 10-frame 320×240 synthetic clip (seed 0), as a video and as frames/."""
    return synth(tmp_path_factory.mktemp("small"), seed=0, n_frames=10, width=320, height=240, video=True)


def _cli(*args, timeout=300):
    import subprocess
    import sys

    return subprocess.run([sys.executable, "-m", "mannequin", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout)


def _small_sfm_config(tmp_path, **sfm):
    """A --config file: few features, one mapping attempt per start (the tests' clips are tiny)."""
    path = tmp_path / "small.json"
    path.write_text(json.dumps({"sfm": {"max_features": 1024, "restarts": 1, **sfm}}))
    return path


def test_too_few_frames_registered_fails_in_one_line(small_clip, tmp_path):
    """8 frames of one synthetic scene and 8 of another (seed 4) in one folder: at most one scene's
    8 frames register, 50% of 16 < the 60% required, so `mannequin sfm` exits 1 with one line naming
    the counts, and writes no cameras."""
    import re
    import shutil

    other = synth(tmp_path / "other", seed=4, n_frames=8, width=320, height=240)
    folder = tmp_path / "mixed"
    folder.mkdir()
    for k, p in enumerate(sorted((small_clip / "frames").glob("*.png"))[:8]):
        shutil.copy(p, folder / f"a{k:02d}.png")
    for k, p in enumerate(sorted((other / "frames").glob("*.png"))):
        shutil.copy(p, folder / f"b{k:02d}.png")
    ws = tmp_path / "ws"
    assert _cli("frames", folder, "--out", ws, "--quiet").returncode == 0
    # (no exhaustive re-match nor further field-of-view starts: the same failure, in half the time)
    proc = _cli("sfm", ws, "--quiet", "--config",
                _small_sfm_config(tmp_path, exhaustive_fallback_below=0.0, fov_candidates=[]))
    assert proc.returncode == 1, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    m = re.fullmatch(r"mannequin sfm: error: only (\d+) of 16 frames registered \((\d+)% < 60% required\)", lines[0])
    assert m, lines[0]
    assert int(m.group(1)) in (8, 9) and int(m.group(2)) == round(100 * int(m.group(1)) / 16)
    assert not (ws / "cameras.txt").exists() and not (ws / "sparse").exists()


def test_opencv_camera_model_is_used_and_recorded(small_clip, tmp_path):
    """sfm.camera_model = "OPENCV": the shared camera is OPENCV (fx, fy, cx, cy, k1, k2, p1, p2) in the
    distorted model and the summary, the clip still registers accurately, and WS/sparse is the
    undistorted PINHOLE model of WS/images."""
    import pycolmap

    ws = _frames(small_clip, tmp_path)
    run_sfm(ws, SfmConfig(camera_model="OPENCV", max_features=1024, restarts=1))
    summary = json.loads((ws.sfm_dir / "summary.json").read_text())
    assert summary["camera_model"] == "OPENCV" and summary["registered"] == 10
    assert len(summary["camera_params_distorted"]) == 8
    distorted = pycolmap.Reconstruction(str(ws.sfm_dir / "work" / "model"))
    assert [c.model.name for c in distorted.cameras.values()] == ["OPENCV"]
    sparse = pycolmap.Reconstruction(str(ws.sparse_dir))
    assert [c.model.name for c in sparse.cameras.values()] == ["PINHOLE"]
    gt = read_cameras(small_clip / "cameras.txt")
    est = read_cameras(ws.cameras_txt)
    err = ate_rmse(np.array([f.pose.center for f in est.frames]), np.array([f.pose.center for f in gt.frames]))
    assert err["rmse_pct"] < 1.0, err


def test_missing_vocabulary_tree_fails_before_any_work(small_clip, tmp_path, monkeypatch):
    """Loop detection with a vocabulary-tree file that does not exist: a one-line InputError naming
    the file, raised before feature extraction (COLMAP would abort the process, or try to download)
    and before the workspace gets any output."""
    import mannequin.sfm.stage as sfm_mod

    ws = _frames(small_clip, tmp_path)

    def no_heavy_work(*a, **k):
        raise AssertionError("feature extraction started before the vocabulary tree was checked")

    monkeypatch.setattr(sfm_mod, "create_database", no_heavy_work)
    tree = tmp_path / "no such" / "tree.bin"
    with pytest.raises(InputError) as exc:
        run_sfm(ws, SfmConfig(vocab_tree=str(tree)))
    assert str(exc.value) == f"sfm.vocab_tree {tree}: vocabulary tree file not found (loop detection needs a local file)"
    assert not ws.sparse_dir.exists() and not ws.cameras_txt.exists()
    # the same through the CLI: exit 1, one line naming the file
    cli_ws = tmp_path / "cli_ws"
    assert _cli("frames", small_clip / "video.mp4", "--out", cli_ws, "--quiet", timeout=120).returncode == 0
    proc = _cli("sfm", cli_ws, "--quiet", "--config", _small_sfm_config(tmp_path, vocab_tree=str(tree)), timeout=60)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [
        f"mannequin sfm: error: sfm.vocab_tree {tree}: vocabulary tree file not found (loop detection needs a local file)"]


def test_glog_goes_to_the_log_not_the_terminal(small_clip, tmp_path):
    """`mannequin sfm` as a subprocess: COLMAP's glog lines (I/W/E + date) land in WS/logs/sfm.log,
    none on the terminal (stderr nor stdout)."""
    import re

    ws = tmp_path / "ws"
    assert _cli("frames", small_clip / "video.mp4", "--out", ws, "--quiet").returncode == 0
    proc = _cli("sfm", ws, "--config", _small_sfm_config(tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert not re.search(GLOG_LINE, proc.stderr), proc.stderr[:2000]
    assert not re.search(GLOG_LINE, proc.stdout), proc.stdout[:2000]
    log_text = (ws / "logs" / "sfm.log").read_text(errors="replace")
    assert re.search(GLOG_LINE, log_text), log_text[:2000]  # glog did write: to the log
    assert (ws / "cameras.txt").is_file()


def test_field_of_view_starts_run_side_by_side_in_prior_order(monkeypatch, tmp_path):
    """With little parallax the further field-of-view starts run in threads, each on its own copy
    of the database with its own focal prior; they come back in prior order, and the database is
    left with the last prior's focal, as after one start after the other."""
    import threading

    from mannequin.sfm import mapping

    db = tmp_path / "database.db"
    db.write_bytes(b"db")
    seen, focal_set = [], []

    def fake_start(job, out_dir, k, fov, focal):
        seen.append((k, fov, job.db_path.name, threading.current_thread() is threading.main_thread()))
        assert job.db_path.read_bytes() == b"db"
        return None if fov == 45.0 else {"fov_prior_deg": fov, "k": k, "rec": "model"}

    monkeypatch.setattr(mapping, "_start", fake_start)
    monkeypatch.setattr(mapping, "median_triangulation_angle", lambda rec: 1.0)  # little parallax
    monkeypatch.setattr(mapping, "set_focal", lambda path, f: focal_set.append((path.name, f)))
    cfg = SfmConfig()
    job = mapping.MappingJob(db, tmp_path, cfg, 0, 10, 640, False, 0.0)
    tries = mapping._fov_starts(job, tmp_path)
    priors = [cfg.fov_deg] + [f for f in cfg.fov_candidates if f != cfg.fov_deg]
    assert [t["fov_prior_deg"] for t in tries] == [f for f in priors if f != 45.0]
    assert seen[0] == (0, priors[0], "database.db", True)  # the first start decides, on the database
    assert sorted(s[2] for s in seen[1:]) == sorted(f"start{k}.db" for k in range(1, len(priors)))
    assert not any(s[3] for s in seen[1:])  # the others in worker threads
    assert focal_set == [("database.db", mapping.focal_from_fov(640, priors[-1]))]
    assert not list(tmp_path.glob("start*.db"))  # the copies are removed


def test_bundle_adjustment_rounds_stop_once_the_cameras_settle():
    """The robust adjustment runs in rounds and stops after one that moved no camera: the focal by
    at most BA_SETTLED (relative), the other intrinsics by at most BA_SETTLED, no centre by more
    than BA_SETTLED of the scene."""
    from mannequin.sfm.mapping import BA_SETTLED, _settled

    f, o, c = np.array([500.0]), np.array([[320.0, 240.0, 0.01]]), np.zeros((3, 3))
    assert _settled((f, o, c), (f * (1 + 0.5 * BA_SETTLED), o + 0.5 * BA_SETTLED, c + 0.5 * BA_SETTLED), 1.0)
    assert not _settled((f, o, c), (f * (1 + 2 * BA_SETTLED), o, c), 1.0)
    assert not _settled((f, o, c), (f, o + 2 * BA_SETTLED, c), 1.0)
    moved = c.copy()
    moved[1, 0] = 2 * BA_SETTLED * 10.0
    assert not _settled((f, o, c), (f, o, moved), 10.0) and _settled((f, o, c), (f, o, moved), 100.0)
    assert not _settled((f, o, c), (f, o, c[:2]), 1.0)  # a camera more or less: not settled
