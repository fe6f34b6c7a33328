"""Colour maps for depth and confidence: Google's Turbo table and the mappings built on it.

Pure functions, numpy in and ``(H, W, 3) uint8`` RGB out.

Conventions
-----------
* Depth maps are ``(H, W)`` floats in the units of the poses; ``0`` or a non-finite value means
  "no depth" and is drawn black.
* Colour ranges (``vmin``, ``vmax``) are always given in depth units, whatever the colouring mode.
* The colormap is Google's *Turbo* (its 256-entry table, embedded): index 0 is dark blue (far),
  index 255 dark red (near).
"""
from __future__ import annotations

import numpy as np

__all__ = ["TURBO_LUT", "turbo", "valid_depth", "depth_range", "colorize_depth", "colorize_confidence"]

# --- Turbo colormap ---------------------------------------------------------------------------
# Google's Turbo colormap (A. Mikhailov, 2019; Apache-2.0), its 256-entry sRGB table as hex RGB
# triplets.  The published degree-5 polynomial approximation is off by up to 32/255 at the dark
# ends, so the exact table is embedded instead (768 bytes).
_TURBO_HEX = (
    "30123b32154333184a341b51351e5836215f37246638276d392a733a2d793b2f803c32863d358b3e38913f3b973f3e9c"
    "4040a24143a74146ac4249b1424bb5434eba4451bf4454c34456c74559cb455ccf455ed34661d64664da4666dd4669e0"
    "466be3476ee64771e94773eb4776ee4778f0477bf2467df44680f64682f84685fa4687fb458afc458cfd448ffe4391fe"
    "4294ff4196ff4099ff3e9bfe3d9efe3ba0fd3aa3fc38a5fb37a8fa35abf833adf731aff52fb2f42eb4f22cb7f02ab9ee"
    "28bceb27bee925c0e723c3e422c5e220c7df1fc9dd1ecbda1ccdd81bd0d51ad2d21ad4d019d5cd18d7ca18d9c818dbc5"
    "18ddc218dec018e0bd19e2bb19e3b91ae4b61ce6b41de7b21fe9af20eaac22ebaa25eca727eea42aefa12cf09e2ff19b"
    "32f29835f39438f4913cf58e3ff68a43f78746f8844af8804ef97d52fa7a55fa7659fb735dfc6f61fc6c65fd6969fd66"
    "6dfe6271fe5f75fe5c79fe597dff5680ff5384ff5188ff4e8bff4b8fff4992ff4796fe4499fe429cfe409ffd3fa1fd3d"
    "a4fc3ca7fc3aa9fb39acfb38affa37b1f936b4f836b7f735b9f635bcf534bef434c1f334c3f134c6f034c8ef34cbed34"
    "cdec34d0ea34d2e935d4e735d7e535d9e436dbe236dde037dfdf37e1dd37e3db38e5d938e7d739e9d539ebd339ecd13a"
    "eecf3aefcd3af1cb3af2c93af4c73af5c53af6c33af7c13af8be39f9bc39faba39fbb838fbb637fcb336fcb136fdae35"
    "fdac34fea933fea732fea431fea130fe9e2ffe9b2dfe992cfe962bfe932afe9029fd8d27fd8a26fc8725fc8423fb8122"
    "fb7e21fa7b1ff9781ef9751df8721cf76f1af66c19f56918f46617f36315f26014f15d13f05b12ef5811ed5510ec530f"
    "eb500eea4e0de84b0ce7490ce5470be4450ae2430ae14109df3f08dd3d08dc3b07da3907d83706d63506d43305d23105"
    "d02f05ce2d04cc2b04ca2a04c82803c52603c32503c12302be2102bc2002b91e02b71d02b41b01b21a01af1801ac1701"
    "a91601a71401a41301a112019e10019b0f01980e01950d01920b018e0a018b09028808028507028106027e05027a0403"
)

#: ``(256, 3) uint8``: the Turbo table (index 0 = dark blue = far, 255 = dark red = near).
TURBO_LUT: np.ndarray = np.frombuffer(bytes.fromhex(_TURBO_HEX), np.uint8).reshape(256, 3).copy()
TURBO_LUT.setflags(write=False)


def turbo(t: np.ndarray) -> np.ndarray:
    """Map ``t`` (any shape, floats in [0, 1], clipped) to ``t.shape + (3,)`` uint8 Turbo colours."""
    idx = np.clip(np.rint(np.asarray(t, np.float64) * 255.0), 0, 255).astype(np.intp)
    return TURBO_LUT[idx]


# --- colour mapping ---------------------------------------------------------------------------

def valid_depth(depth: np.ndarray) -> np.ndarray:
    """``depth.shape`` bool: finite and strictly positive depth (any shape)."""
    d = np.asarray(depth)
    with np.errstate(invalid="ignore"):
        return np.isfinite(d) & (d > 0)


def depth_range(*depths: np.ndarray | None, lo: float = 2.0, hi: float = 98.0,
                max_samples: int = 1_000_000) -> tuple[float, float] | None:
    """Robust ``(vmin, vmax)`` in depth units: the ``lo``/``hi`` percentiles of all valid pixels.

    Takes any number of ``(H, W)`` depth maps (``None`` entries are ignored) and pools their valid
    pixels (subsampled to about ``max_samples`` for speed).  Returns None when no pixel is valid.
    ``vmax > vmin`` always holds for the returned pair.
    """
    samples = []
    for d in depths:
        if d is None:
            continue
        d = np.asarray(d, np.float32).ravel()
        step = max(1, d.size // max(1, max_samples))
        d = d[::step]
        samples.append(d[valid_depth(d)])
    vals = np.concatenate(samples) if samples else np.zeros(0, np.float32)
    if vals.size == 0:
        return None
    vmin, vmax = (float(v) for v in np.percentile(vals, [lo, hi]))
    if not vmax > vmin:  # flat scene or a single value: widen symmetrically
        eps = max(abs(vmin) * 1e-3, 1e-6)
        vmin, vmax = max(vmin - eps, vmin * 0.5), vmax + eps
    return vmin, vmax


def colorize_depth(depth: np.ndarray, vmin: float | None = None, vmax: float | None = None, *,
                   inverse: bool = True) -> np.ndarray:
    """Colour-map a depth map with Turbo; near is warm (red), far is cold (blue).

    depth: ``(H, W)`` float, pose units; ``0`` or non-finite = no depth.
    vmin, vmax: colour range in depth units (a missing bound comes from the 2nd/98th percentiles
    of the valid pixels).  Depths outside the range are clipped to the end colours.
    inverse: colour by inverse depth (``1/d``, linear in disparity: more detail near the camera)
    rather than by depth.  Either way nearer pixels get higher LUT indices.
    Returns ``(H, W, 3) uint8``; invalid pixels are black ``(0, 0, 0)``.
    """
    depth = np.asarray(depth)
    if depth.ndim != 2:
        raise ValueError(f"colorize_depth: expected an (H, W) depth map, got shape {depth.shape}")
    valid = valid_depth(depth)
    out = np.zeros(depth.shape + (3,), np.uint8)
    if not valid.any():
        return out
    if vmin is None or vmax is None:
        auto = depth_range(depth)
        assert auto is not None
        vmin = auto[0] if vmin is None else float(vmin)
        vmax = auto[1] if vmax is None else float(vmax)
    vmin, vmax = float(vmin), float(vmax)
    if vmin <= 0 and inverse:
        vmin = min(vmax, float(depth[valid].min())) if vmax > 0 else float(depth[valid].min())
    if not vmax > vmin:
        vmax = vmin * (1 + 1e-3) + 1e-6
    d = depth[valid].astype(np.float64)
    if inverse:
        lo, hi = 1.0 / vmax, 1.0 / vmin
        t = (1.0 / d - lo) / (hi - lo)
    else:
        t = (vmax - d) / (vmax - vmin)
    out[valid] = turbo(t)
    return out


def colorize_confidence(conf: np.ndarray) -> np.ndarray:
    """Grey ramp of a confidence map: ``(H, W)`` float in [0, 1] -> ``(H, W, 3) uint8``.

    ``0`` is black, ``1`` white; values are clipped to [0, 1] and non-finite values are black.
    """
    c = np.asarray(conf, np.float64)
    if c.ndim != 2:
        raise ValueError(f"colorize_confidence: expected an (H, W) map, got shape {c.shape}")
    c = np.where(np.isfinite(c), np.clip(c, 0.0, 1.0), 0.0)
    g = np.rint(c * 255).astype(np.uint8)
    return np.repeat(g[..., None], 3, axis=2)
