"""Tests of mannequin.labels.stage helpers that need no pipeline run."""
import numpy as np

from mannequin.labels.stage import depth_normals


def _plane_depth(n_world, d, K, h, w):
    """Depth (H, W) of the plane n·X = d seen by a camera at the origin (pixel centres at +0.5)."""
    u, v = np.meshgrid(np.arange(w) + 0.5, np.arange(h) + 0.5)
    rays = np.stack([(u - K[0, 2]) / K[0, 0], (v - K[1, 2]) / K[1, 1], np.ones_like(u)], -1)
    return (d / (rays @ n_world)).astype(np.float32)


def test_depth_normals_of_a_slanted_plane_match_the_plane_normal():
    K = np.array([[300.0, 0, 40], [0, 310.0, 30], [0, 0, 1]])
    n = np.array([0.3, -0.2, -1.0])
    n /= np.linalg.norm(n)  # facing the camera: negative z
    depth = _plane_depth(n, -2.0, K, 60, 80)
    assert (depth > 0).all()
    normals = depth_normals(depth, K)
    assert normals.shape == (60, 80, 3) and normals.dtype == np.float32
    inner = normals[1:-1, 1:-1].reshape(-1, 3)
    np.testing.assert_allclose(inner, np.broadcast_to(n, inner.shape), atol=2e-3)
    # the border has no full neighbourhood: the default (0, 0, -1)
    np.testing.assert_array_equal(normals[0, 5], [0, 0, -1])


def test_depth_normals_skip_pixels_next_to_holes_and_stay_unit():
    K = np.array([[200.0, 0, 20], [0, 200.0, 20], [0, 0, 1]])
    rng = np.random.default_rng(0)
    depth = (2 + 0.05 * rng.random((40, 40))).astype(np.float32)
    depth[10, 10] = 0
    normals = depth_normals(depth, K)
    np.testing.assert_array_equal(normals[10, 11], [0, 0, -1])  # its left neighbour is a hole
    np.testing.assert_allclose(np.linalg.norm(normals, axis=-1), 1, atol=1e-5)
    assert (normals[..., 2] <= 0).all()  # facing the camera
