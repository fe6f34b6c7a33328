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
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from mannequin._api import make_callable
from mannequin.errors import InputError
from mannequin.metrics import ate_rmse, depth_metrics
from mannequin.workspace import Workspace, check_maps, read_json_or_empty

GT_EXTS = (".npy", ".png", ".pfm")
DISP_EXTS = (".pfm", ".npy", ".png", ".pgm")
GT_FORMATS = ("auto", "depth", "middlebury")
#: What ``evaluate`` scores: the labels, the raw stereo depth, or the SfM points of each frame.
WHICH = ("labels", "depth", "sparse")
_CALIB_NUMBERS = ("doffs", "baseline", "width", "height", "ndisp", "isint", "vmin", "vmax", "dyavg", "dymax")


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


def project_opencv(X: np.ndarray, camera) -> np.ndarray:
    """Camera points (M, 3) → pixels (M, 2) of a camera ``(fx, fy, cx, cy, dist)`` given in the
    OpenCV convention (OpenCV distortion), returned with pixel centres at +0.5 (COLMAP's, as
    :mod:`mannequin.sfm.rolling_shutter` expects)."""
    fx, fy, cx, cy, dist = camera
    xd, yd = distort_opencv(X[:, 0] / X[:, 2], X[:, 1] / X[:, 2], dist)
    return np.column_stack([fx * xd + cx + 0.5, fy * yd + cy + 0.5])


def sample_through_points(label: np.ndarray, K: np.ndarray, gt: np.ndarray, gt_camera, rolling=None) -> tuple:
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


# --- Middlebury disparity ------------------------------------------------------------------------

def _calib_matrix(path, key: str, text: str) -> np.ndarray:
    body = text.strip()
    if not (body.startswith("[") and body.endswith("]")):
        raise InputError(f"{path}: {key} must be a matrix like [f 0 cx; 0 f cy; 0 0 1], got {text.strip()!r}")
    try:
        rows = [[float(v) for v in row.split()] for row in body[1:-1].split(";")]
    except ValueError:
        raise InputError(f"{path}: {key} must be a 3x3 matrix of numbers, got {text.strip()!r}") from None
    if len(rows) != 3 or any(len(r) != 3 for r in rows):
        raise InputError(f"{path}: {key} must be a 3x3 matrix (rows separated by ';'), got {text.strip()!r}")
    M = np.array(rows, dtype=np.float64)
    if not (np.all(np.isfinite(M)) and M[0, 0] > 0 and M[1, 1] > 0):
        raise InputError(f"{path}: {key} must have a positive focal length, got {text.strip()!r}")
    return M


def read_middlebury_calib(path) -> dict:
    """Read a Middlebury 2014 ``calib.txt`` (``key=value`` lines).

    Returns a dict with ``cam0`` (and ``cam1`` if present): (3, 3) float64 intrinsics in pixels;
    ``f`` = cam0's focal length (px); ``cx``, ``cy`` = cam0's principal point (px); ``doffs``: the
    x-difference of the principal points, cx1 − cx0 (px; from cam1 when the line is missing);
    ``baseline``: camera distance (mm in Middlebury's files); and every other numeric key as a
    float (``width``, ``height``, ``ndisp``, ``vmin``, ``vmax``, …; ``width``/``height``/``ndisp``
    as int).  Raises :class:`InputError` naming the file when it is missing or malformed (a line
    without ``=``, a bad matrix, a non-numeric value, no ``cam0``, no ``baseline``, no ``doffs``
    and no ``cam1``, a baseline that is not positive).
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: Middlebury calibration file not found")
    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read the Middlebury calibration ({exc})") from None
    out: dict = {}
    for k, line in enumerate(lines, 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if "=" not in line:
            raise InputError(f"{path}: line {k} is not key=value: {line.strip()!r}")
        key, value = (v.strip() for v in line.split("=", 1))
        if key in ("cam0", "cam1"):
            out[key] = _calib_matrix(path, key, value)
        elif key in _CALIB_NUMBERS:
            try:
                num = float(value)
            except ValueError:
                raise InputError(f"{path}: {key} must be a number, got {value!r}") from None
            if not math.isfinite(num):
                raise InputError(f"{path}: {key} must be finite, got {value!r}")
            out[key] = int(num) if key in ("width", "height", "ndisp", "isint") and num.is_integer() else num
        else:
            out[key] = value
    if "cam0" not in out:
        raise InputError(f"{path}: no cam0=[f 0 cx; 0 f cy; 0 0 1] line")
    if "baseline" not in out:
        raise InputError(f"{path}: no baseline= line")
    if out["baseline"] <= 0:
        raise InputError(f"{path}: baseline must be positive, got {out['baseline']:g}")
    if "doffs" not in out:
        if "cam1" not in out:
            raise InputError(f"{path}: no doffs= line and no cam1 to derive it from")
        out["doffs"] = float(out["cam1"][0, 2] - out["cam0"][0, 2])
    out["f"] = float(out["cam0"][0, 0])
    out["cx"], out["cy"] = float(out["cam0"][0, 2]), float(out["cam0"][1, 2])
    return out


def middlebury_disparity_to_depth(disp, f: float, baseline: float, doffs: float) -> np.ndarray:
    """Depth from Middlebury disparity: ``Z = baseline · f / (d + doffs)``.

    Args:
        disp: (H, W) disparity d in pixels (x_left − x_right); non-finite (Middlebury's inf) = unknown.
        f: focal length in pixels; baseline: camera distance (Z comes out in its units: mm for
            Middlebury's calib.txt); doffs: x-difference of the principal points cx1 − cx0 in pixels.
    Returns:
        (H, W) float32 depth, 0 where the disparity is unknown or ``d + doffs <= 0`` (at infinity
        or behind).
    """
    d = np.asarray(disp, dtype=np.float64)
    if d.ndim != 2:
        raise ValueError(f"disparity must be (H, W), got shape {d.shape}")
    if not (f > 0 and baseline > 0 and math.isfinite(doffs)):
        raise ValueError(f"need f > 0, baseline > 0 and a finite doffs, got f={f}, baseline={baseline}, doffs={doffs}")
    den = d + doffs
    ok = np.isfinite(den) & (den > 0)
    z = np.zeros(d.shape, dtype=np.float64)
    z[ok] = baseline * f / den[ok]
    return z.astype(np.float32)


def read_disparity(path) -> np.ndarray:
    """A disparity map (H, W) float32 in pixels (or the file's integer units), NaN = unknown.

    .pfm (Middlebury 2014: inf = unknown) and .npy as stored (non-finite = unknown); .png/.pgm
    (Middlebury 2003 and earlier: 8/16-bit, scaled by a per-dataset factor) as the integer values,
    0 = unknown.
    """
    path = Path(path)
    if path.suffix == ".pfm":
        d = read_pfm(path)
    elif path.suffix == ".npy":
        d = np.load(path).astype(np.float32)
    elif path.suffix in (".png", ".pgm"):
        import imageio.v3 as iio

        raw = iio.imread(path)
        d = np.where(raw > 0, raw, np.nan).astype(np.float32)
    else:
        raise InputError(f"{path}: unsupported disparity format (use .pfm, .npy, .png or .pgm)")
    if d.ndim != 2:
        raise InputError(f"{path}: disparity must be a single-channel image, got shape {d.shape}")
    return np.where(np.isfinite(d), d, np.nan).astype(np.float32)


def read_middlebury_depth(path, calib: dict | None = None, depth_scale: float = 1.0) -> np.ndarray:
    """GT depth (H, W) float32 from a Middlebury disparity file; 0 = none.

    With ``calib`` (:func:`read_middlebury_calib`): Z = baseline·f/(d + doffs) / ``depth_scale``
    (mm for depth_scale 1, metres for 1000); the file must be float disparity (.pfm/.npy) of the
    calibration's width × height.  Without: 1/d, depth only up to scale (Middlebury 2003 and
    earlier, identical principal points, so doffs = 0).
    """
    path = Path(path)
    d = read_disparity(path)
    if calib is None:
        return middlebury_disparity_to_depth(d, 1.0, 1.0, 0.0)
    if path.suffix in (".png", ".pgm"):
        raise InputError(f"{path}: integer disparity has a dataset-specific scale; with calib.txt use a "
                         ".pfm (or .npy) disparity in pixels")
    w, h = calib.get("width"), calib.get("height")
    if w is not None and h is not None and d.shape != (int(h), int(w)):
        raise InputError(f"{path}: disparity size {d.shape[1]}x{d.shape[0]} differs from calib.txt's "
                         f"width x height {int(w)}x{int(h)}")
    return middlebury_disparity_to_depth(d, calib["f"], calib["baseline"], calib["doffs"]) / np.float32(depth_scale)


def resample_nearest(gt: np.ndarray, shape) -> np.ndarray:
    """``gt`` (Hg, Wg) sampled at the pixel centres of an (H, W) grid covering the same image."""
    H, W = shape
    Hg, Wg = gt.shape
    rows = np.minimum(((np.arange(H) + 0.5) * Hg / H).astype(np.int64), Hg - 1)
    cols = np.minimum(((np.arange(W) + 0.5) * Wg / W).astype(np.int64), Wg - 1)
    return gt[rows[:, None], cols[None, :]]


def _disp_file(gt_dir: Path, name: str) -> Path | None:
    stems = [name]
    m = re.fullmatch(r"im(\w*)", name)
    if m:
        stems.append(f"disp{m.group(1)}")
    for stem in stems:
        for ext in DISP_EXTS:
            p = gt_dir / f"{stem}{ext}"
            if p.exists():
                return p
    return None


def _match_gt(ws: Workspace, gt_dir: Path, names, gt_format: str) -> dict:
    """{frame name: GT file} for the frames ``names`` (sorted)."""
    if gt_format == "depth":
        found = {n: _gt_file(gt_dir, n) for n in names}
        return {n: p for n, p in found.items() if p is not None}
    found = {n: _disp_file(gt_dir, n) for n in names}
    found = {n: p for n, p in found.items() if p is not None}
    if not found:
        lone = [gt_dir / f"disp0{ext}" for ext in DISP_EXTS if (gt_dir / f"disp0{ext}").exists()]
        first = (ws.frame_names() or ws.image_names() or list(names))[:1]
        if lone and first and first[0] in names:
            found = {first[0]: lone[0]}
    return found


def _gt_file(gt_dir: Path, name: str) -> Path | None:
    for ext in GT_EXTS:
        p = gt_dir / f"{name}{ext}"
        if p.exists():
            return p
    return None


def evaluate(ws: Workspace, gt_dir, *, depth_scale: float = 1.0, gt_camera=None, gt_poses=None,
             fit_scale: bool | None = None, which: str = "labels", gt_format: str = "auto") -> dict:
    """Depth metrics of ``WS/<which>/<name>.npy`` against GT, per frame and per clip (+ ATE).

    ``which``: "labels", "depth" (the raw sweep) or "sparse" (the SfM points each frame observes,
    :func:`mannequin.stereo.views.sparse_depth_map`: the structure's accuracy, independent of the stereo;
    its density is tiny by nature).  ``fit_scale``: None = fit one scale per clip
    when the poses came from SfM, 1 with known poses.  ``gt_poses``: an MC camera file or a TUM
    trajectory (``name ts tx ty tz qx qy qz qw`` or ``ts tx ty tz qx qy qz qw``) whose i-th pose
    belongs to the i-th frame; adds ``poses`` with the ATE after Sim(3) alignment.
    ``gt_format``: "depth", "middlebury" (disparity, see the module docstring) or "auto"
    (middlebury when ``gt_dir/calib.txt`` exists).  ``depth_scale``: GT units per pose unit (PNG
    depth: TUM 5000; Middlebury mm: 1000 for poses in metres).
    Returns {"clip": {...}, "frames": [...], "poses": {...}?, "warnings": [...]?}; a warning when
    the frames were rolling-shutter corrected (``sfm/summary.json``) and the GT is compared pixel by
    pixel (no ``gt_camera``): such GT belongs to the recorded rows, not the corrected ones.
    """

    from mannequin.stereo import sparse_depth_map, sparse_geometry

    gt_dir = Path(gt_dir)
    if not gt_dir.is_dir():
        raise InputError(f"{gt_dir}: GT depth folder not found")
    if gt_format not in GT_FORMATS:
        raise InputError(f"--gt-format {gt_format}: unknown (use {', '.join(GT_FORMATS)})")
    calib_path = gt_dir / "calib.txt"
    if gt_format == "auto":
        gt_format = "middlebury" if calib_path.is_file() else "depth"
    calib = read_middlebury_calib(calib_path) if gt_format == "middlebury" and calib_path.is_file() else None
    if gt_format == "middlebury" and calib is None:
        fit_scale = True  # no calibration: disparity gives depth only up to scale
    src_dir = prediction_dir(ws, which)
    stage = {"labels": "fuse", "depth": "stereo", "sparse": "sfm"}.get(which)
    if stage and ws.stamps_dir.is_dir() and not ws.read_stamp(stage):
        raise InputError(f"{ws.root}: stage {stage} has not finished, so its {which} may be incomplete or stale "
                         f"(run 'mannequin run' or 'mannequin {stage}' again)")
    geo = sparse_geometry(ws.read_sparse())
    index = {Path(n).stem: k for k, n in enumerate(geo.names)}

    def load_pred(name):
        return sparse_depth_map(geo, index[name]) if which == "sparse" else np.load(src_dir / f"{name}.npy")

    names_with_pred = [n for n in sorted(index) if which == "sparse" or (src_dir / f"{n}.npy").exists()]
    if which != "sparse":  # a corrupt or mis-shaped map is named, not blamed on the GT
        check_maps([src_dir / f"{n}.npy" for n in names_with_pred],
                   [(geo.sizes[index[n]][1], geo.sizes[index[n]][0]) for n in names_with_pred])
    gt_files = _match_gt(ws, gt_dir, names_with_pred, gt_format)
    rs = read_json_or_empty(ws.sfm_dir / "summary.json").get("rolling_shutter") or {}
    rolling = ({Path(n).stem: (np.asarray(om), float(rs["readout_ms"]) * 1e-3) for n, om in rs.get("omega_rad_s", {}).items()}
               if rs.get("readout_ms", 0) > 0 else {})
    pairs, names = [], []
    for name in names_with_pred:
        gt_path = gt_files.get(name)
        if gt_path is None:
            continue
        pred = load_pred(name)
        if gt_format == "middlebury":
            gt = read_middlebury_depth(gt_path, calib, depth_scale)
        else:
            gt = read_gt_depth(gt_path, depth_scale)
        if gt_camera is not None:
            p, g = sample_through_points(pred, geo.K[index[name]], gt, gt_camera, rolling.get(name))
            # density: labelled share of GT pixels is measured in the GT image's own grid
            valid_gt = int((np.isfinite(gt) & (gt > 0)).sum())
            pairs.append((p, g, valid_gt))
        else:
            if gt.shape != pred.shape and gt_format == "middlebury" and _same_aspect(gt.shape, pred.shape):
                gt = resample_nearest(gt, pred.shape)
            if gt.shape != pred.shape:
                raise InputError(f"{gt_path}: GT size {gt.shape[::-1]} differs from the label size {pred.shape[::-1]} "
                                 "(pass the GT camera to compare through 3-D points)")
            pairs.append((pred, gt, None))
        names.append(name)
    if not pairs:
        first = sorted(index)[0] if index else "NAME"
        like = (f"{first}.pfm, disp<N>.pfm for frame im<N>, or a lone disp0.pfm" if gt_format == "middlebury"
                else f"{first}.png")
        hint = ("; for Middlebury disparity without calib.txt pass --gt-format middlebury"
                if gt_format == "depth" and any(gt_dir.glob("disp*.p?m")) else "")
        raise InputError(f"{gt_dir}: no GT {'disparity' if gt_format == 'middlebury' else 'depth'} file matches "
                         f"a frame of {src_dir} (names like {like}){hint}")
    summary = read_json_or_empty(ws.sfm_dir / "summary.json")
    if fit_scale is None:
        fit_scale = summary.get("mode", "sfm") == "sfm"
    if fit_scale:
        ratios = np.concatenate([g[(p > 0) & (g > 0)] / p[(p > 0) & (g > 0)] for p, g, _ in pairs])
        ratios = ratios[np.isfinite(ratios)]
        if not ratios.size:
            raise InputError(f"{gt_dir}: no pixel of {src_dir} has a valid GT depth to compare with, "
                             "so no scale can be fitted")
        scale = float(np.median(ratios))
    else:
        scale = 1.0
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
    clip.update({"scale": scale, "scale_fitted": bool(fit_scale), "frames": len(frames), "source": which,
                 "gt_format": gt_format if calib is not None or gt_format == "depth" else "middlebury-uncalibrated"})
    out = {"clip": _clean(clip), "frames": [_clean(f) for f in frames], "_errors": errs[:: max(1, errs.size // 200000)]}
    if rolling and gt_camera is None:
        out["warnings"] = [f"{ws.root}: the {which} sit on rolling-shutter-corrected frames (readout "
                           f"{float(rs['readout_ms']):g} ms) while pixel-registered GT belongs to the recorded "
                           "frames; pass --gt-intrinsics to compare through 3-D points"]
    if gt_poses is not None:
        out["poses"] = _clean(_pose_metrics(ws, gt_poses))
    return out


def _same_aspect(a, b, tol: float = 0.01) -> bool:
    """Two (H, W) grids covering the same image: the x and y scale factors agree within ``tol``."""
    sy, sx = a[0] / b[0], a[1] / b[1]
    return abs(sx - sy) <= tol * max(sx, sy)


def _clean(d: dict) -> dict:
    return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in d.items()}


def _pose_metrics(ws: Workspace, gt_poses) -> dict:
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


def write_eval_plots(ws: Workspace, result: dict) -> list:
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
    return json.dumps({k: v for k, v in result.items() if not k.startswith("_")}, indent=2, sort_keys=True)


make_callable(__name__, evaluate)  # mannequin.evaluate(...) is this function (see mannequin._api)
