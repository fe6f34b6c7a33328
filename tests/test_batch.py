"""mannequin.batch: inputs and manifests, failure isolation, a killed worker, resuming a batch.

The cluster tests use tiny synthetic clips (8 frames, 160×120) with their exact camera files (no
SfM) and a fast config; each starts a 2-process Dask LocalCluster.
"""
import csv
import json
import os
import re
import signal
import threading
import time
from pathlib import Path

import pytest

pytest.importorskip("distributed")

from mannequin.batch import (  # noqa: E402
    Job,
    expand_inputs,
    format_summary,
    is_finished,
    local_cluster,
    process_video,
    run_batch,
    write_status,
)
from mannequin.config import preset  # noqa: E402
from mannequin.errors import InputError  # noqa: E402

FAST = preset("fast").replace(frames={"max_size": 160}, stereo={"n_planes": 24, "n_sources": 3},
                              fuse={"min_kept_frames": 1})


def touch(path, text="x"):
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


# --- inputs (no cluster) -----------------------------------------------------------------------

def test_folder_lists_videos_sorted_case_insensitive(tmp_path):
    for n in ["b.MP4", "a.mov", "c.webm", "notes.txt", "d.M4V", "frame.png"]:
        touch(tmp_path / "in" / n)
    (tmp_path / "in" / "sub.mp4").mkdir()          # a folder is not a video
    jobs = expand_inputs([tmp_path / "in"])
    assert [j.video.name for j in jobs] == ["a.mov", "b.MP4", "c.webm", "d.M4V"]
    assert [j.name for j in jobs] == ["a", "b", "c", "d"]
    assert all(j.cameras is None for j in jobs)


def test_folders_of_images_are_clips(tmp_path):
    """An image folder is one clip (docs/FORMATS.md: INPUT is a video or a folder of images); a folder of
    image folders is a dataset, one clip per sub-folder; a folder with neither is an error."""
    for n in ["000.png", "001.png", "notes.txt"]:
        touch(tmp_path / "shots" / "clipA" / n)
    touch(tmp_path / "shots" / "clipB" / "x.jpg")
    touch(tmp_path / "shots" / "empty" / "readme.md")
    jobs = expand_inputs([tmp_path / "shots" / "clipA"])
    assert [(j.name, j.video) for j in jobs] == [("clipA", (tmp_path / "shots" / "clipA").absolute())]
    assert [j.name for j in expand_inputs([tmp_path / "shots"])] == ["clipA", "clipB"]
    with pytest.raises(InputError, match="empty: no videos, images or folders of images"):
        expand_inputs([tmp_path / "shots" / "empty"])


def test_csv_manifest_relative_paths_comments_and_names(tmp_path):
    touch(tmp_path / "m" / "v" / "one.mp4")
    touch(tmp_path / "m" / "v" / "one.txt")
    touch(tmp_path / "elsewhere" / "one.mp4")
    manifest = touch(tmp_path / "m" / "list.csv",
                     "# my clips\nvideo,cameras,name\nv/one.mp4,v/one.txt,\n\n"
                     f"{tmp_path / 'elsewhere' / 'one.mp4'},,other\n")
    jobs = expand_inputs([manifest])
    assert [(j.name, j.video, j.cameras) for j in jobs] == [
        ("one", (tmp_path / "m" / "v" / "one.mp4").absolute(), (tmp_path / "m" / "v" / "one.txt").absolute()),
        ("other", (tmp_path / "elsewhere" / "one.mp4").absolute(), None)]
    # without a header the columns are video[,cameras] by position
    jobs = expand_inputs([touch(tmp_path / "m" / "plain.csv", "v/one.mp4,v/one.txt\n")])
    assert jobs[0].cameras == (tmp_path / "m" / "v" / "one.txt").absolute()
    with pytest.raises(InputError, match="unknown manifest column"):
        expand_inputs([touch(tmp_path / "m" / "bad.csv", "video,poses\na.mp4,b.txt\n")])


def test_txt_manifest(tmp_path):
    touch(tmp_path / "my clip.mp4")
    manifest = touch(tmp_path / "list.txt", "# comment\n'my clip.mp4'   cams.txt  # trailing comment\n\n"
                                            "/abs/other.mkv\n")
    jobs = expand_inputs([manifest])
    assert [(j.name, j.video, j.cameras) for j in jobs] == [
        ("my clip", (tmp_path / "my clip.mp4").absolute(), (tmp_path / "cams.txt").absolute()),
        ("other", Path("/abs/other.mkv"), None)]
    camera_file = touch(tmp_path / "cameras.txt", "https://example\n0 " + " ".join(["0.5"] * 18) + "\n")
    with pytest.raises(InputError, match="camera file rather than a manifest"):
        expand_inputs([camera_file])


def test_duplicate_names_are_an_error_identical_entries_are_merged(tmp_path):
    a = touch(tmp_path / "a" / "clip.mp4")
    b = touch(tmp_path / "b" / "Clip.mov")
    assert len(expand_inputs([a, a])) == 1
    with pytest.raises(InputError, match="share the workspace name"):
        expand_inputs([a, b])
    with pytest.raises(InputError, match="input not found"):
        expand_inputs([tmp_path / "missing.mp4"])
    with pytest.raises(InputError, match="no videos"):
        expand_inputs([touch(tmp_path / "empty" / "x.txt").parent])


def test_process_video_isolates_unexpected_errors(tmp_path, monkeypatch, capfd):
    import mannequin.pipeline

    def boom(*a, **k):
        raise RuntimeError("kaput\nsecond line")

    monkeypatch.setattr(mannequin.pipeline, "run_video", boom)
    row = process_video(Job("x", touch(tmp_path / "x.mp4")), tmp_path / "out", FAST.to_dict())
    assert row["state"] == "failed"
    assert row["reason"].startswith("internal error: RuntimeError: kaput second line")
    log = (tmp_path / "out" / "x" / "logs" / "batch.log").read_text()
    assert "Traceback" in log and "kaput" in log
    out, err = capfd.readouterr()
    assert "Traceback" not in out + err and "kaput" not in out + err


def test_status_files_and_summary(tmp_path):
    rows = [{"name": "a", "state": "done", "reason": "", "frames": 8, "labels": 7, "seconds": 1.5},
            {"name": "b", "state": "failed", "reason": "bad, with a comma", "frames": None, "labels": None,
             "seconds": 0.1},
            {"name": "c", "state": "skipped", "reason": "", "frames": 8, "labels": 8, "seconds": 0.0}]
    write_status(tmp_path, rows)
    back = list(csv.DictReader((tmp_path / "status.csv").read_text().splitlines()))
    header = (tmp_path / "status.csv").read_text().splitlines()[0]
    assert header.startswith("name,state,reason,frames,seconds,")  # docs/FORMATS.md's columns, in its order
    assert [r["state"] for r in back] == ["done", "failed", "skipped"]
    assert back[1]["reason"] == "bad, with a comma" and back[1]["frames"] == ""
    data = json.loads((tmp_path / "status.json").read_text())
    assert data["summary"] == {"videos": 3, "done": 1, "failed": 1, "skipped": 1, "missing": 0, "frames": 16,
                               "labels": 15, "seconds": 1.6}
    assert [r["name"] for r in data["videos"]] == ["a", "b", "c"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]   # no temporaries left
    table = format_summary(rows)
    assert "failed: b: bad, with a comma" in table
    assert table.splitlines()[1].split() == ["3", "1", "1", "1", "16", "15"]   # no 'missing' column in a batch
    # mannequin mc's 'missing' state: counted, not a failure, its frames not summed, a column in the table
    rows.append({"name": "d", "state": "missing", "reason": "video not found: v/ID.*", "frames": 8, "labels": 8,
                 "seconds": 0.0})
    write_status(tmp_path, rows)
    assert json.loads((tmp_path / "status.json").read_text())["summary"]["missing"] == 1
    table = format_summary(rows)
    assert table.splitlines()[0].split()[:5] == ["videos", "done", "failed", "skipped", "missing"]
    assert table.splitlines()[1].split() == ["4", "1", "1", "1", "1", "16", "15"]
    assert "failed: d" not in table


# --- on a cluster --------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    from mannequin.testing.synth import synth

    base = tmp_path_factory.mktemp("clips")
    out = []
    for seed in range(3):
        d = synth(base / f"clip{seed}", seed=seed, n_frames=8, width=160, height=120, video=True)
        out.append((d / "video.mp4", d / "cameras.txt"))
    bad = touch(base / "broken.mp4", "this is a text file, not a video\n")
    return {"base": base, "clips": out, "bad": bad}


@pytest.fixture(scope="module")
def first_batch(clips, tmp_path_factory):
    root = tmp_path_factory.mktemp("batch")
    manifest = touch(clips["base"] / "mixed.csv", "video,cameras,name\n"
                     + "".join(f"{v},{c},clip{i}\n" for i, (v, c) in enumerate(clips["clips"][:2]))
                     + f"{clips['bad']},,broken\n")
    t0 = time.perf_counter()
    rows = run_batch([manifest], root, config=FAST, workers=2)
    return {"root": root, "rows": rows, "manifest": manifest, "seconds": time.perf_counter() - t0}


def test_corrupt_video_fails_alone(first_batch):
    root, rows = first_batch["root"], first_batch["rows"]
    assert [(r["name"], r["state"]) for r in rows] == [("clip0", "done"), ("clip1", "done"),
                                                        ("broken", "failed")]
    broken = rows[2]
    assert "broken.mp4" in broken["reason"] and "\n" not in broken["reason"]
    for r in rows[:2]:
        assert (root / r["name"] / "stamps" / "labels.json").is_file()
        assert r["frames"] == 8 and r["labels"] >= 1 and r["seconds"] > 0
    on_disk = list(csv.DictReader((root / "status.csv").read_text().splitlines()))
    assert [r["state"] for r in on_disk] == ["done", "done", "failed"]
    assert on_disk[2]["reason"] == broken["reason"]
    data = json.loads((root / "status.json").read_text())
    assert data["summary"]["failed"] == 1 and data["videos"][2]["reason"] == broken["reason"]


def test_second_run_skips_finished_work(first_batch, clips):
    root = first_batch["root"]
    good = touch(clips["base"] / "good_again.csv", "video,cameras,name\n" + "".join(
        f"{v},{c},clip{i}\n" for i, (v, c) in enumerate(clips["clips"][:2])))
    t0 = time.perf_counter()
    rows = run_batch([good], root, config=FAST)
    assert time.perf_counter() - t0 < 5.0            # no cluster is started for finished videos
    assert [r["state"] for r in rows] == ["skipped", "skipped"]
    assert all(r["labels"] >= 1 for r in rows)
    assert [r["state"] for r in csv.DictReader((root / "status.csv").read_text().splitlines())] == ["skipped", "skipped"]
    # another config is not finished work; the failed video is retried (and fails again)
    v, c = clips["clips"][0]
    assert is_finished(root / "clip0", v, c, FAST)
    assert not is_finished(root / "clip0", v, c, FAST.replace(stereo={"n_planes": 32}))
    rows = run_batch([first_batch["manifest"]], root, config=FAST, workers=1)
    assert [r["state"] for r in rows] == ["skipped", "skipped", "failed"]


def test_killed_worker_is_replaced_and_its_video_completes(clips, tmp_path):
    root = tmp_path / "out"
    manifest = touch(tmp_path / "two.csv", "video,cameras,name\n" + "".join(
        f"{v},{c},clip{i}\n" for i, (v, c) in enumerate(clips["clips"][:2])))
    with local_cluster(2, retries=2) as cluster:
        from distributed import Client

        with Client(cluster, set_as_default=False) as client:
            pids = client.run(os.getpid)
            result = {}
            runner = threading.Thread(target=lambda: result.update(
                rows=run_batch([manifest], root, config=FAST, scheduler=client)))
            runner.start()
            victim = None
            deadline = time.time() + 60
            while victim is None and time.time() < deadline and runner.is_alive():
                for addr, keys in client.processing().items():
                    for key in keys:
                        name = str(key)[len("mannequin-video-"):].rsplit("-", 1)[0]
                        if (root / name / "stamps" / "frames.json").exists():   # well into its run
                            victim = (addr, name)
                time.sleep(0.02)
            assert victim is not None, "no task was seen running"
            os.kill(pids[victim[0]], signal.SIGKILL)
            runner.join(120)
            assert not runner.is_alive()
            assert sorted(client.run(os.getpid).values()) != sorted(pids.values())  # a worker was replaced
    rows = result["rows"]
    assert [(r["name"], r["state"]) for r in rows] == [("clip0", "done"), ("clip1", "done")], rows
    assert all((root / r["name"] / "stamps" / "labels.json").is_file() for r in rows)
    log = (root / victim[1] / "logs" / "batch.log").read_text()
    assert log.count(": start (") == 2, log          # ran twice: killed, then retried
    assert [r["state"] for r in csv.DictReader((root / "status.csv").read_text().splitlines())] == ["done", "done"]


def test_worker_dying_beyond_retries_fails_only_that_video(clips, tmp_path):
    root = tmp_path / "out"
    v, c = clips["clips"][2]
    manifest = touch(tmp_path / "one.txt", f"{v} {c}\n")
    with local_cluster(1, retries=0) as cluster:
        from distributed import Client

        with Client(cluster, set_as_default=False) as client:
            pid = next(iter(client.run(os.getpid).values()))
            result = {}
            runner = threading.Thread(target=lambda: result.update(
                rows=run_batch([manifest], root, config=FAST, scheduler=client, retries=0)))
            runner.start()
            deadline = time.time() + 60
            while not (root / "video" / "logs" / "batch.log").exists() and time.time() < deadline:
                time.sleep(0.02)
            os.kill(pid, signal.SIGKILL)
            runner.join(60)
            assert not runner.is_alive()
    [row] = result["rows"]
    assert row["state"] == "failed" and "worker process died" in row["reason"], row
    assert json.loads((root / "status.json").read_text())["videos"][0]["state"] == "failed"


def test_largest_first_and_never_more_tasks_than_worker_threads(clips, tmp_path):
    """The embedded cluster's env gives every pool cores // workers threads; videos go out largest
    input first and at most one per worker thread, the next one when a task finishes."""
    from distributed import Client

    from mannequin.batch import cpu_count

    clip_list = clips["clips"] + [(clips["bad"], "")]
    manifest = touch(tmp_path / "all.csv", "video,cameras,name\n" + "".join(
        f"{v},{c},v{i}\n" for i, (v, c) in enumerate(clip_list)))
    submitted = []

    class Recording(Client):
        def submit(self, func, job, *args, **kwargs):
            fut = super().submit(func, job, *args, **kwargs)
            submitted.append((job.name, sum(not f.done() for f in self._recorded)))
            self._recorded.append(fut)
            return fut

    with local_cluster(1, retries=0) as cluster:
        with Client(cluster, set_as_default=False) as plain:
            env = next(iter(plain.run(lambda: {k: os.environ.get(k) for k in (
                "NUMBA_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")}).values()))
        assert set(env.values()) == {str(cpu_count())}
        with Recording(cluster, set_as_default=False) as client:
            client._recorded = []
            rows = run_batch([manifest], tmp_path / "out", config=FAST, scheduler=client)
    by_size = sorted(range(len(clip_list)), key=lambda i: -Path(clip_list[i][0]).stat().st_size)
    assert [name for name, _ in submitted] == [f"v{i}" for i in by_size]
    assert all(busy == 0 for _, busy in submitted), submitted      # 1 worker thread: one at a time
    assert [r["name"] for r in rows] == ["v0", "v1", "v2", "v3"]   # rows stay in input order
    assert [r["state"] for r in rows] == ["done", "done", "done", "failed"]


def test_unreachable_scheduler_leaves_no_output_root(tmp_path, monkeypatch):
    def refuse(address):
        raise InputError(f"--scheduler {address}: cannot connect to the Dask scheduler (refused)")

    monkeypatch.setattr("mannequin.batch.cluster.connect", refuse)
    touch(tmp_path / "in" / "a.mp4")
    with pytest.raises(InputError, match="cannot connect"):
        run_batch([tmp_path / "in"], tmp_path / "out", config=FAST, scheduler="tcp://127.0.0.1:1")
    assert not (tmp_path / "out").exists()


def test_names_that_would_leave_the_output_root_are_refused(tmp_path):
    """A video named '...mp4' has the stem '..': its workspace would be ROOT/.., outside --out."""
    for bad in ("...mp4", "..mp4"):
        with pytest.raises(InputError, match="not usable as a workspace folder name"):
            expand_inputs([touch(tmp_path / "v" / bad)])


@pytest.mark.parametrize("address", ["not a url", "tcp://host", "http://x:1"])
def test_malformed_scheduler_address_is_refused_at_once(tmp_path, address):
    touch(tmp_path / "in" / "a.mp4")
    with pytest.raises(InputError, match="not a Dask scheduler address"):
        run_batch([tmp_path / "in"], tmp_path / "out", config=FAST, scheduler=address)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("kwargs,needle", [
    ({"workers": 0}, "--workers 0: must be at least 1"),
    ({"workers": 1.5}, "--workers 1.5: must be a positive integer"),
    ({"retries": -1}, "--retries -1: must be 0 or more"),
    ({"scheduler": "not an address"}, "--scheduler not an address: not a Dask scheduler address"),
])
def test_bad_batch_arguments_are_refused_before_anything_runs(tmp_path, kwargs, needle):
    touch(tmp_path / "in" / "a.mp4")
    with pytest.raises(InputError, match=re.escape(needle)):
        run_batch([tmp_path / "in"], tmp_path / "out", config=FAST, **kwargs)
    assert not (tmp_path / "out").exists()
