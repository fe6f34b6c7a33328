"""``mannequin eval``: its GT readers (Middlebury disparity with calib.txt, PFM, 16-bit PNG with a
scale, GT registered to a distorted camera through ``--gt-intrinsics``), an independent numpy
recomputation of every number it prints, and its plots in WS/preview/."""
import json
import math
import subprocess
import sys

import numpy as np
import pytest

from mannequin.errors import InputError
from mannequin.evaluate import evaluate
from mannequin.io.gt import (
    middlebury_disparity_to_depth,
    read_disparity,
    read_middlebury_calib,
    read_middlebury_depth,
    read_pfm,
)

# A Middlebury 2014 style calibration (values of the "Motorcycle" pair at full size).
F, CX0, CX1, CY, BASELINE = 3979.911, 1244.772, 1369.115, 1019.507, 193.001
DOFFS = CX1 - CX0
CALIB = (f"cam0=[{F} 0 {CX0}; 0 {F} {CY}; 0 0 1]\n"
         f"cam1=[{F} 0 {CX1}; 0 {F} {CY}; 0 0 1]\n"
         f"doffs={DOFFS}\nbaseline={BASELINE}\nwidth={{w}}\nheight={{h}}\nndisp=280\nisint=0\n"
         "vmin=23\nvmax=229\ndyavg=0\ndymax=0\n")


def write_pfm(path, image: np.ndarray, little_endian: bool = True) -> None:
    """A grey PFM written independently of the reader: bottom row first, scale sign = endianness."""
    h, w = image.shape
    with open(path, "wb") as fh:
        fh.write(b"Pf\n" + f"{w} {h}\n".encode() + (b"-1.0\n" if little_endian else b"1.0\n"))
        fh.write(np.flipud(image).astype("<f4" if little_endian else ">f4").tobytes())


def scene_depth(h=24, w=32, seed=0) -> np.ndarray:
    """Depth in mm: a slanted plane with a box in front, 1.5 .. 4 m."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    z = 2500.0 + 40.0 * xx + 10.0 * yy
    z[h // 4: h // 2, w // 4: w // 2] = 1500.0
    return (z * (1 + 0.001 * rng.standard_normal((h, w)))).astype(np.float64)


def test_disparity_to_depth_matches_formula_pixel_by_pixel():
    disp = np.array([[10.0, 0.0, -3.0], [np.inf, np.nan, 250.5]], dtype=np.float32)
    f, b, doffs = 1000.0, 160.0, 5.0
    z = middlebury_disparity_to_depth(disp, f, b, doffs)
    assert z.shape == disp.shape and z.dtype == np.float32
    for (r, c), d in np.ndenumerate(disp.astype(np.float64)):
        expect = b * f / (d + doffs) if math.isfinite(d) and d + doffs > 0 else 0.0
        assert z[r, c] == pytest.approx(expect, rel=1e-6)
    assert z[0, 2] == pytest.approx(160.0 * 1000.0 / 2.0)  # negative disparity, still in front
    assert z[1, 0] == 0 and z[1, 1] == 0                    # unknown
    with pytest.raises(ValueError, match="baseline"):
        middlebury_disparity_to_depth(disp, f, -1.0, doffs)


def test_read_calib(tmp_path):
    p = tmp_path / "calib.txt"
    p.write_text(CALIB.format(w=741, h=500))
    c = read_middlebury_calib(p)
    assert c["f"] == F and c["cx"] == CX0 and c["cy"] == CY
    assert c["doffs"] == pytest.approx(DOFFS) and c["baseline"] == BASELINE
    assert c["width"] == 741 and c["height"] == 500 and c["ndisp"] == 280
    np.testing.assert_array_equal(c["cam1"], [[F, 0, CX1], [0, F, CY], [0, 0, 1]])
    # doffs is derived from the principal points when its line is missing
    p.write_text("".join(ln + "\n" for ln in CALIB.format(w=741, h=500).splitlines() if not ln.startswith("doffs")))
    assert read_middlebury_calib(p)["doffs"] == pytest.approx(CX1 - CX0)


@pytest.mark.parametrize("edit,needle", [
    (lambda t: t.replace("baseline=193.001\n", ""), "no baseline"),
    (lambda t: t.replace("baseline=193.001", "baseline=-4"), "baseline must be positive"),
    (lambda t: t.replace(f"doffs={DOFFS}", "doffs=abc"), "doffs must be a number"),
    (lambda t: t.replace("; 0 0 1]", "]", 1), "cam0 must be a 3x3 matrix"),
    (lambda t: t.replace(f"cam0=[{F}", "cam0=[x"), "cam0 must be a 3x3 matrix of numbers"),
    (lambda t: t.replace(f"cam0=[{F} 0 {CX0}; 0 {F} {CY}; 0 0 1]", f"cam0={F}"), "cam0 must be a matrix"),
    (lambda t: t.split("\n", 2)[2], "no cam0"),
    (lambda t: t + "this line has no equals sign\n", "line 13 is not key=value"),
])
def test_malformed_calib_is_one_clear_error(tmp_path, edit, needle):
    p = tmp_path / "calib.txt"
    p.write_text(edit(CALIB.format(w=32, h=24)))
    with pytest.raises(InputError) as err:
        read_middlebury_calib(p)
    msg = str(err.value)
    assert str(p) in msg and needle in msg and "\n" not in msg


def test_missing_calib_names_the_file(tmp_path):
    with pytest.raises(InputError, match="calib.txt: Middlebury calibration file not found"):
        read_middlebury_calib(tmp_path / "calib.txt")


@pytest.mark.parametrize("little_endian", [True, False])
def test_round_trip_calib_and_pfm(tmp_path, little_endian):
    """Depth → disparity (Middlebury's definition) → PFM + calib.txt → depth again."""
    z = scene_depth()
    h, w = z.shape
    disp = BASELINE * F / z - DOFFS                   # x_left − x_right in px
    disp[3, 5] = np.inf                               # unknown
    write_pfm(tmp_path / "disp0.pfm", disp.astype(np.float32), little_endian)
    (tmp_path / "calib.txt").write_text(CALIB.format(w=w, h=h))
    np.testing.assert_array_equal(read_pfm(tmp_path / "disp0.pfm"), disp.astype(np.float32))
    got = read_middlebury_depth(tmp_path / "disp0.pfm", read_middlebury_calib(tmp_path / "calib.txt"))
    ok = np.isfinite(disp)
    assert got[3, 5] == 0 and (got[ok] > 0).all()
    np.testing.assert_allclose(got[ok], z[ok], rtol=2e-5)     # float32 disparity round-off
    # in metres with depth_scale 1000
    got_m = read_middlebury_depth(tmp_path / "disp0.pfm", read_middlebury_calib(tmp_path / "calib.txt"), 1000.0)
    np.testing.assert_allclose(got_m[ok], z[ok] / 1000.0, rtol=2e-5)


def test_disparity_size_must_match_calib(tmp_path):
    write_pfm(tmp_path / "disp0.pfm", np.full((24, 32), 50.0, np.float32))
    (tmp_path / "calib.txt").write_text(CALIB.format(w=741, h=500))
    with pytest.raises(InputError, match=r"disp0.pfm: disparity size 32x24 differs from calib.txt"):
        read_middlebury_depth(tmp_path / "disp0.pfm", read_middlebury_calib(tmp_path / "calib.txt"))


def test_integer_disparity_reads_zero_as_unknown(tmp_path):
    import imageio.v3 as iio

    raw = np.array([[0, 4, 8], [16, 0, 255]], dtype=np.uint8)
    iio.imwrite(tmp_path / "disp2.png", raw)
    d = read_disparity(tmp_path / "disp2.png")
    assert np.isnan(d[0, 0]) and np.isnan(d[1, 1])
    np.testing.assert_array_equal(d[raw > 0], raw[raw > 0].astype(np.float32))
    # no calibration: depth 1/d, only up to scale
    z = read_middlebury_depth(tmp_path / "disp2.png")
    np.testing.assert_allclose(z[raw > 0], 1.0 / raw[raw > 0])
    assert z[0, 0] == 0


# --- through evaluate(): a minimal workspace (sparse model + labels) ------------------------------

def make_workspace(root, labels: dict, width: int, height: int, fx: float):
    """A workspace with a PINHOLE sparse model of the named frames and their label maps."""
    from mannequin.io.cameras import CameraFrame, Intrinsics, Pose, to_reconstruction
    from mannequin.workspace import Workspace

    ws = Workspace(root).create()
    intr = Intrinsics(fx, fx, width / 2, height / 2, width, height)
    names = sorted(labels)
    frames = [CameraFrame.from_intrinsics(0, intr, Pose(np.eye(3), [-100.0 * k, 0, 0])) for k in range(len(names))]
    ws.sparse_dir.mkdir(parents=True)
    to_reconstruction(frames, [f"{n}.png" for n in names], width, height).write(str(ws.sparse_dir))
    ws.labels_dir.mkdir()
    for n, lab in labels.items():
        np.save(ws.labels_dir / f"{n}.npy", lab.astype(np.float32))
    return ws


def _absrel(pred, gt, scale=1.0):
    m = (pred > 0) & (gt > 0)
    return float(np.mean(np.abs(scale * pred[m] - gt[m]) / gt[m]))


def test_evaluate_middlebury_known_poses_and_resized_labels(tmp_path):
    z = scene_depth(48, 64)                            # GT at full size (mm)
    disp = (BASELINE * F / z - DOFFS).astype(np.float32)
    disp[:2] = np.inf
    gt_dir = tmp_path / "gt"
    gt_dir.mkdir()
    write_pfm(gt_dir / "disp0.pfm", disp)
    (gt_dir / "calib.txt").write_text(CALIB.format(w=64, h=48))
    # labels at half size (the frames were resized), 1% too far, some unlabelled
    gt_small = BASELINE * F / (disp[1::2, 1::2].astype(np.float64) + DOFFS)   # pixel centres of the half grid
    label = gt_small * 1.01                            # 0 where the disparity is unknown (inf)
    label[10:, :3] = 0
    ws = make_workspace(tmp_path / "ws", {"im0": label, "im1": label}, 32, 24, 500.0)
    res = evaluate(ws, gt_dir, fit_scale=False)
    assert res["clip"]["gt_format"] == "middlebury" and res["clip"]["scale"] == 1.0
    assert [f["name"] for f in res["frames"]] == ["im0"]      # disp0 belongs to im0 only
    gt_ok = gt_small > 0
    assert res["clip"]["absrel"] == pytest.approx(0.01, rel=1e-4)
    assert res["clip"]["density"] == pytest.approx(((label > 0) & gt_ok).sum() / gt_ok.sum())
    # a lone disp0 with frames not named im<N> belongs to the first frame
    ws2 = make_workspace(tmp_path / "ws2", {"left": label, "right": label}, 32, 24, 500.0)
    assert [f["name"] for f in evaluate(ws2, gt_dir, fit_scale=False)["frames"]] == ["left"]
    # in metres, with known poses
    res_m = evaluate(ws, gt_dir, fit_scale=False, depth_scale=1000.0)
    assert res_m["clip"]["absrel"] == pytest.approx(_absrel(label, gt_small / 1000.0))
    # the depth format ignores the disparity files
    with pytest.raises(InputError, match="no GT depth file matches"):
        evaluate(ws, gt_dir, gt_format="depth")


def test_evaluate_uncalibrated_disparity_fits_one_scale(tmp_path):
    """Middlebury 2003 layout: disp2.pgm / disp6.pgm for frames im2 / im6, no calib.txt."""
    import imageio.v3 as iio

    rng = np.random.default_rng(1)
    gt_dir = tmp_path / "gt"
    gt_dir.mkdir()
    labels, raws = {}, {}
    for k in (2, 6):
        raw = rng.integers(20, 200, size=(24, 32)).astype(np.uint8)
        raw[0, :5] = 0                                  # unknown
        iio.imwrite(gt_dir / f"disp{k}.pgm", raw)
        raws[k] = raw
        labels[f"im{k}"] = np.where(raw > 0, 3.0 / np.maximum(raw, 1), 0) * (1 + 0.01 * (k == 6))
    labels["im4"] = np.ones((24, 32))
    ws = make_workspace(tmp_path / "ws", labels, 32, 24, 300.0)
    with pytest.raises(InputError, match="no GT depth file matches"):
        evaluate(ws, gt_dir)                            # auto: no calib.txt → depth format
    res = evaluate(ws, gt_dir, gt_format="middlebury", fit_scale=False)
    assert res["clip"]["gt_format"] == "middlebury-uncalibrated" and res["clip"]["scale_fitted"]
    assert [f["name"] for f in res["frames"]] == ["im2", "im6"]
    # independent: the median of gt/pred over both frames, then AbsRel with that scale
    P = np.concatenate([labels["im2"].ravel(), labels["im6"].ravel()])
    G = np.concatenate([np.where(raws[k] > 0, 1.0 / np.maximum(raws[k], 1), 0).ravel() for k in (2, 6)])
    m = (P > 0) & (G > 0)
    s = np.median(G[m] / P[m])
    assert res["clip"]["scale"] == pytest.approx(s, rel=1e-5)
    assert res["clip"]["absrel"] == pytest.approx(np.mean(np.abs(s * P[m] - G[m]) / G[m]), rel=1e-4)


def test_cli_eval_autodetects_calib_and_reports_bad_calib(tmp_path):
    z = scene_depth()
    h, w = z.shape
    gt_dir = tmp_path / "gt"
    gt_dir.mkdir()
    write_pfm(gt_dir / "disp0.pfm", (BASELINE * F / z - DOFFS).astype(np.float32))
    (gt_dir / "calib.txt").write_text(CALIB.format(w=w, h=h))
    ws = make_workspace(tmp_path / "ws", {"im0": z / 1000.0}, w, h, 400.0)   # labels in metres
    run = [sys.executable, "-m", "mannequin", "eval", str(ws.root), "--gt-depth", str(gt_dir), "--quiet"]
    out = subprocess.run(run + ["--depth-scale", "1000"], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    clip = json.loads(out.stdout)["clip"]
    assert clip["gt_format"] == "middlebury" and clip["absrel"] < 1e-4 and clip["density"] == 1.0
    (gt_dir / "calib.txt").write_text(CALIB.format(w=w, h=h).replace("baseline=", "baseline=x"))
    out = subprocess.run(run, capture_output=True, text=True, timeout=300)
    lines = out.stderr.strip().splitlines()
    assert out.returncode != 0 and len(lines) == 1 and "calib.txt: baseline must be a number" in lines[0]


def test_real_cones_disparity(shared_data):
    """Middlebury 2003 Cones: 8-bit PGM, 0 = unknown (PROVENANCE.md: about 97 % valid)."""
    d = read_disparity(shared_data / "middlebury_cones" / "disp2.pgm")
    assert d.shape == (375, 450)
    assert 0.9 < np.isfinite(d).mean() < 1.0
    z = read_middlebury_depth(shared_data / "middlebury_cones" / "disp2.pgm")
    ok = np.isfinite(d)
    np.testing.assert_allclose(z[ok] * d[ok], 1.0, rtol=1e-6)


def test_pixelwise_eval_of_a_rolling_shutter_workspace_warns(tiny_clip, tiny_run, tmp_path):
    """Labels on rolling-shutter-corrected frames against pixel-registered GT: a warning that names
    the readout and the way out (--gt-intrinsics), on stderr from the CLI; none without correction."""
    import json
    import shutil
    import subprocess
    import sys

    from mannequin.evaluate import evaluate
    from mannequin.workspace import Workspace

    assert "warnings" not in evaluate(tiny_run, tiny_clip / "depth")
    ws = Workspace(tmp_path / "ws")
    shutil.copytree(tiny_run.root, ws.root)
    summary = json.loads((ws.sfm_dir / "summary.json").read_text())
    summary["rolling_shutter"] = {"readout_ms": 20.0,
                                  "omega_rad_s": {f"{n}.png": [0.5, 0.0, 0.0] for n in ws.image_names()}}
    (ws.sfm_dir / "summary.json").write_text(json.dumps(summary))
    warnings = evaluate(ws, tiny_clip / "depth")["warnings"]
    assert len(warnings) == 1 and "20 ms" in warnings[0] and "--gt-intrinsics" in warnings[0]
    r = subprocess.run([sys.executable, "-m", "mannequin", "eval", str(ws.root), "--gt-depth", str(tiny_clip / "depth"),
                        "--quiet"], capture_output=True, text=True)
    assert r.returncode == 0 and "warning:" in r.stderr and "rolling-shutter" in r.stderr
    assert json.loads(r.stdout)["warnings"] == warnings


def test_sparse_depth_map_keeps_the_nearest_point_per_pixel():
    from mannequin.stereo import SparseGeometry, sparse_depth_map

    K = np.array([[10.0, 0, 4.0], [0, 10.0, 3.0], [0, 0, 1]])
    pts = np.array([[0.0, 0.0, 2.0],      # pixel centre (4.5, 3.5)?  projects to (4, 3): col 4, row 3
                    [0.0, 0.0, 5.0],      # same pixel, farther: hidden
                    [0.2, 0.1, 1.0],      # (6, 4)
                    [0.0, 0.0, -1.0],     # behind the camera
                    [5.0, 0.0, 1.0],      # outside the image
                    [0.1, 0.0, 1.0]])     # not observed by this image
    geo = SparseGeometry(["a.png"], np.zeros((1, 3)), np.eye(3)[None], np.zeros((1, 3)), K[None],
                         np.array([[8, 6]]), pts, [np.array([0, 1, 2, 3, 4])])
    d = sparse_depth_map(geo, 0)
    assert d.shape == (6, 8) and d.dtype == np.float32
    want = np.zeros((6, 8), np.float32)
    want[3, 4], want[4, 6] = 2.0, 1.0
    np.testing.assert_array_equal(d, want)


def test_eval_which_sparse_scores_the_sfm_points(tiny_clip, tiny_run):
    """With the known poses the tiny clip's triangulated points sit on the GT depth (no scale
    fitted): half within about 1.3% (a 192x144 clip: a pixel spans that much depth on slanted
    surfaces), with a tail of SIFT points on depth edges, whose pixel shows the background."""
    from mannequin.evaluate import evaluate

    res = evaluate(tiny_run, tiny_clip / "depth", which="sparse")
    c = res["clip"]
    assert c["source"] == "sparse" and c["scale"] == 1.0 and c["frames"] == 10
    assert c["n"] > 200 and 0 < c["density"] < 0.2
    assert np.median(res["_errors"]) < 0.03 and c["delta_1.05"] > 0.7
    with pytest.raises(Exception, match="--which"):
        evaluate(tiny_run, tiny_clip / "depth", which="points")


def test_gt_frame_without_valid_pixels_has_no_density(tiny_clip, tiny_run, tmp_path):
    """A GT frame with no valid pixel: its density is null, the clip's is the mean over the others,
    and the CLI still prints the JSON and exits 0; with no overlap at all, fitting a scale is a
    clear error."""
    import json
    import shutil
    import subprocess
    import sys

    import pytest

    from mannequin.errors import InputError
    from mannequin.evaluate import evaluate

    gt = tmp_path / "gt"
    shutil.copytree(tiny_clip / "depth", gt)
    first = sorted(gt.glob("*.npy"))[0]
    np.save(first, np.zeros_like(np.load(first)))
    r = subprocess.run([sys.executable, "-m", "mannequin", "eval", str(tiny_run.root), "--gt-depth", str(gt)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    frames = {f["name"]: f for f in out["frames"]}
    assert frames[first.stem]["density"] is None
    others = [f["density"] for n, f in frames.items() if n != first.stem]
    assert out["clip"]["density"] == pytest.approx(np.mean(others)) and 0 < out["clip"]["density"] <= 1
    for p in gt.glob("*.npy"):
        np.save(p, np.zeros_like(np.load(p)))
    for fit in (True, False):  # no scale to fit, or nothing to score: never a perfect-looking result
        with pytest.raises(InputError, match="no pixel .* has a valid GT depth"):
            evaluate(tiny_run, gt, fit_scale=fit)


# --- the other GT readers end to end, an independent recomputation, and the plots ---------------

def _cli_eval(ws_root, gt_dir, *extra):
    """``mannequin eval`` as a user runs it; returns the parsed JSON."""
    r = subprocess.run([sys.executable, "-m", "mannequin", "eval", str(ws_root), "--gt-depth", str(gt_dir),
                        "--quiet", *map(str, extra)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def _set_mode(ws, mode: str) -> None:
    """sfm/summary.json's mode: "sfm" (scale fitted, one per clip) or "known poses" (scale 1)."""
    ws.sfm_dir.mkdir(parents=True, exist_ok=True)
    (ws.sfm_dir / "summary.json").write_text(json.dumps({"mode": mode}))


def _assert_plots(ws) -> None:
    """The two plots docs/FORMATS.md names, each a non-empty PNG: AbsRel/density per frame, error histogram."""
    import imageio.v3 as iio

    for name in ("eval_per_frame.png", "eval_error_hist.png"):
        p = ws.preview_dir / name
        assert p.is_file(), f"{name} missing from {ws.preview_dir}"
        img = iio.imread(p)
        assert img.ndim == 3 and img.shape[0] > 100 and img.shape[1] > 100 and img.std() > 0


def _metrics_close(a: dict, b: dict, rel=1e-6) -> None:
    for k in ("absrel", "rmse", "delta_1.05", "delta_1.25", "density", "n", "scale"):
        assert a[k] == pytest.approx(b[k], rel=rel), k


def test_eval_reads_16bit_png_with_depth_scale_like_npy(tmp_path):
    """TUM's GT format: uint16 PNG, depth × 5000 (0 = none).  ``--depth-scale 5000`` gives the same
    metrics, clip and per frame, as the same depth stored as float .npy; known poses (scale 1), so a
    reader that dropped the scale or the 16 bits could not hide behind a fitted scale."""
    import imageio.v3 as iio
    from PIL import Image

    rng = np.random.default_rng(3)
    h, w = 36, 48
    labels, png_dir, npy_dir = {}, tmp_path / "gt_png", tmp_path / "gt_npy"
    png_dir.mkdir()
    npy_dir.mkdir()
    for k in range(3):
        raw = np.round(5000 * (1.0 + 8.0 * rng.random((h, w)))).astype(np.uint16)  # 1 .. 9 m: > 8 bits
        raw[rng.random((h, w)) < 0.1] = 0                                             # no GT
        iio.imwrite(png_dir / f"{k:06d}.png", raw)
        np.save(npy_dir / f"{k:06d}.npy", raw.astype(np.float32) / 5000)
        lab = raw.astype(np.float64) / 5000 * np.exp(0.03 * rng.standard_normal((h, w)))
        lab[rng.random((h, w)) < 0.2] = 0
        labels[f"{k:06d}"] = lab
    assert Image.open(png_dir / "000000.png").mode.startswith("I")      # really a 16-bit PNG
    ws = make_workspace(tmp_path / "ws", labels, w, h, 50.0)
    _set_mode(ws, "known poses")
    png = _cli_eval(ws.root, png_dir, "--depth-scale", 5000)
    npy = _cli_eval(ws.root, npy_dir)
    assert png["clip"]["scale"] == 1.0 and not png["clip"]["scale_fitted"]
    _metrics_close(png["clip"], npy["clip"])
    assert [f["name"] for f in png["frames"]] == [f["name"] for f in npy["frames"]] == sorted(labels)
    for a, b in zip(png["frames"], npy["frames"], strict=False):
        _metrics_close(a, b)
    assert 0.015 < png["clip"]["absrel"] < 0.04 and 0.75 < png["clip"]["density"] < 0.85
    # the scale is applied: without it the PNG's raw units are 5000× the labels'
    assert _cli_eval(ws.root, png_dir)["clip"]["absrel"] > 0.99
    _assert_plots(ws)


# A pinhole label camera (COLMAP convention, pixel centres at +0.5) and a distorted GT camera of
# another size (OpenCV convention, pixel centres at integers), at the same centre and orientation.
LW, LH, LF = 160, 120, 150.0
GW, GH, GF, GCX, GCY = 200, 150, 190.0, 99.3, 74.6
GDIST = (-0.25, 0.08, 0.003, -0.002)              # k1, k2, p1, p2: ~10 px at the GT image's corners


def _scene_z(x, y):
    """z-depth along the ray (x, y, 1): a slanted plane with a box 1.6 m away in front of it."""
    z = 3.0 / (1.0 - 0.5 * x + 0.2 * y)           # the plane z = 3 + 1.5 x·z − 0.6 y·z
    box = (np.abs(x - 0.1) < 0.2) & (np.abs(y + 0.05) < 0.15)
    return np.where(box, 1.6, z)


def _undistort(xd, yd, dist, iters=50):
    """Invert OpenCV's distortion (x, y) → (xd, yd) by fixed-point iteration (written here, not mannequin's)."""
    k1, k2, p1, p2 = dist
    x, y = xd.copy(), yd.copy()
    for _ in range(iters):
        r2 = x * x + y * y
        radial = 1 + k1 * r2 + k2 * r2 * r2
        dx = 2 * p1 * x * y + p2 * (r2 + 2 * x * x)
        dy = p1 * (r2 + 2 * y * y) + 2 * p2 * x * y
        x, y = (xd - dx) / radial, (yd - dy) / radial
    return x, y


def test_eval_gt_intrinsics_compares_distorted_gt_through_3d_points(tmp_path):
    """GT rendered on a distorted camera of another size (TUM fr1's case), exact labels on the
    pinhole camera: through 3-D points with the GT camera's distortion (``--gt-intrinsics``, as the
    user passes it) the labels match up to the nearest-GT-pixel rounding; the same comparison that
    ignores the distortion misplaces pixels by up to ~10 px (box edges, the slanted plane) and is
    clearly worse; pixel by pixel is refused (another grid)."""
    v, u = np.mgrid[0:GH, 0:GW].astype(np.float64)
    x, y = _undistort((u - GCX) / GF, (v - GCY) / GF, GDIST)
    k1, k2, p1, p2 = GDIST                          # the inversion is exact to far below a pixel
    r2 = x * x + y * y
    assert np.abs(GF * (x * (1 + k1 * r2 + k2 * r2 * r2) + 2 * p1 * x * y + p2 * (r2 + 2 * x * x)) + GCX - u).max() < 1e-6
    gt = _scene_z(x, y).astype(np.float32)
    gt[:4] = 0                                      # a band without GT
    gt_dir = tmp_path / "gt"
    gt_dir.mkdir()
    np.save(gt_dir / "000000.npy", gt)
    lv, lu = np.mgrid[0:LH, 0:LW].astype(np.float64)
    truth = _scene_z((lu + 0.5 - LW / 2) / LF, (lv + 0.5 - LH / 2) / LF)
    label = truth.copy()
    label[:, :10] = 0                               # unlabelled
    ws = make_workspace(tmp_path / "ws", {"000000": label}, LW, LH, LF)
    _set_mode(ws, "known poses")
    cam = f"{GF},{GF},{GCX},{GCY}"
    good = _cli_eval(ws.root, gt_dir, "--gt-intrinsics", cam + "," + ",".join(map(str, GDIST)))
    plain = _cli_eval(ws.root, gt_dir, "--gt-intrinsics", cam)          # distortion ignored
    c, p = good["clip"], plain["clip"]
    assert c["scale"] == 1.0 and not c["scale_fitted"] and c["n"] > 0.8 * (label > 0).sum()
    assert c["absrel"] < 0.002 and c["delta_1.05"] > 0.999            # compared in z, at the right point
    assert p["absrel"] > 5 * c["absrel"] + 0.005 and p["delta_1.05"] < c["delta_1.05"] - 0.005
    assert p["rmse"] > 2 * c["rmse"]
    # density over the GT image's valid pixels: the labelled share of those the label camera sees
    assert 0.5 < c["density"] <= 1.0
    # pixel by pixel is refused: the GT is on another grid
    r = subprocess.run([sys.executable, "-m", "mannequin", "eval", str(ws.root), "--gt-depth", str(gt_dir), "--quiet"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode != 0 and "differs from the label size" in r.stderr


def _umeyama_np(src, dst):
    """Sim(3) with dst ≈ s R src + t (Umeyama 1991), in plain numpy for the test's own ATE."""
    ms, md = src.mean(0), dst.mean(0)
    A, B = src - ms, dst - md
    U, S, Vt = np.linalg.svd(B.T @ A / len(src))
    D = np.diag([1.0, 1.0, np.sign(np.linalg.det(U) * np.linalg.det(Vt))])
    R = U @ D @ Vt
    s = np.trace(np.diag(S) @ D) / (A ** 2).sum(1).mean()
    return s, R, md - s * R @ ms


def test_eval_agrees_with_an_independent_numpy_computation(tmp_path):
    """A workspace with SfM-like poses (the GT path rotated, moved and shrunk 2.5×, plus noise) and
    labels in those units (GT / 2.5, noise, outliers, holes; GT with holes and NaN): every number of
    ``mannequin eval`` (clip and per frame: AbsRel, RMSE, δ(1.05), δ(1.25), density, n; the one scale
    per clip; the ATE after Sim(3) as % of the GT path) recomputed here in plain numpy."""
    from scipy.spatial.transform import Rotation

    from mannequin.io.cameras import CameraFrame, Intrinsics, Pose, to_reconstruction, write_cameras
    from mannequin.workspace import Workspace

    rng = np.random.default_rng(11)
    n, h, w, s_true = 6, 30, 40, 2.5
    names = [f"{k:06d}" for k in range(n)]
    # GT path (metres, TUM trajectory) and the estimate: a similarity of it, plus noise
    gt_c = np.column_stack([0.3 * np.arange(n), 0.1 * np.sin(np.arange(n)), 0.05 * np.arange(n) ** 1.5])
    gt_R = Rotation.from_euler("xyz", rng.normal(0, 0.1, (n, 3))).as_matrix()     # camera-to-world
    Rw = Rotation.from_euler("xyz", [0.4, -0.3, 1.1]).as_matrix()
    est_c = (gt_c - [1.0, 2.0, -0.5]) @ Rw / s_true + rng.normal(0, 0.01, (n, 3))
    (tmp_path / "gt.txt").write_text("".join(
        f"{k / 30:.6f} " + " ".join(repr(float(v)) for v in [*c, *Rotation.from_matrix(R).as_quat()]) + "\n"
        for k, (c, R) in enumerate(zip(gt_c, gt_R, strict=False))))
    intr = Intrinsics(35.0, 35.0, w / 2, h / 2, w, h)
    frames = [CameraFrame.from_intrinsics(33333 * k, intr, Pose.from_cam_to_world(Rw.T @ gt_R[k], est_c[k]))
              for k in range(n)]
    ws = Workspace(tmp_path / "ws").create()
    write_cameras(ws.cameras_txt, frames)
    ws.sparse_dir.mkdir(parents=True)
    to_reconstruction(frames, [f"{m}.png" for m in names], w, h).write(str(ws.sparse_dir))
    _set_mode(ws, "sfm")
    ws.labels_dir.mkdir()
    gt_dir = tmp_path / "gt"
    gt_dir.mkdir()
    for k, m in enumerate(names):
        g = (1.0 + 5.0 * rng.random((h, w))).astype(np.float32)
        g[rng.random((h, w)) < 0.05 + 0.05 * k] = 0                 # holes, more in later frames
        g[0, :3] = np.nan
        lab = g / s_true * np.exp(rng.normal(0, 0.04, (h, w)))
        out = rng.random((h, w)) < 0.05
        lab[out] *= rng.choice([0.6, 1.5], out.sum())               # outliers beyond δ(1.25)
        lab[rng.random((h, w)) < 0.1 + 0.03 * k] = 0                # unlabelled
        np.save(ws.labels_dir / f"{m}.npy", np.nan_to_num(lab).astype(np.float32))
        np.save(gt_dir / f"{m}.npy", g)

    res = _cli_eval(ws.root, gt_dir, "--gt-poses", tmp_path / "gt.txt")

    P = [np.load(ws.labels_dir / f"{m}.npy").astype(np.float64).ravel() for m in names]
    G = [np.nan_to_num(np.load(gt_dir / f"{m}.npy").astype(np.float64)).ravel() for m in names]
    both = [(p > 0) & (g > 0) for p, g in zip(P, G, strict=False)]
    s = np.median(np.concatenate([g[b] / p[b] for p, g, b in zip(P, G, both, strict=False)]))     # one per clip

    def numbers(p, g, b):
        d, t = s * p[b], g[b]
        ratio = np.maximum(d / t, t / d)
        return {"absrel": np.mean(np.abs(d - t) / t), "rmse": np.sqrt(np.mean((d - t) ** 2)),
                "delta_1.05": np.mean(ratio < 1.05), "delta_1.25": np.mean(ratio < 1.25),
                "density": b.sum() / (g > 0).sum(), "n": b.sum(), "scale": s}

    per_frame = [numbers(p, g, b) for p, g, b in zip(P, G, both, strict=False)]
    clip = numbers(np.concatenate(P), np.concatenate(G), np.concatenate(both))
    clip["density"] = np.mean([f["density"] for f in per_frame])    # mean over frames, not pooled
    assert res["clip"]["scale_fitted"] and res["clip"]["frames"] == n
    assert s == pytest.approx(s_true, rel=0.02)
    assert 0.6 < clip["delta_1.05"] < 0.9 and 0.9 < clip["delta_1.25"] < 0.97   # neither is trivially 1
    _metrics_close(res["clip"], clip)
    assert [f["name"] for f in res["frames"]] == names
    for got, want in zip(res["frames"], per_frame, strict=False):
        _metrics_close(got, want)
    # ATE: Sim(3) est → GT by Umeyama, RMSE of the centres, as % of the GT path length
    sc, R, t = _umeyama_np(est_c, gt_c)
    err = np.linalg.norm(sc * est_c @ R.T + t - gt_c, axis=1)
    rmse = np.sqrt(np.mean(err ** 2))
    length = np.linalg.norm(np.diff(gt_c, axis=0), axis=1).sum()
    pose = res["poses"]
    assert sc == pytest.approx(s_true, rel=0.05) and pose["scale"] == pytest.approx(sc, rel=1e-9)
    assert pose["rmse"] == pytest.approx(rmse, rel=1e-9) and pose["length"] == pytest.approx(length, rel=1e-12)
    assert pose["rmse_pct"] == pytest.approx(100 * rmse / length, rel=1e-9) and 0.3 < pose["rmse_pct"] < 5
    assert pose["n"] == n
    _assert_plots(ws)
