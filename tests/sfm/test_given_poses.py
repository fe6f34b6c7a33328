"""sfm.given_poses on MC-style synthetic clips: "use" keeps a camera file's poses, "refine" brings
perturbed ones back (cameras and labels), "check" measures them against SfM; and the pure parts
(the Sim(3) alignment, the camera moves, the seeded perturbation)."""
import json

import numpy as np
import pytest

from conftest import fast_config
from mannequin.config import Config, SfmConfig
from mannequin.errors import InputError
from mannequin.evaluate import evaluate
from mannequin.io.cameras import Pose, read_cameras, write_cameras
from mannequin.pipeline import run_stage, run_video
from mannequin.sfm.given_poses import align_to_given, camera_moves, perturb_poses, transform_pose
from mannequin.testing.synth import synth
from mannequin.workspace import Workspace

#: The perturbation: about ORB-SLAM's errors on MC (1° RMS turn, 3% of the ~6.5 m scene depth).
ROTATION_DEG, CENTRE_SD = 1.0, 0.2
URL = "https://www.youtube.com/watch?v=synthetic"


def _rotation(axis, deg):
    axis = np.asarray(axis, float) / np.linalg.norm(axis)
    K = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    a = np.radians(deg)
    return np.eye(3) + np.sin(a) * K + (1 - np.cos(a)) * K @ K


def _trajectory(n=6, line=False):
    poses = []
    for k in range(n):
        c = [0.3 * k, 0.0, 0.0] if line else [0.3 * k, 0.1 * k * k, 0.05 * k]
        poses.append(Pose.from_cam_to_world(_rotation([0.1, 1, 0.2], 5 * k), c))
    return poses


@pytest.mark.parametrize("line", [False, True])
def test_alignment_recovers_a_similarity_even_on_a_straight_line(line):
    given = _trajectory(line=line)
    s, A, t = 0.37, _rotation([1, 2, 3], 40), np.array([1.0, -2.0, 0.5])
    # est = given in another world: X_est = (A^T (X_given - t)) / s
    est = [transform_pose(p, 1 / s, A.T, -A.T @ t / s) for p in given]
    s2, A2, t2 = align_to_given(given, est)
    assert s2 == pytest.approx(s, rel=1e-9)
    np.testing.assert_allclose(A2, A, atol=1e-9)
    np.testing.assert_allclose(t2, t, atol=1e-9)


def test_camera_moves_measures_each_camera_in_median_depths():
    given = {f"{k:06d}": p for k, p in enumerate(_trajectory())}
    est = {n: transform_pose(p, 2.0, np.eye(3), np.zeros(3)) for n, p in given.items()}  # twice the scale
    moved = dict(est)
    last = sorted(given)[-1]
    R, c = est[last].R, est[last].center  # turn the last camera by 2° and move it by 0.1 (est units)
    moved[last] = Pose.from_cam_to_world((_rotation([0, 1, 0], 2.0) @ R).T, c + [0.1, 0, 0])
    same = camera_moves("check", given, est, median_depth_est=4.0)
    assert same["median_rotation_deg"] < 1e-6 and same["max_centre_move_rel"] < 1e-9
    assert same["scale"] == pytest.approx(0.5) and same["median_depth"] == pytest.approx(2.0)
    out = camera_moves("refine", given, moved, median_depth_est=4.0)
    assert set(out) >= {"mode", "median_rotation_deg", "median_centre_move_rel", "max_rotation_deg",
                        "max_centre_move_rel", "frames"}
    assert out["mode"] == "refine" and set(out["frames"]) == set(given)
    worst = max(out["frames"], key=lambda n: out["frames"][n]["rotation_deg"])
    assert worst == last and out["max_rotation_deg"] == pytest.approx(2.0, rel=0.3)
    assert out["max_centre_move_rel"] == pytest.approx(0.1 / 4.0, rel=0.3)
    assert camera_moves("check", dict(list(given.items())[:1]), est, 1.0)["compared"] == 1  # too few: no figures


def test_perturbation_is_seeded_and_of_the_asked_size():
    frames = read_cameras_like(_trajectory(n=200))
    a = perturb_poses(frames, 3, 1.0, 0.2)
    b = perturb_poses(frames, 3, 1.0, 0.2)
    assert all(np.array_equal(x.pose.matrix, y.pose.matrix) for x, y in zip(a, b, strict=True))
    assert a[0].timestamp_us == frames[0].timestamp_us and a[0].fx == frames[0].fx
    ident = camera_moves("x", {str(i): f.pose for i, f in enumerate(frames)},
                         {str(i): f.pose for i, f in enumerate(a)}, 1.0)
    rot = [v["rotation_deg"] for v in ident["frames"].values()]
    assert np.sqrt(np.mean(np.square(rot))) == pytest.approx(1.0, rel=0.2)


def read_cameras_like(poses):
    from mannequin.io.cameras import CameraFrame, Intrinsics

    intr = Intrinsics(200.0, 200.0, 128.0, 96.0, 256, 192)
    return [CameraFrame.from_intrinsics(k * 100_000, intr, p) for k, p in enumerate(poses)]


def test_given_poses_option_is_range_checked():
    with pytest.raises(InputError, match=r"sfm.given_poses = 'fix': expected 'use', 'refine' or 'check'"):
        Config.from_dict({"sfm": {"given_poses": "fix"}})
    assert SfmConfig().given_poses == "use"


# --- MC-style clips: a video and camera files that list every 3rd frame ------------------------

@pytest.fixture(scope="module")
def mc_clip(tmp_path_factory):
    """A 30-frame 256×192 synthetic video; ``exact.txt`` and ``perturbed.txt`` list frames 0, 3 … 27."""
    root = tmp_path_factory.mktemp("mc")
    clip = synth(root / "clip", seed=3, n_frames=30, width=256, height=192, video=True)
    frames = read_cameras(clip / "cameras.txt").frames[::3]
    write_cameras(root / "exact.txt", frames, url=URL)
    write_cameras(root / "perturbed.txt", perturb_poses(frames, 7, ROTATION_DEG, CENTRE_SD), url=URL)
    return root


def _config(mode):
    return fast_config(frames={"max_size": 0, "blur_ratio": 0.0, "pose_timestamps": True}, sfm={"given_poses": mode})


@pytest.fixture(scope="module")
def exact_run(mc_clip):
    return run_video(mc_clip / "clip" / "video.mp4", mc_clip / "exact", poses=mc_clip / "exact.txt", config=_config("use"))


@pytest.fixture(scope="module")
def refined_run(mc_clip):
    return run_video(mc_clip / "clip" / "video.mp4", mc_clip / "refined", poses=mc_clip / "perturbed.txt",
                     config=_config("refine"))


def _camera_error(cameras, exact):
    """Median rotation (degrees) and centre error (pose units) of ``cameras`` against the exact ones
    after a Sim(3) alignment (the given frame is itself only known up to the perturbation's mean)."""
    est = {str(i): f.pose for i, f in enumerate(read_cameras(cameras).frames)}
    gt = {str(i): f.pose for i, f in enumerate(read_cameras(exact).frames)}
    err = camera_moves("gt", gt, est, median_depth_est=1.0)
    return err["median_rotation_deg"], err["median_centre_move_rel"] * err["median_depth"]


def test_use_keeps_the_given_poses_and_says_so(exact_run, mc_clip):
    summary = json.loads((exact_run.sfm_dir / "summary.json").read_text())
    assert summary["given_poses"] == {"mode": "use"}
    assert json.loads(exact_run.report_json.read_text())["stages"]["sfm"]["given_poses"] == {"mode": "use"}
    assert _camera_error(exact_run.cameras_txt, mc_clip / "exact.txt") == pytest.approx((0.0, 0.0), abs=1e-6)


def test_refine_brings_perturbed_poses_back(refined_run, mc_clip):
    before_rot, before_cen = _camera_error(mc_clip / "perturbed.txt", mc_clip / "exact.txt")
    after_rot, after_cen = _camera_error(refined_run.cameras_txt, mc_clip / "exact.txt")
    assert after_rot < before_rot / 10 and after_cen < before_cen / 10, (before_rot, after_rot, before_cen, after_cen)
    block = json.loads((refined_run.sfm_dir / "summary.json").read_text())["given_poses"]
    assert block["mode"] == "refine" and sorted(block["frames"]) == [f"{i:06d}" for i in range(0, 30, 3)]
    # The reported moves are the perturbation's size: ~1° turns, centres moved ~3% of the depth.
    assert 0.4 < block["median_rotation_deg"] < 2.0 and 0.005 < block["median_centre_move_rel"] < 0.08, block
    assert abs(block["scale"] - 1) < 1e-6  # aligned back onto the given poses
    report = json.loads(refined_run.report_json.read_text())["stages"]["sfm"]["given_poses"]
    assert report["median_centre_move_rel"] == block["median_centre_move_rel"] and "frames" not in report


def test_refined_labels_are_as_accurate_as_exact_ones(exact_run, refined_run, mc_clip):
    # One scale per clip: the refined poses keep the given scale, which the perturbation shifted
    # (as ORB-SLAM's poses have an arbitrary one).
    exact = evaluate(exact_run, mc_clip / "clip" / "depth", fit_scale=True)["clip"]
    refined = evaluate(refined_run, mc_clip / "clip" / "depth", fit_scale=True)["clip"]
    assert refined["absrel"] <= 1.5 * exact["absrel"], (exact, refined)
    assert refined["density"] > 0.8 * exact["density"], (exact, refined)


def test_check_runs_sfm_at_the_file_timestamps_and_measures_the_given_poses(mc_clip, tmp_path):
    """"check" ignores the poses (SfM runs) but the frames still come at the file's timestamps; the
    exact poses are within a hair of SfM's, the perturbed ones off by the perturbation."""
    cfg = _config("check")
    blocks = {}
    for name in ("exact", "perturbed"):
        ws = Workspace(tmp_path / name)
        for stage in ("frames", "sfm"):
            run_stage(ws, stage, cfg, input_path=mc_clip / "clip" / "video.mp4", poses=mc_clip / f"{name}.txt")
        assert ws.frame_names() == [f"{i:06d}" for i in range(0, 30, 3)]
        summary = json.loads((ws.sfm_dir / "summary.json").read_text())
        assert summary["mode"] == "sfm" and summary["registered"] == 10
        blocks[name] = summary["given_poses"]
    exact, perturbed = blocks["exact"], blocks["perturbed"]
    assert exact["mode"] == "check" and abs(exact["focal_ratio"] - 1) < 0.02, exact
    assert exact["median_rotation_deg"] < 0.1 and exact["median_centre_move_rel"] < 0.002, exact
    assert perturbed["median_rotation_deg"] > 5 * exact["median_rotation_deg"], perturbed
    assert perturbed["median_centre_move_rel"] > 5 * exact["median_centre_move_rel"], perturbed


@pytest.mark.parametrize("mode", ["refine", "check"])
def test_refine_or_check_without_a_camera_file_is_refused(mode, tmp_path):
    """No silent fallback to plain SfM: the option names what it needs."""
    from mannequin.config import SfmConfig
    from mannequin.errors import InputError
    from mannequin.sfm import run_sfm
    from mannequin.workspace import Workspace

    with pytest.raises(InputError, match=f"sfm.given_poses = '{mode}' needs a camera file"):
        run_sfm(Workspace(tmp_path / "ws"), SfmConfig(given_poses=mode), poses=None)
    assert not (tmp_path / "ws").exists()


def test_run_video_refuses_refine_without_a_camera_file_before_any_work(tmp_path):
    from mannequin.config import preset
    from mannequin.errors import InputError
    from mannequin.pipeline import run_video

    clip = tmp_path / "clip.mp4"
    clip.write_bytes(b"not looked at")
    with pytest.raises(InputError, match="needs a camera file"):
        run_video(clip, tmp_path / "ws", config=preset("fast").replace(sfm={"given_poses": "refine"}))
    assert not (tmp_path / "ws").exists()
