"""Shared fixtures (the location of ../shared/data: tests that need it skip cleanly without it; a
tiny synthetic clip and one pipeline run on it) and the ``slow`` marker of the tests in SLOW."""
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"

# Tests marked ``slow`` (setup.cfg registers the marker): `make test` runs every test, `make test-fast`
# (pytest -m "not slow") the others.  Each entry is a node-id prefix, a module ("tests/x.py") or a test
# ("tests/x.py::test_name", which also covers its parametrized cases), relative to the repository.
# How the list was chosen: from measured durations on 2 cores shared with other jobs (so about twice
# the times of an idle machine).  First a full run (--durations=25: all 506 tests in 20 min there):
# every test of 11 s and more.  Then one run of the rest (-m "not slow" --durations=30: 7 min there):
# every test of 7 s and more, counting the set-up of a module-scoped fixture that only slow tests
# use (a pipeline or batch run shared by a module's tests) with its first test, and the whole module
# where every test is slow.  The tests that use the session-wide `tiny_run` and take little time
# beyond it stay fast: the fast run pays for that one pipeline run once.
# tests/test_make.py::test_slow_list_names_existing_tests keeps the entries pointing at real tests.
SLOW = (
    # structure from motion on synthetic and real clips
    "tests/sfm/test_sfm.py::test_sfm_recovers_synthetic_trajectory",
    "tests/sfm/test_sfm.py::test_fast_global_shutter_clip_gets_no_readout",
    "tests/sfm/test_sfm.py::test_given_readout_corrects_keypoints_and_frames",
    "tests/sfm/test_sfm.py::test_known_poses_are_kept_exactly",
    "tests/sfm/test_sfm.py::test_known_poses_skip_the_lines_of_dropped_frames",
    "tests/sfm/test_sfm.py::test_static_camera_fails_clearly",
    "tests/sfm/test_sfm.py::test_pure_rotation_fails_clearly",
    "tests/sfm/test_sfm.py::test_self_calibration_recovers_focal_and_distortion",
    "tests/sfm/test_sfm.py::test_robust_loss_pins_weakly_observed_focal",
    "tests/sfm/test_sfm.py::test_sfm_is_reproducible",
    "tests/sfm/test_sfm.py::test_far_off_prior_is_refit",
    "tests/sfm/test_sfm.py::test_real_fountain_views_self_calibrated",
    "tests/sfm/test_sfm.py::test_real_tum_clip_with_its_calibration_places_its_cameras_within_two_percent",
    "tests/sfm/test_sfm.py::test_too_few_frames_registered_fails_in_one_line",
    "tests/sfm/test_sfm.py::test_opencv_camera_model_is_used_and_recorded",
    "tests/sfm/test_sfm.py::test_glog_goes_to_the_log_not_the_terminal",
    "tests/sfm/test_motion_prior.py::test_the_prior_removes_centre_jitter_that_the_images_leave_free",
    "tests/sfm/test_given_poses.py::test_use_keeps_the_given_poses_and_says_so",  # module fixtures: pipeline runs
    "tests/sfm/test_given_poses.py::test_refine_brings_perturbed_poses_back",
    "tests/sfm/test_given_poses.py::test_refined_labels_are_as_accurate_as_exact_ones",
    "tests/sfm/test_given_poses.py::test_check_runs_sfm_at_the_file_timestamps_and_measures_the_given_poses",
    # the stereo stage on whole synthetic clips
    "tests/stereo/test_stereo.py::test_ground_sweep_finds_the_floor_and_sharpens_it",
    "tests/stereo/test_stereo.py::test_stage_on_a_synthetic_clip_with_gt_poses_is_within_one_percent",
    "tests/stereo/test_stereo.py::test_blurred_clip_gets_a_larger_window_and_resumes_with_it",
    # whole-pipeline runs of their own: in-process, in a subprocess, on a terminal, through make
    "tests/fuse/test_fusion.py::test_moving_person_is_masked_and_unlabelled",  # module fixture moving_run
    "tests/test_pipeline.py::test_changed_stereo_option_reruns_stereo_and_later",
    "tests/test_pipeline.py::test_demo_sample_real_cones_views",
    "tests/test_pipeline.py::test_new_input_leaves_no_stale_frames",
    "tests/test_pipeline.py::test_stage_log_in_workspace_even_with_quiet",
    "tests/test_evaluate.py::test_eval_reads_16bit_png_with_depth_scale_like_npy",
    "tests/test_evaluate.py::test_eval_gt_intrinsics_compares_distorted_gt_through_3d_points",
    "tests/test_cli.py::test_cli_run_and_eval",
    "tests/test_cli.py::test_kill_mid_stereo_then_resume_matches_uninterrupted",
    "tests/test_cli.py::test_progress_bars_with_eta_on_a_terminal_only",
    "tests/test_bad_inputs.py::test_bad_input[static camera]",
    "tests/test_bad_inputs.py::test_bad_input[pure camera rotation]",
    "tests/test_bad_inputs.py::test_positive_controls_spaces_unicode_grey_rgba_and_stray_files",
    "tests/test_make.py::test_make_rule_per_video",
    "tests/test_make.py::test_make_rule_with_pose_timestamps",
    "tests/test_interrupt.py",  # the whole module: every test kills or fails a run and resumes it
    # Dask clusters: first_batch (a whole batch run, module fixture) and its two users; killed workers
    "tests/test_batch.py::test_corrupt_video_fails_alone",
    "tests/test_batch.py::test_second_run_skips_finished_work",
    "tests/test_batch.py::test_killed_worker_is_replaced_and_its_video_completes",
    "tests/test_batch.py::test_largest_first_and_never_more_tasks_than_worker_threads",
    # the Numba cache warm-up into an empty cache (module fixture `warmed`: a cold compile, 40-90 s) and its users
    "tests/test_warmup.py::test_warm_up_covers_what_it_runs",
    "tests/test_warmup.py::test_first_sweep_after_warm_up_compiles_nothing",
    "tests/test_warmup.py::test_first_run_after_warm_up_compiles_nothing",
    # mannequin mc: a synthetic dataset through the batch path (module fixture `dataset`, 25-35 s) and its users
    "tests/mc/test_mc_run.py",
)


def _is_slow(nodeid: str) -> bool:
    return any(nodeid == p or nodeid.startswith((p + "::", p + "[")) for p in SLOW)


def pytest_collection_modifyitems(config, items):
    for item in items:
        if _is_slow(item.nodeid):
            item.add_marker(pytest.mark.slow)


@pytest.fixture
def shared_data():
    """Path to ../shared/data, or skip the test naming the missing folder."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data folder {SHARED_DATA} is absent")
    return SHARED_DATA


def fast_config(**over):
    """A small, quick configuration for tests on tiny clips."""
    from mannequin.config import preset

    cfg = preset("fast").replace(frames={"max_size": 0, "blur_ratio": 0.0},
                                 sfm={"max_features": 1024, "restarts": 1},
                                 stereo={"n_planes": 32, "n_sources": 4},
                                 fuse={"min_kept_frames": 4, "speckle_px": 20})
    return cfg.replace(**over) if over else cfg


@pytest.fixture(scope="session")
def tiny_clip(tmp_path_factory):
    """A 10-frame 192×144 synthetic clip: video.mp4, frames/, depth/ (GT), cameras.txt (GT)."""
    from mannequin.testing.synth import synth

    return synth(tmp_path_factory.mktemp("tiny"), seed=5, n_frames=10, width=192, height=144, video=True)


@pytest.fixture(scope="session")
def tiny_run(tiny_clip, tmp_path_factory):
    """The whole pipeline on the tiny clip with its known poses; returns the Workspace."""
    from mannequin.pipeline import run_video

    return run_video(tiny_clip / "video.mp4", tmp_path_factory.mktemp("run") / "ws",
                     poses=tiny_clip / "cameras.txt", config=fast_config())
