"""The synthetic scene: its ground truth (depth, poses, intrinsics, distortion) must be exact."""
import json

import imageio.v3 as iio
import numpy as np
import pytest

from mannequin.errors import InputError
from mannequin.io.cameras import read_cameras
from mannequin.testing.synth import (
    SynthClip,
    distort_normalised,
    render_clip,
    synth,
    undistort_normalised,
    write_clip,
)

W, H = 192, 144


@pytest.fixture(scope="module")
def clip() -> SynthClip:
    return render_clip(seed=3, n_frames=8, width=W, height=H)


def _bilinear(img: np.ndarray, u: np.ndarray, v: np.ndarray):
    """Sample img (H, W[, C]) at continuous pixel coordinates (u, v) with centres at j + 0.5.

    Returns (values, ok, spread) where ok marks points with all four neighbours inside the image
    and spread is the relative range of the four neighbours (first channel for colour images).
    """
    h, w = img.shape[:2]
    x, y = u - 0.5, v - 0.5
    ok = (x >= 0) & (y >= 0) & (x <= w - 1) & (y <= h - 1)
    x0 = np.clip(np.floor(x).astype(int), 0, w - 2)
    y0 = np.clip(np.floor(y).astype(int), 0, h - 2)
    fx, fy = np.clip(x - x0, 0, 1), np.clip(y - y0, 0, 1)
    im = img.astype(np.float64)
    a, b, c, d = im[y0, x0], im[y0, x0 + 1], im[y0 + 1, x0], im[y0 + 1, x0 + 1]
    if im.ndim == 3:
        fx, fy = fx[:, None], fy[:, None]
    val = (1 - fy) * ((1 - fx) * a + fx * b) + fy * ((1 - fx) * c + fx * d)
    stack = np.stack([a, b, c, d]) if im.ndim == 2 else np.stack([a, b, c, d])[..., 0]
    spread = (stack.max(0) - stack.min(0)) / np.maximum(np.abs(stack).max(0), 1e-9)
    return val, ok, spread


def _reproject(c: SynthClip, i: int, j: int, pix=None, distorted: bool = False):
    """Frame i's pixels (flat indices ``pix``, default all) → frame j.

    Returns (z_proj, z_sampled, colour_i, colour_j, valid) for the points landing inside frame j
    on a locally smooth depth patch.
    """
    K = c.intrinsics
    k1, k2 = c.distortion
    if pix is None:
        pix = np.arange(H * W)
    vi, ui = np.divmod(pix, W)
    x = (ui + 0.5 - K.cx) / K.fx
    y = (vi + 0.5 - K.cy) / K.fy
    if distorted:
        x, y = undistort_normalised(x, y, k1, k2)
    z = c.depth[i].ravel()[pix].astype(np.float64)
    Xc = np.stack([x * z, y * z, z], -1)
    Xw = c.poses[i].inverse().apply(Xc)
    Xj = c.poses[j].apply(Xw)
    xj, yj = Xj[:, 0] / Xj[:, 2], Xj[:, 1] / Xj[:, 2]
    if distorted:
        xj, yj = distort_normalised(xj, yj, k1, k2)
    uj, vj = K.fx * xj + K.cx, K.fy * yj + K.cy
    zs, ok, spread = _bilinear(c.depth[j], uj, vj)
    ok &= (Xj[:, 2] > 0) & (z > 0) & (spread < 0.02)
    col_j, _, _ = _bilinear(c.images[j], uj, vj)
    col_i = c.images[i].reshape(-1, 3)[pix].astype(np.float64)
    return Xj[:, 2][ok], zs[ok], col_i[ok], col_j[ok], ok


def _visible(zp, zs, tol=0.05):
    return np.abs(zp - zs) < tol * zs


def test_clip_shapes_and_ranges(clip):
    N = 8
    assert clip.images.shape == (N, H, W, 3) and clip.images.dtype == np.uint8
    assert clip.depth.shape == (N, H, W) and clip.depth.dtype == np.float32
    assert clip.dynamic is None and clip.distortion == (0.0, 0.0)
    assert len(clip.poses) == len(clip.timestamps_us) == N
    assert clip.timestamps_us[:3] == [0, 33333, 66667]
    assert (clip.depth > 0).all(), "every ray inside the closed room must hit"
    assert clip.depth.min() > 2.0 and clip.depth.max() < 10.0
    K = clip.intrinsics
    assert (K.width, K.height) == (W, H) and K.cx == W / 2 and K.cy == H / 2
    assert np.degrees(2 * np.arctan(W / 2 / K.fx)) == pytest.approx(60.0)
    centres = np.array([p.center for p in clip.poses])
    steps = np.linalg.norm(np.diff(centres, axis=0), axis=1)
    assert steps.min() > 0.03 and steps.max() < 0.07
    for p in clip.poses:
        assert np.allclose(p.R @ p.R.T, np.eye(3), atol=1e-12)
    # texture: enough grey-level variation for matching, and every frame is different
    grey = clip.images.mean(-1)
    assert grey.std() > 20
    assert not np.array_equal(clip.images[0], clip.images[1])


@pytest.mark.parametrize("i,j", [(2, 5), (4, 2), (0, 3)])
def test_depth_reprojects_exactly(clip, i, j):
    zp, zs, _, _, ok = _reproject(clip, i, j)
    vis = _visible(zp, zs)
    assert ok.mean() > 0.5 and vis.mean() > 0.8, (ok.mean(), vis.mean())
    rel = np.abs(zp[vis] - zs[vis]) / zs[vis]
    assert np.median(rel) < 5e-3
    assert np.median(rel) < 5e-4  # smooth surfaces, bilinear sampling: far better than required
    assert np.percentile(rel, 90) < 5e-3


@pytest.mark.parametrize("i,j", [(2, 5), (5, 3)])
def test_photometric_agreement(clip, i, j):
    zp, zs, ci, cj, _ = _reproject(clip, i, j)
    vis = _visible(zp, zs, 0.01)
    diff = np.abs(ci[vis].mean(1) - cj[vis].mean(1))
    assert np.median(diff) < 8, np.median(diff)
    # and a wrong pose would not agree: the check has teeth
    assert np.median(np.abs(ci.mean(1) - np.roll(cj.mean(1), 7))) > 2 * np.median(diff)


def test_write_clip_round_trip(clip, tmp_path):
    out = write_clip(clip, tmp_path / "s")
    cams = read_cameras(out / "cameras.txt")
    assert len(cams) == len(clip.poses)
    for fr, pose, ts in zip(cams.frames, clip.poses, clip.timestamps_us, strict=False):
        assert fr.pose.allclose(pose, atol=1e-9)
        assert fr.timestamp_us == ts and fr.k1 == 0.0 and fr.k2 == 0.0
        K = fr.intrinsics(W, H)
        for a in ("fx", "fy", "cx", "cy"):
            assert getattr(K, a) == pytest.approx(getattr(clip.intrinsics, a), abs=1e-9)
    names = sorted(p.name for p in (out / "frames").iterdir())
    assert names == [f"{i:06d}.png" for i in range(8)]
    np.testing.assert_array_equal(iio.imread(out / "frames" / "000003.png"), clip.images[3])
    d = np.load(out / "depth" / "000003.npy")
    assert d.dtype == np.float32 and np.array_equal(d, clip.depth[3])
    meta = json.loads((out / "synth.json").read_text())
    assert meta["seed"] == 3 and meta["n_frames"] == 8 and meta["size"] == [W, H]
    assert meta["moving"] is False and meta["k1"] == 0.0 and meta["fps"] == 30.0
    assert not (out / "dynamic").exists() and not (out / "video.mp4").exists()
    assert not list(out.rglob(".*.tmp-*")), "temporary files left behind"


def test_rewrite_removes_stale_frames(tmp_path):
    out = synth(tmp_path / "s", seed=0, n_frames=3, width=32, height=24)
    synth(out, seed=0, n_frames=2, width=32, height=24)
    assert sorted(p.name for p in (out / "frames").iterdir()) == ["000000.png", "000001.png"]
    assert sorted(p.name for p in (out / "depth").iterdir()) == ["000000.npy", "000001.npy"]
    assert len(read_cameras(out / "cameras.txt")) == 2


def test_deterministic():
    a = render_clip(seed=5, n_frames=3, width=64, height=48, moving=True)
    b = render_clip(seed=5, n_frames=3, width=64, height=48, moving=True)
    c = render_clip(seed=6, n_frames=3, width=64, height=48, moving=True)
    for x, y in ((a.images, b.images), (a.depth, b.depth), (a.dynamic, b.dynamic)):
        assert x.tobytes() == y.tobytes()
    assert all(p.allclose(q, atol=0) for p, q in zip(a.poses, b.poses, strict=False))
    assert not np.array_equal(a.images, c.images)
    assert not np.array_equal(a.depth, c.depth)
    assert not all(p.allclose(q) for p, q in zip(a.poses, c.poses, strict=False))


@pytest.mark.parametrize("seed", [0, 1])
def test_moving_person(seed):
    c = render_clip(seed=seed, n_frames=8, width=W, height=H, moving=True)
    dyn = c.dynamic
    assert dyn.shape == (8, H, W) and dyn.dtype == bool
    assert all(dyn[k].sum() > 100 for k in range(8))
    assert not np.array_equal(dyn[0], dyn[-1])
    pix = np.arange(H * W)
    i, j = 0, 7
    zp, zs, _, _, ok = _reproject(c, i, j)
    lands_dyn = _bilinear(dyn[j].astype(float), *_project_uv(c, i, j, pix))[0][ok] > 0.5
    src_dyn = dyn[i].ravel()[ok]
    static = ~src_dyn & ~lands_dyn
    rel = np.abs(zp - zs) / zs
    good = rel < 0.005
    assert good[static].mean() > 0.8, good[static].mean()
    assert good[src_dyn].mean() < 0.5, good[src_dyn].mean()


def _project_uv(c, i, j, pix):
    K = c.intrinsics
    vi, ui = np.divmod(pix, W)
    z = c.depth[i].ravel()[pix].astype(np.float64)
    Xc = np.stack([(ui + 0.5 - K.cx) / K.fx * z, (vi + 0.5 - K.cy) / K.fy * z, z], -1)
    Xj = c.poses[j].apply(c.poses[i].inverse().apply(Xc))
    return K.fx * Xj[:, 0] / Xj[:, 2] + K.cx, K.fy * Xj[:, 1] / Xj[:, 2] + K.cy


def test_undistort_inverts_distort():
    rng = np.random.default_rng(0)
    xu, yu = rng.uniform(-0.6, 0.6, (2, 1000))
    for k1, k2 in [(-0.12, 0.02), (0.1, 0.0), (0.0, 0.0)]:
        x, y = distort_normalised(xu, yu, k1, k2)
        xb, yb = undistort_normalised(x, y, k1, k2)
        assert np.abs(xb - xu).max() < 1e-12 and np.abs(yb - yu).max() < 1e-12


@pytest.mark.parametrize("k1,k2", [(-0.12, 0.02), (0.08, 0.01)])
def test_distortion_ground_truth(k1, k2):
    c = render_clip(seed=2, n_frames=4, width=W, height=H, k1=k1, k2=k2)
    assert c.distortion == (k1, k2)
    pix = np.random.default_rng(1).choice(H * W, 6000, replace=False)
    zp, zs, ci, cj, ok = _reproject(c, 0, 3, pix, distorted=True)
    vis = _visible(zp, zs)
    assert ok.mean() > 0.5 and vis.mean() > 0.8
    rel = np.abs(zp[vis] - zs[vis]) / zs[vis]
    assert np.median(rel) < 5e-4
    assert np.median(np.abs(ci[vis].mean(1) - cj[vis].mean(1))) < 8
    # ignoring the distortion breaks the agreement, so the images really are distorted
    zp2, zs2, _, _, _ = _reproject(c, 0, 3, pix, distorted=False)
    assert np.median(np.abs(zp2 - zs2) / zs2) > 5 * np.median(rel)
    pinhole = render_clip(seed=2, n_frames=4, width=W, height=H)
    assert all(p.allclose(q, atol=0) for p, q in zip(pinhole.poses, c.poses, strict=False))
    # the same scene: near the principal point distortion hardly moves anything
    assert pinhole.depth[0][H // 2, W // 2] == pytest.approx(c.depth[0][H // 2, W // 2], rel=1e-3)
    assert not np.array_equal(pinhole.images[0], c.images[0])


def test_distorted_camera_file(tmp_path):
    out = synth(tmp_path / "d", seed=1, n_frames=2, width=48, height=32, k1=-0.1, k2=0.01)
    cams = read_cameras(out / "cameras.txt")
    assert all(f.k1 == -0.1 and f.k2 == 0.01 for f in cams.frames)
    assert json.loads((out / "synth.json").read_text())["k1"] == -0.1


def test_video_and_dynamic_masks(tmp_path):
    import imageio_ffmpeg

    out = synth(tmp_path / "v", seed=4, n_frames=5, width=64, height=48, video=True, moving=True)
    n, _ = imageio_ffmpeg.count_frames_and_secs(str(out / "video.mp4"))
    assert n == 5
    reader = imageio_ffmpeg.read_frames(str(out / "video.mp4"))
    meta = next(reader)
    assert tuple(meta["size"]) == (64, 48)
    frames = np.stack([np.frombuffer(b, np.uint8).reshape(48, 64, 3) for b in reader])
    png = iio.imread(out / "frames" / "000002.png")
    assert frames.shape == (5, 48, 64, 3)
    assert np.abs(frames[2].astype(float) - png).mean() < 6
    masks = sorted((out / "dynamic").iterdir())
    assert len(masks) == 5
    m = iio.imread(masks[0])
    assert m.dtype == np.uint8 and set(np.unique(m)) <= {0, 255} and (m == 255).any()
    assert json.loads((out / "synth.json").read_text())["moving"] is True
    assert not list(out.rglob(".*.tmp-*"))


def test_video_odd_size(tmp_path):
    import imageio_ffmpeg

    out = synth(tmp_path / "o", seed=0, n_frames=2, width=33, height=17, video=True)
    assert imageio_ffmpeg.count_frames_and_secs(str(out / "video.mp4"))[0] == 2


@pytest.mark.parametrize("kw", [dict(n_frames=0), dict(width=8), dict(height=15), dict(n_frames=2.5),
                                dict(k1=float("nan")), dict(k1=-2.0), dict(seed=None)])
def test_bad_inputs_raise(kw, tmp_path):
    args = dict(seed=0, n_frames=2, width=32, height=24)
    args.update(kw)
    with pytest.raises(InputError) as e:
        render_clip(**args)
    assert "\n" not in str(e.value)
    with pytest.raises(InputError):
        synth(tmp_path / "bad", **args)
    assert not (tmp_path / "bad").exists()


def test_rotate_only_clip(clip):
    """motion="rotate": the camera turns in place (same scene and centre for every frame), panning
    1.5° per frame and tilting a little; the ground truth still reprojects exactly."""
    c = render_clip(seed=3, n_frames=8, width=W, height=H, motion="rotate")
    centres = np.array([p.center for p in c.poses])
    assert np.abs(centres - centres[0]).max() < 1e-12, "a rotate-only camera must not translate"
    from scipy.spatial.transform import Rotation

    steps = [np.degrees(Rotation.from_matrix(c.poses[k + 1].R @ c.poses[k].R.T).magnitude()) for k in range(7)]
    assert min(steps) > 0.8 and max(steps) < 4.0, steps
    total = np.degrees(Rotation.from_matrix(c.poses[-1].R @ c.poses[0].R.T).magnitude())
    assert 8.0 < total < 20.0, total
    # the scene (walls, people, texture) is the walking clip's: the same seed draws the same room
    assert c.depth.min() > 2.0 and c.depth.max() < 10.0
    assert c.params["motion"] == "rotate" and clip.params["motion"] == "walk"
    zp, zs, ci, cj, ok = _reproject(c, 1, 6)
    vis = _visible(zp, zs)
    assert ok.mean() > 0.5 and vis.mean() > 0.8, (ok.mean(), vis.mean())
    assert np.median(np.abs(zp[vis] - zs[vis]) / zs[vis]) < 5e-4
    # a long clip turns slower: the whole pan stays within MAX_PAN_DEG (40°)
    from mannequin.testing.scene import camera_path

    poses = camera_path(np.random.default_rng(0), 61, 30.0, np.array([[0.0, 4.0], [1.0, 4.0]]), "rotate")
    pan = np.degrees(Rotation.from_matrix(poses[-1].R @ poses[0].R.T).magnitude())
    assert 35.0 < pan < 45.0, pan


def test_rotate_only_bad_motion(tmp_path):
    with pytest.raises(InputError, match="motion"):
        render_clip(seed=0, n_frames=2, width=32, height=24, motion="orbit")
    out = synth(tmp_path / "r", seed=0, n_frames=2, width=32, height=24, motion="rotate")
    assert json.loads((out / "synth.json").read_text())["motion"] == "rotate"


def test_handheld_clip_turns_fast_and_shakes():
    """motion="handheld": the walk of the same seed, shaken harder and swinging its yaw (±11°, up to
    35°/s on top of the walk's own turn towards the group), its centre accelerating at m/s²."""
    from scipy.spatial.transform import Rotation

    from mannequin.testing.scene import camera_path

    people = np.array([[0.0, 4.0], [1.0, 4.0]])

    def rates(motion):
        poses = camera_path(np.random.default_rng(5), 30, 30.0, people, motion)
        turn = [30 * np.degrees(Rotation.from_matrix(poses[k + 1].R @ poses[k].R.T).magnitude()) for k in range(29)]
        C = np.array([p.center for p in poses])
        return max(turn), np.median(np.linalg.norm(np.diff(C, 2, axis=0), axis=1) * 900), C, poses

    walk_turn, walk_acc, C_walk, walk = rates("walk")
    hand_turn, hand_acc, C_hand, hand = rates("handheld")
    assert hand_turn > walk_turn + 5, (walk_turn, hand_turn)
    swing = max(np.degrees(Rotation.from_matrix(h.R @ w.R.T).magnitude()) for h, w in zip(hand, walk, strict=True))
    assert 5 < swing < 20, swing
    assert hand_acc > 1.0 and hand_acc > 3 * walk_acc, (walk_acc, hand_acc)
    # the same sideways walk underneath: centres within the shake (4 × 8 mm per axis at most)
    assert np.abs(C_hand - C_walk).max() < 0.1
    c = render_clip(seed=5, n_frames=4, width=W, height=H, motion="handheld")
    assert c.params["motion"] == "handheld"
    zp, zs, ci, cj, ok = _reproject(c, 0, 3)
    vis = _visible(zp, zs)
    assert ok.mean() > 0.5 and np.median(np.abs(zp[vis] - zs[vis]) / zs[vis]) < 5e-4
