"""Reading a ``mannequin mc`` dataset back: :func:`read_dataset` (no torch dependency).

``read_dataset(ROOT)`` reads ``ROOT/frames.csv`` (one row per labelled frame, docs/FORMATS.md) and
gives an :class:`McDataset`: ``len``, indexing and iteration, each item a dict of one frame whose
arrays are loaded when it is asked for.
"""
from __future__ import annotations

import csv
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from mannequin.errors import InputError
from mannequin.mc.index import POSE_COLUMNS


class McDataset:
    """The labelled frames of a ``mannequin mc`` ROOT, in ``frames.csv`` order (sequence id, then
    frame name).  ``dataset[i]`` is a dict:

    - ``sequence`` (str, the id), ``name`` (str, the frame name), ``timestamp_us`` (int);
    - ``image``: (H, W, 3) uint8 RGB, ``WS/images/<name>.png`` (undistorted, the labels' frame);
    - ``label``: (H, W) float32 z-depth in the sequence's pose units, 0 = no label;
    - ``confidence``: (H, W) float32 in [0, 1], 0 where there is no label;
    - ``mask``: (H, W) bool, True = removed as moving;
    - ``K``: (3, 3) float64 intrinsics in pixels (pixel centres at +0.5);
    - ``pose``: (3, 4) float64 world-to-camera ``[R | t]`` (``X_cam = R X_world + t``, OpenCV axes).
    """

    def __init__(self, root: Path, rows: list[dict[str, str]]) -> None:
        self.root = root
        self.rows = rows

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return self._load(self.rows[index])

    def __iter__(self) -> Iterator[dict[str, Any]]:
        for row in self.rows:
            yield self._load(row)

    @property
    def sequences(self) -> list[str]:
        """The sequence ids that have labelled frames here, sorted."""
        return sorted({r["id"] for r in self.rows})

    def _load(self, row: dict[str, str]) -> dict[str, Any]:
        from mannequin.io.images import read_image_rgb

        def path(column: str) -> Path:
            return self.root / row[column]

        try:
            label = np.load(path("label"), allow_pickle=False).astype(np.float32, copy=False)
            confidence = np.load(path("confidence"), allow_pickle=False).astype(np.float32, copy=False)
        except (OSError, ValueError) as exc:
            raise InputError(f"{self.root / 'frames.csv'}: frame {row['id']}/{row['name']}: cannot read its "
                             f"labels ({exc})") from None
        image = read_image_rgb(path("image"))
        mask = read_image_rgb(path("mask"))[..., 0] > 127 if path("mask").is_file() else np.zeros(label.shape, bool)
        K = np.array([[float(row["fx"]), 0.0, float(row["cx"])], [0.0, float(row["fy"]), float(row["cy"])],
                      [0.0, 0.0, 1.0]])
        pose = np.array([float(row[c]) for c in POSE_COLUMNS]).reshape(3, 4)
        return {"sequence": row["id"], "name": row["name"], "timestamp_us": int(row["timestamp_us"]),
                "image": image, "label": label, "confidence": confidence, "mask": mask, "K": K, "pose": pose}


def read_dataset(root: str | os.PathLike[str], sequences: Iterable[str] | str | None = None) -> McDataset:
    """The labelled frames of the ``mannequin mc`` output ``root`` (its ``frames.csv``), as an
    :class:`McDataset` of dicts (``sequence``, ``name``, ``timestamp_us``, ``image``, ``label``,
    ``confidence``, ``mask``, ``K``, ``pose``; shapes and units there), loaded one at a time.

    ``sequences``: ids to keep (one id, or several); None keeps every sequence.  Raises
    :class:`InputError` when ``root`` holds no ``frames.csv`` or an id is not in ``root/index.csv``.
    """
    root = Path(root)
    frames_csv = root / "frames.csv"
    if not frames_csv.is_file():
        raise InputError(f"{root}: no frames.csv (not an output of 'mannequin mc', or it has not finished)")
    rows = list(csv.DictReader(frames_csv.read_text(encoding="utf-8").splitlines()))
    if sequences is not None:
        wanted = [sequences] if isinstance(sequences, str) else list(sequences)
        index = root / "index.csv"
        known = {r["id"] for r in csv.DictReader(index.read_text(encoding="utf-8").splitlines())} \
            if index.is_file() else {r["id"] for r in rows}
        unknown = sorted(set(wanted) - known)
        if unknown:
            raise InputError(f"{root}: no sequence {', '.join(unknown)} in index.csv")
        keep = set(wanted)
        rows = [r for r in rows if r["id"] in keep]
    return McDataset(root, rows)
