"""The per-video make rules: data/videos/NAME.<ext> -> make data/work/NAME/labels, stamps in between."""
import shutil
import subprocess
from pathlib import Path

from conftest import REPO, fast_config  # noqa: I001


def _make(*args):
    return subprocess.run(["make", "--no-print-directory", "-C", str(REPO), *map(str, args)],
                          capture_output=True, text=True, timeout=900)


def test_make_rule_per_video(tiny_clip, tmp_path):
    videos, work = tmp_path / "videos", tmp_path / "work"
    videos.mkdir()
    shutil.copy(tiny_clip / "video.mp4", videos / "tiny.mp4")
    shutil.copy(tiny_clip / "cameras.txt", videos / "tiny.txt")  # a camera file beside the clip replaces SfM
    cfg = tmp_path / "fast.json"
    cfg.write_text(fast_config().to_json())
    common = [f"VIDEO_DIR={videos}", f"WORK_DIR={work}", "PRESET=fast", f"CONFIG={cfg}"]
    out = _make(*common, work / "tiny" / "labels")
    assert out.returncode == 0, out.stdout + out.stderr
    for stage in ("frames", "sfm", "stereo", "fuse", "labels"):
        assert (work / "tiny" / "stamps" / f"{stage}.json").exists()
    assert len(list((work / "tiny" / "labels").glob("??????.npy"))) == 10
    assert "mannequin sfm" in out.stdout and "--poses" in out.stdout
    # Up to date: make has nothing left to do.
    assert _make("-q", *common, work / "tiny" / "labels").returncode == 0
    # Changed options re-run what they change: a stereo option in CONFIG re-runs stereo and after it;
    # mannequin skips frames and sfm (their stamps keep their content, make's see a touch).
    stamps = {s: (work / "tiny" / "stamps" / f"{s}.json").read_text() for s in ("frames", "sfm", "stereo")}
    cfg2 = tmp_path / "fast2.json"
    cfg2.write_text(fast_config(stereo={"n_planes": 40}).to_json())
    changed = [f"VIDEO_DIR={videos}", f"WORK_DIR={work}", "PRESET=fast", f"CONFIG={cfg2}"]
    assert _make("-q", *changed, work / "tiny" / "labels").returncode != 0
    out = _make(*changed, work / "tiny" / "labels")
    assert out.returncode == 0, out.stdout + out.stderr
    assert [(work / "tiny" / "stamps" / f"{s}.json").read_text() for s in ("frames", "sfm")] == \
        [stamps["frames"], stamps["sfm"]]
    assert (work / "tiny" / "stamps" / "stereo.json").read_text() != stamps["stereo"]
    assert _make("-q", *changed, work / "tiny" / "labels").returncode == 0
    # A newer video re-runs the chain from frames on.
    Path(videos / "tiny.mp4").touch()
    dry = _make("-n", *common, work / "tiny" / "labels")
    assert "mannequin frames" in dry.stdout and "mannequin labels" in dry.stdout
    # all-videos builds every clip in the folder (here: the one, already built).
    assert _make(*common, "all-videos").returncode == 0


def test_make_rule_with_pose_timestamps(tiny_clip, tmp_path):
    """A camera file beside the clip that lists every other frame, with frames.pose_timestamps in
    CONFIG: the frames stage takes exactly those frames, and sfm imports their poses."""
    videos, work = tmp_path / "videos", tmp_path / "work"
    videos.mkdir()
    shutil.copy(tiny_clip / "video.mp4", videos / "tiny.mp4")
    lines = (tiny_clip / "cameras.txt").read_text().splitlines()
    (videos / "tiny.txt").write_text("\n".join([lines[0]] + lines[1::2]) + "\n")  # frames 0, 2, .., 8
    cfg = tmp_path / "pt.json"
    cfg.write_text(fast_config(frames={"max_size": 0, "blur_ratio": 0.0, "pose_timestamps": True}).to_json())
    out = _make(f"VIDEO_DIR={videos}", f"WORK_DIR={work}", "PRESET=fast", f"CONFIG={cfg}", work / "tiny" / "labels")
    assert out.returncode == 0, out.stdout + out.stderr
    assert sorted(p.name for p in (work / "tiny" / "labels").glob("??????.npy")) == [
        f"{i:06d}.npy" for i in range(0, 10, 2)]


def test_make_bench_runs_every_benchmark_script():
    """`make bench` runs every script at the top of benchmarks/ (the helpers excepted) and `make studies`
    every script in benchmarks/studies/: a new benchmark cannot be left out of the suite by mistake."""
    bench = REPO / "benchmarks"

    def looped(target):  # the names in the recipe's `for b in NAMES; do` loop (make -n prints it)
        line = next(ln for ln in _make("-n", target).stdout.splitlines() if "for b in" in ln)
        return set(line.split("for b in", 1)[1].split(";", 1)[0].split())

    helpers = {"common", "summary"}  # shared code and the collector
    scripts = {p.stem for p in bench.glob("*.py")} - helpers
    studies = {p.stem for p in (bench / "studies").glob("*.py")}
    assert scripts and studies
    assert looped("bench") == scripts
    assert looped("studies") == studies
