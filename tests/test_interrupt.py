"""Interruption and write failures: SIGKILL at several moments, then resume; a full disk mid-stage."""
import errno
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from conftest import fast_config

STAGES = ["frames", "sfm", "stereo", "fuse", "labels"]


def _all_outputs_load(ws):
    import imageio.v3 as iio

    for f in list(ws.glob("depth/*.npy")) + list(ws.glob("labels/*.npy")):
        np.load(f)
    for f in ws.glob("labels/*.png"):
        iio.imread(f)


@pytest.mark.parametrize("victim", ["sfm", "stereo", "fuse", "labels"])
def test_sigkill_during_stage_then_resume(victim, tiny_clip, tiny_run, tmp_path):
    cfg = tmp_path / "cfg.json"
    cfg.write_text(fast_config().to_json())
    ws = tmp_path / "ws"
    args = [sys.executable, "-m", "mannequin", "run", str(tiny_clip / "video.mp4"), "--out", str(ws),
            "--poses", str(tiny_clip / "cameras.txt"), "--config", str(cfg), "--quiet"]
    before = STAGES[STAGES.index(victim) - 1]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None and not (ws / "stamps" / f"{before}.json").exists():
        time.sleep(0.02)
    time.sleep(0.3)  # well inside the victim stage on this tiny clip (or just after it)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    _all_outputs_load(ws)
    if not (ws / "stamps" / "labels.json").exists():
        assert not (ws / "stamps" / f"{victim}.json").exists() or (ws / "stamps" / f"{before}.json").exists()
    out = subprocess.run(args, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    for n in tiny_run.image_names():
        np.testing.assert_array_equal(np.load(ws / "labels" / f"{n}.npy"), np.load(tiny_run.label_path(n)))
    assert not list(ws.rglob(".*.tmp-*"))


def test_full_disk_mid_stage_keeps_previous_state(tiny_clip, tmp_path, monkeypatch, capsys):
    """ENOSPC while the labels stage writes: one-line error naming the file, no stamp, files load."""
    from mannequin import cli, workspace

    cfg = tmp_path / "cfg.json"
    cfg.write_text(fast_config().to_json())
    ws = tmp_path / "ws"
    base = ["run", str(tiny_clip / "video.mp4"), "--out", str(ws), "--poses", str(tiny_clip / "cameras.txt"),
            "--config", str(cfg), "--quiet"]
    assert cli.main(base) == 0
    old = {f.name: f.read_bytes() for f in (ws / "labels").glob("*.png")}
    (ws / "stamps" / "labels.json").unlink()  # force the labels stage to run again
    real_replace, calls = workspace.os.replace, {"n": 0}

    def failing_replace(src, dst):
        calls["n"] += 1
        if calls["n"] == 4:
            raise OSError(errno.ENOSPC, "No space left on device", str(dst))
        return real_replace(src, dst)

    monkeypatch.setattr(workspace.os, "replace", failing_replace)
    assert cli.main(base) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "No space left on device" in err[0] and str(ws) in err[0]
    monkeypatch.undo()
    assert not (ws / "stamps" / "labels.json").exists()
    _all_outputs_load(ws)
    assert not list(ws.rglob(".*.tmp-*"))
    new = {f.name: f.read_bytes() for f in (ws / "labels").glob("*.png")}
    assert set(new) == set(old)  # every label PNG is either the previous one or a complete new one
    assert cli.main(base) == 0 and (ws / "stamps" / "labels.json").exists()
