"""Stage ``sfm``: poses and intrinsics from pycolmap on the CPU, or import of known poses.

Input: ``WS/frames/*.png`` (stage frames).  Output: ``WS/images`` (undistorted, pinhole),
``WS/sparse`` (PINHOLE COLMAP model of WS/images), ``WS/cameras.txt`` (MC format, timestamps from
frames.csv) and ``WS/sfm/summary.json``.  pycolmap's glog output goes to ``WS/logs/sfm.log``.
"""
from __future__ import annotations

import contextlib
import logging
import math
import os
import shutil
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from mannequin.config import SfmConfig, check_readout_ms, worker_threads
from mannequin.errors import InputError, StageError
from mannequin.frames import input_line_of
from mannequin.io.cameras import CameraFile, Intrinsics, from_reconstruction, read_cameras, to_reconstruction, write_cameras
from mannequin.result import StageResult
from mannequin.workspace import Workspace, atomic_path, write_json

log = logging.getLogger("mannequin.sfm.stage")


@contextlib.contextmanager
def native_output_to(logfile: Path):
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


def _pycolmap():
    import pycolmap

    pycolmap.logging.minloglevel = 1  # no INFO chatter; warnings still reach WS/logs
    return pycolmap


def parse_intrinsics(spec: str, width: int, height: int, option: str = "--intrinsics") -> tuple[Intrinsics, tuple]:
    """Parse ``fx,fy,cx,cy[,k1,k2,p1,p2[,k3]]`` (pixels of the input frames) or a file holding it.

    The values follow OpenCV's convention (the centre of the top-left pixel is (0, 0)), as
    calibration tools write them; the returned intrinsics use COLMAP's (+0.5).

    Returns the intrinsics for a ``width`` × ``height`` input frame and the distortion tuple
    (empty, 4 or 5 values, OpenCV order).
    """
    text = spec
    p = Path(spec)
    if "," not in spec:
        if not p.is_file():
            raise InputError(f"{option} {spec!r}: no such file, and not fx,fy,cx,cy[,k1,k2,p1,p2[,k3]]")
        try:
            text = p.read_text(encoding="utf-8").replace("\n", ",").replace(" ", ",")
        except (OSError, UnicodeDecodeError):
            raise InputError(f"{option} {spec}: cannot read the file as text") from None
    vals = [v for v in text.split(",") if v.strip()]
    try:
        nums = [float(v) for v in vals]
    except ValueError:
        raise InputError(f"{option} {spec!r}: expected numbers fx,fy,cx,cy[,k1,k2,p1,p2[,k3]]") from None
    if len(nums) not in (4, 8, 9) or not all(math.isfinite(v) for v in nums):
        raise InputError(f"{option} {spec!r}: expected 4, 8 or 9 finite numbers, got {len(nums)}")
    fx, fy, cx, cy = nums[:4]
    if fx <= 0 or fy <= 0:
        raise InputError(f"{option} {spec!r}: focal lengths must be positive")
    dist = tuple(nums[4:])
    if dist and width > 1 and height > 1:
        k1, k2, k3 = dist[0], dist[1], (dist[4] if len(dist) > 4 else 0.0)
        fold = radial_fold_radius(k1, k2, k3)
        corners = [math.hypot((u - cx) / fx, (v - cy) / fy) for u in (-0.5, width - 0.5) for v in (-0.5, height - 0.5)]
        r_fold = fold * (1 + k1 * fold ** 2 + k2 * fold ** 4 + k3 * fold ** 6) if math.isfinite(fold) else math.inf
        if r_fold < max(corners):
            raise InputError(
                f"{option} {spec!r}: the radial distortion (k1 {k1:g}, k2 {k2:g}, k3 {k3:g}) folds back "
                f"{r_fold * fx:.0f} px from the principal point, inside the {width}x{height} frame (corner at "
                f"{max(corners) * fx:.0f} px), so the frames cannot be undistorted; give all the calibration's "
                "coefficients (OpenCV order k1,k2,p1,p2,k3)")
    # Calibration tools (OpenCV, TUM) put pixel centres at integers; COLMAP at +0.5.
    return Intrinsics(fx, fy, cx + 0.5, cy + 0.5, width, height), dist


def radial_fold_radius(k1: float, k2: float, k3: float = 0.0, r_max: float = 4.0) -> float:
    """The smallest undistorted normalised radius r in (0, ``r_max``] where OpenCV's radial model
    ``r (1 + k1 r^2 + k2 r^4 + k3 r^6)`` stops growing (its derivative ``1 + 3 k1 r^2 + 5 k2 r^4 +
    7 k3 r^6`` reaches 0): beyond it two rays land on one pixel and the image cannot be undistorted.
    ``inf`` when the model grows all the way (r_max 4 is a 152° field of view)."""
    r = np.linspace(0.0, r_max, 4001)
    d = 1 + 3 * k1 * r ** 2 + 5 * k2 * r ** 4 + 7 * k3 * r ** 6
    bad = np.nonzero(d <= 0)[0]
    return float(r[bad[0]]) if bad.size else math.inf


def _timestamps(ws: Workspace) -> dict:
    """image file name (``<name>.png``) → timestamp_us from frames.csv (empty when absent)."""
    import csv

    if not ws.frames_csv.exists():
        return {}
    with open(ws.frames_csv, newline="") as fh:
        return {f'{r["name"]}.png': int(float(r["timestamp_us"])) for r in csv.DictReader(fh)}


def _source_size(ws: Workspace, width: int, height: int) -> tuple[int, int]:
    """Size of the input frames before any resize (frames.json), or the frame size itself."""
    import json

    try:
        w, h = json.loads(ws.frames_json.read_text())["source_size"]
        return int(w), int(h)
    except (OSError, KeyError, ValueError):
        return width, height


def _frame_size(path: Path) -> tuple[int, int]:
    import imageio.v3 as iio

    props = iio.improps(path)
    h, w = props.shape[:2]
    return int(w), int(h)


def triangulation_angles(rec) -> np.ndarray:
    """Per 3-D point, the largest angle (degrees) between the rays of two of its observing cameras."""
    centers = {iid: rec.image(iid).projection_center() for iid in rec.reg_image_ids()}
    out = []
    for _pid, pt in rec.points3D.items():
        ids = sorted({el.image_id for el in pt.track.elements})
        if len(ids) < 2:
            continue
        rays = np.array([centers[i] for i in ids]) - pt.xyz
        rays /= np.linalg.norm(rays, axis=1, keepdims=True)
        cos = np.clip(rays @ rays.T, -1, 1)
        out.append(math.degrees(math.acos(cos.min())))
    return np.array(out)


def _best_rotation(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The rotation R minimising sum |b_k - R a_k|^2 over unit vectors (Kabsch)."""
    U, _, Vt = np.linalg.svd(a.T @ b)
    D = np.diag([1.0, 1.0, np.sign(np.linalg.det(Vt.T @ U.T))])
    return Vt.T @ D @ U.T


def rotation_parallax(rec, db_path, min_matches: int = 20) -> dict:
    """How much parallax the verified matches show beyond what a pure camera rotation explains.

    For every verified pair of frames registered in ``rec`` with at least ``min_matches`` inlier
    matches in the COLMAP database ``db_path``, the keypoints become unit bearings through the
    model's camera (refined intrinsics and distortion), the rotation that best maps one frame's
    bearings onto the other's is fitted (Kabsch, re-fitted twice on the 90 % best matches), and the
    pair's parallax is the median angle left between the rotated and the observed bearings.

    A camera that only turns in place sees every match move by one rotation: what is left is feature
    noise.  A translating camera leaves the parallax of the scene's depth differences, which no
    rotation absorbs.  Unlike the triangulation angle, this uses neither the model's 3-D points nor
    its camera centres, which pure rotation leaves undetermined (the mapper can invent a baseline
    that fits the noise, and its point filter keeps the points that noise gave the widest angles).

    Returns {"parallax_deg": the 90th percentile of the pairs' parallax (None without a qualifying
    pair), "median_pair_deg", "max_pair_deg", "pairs"}.
    """
    import pycolmap

    reg = set(rec.reg_image_ids())
    db = pycolmap.Database.open(str(db_path))
    try:
        pair_ids, geometries = db.read_two_view_geometries()
        bearings = {}
        for i in reg:
            xy = rec.camera(rec.image(i).camera_id).cam_from_img(db.read_keypoints(i)[:, :2].astype(np.float64))
            b = np.hstack([xy, np.ones((len(xy), 1))])
            bearings[i] = b / np.linalg.norm(b, axis=1, keepdims=True)
    finally:
        db.close()
    per_pair = []
    for pid, geo in zip(pair_ids, geometries, strict=False):
        i, j = pycolmap.pair_id_to_image_pair(pid)
        m = np.asarray(geo.inlier_matches)
        if i not in reg or j not in reg or len(m) < min_matches:
            continue
        a, b = bearings[i][m[:, 0]], bearings[j][m[:, 1]]
        finite = np.isfinite(a).all(axis=1) & np.isfinite(b).all(axis=1)  # keypoints the lens model cannot undistort
        a, b = a[finite], b[finite]
        if len(a) < min_matches:
            continue
        keep = np.ones(len(a), dtype=bool)
        for _ in range(3):
            R = _best_rotation(a[keep], b[keep])
            ang = np.degrees(np.arccos(np.clip(np.sum((a @ R.T) * b, axis=1), -1.0, 1.0)))
            keep = ang <= np.percentile(ang, 90)
        per_pair.append(float(np.median(ang)))
    if not per_pair:
        return {"parallax_deg": None, "median_pair_deg": None, "max_pair_deg": None, "pairs": 0}
    v = np.array(per_pair)
    return {"parallax_deg": float(np.percentile(v, 90)), "median_pair_deg": float(np.median(v)),
            "max_pair_deg": float(v.max()), "pairs": len(v)}


def _colmap_threads(cfg: SfmConfig) -> int:
    """Threads for pycolmap's matching and mapping: 1 when ``cfg.deterministic``.

    COLMAP's thread pools draw RANSAC samples in whatever order the threads run, so two runs with
    the same seed differ (the demo's 9 views gave focal lengths of 562 and 967 px); one thread
    gives the same model every time.  Feature extraction keeps all threads: it works per image, so
    its output does not depend on the thread order."""
    return 1 if cfg.deterministic else worker_threads()


def _matching_options(cfg: SfmConfig, exhaustive: bool, known_poses: bool = False):
    """COLMAP matching options.  Guided matching ("exhaustive": in exhaustive matching only) is
    there to register wide-baseline views; with known poses nothing is registered, so it is off
    unless ``cfg.guided_matching == "all"`` (synthetic 24 frames 384×288 with GT poses: SfM 23 s →
    9 s, 2285 points instead of 2224, labels AbsRel 0.44% at 86% either way)."""
    import pycolmap

    if cfg.guided_matching not in ("exhaustive", "all", "off"):
        raise InputError(f"sfm.guided_matching {cfg.guided_matching!r}: use 'exhaustive', 'all' or 'off'")
    matching = pycolmap.FeatureMatchingOptions()
    matching.num_threads = _colmap_threads(cfg)
    matching.guided_matching = cfg.guided_matching == "all" or (
        cfg.guided_matching == "exhaustive" and exhaustive and not known_poses)
    return matching


def _exhaustive(cfg: SfmConfig, names, fixed_camera: bool) -> bool:
    """Match every pair from the start: a short clip with a fixed camera and no vocabulary tree.
    Self-calibration keeps sequential matching: the extra far pairs biased the refined focal (1.3 %
    vs 0.5 % on the synthetic clips).  Known poses do not come here (see :class:`SfmConfig`)."""
    return fixed_camera and 0 < len(names) <= cfg.exhaustive_max_frames and not cfg.vocab_tree


def _fallback_allowed(cfg: SfmConfig, names, fixed_camera: bool) -> bool:
    """Sequential matching first, exhaustive if it registers too few (see SfmConfig)."""
    return (not _exhaustive(cfg, names, fixed_camera) and len(names) <= cfg.exhaustive_max_frames
            and not cfg.vocab_tree)


def _database(pycolmap, db_path: Path, image_dir: Path, names, cfg: SfmConfig, camera_model: str,
              camera_params: str, progress_file=None, exhaustive: bool = False, known_poses: bool = False):
    """Create the database: import (ids follow sorted names), extract SIFT, match every pair
    (``exhaustive``, see :func:`_exhaustive`) or sequentially."""
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
    pycolmap.extract_features(str(db_path), str(image_dir), image_names=list(names),
                              camera_mode=pycolmap.CameraMode.SINGLE, reader_options=reader,
                              extraction_options=ext, device=pycolmap.Device.cpu)
    _match(pycolmap, db_path, cfg, exhaustive, known_poses=known_poses)


def _match(pycolmap, db_path: Path, cfg: SfmConfig, exhaustive: bool, *, again: bool = False,
           known_poses: bool = False) -> None:
    """Match the database's images: every pair (``exhaustive``) or sequentially.  ``again`` first
    drops the existing matches and two-view geometries (to verify them under a new focal)."""
    if again:
        db = pycolmap.Database.open(str(db_path))
        try:
            db.clear_matches()
            db.clear_two_view_geometries()
        finally:
            db.close()
    matching = _matching_options(cfg, exhaustive, known_poses)
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


def run_sfm(ws: Workspace, cfg: SfmConfig, poses: os.PathLike | None = None, *, seed: int = 0,
            progress: bool = False) -> StageResult:
    """Run stage sfm on workspace ``ws``.

    Returns a :class:`~mannequin.result.StageResult` (output ``ws.sparse_dir``) whose report holds
    the registration counts, the focal, the triangulation angle, the reprojection error, the
    rolling-shutter readout and the warnings (the full summary is ``WS/sfm/summary.json``).

    Without ``poses``: SIFT, sequential matching and incremental (or global) mapping with one shared
    camera; the model with the most registered frames is kept; fails with :class:`StageError`
    when fewer than ``cfg.min_registered`` of the frames register, when the matches show less
    parallax beyond a pure rotation than ``cfg.min_parallax_deg`` (:func:`rotation_parallax`: the
    camera only turns in place), or when the median triangulation angle is below
    ``cfg.min_triangulation_deg`` (no parallax: static camera or pure rotation).  With ``poses``
    (an MC/RealEstate10K file): its intrinsics and world-to-camera poses are used exactly and
    sparse points are triangulated with the poses fixed (no parallax checks).
    A failed run leaves no scratch behind (``WS/sfm/work``); its log stays in ``WS/logs/sfm.log``.
    """
    try:
        summary = _run_sfm(ws, cfg, poses, seed=seed, progress=progress)
    except BaseException:
        shutil.rmtree(ws.sfm_dir / "work", ignore_errors=True)
        raise
    report = {k: summary.get(k) for k in ("registered", "total_frames", "registered_fraction", "points",
                                          "focal_px", "median_triangulation_deg", "reprojection_error_px", "warnings")}
    report["rolling_shutter_readout_ms"] = (summary.get("rolling_shutter") or {}).get("readout_ms", 0.0)
    return StageResult("sfm", ws.sparse_dir, report)


def _run_sfm(ws: Workspace, cfg: SfmConfig, poses: os.PathLike | None = None, *, seed: int = 0,
             progress: bool = False) -> dict:
    _check_options(cfg)
    pycolmap = _pycolmap()
    pycolmap.set_random_seed(int(seed))
    names = ws.frame_names()
    if len(names) < 2:
        raise InputError(f"{ws.frames_dir}: need at least 2 frames for sfm, found {len(names)} (run the frames stage first)")
    cam_file: CameraFile | None = None
    if poses is not None:
        cam_file = read_cameras(poses)
        check_known_cameras(cam_file, str(poses))
        cam_file = poses_for_frames(cam_file, poses, ws, names)
    width, height = _frame_size(ws.frames_dir / f"{names[0]}.png")
    intrinsics = None
    if cfg.intrinsics and cam_file is None:
        src_w, src_h = _source_size(ws, width, height)
        intrinsics = parse_intrinsics(cfg.intrinsics, src_w, src_h)
    timestamps = _timestamps(ws)
    t_all = time.perf_counter()
    timings = {}
    work = ws.sfm_dir / "work"
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    db_path = work / "database.db"
    steps = ["features + matching", "mapping" if cam_file is None else "triangulation", "undistortion"]
    summary: dict = {"total_frames": len(names), "mode": "sfm" if cam_file is None else "known poses"}
    with native_output_to(ws.logs_dir / "sfm.log") as term:
        from tqdm import tqdm

        bar = tqdm(total=len(steps), desc="sfm", unit="step", file=term, disable=not progress)
        camera_model, params = _initial_camera(cfg, cam_file, width, height, intrinsics)
        t0 = time.perf_counter()
        fixed_intrinsics = bool(cfg.intrinsics) and not cfg.refine_intrinsics
        # Known poses register nothing: sequential pairs give their points (see SfmConfig).
        exhaustive = cam_file is None and _exhaustive(cfg, names, fixed_intrinsics)
        summary["matching"] = "exhaustive" if exhaustive else "sequential"
        _database(pycolmap, db_path, ws.frames_dir, [f"{n}.png" for n in names], cfg, camera_model, params,
                  exhaustive=exhaustive, known_poses=cam_file is not None)
        timings["features_matching_s"] = time.perf_counter() - t0
        bar.update(1)
        t0 = time.perf_counter()
        model_dir = work / "model"
        model_dir.mkdir()
        if cam_file is None:
            max_extra = max([1.0] + [2 * abs(v) for v in (intrinsics[1] if intrinsics else ())])

            def mapping(tag, exhaustive, remap_below=0):
                return _map(pycolmap, db_path, ws.frames_dir, work / tag, cfg, seed, len(names), width,
                            fixed_intrinsics=fixed_intrinsics, max_extra_param=max_extra,
                            rematch=lambda: _match(pycolmap, db_path, cfg, exhaustive, again=True),
                            refit_min_registered=remap_below)

            fallback = _fallback_allowed(cfg, names, fixed_intrinsics)
            try:
                # With a fallback ahead, a start that registers too few frames gets no re-fit here:
                # the exhaustive pass re-maps anyway.
                fallback_at = math.ceil(cfg.exhaustive_fallback_below * len(names)) if fallback else 0
                rec, calib = mapping("maps", exhaustive, fallback_at)
            except StageError:
                if not fallback:
                    raise
                rec, calib = None, None
            n_reg = rec.num_reg_images() if rec is not None else 0
            if fallback and n_reg < cfg.exhaustive_fallback_below * len(names):
                # An unordered set (or a clip that loops back): sequential pairs miss the overlaps.
                log.info("sequential matching registered %d of %d frames: matching every pair", n_reg, len(names))
                # All pairs again (again=True), so the sequential ones are guided too.
                _match(pycolmap, db_path, cfg, True, again=True)
                rec2, calib2 = mapping("maps_exhaustive", True)
                summary["matching"] = f"sequential ({n_reg} registered), then exhaustive"
                if rec is None or rec2.num_reg_images() > n_reg:
                    rec, calib = rec2, calib2
            summary["calibration"] = calib
            is_video = _is_video(ws)
            rec, summary["rolling_shutter"] = _readout_pass(
                pycolmap, rec, db_path, ws.frames_dir, work, cfg, seed, [f"{n}.png" for n in names], timestamps,
                max_extra, fixed_intrinsics, is_video=is_video)
            summary["motion_prior"] = smooth_motion(rec, timestamps, cfg.accel_sigma, cfg.ba_loss_px, is_video)
        else:
            rec = _triangulate_known(pycolmap, cam_file, names, width, height, db_path, ws.frames_dir, work)
        rec.write(str(model_dir))
        timings["mapping_s"] = time.perf_counter() - t0
        bar.update(1)
        t0 = time.perf_counter()
        und = work / "undistorted"
        # Scale 1 keeps the frame size and principal point (labels stay on the input pixel grid);
        # with strong distortion a few border pixels are blank.
        und_opts = pycolmap.UndistortCameraOptions()
        und_opts.min_scale = und_opts.max_scale = 1.0
        pycolmap.undistort_images(str(und), str(model_dir), str(ws.frames_dir), undistort_options=und_opts)
        rs = summary.get("rolling_shutter") or {}
        if rs.get("readout_ms", 0) > 0:
            _rectify_rolling_shutter(pycolmap, rec, und, ws.frames_dir, rs)
        timings["undistortion_s"] = time.perf_counter() - t0
        bar.update(1)
        bar.close()
    _check_registration(rec, names, cfg, cam_file is not None, summary)
    if cam_file is None and rec.num_points3D() < cfg.min_points:
        raise StageError(
            f"{ws.frames_dir}: the model has only {rec.num_points3D()} 3-D points for "
            f"{rec.num_reg_images()} frames (< {cfg.min_points}): a degenerate reconstruction "
            "(too little texture or parallax)")
    if cam_file is not None:
        _check_known_poses_fit(rec, poses)
    parallax = rotation_parallax(rec, db_path) if cam_file is None else None
    if parallax is not None:
        summary["parallax"] = parallax
        p = parallax["parallax_deg"]
        if p is not None and p < cfg.min_parallax_deg:
            raise StageError(
                f"{ws.frames_dir}: the camera only rotates: no parallax to give depth (the matches show "
                f"{p:.3f}° beyond a pure rotation, below sfm.min_parallax_deg {cfg.min_parallax_deg}°)")
    angles = triangulation_angles(rec)
    median_angle = float(np.median(angles)) if len(angles) else 0.0
    if cam_file is None and median_angle < cfg.min_triangulation_deg:
        raise StageError(
            f"{ws.frames_dir}: median triangulation angle {median_angle:.2f}° is below "
            f"{cfg.min_triangulation_deg}°: the camera barely translates (static or pure rotation), "
            "so depth is unobservable")
    und_rec = pycolmap.Reconstruction(str(und / "sparse"))
    if _as_pinhole(und_rec):
        und_rec.write(str(und / "sparse"))
    reg_names, frames = from_reconstruction(und_rec, timestamps)
    if cam_file is not None:
        # Keep the input poses bit-exact (the model round-trip goes through quaternions).
        by_name = dict(zip([f"{n}.png" for n in names], cam_file.frames, strict=False))
        for f, n in zip(frames, reg_names, strict=False):
            f.pose = by_name[n].pose
    # Move the results into place: images, sparse, cameras.txt, summary (each atomic).
    with atomic_path(ws.images_dir, is_dir=True) as tmp:
        shutil.copytree(und / "images", tmp)
    with atomic_path(ws.sparse_dir, is_dir=True) as tmp:
        shutil.copytree(und / "sparse", tmp)
    write_cameras(ws.cameras_txt, frames, url=cam_file.url if cam_file else "mannequin sfm")
    cam = und_rec.camera(und_rec.image(und_rec.reg_image_ids()[0]).camera_id)
    summary.update({
        "registered": rec.num_reg_images(),
        "registered_fraction": rec.num_reg_images() / len(names),
        "unregistered": sorted(set(names) - {Path(n).stem for n in reg_names}),
        "points": rec.num_points3D(),
        "reprojection_error_px": float(rec.compute_mean_reprojection_error()),
        "median_triangulation_deg": median_angle,
        "camera_model": camera_model,
        "camera_params_distorted": [float(v) for v in rec.camera(rec.image(rec.reg_image_ids()[0]).camera_id).params],
        "focal_px": float(cam.calibration_matrix()[0, 0]),
        "image_size": [int(cam.width), int(cam.height)],
        "timings": {**timings, "total_s": time.perf_counter() - t_all},
    })
    motion = rotation_reversal(rec, timestamps, cfg.max_rotation_rate_deg_s)
    summary["rotation"] = motion
    spread = summary.get("calibration", {}).get("focal_spread")
    warnings = []
    if cam_file is None and motion.get("reversal") and not (summary.get("rolling_shutter") or {}).get("readout_ms"):
        warnings.append(
            f"the camera turns at up to {motion['rate_before_deg_s']:.0f}°/s one way and "
            f"{motion['rate_after_deg_s']:.0f}°/s the other (reversal at frame {motion['reversal_frame']}): "
            "with a rolling-shutter camera the image distortion flips sign there, so frames on the two "
            "sides disagree and poses and depth are unreliable; the rolling-shutter correction was "
            + ("off" if cfg.readout_ms == 0 else "not applied") +
            " (pass --readout-ms with the camera's readout time, or split the clip at that frame)")
    readout_doubt = readout_warning(summary.get("rolling_shutter") or {}, cfg.readout_sure_gain)
    if readout_doubt:
        warnings.append(readout_doubt)
    if spread is not None and spread > cfg.max_focal_spread:
        starts = ", ".join(f"{t['focal_px']:.0f} px from " + (f"{t['fov_prior_deg']:g}°" if t.get("fov_prior_deg") is not None
                                                             else f"{t.get('prior_focal_px') or 0:.0f} px")
                           for t in summary["calibration"]["starts"])
        warnings.append(f"focal length poorly determined: refined focals spread {spread:.0%} across priors ({starts}); "
                        "pass --intrinsics if the calibration is known")
    summary["warnings"] = warnings
    for w in warnings:
        log.warning("%s: %s", ws.root.name, w)
    write_json(ws.sfm_dir / "summary.json", summary)
    shutil.rmtree(work / "undistorted", ignore_errors=True)
    return summary


def _as_pinhole(rec) -> bool:
    """Make every camera of ``rec`` without distortion terms PINHOLE (fx, fy, cx, cy), in place;
    returns whether any changed.  pycolmap's undistortion copies a camera whose distortion terms are
    all 0 as it is (SIMPLE_RADIAL with k = 0, OPENCV with zeros), but WS/sparse is PINHOLE."""
    changed = False
    for cam in rec.cameras.values():
        if cam.model.name == "PINHOLE" or any(cam.params[i] != 0 for i in cam.extra_params_idxs()):
            continue
        K = cam.calibration_matrix()
        cam.model = type(cam.model).PINHOLE
        cam.params = [K[0, 0], K[1, 1], K[0, 2], K[1, 2]]
        changed = True
    return changed


def readout_warning(rs: dict, sure_gain: float) -> str | None:
    """The warning for a rolling-shutter readout chosen by the auto search with a gain under
    ``sure_gain`` (:class:`SfmConfig` readout_sure_gain), or None.  ``rs``: the ``rolling_shutter``
    report of ``sfm/summary.json`` (``readout_ms``, ``gain``, ``median_reprojection_px``)."""
    gain = rs.get("gain")
    if not rs.get("readout_ms") or gain is None or gain >= sure_gain:
        return None
    scores = {float(k): v for k, v in (rs.get("median_reprojection_px") or {}).items()}
    cand = [v for k, v in scores.items() if k > 0]
    seen = (f" (candidates {min(cand):.3f}-{max(cand):.3f} px, none {scores[0.0]:.3f} px)"
            if cand and 0.0 in scores else "")
    return (f"rolling-shutter readout poorly determined: the {rs['readout_ms']:g} ms chosen lowers the "
            f"reprojection error by only {gain:.1%}{seen}, so the model absorbed most of the skew; on a "
            "camera that mostly turns it does so by bending depth (near too far, far too near); pass "
            "--readout-ms if the camera's readout time is known")


def _check_options(cfg: SfmConfig) -> None:
    """Refuse (InputError) sfm options out of range before any work: readout times, loss scale, a
    vocabulary tree that is not a file (else the check in :func:`_match` came after feature extraction)."""
    check_readout_ms(cfg.readout_ms)
    if cfg.vocab_tree and not Path(cfg.vocab_tree).is_file():
        raise InputError(f"sfm.vocab_tree {cfg.vocab_tree}: vocabulary tree file not found "
                         "(loop detection needs a local file)")
    bad = [v for v in cfg.readout_candidates_ms if not 0 < v <= 1000]
    if bad or not cfg.readout_candidates_ms:
        raise InputError(f"sfm.readout_candidates_ms {list(cfg.readout_candidates_ms)}: expected readout times "
                         "in ms, each in (0, 1000]")
    if not (math.isfinite(cfg.ba_loss_px) and 0 <= cfg.ba_loss_px <= 100):
        raise InputError(f"sfm.ba_loss_px {cfg.ba_loss_px}: expected a loss scale in pixels in [0, 100] (0 = squared loss)")


def _is_video(ws: Workspace) -> bool:
    """Whether the frames came from a video (frames.json has its frame rate), not an image folder."""
    import json

    try:
        return bool(json.loads(ws.frames_json.read_text()).get("fps"))
    except (OSError, ValueError, AttributeError):
        return False


# Smooth-motion adjustment (smooth_motion): Levenberg-Marquardt stops after this many steps or when
# a step lowers the cost by under this fraction (TUM frames 0-29: camera RMSE 1.57% after 3 steps,
# 1.26% after 10, 1.17% after 30, 96 steps to 1e-7).
MOTION_MAX_ITERATIONS = 30
MOTION_TOLERANCE = 1e-5

# Auto rolling-shutter search (SfmConfig.readout_ms = -1) only on clips whose consecutive frames turn
# less than this (degrees): the angular velocity is a finite difference between neighbours.
READOUT_MAX_STEP_DEG = 10.0


def _angular_velocities(rec, names, timestamps: dict) -> tuple[dict, float, float]:
    """Per image name (registered or not, of ``names``): the camera's angular velocity (3,) rad/s
    in its own axes, from the registered frames' rotations (:func:`rolling_shutter.angular_velocities`;
    interpolated in time for the unregistered).  Also the fastest rate (°/s) and the largest turn
    between consecutive registered frames (°)."""
    from scipy.spatial.transform import Rotation

    from mannequin.sfm.rolling_shutter import angular_velocities

    ids = sorted(rec.reg_image_ids(), key=lambda i: rec.image(i).name)
    reg = [rec.image(i).name for i in ids]
    every = sorted(set(names) | set(reg))
    times = {n: (timestamps[n] * 1e-6 if n in timestamps else every.index(n) / 30.0) for n in every}
    R_wc = np.array([rec.image(i).cam_from_world().rotation.matrix().T for i in ids])
    if len(ids) < 2:
        return {n: np.zeros(3) for n in every}, 0.0, 0.0
    t = np.array([times[n] for n in reg])
    om = angular_velocities(R_wc, t)
    steps = [np.degrees(Rotation.from_matrix(R_wc[k].T @ R_wc[k + 1]).magnitude()) for k in range(len(ids) - 1)]
    out = {n: np.array([np.interp(times[n], t, om[:, a]) for a in range(3)]) for n in every}
    out.update(zip(reg, om, strict=False))
    return out, float(np.degrees(np.linalg.norm(om, axis=1).max())), float(max(steps))


def _frame_time_pixels(cam, xy, omega, readout_s: float) -> np.ndarray:
    """Recorded pixels (M, 2) of camera ``cam`` (pycolmap, lens model included) → where a
    global-shutter camera at the frame time sees them (:func:`rolling_shutter.to_frame_time`)."""
    from mannequin.sfm.rolling_shutter import to_frame_time

    xy = np.ascontiguousarray(xy, dtype=np.float64)
    b = np.asarray(cam.cam_from_img(xy), dtype=np.float64)
    if b.shape[1] == 2:
        b = np.column_stack([b, np.ones(len(b))])
    b = to_frame_time(b, xy[:, 1], omega, readout_s, cam.height)
    return np.asarray(cam.img_from_cam(np.ascontiguousarray(b)), dtype=np.float64)


def _correct_keypoints(pycolmap, db_path: Path, cam, omegas: dict, readout_s: float) -> None:
    """Move every keypoint in the database to where a global-shutter camera at the frame time would
    have seen it (:func:`_frame_time_pixels` through the lens model ``cam``)."""
    db = pycolmap.Database.open(str(db_path))
    try:
        for img in db.read_all_images():
            om = omegas.get(img.name)
            kp = db.read_keypoints(img.image_id)
            if om is None or len(kp) == 0:
                continue
            kp2 = kp.copy()
            kp2[:, :2] = _frame_time_pixels(cam, kp[:, :2], om, readout_s)
            db.update_keypoints(img.image_id, kp2.astype(kp.dtype))
    finally:
        db.close()


def _update_db_camera(pycolmap, db_path: Path, update) -> None:
    """Set the shared camera's parameters in the database to ``update(camera)``."""
    db = pycolmap.Database.open(str(db_path))
    try:
        cam = db.read_all_cameras()[0]
        cam.params = np.asarray(update(cam), dtype=np.float64)
        db.update_camera(cam)
    finally:
        db.close()


def _set_camera_params(pycolmap, db_path: Path, params) -> None:
    """Set the shared camera's parameters in the database (mapping then holds them fixed)."""
    _update_db_camera(pycolmap, db_path, lambda _: params)


def _readout_pass(pycolmap, rec, db_path: Path, image_dir: Path, work: Path, cfg: SfmConfig, seed: int,
                  names: list, timestamps: dict, max_extra_param: float, fixed_intrinsics: bool,
                  is_video: bool):
    """Rolling-shutter correction (``cfg.readout_ms``, see :class:`SfmConfig`).  Returns (model, report).

    The angular velocities come from the uncorrected model ``rec``.  Auto mode (``readout_ms`` < 0)
    runs on videos that turn faster than ``cfg.max_rotation_rate_deg_s``: each readout time of
    ``cfg.readout_candidates_ms`` is scored on ``rec``'s own observations (:func:`_readout_score`,
    with the focal free when it is self-calibrated),
    and the best one is used when it lowers the median reprojection error by ``cfg.readout_min_gain``;
    a given readout time is always used.  Then a copy of the database gets its keypoints corrected
    (:func:`_correct_keypoints`) and is mapped again with the camera held at ``rec``'s intrinsics;
    the result replaces ``rec`` (and the database) when it registers as many frames, and a
    self-calibrated focal is refined again on it.  ``report["readout_ms"]`` is the readout applied
    (0 = none) and ``report["omega_rad_s"]`` each frame's angular velocity, for the undistortion
    and for ``mannequin eval``.
    """
    if cfg.readout_ms == 0:
        return rec, {"readout_ms": 0.0, "mode": "off"}
    auto = cfg.readout_ms < 0
    n_frames = len(names)
    omegas, rate, step = _angular_velocities(rec, names, timestamps)
    report = {"readout_ms": 0.0, "mode": "auto" if auto else "given", "max_rate_deg_s": rate,
              "max_step_deg": step}
    if auto:
        skip = ("not a video" if not is_video else
                f"turns at most {rate:.0f}°/s (<= {cfg.max_rotation_rate_deg_s:g})" if rate <= cfg.max_rotation_rate_deg_s else
                f"turns {step:.1f}° between frames (> {READOUT_MAX_STEP_DEG:g})" if step > READOUT_MAX_STEP_DEG else None)
        if skip:
            return rec, {**report, "skipped": skip}
    cam = rec.camera(rec.image(rec.reg_image_ids()[0]).camera_id)
    if auto:
        # Score each readout time on the uncorrected model's own tracks: correct its observations,
        # bundle-adjust (intrinsics fixed), take the median reprojection error.  The same
        # observations for every candidate make the scores comparable (re-mapping would not).
        # A self-calibrated focal absorbs part of the rolling-shutter skew: free it in the scoring
        # (TUM frames 30-59: 30 ms chosen, camera RMSE 3.75% -> 2.37%; held fixed, none was chosen).
        free = not fixed_intrinsics
        # Each score adjusts its own copy on one thread, so the scores are the same however many
        # run at once (pycolmap's adjustment releases the GIL: TUM, 9 scores in 3 s instead of 5.4).
        candidates = [0.0] + [float(ms) for ms in cfg.readout_candidates_ms]
        with ThreadPoolExecutor(max_workers=worker_threads()) as pool:
            scores = dict(zip(candidates, pool.map(
                lambda ms: _readout_score(pycolmap, rec, omegas, ms * 1e-3, free), candidates), strict=False))
        report["median_reprojection_px"] = {f"{k:g}": v for k, v in scores.items()}
        ms = min(scores, key=lambda k: (scores[k], k))
        if ms == 0.0 or scores[ms] > (1.0 - cfg.readout_min_gain) * scores[0.0]:
            return rec, report
        report["gain"] = 1.0 - scores[ms] / scores[0.0]
    else:
        ms = float(cfg.readout_ms)
    db_rs = work / "readout.db"
    shutil.copyfile(db_path, db_rs)
    _set_camera_params(pycolmap, db_rs, cam.params)
    _correct_keypoints(pycolmap, db_rs, cam, omegas, ms * 1e-3)
    r = _incremental(pycolmap, db_rs, image_dir, work / "readout", cfg, seed, n_frames, max_extra_param)
    n_reg = r.num_reg_images() if r is not None else 0
    if n_reg < rec.num_reg_images():
        report["not_applied"] = (f"with a {ms:g} ms readout only {n_reg} frames registered, against "
                                 f"{rec.num_reg_images()} without: kept the uncorrected model")
        return rec, report
    shutil.copyfile(db_rs, db_path)
    r, refine = _final_adjustment(pycolmap, r, cfg, n_frames, fixed_intrinsics)
    if refine is not None:
        report["refine"] = refine
    report["readout_ms"] = ms
    report["omega_rad_s"] = {n: [float(v) for v in om] for n, om in sorted(omegas.items())}
    return r, report


def smooth_motion(rec, timestamps: dict, accel_sigma: float, loss_px: float, is_video: bool) -> dict:
    """Adjust ``rec``'s poses and points in place under a smooth-motion prior on the camera centres
    (:func:`mannequin.sfm.motion_prior.smooth_bundle_adjust`; intrinsics fixed).  Returns a report.

    ``accel_sigma`` is in median scene depths per s² (the model has no metric scale): the median
    depth of the observations sets the unit.  Skipped (and said so) when it is 0, on an image folder
    (no frame times), or with fewer than 5 registered frames."""
    from mannequin.sfm.motion_prior import smooth_bundle_adjust

    if accel_sigma <= 0:
        return {"applied": False, "skipped": "sfm.accel_sigma is 0"}
    if not is_video:
        return {"applied": False, "skipped": "not a video (no frame times)"}
    images = sorted((rec.image(i) for i in rec.reg_image_ids()), key=lambda im: timestamps.get(im.name, 0))
    times = np.array([timestamps.get(im.name, 0) for im in images], dtype=np.float64) * 1e-6
    if len(images) < 5 or not np.all(np.diff(times) > 0):
        return {"applied": False, "skipped": "fewer than 5 registered frames with increasing times"}
    t0 = time.perf_counter()
    pids = sorted(rec.points3D)
    index = {p: k for k, p in enumerate(pids)}
    X = np.array([rec.points3D[p].xyz for p in pids], dtype=np.float64).reshape(-1, 3)
    of, op, xy = [], [], []
    for fi, im in enumerate(images):
        cam = rec.camera(im.camera_id)
        pts = [q for q in im.points2D if q.has_point3D()]
        if not pts:
            continue
        xy.append(np.asarray(cam.cam_from_img(np.ascontiguousarray([q.xy for q in pts], dtype=np.float64))))
        of += [fi] * len(pts)
        op += [index[q.point3D_id] for q in pts]
    R = np.array([im.cam_from_world().rotation.matrix() for im in images])
    C = np.array([im.projection_center() for im in images])
    of, op = np.asarray(of), np.asarray(op)
    obs_xy = np.concatenate(xy)
    z = np.einsum("kj,kj->k", R[of][:, 2], X[op] - C[of])
    zmed = float(np.median(z))
    K = rec.camera(images[0].camera_id).calibration_matrix()
    R2, C2, X2, report = smooth_bundle_adjust(
        R, C, X, of, op, obs_xy, times, focal_px=0.5 * float(K[0, 0] + K[1, 1]),
        accel_sigma=accel_sigma * zmed, loss_px=loss_px, max_iterations=MOTION_MAX_ITERATIONS,
        tolerance=MOTION_TOLERANCE)
    pycolmap = _pycolmap()
    for im, Ri, Ci in zip(images, R2, C2, strict=False):
        rec.frame(im.frame_id).rig_from_world = pycolmap.Rigid3d(pycolmap.Rotation3d(Ri), -Ri @ Ci)
    for p, x in zip(pids, X2, strict=False):
        rec.points3D[p].xyz = x
    # The report's accelerations in median depths per s², like accel_sigma.
    for k in ("accel_before", "accel_after"):
        report[k] /= zmed
    return {"applied": True, "accel_sigma": accel_sigma, **report, "seconds": time.perf_counter() - t0}


def _readout_score(pycolmap, rec, omegas: dict, readout_s: float, refine_focal: bool = False) -> float:
    """Median reprojection error (px) of ``rec``'s observations after correcting them for a readout
    time ``readout_s`` (:func:`rolling_shutter.to_frame_time`) and a bundle adjustment of poses and
    points (on a copy), with the intrinsics fixed or, ``refine_focal``, the focal length free."""
    r = pycolmap.Reconstruction(rec)
    for iid in r.reg_image_ids() if readout_s else ():
        img = r.image(iid)
        n = len(img.points2D)
        if n == 0:
            continue
        new = _frame_time_pixels(r.camera(img.camera_id), [p.xy for p in img.points2D], omegas[img.name], readout_s)
        for k in range(n):
            img.points2D[k].xy = new[k]
    opts = pycolmap.BundleAdjustmentOptions()
    opts.refine_principal_point = opts.refine_extra_params = False
    opts.refine_focal_length = bool(refine_focal)
    opts.print_summary = False
    pycolmap.bundle_adjustment(r, opts)
    errs = []
    for iid in r.reg_image_ids():
        img = r.image(iid)
        cam = r.camera(img.camera_id)
        T = img.cam_from_world()
        obs = [p for p in img.points2D if p.has_point3D()]
        if not obs:
            continue
        X = np.array([T * r.points3D[p.point3D_id].xyz for p in obs])
        xy = np.array([p.xy for p in obs])
        proj = np.asarray(cam.img_from_cam(np.ascontiguousarray(X), False), dtype=np.float64)
        errs.append(np.linalg.norm(proj - xy, axis=1))
    return float(np.median(np.concatenate(errs))) if errs else float("inf")


def _rectify_rolling_shutter(pycolmap, rec, und: Path, frames_dir: Path, rs: dict) -> None:
    """Overwrite ``und/images`` (pycolmap's undistortion) with the recorded frames resampled through
    the lens model *and* the rolling-shutter rotation (:func:`rolling_shutter.rectify_image`), on the
    undistorted camera of ``und/sparse``, so that they agree with the corrected keypoints."""
    import imageio.v3 as iio

    from mannequin.sfm.rolling_shutter import rectify_image

    und_rec = pycolmap.Reconstruction(str(und / "sparse"))
    readout_s = float(rs["readout_ms"]) * 1e-3

    def one(iid):
        img = und_rec.image(iid)
        ucam = und_rec.camera(img.camera_id)
        dcam = rec.camera(rec.image(iid).camera_id)
        frame = iio.imread(frames_dir / img.name)
        out = rectify_image(frame, lambda X, c=dcam: c.img_from_cam(X), ucam.calibration_matrix(),
                            (ucam.width, ucam.height), rs["omega_rad_s"][img.name], readout_s)
        iio.imwrite(und / "images" / img.name, out)

    # frames are independent (the resampling releases the GIL): one per thread
    with ThreadPoolExecutor(max_workers=worker_threads()) as pool:
        list(pool.map(one, sorted(und_rec.reg_image_ids())))


def rotation_reversal(rec, timestamps: dict, max_rate_deg_s: float = 30.0) -> dict:
    """Angular velocity of the camera along the clip and whether fast rotation reverses.

    The rotation rate between consecutive registered frames (degrees per second, from
    ``timestamps`` in µs, else 30 fps) is projected on its dominant axis.  ``reversal`` is true when
    it exceeds ``max_rate_deg_s`` one way somewhere and the other way elsewhere: a rolling-shutter
    image is sheared or stretched in proportion to the rate, so frames turning one way do not fit one
    global-shutter model with frames turning the other way (the mismatch grows with the difference
    of their rates).  Returns {"max_rate_deg_s", "reversal"} and, with a reversal, "reversal_frame"
    (the first frame after the sign change between the two fastest opposite turns),
    "rate_before_deg_s" and "rate_after_deg_s" (the fastest rates on either side).
    """
    from scipy.spatial.transform import Rotation

    ids = sorted(rec.reg_image_ids(), key=lambda i: rec.image(i).name)
    if len(ids) < 3:
        return {"max_rate_deg_s": 0.0, "reversal": False}
    names = [rec.image(i).name for i in ids]
    Rs = [rec.image(i).cam_from_world().rotation.matrix() for i in ids]
    rates = []
    step = min(3, len(ids) - 1)  # over ~0.1 s: a per-frame rate would amplify pose noise
    for k in range(len(ids) - step):
        t0, t1 = timestamps.get(names[k]), timestamps.get(names[k + step])
        dt = (t1 - t0) * 1e-6 if t0 is not None and t1 is not None and t1 > t0 else step / 30
        rates.append(np.degrees(Rotation.from_matrix(Rs[k + step] @ Rs[k].T).as_rotvec()) / dt)
    rates = np.array(rates)
    s = rates @ np.linalg.svd(rates, full_matrices=False)[2][0]
    out = {"max_rate_deg_s": float(np.linalg.norm(rates, axis=1).max()), "reversal": False}
    hi, lo = int(np.argmax(s)), int(np.argmin(s))
    if s[hi] > max_rate_deg_s and -s[lo] > max_rate_deg_s:
        a, b = sorted((hi, lo))
        cross = next((k for k in range(a + 1, b + 1) if np.sign(s[k]) != np.sign(s[a])), b)
        first_after = names[min(cross + (step + 1) // 2, len(names) - 1)]
        out.update({"reversal": True, "reversal_frame": Path(first_after).stem,
                    "rate_before_deg_s": float(abs(s[a])), "rate_after_deg_s": float(abs(s[b]))})
    return out


def check_known_cameras(cam_file: CameraFile, label) -> None:
    """Refuse (InputError naming ``label``, the file) a camera file that known-pose import cannot
    use as given: intrinsics that differ between frames (one shared camera per clip), or
    non-zero distortion terms (the format's are always 0; the frames must be undistorted)."""
    f0 = cam_file.frames[0]
    for i, f in enumerate(cam_file.frames):
        if not np.allclose([f.fx, f.fy, f.cx, f.cy], [f0.fx, f0.fy, f0.cx, f0.cy], rtol=1e-9, atol=1e-12):
            raise InputError(f"{label}, frame line {i + 1}: intrinsics differ from the first frame's; "
                             "one shared camera per clip is supported")
        if f.k1 != 0 or f.k2 != 0:
            raise InputError(f"{label}, frame line {i + 1}: distortion terms {f.k1:g} {f.k2:g} are not "
                             "supported (the format's are always 0); undistort the frames first")


def _check_known_poses_fit(rec, poses) -> None:
    """Known poses that do not fit the frames (wrong intrinsics, lines out of order, camera-to-world
    instead of world-to-camera) triangulate points that some frame sees behind it: a clear error
    naming the camera file, instead of a failure deep in stereo."""
    from mannequin.stereo import depth_range, sparse_geometry

    geo = sparse_geometry(rec)
    for i in range(len(geo.names)):
        try:
            depth_range(geo, i)
        except StageError as exc:
            raise StageError(f"{poses}: {exc}; the camera file does not fit the frames (check its intrinsics, "
                             "the order of its lines, and that [R|t] is world-to-camera)") from None


def poses_for_frames(cam_file: CameraFile, poses, ws: Workspace, names: Sequence[str]) -> CameraFile:
    """The camera lines of the frames the frames stage kept, in the order of ``names``.

    A camera file has one line per input frame (:func:`mannequin.frames.stage.input_line_of`), dropped
    frames included (blurred, or past ``max_frames``); the lines of dropped frames are left out.
    Raises :class:`InputError` naming ``poses`` when the counts do not match.
    """
    if not ws.frames_csv.exists():
        if len(cam_file) != len(names):
            raise InputError(f"{poses}: {len(cam_file)} camera lines for {len(names)} frames in {ws.frames_dir}")
        return cam_file
    try:
        line_of = input_line_of(ws.frames_csv, ws.frames_json, len(cam_file), str(poses))
    except InputError as exc:
        raise InputError(str(exc).replace(" lines for ", " camera lines for ", 1)) from None
    missing = [n for n in names if n not in line_of]
    if missing:
        raise InputError(f"{ws.frames_csv}: frame {missing[0]} is not listed; run the frames stage again")
    return CameraFile(url=cam_file.url, frames=[cam_file.frames[line_of[n]] for n in names])


def _initial_camera(cfg: SfmConfig, cam_file, width: int, height: int, intrinsics=None) -> tuple[str, str]:
    """Camera model and initial parameters (comma string) for the database."""
    if cam_file is not None:
        check_known_cameras(cam_file, "camera file")
        intr = cam_file.frames[0].intrinsics(width, height)
        return "PINHOLE", ",".join(repr(v) for v in (intr.fx, intr.fy, intr.cx, intr.cy))
    if intrinsics is not None:
        intr, dist = intrinsics
        k = intr.scaled(width, height)
        base = [k.fx, k.fy, k.cx, k.cy]
        if not dist:
            return "PINHOLE", ",".join(repr(v) for v in base)
        if len(dist) == 4:
            return "OPENCV", ",".join(repr(v) for v in base + list(dist))
        return "FULL_OPENCV", ",".join(repr(v) for v in base + list(dist) + [0.0, 0.0, 0.0])
    if not 10 <= cfg.fov_deg <= 170:
        raise InputError(f"sfm.fov_deg {cfg.fov_deg}: expected a horizontal field of view between 10 and 170 degrees")
    f = 0.5 * width / math.tan(math.radians(cfg.fov_deg) / 2)
    if cfg.camera_model == "SIMPLE_RADIAL":
        return "SIMPLE_RADIAL", f"{f},{width / 2},{height / 2},0"
    if cfg.camera_model == "RADIAL":
        return "RADIAL", f"{f},{width / 2},{height / 2},0,0"
    if cfg.camera_model == "OPENCV":
        return "OPENCV", f"{f},{f},{width / 2},{height / 2},0,0,0,0"
    if cfg.camera_model in ("PINHOLE", "SIMPLE_PINHOLE"):
        return cfg.camera_model, (f"{f},{f}," if cfg.camera_model == "PINHOLE" else f"{f},") + f"{width / 2},{height / 2}"
    raise InputError(f"sfm.camera_model {cfg.camera_model!r}: use SIMPLE_RADIAL, RADIAL, OPENCV, PINHOLE or SIMPLE_PINHOLE")


def _set_focal(pycolmap, db_path: Path, focal: float) -> None:
    """Set the shared camera's initial focal length in the database (other parameters kept)."""
    def update(cam):
        params = np.array(cam.params, dtype=np.float64)
        params[list(cam.focal_length_idxs())] = focal
        return params

    _update_db_camera(pycolmap, db_path, update)


# Re-fit of a far-off focal prior (see _map): at most this many re-mappings, stopping once the
# refined focal moves less than this fraction from the focal it was mapped with.
REFIT_ROUNDS = 3
REFIT_CONVERGED = 0.01


def _init_angle(cfg: SfmConfig, attempt: int) -> float:
    """Initial-pair triangulation angle of mapping attempt ``attempt``: the configured angle, then
    halved per restart down to 1° (short rotation-heavy clips rarely have a 4° pair, and a forced
    wide pair with little overlap starts a thin, wrong model)."""
    return max(min(1.0, cfg.init_min_tri_angle), cfg.init_min_tri_angle / 2 ** attempt)


def _model_key(rec) -> tuple:
    """Ranking of mapping results: most registered frames, then most 3-D points."""
    return (rec.num_reg_images(), rec.num_points3D())


# The thin-model test counts at most this many frames: the 3-D points come from the scene, and a
# long clip of one frozen scene sees the same points again rather than new ones.
THIN_TEST_MAX_FRAMES = 50


def _good_enough(rec, cfg: SfmConfig, n_frames: int) -> bool:
    """All frames registered and a model that is not thin: at least ``cfg.min_points_per_frame``
    3-D points per registered frame, counting at most :data:`THIN_TEST_MAX_FRAMES` frames.

    Without the cap, every long clip looked thin: 120 synthetic frames of one scene gave 2306
    points (19 per frame) on each of three mapping attempts, 82 s of mapping instead of 27 s."""
    n_reg = rec.num_reg_images()
    return (n_reg >= n_frames
            and rec.num_points3D() >= cfg.min_points_per_frame * min(n_reg, THIN_TEST_MAX_FRAMES))


def _incremental(pycolmap, db_path, image_dir, out_dir, cfg: SfmConfig, seed: int, n_frames: int,
                 max_extra_param: float):
    """Incremental mapping with the intrinsics held at their database values; restarts with other
    seeds and a smaller initial-pair angle (:func:`_init_angle`) while frames stay unregistered or the
    model is thin (:func:`_good_enough`).  Returns the model with the most registered images, then
    the most 3-D points."""
    models = {}
    for attempt in range(max(1, cfg.restarts)):
        pycolmap.set_random_seed(int(seed) + attempt)
        opts = pycolmap.IncrementalPipelineOptions()
        opts.random_seed = int(seed) + attempt
        opts.num_threads = _colmap_threads(cfg)
        opts.max_extra_param = max_extra_param
        opts.ba_refine_principal_point = False
        opts.ba_refine_focal_length = False
        opts.ba_refine_extra_params = False
        opts.mapper.abs_pose_refine_focal_length = False
        opts.mapper.abs_pose_refine_extra_params = False
        opts.mapper.init_min_tri_angle = _init_angle(cfg, attempt)
        run_dir = out_dir / f"attempt{attempt}"
        run_dir.mkdir(parents=True)
        found = pycolmap.incremental_mapping(str(db_path), str(image_dir), str(run_dir), options=opts)
        models.update({(attempt, k): m for k, m in found.items()})
        if models and _good_enough(max(models.values(), key=_model_key), cfg, n_frames):
            break
    if not models:
        return None
    return max(models.values(), key=_model_key)


# The robust bundle adjustments stop at this relative cost decrease, or after this many iterations.
BA_FUNCTION_TOLERANCE = 1e-9
BA_MAX_ITERATIONS = 300


def _bundle_adjust(pycolmap, rec, cfg: SfmConfig, *, refine_focal: bool, refine_extra: bool) -> None:
    """Bundle-adjust ``rec`` in place: poses and points, the focal and the distortion terms when asked
    (never the principal point), with a Cauchy loss of scale ``cfg.ba_loss_px`` (0 = squared).

    It stops when an iteration lowers the cost by under ``BA_FUNCTION_TOLERANCE`` (relative;
    pycolmap sets Ceres' tolerance to 0, so 100 iterations always ran) or after ``BA_MAX_ITERATIONS``.
    With the Cauchy loss, convergence crawls: a synthetic 30-frame clip reaches its focal (within
    0.008%) in 1.7 s instead of 4-8 s; on TUM fr1/rpy, where the robust adjustment moves the
    cameras by 11% of the path from the mapper's solution, it stops within 0.07% of the converged
    one (Ceres' usual 1e-6 stopped 0.8% short, enough to change the downstream model)."""
    opts = pycolmap.BundleAdjustmentOptions()
    opts.refine_focal_length = bool(refine_focal)
    opts.refine_extra_params = bool(refine_extra)
    opts.refine_principal_point = False
    opts.print_summary = False
    opts.ceres.solver_options.function_tolerance = BA_FUNCTION_TOLERANCE
    opts.ceres.solver_options.max_num_iterations = BA_MAX_ITERATIONS
    if cfg.ba_loss_px > 0:
        opts.ceres.loss_function_type = pycolmap.LossFunctionType.CAUCHY
        opts.ceres.loss_function_scale = float(cfg.ba_loss_px)
    pycolmap.bundle_adjustment(rec, opts)


def _final_adjustment(pycolmap, rec, cfg: SfmConfig, n_frames: int, fixed_intrinsics: bool):
    """The adjustment after a mapping run: staged self-calibration (:func:`_refine_intrinsics`),
    or with the intrinsics given, poses and points alone under the robust loss (none when
    ``cfg.ba_loss_px`` is 0: the mapper's own adjustment stands).  Returns (model, report), the
    report None with given intrinsics."""
    if not fixed_intrinsics:
        return _refine_intrinsics(pycolmap, rec, cfg, n_frames)
    if cfg.ba_loss_px > 0:
        _bundle_adjust(pycolmap, rec, cfg, refine_focal=False, refine_extra=False)
    return rec, None


def _refine_intrinsics(pycolmap, rec, cfg: SfmConfig, n_frames: int):
    """Staged self-calibration: the focal length first, then the distortion terms once enough frames
    registered, kept only when the evidence supports them.  Returns (model, report).

    The distortion stage runs on a copy; it is kept when it lowers the mean reprojection error by at
    least ``cfg.min_distortion_gain`` (relative).  Otherwise the terms stay at their initial values
    (0 with the FOV prior): on an undistorted clip a free k1 fits noise and drags the focal with it
    (synthetic seed 2: focal error 2.4% with k1 free, 1.2% without, for 0.05% lower error).
    """
    _bundle_adjust(pycolmap, rec, cfg, refine_focal=True, refine_extra=False)
    e0 = float(rec.compute_mean_reprojection_error())
    report = {"reprojection_focal_only_px": e0, "distortion_kept": False}
    if rec.num_reg_images() >= cfg.min_registered * n_frames:
        trial = pycolmap.Reconstruction(rec)
        _bundle_adjust(pycolmap, trial, cfg, refine_focal=True, refine_extra=True)
        e1 = float(trial.compute_mean_reprojection_error())
        report["reprojection_with_distortion_px"] = e1
        if e1 <= (1.0 - cfg.min_distortion_gain) * e0:
            rec, report["distortion_kept"] = trial, True
    return rec, report


def _map(pycolmap, db_path, image_dir, out_dir, cfg: SfmConfig, seed: int, n_frames: int,
         width: int, fixed_intrinsics: bool = False, max_extra_param: float = 1.0, rematch=None,
         refit_min_registered: int = 0):
    """Mapping with staged self-calibration.  Returns (model, calibration report).

    Registration runs with the intrinsics held at their initial values, which is far more robust
    on short, rotation-heavy clips than refining them from the first pair.  Without given
    intrinsics, it starts from each field of view in ``cfg.fov_candidates`` (the focal prior),
    refines the focal length alone, then the distortion terms.  The further priors run only when
    the first start has little parallax (median triangulation angle below
    ``cfg.fov_check_below_deg``), where the focal is weakly observable; the first start is kept
    unless another registers more frames, and the spread of the refined focal over the starts is
    the reported uncertainty (``focal_spread``, a fraction of the focal).  When the first start's
    refined focal is more than ``cfg.refit_prior_above`` away from its prior, one more start maps
    from that refined focal (registration with a focal far off loses the wide-baseline frames),
    after ``rematch()`` (when given) has verified the matches again under that focal; not when the
    first start registered fewer than ``refit_min_registered`` frames (the caller re-maps those), nor
    when the field-of-view starts disagree by more than ``cfg.max_focal_spread`` (the focal is not
    determined by the data: re-fitting would chase noise, e.g. 562 → 1070 → 1535 → 1147 px on the
    demo's 9 collinear views).
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    if cfg.mapper not in ("incremental", "global"):
        raise InputError(f"sfm.mapper {cfg.mapper!r}: use 'incremental' or 'global'")
    if cfg.mapper == "global":
        pycolmap.set_random_seed(int(seed))
        opts = pycolmap.GlobalPipelineOptions()
        # As for the incremental mapper: one thread when cfg.deterministic, the run's seed, and
        # given intrinsics held fixed unless cfg.refine_intrinsics.
        opts.num_threads = opts.mapper.num_threads = _colmap_threads(cfg)
        opts.random_seed = opts.mapper.random_seed = int(seed)
        if fixed_intrinsics:
            opts.mapper.bundle_adjustment.refine_focal_length = False
            opts.mapper.bundle_adjustment.refine_extra_params = False
        models = pycolmap.global_mapping(str(db_path), str(image_dir), str(out_dir), options=opts)
        rec = max(models.values(), key=lambda r: (r.num_reg_images(), r.num_points3D())) if models else None
        if rec is None:
            raise StageError(f"{image_dir}: structure from motion found no model ({n_frames} frames)")
        return rec, {"starts": []}
    fovs = [None] if fixed_intrinsics else [cfg.fov_deg] + [f for f in cfg.fov_candidates if f != cfg.fov_deg]
    tries = []

    def start(k, fov, focal):
        if focal is not None:
            _set_focal(pycolmap, db_path, focal)
        rec = _incremental(pycolmap, db_path, image_dir, out_dir / f"start{k}", cfg, seed, n_frames, max_extra_param)
        if rec is None:
            return None
        rec, refine = _final_adjustment(pycolmap, rec, cfg, n_frames, fixed_intrinsics)
        cam = rec.camera(rec.image(rec.reg_image_ids()[0]).camera_id)
        t = {"fov_prior_deg": fov, "prior_focal_px": focal, "registered": rec.num_reg_images(),
             "points": rec.num_points3D(), "focal_px": float(cam.mean_focal_length()), **(refine or {}), "rec": rec}
        tries.append(t)
        return t

    for k, fov in enumerate(fovs):
        if fov is not None:
            if not 10 <= fov <= 170:
                raise InputError(f"sfm field of view {fov}: expected degrees between 10 and 170")
            if k > 0 and tries and _median_angle(tries[0]["rec"]) >= cfg.fov_check_below_deg:
                break  # enough parallax: the focal is determined by the first start
        start(k, fov, None if fov is None else 0.5 * width / math.tan(math.radians(fov) / 2))
    first = tries[0] if tries else None
    fov_focals = [t["focal_px"] for t in tries]
    determined = len(fov_focals) < 2 or (max(fov_focals) - min(fov_focals)) / first["focal_px"] <= cfg.max_focal_spread
    if (first is not None and first["fov_prior_deg"] is not None and cfg.refit_prior_above > 0
            and first["registered"] >= refit_min_registered and determined
            and abs(first["focal_px"] / first["prior_focal_px"] - 1.0) > cfg.refit_prior_above):
        # The data disagree with the prior (a long lens read as 60°): registration ran with a focal
        # far off, which loses the wide-baseline frames, and the two-view geometries were verified
        # under it.  Verify the matches again and map from the refined focal; repeat (at most
        # REFIT_ROUNDS) until the refined focal stays within REFIT_CONVERGED of its prior.
        chain = [first]
        for r in range(REFIT_ROUNDS):
            prev = chain[-1]
            if rematch is not None:
                _set_focal(pycolmap, db_path, prev["focal_px"])
                rematch()
            t = start(len(fovs) + r, None, prev["focal_px"])
            if t is None:
                break
            t["refit_of_prior_deg"] = first["fov_prior_deg"]
            if t["registered"] < prev["registered"]:
                t["superseded"] = True  # worse than the model it came from: keep that one
                break
            chain.append(t)
            if abs(t["focal_px"] / t["prior_focal_px"] - 1.0) <= REFIT_CONVERGED:
                break
        for t in chain[:-1]:
            t["superseded"] = True
        first = chain[-1]
    if not tries:
        raise StageError(f"{image_dir}: structure from motion found no model ({n_frames} frames): "
                         "too little texture or overlap, or a camera that does not translate")
    # A start superseded by its re-fit does not compete.  Among the rest, the first (the configured
    # prior, or the re-fit that replaced it) wins unless another registers more frames.
    live = [first] + [t for t in tries if not t.get("superseded") and t is not first]
    best = max(live, key=lambda t: t["registered"])
    peers = [t["focal_px"] for t in live if t["registered"] >= best["registered"]]
    calib = {"starts": [{k: v for k, v in t.items() if k != "rec"} for t in tries],
             "chosen_fov_prior_deg": best["fov_prior_deg"] if "refit_of_prior_deg" not in best else None,
             "chosen_refit": "refit_of_prior_deg" in best,
             "focal_spread": float((max(peers) - min(peers)) / best["focal_px"]) if len(peers) > 1 else None}
    return best["rec"], calib


def _median_angle(rec) -> float:
    angles = triangulation_angles(rec)
    return float(np.median(angles)) if len(angles) else 0.0


def _triangulate_known(pycolmap, cam_file, names, width, height, db_path, image_dir, work):
    rec = to_reconstruction(cam_file.frames, [f"{n}.png" for n in names], width, height)
    # The database holds the one shared camera with id 1 and images 1..N in sorted-name order.
    out = work / "triangulated"
    out.mkdir()
    return pycolmap.triangulate_points(rec, str(db_path), str(image_dir), str(out), refine_intrinsics=False)


def _check_registration(rec, names, cfg: SfmConfig, known: bool, summary: dict) -> None:
    frac = rec.num_reg_images() / len(names)
    if not known and frac < cfg.min_registered:
        raise StageError(f"only {rec.num_reg_images()} of {len(names)} frames registered "
                         f"({frac:.0%} < {cfg.min_registered:.0%} required)")
