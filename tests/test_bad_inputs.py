"""Hardening: a corpus of bad inputs through `mannequin run`, each with a clear one-line answer.

Every case: exit code != 0, at most three lines on stderr naming the input and the reason, no
traceback, and no label file.  The corpus is listed in the README ("Bad inputs").
"""
import shutil
import subprocess
import sys

import imageio.v3 as iio
import numpy as np
import pytest

CASES = {}


def case(name, *needles):
    """Register a bad input; every one of ``needles`` must appear in its error (the input it names
    and the reason)."""
    def deco(fn):
        CASES[name] = (fn, needles)
        return fn
    return deco


def _texture(rng, h, w):
    from scipy import ndimage

    return (ndimage.gaussian_filter(rng.random((h, w, 3)), (2, 2, 0)) * 255).clip(0, 255).astype(np.uint8)


def _ffmpeg(*args):
    import imageio_ffmpeg

    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-y", *map(str, args)], check=True)


def _video(path, frames):
    iio.imwrite(path, np.asarray(frames), extension=".mp4", codec="libx264", fps=30, macro_block_size=1)
    return path


@case("empty file", "empty.mp4", "empty file")
def _(tmp, clip):
    (tmp / "empty.mp4").write_bytes(b"")
    return [tmp / "empty.mp4"]


@case("text file named .mp4", "notes.mp4", "cannot decode")
def _(tmp, clip):
    (tmp / "notes.mp4").write_text("just some text\n" * 50)
    return [tmp / "notes.mp4"]


@case("truncated mp4", "truncated.mp4", "cannot decode")
def _(tmp, clip):
    data = (clip / "video.mp4").read_bytes()
    (tmp / "truncated.mp4").write_bytes(data[: len(data) // 3])
    return [tmp / "truncated.mp4"]


@case("random bytes named .mov", "noise.mov", "cannot decode")
def _(tmp, clip):
    (tmp / "noise.mov").write_bytes(np.random.default_rng(0).integers(0, 256, 20000, dtype=np.uint8).tobytes())
    return [tmp / "noise.mov"]


@case("one-frame video", "one.mp4", "at least 2 frames")
def _(tmp, clip):
    return [_video(tmp / "one.mp4", _texture(np.random.default_rng(1), 96, 128)[None])]


@case("static camera", "static.mp4", "found no model", "does not translate")
def _(tmp, clip):
    frame = iio.imread(clip / "frames" / "000000.png")
    return [_video(tmp / "static.mp4", [frame] * 8)]


@case("pure camera rotation", "rotate.mp4", "camera only rotates")
def _(tmp, clip):
    # the tiny clip's scene, filmed by a camera that turns in place (1.5° pan per frame, no translation)
    from mannequin.testing.synth import render_clip

    rot = render_clip(seed=5, n_frames=10, width=192, height=144, motion="rotate")
    return [_video(tmp / "rotate.mp4", rot.images)]


@case("images of mixed sizes", "mixed", "002.png", "same size")
def _(tmp, clip):
    d = tmp / "mixed"
    d.mkdir()
    rng = np.random.default_rng(3)
    for i in range(4):
        iio.imwrite(d / f"{i:03d}.png", _texture(rng, 96, 128 if i != 2 else 120))
    return [d]


@case("corrupt image among good ones", "000002.png", "cannot read image")
def _(tmp, clip):
    d = tmp / "corrupt"
    shutil.copytree(clip / "frames", d)
    (d / "000002.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    return [d]


@case("folder with no images", "empty_dir", "no images")
def _(tmp, clip):
    d = tmp / "empty_dir"
    d.mkdir()
    (d / "readme.txt").write_text("no images here")
    return [d]


@case("zero-frame video (ffmpeg -frames:v 0 leaves no video stream)", "zero.mp4", "no video stream")
def _(tmp, clip):
    _ffmpeg("-f", "lavfi", "-i", "color=c=gray:s=64x48:d=1", "-frames:v", "0", "-c:v", "libx264", tmp / "zero.mp4")
    return [tmp / "zero.mp4"]


@case("audio-only mp4", "tone.mp4", "no video stream")
def _(tmp, clip):
    _ffmpeg("-f", "lavfi", "-i", "sine=frequency=440:duration=1", "-c:a", "aac", tmp / "tone.mp4")
    return [tmp / "tone.mp4"]


@case("single image file", "000000.png", "single image")
def _(tmp, clip):
    return [clip / "frames" / "000000.png"]


@case("missing input", "nowhere.mp4", "not found")
def _(tmp, clip):
    return [tmp / "nowhere.mp4"]


def _cams(tmp, clip, edit):
    lines = (clip / "cameras.txt").read_text().splitlines()
    lines = edit(lines)
    p = tmp / "cams.txt"
    p.write_text("\n".join(lines) + "\n")
    return [clip / "video.mp4", "--poses", p]


@case("camera file: wrong column count", "cams.txt", "expected 19 columns")
def _(tmp, clip):
    return _cams(tmp, clip, lambda ls: ls[:3] + [" ".join(ls[3].split()[:12])] + ls[4:])


@case("camera file: not a number", "cams.txt", "is not a number")
def _(tmp, clip):
    return _cams(tmp, clip, lambda ls: ls[:2] + [ls[2].replace(ls[2].split()[1], "abc", 1)] + ls[3:])


@case("camera file: NaN", "cams.txt", "NaN or inf")
def _(tmp, clip):
    return _cams(tmp, clip, lambda ls: ls[:2] + [" ".join(ls[2].split()[:8] + ["nan"] + ls[2].split()[9:])] + ls[3:])


@case("camera file: R not a rotation", "cams.txt", "not a rotation")
def _(tmp, clip):
    return _cams(tmp, clip, lambda ls: ls[:2] + [" ".join(ls[2].split()[:7] + ["3.0"] + ls[2].split()[8:])] + ls[3:])


@case("camera file: fewer lines than frames", "cams.txt", "camera lines for 10 input frames")
def _(tmp, clip):
    return _cams(tmp, clip, lambda ls: ls[:-3])


def _pose_timestamps(tmp, clip, edit):
    from conftest import fast_config

    (tmp / "pt.json").write_text(fast_config(frames={"max_size": 0, "blur_ratio": 0.0,
                                                     "pose_timestamps": True}).to_json())
    return _cams(tmp, clip, edit) + ["--config", tmp / "pt.json"]


@case("camera file with frames.pose_timestamps: a timestamp that is no frame of the video", "cams.txt", "is no frame of")
def _(tmp, clip):
    return _pose_timestamps(tmp, clip, lambda ls: ls[:-1] + [" ".join(["99000000"] + ls[-1].split()[1:])])


@case("camera file with frames.pose_timestamps: timestamps out of order", "cams.txt", "is not after the previous")
def _(tmp, clip):
    return _pose_timestamps(tmp, clip, lambda ls: [ls[0], ls[3], ls[2]] + ls[4:])


@case("camera file: missing", "nocams.txt", "camera file not found")
def _(tmp, clip):
    return [clip / "video.mp4", "--poses", tmp / "nocams.txt"]


@case("camera file: empty", "cams.txt", "no frame lines")
def _(tmp, clip):
    return _cams(tmp, clip, lambda ls: [])


@case("output path is an existing file", "taken", "not a folder")
def _(tmp, clip):
    (tmp / "taken").write_text("x")
    return [clip / "video.mp4", "--out-override", tmp / "taken"]


@case("negative --max-size", "--max-size -640", "must be between")
def _(tmp, clip):
    return [clip / "video.mp4", "--max-size", "-640"]


@case("absurd --max-size", "--max-size 999999", "must be between")
def _(tmp, clip):
    return [clip / "video.mp4", "--max-size", "999999"]


@case("absurd --readout-ms", "--readout-ms 5000", "expected")
def _(tmp, clip):
    return [clip / "video.mp4", "--readout-ms", "5000"]


@case("unknown --preset", "ultra", "unknown preset")
def _(tmp, clip):
    return [clip / "video.mp4", "--preset", "ultra"]


@case("missing --config file", "nocfg.json", "config file not found")
def _(tmp, clip):
    return [clip / "video.mp4", "--config", tmp / "nocfg.json"]


@case("malformed --config JSON", "bad.json", "not a valid JSON")
def _(tmp, clip):
    (tmp / "bad.json").write_text("{stereo: 1")
    return [clip / "video.mp4", "--config", tmp / "bad.json"]


@case("unknown option in --config", "bad.json", "unknown option stereo.planes")
def _(tmp, clip):
    (tmp / "bad.json").write_text('{"stereo": {"planes": 12}}')
    return [clip / "video.mp4", "--config", tmp / "bad.json"]


@case("malformed --intrinsics", "--intrinsics '500,500'", "expected 4, 8 or 9")
def _(tmp, clip):
    return [clip / "video.mp4", "--intrinsics", "500,500"]


@case("--intrinsics whose distortion folds back inside the frame", "--intrinsics", "folds back")
def _(tmp, clip):
    return [clip / "video.mp4", "--intrinsics", "150,150,95.5,71.5,0.3,-1.0,0,0"]


@case("workspace inside the input folder", "frames_in", "inside the input folder")
def _(tmp, clip):
    d = tmp / "frames_in"
    shutil.copytree(clip / "frames", d)
    return [d, "--out-override", d / "ws"]


def _set(line, col, value):
    parts = line.split()
    parts[col] = value
    return " ".join(parts)


@case("camera file: principal point outside the image", "cams.txt", "lies outside the image")
def _(tmp, clip):
    return _cams(tmp, clip, lambda ls: ls[:2] + [_set(ls[2], 3, "7.5")] + ls[3:])


@case("camera file: absurd translation", "cams.txt", "out of range")
def _(tmp, clip):
    return _cams(tmp, clip, lambda ls: ls[:2] + [_set(ls[2], 10, "1e30")] + ls[3:])


@case("camera file: two lines swapped (out of time order)", "cams.txt", "is not after the previous line's")
def _(tmp, clip):
    return _cams(tmp, clip, lambda ls: ls[:2] + [ls[3], ls[2]] + ls[4:])


@case("camera file: distortion terms", "cams.txt", "distortion terms")
def _(tmp, clip):
    return _cams(tmp, clip, lambda ls: ls[:2] + [_set(ls[2], 5, "0.1")] + ls[3:])


@case("config value out of range (labels.png_max beyond uint16)", "bad_cfg.json", "labels.png_max = 70000")
def _(tmp, clip):
    (tmp / "bad_cfg.json").write_text('{"labels": {"png_max": 70000}}')
    return [clip / "video.mp4", "--config", tmp / "bad_cfg.json"]


@case("frames too small (16x12 images)", "small", "too small")
def _(tmp, clip):
    from PIL import Image

    d = tmp / "small"
    d.mkdir()
    for p in sorted((clip / "frames").glob("*.png")):
        Image.open(p).resize((16, 12)).save(d / p.name)
    return [d]


@case("input folder inside the workspace (its frames/ would be replaced)", "ws/frames", "must not be inside the workspace")
def _(tmp, clip):
    d = tmp / "ws" / "frames"
    shutil.copytree(clip / "frames", d)
    return [d]


@case("empty --out", "--out", "empty path")
def _(tmp, clip):
    return [clip / "video.mp4", "--out-override", ""]


@case("camera file: a folder", "nocams", "is a folder, not a camera file")
def _(tmp, clip):
    (tmp / "nocams").mkdir()
    return [clip / "video.mp4", "--poses", tmp / "nocams"]


@case("workspace path through the input file", "video.mp4", "runs through the input file")
def _(tmp, clip):
    shutil.copy(clip / "video.mp4", tmp / "video.mp4")
    return [tmp / "video.mp4", "--out-override", tmp / "video.mp4" / "ws"]


@case("workspace that cannot be created (under /proc)", "/proc/mannequin-ws", "cannot create the workspace")
def _(tmp, clip):
    return [clip / "video.mp4", "--out-override", "/proc/mannequin-ws"]


@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_input(name, tmp_path, tiny_clip):
    make, needles = CASES[name]
    args = [str(a) for a in make(tmp_path, tiny_clip)]
    out = tmp_path / "ws"
    if "--out-override" in args:
        i = args.index("--out-override")
        out = args[i + 1]
        del args[i:i + 2]
    from conftest import fast_config

    before_cwd = [p.name for p in tmp_path.iterdir()]
    cfg = tmp_path / "fast.json"
    if "--config" not in args:
        cfg.write_text(fast_config().to_json())
        args += ["--config", str(cfg)]
    from pathlib import Path

    first = Path(args[0])
    inputs_before = sorted(p.name for p in first.iterdir()) if first.is_dir() else None
    proc = subprocess.run([sys.executable, "-m", "mannequin", "run", *args, "--out", str(out)],
                          capture_output=True, text=True, timeout=600, cwd=tmp_path)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode != 0, f"{name}: exit 0\n{proc.stderr}"
    assert 1 <= len(lines) <= 3 and "Traceback" not in proc.stderr, proc.stderr
    for needle in needles:
        assert needle.lower() in proc.stderr.lower(), (needle, proc.stderr)
    named = [Path(a).name for a in [*args, "--out", str(out)] if a not in ("", "--config", str(cfg))]
    assert any(n and n in proc.stderr for n in named), proc.stderr  # names the input or option at fault
    if inputs_before is not None:  # the input is never touched
        assert sorted(p.name for p in first.iterdir()) == inputs_before
    if out == "":
        assert sorted(p.name for p in tmp_path.iterdir()) == sorted(set(before_cwd) | {"fast.json"})
        return
    assert not list(Path(out).glob("labels/*.npy")) if Path(out).is_dir() else True
    # No partial output: a workspace is left only where a stage finished (input failing the frames
    # stage leaves none), and no scratch of the failed stage stays.
    if "--poses" in args and name.startswith("camera file:") and "fewer lines" not in name and "fit" not in name:
        assert not Path(out).exists()  # a camera file that does not parse fails before any work
    if Path(out).is_dir() and not (inputs_before is not None and Path(out) in first.parents):
        assert (Path(out) / "stamps" / "frames.json").is_file(), sorted(p.name for p in Path(out).iterdir())
        assert not (Path(out) / "sfm" / "work").exists()


def test_corpus_size():
    assert len(CASES) >= 25


def test_positive_controls_spaces_unicode_grey_rgba_and_stray_files(tiny_clip, tmp_path):
    """Must succeed: a path with spaces and non-ASCII characters, grey and RGBA frames, stray files."""
    from conftest import fast_config

    folder = tmp_path / "my clips" / "café ü frames"
    folder.mkdir(parents=True)
    for i, f in enumerate(sorted((tiny_clip / "frames").glob("*.png"))):
        rgb = iio.imread(f)
        if i < 3:
            img = (rgb @ np.array([0.299, 0.587, 0.114])).round().astype(np.uint8)  # grayscale
        elif i < 6:
            img = np.dstack([rgb, np.full(rgb.shape[:2], 255, np.uint8)])  # RGBA
        else:
            img = rgb
        iio.imwrite(folder / f.name, img)
    (folder / "notes.txt").write_text("not an image")
    (folder / "Thumbs.db").write_bytes(b"\x00\x01")
    cfg = tmp_path / "fast.json"
    cfg.write_text(fast_config().to_json())
    out_ws = tmp_path / "wörk space"
    proc = subprocess.run([sys.executable, "-m", "mannequin", "run", str(folder), "--out", str(out_ws),
                           "--poses", str(tiny_clip / "cameras.txt"), "--config", str(cfg), "--quiet"],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    labels = sorted((out_ws / "labels").glob("??????.npy"))
    assert len(labels) == 10
    assert np.mean([(np.load(p) > 0).mean() for p in labels]) > 0.2
