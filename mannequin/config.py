"""Typed, frozen options for every stage, named presets, JSON round-trip and a stable hash.

A :class:`Config` holds one frozen dataclass per stage.  ``Config.stage_hash(stage)`` hashes the
options of that stage *and every stage before it*, so changing a stereo option invalidates stereo,
fuse and labels but not frames or sfm.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from mannequin.errors import InputError

STAGES = ("frames", "sfm", "stereo", "fuse", "labels")


@dataclass(frozen=True)
class FramesConfig:
    """Frame extraction and selection.

    max_size: longest side in px after resizing (aspect kept); 0 keeps the input size.
    stride: keep every n-th source frame.  fps: target rate (overrides stride when set, video only).
    max_frames: cap on kept frames (0 = no cap), taken evenly over the clip.
    blur_window / blur_ratio: drop a frame whose Laplacian variance is below ``blur_ratio`` × the
    median of its ``blur_window`` neighbours.  min_motion: drop frames whose mean absolute grey
    difference to the previous kept frame is below this (0-255 scale; 0 disables).
    image_fps: frame rate assumed for image folders (timestamps = index × 1e6 / image_fps).
    pose_timestamps: with ``--poses`` and a video, take the video frames at the camera file's
    timestamps (the nearest frame, within half a frame period) instead of sampling: a
    Mannequin-Challenge or RealEstate10K file lists a subset of a longer video's frames.  Stride,
    fps, max_frames, blur and motion rejection do not apply then; off, the camera file must have one
    line per sampled frame.
    """

    max_size: int = 640
    stride: int = 1
    fps: float | None = None
    max_frames: int = 0
    blur_window: int = 9
    blur_ratio: float = 0.35
    min_motion: float = 0.0
    image_fps: float = 30.0
    pose_timestamps: bool = False


@dataclass(frozen=True)
class SfmConfig:
    """Structure from motion with pycolmap on the CPU (or import of known poses).

    camera_model: COLMAP model of the single shared camera (SIMPLE_RADIAL, OPENCV, PINHOLE, ...).
    max_features: SIFT cap per image.  overlap / quadratic_overlap: sequential matching window (with
    quadratic_overlap COLMAP matches frame i with i+1, i+2, i+4, ... i+2^(overlap-1) only, not i+1..i+overlap).
    exhaustive_max_frames: clips with at most this many frames and given intrinsics held fixed match
    every pair instead (cheap there, and it gives short, rotation-heavy clips all their wide-baseline
    pairs to register); 0 = always sequential.  Known poses (``--poses``) always match sequentially:
    nothing is registered, the points only set depth ranges and pick stereo views (synthetic 24 frames
    384×288: matching 5.1 s → 2.1 s, labels AbsRel 0.37% / 0.49% at 88% / 80% density either way).
    exhaustive_fallback_below: a self-calibrated clip of at most exhaustive_max_frames frames whose
    sequential matching registers less than this share of its frames (an unordered image set, e.g. views
    in name order, not path order) is matched exhaustively and mapped again; the model that registers
    more frames wins.
    guided_matching: after a pair's two-view geometry is estimated, match its features again under
    that geometry (COLMAP's guided matching): "exhaustive" (in exhaustive matching only: unordered
    sets and short clips, where the wide-baseline pairs are; templeRing's 46° gap between views 5
    and 6 goes from 18 to 79 inliers, enough to register the views behind it), "all" or "off".
    Sequential video matching gains nothing from it (synthetic k1 error 0.023 against 0.02 without).
    With known poses (``--poses``) "exhaustive" does not guide: nothing is registered, and
    guiding tripled the matching time for the same labels.
    vocab_tree: local vocabulary-tree file enabling loop detection (None = off; never downloads).
    mapper: "incremental" or "global".  init_min_tri_angle: degrees required of the initial pair;
    restarts after the first halve it (down to 1°), as small-baseline clips rarely offer 4° pairs.
    restarts: mapping attempts (other seeds) while frames stay unregistered or the model is thin (fewer
    than min_points_per_frame 3-D points per registered frame, counting at most 50 frames: a long
    clip of one scene sees the same points again).  min_registered: fail below this registered share.
    min_points: fail when the model has fewer 3-D points (a degenerate initial pair).
    min_triangulation_deg: fail when the median triangulation angle is below this (no parallax).
    min_parallax_deg: fail when the matches show less parallax than this (degrees) beyond what a pure
    rotation explains: per matched pair of registered frames, the median angle between each match's
    bearing in one frame and its bearing in the other rotated by that pair's best-fitting rotation;
    the clip's parallax is the 90th percentile over pairs.  A camera that only turns in place gives
    feature noise (0.03–0.09° on synthetic clips); real clips gave 0.36–3.9° (see ``rotation_parallax``).
    max_rotation_rate_deg_s: warn when the camera turns faster than this one way and then the other
    (rolling-shutter distortion flips sign: frames across the reversal disagree and poses are unreliable).
    intrinsics: "fx,fy,cx,cy[,k1,k2,p1,p2[,k3]]" in input-frame pixels, or a file; None = FOV prior.
    fov_deg: horizontal field of view used for the initial focal when intrinsics are not given.
    refit_prior_above: when the refined focal differs from the prior's by more than this fraction
    (a long lens read as 60°), registration is run again from the refined focal, and that model is
    kept when it registers at least as many frames (templeRing, focal 1520 px against the prior's
    554: 27 then 31 of 31 frames).  Not when the field-of-view starts disagree by more than
    max_focal_spread (the data do not determine the focal).  0 = never.
    fov_candidates: further field-of-view priors, tried when the first start's median triangulation
    angle is below fov_check_below_deg (weak parallax, focal poorly observable); the spread of the
    refined focal across starts measures how well it is determined.  max_focal_spread: warn above.
    refine_intrinsics: refine given intrinsics in bundle adjustment.
    deterministic: run pycolmap's matching and mapping on one thread, so that the same
    frames and seed give the same model (COLMAP's multi-threaded RANSAC is faster but not reproducible).
    min_distortion_gain: self-calibration keeps the refined distortion terms only when they lower the
    mean reprojection error by at least this fraction (else they stay at 0: an undistorted clip).
    readout_ms: rolling-shutter readout time, top row to bottom row, in ms (:mod:`mannequin.sfm.rolling_shutter`):
    > 0 corrects the keypoints and the undistorted frames for the rotation during readout with this
    time; 0 = global shutter, no correction; -1 = auto: on a video whose camera turns faster than
    max_rotation_rate_deg_s, score each of readout_candidates_ms on the uncorrected model's tracks
    (median reprojection error after bundle adjustment) and use the best when it is at least
    readout_min_gain (a fraction) below the uncorrected score.  TUM fr1/rpy frames 0-29, a Kinect
    turning at 60°/s one way then the other: 20 ms chosen, raw depth AbsRel against the Kinect 54% → 17%.
    Frames 30-59 (one way, 55°/s): a 3.6% lower score at 20 ms, and the camera-centre RMSE against the
    mocap 2.91% → 1.83% of the path.  A global-shutter synthetic walk played at 300 fps (208°/s):
    every readout scores worse (+39% at 10 ms), so none is applied.
    readout_sure_gain: a readout applied with a gain under this fraction is reported as poorly
    determined (a warning): the model absorbed most of the skew, and on a camera that mostly turns
    it absorbs it by bending depth.  TUM fr1/rpy: frames 0-29 gain 10-28% (SfM points 8-15% off
    the Kinect depth), frames 30-59 gain 4-5% (23-31% off; benchmarks/studies/tum_readout.py); 7% sits
    between them on a log scale.
    ba_loss_px: scale (px) of the Cauchy loss in the self-calibration bundle adjustments (and the final
    pose-and-point adjustment with fixed intrinsics); 0 = plain least squares.  The mapper keeps
    observations up to 4 px off, and on a short clip the focal is so weakly observed that their
    pull decides it: synthetic 24-frame clips (seeds 0-2), focal error +0.3/-1.1/+3.2% with plain
    least squares, +0.5/+0.1/+0.9% with a 0.5 px Cauchy loss (the labels' depth relief follows the
    focal: 3.2% off gave 2.1% AbsRel).
    accel_sigma: after mapping (and any rolling-shutter pass), a video's poses and points are adjusted
    once more with a smooth-motion prior (:mod:`mannequin.sfm.motion_prior`): each camera centre's
    acceleration over the frame times, in median scene depths per s², is a residual divided by this
    (0 = off; image folders have no frame times and are never smoothed).  A camera that mostly turns
    observes its centre weakly and plain adjustment lets it jitter: TUM fr1/rpy with the given
    calibration, camera RMSE 3.38% → 1.14% (frames 0-29) and 2.40% → 1.32% (30-59) of the path.
    0.1 over-smooths (3.3% on 30-59), 1.0 barely acts on 0-29 (2.4%); 0.3 × a 1.5 m scene is 0.45
    m/s², a calm handheld walk (tuned on those two windows: docs/FINDINGS.md).
    """

    camera_model: str = "SIMPLE_RADIAL"
    max_features: int = 4096
    overlap: int = 10
    quadratic_overlap: bool = True
    exhaustive_max_frames: int = 50
    exhaustive_fallback_below: float = 0.9
    guided_matching: str = "exhaustive"
    refit_prior_above: float = 0.2
    vocab_tree: str | None = None
    mapper: str = "incremental"
    init_min_tri_angle: float = 4.0
    restarts: int = 3
    min_points_per_frame: float = 20.0
    min_registered: float = 0.6
    min_points: int = 50
    min_triangulation_deg: float = 1.0
    min_parallax_deg: float = 0.15
    max_rotation_rate_deg_s: float = 30.0
    intrinsics: str | None = None
    fov_deg: float = 60.0
    fov_candidates: tuple[float, ...] = (45.0, 75.0)
    fov_check_below_deg: float = 5.0
    max_focal_spread: float = 0.05
    min_distortion_gain: float = 0.01
    deterministic: bool = True
    refine_intrinsics: bool = False
    readout_ms: float = -1.0
    readout_candidates_ms: tuple[float, ...] = (10.0, 15.0, 20.0, 25.0, 30.0, 35.0, 40.0)
    readout_min_gain: float = 0.02
    readout_sure_gain: float = 0.07
    ba_loss_px: float = 0.5
    accel_sigma: float = 0.3


@dataclass(frozen=True)
class StereoConfig:
    """Numba plane sweep.

    n_planes: depth hypotheses, evenly spaced in inverse depth.  n_sources: source views per frame.
    window: ZNCC window side (odd).  top_k: views averaged per pixel (best k of n).
    min_angle_deg: a source whose triangulation angle to the reference is below this gets no vote.
    depth_percentiles / depth_margin: depth range from robust percentiles of the sparse points,
    widened by the margin (fraction).  Matching is on grey images.
    shift: shiftable-window reach in px against fattening at depth edges (-1 = window // 2, 0 = off).
    smooth: edge-aware smoothing of the inverse depth over smooth × smooth (-1 = window, 0 = off).
    window_candidates / window_min_agreement / probe_frames: the window adapts to the footage.  The
    base ``window`` runs first on ``probe_frames`` frames and a neighbour of each; when under
    ``window_min_agreement`` of their pixels agree with the neighbour's depth (the fuse stage's
    test: blurred or noisy footage, whose labels would come out sparse), the larger candidates are
    tried while the agreement grows, and the clip keeps the window with the highest agreement
    (``WS/stereo/window.json``).  Sharp synthetic clips keep 7 (83% agree; 11 and 15 lower it and
    worsen AbsRel); the blurred TUM fr1/rpy sample goes to 21 (6.5% → 12% agree, label density
    ×4 at the same AbsRel; see benchmarks/labels.py).  An empty tuple turns it off.
    ground_sweep: when the sparse points hold a ground plane below the cameras
    (:func:`mannequin.stereo.views.ground_plane`), sweep a second family of planes parallel to it (Gallup
    et al. 2007) and keep, per pixel, its estimate where its cost is lower and it agrees with the
    fronto-parallel one within 5% (``WS/stereo/ground.json``): a floor seen at a grazing angle is
    matched with windows that lie on it.  Labels AbsRel about -30% on the synthetic room for about
    +45-80% stereo time, so it is on in the quality preset only (docs/FINDINGS.md).
    """

    n_planes: int = 96
    n_sources: int = 6
    window: int = 7
    top_k: int = 2
    shift: int = -1
    smooth: int = -1
    min_angle_deg: float = 1.0
    depth_percentiles: tuple[float, float] = (1.0, 99.0)
    depth_margin: float = 0.15
    window_candidates: tuple[int, ...] = (11, 15, 21)
    window_min_agreement: float = 0.5
    probe_frames: int = 3
    ground_sweep: bool = False


@dataclass(frozen=True)
class FuseConfig:
    """Geometric-consistency filter, clean-up, frame QC and point-cloud fusion.

    rel_depth: relative depth agreement.  reproj_px: forward-backward reprojection error in px.
    min_views: agreeing neighbours needed.  n_neighbors: neighbours checked per frame.
    average: replace a kept depth with the mean of the agreeing depths.
    min_confidence: raw-depth confidence threshold (0 = off: on the synthetic clips the geometric
    check alone gave lower AbsRel and higher density than 0.02, see benchmarks/labels.py's filter
    sweep; raise it for weakly textured footage).  speckle_px: blobs smaller than this are removed.
    edge_px / edge_rel: no label within edge_px pixels of a raw-depth neighbour farther by more
    than edge_rel (relative): the near side of depth edges, where window matching fattens.  (4 px /
    15% beat 2 px / 5% on 5 synthetic seeds, 3 tuned and 2 held out: lower AbsRel, density within 0.5 pt.)
    max_behind_frac: drop a pixel that more than this fraction of its agreeing views see through
    (free-space violations, n_behind > max_behind_frac * n_agree); negative disables.
    noise_tolerance: on footage whose depth noise (the median disagreement between probe frame
    pairs) exceeds rel_depth / noise_tolerance, the agreement test widens to noise_tolerance × noise
    and asks one more agreeing view (min_views + 1): a 1.5% test on 3% noise keeps only the lucky
    pixels, while a test matched to the noise with one more vote keeps more of them at the same
    error (TUM fr1/rpy sample: 2.6% AbsRel at 17% density → 2.7% at 24%).  Never on sharp clips
    (0.3% noise).  0 disables.
    noise_margin: a source whose depth is off by less than noise_margin × the clip's depth noise
    (the median disagreement between probe frame pairs) is no evidence of a free-space violation or
    of motion (``n_near``); only matters where the noise exceeds rel_depth / noise_margin (blurred
    footage: TUM fr1/rpy 3.5%), never on sharp clips (0.3%).  0 disables.
    min_valid_fraction: a frame with fewer labelled pixels is dropped (MC paper: 0.2).
    min_kept_frames: a clip with fewer kept frames is rejected.  voxel_size: fused-cloud voxel as a
    fraction of the median scene depth.
    """

    rel_depth: float = 0.015
    reproj_px: float = 1.5
    min_views: int = 2
    n_neighbors: int = 6
    average: bool = True
    min_confidence: float = 0.0
    speckle_px: int = 100
    edge_px: int = 4
    edge_rel: float = 0.15
    max_behind_frac: float = 0.34
    noise_tolerance: float = 1.2
    noise_margin: float = 3.0
    min_valid_fraction: float = 0.2
    min_kept_frames: int = 30
    voxel_size: float = 0.005


@dataclass(frozen=True)
class LabelsConfig:
    """Label export.  png_max: uint16 value the clip's largest depth maps to (sets the png scale).
    colmap_maps: also write the raw depth and the labels as COLMAP depth and normal maps under
    ``WS/stereo/`` (for COLMAP's ``stereo_fusion`` and viewers); at 640×480 they take about 10 MB
    per frame, most of a workspace, so a dataset-scale run may turn them off."""

    png_max: int = 65000
    previews: bool = True
    colmap_maps: bool = True


SECTIONS = {"frames": FramesConfig, "sfm": SfmConfig, "stereo": StereoConfig, "fuse": FuseConfig,
            "labels": LabelsConfig}
#: One stage's options: an instance of one of :data:`SECTIONS`' dataclasses.
Section = FramesConfig | SfmConfig | StereoConfig | FuseConfig | LabelsConfig
_SECTION_NAMES: dict[type, str] = {cls: name for name, cls in SECTIONS.items()}


@dataclass(frozen=True)
class Config:
    """The resolved configuration of a run: one frozen section per stage, plus the seed."""

    frames: FramesConfig = field(default_factory=FramesConfig)
    sfm: SfmConfig = field(default_factory=SfmConfig)
    stereo: StereoConfig = field(default_factory=StereoConfig)
    fuse: FuseConfig = field(default_factory=FuseConfig)
    labels: LabelsConfig = field(default_factory=LabelsConfig)
    seed: int = 0

    # --- serialisation -------------------------------------------------------------------
    def to_dict(self) -> dict:
        """Plain JSON-able dict (tuples become lists)."""
        return json.loads(json.dumps(dataclasses.asdict(self)))

    def to_json(self) -> str:
        """Canonical JSON (sorted keys), the basis of the hash."""
        return json.dumps(self.to_dict(), sort_keys=True, indent=2)

    @classmethod
    def from_dict(cls, data: dict, base: Config | None = None, source: str = "config") -> Config:
        """Build a config from a (possibly partial) dict over ``base`` (default: defaults).

        Unknown sections or keys raise :class:`InputError` naming ``source`` and the key.
        """
        base = base or cls()
        if not isinstance(data, dict):
            raise InputError(f"{source}: expected a mapping of sections, got {type(data).__name__}")
        updates: dict[str, Any] = {}
        for key, value in data.items():
            if key == "seed":
                if not isinstance(value, int) or isinstance(value, bool):
                    raise InputError(f"{source}: seed must be an integer, got {value!r}")
                updates["seed"] = value
                continue
            if key not in SECTIONS:
                raise InputError(f"{source}: unknown section {key!r} (known: {', '.join(SECTIONS)}, seed)")
            if not isinstance(value, dict):
                raise InputError(f"{source}: section {key!r} must be a mapping")
            section = getattr(base, key)
            known = {f.name: f for f in fields(section)}
            for k in value:
                if k not in known:
                    raise InputError(f"{source}: unknown option {key}.{k} (known: {', '.join(known)})")
            coerced = {k: _coerce(getattr(section, k), v, f"{source}: {key}.{k}", "..." in str(known[k].type))
                       for k, v in value.items()}
            updates[key] = dataclasses.replace(section, **coerced)
        return validate(dataclasses.replace(base, **updates), source)

    @classmethod
    def from_json(cls, text: str, source: str = "config") -> Config:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InputError(f"{source}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
        return cls.from_dict(data, source=source)

    @classmethod
    def load(cls, path, base: Config | None = None) -> Config:
        """Read a JSON config file (partial files override ``base``)."""
        path = Path(path)
        if not path.is_file():
            raise InputError(f"{path}: config file not found")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise InputError(f"{path}: not a valid JSON config ({exc})") from None
        return cls.from_dict(data, base=base, source=str(path))

    # --- hashing -------------------------------------------------------------------------
    def hash(self) -> str:
        """Stable 16-hex-digit hash of the whole config."""
        return hashlib.sha256(self.to_json().encode()).hexdigest()[:16]

    def stage_hash(self, stage: str) -> str:
        """Hash of the options of ``stage`` and every stage before it (plus the seed)."""
        if stage not in STAGES:
            raise ValueError(f"unknown stage {stage!r}")
        d = self.to_dict()
        upto = STAGES[: STAGES.index(stage) + 1]
        part = {s: d[s] for s in upto}
        part["seed"] = d["seed"]
        return hashlib.sha256(json.dumps(part, sort_keys=True).encode()).hexdigest()[:16]

    def replace(self, **sections) -> Config:
        """``cfg.replace(stereo={'n_planes': 64})``: a copy with some options changed."""
        return Config.from_dict(sections, base=self, source="override")


def _finite(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _between(lo, hi, text=None):
    return (lambda v: _finite(v) and lo <= v <= hi), text or f"a number in [{lo:g}, {hi:g}]"


def _at_least(lo, text=None):
    return (lambda v: _finite(v) and v >= lo), text or f"a number >= {lo:g}"


def _positive(text="a positive number"):
    return (lambda v: _finite(v) and v > 0), text


_SHARE = _between(0, 1, "a share in [0, 1]")

# Ranges of the options: (section, option) -> (check, what is expected), wide enough for every
# documented special value (0 = off, -1 = auto, a negative max_behind_frac disables).  Float
# options not listed must still be finite.  The finer checks (:data:`CHECKS`) run after them.
#: pycolmap 4's camera models (sfm.camera_model: the one shared camera's model).
CAMERA_MODELS = ("SIMPLE_PINHOLE", "PINHOLE", "SIMPLE_RADIAL", "RADIAL", "OPENCV", "FULL_OPENCV", "FOV",
                 "SIMPLE_RADIAL_FISHEYE", "RADIAL_FISHEYE", "OPENCV_FISHEYE", "THIN_PRISM_FISHEYE",
                 "RAD_TAN_THIN_PRISM_FISHEYE", "SIMPLE_FISHEYE", "FISHEYE", "SIMPLE_DIVISION", "DIVISION",
                 "EUCM", "EQUIRECTANGULAR")

RULES = {
    ("frames", "max_size"): ((lambda v: v == 0 or 32 <= v <= 16384), "0 (keep) or 32..16384 px"),
    ("frames", "stride"): _at_least(1),
    ("frames", "fps"): ((lambda v: v is None or (_finite(v) and v > 0)), "null or a positive frame rate"),
    ("frames", "max_frames"): _at_least(0),
    ("frames", "blur_window"): _at_least(0),
    ("frames", "blur_ratio"): _SHARE,
    ("frames", "min_motion"): _at_least(0),
    ("frames", "image_fps"): _between(1e-3, 1e4, "a frame rate in (0, 10000]"),
    ("sfm", "max_features"): _at_least(100),
    ("sfm", "overlap"): _at_least(1),
    ("sfm", "mapper"): ((lambda v: v in ("incremental", "global")), "'incremental' or 'global'"),
    ("sfm", "camera_model"): ((lambda v: v in CAMERA_MODELS), "a COLMAP camera model: " + ", ".join(CAMERA_MODELS)),
    ("sfm", "exhaustive_max_frames"): _at_least(0),
    ("sfm", "exhaustive_fallback_below"): _SHARE,
    ("sfm", "vocab_tree"): ((lambda v: v is None or isinstance(v, str)), "null or a file path"),
    ("sfm", "init_min_tri_angle"): _positive(),
    ("sfm", "restarts"): _at_least(0),
    ("sfm", "min_points_per_frame"): _at_least(0),
    ("sfm", "min_registered"): _SHARE,
    ("sfm", "min_points"): _at_least(0),
    ("sfm", "min_triangulation_deg"): _at_least(0),
    ("sfm", "min_parallax_deg"): _at_least(0),
    ("sfm", "max_rotation_rate_deg_s"): _at_least(0),
    ("sfm", "intrinsics"): ((lambda v: v is None or (isinstance(v, str) and v.strip() != "")),
                           "null or 'fx,fy,cx,cy[,...]' or a file path"),
    ("sfm", "fov_deg"): _between(10, 170, "a horizontal field of view in [10, 170] degrees"),
    ("sfm", "fov_candidates"): ((lambda v: all(_finite(x) and 10 <= x <= 170 for x in v)),
                                "fields of view in [10, 170] degrees"),
    ("sfm", "max_focal_spread"): _at_least(0),
    ("sfm", "min_distortion_gain"): _at_least(0),
    ("sfm", "readout_min_gain"): _at_least(0),
    ("sfm", "readout_sure_gain"): _at_least(0),
    ("sfm", "accel_sigma"): _at_least(0),
    ("stereo", "n_planes"): _between(2, 4096, "an integer in [2, 4096]"),
    ("stereo", "n_sources"): _between(1, 64, "an integer in [1, 64]"),
    ("stereo", "top_k"): _at_least(1),
    ("stereo", "shift"): _at_least(-1),
    ("stereo", "smooth"): _at_least(-1),
    ("stereo", "min_angle_deg"): _between(0, 90),
    ("stereo", "depth_percentiles"): ((lambda v: len(v) == 2 and all(_finite(x) for x in v) and 0 <= v[0] < v[1] <= 100),
                                      "[low, high] percentiles with 0 <= low < high <= 100"),
    ("stereo", "depth_margin"): _between(0, 10),
    ("stereo", "probe_frames"): _at_least(0),
    ("fuse", "rel_depth"): _between(1e-6, 1, "a relative depth tolerance in (0, 1]"),
    ("fuse", "reproj_px"): _positive(),
    ("fuse", "min_views"): _at_least(1),
    ("fuse", "n_neighbors"): _at_least(1),
    ("fuse", "min_confidence"): _SHARE,
    ("fuse", "speckle_px"): _at_least(0),
    ("fuse", "edge_px"): _at_least(0),
    ("fuse", "edge_rel"): _at_least(0),
    ("fuse", "noise_tolerance"): _at_least(0),
    ("fuse", "noise_margin"): _at_least(0),
    ("fuse", "min_valid_fraction"): _SHARE,
    ("fuse", "min_kept_frames"): _at_least(0),
    ("fuse", "voxel_size"): _at_least(0),
    ("labels", "png_max"): _between(1, 65535, "an integer in [1, 65535] (the uint16 range)"),
}


def validate(cfg: Config, source: str = "config") -> Config:
    """Check every option of ``cfg``; returns ``cfg``.

    First :data:`RULES` (and finiteness of the other floats) over every section, then each
    section's finer checks (:func:`check_section`).  Raises :class:`InputError` naming ``source``,
    the option, the value and what is expected, before any stage runs.
    """
    if not (isinstance(cfg.seed, int) and 0 <= cfg.seed < 2 ** 32):
        raise InputError(f"{source}: seed = {cfg.seed!r}: expected an integer in [0, 2**32)")
    for name in SECTIONS:
        _check_rules(name, getattr(cfg, name), f"{source}: ")
    for name in SECTIONS:
        _check_finer(name, getattr(cfg, name), f"{source}: ")
    return cfg


def check_section(section: Section, source: str | None = None) -> None:
    """Raise :class:`InputError` unless every option of ``section`` (one of :data:`SECTIONS`'
    dataclasses) is in range: :data:`RULES` first, then the finer checks (:data:`CHECKS`, the stereo
    windows).  The message names the option (``sfm.readout_ms``), the value and what is expected,
    prefixed with ``"<source>: "`` when ``source`` is given.  File existence (``sfm.vocab_tree``) is
    not checked here."""
    name = _SECTION_NAMES.get(type(section))
    if name is None:
        raise TypeError(f"not a config section: {type(section).__name__}")
    prefix = f"{source}: " if source else ""
    _check_rules(name, section, prefix)
    _check_finer(name, section, prefix)


def _check_rules(name: str, section: Section, prefix: str) -> None:
    for f in fields(section):
        value = getattr(section, f.name)
        rule = RULES.get((name, f.name))
        if rule is not None:
            ok, expected = rule[0](value), rule[1]
        else:
            ok, expected = not isinstance(value, float) or math.isfinite(value), "a finite number"
        if not ok:
            raise InputError(f"{prefix}{name}.{f.name} = {value!r}: expected {expected}")


def _check_finer(name: str, section: Section, prefix: str) -> None:
    try:
        if isinstance(section, StereoConfig):
            _check_windows(section)
        for f in fields(section):
            check = CHECKS.get((name, f.name))
            if check is not None:
                check(getattr(section, f.name), f"{name}.{f.name}")
    except InputError as exc:
        if not prefix:
            raise
        raise InputError(f"{prefix}{exc}") from None


def check_option(section: str, option: str, value: Any, name: str | None = None) -> None:
    """Raise :class:`InputError` naming ``name`` (default ``"<section>.<option>"``) unless ``value``
    passes the finer check of that option (:data:`CHECKS`); options without one pass.  The command
    line checks its flags' values under the flag's name with it (:data:`FLAGS`)."""
    check = CHECKS.get((section, option)) or _FLAG_ONLY_CHECKS.get((section, option))
    if check is not None:
        check(value, name or f"{section}.{option}")


def check_readout_ms(value: float, name: str = "sfm.readout_ms") -> None:
    """Raise :class:`InputError` (naming ``name``) unless ``value`` is a valid
    :attr:`SfmConfig.readout_ms`: -1 (auto), 0 (global shutter) or a readout time up to 1000 ms."""
    if not (value == -1 or 0 <= value <= 1000):
        raise InputError(f"{name} {value:g}: expected -1 (auto), 0 (global shutter) or a readout time up to 1000 ms")


def _check_readout_candidates(value: tuple[float, ...], name: str) -> None:
    bad = [v for v in value if not 0 < v <= 1000]
    if bad or not value:
        raise InputError(f"{name} {list(value)}: expected readout times in ms, each in (0, 1000]")


def _check_ba_loss(value: float, name: str) -> None:
    if not (math.isfinite(value) and 0 <= value <= 100):
        raise InputError(f"{name} {value}: expected a loss scale in pixels in [0, 100] (0 = squared loss)")


def _check_share(value: float, name: str) -> None:
    if not 0.0 <= value <= 1.0:
        raise InputError(f"{name} {value:g}: expected a share in [0, 1]")


def _check_windows(cfg: StereoConfig) -> None:
    for w in (cfg.window, *cfg.window_candidates):
        if not (isinstance(w, int) and w >= 3 and w % 2 == 1):
            raise InputError(f"stereo.window / stereo.window_candidates: {w!r} is not an odd integer >= 3")


def _check_max_size_flag(value: int, name: str) -> None:
    if value < 0 or value > 16384:
        raise InputError(f"{name} {value}: must be between 0 (keep) and 16384 px")
    if 0 < value < 32:
        raise InputError(f"{name} {value}: too small for stereo (use at least 32 px)")


def _check_frame_rate_flag(value: float, name: str) -> None:
    if not (math.isfinite(value) and 0 < value <= 10000):
        raise InputError(f"{name} {value:g}: must be a frame rate between 0 and 10000")


#: Finer checks, run after :data:`RULES`: (section, option) -> check(value, name), raising
#: :class:`InputError` that names ``name``.
CHECKS: dict[tuple[str, str], Callable[[Any, str], None]] = {
    ("sfm", "readout_ms"): check_readout_ms,
    ("sfm", "readout_candidates_ms"): _check_readout_candidates,
    ("sfm", "ba_loss_px"): _check_ba_loss,
    ("stereo", "window_min_agreement"): _check_share,
}

# Checks of a command-line flag's value whose option's RULES already cover it (the flag's message
# is worded for the command line).
_FLAG_ONLY_CHECKS: dict[tuple[str, str], Callable[[Any, str], None]] = {
    ("frames", "max_size"): _check_max_size_flag,
    ("frames", "image_fps"): _check_frame_rate_flag,
}

#: The command line's config flags: flag -> (section, option) it sets.
FLAGS = {"--max-size": ("frames", "max_size"), "--fps": ("frames", "image_fps"),
         "--intrinsics": ("sfm", "intrinsics"), "--readout-ms": ("sfm", "readout_ms")}


def with_flag(cfg: Config, flag: str, value: Any) -> Config:
    """``cfg`` with the option of command-line ``flag`` (:data:`FLAGS`) set to ``value``, which is
    checked first under the flag's name (``--max-size -3: must be between ...``)."""
    section, option = FLAGS[flag]
    check_option(section, option, value, flag)
    return cfg.replace(**{section: {option: value}})


def _coerce(default, value, where, variable_length: bool = False):
    """Check ``value`` against the type of the default and convert lists to tuples."""
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise InputError(f"{where} must be true or false, got {value!r}")
        return value
    if isinstance(default, int) and not isinstance(default, bool):
        if isinstance(value, bool) or not isinstance(value, int):
            raise InputError(f"{where} must be an integer, got {value!r}")
        return value
    if isinstance(default, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise InputError(f"{where} must be a number, got {value!r}")
        return float(value)
    if isinstance(default, tuple):
        if not isinstance(value, (list, tuple)) or (not variable_length and len(value) != len(default)):
            n = "numbers" if variable_length else f"{len(default)} numbers"
            raise InputError(f"{where} must be a list of {n}, got {value!r}")
        if default and all(isinstance(d, int) for d in default):  # a list of integers
            if not all(isinstance(v, int) and not isinstance(v, bool) for v in value):
                raise InputError(f"{where} must be a list of integers, got {value!r}")
            return tuple(value)
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
            raise InputError(f"{where} must be a list of numbers, got {value!r}")
        return tuple(float(v) for v in value)
    if isinstance(default, str):
        if not isinstance(value, str):
            raise InputError(f"{where} must be a string, got {value!r}")
        return value
    # Optional fields (default None): accept None, numbers or strings.
    if value is not None and not isinstance(value, (int, float, str)):
        raise InputError(f"{where}: unsupported value {value!r}")
    return value


PRESETS = {
    "fast": {"frames": {"max_size": 384}, "sfm": {"max_features": 2048, "overlap": 6},
             "stereo": {"n_planes": 64, "n_sources": 4, "window": 5}},
    "default": {},
    "quality": {"frames": {"max_size": 960}, "sfm": {"max_features": 8192, "overlap": 15, "fov_check_below_deg": 90.0},
                "stereo": {"n_planes": 192, "n_sources": 8, "window": 9, "top_k": 3, "ground_sweep": True}},
}


def preset(name: str) -> Config:
    """The named preset: ``fast``, ``default`` or ``quality``."""
    if name not in PRESETS:
        raise InputError(f"--preset {name!r}: unknown preset (choose from {', '.join(PRESETS)})")
    return Config.from_dict(PRESETS[name], source=f"preset {name}")


def usable_cores() -> int:
    """Cores this process may use (its CPU affinity where the OS tells it)."""
    import os

    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def worker_threads() -> int:
    """Threads one video may use: NUMBA_NUM_THREADS or OMP_NUM_THREADS when set (batch workers set
    both to cores // workers), otherwise :func:`usable_cores`."""
    import os

    for var in ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS"):
        if os.environ.get(var, "").isdigit() and int(os.environ[var]) > 0:
            return int(os.environ[var])
    return usable_cores()
