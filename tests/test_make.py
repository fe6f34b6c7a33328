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


def test_make_lint_runs_ruff_and_mypy_and_ci_lints_first():
    """`make lint` runs both checkers (make -n prints the recipe, nothing runs), `.ci/run` lints before it
    tests, and the pre-commit hooks are the same two checks."""
    recipe = _make("-n", "lint").stdout
    assert "ruff check mannequin tests benchmarks" in recipe
    assert "mypy" in recipe
    ci = [ln.strip() for ln in (REPO / ".ci" / "run").read_text().splitlines()]
    assert "make lint" in ci and "make test" in ci and ci.index("make lint") < ci.index("make test")
    hooks = (REPO / ".pre-commit-config.yaml").read_text()
    assert "id: ruff" in hooks and "id: mypy" in hooks


def test_make_test_fast_leaves_out_the_slow_tests():
    assert '-m "not slow"' in _make("-n", "test-fast").stdout
    assert "not slow" not in _make("-n", "test").stdout


def test_slow_list_names_existing_tests():
    """Every entry of conftest.SLOW names a test module that exists, and a test defined in it: a
    moved or renamed test cannot silently drop out of the slow set (and slow down test-fast)."""
    from conftest import SLOW

    assert SLOW
    for entry in SLOW:
        module, _, test = entry.partition("::")
        path = REPO / module
        assert path.is_file(), entry
        if test:
            assert f"def {test.split('[')[0]}(" in path.read_text(), entry


def test_readme_bad_input_count_matches_the_corpus():
    """The README's "(N cases)" is the number of cases tests/test_bad_inputs.py runs."""
    import re

    from test_bad_inputs import CASES

    counts = re.findall(r"\((\d+) cases\)", (REPO / "README.md").read_text())
    assert counts == [str(len(CASES))]
