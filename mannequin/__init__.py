"""mannequin: frozen-scene (Mannequin-Challenge) videos to multi-view depth labels, on the CPU.

The importable API (DESIGN.md).  Heavy modules load lazily so ``import mannequin`` stays quick.
"""
from importlib import import_module

__version__ = "0.1.0"

_API = {
    "Config": "config", "preset": "config",
    "Workspace": "workspace",
    "MannequinError": "errors", "InputError": "errors", "StageError": "errors",
    "Intrinsics": "cameras", "Pose": "cameras", "CameraFrame": "cameras", "CameraFile": "cameras",
    "read_cameras": "cameras", "write_cameras": "cameras", "read_tum": "cameras", "write_tum": "cameras",
    "synth": "synth", "render_clip": "synth",
    "extract_frames": "frames",
    "plane_sweep": "stereo_core",
    "run_video": "pipeline", "run_stage": "pipeline",
    "run_sfm": "sfm", "run_stereo": "stereo", "run_fuse": "fusion", "run_labels": "labels",
    "run_batch": "batch",
    "depth_metrics": "metrics", "ate_rmse": "metrics", "median_scale": "metrics",
    "evaluate": "evaluate",
    "check_geometric_consistency": "consistency", "filter_depth": "consistency",
}

__all__ = sorted(_API) + ["__version__"]


def __getattr__(name):
    if name in _API:
        module = import_module(f".{_API[name]}", __name__)
        # synth and evaluate are modules made callable as their function (mannequin._api).
        return module if _API[name] == name else getattr(module, name)
    raise AttributeError(f"module 'mannequin' has no attribute {name!r}")


def __dir__():
    return __all__
