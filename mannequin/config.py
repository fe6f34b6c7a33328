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
import os
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from mannequin.errors import InputError

STAGES = ("frames", "sfm", "stereo", "fuse", "labels")


@dataclass(frozen=True)
class FramesConfig:
    """Frame extraction and selection (:mod:`mannequin.frames`)."""

    max_size: int = 640  #: longest frame side in px after resizing, aspect kept; 0 = keep the input size
    stride: int = 1  #: keep every n-th source frame
    fps: float | None = None  #: target frame rate of a video's kept frames (overrides stride); None = use stride
    max_frames: int = 0  #: cap on kept frames, taken evenly over the clip; 0 = no cap
    blur_window: int = 9  #: neighbours (frames) whose median sharpness a frame is compared with
    blur_ratio: float = 0.35  #: drop a frame whose sharpness (Laplacian variance) is below this × that median; 0 = off
    min_motion: float = 0.0  #: drop a frame whose mean absolute grey difference to the last kept one is below (0-255); 0 = off
    image_fps: float = 30.0  #: frame rate of an image folder (timestamps = index × 1e6 / image_fps µs)
    pose_timestamps: bool = False  #: with --poses and a video, keep the frames at the camera file's timestamps instead


@dataclass(frozen=True)
class SfmConfig:
    """Structure from motion with pycolmap on the CPU, or import of known poses (:mod:`mannequin.sfm`).

    The measurements behind the defaults are in docs/FINDINGS.md (self-calibration, rolling shutter,
    smooth camera motion, global mapping).
    """

    camera_model: str = "SIMPLE_RADIAL"  #: COLMAP model of the one shared camera (:data:`CAMERA_MODELS`)
    max_features: int = 4096  #: SIFT features per image, at most
    overlap: int = 10  #: sequential matching window, in frames
    quadratic_overlap: bool = True  #: match frame i with i+1, i+2, i+4 … i+2^(overlap-1) only
    exhaustive_max_frames: int = 50  #: match every pair when a clip has at most this many frames and fixed intrinsics; 0 = never
    exhaustive_fallback_below: float = 0.9  #: registered share below which a short self-calibrated clip is matched exhaustively
    guided_matching: str = "exhaustive"  #: re-match pairs under their two-view geometry: "exhaustive" (there only), "all", "off"
    refit_prior_above: float = 0.2  #: re-register from the refined focal when it is this fraction off the prior; 0 = never
    vocab_tree: str | None = None  #: local vocabulary-tree file for loop detection; None = off (never downloads)
    mapper: str = "incremental"  #: "incremental" or "global"
    init_min_tri_angle: float = 4.0  #: degrees of the initial pair; halved on each restart, down to 1
    restarts: int = 3  #: further mapping attempts (other seeds) while frames are unregistered or the model is thin
    min_points_per_frame: float = 20.0  #: 3-D points per registered frame (at most 50 frames counted) below which it is thin
    min_registered: float = 0.6  #: fail below this share of registered frames
    min_points: int = 50  #: fail below this many 3-D points
    min_triangulation_deg: float = 1.0  #: fail when the median triangulation angle is below this (degrees)
    min_parallax_deg: float = 0.15  #: fail below this parallax beyond a pure rotation (degrees, 90th percentile of pairs)
    max_rotation_rate_deg_s: float = 30.0  #: warn above this turn rate (°/s) one way then the other; readout auto acts above it
    intrinsics: str | None = None  #: "fx,fy,cx,cy[,k1,k2,p1,p2[,k3]]" in input-frame px, or a file; None = FOV prior
    fov_deg: float = 60.0  #: horizontal field of view (degrees) of the prior focal
    fov_candidates: tuple[float, ...] = (45.0, 75.0)  #: further field-of-view priors (degrees) tried on weak parallax
    fov_check_below_deg: float = 5.0  #: try fov_candidates when the median triangulation angle is below this (degrees)
    max_focal_spread: float = 0.05  #: warn when the refined focal spreads more than this fraction across the priors
    min_distortion_gain: float = 0.01  #: keep refined distortion only when it lowers the reprojection error by this fraction
    deterministic: bool = True  #: one thread for matching and mapping, so the same frames and seed give the same model
    refine_intrinsics: bool = False  #: refine given intrinsics in bundle adjustment
    readout_ms: float = -1.0  #: rolling-shutter readout, top row to bottom, in ms; 0 = global shutter, -1 = auto
    readout_candidates_ms: tuple[float, ...] = (10.0, 15.0, 20.0, 25.0, 30.0, 35.0, 40.0)  #: readouts (ms) auto scores
    readout_min_gain: float = 0.02  #: auto applies the best readout when it lowers the score by this fraction
    readout_sure_gain: float = 0.07  #: a readout applied with a smaller gain is reported as poorly determined
    ba_loss_px: float = 0.5  #: Cauchy loss scale (px) of the self-calibration adjustments; 0 = plain least squares
    accel_sigma: float = 0.3  #: smooth-motion prior on a video's camera acceleration (median depths/s² at 1 px noise); 0 = off
    given_poses: str = "use"  #: a camera file's poses: "use" as given, "refine" (bundle adjustment), "check" against SfM


@dataclass(frozen=True)
class StereoConfig:
    """Plane sweep on grey images (:mod:`mannequin.stereo`); measurements in docs/FINDINGS.md."""

    n_planes: int = 96  #: depth hypotheses, evenly spaced in inverse depth
    n_sources: int = 6  #: source views per frame
    window: int = 7  #: ZNCC window side in px (odd)
    top_k: int = 2  #: best views averaged per pixel
    shift: int = -1  #: shiftable-window reach in px; -1 = window // 2, 0 = off
    smooth: int = -1  #: side (px) of the edge-aware smoothing of inverse depth; -1 = window, 0 = off
    min_angle_deg: float = 1.0  #: a source seen under a smaller triangulation angle (degrees) gets no vote
    depth_percentiles: tuple[float, float] = (1.0, 99.0)  #: sparse-point depth percentiles that bound the sweep
    depth_margin: float = 0.15  #: widening of that depth range (fraction)
    window_candidates: tuple[int, ...] = (11, 15, 21)  #: larger windows tried on poorly agreeing footage; () = off
    window_min_agreement: float = 0.5  #: share of probe pixels agreeing with a neighbour below which they are tried
    probe_frames: int = 3  #: frames (each with a neighbour) the window choice is measured on
    ground_sweep: bool = False  #: also sweep planes parallel to a ground plane found in the sparse points


@dataclass(frozen=True)
class FuseConfig:
    """Geometric-consistency filter, clean-up, frame QC and point-cloud fusion (:mod:`mannequin.fuse`);
    measurements in docs/FINDINGS.md."""

    rel_depth: float = 0.015  #: relative depth agreement
    reproj_px: float = 1.5  #: forward-backward reprojection error in px
    min_views: int = 2  #: agreeing neighbours needed
    n_neighbors: int = 6  #: neighbours checked per frame
    average: bool = True  #: replace a kept depth with the mean of the agreeing depths
    min_confidence: float = 0.0  #: raw-depth confidence threshold; 0 = off
    speckle_px: int = 100  #: blobs smaller than this (px) are removed
    edge_px: int = 4  #: no label within this many px of a raw-depth neighbour farther by more than edge_rel
    edge_rel: float = 0.15  #: relative depth step that makes a depth edge
    max_behind_frac: float = 0.34  #: drop a pixel more than this share of its agreeing views see through; < 0 = off
    noise_tolerance: float = 1.2  #: on noisy footage, widen the agreement test to this × the depth noise (+1 view); 0 = off
    noise_margin: float = 3.0  #: a source off by less than this × the depth noise is no free-space or motion evidence; 0 = off
    moving_noise: float = 10.0  #: a source off by more than this × the depth noise is evidence of motion; 0 = no mask
    moving_views: int = 2  #: sources with that evidence that mark a labelled pixel as evidence of motion
    moving_window: float = 0.04  #: side of the square (share of the image width) in which the moving evidence is counted
    moving_share: float = 0.5  #: share of evidence among the square's labelled pixels that marks them moving
    min_valid_fraction: float = 0.2  #: a frame with a smaller labelled share is dropped (the MC paper's 0.2)
    min_kept_frames: int = 30  #: a clip with fewer kept frames is rejected
    voxel_size: float = 0.005  #: fused-cloud voxel, as a fraction of the median scene depth


@dataclass(frozen=True)
class LabelsConfig:
    """Label export (:mod:`mannequin.labels`)."""

    png_max: int = 65000  #: uint16 value the clip's largest depth maps to (sets the PNG scale)
    previews: bool = True  #: write the preview images and report.html
    colmap_maps: bool = True  #: also write COLMAP depth and normal maps under WS/stereo/ (~10 MB per 640×480 frame)


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
    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict (tuples become lists)."""
        return json.loads(json.dumps(dataclasses.asdict(self)))

    def to_json(self) -> str:
        """Canonical JSON (sorted keys), the basis of the hash."""
        return json.dumps(self.to_dict(), sort_keys=True, indent=2)

    @classmethod
    def from_dict(cls, data: dict[str, Any], base: Config | None = None, source: str = "config") -> Config:
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
        """Build a config from JSON text (see :meth:`from_dict`)."""
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InputError(f"{source}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
        return cls.from_dict(data, source=source)

    @classmethod
    def load(cls, path: str | os.PathLike[str], base: Config | None = None) -> Config:
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

    def replace(self, **sections: dict[str, Any]) -> Config:
        """``cfg.replace(stereo={'n_planes': 64})``: a copy with some options changed."""
        return Config.from_dict(sections, base=self, source="override")


#: A range rule: (check(value) -> bool, what is expected, in words).
_Rule = tuple[Callable[[Any], bool], str]


def _finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _between(lo: float, hi: float, text: str | None = None) -> _Rule:
    return (lambda v: _finite(v) and lo <= v <= hi), text or f"a number in [{lo:g}, {hi:g}]"


def _at_least(lo: float, text: str | None = None) -> _Rule:
    return (lambda v: _finite(v) and v >= lo), text or f"a number >= {lo:g}"


def _positive(text: str = "a positive number") -> _Rule:
    return (lambda v: _finite(v) and v > 0), text


_SHARE = _between(0, 1, "a share in [0, 1]")

#: pycolmap 4's camera models (sfm.camera_model: the one shared camera's model).
CAMERA_MODELS = ("SIMPLE_PINHOLE", "PINHOLE", "SIMPLE_RADIAL", "RADIAL", "OPENCV", "FULL_OPENCV", "FOV",
                 "SIMPLE_RADIAL_FISHEYE", "RADIAL_FISHEYE", "OPENCV_FISHEYE", "THIN_PRISM_FISHEYE",
                 "RAD_TAN_THIN_PRISM_FISHEYE", "SIMPLE_FISHEYE", "FISHEYE", "SIMPLE_DIVISION", "DIVISION",
                 "EUCM", "EQUIRECTANGULAR")

#: Ranges of the options: (section, option) -> rule, wide enough for every documented special value
#: (0 = off, -1 = auto, a negative max_behind_frac disables).  Float options not listed must be
#: finite.  The finer checks (:data:`CHECKS`) run after these.
RULES: dict[tuple[str, str], _Rule] = {
    ("frames", "max_size"): ((lambda v: v == 0 or 32 <= v <= 16384), "0 (keep) or 32..16384 px"),
    ("frames", "stride"): _at_least(1),
    ("frames", "fps"): ((lambda v: v is None or (_finite(v) and v > 0)), "null or a positive frame rate"),
    ("frames", "max_frames"): _at_least(0),
    ("frames", "blur_window"): _at_least(0),
    ("frames", "blur_ratio"): _SHARE,
    ("frames", "min_motion"): _at_least(0),
    ("frames", "image_fps"): ((lambda v: _finite(v) and 0 < v <= 1e4), "a frame rate in (0, 10000]"),
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
    ("sfm", "given_poses"): ((lambda v: v in ("use", "refine", "check")), "'use', 'refine' or 'check'"),
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
    ("fuse", "moving_noise"): _at_least(0),
    ("fuse", "moving_views"): _at_least(1),
    ("fuse", "moving_window"): _between(0, 1),
    ("fuse", "moving_share"): _between(1e-6, 1, "a share in (0, 1]"),
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


def _coerce(default: Any, value: Any, where: str, variable_length: bool = False) -> Any:
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


PRESETS: dict[str, dict[str, Any]] = {
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
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def worker_threads() -> int:
    """Threads one video may use: NUMBA_NUM_THREADS or OMP_NUM_THREADS when set (batch workers set
    both to cores // workers), otherwise :func:`usable_cores`."""
    for var in ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS"):
        if os.environ.get(var, "").isdigit() and int(os.environ[var]) > 0:
            return int(os.environ[var])
    return usable_cores()
