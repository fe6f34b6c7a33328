"""run_video: one code path, stamps, skipping and invalidation, report.json."""
import json
import time

import numpy as np

from conftest import fast_config
from mannequin.config import STAGES
from mannequin.pipeline import run_video


def test_run_video_outputs_and_report(tiny_run, tiny_clip):
    ws = tiny_run
    names = ws.image_names()
    assert len(names) == 10
    for n in names:
        label = np.load(ws.label_path(n))
        assert label.dtype == np.float32 and label.shape == (144, 192)
        assert (ws.labels_dir / f"{n}.png").exists() and (ws.labels_dir / f"{n}.dynamic.png").exists()
        assert (ws.stereo_dir / "depth_maps" / f"{n}.png.geometric.bin").exists()
    report = json.loads(ws.report_json.read_text())
    assert set(report["stages"]) == set(STAGES)
    for s in STAGES:
        assert report["stages"][s]["seconds"] >= 0 and report["stages"][s]["peak_mb"] > 0
    assert report["verdict"]["verdict"] in ("accepted", "rejected")
    assert report["config"] == fast_config().to_dict()
    assert (ws.preview_dir / "report.html").exists() and ws.fused_ply.exists()
    for s in STAGES:
        assert ws.read_stamp(s)["hash"]


def test_second_run_skips_everything(tiny_run, tiny_clip):
    before = {s: tiny_run.read_stamp(s) for s in STAGES}
    states = []
    t0 = time.perf_counter()
    run_video(tiny_clip / "video.mp4", tiny_run.root, poses=tiny_clip / "cameras.txt", config=fast_config(),
              on_stage=lambda stage, state: states.append((stage, state)))
    assert time.perf_counter() - t0 < 30
    assert [st for _, st in states if st != "running"] == ["skipped"] * len(STAGES)
    assert {s: tiny_run.read_stamp(s) for s in STAGES} == before


def test_changed_stereo_option_reruns_stereo_and_later(tiny_clip, tmp_path):
    cfg = fast_config()
    ws = run_video(tiny_clip / "video.mp4", tmp_path / "ws", poses=tiny_clip / "cameras.txt", config=cfg)
    states = []
    run_video(tiny_clip / "video.mp4", ws.root, poses=tiny_clip / "cameras.txt",
              config=cfg.replace(stereo={"n_planes": 24}), on_stage=lambda s, st: states.append((s, st)))
    done = {s: st for s, st in states if st != "running"}
    assert done == {"frames": "skipped", "sfm": "skipped", "stereo": "done", "fuse": "done", "labels": "done"}
    assert json.loads(ws.report_json.read_text())["config"]["stereo"]["n_planes"] == 24


def test_labels_are_accurate_on_tiny_clip(tiny_run, tiny_clip):
    """Known poses: labels within a few percent of the exact synthetic depth."""
    errs, dens = [], []
    for n in tiny_run.image_names():
        label = np.load(tiny_run.label_path(n))
        gt = np.load(tiny_clip / "depth" / f"{n}.npy")
        m = label > 0
        errs.append(np.median(np.abs(label[m] - gt[m]) / gt[m]))
        dens.append(m.mean())
    assert np.median(errs) < 0.01
    assert np.mean(dens) > 0.3


def test_demo_sample_real_cones_views(tmp_path):
    """The demo's input, 9 real Middlebury Cones views (data/samples/middlebury_cones), through the
    whole pipeline with SfM poses: labels within 2% AbsRel on 75% of the GT pixels, one scale per
    clip, against the structured-light depth (1.32% at 84% when measured, benchmarks/labels.py)."""
    from pathlib import Path

    from mannequin.config import Config
    from mannequin.evaluate import evaluate

    sample = Path(__file__).resolve().parents[1] / "data" / "samples" / "middlebury_cones"
    ws = run_video(sample / "images", tmp_path / "ws", config=Config.load(sample / "config.json"))
    clip = evaluate(ws, sample / "gt")["clip"]
    assert clip["scale_fitted"] and clip["frames"] == 2
    assert clip["absrel"] < 0.02 and clip["density"] > 0.75, clip
    report = json.loads((ws.root / "report.json").read_text())
    assert report["verdict"]["accepted"], report["verdict"]


def test_pose_timestamps_take_the_camera_files_frames(tiny_clip, tmp_path):
    """frames.pose_timestamps: a camera file listing every 3rd frame of the video (the way the MC
    dataset lists a subset of a YouTube video) gives exactly those frames, with their poses kept;
    without the option the line count must match the sampled frames; a timestamp that is no frame
    of the video, or no camera file at all, is a one-line error."""
    import pytest

    from mannequin.errors import InputError
    from mannequin.io.cameras import read_cameras

    lines = (tiny_clip / "cameras.txt").read_text().splitlines()
    sub = tmp_path / "every3.txt"
    sub.write_text("\n".join([lines[0]] + lines[1::3]) + "\n")      # frames 0, 3, 6, 9
    cfg = fast_config(frames={"max_size": 0, "blur_ratio": 0.0, "pose_timestamps": True})
    ws = run_video(tiny_clip / "video.mp4", tmp_path / "ws", poses=sub, config=cfg)
    rows = [ln.split(",") for ln in ws.frames_csv.read_text().splitlines()[1:]]
    assert [int(r[1]) for r in rows] == [0, 3, 6, 9] and all(r[4] == "true" for r in rows)
    given, got = read_cameras(sub).frames, read_cameras(ws.cameras_txt).frames
    assert [f.timestamp_us for f in got] == [f.timestamp_us for f in given]
    for a, b in zip(given, got, strict=False):
        np.testing.assert_allclose(b.pose.matrix, a.pose.matrix, atol=1e-6)
    assert all(np.load(ws.label_path(n)).any() for n in ws.image_names())

    with pytest.raises(InputError, match="camera lines"):  # the option off: counts must match
        run_video(tiny_clip / "video.mp4", tmp_path / "ws_off", poses=sub, config=fast_config())
    late = tmp_path / "late.txt"
    last = lines[-1].split(" ", 1)
    late.write_text("\n".join([lines[0], lines[1], f"{int(last[0]) + 10_000_000} {last[1]}"]) + "\n")
    with pytest.raises(InputError, match=r"late\.txt line 3: timestamp .* is no frame"):
        run_video(tiny_clip / "video.mp4", tmp_path / "ws_late", poses=late, config=cfg)
    with pytest.raises(InputError, match="pass the file with --poses"):
        run_video(tiny_clip / "video.mp4", tmp_path / "ws_none", config=cfg)


def test_new_input_leaves_no_stale_frames(tiny_run, tiny_clip, tmp_path):
    """Re-running a workspace on another input (here the same frames under other names) replaces
    its per-frame outputs: no label, depth map, COLMAP map or preview of the old frames stays."""
    import shutil

    ws_root = tmp_path / "ws"
    shutil.copytree(tiny_run.root, ws_root)
    folder = tmp_path / "renamed"
    folder.mkdir()
    for i, p in enumerate(sorted((tiny_clip / "frames").glob("*.png"))):
        shutil.copy(p, folder / f"a{i}.png")
    ws = run_video(folder, ws_root, poses=tiny_clip / "cameras.txt", config=fast_config())
    new = {f"a{i}" for i in range(10)}
    assert set(ws.image_names()) == new
    for folder, _cut in ((ws.labels_dir, 1), (ws.depth_dir, 1), (ws.preview_dir, 1),
                        (ws.stereo_dir / "depth_maps", 2), (ws.stereo_dir / "normal_maps", 2)):
        stems = {p.name.split(".")[0] for p in folder.iterdir()} - {"index", "qc", "contact_sheet", "report"}
        assert stems == new, (folder, sorted(stems - new))


def test_interrupted_rerun_leaves_nothing_that_looks_finished(tiny_run, tiny_clip, tmp_path, monkeypatch):
    """Ctrl-C in a fuse re-run with new options: the old labels, index.csv, fused.ply and report
    are gone rather than mixed with the new frames, eval refuses the workspace, and the next run
    completes."""
    import shutil

    import pytest

    import mannequin.fuse.stage
    from mannequin.errors import InputError
    from mannequin.evaluate import evaluate

    ws_root = tmp_path / "ws"
    shutil.copytree(tiny_run.root, ws_root)
    real = mannequin.fuse.stage.filter_from_votes
    calls = []

    def interrupt_third(*a, **k):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(mannequin.fuse.stage, "filter_from_votes", interrupt_third)
    cfg = fast_config(fuse={"rel_depth": 0.02})
    with pytest.raises(KeyboardInterrupt):
        run_video(tiny_clip / "video.mp4", ws_root, poses=tiny_clip / "cameras.txt", config=cfg)
    ws = type(tiny_run)(ws_root)
    assert len(list(ws.labels_dir.glob("??????.npy"))) == 2
    for gone in (ws.labels_dir / "index.csv", ws.labels_dir / "qc.json", ws.fused_ply, ws.preview_dir / "report.html"):
        assert not gone.exists(), gone
    with pytest.raises(InputError, match="stage fuse has not finished"):
        evaluate(ws, tiny_clip / "depth")
    monkeypatch.setattr(mannequin.fuse.stage, "filter_from_votes", real)
    run_video(tiny_clip / "video.mp4", ws_root, poses=tiny_clip / "cameras.txt", config=cfg)
    assert len(list(ws.labels_dir.glob("??????.npy"))) == 10 and (ws.labels_dir / "index.csv").exists()
    assert evaluate(ws, tiny_clip / "depth")["clip"]["density"] > 0.3


def test_stage_command_on_a_workspace_missing_earlier_outputs(tiny_run, tmp_path):
    """'mannequin stereo WS' after WS/images was deleted: a clear error, not a skip that leaves fuse
    to fail later."""
    import shutil

    import pytest

    from mannequin.errors import InputError
    from mannequin.pipeline import run_stage

    shutil.copytree(tiny_run.root, tmp_path / "ws")
    ws = type(tiny_run)(tmp_path / "ws")
    (ws.stamps_dir / "frames.json").write_text("[]")  # a corrupt earlier stamp: not finished
    with pytest.raises(InputError, match="stage frames has not finished"):
        run_stage(ws, "stereo", fast_config())
    shutil.copy(tiny_run.stamps_dir / "frames.json", ws.stamps_dir / "frames.json")
    shutil.rmtree(ws.images_dir)
    with pytest.raises(InputError, match="outputs of stage sfm are missing"):
        run_stage(ws, "stereo", fast_config())


def test_colmap_maps_can_be_turned_off(tiny_run, tmp_path):
    """labels.colmap_maps false: only the labels stage re-runs, and it writes no COLMAP depth or
    normal maps (most of a workspace's size) while the labels and their index are unchanged."""
    import shutil

    from mannequin.pipeline import run_stage

    shutil.copytree(tiny_run.root, tmp_path / "ws")
    ws = type(tiny_run)(tmp_path / "ws")
    before = (ws.labels_dir / "index.csv").read_text()
    assert any((ws.stereo_dir / "depth_maps").iterdir())
    assert run_stage(ws, "labels", fast_config(labels={"colmap_maps": False})) == "done"
    assert not (ws.stereo_dir / "depth_maps").exists() and not (ws.stereo_dir / "normal_maps").exists()
    assert (ws.labels_dir / "index.csv").read_text() == before


def test_corrupt_workspace_files_are_named(tiny_run, tiny_clip, tmp_path):
    """A truncated label map (eval, labels), NaN in a label map (labels), and views.json with the
    wrong shape (fuse): one clear error naming the file, nothing written."""
    import json
    import shutil

    import pytest

    from mannequin.errors import InputError
    from mannequin.evaluate import evaluate
    from mannequin.pipeline import run_stage

    shutil.copytree(tiny_run.root, tmp_path / "ws")
    ws = type(tiny_run)(tmp_path / "ws")
    name = ws.image_names()[3]
    good = ws.label_path(name).read_bytes()
    ws.label_path(name).write_bytes(good[:100])
    with pytest.raises(InputError, match=f"{name}.npy: not a readable .npy map"):
        evaluate(ws, tiny_clip / "depth")
    with pytest.raises(InputError, match=f"{name}.npy: not a readable .npy map"):
        run_stage(ws, "labels", fast_config(labels={"png_max": 60000}))
    nan = np.load(ws.depth_path(name)) * np.nan
    np.save(ws.label_path(name), nan.astype(np.float32))
    with pytest.raises(InputError, match="holds NaN or inf"):
        run_stage(ws, "labels", fast_config(labels={"png_max": 60000}))
    (ws.stereo_dir / "views.json").write_text(json.dumps({f"{name}.png": "x"}))
    with pytest.raises(InputError, match="views.json: expected an object of frames"):
        run_stage(ws, "fuse", fast_config(fuse={"rel_depth": 0.02}))


def test_stage_log_in_workspace_even_with_quiet(tiny_clip, tmp_path, monkeypatch, capsys):
    """WS/logs/mannequin.log keeps every stage's start and end (and its INFO messages) with time
    stamps, --quiet or not; a failed stage's reason goes there too, and once to stderr."""
    from mannequin import cli, pipeline
    from mannequin.errors import StageError

    cfg = tmp_path / "cfg.json"
    cfg.write_text(fast_config().to_json())
    ws = tmp_path / "ws"
    args = ["run", str(tiny_clip / "video.mp4"), "--out", str(ws), "--poses", str(tiny_clip / "cameras.txt"),
            "--config", str(cfg), "--quiet"]

    def broken_fuse(*a, **k):
        raise StageError("the fuse stage broke on purpose")

    monkeypatch.setitem(pipeline._STAGE_FUNCS, "fuse", broken_fuse)
    assert cli.main(args) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "broke on purpose" in err[0]
    text = (ws / "logs" / "mannequin.log").read_text()
    for stage in ("frames", "sfm", "stereo"):
        assert f"ws: {stage} started" in text and f"ws: {stage} done in" in text
    assert "ERROR mannequin.pipeline: ws: fuse failed: the fuse stage broke on purpose" in text
    assert "labels started" not in text
    monkeypatch.undo()
    assert cli.main(args) == 0
    lines = (ws / "logs" / "mannequin.log").read_text().splitlines()
    assert lines[:len(text.splitlines())] == text.splitlines()  # appended, nothing lost
    assert any("ws: labels done in" in ln for ln in lines) and not any("ws: stereo started" in ln for ln in
                                                                         lines[len(text.splitlines()):])
    assert all(ln[:4].isdigit() and " INFO " in ln or " ERROR " in ln or " WARNING " in ln for ln in lines)


def test_stage_command_with_options_of_an_earlier_stage_changed(tiny_run, tmp_path, capsys):
    """'mannequin sfm WS --max-size 96' on frames extracted at another size: refused with a clear
    line (it used to skip sfm as up to date), nothing written; a later stage's own option is fine."""
    import shutil

    from mannequin import cli

    shutil.copytree(tiny_run.root, tmp_path / "ws")
    ws = tmp_path / "ws"
    before = {p: p.read_bytes() for p in ws.rglob("*.json")}
    assert cli.main(["sfm", str(ws), "--max-size", "96", "--quiet"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "stage frames was run with other options" in err[0], err
    assert {p: p.read_bytes() for p in ws.rglob("*.json")} == before
    cfg = tmp_path / "labels.json"
    cfg.write_text('{"labels": {"png_max": 60000}}')
    assert cli.main(["labels", str(ws), "--config", str(cfg), "--quiet"]) == 0
