"""Self-calibrated mapping: pycolmap's incremental (or global) mapper with the intrinsics held at
their database values, robust bundle adjustments, staged intrinsics refinement, field-of-view
starts, re-fits of a far-off focal prior, and the exhaustive re-match of a clip that registers too
few frames.

Models are ``pycolmap.Reconstruction`` (poses world-to-camera, OpenCV axes, pixels with COLMAP's
+0.5 centres).  The measurements behind the defaults are in docs/FINDINGS.md and
:class:`~mannequin.config.SfmConfig`.
"""
from __future__ import annotations

import dataclasses
import logging
import math
import shutil
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pycolmap

from mannequin.config import SfmConfig, worker_threads
from mannequin.errors import StageError
from mannequin.sfm.colmap import colmap_threads, match, set_focal
from mannequin.sfm.diagnostics import median_triangulation_angle
from mannequin.sfm.intrinsics import focal_from_fov

log = logging.getLogger(__name__)

#: The thin-model test counts at most this many frames: the 3-D points come from the scene, and a
#: long clip of one frozen scene sees the same points again rather than new ones.
THIN_TEST_MAX_FRAMES = 50

#: The robust bundle adjustments stop at this relative cost decrease, or after this many iterations.
BA_FUNCTION_TOLERANCE = 1e-9
BA_MAX_ITERATIONS = 300
#: ... or once the cameras have settled: they run in rounds of this many iterations, and stop after
#: a round that moved no intrinsic parameter by more than ``BA_SETTLED`` (relative for the focal,
#: absolute for the dimensionless distortion terms) and no camera centre by more than ``BA_SETTLED``
#: of the scene's size (the median distance of the points from the cameras' mean centre).
BA_ROUND_ITERATIONS = 25
BA_SETTLED = 1e-5

#: Re-fit of a far-off focal prior (:func:`map_self_calibrated`): at most this many re-mappings,
#: stopping once the refined focal moves less than this fraction from the focal it was mapped with.
REFIT_ROUNDS = 3
REFIT_CONVERGED = 0.01


@dataclass(frozen=True)
class MappingJob:
    """What every mapping run of one clip shares."""

    db_path: Path  #: the COLMAP database: features, matches, the shared camera's initial parameters
    image_dir: Path  #: the frames the database's images name
    cfg: SfmConfig
    seed: int  #: the run's random seed (restarts add their attempt number)
    n_frames: int  #: frames in the clip, registered or not
    width: int  #: frame width, pixels (the focal of a field of view)
    fixed_intrinsics: bool  #: given intrinsics held fixed: no self-calibration
    max_extra_param: float  #: COLMAP's bound on the distortion terms while mapping


def init_angle(cfg: SfmConfig, attempt: int) -> float:
    """Initial-pair triangulation angle (degrees) of mapping attempt ``attempt``: the configured
    angle, then halved per restart down to 1° (short rotation-heavy clips rarely have a 4° pair, and
    a forced wide pair with little overlap starts a thin, wrong model)."""
    return max(min(1.0, cfg.init_min_tri_angle), cfg.init_min_tri_angle / 2 ** attempt)


def model_key(rec: pycolmap.Reconstruction) -> tuple[int, int]:
    """Ranking of mapping results: most registered frames, then most 3-D points."""
    return (rec.num_reg_images(), rec.num_points3D())


def good_enough(rec: pycolmap.Reconstruction, cfg: SfmConfig, n_frames: int) -> bool:
    """All ``n_frames`` frames registered and a model that is not thin: at least
    ``cfg.min_points_per_frame`` 3-D points per registered frame, counting at most
    :data:`THIN_TEST_MAX_FRAMES` frames (without the cap every long clip looked thin)."""
    n_reg = rec.num_reg_images()
    return (n_reg >= n_frames
            and rec.num_points3D() >= cfg.min_points_per_frame * min(n_reg, THIN_TEST_MAX_FRAMES))


def _incremental_options(job: MappingJob, attempt: int) -> pycolmap.IncrementalPipelineOptions:
    """Options of incremental mapping attempt ``attempt``: the intrinsics held at their database values."""
    opts = pycolmap.IncrementalPipelineOptions()
    opts.random_seed = int(job.seed) + attempt
    opts.num_threads = colmap_threads(job.cfg)
    opts.max_extra_param = job.max_extra_param
    opts.ba_refine_principal_point = False
    opts.ba_refine_focal_length = False
    opts.ba_refine_extra_params = False
    opts.mapper.abs_pose_refine_focal_length = False
    opts.mapper.abs_pose_refine_extra_params = False
    opts.mapper.init_min_tri_angle = init_angle(job.cfg, attempt)
    return opts


def incremental(job: MappingJob, out_dir: Path) -> pycolmap.Reconstruction | None:
    """Incremental mapping of ``job.db_path`` with the intrinsics held at their database values.

    Restarts (``cfg.restarts`` attempts in all) with other seeds and a smaller initial-pair angle
    (:func:`init_angle`) while frames stay unregistered or the model is thin (:func:`good_enough`).
    Returns the model with the most registered images, then the most 3-D points (None without any);
    each attempt writes under ``out_dir/attempt<k>``."""
    models = {}
    for attempt in range(max(1, job.cfg.restarts)):
        pycolmap.set_random_seed(int(job.seed) + attempt)
        run_dir = out_dir / f"attempt{attempt}"
        run_dir.mkdir(parents=True)
        found = pycolmap.incremental_mapping(str(job.db_path), str(job.image_dir), str(run_dir),
                                             options=_incremental_options(job, attempt))
        models.update({(attempt, k): m for k, m in found.items()})
        if models and good_enough(max(models.values(), key=model_key), job.cfg, job.n_frames):
            break
    if not models:
        return None
    return max(models.values(), key=model_key)


def bundle_adjust(rec: pycolmap.Reconstruction, cfg: SfmConfig, *, refine_focal: bool, refine_extra: bool) -> None:
    """Bundle-adjust ``rec`` in place: poses and points, the focal and the distortion terms when asked
    (never the principal point), with a Cauchy loss of scale ``cfg.ba_loss_px`` (0 = squared).

    It stops when an iteration lowers the cost by under :data:`BA_FUNCTION_TOLERANCE` (relative;
    pycolmap sets Ceres' tolerance to 0, so 100 iterations always ran), after
    :data:`BA_MAX_ITERATIONS`, or once a round of :data:`BA_ROUND_ITERATIONS` leaves the cameras
    where they were (:data:`BA_SETTLED`): the cost then still creeps down with the points, which
    moves no camera.  Ceres' usual 1e-6 stopped short of the converged model."""
    opts = pycolmap.BundleAdjustmentOptions()
    opts.refine_focal_length = bool(refine_focal)
    opts.refine_extra_params = bool(refine_extra)
    opts.refine_principal_point = False
    opts.print_summary = False
    opts.ceres.solver_options.function_tolerance = BA_FUNCTION_TOLERANCE
    opts.ceres.solver_options.max_num_iterations = BA_ROUND_ITERATIONS
    if cfg.ba_loss_px > 0:
        opts.ceres.loss_function_type = pycolmap.LossFunctionType.CAUCHY
        opts.ceres.loss_function_scale = float(cfg.ba_loss_px)
    before = _cameras(rec)
    size = _scene_size(rec, before[2])
    for _ in range(max(1, BA_MAX_ITERATIONS // BA_ROUND_ITERATIONS)):
        pycolmap.bundle_adjustment(rec, opts)
        after = _cameras(rec)
        if _settled(before, after, size):
            return
        before = after


def _cameras(rec: pycolmap.Reconstruction) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(focal lengths (C,), the other intrinsic parameters (C, k), camera centres (N, 3)) of ``rec``,
    cameras and images in id order."""
    cams = [rec.camera(c) for c in sorted(rec.cameras)]
    focal = np.array([c.mean_focal_length() for c in cams])
    other = np.array([np.delete(np.asarray(c.params, float), list(c.focal_length_idxs())) for c in cams])
    centres = np.array([rec.image(i).projection_center() for i in sorted(rec.reg_image_ids())]).reshape(-1, 3)
    return focal, other, centres


def _scene_size(rec: pycolmap.Reconstruction, centres: np.ndarray) -> float:
    """The median distance (pose units) of the 3-D points of ``rec`` from the mean of the camera
    ``centres`` (N, 3)."""
    pts = np.array([p.xyz for p in rec.points3D.values()]).reshape(-1, 3)
    if not len(pts) or not len(centres):
        return 1.0
    return float(np.median(np.linalg.norm(pts - centres.mean(axis=0), axis=1))) or 1.0


def _settled(before: tuple[np.ndarray, ...], after: tuple[np.ndarray, ...], size: float) -> bool:
    """Whether no camera moved by more than :data:`BA_SETTLED` between ``before`` and ``after``
    (:func:`_cameras`; the focal relative, the other intrinsics absolute, the centres in ``size``)."""
    (f0, o0, c0), (f1, o1, c1) = before, after
    if f0.shape != f1.shape or o0.shape != o1.shape or c0.shape != c1.shape:
        return False
    return bool(np.all(np.abs(f1 - f0) <= BA_SETTLED * np.abs(f0))
                and np.all(np.abs(o1 - o0) <= BA_SETTLED)
                and np.all(np.linalg.norm(c1 - c0, axis=1) <= BA_SETTLED * size))


def refine_intrinsics(rec: pycolmap.Reconstruction, cfg: SfmConfig,
                      n_frames: int) -> tuple[pycolmap.Reconstruction, dict[str, Any]]:
    """Staged self-calibration: the focal length first, then the distortion terms once at least
    ``cfg.min_registered`` of the ``n_frames`` frames registered, kept only when the evidence
    supports them.  Returns (model, report).

    The distortion stage runs on a copy; it is kept when it lowers the mean reprojection error by at
    least ``cfg.min_distortion_gain`` (relative).  Otherwise the terms stay at their initial values
    (0 with the FOV prior): on an undistorted clip a free k1 fits noise and drags the focal with it.
    """
    bundle_adjust(rec, cfg, refine_focal=True, refine_extra=False)
    e0 = float(rec.compute_mean_reprojection_error())
    report: dict[str, Any] = {"reprojection_focal_only_px": e0, "distortion_kept": False}
    if rec.num_reg_images() >= cfg.min_registered * n_frames:
        trial = pycolmap.Reconstruction(rec)
        bundle_adjust(trial, cfg, refine_focal=True, refine_extra=True)
        e1 = float(trial.compute_mean_reprojection_error())
        report["reprojection_with_distortion_px"] = e1
        if e1 <= (1.0 - cfg.min_distortion_gain) * e0:
            rec, report["distortion_kept"] = trial, True
    return rec, report


def final_adjustment(rec: pycolmap.Reconstruction, job: MappingJob) -> tuple[pycolmap.Reconstruction, dict[str, Any] | None]:
    """The adjustment after a mapping run: staged self-calibration (:func:`refine_intrinsics`), or
    with the intrinsics given, poses and points alone under the robust loss (none when
    ``cfg.ba_loss_px`` is 0: the mapper's own adjustment stands).  Returns (model, report), the
    report None with given intrinsics."""
    if not job.fixed_intrinsics:
        return refine_intrinsics(rec, job.cfg, job.n_frames)
    if job.cfg.ba_loss_px > 0:
        bundle_adjust(rec, job.cfg, refine_focal=False, refine_extra=False)
    return rec, None


def map_frames(job: MappingJob, work: Path, *, exhaustive: bool,
               fallback: bool) -> tuple[pycolmap.Reconstruction, dict[str, Any], str]:
    """Map the clip (:func:`map_self_calibrated`, under ``work/maps``) after matching every pair
    (``exhaustive``) or sequentially.  With ``fallback``, a sequential matching that registers fewer
    than ``cfg.exhaustive_fallback_below`` of the frames (an unordered set, a clip that loops back)
    is followed by exhaustive matching and mapping (``work/maps_exhaustive``), and the model that
    registers more frames wins.  Returns (model, calibration report, matching description)."""
    cfg = job.cfg

    def mapping(tag: str, exhaustive: bool, remap_below: int = 0) -> tuple[pycolmap.Reconstruction, dict[str, Any]]:
        return map_self_calibrated(job, work / tag, rematch=lambda: match(job.db_path, cfg, exhaustive, again=True),
                                   refit_min_registered=remap_below)

    rec: pycolmap.Reconstruction | None = None
    calib: dict[str, Any] = {}
    failure: StageError | None = None
    try:
        # With a fallback ahead, a start that registers too few frames gets no re-fit here:
        # the exhaustive pass re-maps anyway.
        fallback_at = math.ceil(cfg.exhaustive_fallback_below * job.n_frames) if fallback else 0
        rec, calib = mapping("maps", exhaustive, fallback_at)
    except StageError as exc:
        if not fallback:
            raise
        failure = exc
    matching = "exhaustive" if exhaustive else "sequential"
    n_reg = rec.num_reg_images() if rec is not None else 0
    if fallback and n_reg < cfg.exhaustive_fallback_below * job.n_frames:
        log.info("sequential matching registered %d of %d frames: matching every pair", n_reg, job.n_frames)
        # All pairs again (again=True), so the sequential ones are guided too.
        match(job.db_path, cfg, True, again=True)
        rec2, calib2 = mapping("maps_exhaustive", True)
        matching = f"sequential ({n_reg} registered), then exhaustive"
        if rec is None or rec2.num_reg_images() > n_reg:
            rec, calib = rec2, calib2
    if rec is None:  # the first mapping failed, and cfg.exhaustive_fallback_below 0 ran no fallback
        raise failure or StageError(f"{job.image_dir}: structure from motion found no model")
    return rec, calib, matching


def map_self_calibrated(job: MappingJob, out_dir: Path, rematch: Callable[[], None] | None = None,
                        refit_min_registered: int = 0) -> tuple[pycolmap.Reconstruction, dict[str, Any]]:
    """Mapping with staged self-calibration.  Returns (model, calibration report).

    Registration runs with the intrinsics held at their initial values, which is far more robust
    on short, rotation-heavy clips than refining them from the first pair.  Without given
    intrinsics, it starts from each field of view in ``cfg.fov_candidates`` (the focal prior;
    :func:`_fov_starts`), refines the focal length alone, then the distortion terms.  When the first
    start's refined focal is more than ``cfg.refit_prior_above`` away from its prior, it maps again
    from the refined focal (:func:`_refit`) after ``rematch()`` (when given) has verified the
    matches again under that focal.  The first start is kept unless another registers more frames
    (:func:`_choose`); the spread of the refined focal over the starts is the reported uncertainty
    (``focal_spread``, a fraction of the focal).  Raises :class:`StageError` without any model.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    if job.cfg.mapper == "global":
        return _global_mapping(job, out_dir)
    tries = _fov_starts(job, out_dir)
    if not tries:
        raise StageError(f"{job.image_dir}: structure from motion found no model ({job.n_frames} frames): "
                         "too little texture or overlap, or a camera that does not translate")
    first = tries[0]
    if _wants_refit(first, tries, job.cfg, refit_min_registered):
        first = _refit(job, out_dir, tries, rematch)
    return _choose(tries, first)


def _global_mapping(job: MappingJob, out_dir: Path) -> tuple[pycolmap.Reconstruction, dict[str, Any]]:
    """pycolmap's global mapper, as the incremental one: one thread when ``cfg.deterministic``, the
    run's seed, and given intrinsics held fixed unless ``cfg.refine_intrinsics``."""
    pycolmap.set_random_seed(int(job.seed))
    opts = pycolmap.GlobalPipelineOptions()
    opts.num_threads = opts.mapper.num_threads = colmap_threads(job.cfg)
    opts.random_seed = opts.mapper.random_seed = int(job.seed)
    if job.fixed_intrinsics:
        opts.mapper.bundle_adjustment.refine_focal_length = False
        opts.mapper.bundle_adjustment.refine_extra_params = False
    models = pycolmap.global_mapping(str(job.db_path), str(job.image_dir), str(out_dir), options=opts)
    if not models:
        raise StageError(f"{job.image_dir}: structure from motion found no model ({job.n_frames} frames)")
    return max(models.values(), key=model_key), {"starts": []}


def _start(job: MappingJob, out_dir: Path, k: int, fov: float | None, focal: float | None) -> dict[str, Any] | None:
    """Mapping start ``k`` (under ``out_dir/start<k>``) from the focal prior ``focal`` (pixels, set
    in the database; None keeps the database's) with its adjustment (:func:`final_adjustment`).
    Returns the start's record (``rec``: the model) or None without a model."""
    if focal is not None:
        set_focal(job.db_path, focal)
    rec = incremental(job, out_dir / f"start{k}")
    if rec is None:
        return None
    rec, refine = final_adjustment(rec, job)
    cam = rec.camera(rec.image(rec.reg_image_ids()[0]).camera_id)
    return {"fov_prior_deg": fov, "prior_focal_px": focal, "registered": rec.num_reg_images(),
            "points": rec.num_points3D(), "focal_px": float(cam.mean_focal_length()), **(refine or {}), "rec": rec}


def _start_on_copy(job: MappingJob, out_dir: Path, k: int, fov: float, focal: float) -> dict[str, Any] | None:
    """:func:`_start` on a copy of the database (``out_dir/start<k>.db``, removed afterwards), so
    that starts can run side by side: each sets its own focal prior.  The same model as
    :func:`_start` (mapping only reads the database)."""
    db = out_dir / f"start{k}.db"
    shutil.copyfile(job.db_path, db)
    try:
        return _start(dataclasses.replace(job, db_path=db), out_dir, k, fov, focal)
    finally:
        db.unlink(missing_ok=True)


def _fov_priors(job: MappingJob) -> Sequence[float | None]:
    """The field-of-view priors (degrees) of the starts: ``cfg.fov_deg``, then the other
    ``cfg.fov_candidates``; [None] (the database's focal) with given intrinsics."""
    if job.fixed_intrinsics:
        return [None]
    cfg = job.cfg
    return [cfg.fov_deg] + [f for f in cfg.fov_candidates if f != cfg.fov_deg]


def _fov_starts(job: MappingJob, out_dir: Path) -> list[dict[str, Any]]:
    """The starts from each field-of-view prior (``cfg.fov_deg``, then ``cfg.fov_candidates``), or
    the one start from given intrinsics.  The further priors run only while the first start has
    little parallax (median triangulation angle below ``cfg.fov_check_below_deg``): with enough,
    the data determine the focal.  The further starts run side by side
    (:func:`~mannequin.config.worker_threads` at a time, each mapping on one thread with its own
    seed and database copy), so they give the same models as one after the other; the database is
    left with the last prior's focal, as it would be."""
    priors = _fov_priors(job)
    first = _start(job, out_dir, 0, priors[0], None if priors[0] is None else focal_from_fov(job.width, priors[0]))
    tries = [first] if first is not None else []
    rest = [(k, fov) for k, fov in enumerate(priors) if k > 0 and fov is not None]
    if not rest or (tries and median_triangulation_angle(tries[0]["rec"]) >= job.cfg.fov_check_below_deg):
        return tries  # one prior, or enough parallax: the focal is determined by the first start
    focals = {k: focal_from_fov(job.width, fov) for k, fov in rest}
    with ThreadPoolExecutor(max_workers=max(1, min(len(rest), worker_threads()))) as pool:
        found = list(pool.map(lambda kf: _start_on_copy(job, out_dir, kf[0], kf[1], focals[kf[0]]), rest))
    set_focal(job.db_path, focals[rest[-1][0]])
    return tries + [t for t in found if t is not None]


def _wants_refit(first: dict[str, Any], tries: list[dict[str, Any]], cfg: SfmConfig, refit_min_registered: int) -> bool:
    """Whether the first start's refined focal is more than ``cfg.refit_prior_above`` off its
    field-of-view prior and worth a re-fit: not when it registered fewer than
    ``refit_min_registered`` frames (the caller re-maps those), nor when the field-of-view starts
    disagree by more than ``cfg.max_focal_spread`` (the focal is not determined by the data:
    re-fitting would chase noise)."""
    focals = [t["focal_px"] for t in tries]
    determined = len(focals) < 2 or (max(focals) - min(focals)) / first["focal_px"] <= cfg.max_focal_spread
    return (first["fov_prior_deg"] is not None and cfg.refit_prior_above > 0
            and first["registered"] >= refit_min_registered and determined
            and abs(first["focal_px"] / first["prior_focal_px"] - 1.0) > cfg.refit_prior_above)


def _refit(job: MappingJob, out_dir: Path, tries: list[dict[str, Any]], rematch: Callable[[], None] | None) -> dict[str, Any]:
    """Map again from the first start's refined focal, and again (at most :data:`REFIT_ROUNDS`)
    until the refined focal stays within :data:`REFIT_CONVERGED` of the focal it was mapped with.

    Registration with a focal far off (a long lens read as 60°) loses the wide-baseline frames, and
    the two-view geometries were verified under it: ``rematch()`` verifies them again first.  The
    re-fits join ``tries``; a re-fit that registers fewer frames than its predecessor stops the
    chain.  Every start but the last of the chain is marked superseded.  Returns the last."""
    first = tries[0]
    chain = [first]
    for r in range(REFIT_ROUNDS):
        prev = chain[-1]
        if rematch is not None:
            set_focal(job.db_path, prev["focal_px"])
            rematch()
        t = _start(job, out_dir, len(_fov_priors(job)) + r, None, prev["focal_px"])
        if t is None:
            break
        tries.append(t)
        t["refit_of_prior_deg"] = first["fov_prior_deg"]
        if t["registered"] < prev["registered"]:
            t["superseded"] = True  # worse than the model it came from: keep that one
            break
        chain.append(t)
        if abs(t["focal_px"] / t["prior_focal_px"] - 1.0) <= REFIT_CONVERGED:
            break
    for t in chain[:-1]:
        t["superseded"] = True
    return chain[-1]


def _choose(tries: list[dict[str, Any]], first: dict[str, Any]) -> tuple[pycolmap.Reconstruction, dict[str, Any]]:
    """The model to keep and the calibration report.  A start superseded by its re-fit does not
    compete; among the rest, ``first`` (the configured prior, or the re-fit that replaced it) wins
    unless another registers more frames.  ``focal_spread``: the refined focals' spread over the
    starts that register as many frames, a fraction of the chosen focal (None for one start)."""
    live = [first] + [t for t in tries if not t.get("superseded") and t is not first]
    best = max(live, key=lambda t: t["registered"])
    peers = [t["focal_px"] for t in live if t["registered"] >= best["registered"]]
    calib = {"starts": [{k: v for k, v in t.items() if k != "rec"} for t in tries],
             "chosen_fov_prior_deg": best["fov_prior_deg"] if "refit_of_prior_deg" not in best else None,
             "chosen_refit": "refit_of_prior_deg" in best,
             "focal_spread": float((max(peers) - min(peers)) / best["focal_px"]) if len(peers) > 1 else None}
    return best["rec"], calib
