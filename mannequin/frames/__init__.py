"""The frames stage: a video or an image folder to WS/frames and frames.csv."""
from mannequin.frames.stage import extract_frames, input_line_of, list_images, read_frames_csv

__all__ = [
    "extract_frames", "input_line_of", "list_images", "read_frames_csv",
]
