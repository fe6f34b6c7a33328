"""Tests for the previews: mannequin.labels.colour (colour maps), mannequin.labels.panels (panels,
contact sheets, write_previews) and mannequin.labels.report (report.html)."""
import json
import math
from html.parser import HTMLParser
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest

from mannequin.labels import colour, panels
from mannequin.labels import report as report_module
from mannequin.labels.colour import TURBO_LUT, colorize_confidence, colorize_depth, depth_range
from mannequin.labels.panels import CAPTION_H, SHEET_PAD, contact_sheet, frame_panel, write_previews
from mannequin.labels.report import write_report_html


def _lut_index(rgb: np.ndarray) -> np.ndarray:
    """Nearest TURBO_LUT index of each colour in an (N, 3) uint8 array."""
    d = ((rgb[:, None, :].astype(np.int32) - TURBO_LUT[None, :, :].astype(np.int32)) ** 2).sum(-1)
    return d.argmin(1)


def _scene(h=48, w=64, seed=0):
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    depth = np.linspace(1.0, 5.0, w, dtype=np.float32)[None, :].repeat(h, 0)
    raw = depth.copy()
    raw[:5] = 0
    label = depth.copy()
    label[:, :10] = 0
    return image, raw, label


# --- colour maps -------------------------------------------------------------------------------

def test_turbo_lut_shape_and_ends():
    assert TURBO_LUT.shape == (256, 3) and TURBO_LUT.dtype == np.uint8
    lo, hi = TURBO_LUT[0].astype(int), TURBO_LUT[255].astype(int)
    assert lo[2] > lo[0]            # far end is blue-ish
    assert hi[0] > hi[2]            # near end is red-ish
    mid = TURBO_LUT[128].astype(int)
    assert mid.sum() > lo.sum() and mid.sum() > hi.sum()  # bright middle (perceptual ramp)


def test_colorize_depth_shape_dtype_and_invalid_black():
    d = np.linspace(0.5, 10, 30 * 40, dtype=np.float32).reshape(30, 40)
    d[0, 0] = 0
    d[1, 1] = np.nan
    d[2, 2] = np.inf
    d[3, 3] = -1
    out = colorize_depth(d)
    assert out.shape == (30, 40, 3) and out.dtype == np.uint8
    for r, c in [(0, 0), (1, 1), (2, 2), (3, 3)]:
        assert (out[r, c] == 0).all()
    assert (out.reshape(-1, 3).sum(1) > 0).sum() == d.size - 4  # every valid pixel has a colour


def test_colorize_depth_all_invalid_is_black():
    assert not colorize_depth(np.zeros((5, 6), np.float32)).any()
    assert not colorize_depth(np.full((5, 6), np.nan)).any()


@pytest.mark.parametrize("inverse", [True, False])
def test_colorize_depth_near_is_warm_and_monotone(inverse):
    depth = np.linspace(1.0, 20.0, 200)[None, :]  # increasing depth left to right
    out = colorize_depth(depth, 1.0, 20.0, inverse=inverse)
    idx = _lut_index(out[0])
    assert np.all(np.diff(idx) <= 0)  # LUT index never rises as depth grows (= rises with 1/depth)
    assert idx[0] == 255 and idx[-1] == 0  # the range maps onto the full colormap
    assert out[0, 0, 0] > out[0, 0, 2] and out[0, -1, 2] > out[0, -1, 0]  # near red, far blue


def test_colorize_depth_inverse_is_linear_in_disparity():
    depth = np.array([[1.0, 2.0, 4.0]])
    idx = _lut_index(colorize_depth(depth, 1.0, 4.0, inverse=True)[0])
    # 1/d = 1, 0.5, 0.25 -> t = 1, 1/3, 0
    assert idx[0] == 255 and idx[2] == 0 and abs(idx[1] - 85) <= 1


def test_colorize_depth_robust_default_range_ignores_outliers():
    d = np.full((50, 50), 2.0, np.float32)
    d[:, 25:] = 4.0
    d[0, 0] = 1e-4  # absurdly near outlier
    d[0, 1] = 1e6   # absurdly far outlier
    out = colorize_depth(d)
    idx = _lut_index(out.reshape(-1, 3)).reshape(50, 50)
    assert idx[10, 0] == 255 and idx[10, 40] == 0  # the bulk of the scene spans the full range


def test_depth_range_pools_and_handles_empty():
    assert depth_range(np.zeros((3, 3)), None) is None
    lo, hi = depth_range(np.full((4, 4), 3.0))
    assert lo < 3.0 < hi
    lo, hi = depth_range(np.linspace(1, 2, 100), np.linspace(5, 6, 100))
    assert lo < 1.1 and hi > 5.9


def test_colorize_confidence():
    c = np.array([[0.0, 0.5, 1.0, np.nan, 2.0]])
    out = colorize_confidence(c)
    assert out.shape == (1, 5, 3) and out.dtype == np.uint8
    assert out[0, 0].tolist() == [0, 0, 0] and out[0, 2].tolist() == [255, 255, 255]
    assert out[0, 3].tolist() == [0, 0, 0] and out[0, 4].tolist() == [255, 255, 255]
    assert out[0, 1, 0] in (127, 128)


# --- panels and sheets ---------------------------------------------------------------------------

@pytest.mark.parametrize("titles", [True, False])
def test_frame_panel_size_and_contents(titles):
    image, raw, label = _scene()
    panel = frame_panel(image, raw, label, titles=titles)
    assert panel.shape == (48, 3 * 64, 3) and panel.dtype == np.uint8
    if not titles:
        assert np.array_equal(panel[:, :64], image)
    # a pixel without a label is black on the label panel; bottom rows avoid the title box
    assert (panel[40, 128 + 2] == 0).all()
    assert (panel[40, 64 + 40] != 0).any()


def test_frame_panel_shared_range_and_dynamic_tint():
    image, raw, label = _scene()
    dyn = np.zeros(label.shape, bool)
    dyn[30:40, 30:40] = True
    panel = frame_panel(image, raw, label, dyn, titles=False)
    raw_p, lab_p = panel[:, 64:128], panel[:, 128:]
    same = ~dyn & (label > 0) & (raw > 0)
    assert np.array_equal(raw_p[same], lab_p[same])  # same colour range on both panels
    tinted = lab_p[dyn].astype(int)
    assert (tinted[:, 0] > tinted[:, 1]).all() and (tinted[:, 2] > tinted[:, 1]).all()  # magenta


def test_frame_panel_resizes_depth_to_image():
    image, raw, label = _scene(48, 64)
    panel = frame_panel(image, raw[::2, ::2], label[::2, ::2], titles=False)
    assert panel.shape == (48, 192, 3)


@pytest.mark.parametrize("n,cols", [(1, 4), (4, 4), (5, 4), (9, 3), (3, 5)])
def test_contact_sheet_grid_size(n, cols):
    imgs = [np.full((30, 40, 3), i * 20, np.uint8) for i in range(n)]
    tw = 80
    sheet = contact_sheet(imgs, cols=cols, thumb_width=tw)
    c = min(cols, n)
    r = math.ceil(n / c)
    assert sheet.shape == (r * (60 + SHEET_PAD) + SHEET_PAD, c * (tw + SHEET_PAD) + SHEET_PAD, 3)
    assert sheet.dtype == np.uint8
    capt = contact_sheet(imgs, cols=cols, thumb_width=tw, captions=[f"f{i}" for i in range(n)])
    assert capt.shape[0] == r * (60 + CAPTION_H + SHEET_PAD) + SHEET_PAD


def test_contact_sheet_empty_and_bad_captions():
    assert contact_sheet([]).dtype == np.uint8
    with pytest.raises(ValueError):
        contact_sheet([np.zeros((4, 4, 3), np.uint8)], captions=["a", "b"])


# --- writers -----------------------------------------------------------------------------------

def _items(n, h=48, w=64):
    for i in range(n):
        image, raw, label = _scene(h, w, seed=i)
        yield {"name": f"{i:06d}", "image": image, "raw_depth": raw, "label": label}


def test_write_previews_files_atomic(tmp_path):
    out = tmp_path / "preview"
    paths = write_previews(out, _items(3))
    names = sorted(p.name for p in out.iterdir())
    assert names == ["000000.jpg", "000001.jpg", "000002.jpg", "contact_sheet.png"]
    assert sorted(p.name for p in paths) == names
    assert not [p for p in out.rglob(".*")]  # no temporaries left behind
    panel = iio.imread(out / "000000.jpg")
    assert panel.shape == (48, 192, 3)
    sheet = iio.imread(out / "contact_sheet.png")
    assert sheet.shape[1] == 3 * (panels.THUMB_WIDTH + SHEET_PAD) + SHEET_PAD


def test_write_previews_png_downscales_and_caps_thumbs(tmp_path):
    out = tmp_path / "p"
    write_previews(out, _items(11, 40, 400), fmt="png", max_thumbs=4, max_width=600)
    panel = iio.imread(out / "000000.png")
    assert panel.shape == (20, 600, 3)
    sheet = iio.imread(out / "contact_sheet.png")
    # 11 frames decimated to strides of 4 -> frames 0, 4, 8 -> 3 thumbnails in one row
    assert sheet.shape[1] == 3 * (panels.THUMB_WIDTH + SHEET_PAD) + SHEET_PAD
    assert not [p for p in out.rglob(".*")]


def test_write_previews_rejects_bad_name(tmp_path):
    image, raw, label = _scene()
    with pytest.raises(ValueError):
        write_previews(tmp_path, [{"name": "../x", "image": image, "raw_depth": raw, "label": label}])


class _StrictParser(HTMLParser):
    VOID = {"meta", "img", "br", "hr", "link", "input"}

    def __init__(self):
        super().__init__()
        self.stack, self.tags, self.errors = [], [], []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag):
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"unbalanced </{tag}> (open: {self.stack[-3:]})")
        else:
            self.stack.pop()


def test_write_report_html(tmp_path):
    prev = tmp_path / "preview"
    bad = '<script>alert("x")</script>'
    write_previews(prev, _items(2))
    report = {
        "input": "clips/" + bad + ".mp4",
        "verdict": {"accepted": False, "reasons": ["too few frames registered: 2 < 10", bad]},
        "counts": {"frames": 3, "registered": 2, "kept": 2, "dropped": 1},
        "stages": {"frames": {"seconds": 1.234, "peak_mb": 210.5, "skipped": False},
                   "sfm": {"seconds": 0.5, "peak_mb": 300.0, "skipped": True, "focal_px": 517.3,
                           "reprojection_error_px": 0.98, "rolling_shutter_readout_ms": 20.0},
                   "stereo": {"seconds": 2.0, "window": 15, "window_agreement": {"7": 0.054, "15": 0.092, "11": 0.075}},
                   "fuse": {"seconds": 1.0, "depth_noise_rel": 0.0286, "noise_band_rel": 0.0859,
                            "rel_depth": 0.0343, "min_views": 3, "moving_rel": 0.286, "mean_moving_fraction": 0.0042}},
        "eval": {"clip": {"absrel": 0.0512, "delta_1.25": 0.97}},
        "config": {"preset": "fast", "note": bad},
    }
    frames = [{"name": "000000", "valid_fraction": 0.75, "kept": True, "reason": ""},
              {"name": "000001", "valid_fraction": 0.1, "kept": False, "reason": "low valid fraction"},
              {"name": bad, "valid_fraction": 0.0, "kept": False, "reason": bad}]
    path = write_report_html(prev / "report.html", report, frames)
    assert path == prev / "report.html"
    text = path.read_text()
    assert "<script" not in text.lower()
    assert "&lt;script&gt;" in text
    assert "rejected" in text and "too few frames registered" in text
    assert "peak memory" in text and "1.23" in text and "210.5" in text
    assert "0.0512" in text and "<details>" in text
    assert "rolling-shutter readout" in text and "20.00" in text and "517.30" in text
    assert "moving-people mask" in text and "28.60%" in text and "0.42% of the pixels" in text
    assert "matching window" in text and "7 px: 5.4%, 11 px: 7.5%, 15 px: 9.2%" in text
    assert "depth noise between frames" in text and "2.86" in text and "8.59" in text
    assert "fuse agreement test" in text and "within 3.43% from 3 views" in text
    assert not [p for p in prev.rglob(".*")]
    parser = _StrictParser()
    parser.feed(text)
    parser.close()
    assert not parser.errors and not parser.stack
    srcs = [a.get("src") for t, a in parser.tags if t == "img"]
    assert "contact_sheet.png" in srcs and "000000.jpg" in srcs
    for _t, a in parser.tags:  # only relative links, no external resources
        for key in ("src", "href"):
            if key in a:
                assert "://" not in a[key] and not a[key].startswith("/")
                assert (prev / a[key]).is_file()
    assert not any(t in ("script", "link") for t, _ in parser.tags)


def test_write_report_html_accepted_minimal_and_relative_dir(tmp_path):
    write_previews(tmp_path / "preview", _items(1))
    report = {"input": "a.mp4", "verdict": "accepted", "stages": {}, "config": {"x": 1}}
    frames = [{"name": "000000", "valid_fraction": 0.5, "kept": True, "reason": ""}]
    path = write_report_html(tmp_path / "report.html", report, frames, thumbnails_dir_rel="preview")
    text = path.read_text()
    assert 'class="verdict accepted"' in text
    assert 'src="preview/contact_sheet.png"' in text and 'href="preview/000000.jpg"' in text
    json.dumps(report)  # report untouched and still serialisable
    parser = _StrictParser()
    parser.feed(text)
    assert not parser.errors


@pytest.mark.parametrize("module", [colour, panels, report_module])
def test_preview_does_not_import_matplotlib(module):
    src = Path(module.__file__).read_text()
    assert "matplotlib" not in src


def test_turbo_lut_matches_reference_when_matplotlib_present():
    mpl = pytest.importorskip("matplotlib", reason="matplotlib absent: no reference Turbo table")
    ref = mpl.colormaps["turbo"](np.linspace(0, 1, 256))[:, :3] * 255
    assert np.abs(ref - TURBO_LUT).max() <= 1
