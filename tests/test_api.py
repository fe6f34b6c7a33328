"""The importable API (docs/FORMATS.md, mannequin/__init__.py and mannequin/_api.py)."""
import importlib
import inspect
import subprocess
import sys

import numpy as np
import pytest

import mannequin


@pytest.mark.parametrize("name", [n for n in mannequin.__all__ if n != "__version__"])
def test_every_api_name_resolves(name):
    obj = getattr(mannequin, name)
    assert obj is getattr(mannequin, name)  # stable across look-ups
    assert callable(obj) or isinstance(obj, type)


def test_design_signatures():
    assert list(inspect.signature(mannequin.run_video).parameters)[:4] == ["input", "out", "poses", "config"]
    params = inspect.signature(mannequin.plane_sweep).parameters
    assert list(params)[:7] == ["ref", "sources", "K_ref", "K_sources", "R", "t", "depth_range"]
    assert params["n_planes"].default == 128
    assert list(inspect.signature(mannequin.depth_metrics).parameters)[:3] == ["pred", "gt", "mask"]


def test_synth_and_evaluate_stay_callable_after_their_modules_load(tmp_path):
    """mannequin.testing.synth / mannequin.evaluate share their module's name: the first call, a second call,
    a plain `import mannequin.testing.synth` and `from mannequin import synth` all keep them callable, and
    the modules' other names stay reachable."""
    first = mannequin.testing.synth(tmp_path / "a", seed=3, n_frames=2, width=48, height=32)
    importlib.import_module("mannequin.evaluate")  # the imports that used to replace the functions
    importlib.import_module("mannequin.testing.synth")
    second = mannequin.testing.synth(tmp_path / "b", seed=3, n_frames=2, width=48, height=32)
    from mannequin import synth
    third = synth(tmp_path / "c", seed=3, n_frames=2, width=48, height=32)
    names = sorted(p.name for p in first.rglob("*") if p.is_file())
    assert names == sorted(p.name for p in second.rglob("*") if p.is_file()) == \
        sorted(p.name for p in third.rglob("*") if p.is_file())
    depth = sorted(first.rglob("*.npy"))[0]
    np.testing.assert_array_equal(np.load(depth), np.load(second / depth.relative_to(first)))
    assert callable(mannequin.evaluate) and "gt_dir" in inspect.signature(mannequin.evaluate).parameters
    assert callable(mannequin.testing.synth.render_clip) and callable(mannequin.evaluate.read_gt_depth)


def test_import_is_lazy():
    """`import mannequin` loads no heavy module (numba, pycolmap, open3d) until a name is used."""
    code = "import sys, mannequin; print(sorted(m for m in ('numba', 'pycolmap', 'open3d') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
