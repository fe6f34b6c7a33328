"""Ground-truth readers: depth maps (.npy, 16-bit .png, .pfm) and Middlebury disparity with ``calib.txt``.

Depth maps are (H, W) float32, top row first, 0 = no depth.  Middlebury 2014 disparity d (pixels,
x_left − x_right) becomes depth ``Z = baseline · f / (d + doffs)`` in the baseline's units (mm in
Middlebury's files); Middlebury 2003 and earlier (no ``calib.txt``) only up to scale, as 1/d.
"""
from __future__ import annotations

import math
import os
import re
from pathlib import Path
from typing import Any

import numpy as np

from mannequin.errors import InputError

#: GT depth file extensions, in the order :func:`gt_depth_file` tries them.
GT_EXTS = (".npy", ".png", ".pfm")
#: Disparity file extensions, in the order :func:`disparity_file` tries them.
DISP_EXTS = (".pfm", ".npy", ".png", ".pgm")
_CALIB_NUMBERS = ("doffs", "baseline", "width", "height", "ndisp", "isint", "vmin", "vmax", "dyavg", "dymax")


def read_pfm(path: str | os.PathLike) -> np.ndarray:
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


def read_gt_depth(path: str | os.PathLike, depth_scale: float = 1.0) -> np.ndarray:
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


# --- Middlebury disparity ------------------------------------------------------------------------

def _calib_matrix(path: Path, key: str, text: str) -> np.ndarray:
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


def read_middlebury_calib(path: str | os.PathLike) -> dict:
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


def middlebury_disparity_to_depth(disp: Any, f: float, baseline: float, doffs: float) -> np.ndarray:
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


def read_disparity(path: str | os.PathLike) -> np.ndarray:
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


def read_middlebury_depth(path: str | os.PathLike, calib: dict | None = None, depth_scale: float = 1.0) -> np.ndarray:
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


def disparity_file(gt_dir: Path, name: str) -> Path | None:
    """The disparity file of frame ``name`` in ``gt_dir``: ``<name><ext>``, or ``disp<N><ext>`` for a
    frame ``im<N>`` (:data:`DISP_EXTS` in order); None when there is none."""
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


def gt_depth_file(gt_dir: Path, name: str) -> Path | None:
    """The GT depth file ``<name><ext>`` of frame ``name`` in ``gt_dir`` (:data:`GT_EXTS` in order), or None."""
    for ext in GT_EXTS:
        p = gt_dir / f"{name}{ext}"
        if p.exists():
            return p
    return None
