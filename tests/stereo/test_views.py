"""Source-view selection and depth ranges (mannequin.stereo.views) on hand-made sparse geometry.

Cameras look along +z (R = I, t = -C); the sparse points form a 10 × 10 grid on the plane z = 5
spanning x, y in [-2, 2], so a baseline b along x gives a triangulation angle of about atan(b / 5).
"""
from __future__ import annotations

import numpy as np
import pytest

from mannequin.errors import StageError
from mannequin.geometry import triangulation_angle_deg
from mannequin.stereo.views import SparseGeometry, depth_range, relative_pose, select_views

GRID = np.array([(x, y, 5.0) for x in np.linspace(-2, 2, 10) for y in np.linspace(-2, 2, 10)])
ALL = np.arange(len(GRID))


def _geometry(cams, points=GRID, rotations=None):
    """cams: [(name, centre, observed point indices)], names already sorted."""
    names = [c[0] for c in cams]
    C = np.array([c[1] for c in cams], float)
    R = np.array(rotations if rotations is not None else [np.eye(3)] * len(cams), float)
    t = -np.einsum("nij,nj->ni", R, C)
    K = np.array([[[300.0, 0, 160], [0, 300.0, 120], [0, 0, 1]]] * len(cams))
    sizes = np.array([[320, 240]] * len(cams))
    return SparseGeometry(names, C, R, t, K, sizes, np.asarray(points, float),
                          [np.asarray(c[2], np.int64) for c in cams])


def test_triangulation_angle_and_relative_pose():
    ang = triangulation_angle_deg(np.zeros(3), np.array([1.0, 0, 1]), np.array([[0, 0, 1.0], [0, 0, 2.0]]))
    assert ang == pytest.approx([90.0, 45.0])
    rng = np.random.default_rng(0)
    q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    rot = q * np.sign(np.linalg.det(q))
    geo = _geometry([("a", (0, 0, 0), ALL), ("b", (0.5, -0.2, 0.1), ALL)], rotations=[np.eye(3), rot])
    R, t = relative_pose(geo, 0, 1)
    X_ref = GRID @ geo.R[0].T + geo.t[0]
    X_src = GRID @ geo.R[1].T + geo.t[1]
    np.testing.assert_allclose(X_ref @ R.T + t, X_src, atol=1e-12)


def test_sources_need_covisibility_and_a_usable_angle():
    half = ALL[GRID[:, 0] > 0]              # 50 points
    far_cam = (12.0, 0, 0)
    geo = _geometry([
        ("0_ref", (0, 0, 0), ALL),
        ("1_good", (0.7, 0, 0), ALL),         # ~8°, sees everything: best
        ("2_tiny", (0.05, 0, 0), ALL),        # ~0.6° < min_angle_deg: no vote
        ("3_few", (-0.7, 0, 0), ALL[:4]),     # 4 common points (< 5): no overlap
        ("4_half", (-0.8, 0.1, 0), half),     # good angle, half the points
        ("5_wide", far_cam, ALL),             # every angle > max_angle_deg
    ])
    assert triangulation_angle_deg(np.zeros(3), np.array([0.05, 0, 0]), GRID).max() < 1.0
    assert triangulation_angle_deg(np.zeros(3), np.array(far_cam), GRID).min() > 45.0
    chosen = select_views(geo, n_sources=6)["0_ref"]
    assert chosen == ["1_good", "4_half"]
    assert select_views(geo, n_sources=1)["0_ref"] == ["1_good"]
    # the cuts are the options': with a lower angle floor the tiny baseline gets a (small) vote
    # and comes last, with a higher ceiling the wide one gets in
    assert select_views(geo, n_sources=6, min_angle_deg=0.1)["0_ref"][-1] == "2_tiny"
    assert "5_wide" in select_views(geo, n_sources=6, max_angle_deg=90.0)["0_ref"]
    # every image gets an entry; the tiny-baseline image's best source is the one with parallax
    out = select_views(geo, n_sources=6)
    assert set(out) == set(geo.names)
    assert out["2_tiny"][0] in ("1_good", "4_half") and "0_ref" not in out["2_tiny"]


def test_sources_spread_over_baseline_directions_and_lengths():
    geo = _geometry([
        ("0_ref", (0, 0, 0), ALL),
        ("1_right", (1.0, 0, 0), ALL),        # ~11°: full score
        ("2_right_twin", (1.1, 0, 0), ALL),   # full score too, but the same baseline as 1 or 3
        ("3_right_long", (2.0, 0, 0), ALL),   # full score, twice as long: a different baseline
        ("4_left", (-0.6, 0, 0), ALL),        # ~6.8° < good_angle_deg: ~85% of the full score
    ])
    ref = np.zeros(3)
    full = len(GRID)
    left = np.clip(triangulation_angle_deg(ref, np.array([-0.6, 0, 0]), GRID) / 8.0, 0, 1).sum()
    assert 0.7 * full < left < 0.95 * full   # scores alone would rank the left view last
    chosen = select_views(geo, n_sources=4)["0_ref"]
    assert len(chosen) == 4
    # one of the two similar right baselines first, then the long one and the left one, and the
    # twin of the first only after them (its score discounted to 30%)
    first, twin = ("1_right", "2_right_twin") if chosen[0] == "1_right" else ("2_right_twin", "1_right")
    assert chosen[0] in ("1_right", "2_right_twin")
    assert set(chosen[1:3]) == {"3_right_long", "4_left"}
    assert chosen[3] == twin != first
    assert select_views(geo, n_sources=3)["0_ref"][1:] == ["3_right_long", "4_left"]


def test_depth_range_is_percentiles_plus_margin():
    z = np.arange(1.0, 102.0)                 # 101 depths: the 1st / 99th percentiles are 2 and 100
    pts = np.c_[np.zeros((101, 2)), z]
    behind = np.array([[0.0, 0.0, -50.0], [1.0, 1.0, -1.0]])
    geo = _geometry([("a", (0, 0, 0), np.arange(103))], points=np.r_[pts, behind])
    near, far = depth_range(geo, 0)
    assert (near, far) == pytest.approx((2.0 * 0.85, 100.0 * 1.15))   # points behind: ignored
    assert depth_range(geo, 0, percentiles=(10, 90), margin=0.0) == pytest.approx((11.0, 91.0))
    # depth is the camera-frame z: a camera turned round (180° about y) at z = 200 sees z' = 200 - z
    turn = np.diag([-1.0, 1.0, -1.0])
    geo2 = _geometry([("a", (0, 0, 200.0), np.arange(101))], points=pts, rotations=[turn])
    assert depth_range(geo2, 0, margin=0.0) == pytest.approx((100.0, 198.0))


def test_depth_range_fallback_and_errors():
    pts = np.c_[np.zeros((40, 2)), np.linspace(2.0, 6.0, 40)]
    # an image seeing fewer than min_points points falls back to all the points in front of it
    geo = _geometry([("a", (0, 0, 0), np.arange(3))], points=pts)
    lo, hi = np.percentile(pts[:, 2], [1, 99])
    assert depth_range(geo, 0) == pytest.approx((lo * 0.85, hi * 1.15))
    assert depth_range(geo, 0, min_points=3) == pytest.approx(
        tuple(np.percentile(pts[:3, 2], [1, 99]) * [0.85, 1.15]))
    # one depth only: the range still has far > near
    flat = _geometry([("a", (0, 0, 0), np.arange(30))], points=np.c_[np.zeros((30, 2)), np.full(30, 4.0)])
    near, far = depth_range(flat, 0, margin=0.0)
    assert near == pytest.approx(4.0) and far == pytest.approx(4.04)
    # nothing in front of the camera
    behind = _geometry([("a", (0, 0, 10.0), np.arange(40))], points=pts)
    with pytest.raises(StageError, match="in front of the camera"):
        depth_range(behind, 0)


def _room(tilt_deg=0.0, floor_share=0.4, seed=0):
    """Cameras 1.5 m above a floor (world y = 1.5 is the floor: OpenCV cameras looking along +z with
    y down), pitched down by ``tilt_deg``; sparse points: ``floor_share`` on the floor, the rest
    scattered in the room above it."""
    rng = np.random.default_rng(seed)
    n = 400
    nf = int(n * floor_share)
    floor = np.column_stack([rng.uniform(-3, 3, nf), np.full(nf, 1.5), rng.uniform(2, 8, nf)])
    rest = np.column_stack([rng.uniform(-3, 3, n - nf), rng.uniform(-1.5, 1.2, n - nf), rng.uniform(2, 8, n - nf)])
    a = np.radians(tilt_deg)
    pitch = np.array([[1, 0, 0], [0, np.cos(a), np.sin(a)], [0, -np.sin(a), np.cos(a)]])
    cams = [(f"{k:02d}", (0.3 * k, 0.0, 0.0), np.arange(n)) for k in range(4)]
    return _geometry(cams, np.vstack([floor, rest]), rotations=[pitch] * 4)


@pytest.mark.parametrize("tilt", [0.0, 20.0])
def test_ground_plane_found_below_the_cameras(tilt):
    from mannequin.stereo.views import ground_plane, plane_offset_range

    geo = _room(tilt)
    n, c = ground_plane(geo)
    np.testing.assert_allclose(n, [0, 1, 0], atol=1e-3)  # pointing from the cameras to the floor
    assert c == pytest.approx(1.5, abs=1e-3)
    n_cam, (lo, hi) = plane_offset_range(geo, 1, (n, c))
    np.testing.assert_allclose(n_cam, geo.R[1] @ [0, 1, 0], atol=1e-3)
    assert lo == pytest.approx(0.4 * 1.5, rel=1e-3) and hi == pytest.approx(1.15 * 1.5, rel=1e-3)
    floor_pt = geo.R[1] @ np.array([0.5, 1.5, 4.0]) + geo.t[1]
    assert n_cam @ floor_pt == pytest.approx(1.5, abs=1e-3)  # n·X = d holds in the camera frame


def test_no_ground_plane_without_one_or_below_it():
    from mannequin.stereo.views import ground_plane, plane_offset_range

    assert ground_plane(_room(floor_share=0.0)) is None  # scattered points only
    geo = _room()
    flipped = _geometry([(nm, (0.3 * k, 3.0, 0.0), geo.observations[k]) for k, nm in enumerate(geo.names)],
                        geo.points)  # cameras below the "floor" (y = 3 is below y = 1.5)
    assert ground_plane(flipped) is None
    with pytest.raises(StageError, match="not above the ground plane"):
        plane_offset_range(flipped, 0, (np.array([0.0, 1.0, 0.0]), 1.5))
