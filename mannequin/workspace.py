"""The per-video workspace: typed paths (docs/FORMATS.md layout), atomic writes and stage stamps.

Every file a stage produces goes through :func:`atomic_path` (write to a hidden temporary name in
the same folder, fsync, then ``os.replace``), so a killed run never leaves a half-written file under
its final name.  A finished stage writes ``WS/stamps/<stage>.json`` holding the hash of the options
that produced it; :meth:`Workspace.is_done` compares that hash with the current config's.
"""
from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import shutil
import time
import uuid
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mannequin.errors import InputError, WriteError, one_line

#: A file or folder argument.
PathArg = str | os.PathLike[str]


@contextlib.contextmanager
def atomic_path(path: PathArg, *, is_dir: bool = False) -> Iterator[Path]:
    """Yield a temporary sibling path; on success move it onto ``path`` atomically.

    On an exception the temporary file or folder is removed and ``path`` is left as it was.
    For folders the old folder is moved aside first and removed after the rename.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    try:
        yield tmp
        if is_dir:
            old = None
            if path.exists():
                old = path.parent / f".{path.name}.old-{uuid.uuid4().hex[:6]}"
                os.replace(path, old)
            os.replace(tmp, path)
            if old is not None:
                shutil.rmtree(old, ignore_errors=True)
        else:
            with open(tmp, "rb") as fh:
                os.fsync(fh.fileno())
            os.replace(tmp, path)
    except BaseException as exc:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        elif tmp.exists():
            tmp.unlink()
        if isinstance(exc, OSError) and not isinstance(exc, WriteError):
            # numpy reports a short write without an errno ("N requested and M written")
            reason = exc.strerror or f"{one_line(exc)} (is the disk full, or a file size limit reached?)"
            err = WriteError(f"could not write {path}: {reason} (that file is as it was; the stage did not "
                             f"finish: run it again once this is fixed)")
            err.errno = exc.errno
            raise err from exc
        raise


def write_bytes(path: PathArg, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically; returns the path."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_text(path: PathArg, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically; returns the path."""
    return write_bytes(path, text.encode("utf-8"))


def csv_text(columns: Sequence[str], rows: Iterable[dict[str, Any]]) -> str:
    """``rows`` as CSV text: a header of ``columns``, then one line each (None → empty cell,
    other keys ignored, "\n" line ends)."""
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(columns), lineterminator="\n", extrasaction="ignore")
    w.writeheader()
    for r in rows:
        w.writerow({k: ("" if r.get(k) is None else r.get(k)) for k in columns})
    return buf.getvalue()


def write_json(path: PathArg, obj: Any) -> Path:
    """Write ``obj`` as indented JSON with sorted keys (numpy numbers and arrays, paths converted)
    to ``path`` atomically; returns the path."""
    return write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n")


def save_npy(path: PathArg, array: np.ndarray) -> Path:
    """Save ``array`` as a .npy file at ``path`` atomically; returns the path."""
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.save(fh, array)
    return Path(path)


def save_image(path: PathArg, image: np.ndarray, *, png_level: int = 1) -> Path:
    """Write an image (PNG: uint8 or uint16, grey or RGB; or JPEG) atomically.

    png_level: zlib level of a PNG (0-9).  Level 1 encodes a 640×360 uint16 depth PNG about 6×
    faster than Pillow's default 6, for files about 8% larger.
    """
    import imageio.v3 as iio

    path = Path(path)
    kwargs: dict[str, Any] = {"compress_level": int(png_level)} if path.suffix.lower() == ".png" else {}
    with atomic_path(path) as tmp:
        iio.imwrite(tmp, image, extension=path.suffix, **kwargs)
    return path


def _json_default(obj: Any) -> Any:
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.floating,)):
        return float(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def clean_temporaries(folder: PathArg) -> int:
    """Remove leftovers of killed writes (``.*.tmp-*`` and ``.*.old-*``) under ``folder``; returns
    how many."""
    n = 0
    folder = Path(folder)
    if not folder.is_dir():
        return 0
    for p in sorted(folder.rglob(".*.tmp-*")) + sorted(folder.rglob(".*.old-*")):
        if p.is_dir():
            shutil.rmtree(p, ignore_errors=True)
        elif p.exists():
            p.unlink()
        n += 1
    return n


def check_maps(paths: Sequence[PathArg], shapes: Sequence[Sequence[int]]) -> None:
    """Check that every ``paths[i]`` is a readable .npy map of shape ``shapes[i]`` ((H, W)) with a
    float dtype, by its header alone (memory-mapped, nothing loaded).  Raises :class:`InputError`
    naming the first file that is not: truncated, pickled, text, another shape or dtype.  Stages
    call it before they write anything, so a corrupt input file costs no partial output."""
    for path, shape in zip(paths, shapes, strict=False):
        try:
            arr = np.load(path, mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError, EOFError) as exc:
            raise InputError(f"{path}: not a readable .npy map ({one_line(exc, 120)})") from None
        want = tuple(int(v) for v in shape)
        if not isinstance(arr, np.ndarray) or arr.shape != want or arr.dtype.kind != "f":
            got = f"{getattr(arr, 'shape', '?')} {getattr(arr, 'dtype', '?')}"
            raise InputError(f"{path}: expected a float map of shape {want}, found {got}")


def prune_frames(folder: PathArg, keep: Iterable[str], suffixes: Sequence[str],
                 protect: Iterable[str] = ()) -> list[Path]:
    """Delete the per-frame files of ``folder`` that belong to no frame in ``keep``.

    A file ``<stem><suffix>`` (the longest matching suffix of ``suffixes`` decides the stem, so
    ``000001.conf.npy`` is frame ``000001`` under ``(".conf.npy", ".npy")``) is deleted when its
    stem is not in ``keep``; names in ``protect`` and files matching no suffix stay.  A stage calls
    this after writing its outputs, so that frames dropped since an earlier run (another input, a
    frame rejected on re-run) leave no stale labels behind.  Returns the deleted paths.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return []
    keep, protect = set(keep), set(protect)
    ordered = sorted(suffixes, key=len, reverse=True)
    removed = []
    for path in sorted(folder.iterdir()):
        if not path.is_file() or path.name in protect:
            continue
        suffix = next((x for x in ordered if path.name.endswith(x)), None)
        if suffix is not None and path.name[:-len(suffix)] not in keep:
            path.unlink()
            removed.append(path)
    return removed


class Workspace:
    """Typed paths of one video's workspace (see docs/FORMATS.md) plus stage stamps."""

    def __init__(self, root: PathArg) -> None:
        self.root = Path(root)
        if self.root.exists() and not self.root.is_dir():
            raise InputError(f"{self.root}: workspace path exists and is not a folder")

    def __repr__(self) -> str:
        return f"Workspace({str(self.root)!r})"

    def create(self) -> Workspace:
        """Create the workspace folder (with its parents); returns self."""
        self.root.mkdir(parents=True, exist_ok=True)
        return self

    # --- layout ---------------------------------------------------------------------------
    frames_dir = property(lambda self: self.root / "frames")
    frames_csv = property(lambda self: self.root / "frames.csv")
    frames_json = property(lambda self: self.root / "frames.json")
    images_dir = property(lambda self: self.root / "images")
    sparse_dir = property(lambda self: self.root / "sparse")
    cameras_txt = property(lambda self: self.root / "cameras.txt")
    sfm_dir = property(lambda self: self.root / "sfm")
    depth_dir = property(lambda self: self.root / "depth")
    stereo_dir = property(lambda self: self.root / "stereo")
    labels_dir = property(lambda self: self.root / "labels")
    fused_ply = property(lambda self: self.root / "fused.ply")
    preview_dir = property(lambda self: self.root / "preview")
    report_json = property(lambda self: self.root / "report.json")
    logs_dir = property(lambda self: self.root / "logs")
    stamps_dir = property(lambda self: self.root / "stamps")
    config_json = property(lambda self: self.root / "config.json")

    def depth_path(self, name: str) -> Path:
        return self.depth_dir / f"{name}.npy"

    def conf_path(self, name: str) -> Path:
        return self.depth_dir / f"{name}.conf.npy"

    def label_path(self, name: str) -> Path:
        return self.labels_dir / f"{name}.npy"

    def image_names(self) -> list[str]:
        """Stems of WS/images/*.png, sorted."""
        return sorted(p.stem for p in self.images_dir.glob("*.png"))

    def frame_names(self) -> list[str]:
        """Stems of WS/frames/*.png, sorted."""
        return sorted(p.stem for p in self.frames_dir.glob("*.png"))

    # --- stamps ---------------------------------------------------------------------------
    def stamp_path(self, stage: str) -> Path:
        return self.stamps_dir / f"{stage}.json"

    def read_stamp(self, stage: str) -> dict | None:
        """The stamp of a finished ``stage`` (a dict with its ``hash``), or None when it is missing
        or not a stamp (unreadable, edited by hand)."""
        p = self.stamp_path(stage)
        try:
            data = json.loads(p.read_text())
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) and isinstance(data.get("hash"), str) else None

    def is_done(self, stage: str, stage_hash: str) -> bool:
        """True when ``stage`` finished with options hashing to ``stage_hash`` and its main outputs
        are still there (a user who deletes ``WS/depth`` gets the stage run again, not skipped)."""
        stamp = self.read_stamp(stage)
        return stamp is not None and stamp.get("hash") == stage_hash and self.outputs_present(stage)

    def outputs_present(self, stage: str) -> bool:
        """Whether the files a finished ``stage`` leaves behind exist (a cheap check, no loading)."""
        if stage == "frames":
            return any(self.frames_dir.glob("*.png"))
        if stage == "sfm":
            return self.cameras_txt.is_file() and self.sparse_dir.is_dir() and any(self.images_dir.glob("*.png"))
        if stage == "stereo":
            names = self.image_names()
            return bool(names) and all(self.depth_path(n).is_file() and self.conf_path(n).is_file() for n in names)
        if stage == "fuse":
            return (self.labels_dir / "qc.json").is_file() and self.fused_ply.is_file()
        if stage == "labels":
            return (self.labels_dir / "index.csv").is_file() and (self.preview_dir / "report.html").is_file()
        return True

    def read_sparse(self) -> Any:
        """The pycolmap Reconstruction in ``WS/sparse``; :class:`InputError` naming the folder when it
        is missing or cannot be read (truncated or corrupt .bin files)."""
        import pycolmap

        if not any((self.sparse_dir / f"images.{ext}").is_file() for ext in ("bin", "txt")):
            raise InputError(f"{self.sparse_dir}: no sparse model (run 'mannequin sfm {self.root}' first)")
        try:
            return pycolmap.Reconstruction(str(self.sparse_dir))
        except (Exception, MemoryError) as exc:  # pycolmap raises ValueError, IndexError, bad_alloc...
            raise InputError(f"{self.sparse_dir}: cannot read the sparse model ({type(exc).__name__}: "
                             f"{one_line(exc, 120)}); run 'mannequin sfm {self.root}' again") from None

    def remove_superseded(self, stage: str) -> None:
        """Delete what ``stage`` left from an earlier run before it runs again, where that output
        would look finished beside a half-done new one: the labels, ``qc.json`` and ``fused.ply``
        (fuse); ``index.csv``, the previews and ``report.html``, the COLMAP maps (labels).  Stages
        that resume (stereo keeps the depth maps of its own options) or replace their folder in one
        rename (frames, sfm) have nothing here."""
        if stage == "fuse":
            for p in sorted(self.labels_dir.iterdir()) if self.labels_dir.is_dir() else []:
                if p.is_file():
                    p.unlink()
            self.fused_ply.unlink(missing_ok=True)
        elif stage == "labels":
            (self.labels_dir / "index.csv").unlink(missing_ok=True)
            for folder in (self.preview_dir, self.stereo_dir / "depth_maps", self.stereo_dir / "normal_maps"):
                if folder.is_dir():
                    shutil.rmtree(folder)

    def write_stamp(self, stage: str, stage_hash: str, **info: Any) -> Path:
        """Mark ``stage`` finished (written last, atomically, after all its outputs)."""
        data = {"stage": stage, "hash": stage_hash, "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        data.update(info)
        return write_json(self.stamp_path(stage), data)

    def clear_stamp(self, stage: str) -> None:
        """Remove the stamp of ``stage`` (it is no longer finished)."""
        p = self.stamp_path(stage)
        if p.exists():
            p.unlink()


def read_json_object(path: PathArg) -> Any:
    """The JSON object (or list) in the workspace file ``path``; :class:`InputError` naming the file
    when it is missing, unreadable or not JSON (a corrupt workspace is a clear error, not a traceback)."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"{path}: missing") from None
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: not readable JSON ({one_line(exc, 120)}); run its stage again") from None


def read_json_or_empty(path: PathArg) -> dict[str, Any]:
    """The JSON object in ``path``, or {} when it is missing or unreadable."""
    try:
        data = json.loads(Path(path).read_text())
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}
