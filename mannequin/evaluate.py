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
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from .errors import InputError
from .metrics import ate_rmse, depth_metrics
from .workspace import Workspace, read_json_or_empty

GT_EXTS = (".npy", ".png", ".pfm")


def read_pfm(path) -> np.ndarray:
    """Read a PFM file (grey or colour) as float32, top row first."""
    with open(path, "rb") as fh:
        header = fh.readline().strip()
        if header not in (b"Pf", b"PF"):
            raise InputError(f"{path}: not a PFM file")
        w, h = (int(v) for v in fh.readline().split())
        scale = float(fh.readline())
        data = np.fromfile(fh, dtype="<f4" if scale < 0 else ">f4")
    shape = (h, w) if header == b"Pf" else (h, w, 3)
    if data.size != int(np.prod(shape)):
        raise InputError(f"{path}: PFM data size does not match {w}x{h}")
    return np.flipud(data.reshape(shape)).astype(np.float32)


def read_gt_depth(path, depth_scale: float = 1.0) -> np.ndarray:
    """GT depth (H, W) float32 in metres (or pose units); 0 = none.

    .npy: float depth as stored; .png: uint16 / ``depth_scale`` (TUM: 5000); .pfm: float.
    Non-finite values become 0.
    """
    path = Path(path)
    if path.suffix == ".npy":
        d = np.load(path).astype(np.float32)
    elif path.suffix == ".png":
        import imageio.v3 as iio

        d = iio.imread(path).astype(np.float32) / float(depth_scale)
    elif path.suffix == ".pfm":
        d = read_pfm(path)
    else:
        raise InputError(f"{path}: unsupported GT depth format (use .npy, .png or .pfm)")
    if d.ndim != 2:
        raise InputError(f"{path}: GT depth must be a single-channel image, got shape {d.shape}")
    return np.where(np.isfinite(d) & (d > 0), d, 0).astype(np.float32)


def distort_opencv(x: np.ndarray, y: np.ndarray, dist: Sequence[float]):
    """Apply OpenCV distortion (k1, k2, p1, p2[, k3]) to normalised coordinates (N,)."""
    k1, k2, p1, p2 = (list(dist) + [0.0] * 4)[:4]
    k3 = dist[4] if len(dist) > 4 else 0.0
    r2 = x * x + y * y
    radial = 1 + k1 * r2 + k2 * r2 * r2 + k3 * r2 ** 3
    xd = x * radial + 2 * p1 * x * y + p2 * (r2 + 2 * x * x)
    yd = y * radial + p1 * (r2 + 2 * y * y) + 2 * p2 * x * y
    return xd, yd


def sample_through_points(label: np.ndarray, K: np.ndarray, gt: np.ndarray, gt_camera) -> tuple:
    """Label depths and GT depths at the same 3-D points.

    label (H, W) z-depth on the pinhole camera ``K`` (pixel centres at +0.5); gt (Hg, Wg) z-depth of
    a camera at the same centre and orientation with intrinsics ``gt_camera = (fx, fy, cx, cy,
    dist)`` in the OpenCV convention (pixel centre at integers) and OpenCV distortion ``dist``.
    Returns (pred (N,), gt (N,)) for labelled pixels that land inside the GT image (gt 0 = none).
    """
    rows, cols = np.nonzero(label > 0)
    z = label[rows, cols].astype(np.float64)
    x = (cols + 0.5 - K[0, 2]) / K[0, 0]
    y = (rows + 0.5 - K[1, 2]) / K[1, 1]
    fx, fy, cx, cy, dist = gt_camera
    xd, yd = distort_opencv(x, y, dist)
    u = np.rint(fx * xd + cx).astype(np.int64)
    v = np.rint(fy * yd + cy).astype(np.int64)
    inside = (u >= 0) & (v >= 0) & (u < gt.shape[1]) & (v < gt.shape[0])
    g = np.zeros_like(z)
    g[inside] = gt[v[inside], u[inside]]
    return z.astype(np.float32), g.astype(np.float32)


def _gt_file(gt_dir: Path, name: str) -> Optional[Path]:
    for ext in GT_EXTS:
        p = gt_dir / f"{name}{ext}"
        if p.exists():
            return p
    return None


def evaluate(ws: Workspace, gt_dir, *, depth_scale: float = 1.0, gt_camera=None, gt_poses=None,
             fit_scale: Optional[bool] = None, which: str = "labels") -> dict:
    """Depth metrics of ``WS/<which>/<name>.npy`` against GT, per frame and per clip (+ ATE).

    ``which``: "labels" or "depth" (the raw sweep).  ``fit_scale``: None = fit one scale per clip
    when the poses came from SfM, 1 with known poses.  ``gt_poses``: an MC camera file or a TUM
    trajectory (``name ts tx ty tz qx qy qz qw`` or ``ts tx ty tz qx qy qz qw``) whose i-th pose
    belongs to the i-th frame; adds ``poses`` with the ATE after Sim(3) alignment.
    Returns {"clip": {...}, "frames": [...], "poses": {...}?}.
    """
    import pycolmap

    from .views import sparse_geometry

    gt_dir = Path(gt_dir)
    if not gt_dir.is_dir():
        raise InputError(f"{gt_dir}: GT depth folder not found")
    src_dir = ws.labels_dir if which == "labels" else ws.depth_dir
    geo = sparse_geometry(pycolmap.Reconstruction(str(ws.sparse_dir)))
    K = {Path(n).stem: geo.K[k] for k, n in enumerate(geo.names)}
    pairs, names = [], []
    for name in sorted(K):
        pred_path = src_dir / f"{name}.npy"
        gt_path = _gt_file(gt_dir, name)
        if not pred_path.exists() or gt_path is None:
            continue
        pred, gt = np.load(pred_path), read_gt_depth(gt_path, depth_scale)
        if gt_camera is not None:
            p, g = sample_through_points(pred, K[name], gt, gt_camera)
            # density: labelled share of GT pixels is measured in the GT image's own grid
            valid_gt = int((gt > 0).sum())
            pairs.append((p, g, valid_gt))
        else:
            if gt.shape != pred.shape:
                raise InputError(f"{gt_path}: GT size {gt.shape[::-1]} differs from the label size {pred.shape[::-1]} "
                                 "(pass the GT camera to compare through 3-D points)")
            pairs.append((pred, gt, None))
        names.append(name)
    if not pairs:
        raise InputError(f"{gt_dir}: no GT depth file matches a frame of {src_dir} (names like {sorted(K)[0]}.png)")
    summary = read_json_or_empty(ws.sfm_dir / "summary.json")
    if fit_scale is None:
        fit_scale = summary.get("mode", "sfm") == "sfm"
    if fit_scale:
        ratios = np.concatenate([g[(p > 0) & (g > 0)] / p[(p > 0) & (g > 0)] for p, g, _ in pairs])
        scale = float(np.median(ratios)) if ratios.size else float("nan")
    else:
        scale = 1.0
    frames, all_p, all_g = [], [], []
    for name, (p, g, valid_gt) in zip(names, pairs):
        m = depth_metrics(p.reshape(1, -1) if p.ndim == 1 else p, g.reshape(1, -1) if g.ndim == 1 else g, scale=scale)
        if valid_gt is not None:  # through 3-D points: density over the GT image's valid pixels
            m["density"] = float(((p > 0) & (g > 0)).sum() / max(valid_gt, 1))
        frames.append({"name": name, **m})
        all_p.append(p.ravel())
        all_g.append(g.ravel())
    P, G = np.concatenate(all_p), np.concatenate(all_g)
    clip = depth_metrics(P[None], G[None], scale=scale)
    both = (P > 0) & (G > 0)
    errs = np.abs(scale * P[both] - G[both]) / G[both]
    clip["density"] = float(np.mean([f["density"] for f in frames]))
    clip.update({"scale": scale, "scale_fitted": bool(fit_scale), "frames": len(frames), "source": which})
    out = {"clip": _clean(clip), "frames": [_clean(f) for f in frames], "_errors": errs[:: max(1, errs.size // 200000)]}
    if gt_poses is not None:
        out["poses"] = _pose_metrics(ws, gt_poses)
    return out


def _clean(d: dict) -> dict:
    return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in d.items()}


def _pose_metrics(ws: Workspace, gt_poses) -> dict:
    from .cameras import read_cameras

    gt_poses = Path(gt_poses)
    if not gt_poses.is_file():
        raise InputError(f"{gt_poses}: GT pose file not found")
    est = read_cameras(ws.cameras_txt)
    try:
        gt_centers = np.array([f.pose.center for f in read_cameras(gt_poses).frames])
    except InputError:
        rows = [ln.split() for ln in gt_poses.read_text().splitlines() if ln.strip() and not ln.startswith("#")]
        try:
            gt_centers = np.array([[float(v) for v in r[-7:-4]] for r in rows])
        except ValueError:
            raise InputError(f"{gt_poses}: neither an MC camera file nor a TUM trajectory") from None
    if len(gt_centers) != len(est.frames):
        raise InputError(f"{gt_poses}: {len(gt_centers)} GT poses for {len(est.frames)} frames in {ws.cameras_txt}")
    return ate_rmse(np.array([f.pose.center for f in est.frames]), gt_centers)


def write_eval_plots(ws: Workspace, result: dict) -> list:
    """Per-frame AbsRel and density, and a relative-error histogram, under WS/preview/."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .workspace import atomic_path

    frames = result["frames"]
    paths = []
    fig, ax = plt.subplots(2, 1, figsize=(8, 5), sharex=True)
    idx = np.arange(len(frames))
    ax[0].plot(idx, [100 * (f["absrel"] or 0) for f in frames], "o-")
    ax[0].set_ylabel("AbsRel (%)")
    ax[1].plot(idx, [100 * (f["density"] or 0) for f in frames], "o-", color="tab:green")
    ax[1].set_ylabel("density (%)")
    ax[1].set_xlabel("frame")
    fig.suptitle(f"{ws.root.name}: AbsRel {100 * (result['clip']['absrel'] or 0):.2f}% "
                 f"at {100 * result['clip']['density']:.0f}% density")
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
    return json.dumps({k: v for k, v in result.items() if not k.startswith("_")}, indent=2, sort_keys=True)
