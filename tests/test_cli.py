"""The command line: help lists working commands, errors are one line with exit code != 0."""
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from mannequin.cli import build_parser

EXE = [sys.executable, "-m", "mannequin"]


def run(*args, **kw):
    return subprocess.run([*EXE, *map(str, args)], capture_output=True, text=True, timeout=600, **kw)


def test_help_lists_only_working_commands():
    out = run("--help")
    assert out.returncode == 0
    listed = {c for c in build_parser()._subparsers._group_actions[0].choices}
    assert listed == {"run", "frames", "sfm", "stereo", "fuse", "labels", "eval", "synth", "batch", "mc"}
    for cmd in listed:
        assert cmd in out.stdout
        assert run(cmd, "--help").returncode == 0


@pytest.mark.parametrize("args,needle", [
    (["run", "/no/such/video.mp4", "--out", "{tmp}/ws"], "input not found"),
    (["run", "{tmp}/fake.mp4", "--out", "{tmp}/ws"], "fake.mp4"),
    (["run", "{tmp}/fake.mp4", "--out", "{tmp}/ws", "--preset", "turbo"], "unknown preset"),
    (["run", "{tmp}/fake.mp4", "--out", "{tmp}/ws", "--max-size", "-3"], "--max-size"),
    (["stereo", "{tmp}/nows"], "workspace not found"),
    (["synth", "{tmp}/s", "--frames", "0"], "n_frames"),
    (["run", "{tmp}/fake.mp4", "--out", "{tmp}/ws", "--fps", "10"], "--fps sets the frame rate of an image folder"),
    (["frames", "{tmp}", "--out", "{tmp}/ws", "--fps", "0"], "--fps 0: must be a frame rate"),
    (["run", "{tmp}/fake.mp4", "--out", "{tmp}/ws", "--preset", ""], "--preset '': unknown preset"),
])
def test_errors_are_one_line(tmp_path, args, needle):
    (tmp_path / "fake.mp4").write_text("this is not a video")
    out = run(*[a.format(tmp=tmp_path) for a in args])
    assert out.returncode != 0
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0] and "Traceback" not in out.stderr
    assert not (tmp_path / "ws" / "labels").exists()


def test_debug_shows_traceback(tmp_path):
    (tmp_path / "fake.mp4").write_text("nope")
    out = run("run", tmp_path / "fake.mp4", "--out", tmp_path / "ws", "--debug")
    assert out.returncode != 0 and "Traceback" in out.stderr


def test_cli_run_and_eval(tiny_clip, tmp_path):
    cfg = tmp_path / "cfg.json"
    from conftest import fast_config

    cfg.write_text(fast_config().to_json())
    ws = tmp_path / "ws"
    out = run("run", tiny_clip / "video.mp4", "--out", ws, "--poses", tiny_clip / "cameras.txt", "--config", cfg)
    assert out.returncode == 0, out.stderr
    assert "report.html" in out.stdout
    ev = run("eval", ws, "--gt-depth", tiny_clip / "depth")
    assert ev.returncode == 0, ev.stderr
    result = json.loads(ev.stdout)
    # An independent computation of the clip AbsRel from the files.
    num, den = 0.0, 0
    for f in sorted((ws / "labels").glob("??????.npy")):
        p, g = np.load(f), np.load(tiny_clip / "depth" / f.name)
        m = (p > 0) & (g > 0)
        num += float((np.abs(p[m] - g[m]) / g[m]).sum())
        den += int(m.sum())
    assert result["clip"]["absrel"] == pytest.approx(num / den, rel=1e-4)
    assert result["clip"]["scale"] == 1.0 and len(result["frames"]) == 10
    assert (ws / "preview" / "eval_per_frame.png").exists()


def test_kill_mid_stereo_then_resume_matches_uninterrupted(tiny_clip, tiny_run, tmp_path):
    from conftest import fast_config

    cfg = tmp_path / "cfg.json"
    cfg.write_text(fast_config().to_json())
    ws = tmp_path / "ws"
    args = [*EXE, "run", str(tiny_clip / "video.mp4"), "--out", str(ws), "--poses", str(tiny_clip / "cameras.txt"),
            "--config", str(cfg), "--quiet"]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if len(list((ws / "depth").glob("*.conf.npy"))) >= 3:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    # After the kill: nothing that looks finished is half-written.
    for f in (ws / "depth").glob("*.npy"):
        np.load(f)
    assert not (ws / "stamps" / "labels.json").exists()
    out = subprocess.run(args, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    for n in tiny_run.image_names():
        np.testing.assert_array_equal(np.load(ws / "labels" / f"{n}.npy"), np.load(tiny_run.label_path(n)))
    assert not [p for p in ws.rglob(".*tmp-*")]


def test_module_entry_point_matches_console_script():
    exe = os.path.join(os.path.dirname(sys.executable), "mannequin")
    a = subprocess.run([exe, "--help"], capture_output=True, text=True)
    b = run("--help")
    assert a.returncode == b.returncode == 0 and a.stdout.replace("mannequin", "") == b.stdout.replace("mannequin", "")


def test_fps_sets_the_timestamps_of_an_image_folder(tiny_clip, tmp_path):
    """docs/FORMATS.md: an image folder's timestamps are index × 33333 µs unless --fps is given."""
    from mannequin.frames import read_frames_csv

    for fps in (None, 10):
        ws = tmp_path / f"ws{fps}"
        out = run("frames", tiny_clip / "frames", "--out", ws, *(["--fps", fps] if fps else []))
        assert out.returncode == 0, out.stderr
        stamps = [r["timestamp_us"] for r in read_frames_csv(ws / "frames.csv")]
        assert stamps[:3] == [0, 33333, 66666] if fps is None else [0, 100000, 200000]


def test_video_beside_the_workspace_folders_is_fine_and_failed_frames_leave_nothing(tiny_clip, tmp_path):
    """A video at the workspace's top level is not replaced by any stage, so it may sit there; the
    frames command on bad input leaves no workspace (as run does)."""
    import shutil

    ws = tmp_path / "ws"
    ws.mkdir()
    shutil.copy(tiny_clip / "video.mp4", ws / "clip.mp4")
    out = run("frames", ws / "clip.mp4", "--out", ws)
    assert out.returncode == 0, out.stderr
    assert (ws / "clip.mp4").is_file() and (ws / "frames.csv").is_file()
    out = run("frames", tmp_path / "missing.mp4", "--out", tmp_path / "new")
    assert out.returncode == 1 and "input not found" in out.stderr and not (tmp_path / "new").exists()


def test_ctrl_c_that_surfaces_as_another_error_is_still_an_interruption(monkeypatch, tmp_path, capsys):
    """Ctrl-C landing inside an import or a C extension can come out as, e.g., ImportError; the CLI
    still reports an interruption (exit 130), not an internal error, and restores the handler."""
    import mannequin.cli as cli

    def interrupted_inside_an_import(args):
        try:
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(5)
        except KeyboardInterrupt:
            raise ImportError("initialization failed") from None

    before = signal.getsignal(signal.SIGINT)
    monkeypatch.setattr(cli, "cmd_synth", interrupted_inside_an_import)
    assert cli.main(["synth", str(tmp_path / "s")]) == 130
    assert "interrupted" in capsys.readouterr().err
    assert signal.getsignal(signal.SIGINT) is before


def _run_on_terminal(args, timeout=300):
    """Run ``args`` with stdout and stderr on a pseudo-terminal of 120 columns; returns (code, text)."""
    import fcntl
    import pty
    import select
    import struct
    import termios

    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    proc = subprocess.Popen(args, stdout=slave, stderr=slave)
    os.close(slave)
    chunks, deadline = [], time.time() + timeout
    while time.time() < deadline:
        ready, _, _ = select.select([master], [], [], 0.5)
        try:
            data = os.read(master, 65536) if ready else b""
        except OSError:  # the child closed the terminal
            break
        if ready and not data:
            break
        chunks.append(data)
        if not ready and proc.poll() is not None:
            break
    os.close(master)
    return proc.wait(timeout=30), b"".join(chunks).decode(errors="replace")


def test_progress_bars_with_eta_on_a_terminal_only(tiny_clip, tmp_path):
    """On a terminal every stage shows a tqdm bar with its total and ETA; piped, none."""
    import re

    from conftest import fast_config

    cfg = tmp_path / "cfg.json"
    cfg.write_text(fast_config().to_json())

    def args(ws):
        return [sys.executable, "-m", "mannequin", "run", str(tiny_clip / "video.mp4"), "--out", str(tmp_path / ws),
                "--poses", str(tiny_clip / "cameras.txt"), "--config", str(cfg)]

    code, text = _run_on_terminal(args("tty"))
    assert code == 0, text
    bars = {m.group(1) for m in re.finditer(r"([a-z]+)[^\r\n:]*:\s+\d+%\|[^|\r\n]*\| \d+/(\d+) \[[\d:]+<", text)}
    assert {"frames", "sfm", "stereo", "fuse", "labels", "previews"} <= bars, bars
    piped = subprocess.run(args("piped"), capture_output=True, text=True, timeout=300)
    assert piped.returncode == 0 and "%|" not in piped.stderr + piped.stdout
