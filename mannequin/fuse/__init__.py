"""The fuse stage: multi-view consistency filtering of the raw depth into labels, and the fused cloud."""
from mannequin.fuse.consistency import check_geometric_consistency, consistency_votes, filter_depth
from mannequin.fuse.stage import filter_from_votes, run_fuse

__all__ = [
    "check_geometric_consistency", "consistency_votes", "filter_depth", "filter_from_votes",
    "run_fuse",
]
