"""mannequin: frozen-scene (Mannequin-Challenge) videos to multi-view depth labels, on the CPU.

The importable API (docs/FORMATS.md).  Heavy modules load lazily so ``import mannequin`` stays quick.
"""
from importlib import import_module
from typing import Any

__version__ = "0.1.0"

_API = {
    "Config": "config", "preset": "config",
    "Workspace": "workspace",
    "MannequinError": "errors", "InputError": "errors", "StageError": "errors",
    "Intrinsics": "io.cameras", "Pose": "io.cameras", "CameraFrame": "io.cameras", "CameraFile": "io.cameras",
    "read_cameras": "io.cameras", "write_cameras": "io.cameras", "read_tum": "io.cameras", "write_tum": "io.cameras",
    "synth": "testing.synth", "render_clip": "testing.synth",
    "extract_frames": "frames.stage",
    "plane_sweep": "stereo.sweep",
    "run_video": "pipeline", "run_stage": "pipeline",
    "run_sfm": "sfm.stage", "run_stereo": "stereo.stage", "run_fuse": "fuse.stage", "run_labels": "labels.stage",
    "run_batch": "batch",
    "run_mc": "mc", "read_dataset": "mc",
    "depth_metrics": "metrics", "ate_rmse": "metrics", "median_scale": "metrics",
    "evaluate": "evaluate",
    "check_geometric_consistency": "fuse.consistency", "filter_depth": "fuse.consistency",
}

__all__ = sorted(_API) + ["__version__"]


def __getattr__(name: str) -> Any:
    if name in _API:
        module = import_module(f".{_API[name]}", __name__)
        # synth and evaluate are modules made callable as their function (mannequin._api).
        return module if _API[name].rsplit(".", 1)[-1] == name else getattr(module, name)
    raise AttributeError(f"module 'mannequin' has no attribute {name!r}")


def __dir__() -> list[str]:
    return __all__
