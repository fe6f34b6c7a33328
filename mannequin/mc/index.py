"""The dataset files of ``mannequin mc``: ``ROOT/index.csv``, ``ROOT/frames.csv``, ``ROOT/missing_videos.txt``.

- ``index.csv``: one row per sequence (:data:`INDEX_COLUMNS`), in id order, whatever its state.
- ``frames.csv``: one row per labelled frame (:data:`FRAME_COLUMNS`) of every sequence that is done
  or skipped: the frames whose labels the labels stage kept (``labels/index.csv`` ``kept``).
  Paths are relative to ROOT (the dataset can move); ``fx fy cx cy`` are pixels of
  ``images/<name>.png`` (pixel centres at +0.5, docs/FORMATS.md), the 12 pose numbers the
  world-to-camera ``[R | t]`` row by row, as ``WS/cameras.txt`` gives them (the camera file's own
  poses unless ``--refine-poses`` or ``--sfm`` changed them).
- ``missing_videos.txt``: the URLs of the missing videos, once each, sorted (empty when none).
All three are written atomically (:mod:`mannequin.workspace`).  Formats: docs/FORMATS.md.
"""
from __future__ import annotations

import csv
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mannequin.batch import FINISHED, Row
from mannequin.errors import MannequinError
from mannequin.mc.dataset_files import McSequence
from mannequin.workspace import Workspace, csv_text, read_json_or_empty, write_text

INDEX_COLUMNS = ["id", "url", "video", "frames", "labelled_frames", "verdict", "mean_labelled_fraction",
                 "pose_mode", "median_rotation_deg", "median_centre_move_rel", "state", "reason", "camera_file",
                 "workspace"]
POSE_COLUMNS = ["r11", "r12", "r13", "t1", "r21", "r22", "r23", "t2", "r31", "r32", "r33", "t3"]
FRAME_COLUMNS = ["id", "name", "timestamp_us", "image", "label", "confidence", "mask", "fx", "fy", "cx", "cy",
                 *POSE_COLUMNS]


def write_index(root: str | os.PathLike[str], sequences: Sequence[McSequence], rows: Sequence[Row],
                pose_mode: str) -> tuple[Path, Path, Path]:
    """Write ``root/index.csv``, ``root/frames.csv`` and ``root/missing_videos.txt`` for
    ``sequences`` and their status ``rows`` (same order); ``pose_mode`` is the mode asked for
    (``sfm.given_poses``), reported where a workspace's ``sfm/summary.json`` does not say.
    Returns the three paths."""
    root = Path(root)
    index_rows: list[dict[str, Any]] = []
    frame_rows: list[dict[str, Any]] = []
    for seq, row in zip(sequences, rows, strict=True):
        frames: list[dict[str, Any]] = []
        if row["state"] in FINISHED:
            try:
                frames = labelled_frames(root, seq.id)
            except (MannequinError, OSError) as exc:   # a workspace changed by hand: that sequence only
                row = {**row, "state": "failed", "reason": f"cannot index {root / seq.id}: {exc}"}
        index_rows.append(index_row(root, seq, row, pose_mode, frames))
        frame_rows += frames
    missing = sorted({seq.url.strip() for seq, row in zip(sequences, rows, strict=True) if row["state"] == "missing"})
    return (write_text(root / "index.csv", csv_text(INDEX_COLUMNS, index_rows)),
            write_text(root / "frames.csv", csv_text(FRAME_COLUMNS, frame_rows)),
            write_text(root / "missing_videos.txt", "".join(f"{url}\n" for url in missing)))


def index_row(root: Path, seq: McSequence, row: Row, pose_mode: str, frames: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The ``index.csv`` row of one sequence: ``labelled_frames`` = len(``frames``) and the
    workspace's verdict, mean labelled fraction (mean ``valid_fraction`` of ``labels/index.csv``)
    and ``given_poses`` figures, for a finished sequence; empty cells otherwise."""
    ws = Workspace(root / seq.id)
    finished = row["state"] in FINISHED
    given = read_json_or_empty(ws.sfm_dir / "summary.json").get("given_poses") or {} if finished else {}
    fractions = [float(r["valid_fraction"]) for r in _read_csv(ws.labels_dir / "index.csv")] if finished else []
    return {"id": seq.id, "url": seq.url, "video": seq.video or "", "frames": seq.frames,
            "labelled_frames": len(frames) if finished else None, "verdict": row.get("verdict"),
            "mean_labelled_fraction": round(sum(fractions) / len(fractions), 4) if fractions else None,
            "pose_mode": given.get("mode", pose_mode), "median_rotation_deg": _number(given.get("median_rotation_deg")),
            "median_centre_move_rel": _number(given.get("median_centre_move_rel")), "state": row["state"],
            "reason": row.get("reason", ""), "camera_file": seq.camera_file,
            "workspace": seq.id if ws.root.is_dir() else None}


def labelled_frames(root: Path, seq_id: str) -> list[dict[str, Any]]:
    """The ``frames.csv`` rows of the sequence ``seq_id``: its kept frames, with the intrinsics (px)
    and world-to-camera pose of ``WS/cameras.txt`` (its lines follow ``WS/images/*.png`` by name).
    Raises :class:`MannequinError` when the workspace's files disagree."""
    from mannequin.io.cameras import read_cameras
    from mannequin.io.images import image_header_size

    ws = Workspace(root / seq_id)
    names = ws.image_names()
    cams = read_cameras(ws.cameras_txt).frames
    if len(cams) != len(names):
        raise MannequinError(f"{ws.cameras_txt}: {len(cams)} camera lines for {len(names)} images in {ws.images_dir}")
    by_name = dict(zip(names, cams, strict=True))
    kept = [r["name"] for r in _read_csv(ws.labels_dir / "index.csv") if r.get("kept") == "true"]
    size = image_header_size(ws.images_dir / f"{names[0]}.png") if names else (0, 0)
    out = []
    for name in kept:
        cam = by_name.get(name)
        if cam is None:
            raise MannequinError(f"{ws.labels_dir / 'index.csv'}: frame {name} has no image in {ws.images_dir}")
        K = cam.intrinsics(*size)
        M = [*cam.pose.R[0], cam.pose.t[0], *cam.pose.R[1], cam.pose.t[1], *cam.pose.R[2], cam.pose.t[2]]
        rel = Path(seq_id)
        out.append({"id": seq_id, "name": name, "timestamp_us": cam.timestamp_us,
                    "image": (rel / "images" / f"{name}.png").as_posix(),
                    "label": (rel / "labels" / f"{name}.npy").as_posix(),
                    "confidence": (rel / "labels" / f"{name}.conf.npy").as_posix(),
                    "mask": (rel / "labels" / f"{name}.dynamic.png").as_posix(),
                    "fx": repr(float(K.fx)), "fy": repr(float(K.fy)), "cx": repr(float(K.cx)), "cy": repr(float(K.cy)),
                    **{c: repr(float(v)) for c, v in zip(POSE_COLUMNS, M, strict=True)}})
    return out


def _number(value: Any) -> float | None:
    """A JSON figure as a float rounded to 6 significant digits; None when absent or not a number."""
    return float(f"{float(value):.6g}") if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _read_csv(path: Path) -> list[dict[str, str]]:
    """The rows of a CSV file with a header ([] when absent)."""
    if not path.is_file():
        return []
    return list(csv.DictReader(path.read_text(encoding="utf-8").splitlines()))

