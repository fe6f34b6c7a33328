"""The Numba cache warm-up (mannequin/warmup.py, run by `make install`): after it, a fresh process's
first sweep and a whole pipeline run on another clip compile no kernel signature.

Each step runs in its own subprocess on Numba's normal cache (the one `make install` warmed: the
warm-up itself then only loads, unless a kernel changed since); the signal is Numba's
per-dispatcher cache statistics (:func:`mannequin.warmup.compile_counts`), not a timing.  That the
warm-up fills an EMPTY cache, and the cold compile time it saves, are measured by
benchmarks/stereo.py (first call: cold, after install, cached), which a cold compile would make too
slow for the suite."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# A first plane_sweep on a scene unlike the warm-up's (size, sources, float input), then the counts.
FIRST_SWEEP = """
import json
from mannequin.stereo.sweep import plane_sweep
from mannequin.testing.numpy_sweep import plane_scene
from mannequin.warmup import compile_counts
sc = plane_scene(36, 52, 3, slant_deg=10)
plane_sweep(sc["ref"], sc["sources"], sc["K_ref"], sc["K_sources"], sc["R"], sc["t"], sc["depth_range"], 12)
print(json.dumps(compile_counts()))
"""

# The whole pipeline (SfM included, no known poses) on a clip unlike the warm-up's, then the counts.
FIRST_RUN = """
import json, sys
from pathlib import Path
from mannequin.config import preset
from mannequin.pipeline import run_video
from mannequin.testing.synth import synth
from mannequin.warmup import compile_counts
root = Path(sys.argv[1])
clip = synth(root / "clip", seed=4, n_frames=10, width=192, height=144, video=True)
before = compile_counts()
run_video(clip / "video.mp4", root / "ws", config=preset("default").replace(fuse={"min_kept_frames": 2}))
after = compile_counts()
print(json.dumps({"misses": after["misses"] - before["misses"], "hits": after["hits"] - before["hits"],
                  "compiled": after["compiled"]}))
"""


def _python(code: str, *args: str, timeout: float = 280) -> dict:
    """Run ``code`` in a fresh interpreter on Numba's normal cache; its last stdout line as JSON."""
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_CACHE_DIR"}
    out = subprocess.run([sys.executable, "-c", code, *args], env=env, cwd=REPO, capture_output=True,
                         text=True, timeout=timeout)
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def warmed() -> dict:
    """What :func:`warm_numba_cache` returned, run in a fresh process on the normal cache."""
    code = "import json; from mannequin.warmup import warm_numba_cache; print(json.dumps(warm_numba_cache()))"
    return _python(code, timeout=550)


def test_compile_counts_sees_the_kernels():
    from mannequin.fuse import kernels as fuse_kernels  # noqa: F401
    from mannequin.stereo.kernels import finalize, fronto, stats  # noqa: F401
    from mannequin.warmup import compile_counts, numba_dispatchers

    names = {name for name, _ in numba_dispatchers()}
    assert {"mannequin.stereo.kernels.fronto.sweep_fronto", "mannequin.stereo.kernels.stats.window_stats",
            "mannequin.stereo.kernels.finalize.finalize_all"} <= names
    assert any(n.startswith("mannequin.fuse.kernels.") for n in names)
    counts = compile_counts()
    assert set(counts) == {"hits", "misses", "compiled", "signatures"}


@pytest.mark.timeout(600)
def test_warm_up_covers_what_it_runs(warmed):
    assert warmed["hits"] + warmed["misses"] > 0      # it reached the kernels, loaded or compiled


@pytest.mark.timeout(600)
def test_first_sweep_after_warm_up_compiles_nothing(warmed):
    res = _python(FIRST_SWEEP)
    assert res["misses"] == 0, res["compiled"]
    assert res["hits"] > 0


@pytest.mark.timeout(600)
def test_first_run_after_warm_up_compiles_nothing(warmed, tmp_path):
    res = _python(FIRST_RUN, str(tmp_path))
    assert res["misses"] == 0, res["compiled"]
    assert res["hits"] > 0
