import json
import re

import pytest

from mannequin.config import STAGES, Config, preset
from mannequin.errors import InputError


def test_presets_differ_and_round_trip():
    fast, default, quality = preset("fast"), preset("default"), preset("quality")
    assert fast.stereo.n_planes < default.stereo.n_planes < quality.stereo.n_planes
    for cfg in (fast, default, quality):
        again = Config.from_json(cfg.to_json())
        assert again == cfg
        assert again.hash() == cfg.hash()
    assert len({fast.hash(), default.hash(), quality.hash()}) == 3


def test_hash_is_stable_across_processes():
    # The hash is of canonical JSON, so it does not depend on dict order or the process.
    import subprocess
    import sys

    code = "from mannequin.config import preset; print(preset('quality').hash())"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == preset("quality").hash()


def test_stage_hash_changes_only_downstream():
    base = Config()
    changed = base.replace(stereo={"n_planes": 64})
    for stage in STAGES:
        same = base.stage_hash(stage) == changed.stage_hash(stage)
        assert same == (STAGES.index(stage) < STAGES.index("stereo")), stage


def test_partial_file_and_bad_options(tmp_path):
    p = tmp_path / "cfg.json"
    p.write_text(json.dumps({"stereo": {"n_planes": 32, "depth_percentiles": [2, 98]}}))
    cfg = Config.load(p)
    assert cfg.stereo.n_planes == 32 and cfg.stereo.depth_percentiles == (2.0, 98.0)
    assert cfg.frames == Config().frames
    for bad, msg in [({"stereo": {"n_plane": 3}}, "unknown option stereo.n_plane"),
                     ({"nope": {}}, "unknown section"),
                     ({"stereo": {"n_planes": "many"}}, "must be an integer"),
                     ({"fuse": {"average": 1}}, "true or false")]:
        p.write_text(json.dumps(bad))
        with pytest.raises(InputError, match=msg) as exc:
            Config.load(p)
        assert str(p) in str(exc.value)
    p.write_text("{not json")
    with pytest.raises(InputError, match="not a valid JSON"):
        Config.load(p)
    with pytest.raises(InputError, match="unknown preset"):
        preset("turbo")


@pytest.mark.parametrize("override,needle", [
    ({"labels": {"png_max": 70000}}, "labels.png_max = 70000"),   # PNGs would saturate
    ({"labels": {"png_max": 0}}, "labels.png_max = 0"),           # every PNG would be zero
    ({"sfm": {"mapper": "globl"}}, "sfm.mapper = 'globl'"),        # found only after feature extraction
    ({"sfm": {"camera_model": "OPENCVV"}}, "sfm.camera_model = 'OPENCVV'"),
    ({"fuse": {"rel_depth": float("nan")}}, "fuse.rel_depth = nan"),
    ({"fuse": {"voxel_size": -1.0}}, "fuse.voxel_size = -1.0"),
    ({"fuse": {"n_neighbors": 0}}, "fuse.n_neighbors = 0"),
    ({"fuse": {"min_valid_fraction": 2.0}}, "fuse.min_valid_fraction = 2.0"),
    ({"stereo": {"depth_percentiles": [99, 1]}}, "stereo.depth_percentiles"),
    ({"stereo": {"n_planes": 1}}, "stereo.n_planes = 1"),
    ({"stereo": {"top_k": 0}}, "stereo.top_k = 0"),
    ({"stereo": {"depth_margin": float("inf")}}, "stereo.depth_margin = inf"),
    ({"sfm": {"max_features": 0}}, "sfm.max_features = 0"),
    ({"sfm": {"intrinsics": 123}}, "sfm.intrinsics = 123"),
    ({"frames": {"fps": "abc"}}, "frames.fps = 'abc'"),
    ({"frames": {"max_size": 5}}, "frames.max_size = 5"),
    ({"seed": -1}, "seed = -1"),
    ({"seed": 2 ** 70}, "seed = "),
])
def test_values_out_of_range_are_refused_before_any_stage(override, needle):
    from mannequin.config import preset, validate

    with pytest.raises(InputError, match=re.escape(needle)):
        Config.from_dict(override, source="cfg.json")
    for name in ("fast", "default", "quality"):
        assert validate(preset(name)) == preset(name)


def test_documented_special_values_are_accepted():
    """0 = off, -1 = auto, a negative max_behind_frac disables the free-space test (the labels
    benchmark's diagnostic row uses it)."""
    Config.from_dict({"fuse": {"max_behind_frac": -1.0, "noise_tolerance": 0.0, "noise_margin": 0.0,
                               "min_confidence": 0.0, "speckle_px": 0, "edge_px": 0, "voxel_size": 0.0},
                      "stereo": {"shift": -1, "smooth": -1, "probe_frames": 0},
                      "sfm": {"readout_ms": -1.0, "accel_sigma": 0.0, "max_focal_spread": 0.0, "ba_loss_px": 0.0,
                              "exhaustive_max_frames": 0, "restarts": 0},
                      "frames": {"max_size": 0, "max_frames": 0, "blur_ratio": 0.0, "min_motion": 0.0, "fps": None}})



@pytest.mark.parametrize("override,needle", [
    ({"sfm": {"readout_ms": 5000.0}}, "sfm.readout_ms 5000: expected -1 (auto), 0 (global shutter)"),
    ({"sfm": {"readout_candidates_ms": [10.0, -1.0]}}, "sfm.readout_candidates_ms [10.0, -1.0]: expected readout times"),
    ({"sfm": {"readout_candidates_ms": []}}, "sfm.readout_candidates_ms []: expected readout times"),
    ({"sfm": {"ba_loss_px": 200.0}}, "sfm.ba_loss_px 200.0: expected a loss scale"),
    ({"stereo": {"window": 4}}, "stereo.window / stereo.window_candidates: 4 is not an odd integer >= 3"),
    ({"stereo": {"window_candidates": [9, 10]}}, "stereo.window / stereo.window_candidates: 10 is not an odd integer"),
    ({"stereo": {"window_min_agreement": 1.5}}, "stereo.window_min_agreement 1.5: expected a share in [0, 1]"),
])
def test_finer_checks_run_when_a_config_is_built_and_on_a_bare_section(override, needle):
    """check_section applies RULES then the finer checks to one section (no source prefix); validate
    applies it to every section with the source prefixed."""
    from mannequin.config import SECTIONS, check_section

    with pytest.raises(InputError, match=re.escape(f"cfg.json: {needle}")):
        Config.from_dict(override, source="cfg.json")
    [(name, options)] = override.items()
    bare = SECTIONS[name](**{k: tuple(v) if isinstance(v, list) else v for k, v in options.items()})
    with pytest.raises(InputError, match="^" + re.escape(needle)):
        check_section(bare)
    check_section(SECTIONS[name]())


def test_check_section_applies_rules_before_finer_checks():
    from mannequin.config import FramesConfig, SfmConfig, check_section

    with pytest.raises(InputError, match=re.escape("frames.max_size = 5: expected 0 (keep) or 32..16384 px")):
        check_section(FramesConfig(max_size=5))
    with pytest.raises(InputError, match=re.escape("sfm.accel_sigma = -1.0")):  # a RULE, before readout_ms
        check_section(SfmConfig(readout_ms=5000.0, accel_sigma=-1.0))
    with pytest.raises(InputError, match=re.escape("x.json: frames.stride = 0")):
        check_section(FramesConfig(stride=0), "x.json")


@pytest.mark.parametrize("flag,value,needle", [
    ("--max-size", -3, "--max-size -3: must be between 0 (keep) and 16384 px"),
    ("--max-size", 16, "--max-size 16: too small for stereo (use at least 32 px)"),
    ("--fps", 0.0, "--fps 0: must be a frame rate between 0 and 10000"),
    ("--readout-ms", 5000.0, "--readout-ms 5000: expected -1 (auto)"),
])
def test_command_line_flags_are_checked_under_their_names(flag, value, needle):
    from mannequin.config import with_flag

    with pytest.raises(InputError, match="^" + re.escape(needle)):
        with_flag(Config(), flag, value)
    assert with_flag(Config(), "--max-size", 0).frames.max_size == 0
    assert with_flag(Config(), "--readout-ms", 20.0).sfm.readout_ms == 20.0
