"""Accuracy of a workspace's labels against ground-truth depth (and poses): ``mannequin eval``.

Ground truth is matched to label frames by name (``<name>.npy|.png|.pfm`` in ``gt_dir``).  Two ways
to compare:
- *pixel*: the GT map lies on the grid of ``WS/images`` (synthetic data, Middlebury);
- *through 3-D points* (``gt_camera`` given): every labelled pixel is back-projected with the
  workspace's pinhole camera and projected into the GT camera (with its lens distortion, e.g. TUM
  depth registered to the distorted RGB image); the GT depth there is compared in z.  Undistortion
  and crops then don't matter.
With poses from SfM the scale is free: one scale per clip, the median of d*/d over all pixels of all
frames (never one per frame).  With known poses the scale is 1.

GT formats (``gt_format``): "depth" (above), or "middlebury": disparity maps with a Middlebury 2014
``calib.txt`` in ``gt_dir`` (depth Z = baseline·f / (d + doffs), in the baseline's units, mm), or
without one (Middlebury 2003 and earlier: depth only up to scale, 1/d, so the scale is always
fitted).  "auto" picks "middlebury" when ``gt_dir/calib.txt`` exists.  A disparity file belongs to
the frame of the same name, ``disp<N>`` to frame ``im<N>``, and a lone ``disp0`` with no other
match to the first frame (Middlebury's view 0, the left view of a pair).  Disparity maps of another
size than the labels (the frames were resized) are converted to depth first and then sampled at the
label pixel centres (nearest neighbour), since depth does not change with the image size.
"""
from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mannequin._api import make_callable
from mannequin.errors import InputError
from mannequin.io.gt import (
    DISP_EXTS,
    disparity_file,
    gt_depth_file,
    read_gt_depth,
    read_middlebury_calib,
    read_middlebury_depth,
)
from mannequin.metrics import ate_rmse, depth_metrics
from mannequin.workspace import Workspace, check_maps, read_json_or_empty

GT_FORMATS = ("auto", "depth", "middlebury")
#: What ``evaluate`` scores: the labels, the raw stereo depth, or the SfM points of each frame.
WHICH = ("labels", "depth", "sparse")


def distort_opencv(x: np.ndarray, y: np.ndarray, dist: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """Apply OpenCV distortion (k1, k2, p1, p2[, k3]) to normalised coordinates (N,)."""
    k1, k2, p1, p2 = (list(dist) + [0.0] * 4)[:4]
    k3 = dist[4] if len(dist) > 4 else 0.0
    r2 = x * x + y * y
    radial = 1 + k1 * r2 + k2 * r2 * r2 + k3 * r2 ** 3
    xd = x * radial + 2 * p1 * x * y + p2 * (r2 + 2 * x * x)
    yd = y * radial + p1 * (r2 + 2 * y * y) + 2 * p2 * x * y
    return xd, yd


def prediction_dir(ws: Workspace, which: str) -> Path:
    """The workspace folder ``evaluate`` reads for ``which`` (one of :data:`WHICH`): labels, raw
    depth, or the sparse model whose points :func:`mannequin.stereo.views.sparse_depth_map` turns into maps."""
    if which not in WHICH:
        raise InputError(f"--which {which}: unknown (use {', '.join(WHICH)})")
    return {"labels": ws.labels_dir, "depth": ws.depth_dir, "sparse": ws.sparse_dir}[which]


def parse_gt_camera(spec: str) -> tuple:
    """``fx,fy,cx,cy[,k1,k2,p1,p2[,k3]]`` (OpenCV convention, or a file holding it) → the
    ``(fx, fy, cx, cy, dist)`` camera :func:`sample_through_points` and :func:`project_opencv` take."""
    from mannequin.sfm import parse_intrinsics

    intr, dist = parse_intrinsics(spec, 1, 1, option="--gt-intrinsics")
    return (intr.fx, intr.fy, intr.cx - 0.5, intr.cy - 0.5, dist)


def project_opencv(X: np.ndarray, camera: tuple) -> np.ndarray:
    """Camera points (M, 3) → pixels (M, 2) of a camera ``(fx, fy, cx, cy, dist)`` given in the
    OpenCV convention (OpenCV distortion), returned with pixel centres at +0.5 (COLMAP's, as
    :mod:`mannequin.sfm.rolling_shutter` expects)."""
    fx, fy, cx, cy, dist = camera
    xd, yd = distort_opencv(X[:, 0] / X[:, 2], X[:, 1] / X[:, 2], dist)
    return np.column_stack([fx * xd + cx + 0.5, fy * yd + cy + 0.5])


def sample_through_points(label: np.ndarray, K: np.ndarray, gt: np.ndarray, gt_camera: tuple,
                          rolling: tuple | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Label depths and GT depths at the same 3-D points.

    label (H, W) z-depth on the pinhole camera ``K`` (pixel centres at +0.5); gt (Hg, Wg) z-depth of
    a camera at the same centre and orientation with intrinsics ``gt_camera = (fx, fy, cx, cy,
    dist)`` in the OpenCV convention (pixel centre at integers) and OpenCV distortion ``dist``.
    ``rolling = (omega (3,) rad/s, readout_s)``: the labels sit on rolling-shutter-corrected frames
    (:mod:`mannequin.sfm.rolling_shutter`) while the GT is registered to the recorded image, so each
    point is moved into the camera of the GT row that recorded it (its z-depth there is compared).
    Returns (pred (N,), gt (N,)) for labelled pixels that land inside the GT image (gt 0 = none).
    """
    rows, cols = np.nonzero(label > 0)
    z = label[rows, cols].astype(np.float64)
    x = (cols + 0.5 - K[0, 2]) / K[0, 0]
    y = (rows + 0.5 - K[1, 2]) / K[1, 1]
    X = np.column_stack([x * z, y * z, z])
    if rolling is not None and rolling[1] > 0:
        from mannequin.sfm import from_frame_time

        X, px = from_frame_time(X, lambda P: project_opencv(P, gt_camera), rolling[0], rolling[1], gt.shape[0])
        z = X[:, 2]
    else:
        px = project_opencv(X, gt_camera)
    u = np.rint(px[:, 0] - 0.5).astype(np.int64)
    v = np.rint(px[:, 1] - 0.5).astype(np.int64)
    inside = (u >= 0) & (v >= 0) & (u < gt.shape[1]) & (v < gt.shape[0])
    g = np.zeros_like(z)
    g[inside] = gt[v[inside], u[inside]]
    return z.astype(np.float32), g.astype(np.float32)


def resample_nearest(gt: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """``gt`` (Hg, Wg) sampled at the pixel centres of an (H, W) grid covering the same image."""
    H, W = shape
    Hg, Wg = gt.shape
    rows = np.minimum(((np.arange(H) + 0.5) * Hg / H).astype(np.int64), Hg - 1)
    cols = np.minimum(((np.arange(W) + 0.5) * Wg / W).astype(np.int64), Wg - 1)
    return gt[rows[:, None], cols[None, :]]


def evaluate(ws: Workspace, gt_dir: str | os.PathLike, *, depth_scale: float = 1.0, gt_camera: tuple | str | None = None,
             gt_poses: str | os.PathLike | None = None, fit_scale: bool | None = None, which: str = "labels",
             gt_format: str = "auto") -> dict:
    """Depth metrics of ``WS/<which>/<name>.npy`` against GT, per frame and per clip (+ ATE).

    ``which``: "labels", "depth" (the raw sweep) or "sparse" (the SfM points each frame observes,
    :func:`mannequin.stereo.views.sparse_depth_map`: the structure's accuracy, independent of the stereo;
    its density is tiny by nature).  ``fit_scale``: None = fit one scale per clip
    when the poses came from SfM, 1 with known poses.  ``gt_camera``: ``(fx, fy, cx, cy, dist)``
    (:func:`parse_gt_camera`, which also reads it from its ``fx,fy,cx,cy[,k...]`` text) to compare
    through 3-D points; None compares pixel by pixel.
    ``gt_poses``: an MC camera file or a TUM trajectory (``name ts tx ty tz qx qy qz qw`` or
    ``ts tx ty tz qx qy qz qw``) whose i-th pose belongs to the i-th frame; adds ``poses`` with the
    ATE after Sim(3) alignment.  ``gt_format``: "depth", "middlebury" (disparity, see the module
    docstring) or "auto" (middlebury when ``gt_dir/calib.txt`` exists).  ``depth_scale``: GT units
    per pose unit (PNG depth: TUM 5000; Middlebury mm: 1000 for poses in metres).
    Returns {"clip": {...}, "frames": [...], "poses": {...}?, "warnings": [...]?}; a warning when
    the frames were rolling-shutter corrected (``sfm/summary.json``) and the GT is compared pixel by
    pixel (no ``gt_camera``): such GT belongs to the recorded rows, not the corrected ones.
    Raises :class:`InputError` naming the folder, file or option at fault.
    """
    if not prediction_dir(ws, which).is_dir() or not ws.sparse_dir.is_dir():
        raise InputError(f"{ws.root}: no {which} to evaluate (run 'mannequin run' first)")
    if not (math.isfinite(depth_scale) and depth_scale > 0):
        raise InputError(f"--depth-scale {depth_scale}: must be a positive number")
    if isinstance(gt_camera, str):
        gt_camera = parse_gt_camera(gt_camera)
    gt = _open_gt(Path(gt_dir), gt_format)
    if gt.format == "middlebury" and gt.calib is None:
        fit_scale = True  # no calibration: disparity gives depth only up to scale
    src_dir = prediction_dir(ws, which)
    _check_stage_finished(ws, which)
    preds = _Predictions(ws, which, src_dir)
    gt_files = _match_gt(ws, gt.dir, preds.names, gt.format)
    summary = read_json_or_empty(ws.sfm_dir / "summary.json")
    rs = summary.get("rolling_shutter") or {}
    rolling = ({Path(n).stem: (np.asarray(om), float(rs["readout_ms"]) * 1e-3) for n, om in rs.get("omega_rad_s", {}).items()}
               if rs.get("readout_ms", 0) > 0 else {})
    names, pairs = [], []
    for name in preds.names:
        if name in gt_files:
            pairs.append(_compare_frame(preds, name, gt, gt_files[name], depth_scale, gt_camera, rolling.get(name)))
            names.append(name)
    if not pairs:
        raise _no_match_error(gt, preds)
    if fit_scale is None:
        fit_scale = summary.get("mode", "sfm") == "sfm"
    scale = _fit_scale(pairs, gt.dir, src_dir) if fit_scale else 1.0
    frames, clip, errs = _score(names, pairs, scale, gt.dir, src_dir)
    clip.update({"scale": scale, "scale_fitted": bool(fit_scale), "frames": len(frames), "source": which,
                 "gt_format": gt.format if gt.calib is not None or gt.format == "depth" else "middlebury-uncalibrated"})
    out = {"clip": _clean(clip), "frames": [_clean(f) for f in frames], "_errors": errs[:: max(1, errs.size // 200000)]}
    if rolling and gt_camera is None:
        out["warnings"] = [f"{ws.root}: the {which} sit on rolling-shutter-corrected frames (readout "
                           f"{float(rs['readout_ms']):g} ms) while pixel-registered GT belongs to the recorded "
                           "frames; pass --gt-intrinsics to compare through 3-D points"]
    if gt_poses is not None:
        out["poses"] = _clean(_pose_metrics(ws, gt_poses))
    return out


@dataclass(frozen=True)
class _GroundTruth:
    """The GT folder, its format ("depth" or "middlebury") and its Middlebury calibration (or None)."""

    dir: Path
    format: str
    calib: dict | None

    def read(self, path: Path, depth_scale: float) -> np.ndarray:
        """The GT depth (H, W) float32 of one file, 0 = none."""
        if self.format == "middlebury":
            return read_middlebury_depth(path, self.calib, depth_scale)
        return read_gt_depth(path, depth_scale)


def _open_gt(gt_dir: Path, gt_format: str) -> _GroundTruth:
    """Check ``gt_dir`` and ``gt_format``, resolve "auto", and read ``calib.txt`` for Middlebury GT."""
    if not gt_dir.is_dir():
        raise InputError(f"{gt_dir}: GT depth folder not found")
    if gt_format not in GT_FORMATS:
        raise InputError(f"--gt-format {gt_format}: unknown (use {', '.join(GT_FORMATS)})")
    calib_path = gt_dir / "calib.txt"
    if gt_format == "auto":
        gt_format = "middlebury" if calib_path.is_file() else "depth"
    calib = read_middlebury_calib(calib_path) if gt_format == "middlebury" and calib_path.is_file() else None
    return _GroundTruth(gt_dir, gt_format, calib)


def _check_stage_finished(ws: Workspace, which: str) -> None:
    """Refuse to score the output of a stage that has no completion stamp (when stamps are kept)."""
    stage = {"labels": "fuse", "depth": "stereo", "sparse": "sfm"}.get(which)
    if stage and ws.stamps_dir.is_dir() and not ws.read_stamp(stage):
        raise InputError(f"{ws.root}: stage {stage} has not finished, so its {which} may be incomplete or stale "
                         f"(run 'mannequin run' or 'mannequin {stage}' again)")


class _Predictions:
    """The maps to score: the frames of the sparse model that have one in ``src_dir`` (all of them
    for ``which`` = "sparse"), sorted by name, and each frame's intrinsics."""

    def __init__(self, ws: Workspace, which: str, src_dir: Path):
        from mannequin.stereo import sparse_geometry

        self.which, self.src_dir = which, src_dir
        self.geo = sparse_geometry(ws.read_sparse())
        self.index = {Path(n).stem: k for k, n in enumerate(self.geo.names)}
        self.names = [n for n in sorted(self.index) if which == "sparse" or (src_dir / f"{n}.npy").exists()]
        if which != "sparse":  # a corrupt or mis-shaped map is named, not blamed on the GT
            check_maps([src_dir / f"{n}.npy" for n in self.names],
                       [(self.geo.sizes[self.index[n]][1], self.geo.sizes[self.index[n]][0]) for n in self.names])

    def load(self, name: str) -> np.ndarray:
        """The (H, W) depth map of frame ``name`` (0 = none)."""
        from mannequin.stereo import sparse_depth_map

        if self.which == "sparse":
            return sparse_depth_map(self.geo, self.index[name])
        return np.load(self.src_dir / f"{name}.npy")

    def K(self, name: str) -> np.ndarray:
        """(3, 3) intrinsics of frame ``name`` in pixels (pixel centres at +0.5)."""
        return self.geo.K[self.index[name]]


def _compare_frame(preds: _Predictions, name: str, gt: _GroundTruth, gt_path: Path, depth_scale: float,
                   gt_camera: tuple | None, rolling: tuple | None) -> tuple[np.ndarray, np.ndarray, int | None]:
    """(pred, gt, valid GT pixels or None) of one frame: through 3-D points with ``gt_camera`` (1-D
    arrays, and the GT image's valid pixel count for the density), else pixel by pixel (2-D maps)."""
    pred = preds.load(name)
    g = gt.read(gt_path, depth_scale)
    if gt_camera is not None:
        p, s = sample_through_points(pred, preds.K(name), g, gt_camera, rolling)
        # density: labelled share of GT pixels is measured in the GT image's own grid
        return p, s, int((np.isfinite(g) & (g > 0)).sum())
    if g.shape != pred.shape and gt.format == "middlebury" and _same_aspect(g.shape, pred.shape):
        g = resample_nearest(g, pred.shape)
    if g.shape != pred.shape:
        raise InputError(f"{gt_path}: GT size {g.shape[::-1]} differs from the label size {pred.shape[::-1]} "
                         "(pass the GT camera to compare through 3-D points)")
    return pred, g, None


def _no_match_error(gt: _GroundTruth, preds: _Predictions) -> InputError:
    """The error for GT of which no file matches a frame, with the file names expected."""
    first = sorted(preds.index)[0] if preds.index else "NAME"
    like = (f"{first}.pfm, disp<N>.pfm for frame im<N>, or a lone disp0.pfm" if gt.format == "middlebury"
            else f"{first}.png")
    hint = ("; for Middlebury disparity without calib.txt pass --gt-format middlebury"
            if gt.format == "depth" and any(gt.dir.glob("disp*.p?m")) else "")
    return InputError(f"{gt.dir}: no GT {'disparity' if gt.format == 'middlebury' else 'depth'} file matches "
                      f"a frame of {preds.src_dir} (names like {like}){hint}")


def _fit_scale(pairs: list, gt_dir: Path, src_dir: Path) -> float:
    """One scale for the clip: the median of GT / predicted depth over all pixels where both are valid."""
    ratios = np.concatenate([g[(p > 0) & (g > 0)] / p[(p > 0) & (g > 0)] for p, g, _ in pairs])
    ratios = ratios[np.isfinite(ratios)]
    if not ratios.size:
        raise InputError(f"{gt_dir}: no pixel of {src_dir} has a valid GT depth to compare with, "
                         "so no scale can be fitted")
    return float(np.median(ratios))


def _score(names: list[str], pairs: list, scale: float, gt_dir: Path, src_dir: Path) -> tuple[list, dict, np.ndarray]:
    """(per-frame metrics, clip metrics, the clip's relative errors (N,)) of the scaled predictions."""
    frames, all_p, all_g = [], [], []
    for name, (p, g, valid_gt) in zip(names, pairs, strict=False):
        m = depth_metrics(p.reshape(1, -1) if p.ndim == 1 else p, g.reshape(1, -1) if g.ndim == 1 else g, scale=scale)
        if valid_gt is not None:  # through 3-D points: density over the GT image's valid pixels
            m["density"] = float(((p > 0) & (g > 0)).sum() / valid_gt) if valid_gt else float("nan")
        frames.append({"name": name, **m})
        all_p.append(p.ravel())
        all_g.append(g.ravel())
    P, G = np.concatenate(all_p), np.concatenate(all_g)
    clip = depth_metrics(P[None], G[None], scale=scale)
    if clip["n"] == 0:
        raise InputError(f"{gt_dir}: no pixel of {src_dir} has a valid GT depth to compare with "
                         "(GT all zero, negative or NaN, or no overlap)")
    both = (P > 0) & (G > 0)
    errs = np.abs(scale * P[both] - G[both]) / G[both]
    # Frames whose GT has no valid pixel have no density (NaN, null in the JSON) and do not count.
    dens = [f["density"] for f in frames if math.isfinite(f["density"])]
    clip["density"] = float(np.mean(dens)) if dens else float("nan")
    return frames, clip, errs


def _match_gt(ws: Workspace, gt_dir: Path, names: Sequence[str], gt_format: str) -> dict:
    """{frame name: GT file} for the frames ``names`` (sorted); for disparity with no match by name,
    a lone ``disp0`` belongs to the first frame."""
    if gt_format == "depth":
        found = {n: gt_depth_file(gt_dir, n) for n in names}
        return {n: p for n, p in found.items() if p is not None}
    found = {n: disparity_file(gt_dir, n) for n in names}
    found = {n: p for n, p in found.items() if p is not None}
    if not found:
        lone = [gt_dir / f"disp0{ext}" for ext in DISP_EXTS if (gt_dir / f"disp0{ext}").exists()]
        first = (ws.frame_names() or ws.image_names() or list(names))[:1]
        if lone and first and first[0] in names:
            found = {first[0]: lone[0]}
    return found


def _same_aspect(a, b, tol: float = 0.01) -> bool:
    """Two (H, W) grids covering the same image: the x and y scale factors agree within ``tol``."""
    sy, sx = a[0] / b[0], a[1] / b[1]
    return abs(sx - sy) <= tol * max(sx, sy)


def _clean(d: dict) -> dict:
    return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in d.items()}


def _pose_metrics(ws: Workspace, gt_poses: str | os.PathLike) -> dict:
    """ATE of ``WS/cameras.txt`` against ``gt_poses``, whose i-th pose belongs to the i-th input frame
    (:func:`mannequin.frames.stage.input_line_of`): frames dropped or left unregistered are skipped."""
    from mannequin.frames import input_line_of, read_frames_csv
    from mannequin.io.cameras import read_cameras

    gt_poses = Path(gt_poses)
    if not gt_poses.is_file():
        raise InputError(f"{gt_poses}: GT pose file not found")
    est = read_cameras(ws.cameras_txt)
    try:
        gt_centers = np.array([f.pose.center for f in read_cameras(gt_poses).frames])
    except InputError:
        try:
            text = gt_poses.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            raise InputError(f"{gt_poses}: neither an MC camera file nor a TUM trajectory (not text)") from None
        rows = [ln.split() for ln in text.splitlines() if ln.strip() and not ln.startswith("#")]
        try:
            gt_centers = np.array([[float(v) for v in r[-7:-4]] for r in rows])
        except ValueError:
            raise InputError(f"{gt_poses}: neither an MC camera file nor a TUM trajectory") from None
    est_centers = np.array([f.pose.center for f in est.frames])
    if not ws.frames_csv.exists():
        if len(gt_centers) != len(est.frames):
            raise InputError(f"{gt_poses}: {len(gt_centers)} GT poses for {len(est.frames)} frames in {ws.cameras_txt}")
        return ate_rmse(est_centers, gt_centers)
    if len(gt_centers) < 2 or not np.isfinite(gt_centers).all() or \
            np.linalg.norm(gt_centers - gt_centers[0], axis=1).max() == 0:
        raise InputError(f"{gt_poses}: the GT camera centres do not move (or are not finite): no path to compare with")
    line_of = input_line_of(ws.frames_csv, ws.frames_json, len(gt_centers), str(gt_poses))
    name_at = {r["timestamp_us"]: r["name"] for r in read_frames_csv(ws.frames_csv)}
    try:
        lines = [line_of[name_at[f.timestamp_us]] for f in est.frames]
    except KeyError:
        raise InputError(f"{ws.cameras_txt}: its timestamps do not match {ws.frames_csv}; run sfm again") from None
    return ate_rmse(est_centers, gt_centers[lines])


def write_eval_plots(ws: Workspace, result: dict) -> list[Path]:
    """Per-frame AbsRel and density, and a relative-error histogram, under WS/preview/."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from mannequin.workspace import atomic_path

    frames = result["frames"]
    paths = []
    fig, ax = plt.subplots(2, 1, figsize=(8, 5), sharex=True)
    idx = np.arange(len(frames))
    ax[0].plot(idx, [100 * (f["absrel"] or 0) for f in frames], "o-")
    ax[0].set_ylabel("AbsRel (%)")
    ax[1].plot(idx, [100 * f["density"] if f["density"] is not None else np.nan for f in frames], "o-",
               color="tab:green")
    ax[1].set_ylabel("density (%)")
    ax[1].set_xlabel("frame")
    fig.suptitle(f"{ws.root.name}: AbsRel {100 * (result['clip']['absrel'] or 0):.2f}% "
                 f"at {100 * (result['clip']['density'] or 0):.0f}% density")
    fig.tight_layout()
    out = ws.preview_dir / "eval_per_frame.png"
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
    paths.append(out)
    errs = np.array(result.get("_errors", []))
    if errs.size:
        fig, ax = plt.subplots(figsize=(6, 3.5))
        ax.hist(np.clip(100 * errs, 0, 10), bins=100)
        ax.set_xlabel("relative error (%)")
        ax.set_ylabel("pixels")
        fig.tight_layout()
        out = ws.preview_dir / "eval_error_hist.png"
        with atomic_path(out) as tmp:
            fig.savefig(tmp, format="png", dpi=100)
        plt.close(fig)
        paths.append(out)
    return paths


def to_json(result: dict) -> str:
    """:func:`evaluate`'s result as indented JSON, without its private (``_``) entries."""
    return json.dumps({k: v for k, v in result.items() if not k.startswith("_")}, indent=2, sort_keys=True)


make_callable(__name__, evaluate)  # mannequin.evaluate(...) is this function (see mannequin._api)
