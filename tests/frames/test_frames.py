"""Tests of the frames stage (mannequin.frames) on small synthetic videos and image folders."""
from __future__ import annotations

import subprocess
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
from scipy import ndimage

from mannequin.config import FramesConfig
from mannequin.errors import InputError, StageError
from mannequin.frames.selection import even_subset, sample_indices, sharpness
from mannequin.frames.stage import CSV_COLUMNS, extract_frames, read_frames_csv
from mannequin.io.images import encode_png, list_images, read_image_rgb, resize_max, to_grey
from mannequin.workspace import Workspace

H, W = 48, 64
NO_BLUR = dict(blur_ratio=0.0, max_size=0)


# --------------------------------------------------------------------------------------------
# synthetic inputs
# --------------------------------------------------------------------------------------------
def texture(h: int, w: int, seed: int = 0, sigma: float = 1.2) -> np.ndarray:
    """Random smooth RGB texture, uint8, full 0-255 range."""
    rng = np.random.default_rng(seed)
    t = ndimage.gaussian_filter(rng.random((h, w, 3)), (sigma, sigma, 0))
    t = (t - t.min()) / np.ptp(t)
    return (t * 255).round().astype(np.uint8)


def shifting_frames(n: int, h: int = H, w: int = W, shift: int = 2, seed: int = 0) -> np.ndarray:
    tex = texture(h + 8, w + shift * n + 8, seed)
    return np.stack([tex[4:4 + h, 4 + k * shift: 4 + k * shift + w] for k in range(n)])


def write_video(path: Path, frames: np.ndarray, fps: int = 30, **kw) -> Path:
    iio.imwrite(path, frames, extension=".mp4", codec="libx264", fps=fps, macro_block_size=1, **kw)
    return path


def write_folder(folder: Path, frames, names=None, ext: str = ".png") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for k, f in enumerate(frames):
        name = names[k] if names else f"img_{k:03d}"
        iio.imwrite(folder / f"{name}{ext}", f)
    return folder


def ffmpeg() -> str:
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


def csv_rows(ws: Workspace) -> list[dict]:
    return read_frames_csv(ws.frames_csv)


def assert_no_output(ws: Workspace) -> None:
    assert not ws.frames_dir.exists()
    assert not ws.frames_csv.exists()
    if ws.root.exists():
        assert not [p.name for p in ws.root.iterdir() if p.name.startswith(".frames")]


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> dict:
    d = tmp_path_factory.mktemp("videos")
    out = {"v12": write_video(d / "v12.mp4", shifting_frames(12)),
           "v20": write_video(d / "v20.mp4", shifting_frames(20)),
           "big": write_video(d / "big.mp4", shifting_frames(30, 96, 128, seed=3)),
           "big_fs": write_video(d / "big_fs.mp4", shifting_frames(30, 96, 128, seed=3),
                                 output_params=["-movflags", "+faststart"])}
    return out


# --------------------------------------------------------------------------------------------
# videos
# --------------------------------------------------------------------------------------------
def test_video_names_timestamps_count(videos, tmp_path):
    ws = Workspace(tmp_path / "ws")
    out = extract_frames(videos["v12"], ws, FramesConfig(max_size=0))
    assert out.output == ws.frames_dir
    names = [f"{i:06d}" for i in range(12)]
    assert ws.frame_names() == names
    rows = csv_rows(ws)
    assert [r["name"] for r in rows] == names
    assert [r["source_index"] for r in rows] == list(range(12))
    assert [r["timestamp_us"] for r in rows] == [round(i * 1e6 / 30) for i in range(12)]
    assert all(r["kept"] and r["reason"] == "" and r["sharpness"] > 0 for r in rows)
    assert ws.frames_csv.read_text().splitlines()[0] == ",".join(CSV_COLUMNS)
    src = shifting_frames(12)
    for i in (0, 11):
        img = iio.imread(ws.frames_dir / f"{i:06d}.png")
        assert img.shape == (H, W, 3) and img.dtype == np.uint8
        assert np.abs(img.astype(int) - src[i]).mean() < 12  # lossy h264


def test_video_stride_and_target_fps(videos, tmp_path):
    ws = Workspace(tmp_path / "a")
    extract_frames(videos["v12"], ws, FramesConfig(stride=3, **NO_BLUR))
    rows = csv_rows(ws)
    assert [r["source_index"] for r in rows] == [0, 3, 6, 9]  # stride-skipped frames are not listed
    assert [r["timestamp_us"] for r in rows] == [0, 100000, 200000, 300000]
    assert ws.frame_names() == ["000000", "000003", "000006", "000009"]

    ws2 = Workspace(tmp_path / "b")
    extract_frames(videos["v12"], ws2, FramesConfig(fps=10.0, stride=5, **NO_BLUR))  # fps wins
    assert ws2.frame_names() == ["000000", "000003", "000006", "000009"]


def test_variable_frame_rate_keeps_the_recorded_times(tmp_path):
    """A phone clip with a variable frame rate: frames.csv holds each frame's own presentation time
    (docs/FORMATS.md: timestamp_us from the video), not index / average rate, and a target rate samples
    by those times."""
    frames = shifting_frames(6)
    lines = []
    for k, (f, dur) in enumerate(zip(frames, (0.04, 0.04, 0.68, 0.04, 0.08, 0.04), strict=False)):
        iio.imwrite(tmp_path / f"f{k}.png", f)
        lines += [f"file f{k}.png", f"duration {dur}"]
    lines.append("file f5.png")
    (tmp_path / "list.txt").write_text("\n".join(lines) + "\n")
    video = tmp_path / "vfr.mp4"
    subprocess.run([ffmpeg(), "-v", "error", "-y", "-f", "concat", "-i", str(tmp_path / "list.txt"),
                    "-fps_mode", "vfr", "-c:v", "libx264", "-pix_fmt", "yuv420p", str(video)], check=True)
    ws = Workspace(tmp_path / "ws")
    extract_frames(video, ws, FramesConfig(**NO_BLUR))
    rows = csv_rows(ws)
    assert [r["timestamp_us"] for r in rows] == [0, 40000, 80000, 760000, 800000, 880000, 920000]
    assert len(ws.frame_names()) == 7
    ws2 = Workspace(tmp_path / "ws2")
    extract_frames(video, ws2, FramesConfig(fps=5.0, **NO_BLUR))  # nearest to 0, 200, 400, 600, 800 ms
    assert [r["source_index"] for r in csv_rows(ws2)] == [0, 2, 3, 4]


def test_max_frames_deterministic(videos, tmp_path):
    cfg = FramesConfig(stride=2, max_frames=4, max_size=32)
    a, b = Workspace(tmp_path / "a"), Workspace(tmp_path / "b")
    extract_frames(videos["v20"], a, cfg)
    extract_frames(videos["v20"], b, cfg)
    assert a.frames_csv.read_bytes() == b.frames_csv.read_bytes()
    assert a.frame_names() == b.frame_names() == ["000000", "000006", "000012", "000018"]
    for name in a.frame_names():
        assert (a.frames_dir / f"{name}.png").read_bytes() == (b.frames_dir / f"{name}.png").read_bytes()
    rows = csv_rows(a)
    assert [r["source_index"] for r in rows] == list(range(0, 20, 2))
    dropped = [r for r in rows if not r["kept"]]
    assert len(dropped) == 6 and all(r["reason"] == "max_frames" and r["sharpness"] is None for r in dropped)
    # Re-running into the same workspace replaces the folder (no stale frames).
    extract_frames(videos["v20"], a, FramesConfig(stride=2, max_frames=2, max_size=32))
    assert a.frame_names() == ["000000", "000018"]


def test_resize_to_max_side_never_upscale(videos, tmp_path):
    ws = Workspace(tmp_path / "s")
    extract_frames(videos["big"], ws, FramesConfig(max_size=48, max_frames=3))
    img = iio.imread(ws.frames_dir / f"{ws.frame_names()[0]}.png")
    assert img.shape == (36, 48, 3)
    ws2 = Workspace(tmp_path / "l")
    extract_frames(videos["big"], ws2, FramesConfig(max_size=1000, max_frames=3))
    assert iio.imread(ws2.frames_dir / f"{ws2.frame_names()[0]}.png").shape == (96, 128, 3)


def test_rotation_metadata_honoured(tmp_path):
    frames = np.zeros((4, H, W, 3), np.uint8)
    frames[:, :10, :20] = 255  # a bright block at the top left
    plain = write_video(tmp_path / "plain.mp4", frames)
    rotated = tmp_path / "rot.mp4"
    # ffmpeg ≥ 7 ignores "-metadata:s:v:0 rotate=90"; the display matrix is set by -display_rotation.
    subprocess.run([ffmpeg(), "-v", "error", "-y", "-display_rotation", "90", "-i", str(plain),
                    "-c", "copy", str(rotated)], check=True)
    a, b = Workspace(tmp_path / "a"), Workspace(tmp_path / "b")
    extract_frames(plain, a, FramesConfig(**NO_BLUR))
    extract_frames(rotated, b, FramesConfig(**NO_BLUR))
    up = iio.imread(a.frames_dir / "000000.png")
    rot = iio.imread(b.frames_dir / "000000.png")
    assert up.shape == (H, W, 3) and rot.shape == (W, H, 3)
    # 90° display rotation = counter-clockwise: the block moves to the bottom left.
    assert np.abs(rot.astype(int) - np.rot90(up, 1)).mean() < 3
    assert rot[-5, 5].mean() > 200 and rot[5, 5].mean() < 50


def test_truncated_videos(videos, tmp_path):
    # moov atom at the end (the default): a cut file cannot be opened at all -> clear error.
    data = videos["big"].read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) // 2])
    ws = Workspace(tmp_path / "w1")
    with pytest.raises(InputError, match=r"cut\.mp4.*cannot decode.*moov"):
        extract_frames(cut, ws, FramesConfig())
    assert_no_output(ws)
    # index at the front (faststart): the decodable first frames are used.  (The first, intra
    # frame is most of this small file, so cut near the end.)
    data = videos["big_fs"].read_bytes()
    cut2 = tmp_path / "cut_fs.mp4"
    cut2.write_bytes(data[: int(len(data) * 0.9)])
    ws2 = Workspace(tmp_path / "w2")
    extract_frames(cut2, ws2, FramesConfig(**NO_BLUR))
    names = ws2.frame_names()
    assert 2 <= len(names) < 30
    assert names == [f"{i:06d}" for i in range(len(names))]
    assert len(csv_rows(ws2)) == len(names)
    # cut inside the first frame: nothing decodable -> clear error, no output.
    cut3 = tmp_path / "cut_fs_early.mp4"
    cut3.write_bytes(data[: len(data) // 3])
    ws3 = Workspace(tmp_path / "w3")
    with pytest.raises(InputError, match=r"cut_fs_early\.mp4: ffmpeg cannot decode it as a video \(\w"):
        extract_frames(cut3, ws3, FramesConfig())
    assert_no_output(ws3)


def test_video_errors(tmp_path):
    ws = Workspace(tmp_path / "ws")
    text = tmp_path / "notes.mp4"
    text.write_text("this is not a video\n")
    with pytest.raises(InputError, match=r"notes\.mp4: ffmpeg cannot decode"):
        extract_frames(text, ws, FramesConfig())
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    with pytest.raises(InputError, match=r"empty\.mp4: empty file"):
        extract_frames(empty, ws, FramesConfig())
    one = write_video(tmp_path / "one.mp4", shifting_frames(1))
    with pytest.raises(InputError, match=r"one\.mp4: need at least 2 frames"):
        extract_frames(one, ws, FramesConfig())
    with pytest.raises(InputError, match=r"missing\.mp4: input not found"):
        extract_frames(tmp_path / "missing.mp4", ws, FramesConfig())
    image = tmp_path / "still.png"
    iio.imwrite(image, texture(H, W))
    with pytest.raises(InputError, match=r"still\.png: a single image; need a video or a folder"):
        extract_frames(image, ws, FramesConfig())
    assert_no_output(ws)


def test_too_few_frames_after_selection(videos, tmp_path):
    ws = Workspace(tmp_path / "ws")
    with pytest.raises(StageError, match=r"v12\.mp4: only 1 frame"):
        extract_frames(videos["v12"], ws, FramesConfig(stride=100))
    assert_no_output(ws)


def test_output_path_is_a_file(videos, tmp_path):
    ws = Workspace(tmp_path / "ws").create()
    ws.frames_dir.write_text("in the way")
    with pytest.raises(InputError, match="exists and is not a folder"):
        extract_frames(videos["v12"], ws, FramesConfig())
    assert ws.frames_dir.read_text() == "in the way"
    assert not ws.frames_csv.exists()


# --------------------------------------------------------------------------------------------
# image folders
# --------------------------------------------------------------------------------------------
def test_folder_blurry_frame_dropped(tmp_path):
    frames = list(shifting_frames(11, 64, 80, shift=3, seed=1))
    frames[5] = ndimage.gaussian_filter(frames[5], (2.0, 2.0, 0))
    folder = write_folder(tmp_path / "imgs", frames)
    ws = Workspace(tmp_path / "ws")
    extract_frames(folder, ws, FramesConfig(max_size=0))
    rows = csv_rows(ws)
    assert [r["name"] for r in rows] == [f"img_{k:03d}" for k in range(11)]
    assert [r["timestamp_us"] for r in rows] == [k * 33333 for k in range(11)]
    assert [r["reason"] for r in rows] == [""] * 5 + ["blurry"] + [""] * 5
    assert not rows[5]["kept"] and rows[5]["sharpness"] < 0.35 * rows[4]["sharpness"]
    assert "img_005" not in ws.frame_names() and len(ws.frame_names()) == 10
    # Written frames are lossless copies of the inputs.
    assert np.array_equal(iio.imread(ws.frames_dir / "img_004.png"), frames[4])


def test_folder_grey_rgba_and_16bit_converted(tmp_path):
    base = texture(H, W, seed=2)
    grey = (to_grey(base) * 255).round().astype(np.uint8)
    rgba = np.concatenate([base, np.full((H, W, 1), 7, np.uint8)], axis=2)
    folder = tmp_path / "mix"
    folder.mkdir()
    iio.imwrite(folder / "a.png", grey)
    iio.imwrite(folder / "b.png", rgba)
    iio.imwrite(folder / "c.png", grey.astype(np.uint16) * 257)
    assert read_image_rgb(folder / "a.png").shape == (H, W, 3)
    assert np.array_equal(read_image_rgb(folder / "a.png"), np.repeat(grey[..., None], 3, 2))
    assert np.array_equal(read_image_rgb(folder / "b.png"), base)
    assert np.array_equal(read_image_rgb(folder / "c.png"), np.repeat(grey[..., None], 3, 2))
    ws = Workspace(tmp_path / "ws")
    extract_frames(folder, ws, FramesConfig(**NO_BLUR))
    assert ws.frame_names() == ["a", "b", "c"]
    for n in "abc":
        assert iio.imread(ws.frames_dir / f"{n}.png").shape == (H, W, 3)


def test_folder_non_images_ignored_case_insensitive(tmp_path):
    frames = shifting_frames(3)
    folder = tmp_path / "f"
    folder.mkdir()
    iio.imwrite(folder / "b.PNG", frames[1])
    iio.imwrite(folder / "a.jpg", frames[0])
    iio.imwrite(folder / "c.JPEG", frames[2])
    (folder / "notes.txt").write_text("hello")
    (folder / ".hidden.png").write_bytes(b"junk")
    (folder / "sub").mkdir()
    iio.imwrite(folder / "sub" / "d.png", frames[0])
    iio.imwrite(folder / "d.webp", frames[2], extension=".webp", lossless=True)
    assert [p.name for p in list_images(folder)] == ["a.jpg", "b.PNG", "c.JPEG", "d.webp"]
    ws = Workspace(tmp_path / "ws")
    extract_frames(folder, ws, FramesConfig(**NO_BLUR))
    assert ws.frame_names() == ["a", "b", "c", "d"]
    (folder / "e.png").symlink_to(tmp_path / "gone.png")  # a missing frame, not a file to ignore
    with pytest.raises(InputError, match="e.png: broken link"):
        list_images(folder)


def test_folder_min_motion(tmp_path):
    f = shifting_frames(2, shift=6)
    folder = write_folder(tmp_path / "m", [f[0], f[0], f[0], f[1], f[1]])
    ws = Workspace(tmp_path / "ws")
    extract_frames(folder, ws, FramesConfig(min_motion=1.0, **NO_BLUR))
    rows = csv_rows(ws)
    assert [r["reason"] for r in rows] == ["", "no motion", "no motion", "", "no motion"]
    assert ws.frame_names() == ["img_000", "img_003"]


def test_folder_mixed_sizes(tmp_path):
    folder = write_folder(tmp_path / "m", [texture(H, W), texture(H, W, 1), texture(H, 80, 2)])
    ws = Workspace(tmp_path / "ws")
    with pytest.raises(InputError, match=r"img_002\.png is 80x48 but img_000\.png is 64x48"):
        extract_frames(folder, ws, FramesConfig())
    assert_no_output(ws)


@pytest.mark.parametrize("kind", ["garbage", "truncated"])
def test_folder_corrupt_image_no_partial_output(tmp_path, kind):
    frames = shifting_frames(6)
    folder = write_folder(tmp_path / "c", frames)
    bad = folder / "img_004.png"
    if kind == "garbage":
        bad.write_bytes(b"not an image at all" * 10)
    else:  # valid header, data cut: fails only when decoded, after earlier frames were written
        bad.write_bytes(bad.read_bytes()[:300])
    ws = Workspace(tmp_path / "ws")
    with pytest.raises(InputError, match=r"img_004\.png: cannot read image"):
        extract_frames(folder, ws, FramesConfig(**NO_BLUR))
    assert_no_output(ws)
    with pytest.raises(InputError, match=r"img_004\.png: cannot read image"):
        read_image_rgb(bad)


def test_folder_errors(tmp_path):
    ws = Workspace(tmp_path / "ws")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InputError, match=r"empty: no images found"):
        extract_frames(empty, ws, FramesConfig())
    (empty / "readme.txt").write_text("x")
    with pytest.raises(InputError, match=r"empty: no images found"):
        extract_frames(empty, ws, FramesConfig())
    single = write_folder(tmp_path / "single", [texture(H, W)])
    with pytest.raises(InputError, match=r"single: need at least 2 frames"):
        extract_frames(single, ws, FramesConfig())
    dup = write_folder(tmp_path / "dup", [texture(H, W)])
    iio.imwrite(dup / "img_000.jpg", texture(H, W))
    with pytest.raises(InputError, match="same name"):
        extract_frames(dup, ws, FramesConfig())
    assert_no_output(ws)


def test_progress_bar_smoke(tmp_path, capsys):
    folder = write_folder(tmp_path / "p", shifting_frames(3))
    ws = Workspace(tmp_path / "ws")
    extract_frames(folder, ws, FramesConfig(**NO_BLUR), progress=True)
    assert "frames" in capsys.readouterr().err
    extract_frames(folder, ws, FramesConfig(**NO_BLUR), progress=False)
    assert capsys.readouterr().err == ""


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------
def test_sharpness_and_resize_helpers():
    t = texture(60, 90, seed=4).astype(np.float32)
    g = to_grey(t)
    assert sharpness(np.full((20, 20), 100.0)) == 0.0
    assert sharpness(ndimage.gaussian_filter(g, 2.0)) < 0.2 * sharpness(g)
    assert sharpness(t) == pytest.approx(sharpness(g))
    img = texture(60, 90).astype(np.uint8)
    assert resize_max(img, 45).shape == (30, 45, 3)
    assert resize_max(img.transpose(1, 0, 2), 45).shape == (45, 30, 3)
    assert resize_max(img, 0) is img and resize_max(img, 500) is img


def test_sampling_helpers():
    assert sample_indices(10, stride=3) == [0, 3, 6, 9]
    assert sample_indices(12, fps=10, source_fps=30) == [0, 3, 6, 9]
    assert sample_indices(5, fps=60, source_fps=30) == [0, 1, 2, 3, 4]
    assert sample_indices(10, fps=4, source_fps=10) == [0, 3, 5, 8]  # nearest to 0, 2.5, 5, 7.5
    for n, fps, rate in ((12, 10, 30), (10, 4, 10), (100, 7, 30), (61, 12.5, 29.97), (5, 60, 30)):
        stamps = [round(i * 1e6 / rate) for i in range(n)]  # a constant rate: the same choice by time
        assert sample_indices(n, fps=fps, source_fps=rate, timestamps_us=stamps) == \
            sample_indices(n, fps=fps, source_fps=rate)
    assert even_subset(10, 4) == [0, 3, 6, 9]
    assert even_subset(20, 4) == [0, 6, 13, 19]
    assert even_subset(5, 0) == even_subset(5, 9) == [0, 1, 2, 3, 4]
    assert even_subset(5, 1) == [0]


def test_encode_png_roundtrip(tmp_path):
    img = texture(33, 47, seed=5)
    p = tmp_path / "x.png"
    p.write_bytes(encode_png(img))
    assert np.array_equal(iio.imread(p), img)


def test_read_frames_csv_errors(tmp_path):
    p = tmp_path / "frames.csv"
    with pytest.raises(InputError, match="not found"):
        read_frames_csv(p)
    p.write_text("name,index\nx,1\n")
    with pytest.raises(InputError, match="expected columns"):
        read_frames_csv(p)
    p.write_text(",".join(CSV_COLUMNS) + "\nx,1,33333,,maybe,\n")
    with pytest.raises(InputError, match="line 2"):
        read_frames_csv(p)
    p.write_text(",".join(CSV_COLUMNS) + "\nx,1,33333,,true,\ny,2,66666,1.5,false,blurry\n")
    assert read_frames_csv(p) == [
        {"name": "x", "source_index": 1, "timestamp_us": 33333, "sharpness": None, "kept": True,
         "reason": ""},
        {"name": "y", "source_index": 2, "timestamp_us": 66666, "sharpness": 1.5, "kept": False,
         "reason": "blurry"},
    ]


def test_tiny_frames_and_overlong_names_are_refused_early(tmp_path):
    """Frames too small for SfM and stereo, or names too long for the workspace files built from
    them, fail in the frames stage with the reason, not later inside another stage."""
    small = write_folder(tmp_path / "small", shifting_frames(4, h=12, w=16))
    with pytest.raises(InputError, match="16x12 px are too small"):
        extract_frames(small, Workspace(tmp_path / "a"), FramesConfig(**NO_BLUR))
    long = write_folder(tmp_path / "long", shifting_frames(3), names=["x" * 200 + str(k) for k in range(3)])
    with pytest.raises(InputError, match="longer than 180 bytes"):
        extract_frames(long, Workspace(tmp_path / "b"), FramesConfig(**NO_BLUR))
    assert_no_output(Workspace(tmp_path / "a"))
    assert_no_output(Workspace(tmp_path / "b"))
