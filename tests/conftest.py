"""Shared fixtures: the location of ../shared/data (tests that need it skip cleanly without it)."""
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


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
