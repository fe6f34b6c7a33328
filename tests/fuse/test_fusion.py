"""Stage fuse/labels: moving people masked, frame QC, atomic label files, exports."""
import json

import imageio.v3 as iio
import numpy as np
import pytest

from conftest import fast_config
from mannequin.labels import read_index
from mannequin.pipeline import run_video
from mannequin.testing.synth import synth


@pytest.fixture(scope="module")
def moving_run(tmp_path_factory):
    clip = synth(tmp_path_factory.mktemp("mv"), seed=0, n_frames=10, width=192, height=144, video=True, moving=True)
    ws = run_video(clip / "video.mp4", tmp_path_factory.mktemp("mvrun") / "ws", poses=clip / "cameras.txt",
                   config=fast_config())
    return clip, ws


def test_moving_person_is_masked_and_unlabelled(moving_run):
    clip, ws = moving_run
    covered, static = [], []
    for n in ws.image_names():
        dyn = iio.imread(ws.labels_dir / f"{n}.dynamic.png") > 0
        label = np.load(ws.label_path(n))
        truth = iio.imread(clip / "dynamic" / f"{n}.png") > 0
        assert not (label[dyn] > 0).any()  # masked pixels get no label
        static.append((dyn & ~truth).mean())
        if truth.sum() > 50:
            covered.append((label[truth] > 0).mean())  # the mover is (almost) never labelled
    # the mask marks only pixels that would get a label (tests/fuse/test_consistency.py checks that
    # it finds a mover's); on this 10-frame clip the consistency test already drops the mover
    assert np.median(covered) < 0.05
    assert np.mean(static) < 0.01


def test_frame_under_20_percent_is_dropped_with_reason(tiny_run, tmp_path):
    from mannequin.config import Config
    from mannequin.pipeline import run_stage

    ws = tiny_run
    cfg = Config.from_dict(json.loads(ws.config_json.read_text()))
    victim = ws.image_names()[3]
    depth = np.load(ws.depth_path(victim))
    cut = depth.copy()
    cut[:, depth.shape[1] // 10:] = 0  # stereo found depth in only a tenth of this frame
    np.save(ws.depth_path(victim), cut)
    try:
        run_stage(ws, "fuse", cfg, force=True)
        run_stage(ws, "labels", cfg, force=True)
        rows = {r["name"]: r for r in read_index(ws.labels_dir / "index.csv")}
        assert rows[victim]["kept"] is False and "valid fraction" in rows[victim]["reason"]
        assert sum(r["kept"] for r in rows.values()) >= 8
        assert (ws.labels_dir / f"{victim}.npy").exists()  # dropped frames still get their file
        report = json.loads(ws.report_json.read_text())
        assert report["stages"]["labels"]["kept"] == sum(r["kept"] for r in rows.values())
    finally:
        np.save(ws.depth_path(victim), depth)
        run_stage(ws, "fuse", cfg, force=True)
        run_stage(ws, "labels", cfg, force=True)


def test_png_labels_match_npy_and_scale(tiny_run):
    ws = tiny_run
    rows = read_index(ws.labels_dir / "index.csv")
    for r in rows[:3]:
        label = np.load(ws.label_path(r["name"]))
        png = iio.imread(ws.labels_dir / f"{r['name']}.png")
        assert png.dtype == np.uint16
        np.testing.assert_allclose(png / r["png_scale"], label, atol=0.6 / r["png_scale"])
        assert ((png == 0) == (label == 0)).all()


def test_colmap_depth_maps_are_readable(tiny_run):
    import pycolmap

    n = tiny_run.image_names()[0]
    dm = pycolmap.DepthMap()
    dm.read(str(tiny_run.stereo_dir / "depth_maps" / f"{n}.png.geometric.bin"))
    np.testing.assert_allclose(dm.to_array(), np.load(tiny_run.label_path(n)), rtol=1e-6)


def test_label_writes_are_atomic(tiny_run, monkeypatch, tmp_path):
    """A failure while writing a label leaves the previous file intact and no temporary behind."""
    from mannequin import workspace

    target = tmp_path / "x.npy"
    workspace.save_npy(target, np.ones((4, 4), np.float32))

    def boom(fh, arr):
        fh.write(b"partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(np, "save", boom)
    with pytest.raises(OSError, match="No space"):
        workspace.save_npy(target, np.zeros((4, 4), np.float32))
    monkeypatch.undo()
    np.testing.assert_array_equal(np.load(target), 1)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.npy"]


def test_voxel_accumulator_matches_independent_average_and_ignores_order():
    from mannequin.fuse.stage import VoxelAccumulator

    rng = np.random.default_rng(3)
    pts = rng.normal(size=(3000, 3)) * [1.0, 0.5, 2.0]
    col = rng.integers(0, 256, size=(3000, 3)).astype(np.uint8)
    voxel = 0.25
    # independent: a dict keyed by the integer cell
    groups = {}
    for p, c in zip(pts, col, strict=False):
        groups.setdefault(tuple(np.floor(p / voxel).astype(int)), []).append((p, c))
    want = {k: (np.mean([g[0] for g in v], 0), np.mean([g[1] for g in v], 0) / 255) for k, v in groups.items()}

    def run(order, flush):
        acc = VoxelAccumulator(voxel, flush_points=flush)
        for chunk in np.array_split(order, 7):
            acc.add(pts[chunk], col[chunk])
        return acc.result()

    a_pts, a_col = run(np.arange(len(pts)), 10**9)
    b_pts, b_col = run(rng.permutation(len(pts)), 50)  # other order, many small flushes
    assert len(a_pts) == len(want)
    np.testing.assert_allclose(a_pts, b_pts, atol=1e-12)
    np.testing.assert_allclose(a_col, b_col, atol=1e-12)
    for p, c in zip(a_pts, a_col, strict=False):
        wp, wc = want[tuple(np.floor(p / voxel).astype(int))]
        np.testing.assert_allclose(p, wp, atol=1e-12)
        np.testing.assert_allclose(c, wc, atol=1e-12)


def test_voxel_accumulator_rejects_bad_input():
    from mannequin.fuse.stage import VoxelAccumulator

    with pytest.raises(ValueError, match="voxel"):
        VoxelAccumulator(0.0)
    with pytest.raises(ValueError, match="colours"):
        VoxelAccumulator(1.0).add(np.zeros((3, 3)), np.zeros((2, 3)))


def test_noise_band_only_spares_labels(tiny_run, tmp_path):
    """The fuse stage measures the clip's depth noise between probe frames (about 1% on the tiny
    32-plane clip; 0.3% on the default 384x288 synthetic clips, where 3x that stays inside
    rel_depth and changes nothing).  The band only turns behind/in-front votes into no evidence:
    without it the labels are a subset of those with it, with the same depths."""
    import dataclasses
    import shutil

    from mannequin.fuse.stage import run_fuse
    from mannequin.workspace import Workspace

    fuse = json.loads(tiny_run.report_json.read_text())["stages"]["fuse"]
    cfg = fast_config().fuse
    assert 0 < fuse["depth_noise_rel"] < 0.02
    assert fuse["noise_band_rel"] == pytest.approx(cfg.noise_margin * fuse["depth_noise_rel"], rel=1e-3)
    ws = Workspace(tmp_path / "ws")
    shutil.copytree(tiny_run.root, ws.root)
    info = run_fuse(ws, dataclasses.replace(cfg, noise_margin=0.0)).report
    assert info["noise_band_rel"] == 0.0 and info["depth_noise_rel"] == fuse["depth_noise_rel"]
    assert (info["rel_depth"], info["min_views"]) == (fuse["rel_depth"], fuse["min_views"])
    assert fuse["moving_rel"] == pytest.approx(cfg.moving_noise * fuse["depth_noise_rel"], rel=1e-3)
    assert 0 <= fuse["mean_moving_fraction"] < 0.01
    more = 0
    for n in tiny_run.image_names():
        without, with_band = np.load(ws.label_path(n)), np.load(tiny_run.label_path(n))
        assert not ((without > 0) & (with_band == 0)).any()
        both = (without > 0) & (with_band > 0)
        np.testing.assert_array_equal(without[both], with_band[both])
        more += int((with_band > 0).sum() - (without > 0).sum())
    assert more >= 0


def test_adapt_to_noise_widens_the_test_only_on_noisy_footage():
    """The agreement test follows the clip's depth noise: unchanged on sharp footage (0.3%) and
    when the noise is unknown or the adaptation is off; on 3% noise it becomes 1.2 x 3% from one
    more view."""
    import dataclasses

    from mannequin.config import FuseConfig
    from mannequin.fuse.stage import adapt_to_noise

    cfg = FuseConfig()
    assert adapt_to_noise(cfg, 0.003) is cfg
    assert adapt_to_noise(cfg, float("nan")) is cfg
    assert adapt_to_noise(cfg, cfg.rel_depth / cfg.noise_tolerance) is cfg  # at the threshold: unchanged
    noisy = adapt_to_noise(cfg, 0.03)
    assert noisy.rel_depth == pytest.approx(cfg.noise_tolerance * 0.03)
    assert noisy.min_views == cfg.min_views + 1
    assert dataclasses.replace(noisy, rel_depth=cfg.rel_depth, min_views=cfg.min_views) == cfg
    off = dataclasses.replace(cfg, noise_tolerance=0.0)
    assert adapt_to_noise(off, 0.03) is off


def test_motion_evidence_follows_the_depth_noise():
    """A source is evidence of motion beyond moving_noise x the clip's depth noise; an unmeasured
    noise falls back to the agreement test's tolerance, and moving_noise 0 turns the mask off."""
    import dataclasses

    from mannequin.config import FuseConfig
    from mannequin.fuse.stage import motion_rel

    cfg = FuseConfig()
    assert motion_rel(cfg, 0.004) == pytest.approx(cfg.moving_noise * 0.004)
    assert motion_rel(cfg, float("nan")) == pytest.approx(cfg.moving_noise * cfg.rel_depth)
    assert motion_rel(dataclasses.replace(cfg, moving_noise=0.0), 0.004) == 0.0
