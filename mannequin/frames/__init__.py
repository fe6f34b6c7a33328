"""The frames stage: a video or an image folder to WS/frames and frames.csv."""
from mannequin.frames.stage import extract_frames, input_line_of, kept_names, read_frames_csv
from mannequin.io.images import list_images

__all__ = [
    "extract_frames", "input_line_of", "kept_names", "list_images", "read_frames_csv",
]
