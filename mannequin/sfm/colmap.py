"""pycolmap for the sfm stage: its logging and seed, native-output redirection, and the COLMAP database.

The database (``WS/sfm/work/database.db``) holds one shared camera (id 1), the frames as images
1..N in sorted-name order, their SIFT features, the matches and the verified two-view geometries.
Matching is sequential (a window of neighbours, optionally loop detection with a vocabulary tree) or
exhaustive (every pair); :func:`exhaustive_first` and :func:`exhaustive_fallback_allowed` choose.
"""
from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TextIO

import numpy as np
import pycolmap

from mannequin.config import SfmConfig, worker_threads
from mannequin.errors import InputError


@contextlib.contextmanager
def native_output_to(logfile: Path) -> Iterator[TextIO]:
    """Send the process's native stdout/stderr (glog, COLMAP prints) to ``logfile``.

    Yields a text stream on the original stderr for progress bars.  Python-level writes to
    ``sys.stderr`` are flushed first so ordering is kept.
    """
    logfile.parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    saved_out, saved_err = os.dup(1), os.dup(2)
    term = os.fdopen(os.dup(saved_err), "w", buffering=1)
    with open(logfile, "ab") as fh:
        os.dup2(fh.fileno(), 1)
        os.dup2(fh.fileno(), 2)
        try:
            yield term
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved_out, 1)
            os.dup2(saved_err, 2)
            os.close(saved_out)
            os.close(saved_err)
            term.close()


def start_colmap(seed: int) -> None:
    """Quiet pycolmap's glog (no INFO chatter; warnings still reach WS/logs) and seed its RNG."""
    pycolmap.logging.minloglevel = 1
    pycolmap.set_random_seed(int(seed))


def colmap_threads(cfg: SfmConfig) -> int:
    """Threads for pycolmap's matching and mapping: 1 when ``cfg.deterministic``.

    COLMAP's thread pools draw RANSAC samples in whatever order the threads run, so two runs with
    the same seed differ; one thread gives the same model every time (docs/FINDINGS.md).  Feature
    extraction keeps all threads: it works per image, so its output does not depend on the order."""
    return 1 if cfg.deterministic else worker_threads()


def exhaustive_first(cfg: SfmConfig, names: Sequence[str], fixed_camera: bool) -> bool:
    """Whether to match every pair from the start: a clip of at most ``cfg.exhaustive_max_frames``
    frames ``names``, a camera held fixed (given intrinsics) and no vocabulary tree.  A
    self-calibrated clip matches sequentially first (far pairs biased its refined focal); known poses
    always match sequentially (see :class:`~mannequin.config.SfmConfig`)."""
    return fixed_camera and 0 < len(names) <= cfg.exhaustive_max_frames and not cfg.vocab_tree


def exhaustive_fallback_allowed(cfg: SfmConfig, names: Sequence[str], fixed_camera: bool) -> bool:
    """Whether a sequential matching that registers too few of the frames ``names`` may be followed
    by an exhaustive one (``cfg.exhaustive_fallback_below``): a short clip, not already exhaustive,
    without a vocabulary tree."""
    return (not exhaustive_first(cfg, names, fixed_camera) and len(names) <= cfg.exhaustive_max_frames
            and not cfg.vocab_tree)


def matching_options(cfg: SfmConfig, exhaustive: bool, known_poses: bool = False) -> pycolmap.FeatureMatchingOptions:
    """COLMAP's matching options for ``cfg``: threads (:func:`colmap_threads`) and guided matching.

    ``cfg.guided_matching``: "exhaustive" guides in exhaustive matching only, where it registers
    wide-baseline views, and not with ``known_poses`` (nothing is registered); "all" always; "off"
    never.  Raises :class:`InputError` for another value."""
    if cfg.guided_matching not in ("exhaustive", "all", "off"):
        raise InputError(f"sfm.guided_matching {cfg.guided_matching!r}: use 'exhaustive', 'all' or 'off'")
    matching = pycolmap.FeatureMatchingOptions()
    matching.num_threads = colmap_threads(cfg)
    matching.guided_matching = cfg.guided_matching == "all" or (
        cfg.guided_matching == "exhaustive" and exhaustive and not known_poses)
    return matching


def create_database(db_path: Path, image_dir: Path, names: Sequence[str], cfg: SfmConfig, camera_model: str,
                    camera_params: str, *, exhaustive: bool = False, known_poses: bool = False) -> dict[str, float]:
    """Create the database ``db_path`` (replacing any): import the images ``names`` (file names in
    ``image_dir``; ids follow the sorted names) with one shared camera of ``camera_model`` and
    ``camera_params`` (comma-separated, COLMAP's order, pixels), extract SIFT features (at most
    ``cfg.max_features`` per image) and :func:`match` them.  Returns the seconds spent
    (``features_s``, ``matching_s``)."""
    if db_path.exists():
        db_path.unlink()
    reader = pycolmap.ImageReaderOptions()
    reader.camera_model = camera_model
    reader.camera_params = camera_params
    pycolmap.Database.open(str(db_path)).close()
    pycolmap.import_images(str(db_path), str(image_dir), camera_mode=pycolmap.CameraMode.SINGLE,
                           image_names=list(names), options=reader)
    ext = pycolmap.FeatureExtractionOptions()
    ext.sift.max_num_features = cfg.max_features
    ext.num_threads = worker_threads()  # per image: the same features whatever the thread order
    t0 = time.perf_counter()
    pycolmap.extract_features(str(db_path), str(image_dir), image_names=list(names),
                              camera_mode=pycolmap.CameraMode.SINGLE, reader_options=reader,
                              extraction_options=ext, device=pycolmap.Device.cpu)
    t1 = time.perf_counter()
    match(db_path, cfg, exhaustive, known_poses=known_poses)
    return {"features_s": t1 - t0, "matching_s": time.perf_counter() - t1}


def match(db_path: Path, cfg: SfmConfig, exhaustive: bool, *, again: bool = False, known_poses: bool = False) -> None:
    """Match the database's images: every pair (``exhaustive``) or sequentially (``cfg.overlap``,
    ``cfg.quadratic_overlap``, loop detection with ``cfg.vocab_tree``).  ``again`` first drops the
    existing matches and two-view geometries (to verify them under a new focal)."""
    if again:
        db = pycolmap.Database.open(str(db_path))
        try:
            db.clear_matches()
            db.clear_two_view_geometries()
        finally:
            db.close()
    matching = matching_options(cfg, exhaustive, known_poses)
    if exhaustive:
        # Short clip: every pair.  Sequential matching with quadratic_overlap only pairs i with
        # i + 2^k, which starves short, rotation-heavy clips of the pairs that give them parallax.
        pycolmap.match_exhaustive(str(db_path), matching_options=matching, device=pycolmap.Device.cpu)
        return
    pairing = pycolmap.SequentialPairingOptions()
    pairing.overlap = cfg.overlap
    pairing.quadratic_overlap = cfg.quadratic_overlap
    if cfg.vocab_tree:
        tree = Path(cfg.vocab_tree)
        if not tree.is_file():
            raise InputError(f"sfm.vocab_tree {tree}: vocabulary tree file not found (loop detection needs a local file)")
        pairing.loop_detection = True
        pairing.vocab_tree_path = str(tree)
    else:
        pairing.loop_detection = False
    pycolmap.match_sequential(str(db_path), matching_options=matching, pairing_options=pairing,
                              device=pycolmap.Device.cpu)


def _update_camera(db_path: Path, update: Callable[[pycolmap.Camera], np.ndarray]) -> None:
    """Set the shared camera's parameters in the database to ``update(camera)``."""
    db = pycolmap.Database.open(str(db_path))
    try:
        cam = db.read_all_cameras()[0]
        cam.params = np.asarray(update(cam), dtype=np.float64).tolist()
        db.update_camera(cam)
    finally:
        db.close()


def set_camera_params(db_path: Path, params: np.ndarray) -> None:
    """Set the shared camera's parameters (COLMAP's order for its model) in the database; mapping
    with the intrinsics held fixed then uses them as they are."""
    _update_camera(db_path, lambda _: params)


def set_focal(db_path: Path, focal: float) -> None:
    """Set the shared camera's initial focal length (pixels) in the database, other parameters kept."""
    def update(cam: pycolmap.Camera) -> np.ndarray:
        params = np.array(cam.params, dtype=np.float64)
        params[list(cam.focal_length_idxs())] = focal
        return params

    _update_camera(db_path, update)
