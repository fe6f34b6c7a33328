"""The stereo stage: a Numba plane sweep per frame to WS/depth."""
from mannequin.stereo.stage import combine_sweeps, run_stereo
from mannequin.stereo.sweep import plane_sweep, triangulation_angles
from mannequin.stereo.views import (
    SparseGeometry,
    depth_range,
    neighbours_for,
    probe_pairs,
    sparse_depth_map,
    sparse_geometry,
    world_to_camera,
)

__all__ = [
    "SparseGeometry", "combine_sweeps", "depth_range", "neighbours_for", "plane_sweep",
    "probe_pairs", "run_stereo", "sparse_depth_map", "sparse_geometry", "triangulation_angles",
    "world_to_camera",
]
