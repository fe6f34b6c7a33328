"""The Mannequin Challenge / RealEstate10K front door: ``mannequin mc`` and :func:`read_dataset`.

- :mod:`mannequin.mc.dataset_files`: camera files, sequence ids, URL → video id, ``--videos``.
- :mod:`mannequin.mc.run`: :func:`run_mc`, every sequence through the batch path (:mod:`mannequin.batch`).
- :mod:`mannequin.mc.index`: ``ROOT/index.csv``, ``ROOT/frames.csv``, ``ROOT/missing_videos.txt``.
- :mod:`mannequin.mc.reader`: :func:`read_dataset`, the labelled frames read back (no torch).
"""
from mannequin.mc.dataset_files import McSequence, VideoFinder, find_camera_files, read_sequences, video_id
from mannequin.mc.index import FRAME_COLUMNS, INDEX_COLUMNS, write_index
from mannequin.mc.reader import McDataset, read_dataset
from mannequin.mc.run import NoCameraFiles, mc_config, run_mc

__all__ = [
    "FRAME_COLUMNS", "INDEX_COLUMNS", "McDataset", "McSequence", "NoCameraFiles", "VideoFinder", "find_camera_files",
    "mc_config", "read_dataset", "read_sequences", "run_mc", "video_id", "write_index",
]
