"""Numba cache warm-up: compile every kernel a run uses once, so the first real run compiles nothing.

The kernels are ``@njit(cache=True)``: compiled lazily, once per argument-type signature, on their
first call, and then stored in Numba's on-disk cache (``__pycache__`` next to each kernel module, or
``NUMBA_CACHE_DIR``).  :func:`warm_numba_cache` makes those first calls with the same argument
types a real run makes, by running the real code paths on tiny synthetic inputs:

* ``mannequin.synth`` (the renderer's kernels, :mod:`mannequin.testing.render`);
* the whole pipeline (:func:`mannequin.pipeline.run_video`, frames to labels) on a tiny video with
  each preset, sized down, so that the stereo sweep (``fronto``, ``stats``, ``finalize``: the
  general bilinear path, shiftable windows, top-k, smoothing, the quality preset's ground sweep)
  and the fuse kernels (reprojection, votes, speckles, depth edges) all run;
* :func:`mannequin.stereo.sweep.plane_sweep` directly, for the public API's variants the pipeline
  does not reach: a rectified pair (the shift and integer-shift paths, the left-right check),
  top-k 1, no shiftable windows, no subpixel, no smoothing, colour / uint16 / float input.

``make install`` calls it after ``pip install``.  :func:`compile_counts` reads the dispatchers'
cache statistics (hits = signatures loaded from the cache, misses = signatures compiled), which the
tests and ``benchmarks/stereo.py`` use to check that a run after the warm-up compiles nothing.
"""
from __future__ import annotations

import os
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

#: The presets a warm-up runs the pipeline with (each reaches other sweep signatures).
PRESETS = ("fast", "default", "quality")
#: Size of the warm-up clip: small enough to run in seconds, large enough for every stage to work.
CLIP_FRAMES, CLIP_WIDTH, CLIP_HEIGHT = 8, 160, 120


def numba_dispatchers(prefix: str = "mannequin") -> Iterator[tuple[str, Any]]:
    """(``module.function``, dispatcher) for every Numba dispatcher in the loaded modules under
    ``prefix``; a module that is not imported yet is not visited."""
    from numba.core.dispatcher import Dispatcher

    for name, module in sorted(sys.modules.items()):
        if module is None or not (name == prefix or name.startswith(prefix + ".")):
            continue
        for attr, obj in sorted(vars(module).items()):
            if isinstance(obj, Dispatcher) and getattr(obj.py_func, "__module__", None) == name:
                yield f"{name}.{attr}", obj


def compile_counts(prefix: str = "mannequin") -> dict[str, Any]:
    """This process's Numba cache statistics over the dispatchers of :func:`numba_dispatchers`:
    ``hits`` (signatures loaded from the on-disk cache), ``misses`` (signatures compiled because
    the cache had none), ``compiled`` (the names of the functions with misses) and ``signatures``
    (the number of signatures in memory)."""
    hits = misses = n_sigs = 0
    compiled = []
    for name, disp in numba_dispatchers(prefix):
        st = disp.stats
        h, m = sum(st.cache_hits.values()), sum(st.cache_misses.values())
        hits, misses, n_sigs = hits + h, misses + m, n_sigs + len(disp.signatures)
        if m:
            compiled.append(name)
    return {"hits": hits, "misses": misses, "compiled": compiled, "signatures": n_sigs}


def _warm_config(name: str) -> Any:
    """Preset ``name`` shrunk for the tiny warm-up clip (counts and sizes only: same types, same
    code paths)."""
    from mannequin.config import preset

    cfg = preset(name)
    stereo = {"n_planes": 24 if cfg.stereo.ground_sweep else 16, "probe_frames": 2}
    return cfg.replace(frames={"max_size": 0, "blur_ratio": 0.0},
                       stereo=stereo,
                       fuse={"min_kept_frames": 2})


def _warm_pipeline(root: Path, presets: tuple[str, ...], log: Any) -> None:
    """``run_video`` on a tiny synthetic video with its known poses, once per preset."""
    from mannequin.pipeline import run_video
    from mannequin.testing.synth import synth

    clip = synth(root / "clip", seed=0, n_frames=CLIP_FRAMES, width=CLIP_WIDTH, height=CLIP_HEIGHT, video=True)
    for name in presets:
        t0 = time.perf_counter()
        run_video(clip / "video.mp4", root / f"ws-{name}", poses=clip / "cameras.txt", config=_warm_config(name))
        log(f"pipeline, preset {name}: {time.perf_counter() - t0:.1f} s")


def _warm_plane_sweep(log: Any) -> None:
    """``plane_sweep`` on small synthetic scenes: the public API's variants a run does not reach."""
    from mannequin.stereo.sweep import plane_sweep
    from mannequin.testing.numpy_sweep import plane_scene

    t0 = time.perf_counter()
    sc = plane_scene(40, 56, 2, slant_deg=15, uint8=True)
    args = (sc["ref"], sc["sources"], sc["K_ref"], sc["K_sources"], sc["R"], sc["t"], sc["depth_range"], 8)
    plane_sweep(*args, n_threads=1)
    plane_sweep(*args, top_k=1, shift=0, smooth=0, subpixel=False, return_cost=True)
    rgb = [np.repeat(np.asarray(a)[:, :, None], 3, axis=2) for a in (sc["ref"], *sc["sources"])]
    plane_sweep(rgb[0], rgb[1:], *args[2:])
    u16 = [np.asarray(a, np.uint16) * 257 for a in (sc["ref"], *sc["sources"])]
    plane_sweep(u16[0], u16[1:], *args[2:], normal=(0.0, -0.2, 1.0), top_k=1)
    # a rectified pair: whole-pixel steps (integer-shift path) and fractional ones (shift path)
    ref = np.asarray(sc["ref"], np.float64) / 255.0
    src = np.roll(ref, -3, axis=1)
    K = np.array([[50.0, 0, 28], [0, 50.0, 20], [0, 0, 1]])
    for lr, n_planes in ((True, 7), (False, 7), (True, 8), (False, 8)):   # 1 px steps, then 6/7 px
        near, far = 50.0 / 7.0, 50.0 / 1.0          # disparity 1..7 px at baseline 1
        plane_sweep(ref, [src], K, [K], [np.eye(3)], [np.array([-1.0, 0.0, 0.0])], (near, far), n_planes,
                    top_k=1, lr_check=lr, min_angle_deg=0.0)
        plane_sweep(ref, [src], K, [K], [np.eye(3)], [np.array([-1.0, 0.0, 0.0])], (near, far), n_planes,
                    lr_check=lr, min_angle_deg=0.0, shift=0, smooth=0)
    log(f"plane_sweep variants: {time.perf_counter() - t0:.1f} s")


def warm_numba_cache(workdir: str | os.PathLike | None = None, *, presets: tuple[str, ...] = PRESETS,
                     pipeline: bool = True, verbose: bool = False) -> dict[str, Any]:
    """Compile (or load) every Numba kernel signature a run uses, filling Numba's on-disk cache.

    Runs the pipeline on a tiny synthetic video once per preset in ``presets`` (unless
    ``pipeline`` is False), then :func:`~mannequin.stereo.sweep.plane_sweep`'s other variants (module
    docstring).  Temporary files go to a folder under ``workdir`` (default: the system's temporary
    folder), removed afterwards.  The cache goes where Numba puts it: ``NUMBA_CACHE_DIR`` when set,
    else the ``__pycache__`` folders next to the kernel modules.  ``verbose`` prints each step's
    time.  Returns :func:`compile_counts` plus ``seconds`` (the whole warm-up)."""

    def log(msg: str) -> None:
        if verbose:
            print(f"[warm-up] {msg}", flush=True)

    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="mannequin-warmup-", dir=workdir) as tmp:
        if pipeline:
            _warm_pipeline(Path(tmp), tuple(presets), log)
        _warm_plane_sweep(log)
    out = compile_counts()
    out["seconds"] = time.perf_counter() - t0
    log(f"{out['misses']} signatures compiled, {out['hits']} loaded from the cache, {out['seconds']:.1f} s")
    return out


def main(argv: list[str] | None = None) -> int:
    """``python -m mannequin.warmup [-v]``: :func:`warm_numba_cache`; exit status 0 when it ran."""
    args = sys.argv[1:] if argv is None else argv
    warm_numba_cache(verbose="-v" in args or "--verbose" in args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
