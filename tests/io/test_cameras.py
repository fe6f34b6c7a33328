import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.spatial.transform import Rotation

from mannequin.errors import InputError
from mannequin.io.cameras import (
    CameraFrame,
    Intrinsics,
    Pose,
    format_cameras,
    from_reconstruction,
    read_cameras,
    read_tum,
    to_reconstruction,
    write_cameras,
    write_tum,
)

finite = st.floats(-50, 50, allow_nan=False)
quats = st.lists(st.floats(-1, 1, allow_nan=False), min_size=4, max_size=4).filter(
    lambda q: np.linalg.norm(q) > 0.1)


def make_pose(q, c):
    return Pose.from_cam_to_world(Rotation.from_quat(q).as_matrix(), c)


def frames_for(n=3, seed=0):
    rng = np.random.default_rng(seed)
    intr = Intrinsics(500.0, 510.0, 321.5, 239.0, 640, 480)
    return [CameraFrame.from_intrinsics(i * 33333, intr, make_pose(rng.normal(size=4), rng.normal(size=3)))
            for i in range(n)]


def test_camera_file_round_trip(tmp_path):
    frames = frames_for(5)
    write_cameras(tmp_path / "c.txt", frames, url="https://example.com/v")
    back = read_cameras(tmp_path / "c.txt")
    assert back.url == "https://example.com/v" and len(back) == 5
    for a, b in zip(frames, back.frames, strict=False):
        assert a.timestamp_us == b.timestamp_us
        assert a.pose.allclose(b.pose, atol=0)  # repr floats: exact
        assert b.intrinsics(640, 480) == a.intrinsics(640, 480)


def _line(**over):
    vals = ["0", "0.8", "1.1", "0.5", "0.5", "0", "0", "1", "0", "0", "0.5", "0", "1", "0", "0", "0", "0", "1", "2"]
    for k, v in over.items():
        vals[int(k[1:])] = v
    return " ".join(vals)


@pytest.mark.parametrize("line,msg", [
    ("0 0.8 1.1 0.5", "expected 19 columns, found 4"),
    (_line(c1="abc"), "'abc' is not a number"),
    (_line(c3="nan"), "NaN or inf"),
    (_line(c10="inf"), "NaN or inf"),
    (_line(c7="2"), "R is not a rotation"),
    (_line(c7="-1"), "R is not a rotation"),  # det = -1: a reflection
    (_line(c1="-0.8"), "focal lengths must be positive"),
    (_line(c0="1", c3="7.5"), "principal point .* lies outside the image"),
    (_line(c0="1", c18="1e30"), "translation 1e\\+30 is out of range"),
    (_line(c0="0"), "timestamp 0 is not after the previous line's"),  # the frames' order is their time
])
def test_malformed_camera_lines(tmp_path, line, msg):
    p = tmp_path / "bad.txt"
    p.write_text("url\n" + _line() + "\n" + line + "\n")
    with pytest.raises(InputError, match=msg) as exc:
        read_cameras(p)
    text = str(exc.value)
    assert text.startswith(f"{p}:3:") and "\n" not in text


@pytest.mark.parametrize("content,msg", [(None, "not found"), ("", "empty"), ("url only\n", "no frame lines")])
def test_missing_or_empty_camera_file(tmp_path, content, msg):
    p = tmp_path / "c.txt"
    if content is not None:
        p.write_text(content)
    with pytest.raises(InputError, match=msg):
        read_cameras(p)


@settings(max_examples=60, deadline=None)
@given(q=quats, c=st.lists(finite, min_size=3, max_size=3), q2=quats, c2=st.lists(finite, min_size=3, max_size=3))
def test_pose_algebra(q, c, q2, c2):
    a, b = make_pose(q, c), make_pose(q2, c2)
    np.testing.assert_allclose(a.center, c, atol=1e-9)
    assert (a @ a.inverse()).allclose(Pose.identity(), atol=1e-9)
    rel = b.relative_to(a)  # X_b = rel.R X_a + rel.t
    X = np.array([[0.3, -1.0, 2.0]])
    np.testing.assert_allclose(rel.apply(a.apply(X)), b.apply(X), atol=1e-9)
    np.testing.assert_allclose(a.matrix @ np.linalg.inv(a.matrix), np.eye(4), atol=1e-9)


@settings(max_examples=30, deadline=None)
@given(q=quats, c=st.lists(finite, min_size=3, max_size=3), ts=st.integers(0, 10**12))
def test_mc_and_tum_round_trip_property(tmp_path_factory, q, c, ts):
    tmp = tmp_path_factory.mktemp("rt")
    pose = make_pose(q, c)
    f = CameraFrame.from_intrinsics(ts, Intrinsics(400, 400, 200, 150, 400, 300), pose)
    write_cameras(tmp / "c.txt", [f])
    back = read_cameras(tmp / "c.txt").frames[0]
    assert back.timestamp_us == ts and back.pose.allclose(pose, atol=0)
    write_tum(tmp / "t.txt", [ts * 1e-6], [pose])
    tss, poses = read_tum(tmp / "t.txt")
    assert poses[0].allclose(pose, atol=1e-9)
    assert tss[0] == pytest.approx(ts * 1e-6)


def test_reconstruction_round_trip():
    frames = frames_for(4, seed=3)
    names = [f"{i:06d}" for i in range(4)]
    rec = to_reconstruction(frames, names, 640, 480)
    assert rec.num_cameras() == 1 and rec.num_reg_images() == 4
    names2, back = from_reconstruction(rec, {n: f.timestamp_us for n, f in zip(names, frames, strict=False)})
    assert names2 == names
    for a, b in zip(frames, back, strict=False):
        assert a.pose.allclose(b.pose, atol=1e-9)
        assert a.timestamp_us == b.timestamp_us
        np.testing.assert_allclose(a.intrinsics(640, 480).K, b.intrinsics(640, 480).K)


def test_read_tum_shared_groundtruth(shared_data):
    ts, poses = read_tum(shared_data / "tum_fr1_rpy" / "groundtruth.txt")
    assert len(ts) == len(poses) > 10 and np.all(np.diff(ts) > 0)
    for p in poses[:5]:
        np.testing.assert_allclose(p.R @ p.R.T, np.eye(3), atol=1e-6)


@settings(max_examples=25, deadline=None)
@given(qs=st.lists(quats, min_size=1, max_size=5), cs=st.lists(st.lists(finite, min_size=3, max_size=3), min_size=5,
                                                              max_size=5),
       f=st.floats(50, 2000), cx=st.floats(0.2, 0.8), cy=st.floats(0.2, 0.8), size=st.sampled_from([(64, 48), (640, 480)]))
def test_reconstruction_round_trip_property(qs, cs, f, cx, cy, size):
    """MC frames -> pycolmap Reconstruction -> MC frames keeps every pose, timestamp and intrinsic."""
    w, h = size
    frames = [CameraFrame.from_intrinsics(1000 * i, Intrinsics(f, f, cx * w, cy * h, w, h), make_pose(q, c))
              for i, (q, c) in enumerate(zip(qs, cs, strict=False))]
    names = [f"{i:06d}" for i in range(len(frames))]
    rec = to_reconstruction(frames, names, w, h)
    assert rec.num_reg_images() == len(frames)
    names2, back = from_reconstruction(rec, {n: fr.timestamp_us for n, fr in zip(names, frames, strict=False)})
    assert names2 == names
    for a, b in zip(frames, back, strict=False):
        assert a.pose.allclose(b.pose, atol=1e-9) and a.timestamp_us == b.timestamp_us
        np.testing.assert_allclose(a.intrinsics(w, h).K, b.intrinsics(w, h).K, rtol=1e-12)


_tokens = st.one_of(st.sampled_from(["0", "1", "-1", "0.5", "nan", "inf", "-inf", "1e400", "abc", "", "1,5",
                                     "0x10", "１", "\t", "#", "\u00a0"]),
                    st.floats(allow_nan=True, allow_infinity=True).map(repr), st.text(max_size=6))


@settings(max_examples=150, deadline=None)
@given(lines=st.lists(st.lists(_tokens, min_size=0, max_size=22).map(" ".join), min_size=0, max_size=5),
       good=st.integers(0, 3))
def test_camera_parser_never_fails_unexpectedly(tmp_path_factory, lines, good):
    """Fuzzed camera files (up to ``good`` valid lines, then random lines): either every frame parses
    into a rotation and finite numbers, or InputError with one line naming the file."""
    tmp = tmp_path_factory.mktemp("fuzz")
    valid = format_cameras(frames_for(3, seed=1)).splitlines()
    p = tmp / "cams.txt"
    p.write_text("\n".join(valid[:1 + good] + lines) + "\n", encoding="utf-8")
    try:
        cams = read_cameras(p)
    except InputError as exc:
        msg = str(exc)
        assert "\n" not in msg and str(p) in msg and len(msg) < 400
        return
    assert len(cams.frames) >= 1
    for fr in cams.frames:
        R = fr.pose.R
        np.testing.assert_allclose(R @ R.T, np.eye(3), atol=1e-3)
        assert np.all(np.isfinite(fr.pose.t)) and fr.fx > 0 and fr.fy > 0
