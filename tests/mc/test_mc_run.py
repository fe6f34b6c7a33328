"""``mannequin mc`` on a synthetic MC-style dataset, through the batch path on a 2-process Dask cluster.

Two tiny synthetic clips (12 frames, 96×72) are the videos ``AAAAAAAAAAA.mp4`` and ``BBBBBBBBBBB.mp4``;
the camera files list every 3rd frame under YouTube-style URL lines, in two folders (``train/``,
``test/``): two sequences cut from clip A, one from clip B, two whose video is missing (one URL),
one whose timestamps run past its video, one that does not parse, and one id in both folders.
The dataset is run once (module fixture); the tests read its outputs, read them back, and re-run it.
"""
import csv
import json
import shutil
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("distributed")

from conftest import fast_config  # noqa: E402
from mannequin.cli import main  # noqa: E402
from mannequin.errors import InputError  # noqa: E402
from mannequin.mc import FRAME_COLUMNS, INDEX_COLUMNS, read_dataset, run_mc  # noqa: E402

CFG = fast_config(frames={"max_size": 0, "blur_ratio": 0.0}, fuse={"min_kept_frames": 1, "speckle_px": 20})
DONE = {"a_train": 4, "a_test": 4, "b_train": 4}   # sequence -> its frames (camera file lines)


def tree(folder):
    """(relative path, size, mtime) of every file under ``folder``, sorted."""
    return sorted((str(p.relative_to(folder)), p.stat().st_size, p.stat().st_mtime_ns)
                  for p in Path(folder).rglob("*") if p.is_file())


def subset(lines, url, start, extra=()):
    """A camera file's text: ``url``, then every 3rd frame line of ``lines`` from ``start``, then ``extra``."""
    return "\n".join([url, *lines[1 + start::3], *extra]) + "\n"


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    from mannequin.testing.synth import synth

    base = tmp_path_factory.mktemp("mc")
    videos, cams = base / "videos", base / "cams"
    videos.mkdir()
    lines = {}
    for seed, vid in [(1, "AAAAAAAAAAA"), (2, "BBBBBBBBBBB")]:
        clip = synth(base / f"clip{seed}", seed=seed, n_frames=12, width=96, height=72, video=True)
        shutil.copy(clip / "video.mp4", videos / f"{vid}.mp4")
        lines[vid] = (clip / "cameras.txt").read_text().splitlines()
    a, b = lines["AAAAAAAAAAA"], lines["BBBBBBBBBBB"]
    past = " ".join(["9000000", *a[-1].split()[1:]])      # 9 s: the clip lasts 0.37 s
    files = {
        "train/a_train.txt": subset(a, "https://www.youtube.com/watch?v=AAAAAAAAAAA", 0),
        "test/a_test.txt": subset(a, "https://youtu.be/AAAAAAAAAAA", 1),          # the same video, other frames
        "train/b_train.txt": subset(b, "https://www.youtube.com/shorts/BBBBBBBBBBB", 0),
        "test/gone.txt": subset(b, "https://www.youtube.com/watch?v=MISSINGxxxx", 0),
        "train/gone_too.txt": subset(b, "https://www.youtube.com/watch?v=MISSINGxxxx", 2),
        "test/past_end.txt": subset(a, "https://youtu.be/AAAAAAAAAAA", 0, [past]),
        "train/broken.txt": "https://youtu.be/AAAAAAAAAAA\n0 0.8 1.1 0.5\n",
        "train/twice.txt": subset(b, "https://youtu.be/BBBBBBBBBBB", 0),
        "test/twice.txt": subset(b, "https://youtu.be/BBBBBBBBBBB", 1),
    }
    for rel, text in files.items():
        (cams / rel).parent.mkdir(parents=True, exist_ok=True)
        (cams / rel).write_text(text)
    inputs = tree(base)
    root = base / "out"
    t0 = time.perf_counter()
    rows = run_mc([cams / "train", cams / "test"], videos, root, config=CFG, workers=2)
    return {"base": base, "cams": cams, "videos": videos, "root": root, "rows": rows, "inputs": inputs,
            "seconds": time.perf_counter() - t0}


def test_states_reasons_and_status_files(dataset):
    rows = {r["name"]: r for r in dataset["rows"]}
    names = [r["name"] for r in dataset["rows"]]
    assert names == sorted(names) and names.count("twice") == 2    # id order; each file of a duplicate id fails
    assert {n: r["state"] for n, r in rows.items()} == {
        "a_test": "done", "a_train": "done", "b_train": "done", "broken": "failed", "gone": "missing",
        "gone_too": "missing", "past_end": "failed", "twice": "failed"}
    assert rows["broken"]["reason"] == f"{dataset['cams'] / 'train' / 'broken.txt'}:2: expected 19 columns, found 4"
    assert "past_end.txt line 6: timestamp 9000000 µs is no frame of" in rows["past_end"]["reason"]
    assert "duplicate sequence id 'twice'" in rows["twice"]["reason"]
    assert rows["gone"]["reason"].startswith(f"video not found: {dataset['videos'] / 'MISSINGxxxx'}.*")
    assert all("\n" not in r["reason"] for r in rows.values())
    on_disk = list(csv.DictReader((dataset["root"] / "status.csv").open()))
    assert [(r["name"], r["state"]) for r in on_disk] == [(r["name"], r["state"]) for r in dataset["rows"]]
    summary = json.loads((dataset["root"] / "status.json").read_text())["summary"]
    assert (summary["done"], summary["failed"], summary["missing"], summary["skipped"]) == (3, 4, 2, 0)


def test_index_frames_and_missing_videos(dataset):
    root = dataset["root"]
    assert (root / "missing_videos.txt").read_text() == "https://www.youtube.com/watch?v=MISSINGxxxx\n"
    index = {r["id"]: r for r in csv.DictReader((root / "index.csv").open())}
    assert list(next(csv.reader((root / "index.csv").open()))) == INDEX_COLUMNS
    frames = list(csv.DictReader((root / "frames.csv").open()))
    assert list(next(csv.reader((root / "frames.csv").open()))) == FRAME_COLUMNS
    for seq, n in DONE.items():
        row = index[seq]
        assert (row["state"], row["frames"], row["pose_mode"], row["median_rotation_deg"]) == ("done", str(n), "use", "")
        mine = [f for f in frames if f["id"] == seq]
        assert int(row["labelled_frames"]) == len(mine) >= 1 and 0 < float(row["mean_labelled_fraction"]) <= 1
        assert row["verdict"] in ("accepted", "rejected") and row["video"].endswith(".mp4")
        assert all((root / f[c]).is_file() for f in mine for c in ("image", "label", "confidence", "mask"))
    # a_test is cut from clip A at frames 1, 4, 7, 10: the names are those source frames
    assert {f["name"] for f in frames if f["id"] == "a_test"} <= {"000001", "000004", "000007", "000010"}
    assert {f["name"] for f in frames if f["id"] == "a_train"} <= {"000000", "000003", "000006", "000009"}
    assert index["gone"]["state"] == "missing" and index["gone"]["labelled_frames"] == ""
    assert index["twice"]["camera_file"] and index["broken"]["workspace"] == ""


def test_frames_csv_poses_are_the_camera_files(dataset):
    """frames.csv's timestamp and pose of each frame are the camera file's line for that frame, and
    its intrinsics that line's, in pixels of the 96×72 images."""
    from mannequin.io.cameras import read_cameras

    frames = list(csv.DictReader((dataset["root"] / "frames.csv").open()))
    given = {c.timestamp_us: c for c in read_cameras(dataset["cams"] / "test" / "a_test.txt").frames}
    mine = [f for f in frames if f["id"] == "a_test"]
    for f in mine:
        cam = given[int(f["timestamp_us"])]
        pose = np.array([float(f[c]) for c in FRAME_COLUMNS[-12:]]).reshape(3, 4)
        assert np.array_equal(pose, np.hstack([cam.pose.R, cam.pose.t[:, None]]))
        assert float(f["fx"]) == pytest.approx(cam.fx * 96) and float(f["cy"]) == pytest.approx(cam.cy * 72)


def test_read_dataset_shapes_and_sequence_filter(dataset):
    data = read_dataset(dataset["root"])
    n = len(list(csv.DictReader((dataset["root"] / "frames.csv").open())))
    assert len(data) == n and data.sequences == sorted(DONE)
    item = data[0]
    assert set(item) == {"sequence", "name", "timestamp_us", "image", "label", "confidence", "mask", "K", "pose"}
    assert item["image"].shape == (72, 96, 3) and item["image"].dtype == np.uint8
    assert item["label"].shape == (72, 96) and item["label"].dtype == np.float32 and (item["label"] > 0).any()
    assert item["confidence"].shape == (72, 96) and item["confidence"].dtype == np.float32
    assert item["mask"].shape == (72, 96) and item["mask"].dtype == bool
    assert item["K"].shape == (3, 3) and item["pose"].shape == (3, 4)
    assert np.allclose(item["pose"][:, :3] @ item["pose"][:, :3].T, np.eye(3))
    only = read_dataset(dataset["root"], sequences=["b_train"])
    assert {d["sequence"] for d in only} == {"b_train"} and len(only) == sum(1 for d in data if d["sequence"] == "b_train")
    assert len(read_dataset(dataset["root"], sequences="gone")) == 0       # in the index, no labelled frame
    with pytest.raises(InputError, match="no sequence nothere in index.csv"):
        read_dataset(dataset["root"], sequences=["nothere"])
    with pytest.raises(InputError, match="no frames.csv"):
        read_dataset(dataset["base"])


def test_nothing_written_outside_root(dataset):
    now = [t for t in tree(dataset["base"]) if not t[0].startswith("out/")]
    assert now == dataset["inputs"]


def test_second_run_skips_finished_sequences_and_retries_failed(dataset, capsys):
    """A re-run starts no cluster for finished sequences; the failed one that has a video is run again
    (and fails again); the CLI exits 0 when every present sequence succeeded."""
    cams, root = dataset["cams"], dataset["root"]
    t0 = time.perf_counter()
    rows = run_mc([cams / "train", cams / "test"], dataset["videos"], root, config=CFG, workers=1)
    assert {r["name"]: r["state"] for r in rows if r["state"] != "failed"} == {
        "a_test": "skipped", "a_train": "skipped", "b_train": "skipped", "gone": "missing", "gone_too": "missing"}
    assert [r["name"] for r in rows if r["state"] == "failed"] == ["broken", "past_end", "twice", "twice"]
    assert time.perf_counter() - t0 < 30
    cfg = dataset["base"] / "cfg.json"
    cfg.write_text(CFG.to_json())
    code = main(["mc", str(cams / "train" / "a_train.txt"), str(cams / "test" / "gone.txt"), "--videos",
                 str(dataset["videos"]), "--out", str(root), "--config", str(cfg), "--quiet"])
    out = capsys.readouterr()
    assert code == 0, out.err
    assert "missing: 1 videos" in out.out and out.err == ""
    assert [r["state"] for r in csv.DictReader((root / "status.csv").open())] == ["skipped", "missing"]


def test_refine_poses_reports_the_camera_move_in_the_index(dataset, tmp_path):
    """--refine-poses reaches the sfm stage (sfm.given_poses = refine) and index.csv reports its mode and
    the median camera move from sfm/summary.json (exact poses: a small move)."""
    rows = run_mc([dataset["cams"] / "train" / "a_train.txt"], dataset["videos"], tmp_path / "out", config=CFG,
                  workers=1, refine_poses=True)
    assert [r["state"] for r in rows] == ["done"], rows
    [row] = csv.DictReader((tmp_path / "out" / "index.csv").open())
    assert row["pose_mode"] == "refine"
    assert 0 <= float(row["median_rotation_deg"]) < 1 and 0 <= float(row["median_centre_move_rel"]) < 0.05
    assert json.loads((tmp_path / "out" / "a_train" / "config.json").read_text())["sfm"]["given_poses"] == "refine"
