"""Many videos through the pipeline on a Dask cluster: :func:`run_batch`.

- :mod:`mannequin.batch.inputs`: INPUT arguments and manifests become :class:`Job` s.
- :mod:`mannequin.batch.cluster`: the embedded cluster, the connection, threads per task.
- :mod:`mannequin.batch.video`: one video on a worker (:func:`process_video`), never raising.
- :mod:`mannequin.batch.status`: status rows, ``ROOT/status.csv`` / ``status.json``, the summary.
- :mod:`mannequin.batch.run`: :func:`run_batch`, and :func:`run_jobs` (prepared jobs, e.g. ``mannequin mc``).
"""
from mannequin.batch.cluster import cpu_count, local_cluster
from mannequin.batch.inputs import VIDEO_EXTENSIONS, Job, expand_inputs, is_video
from mannequin.batch.run import check_arguments, run_batch, run_jobs
from mannequin.batch.status import FINISHED, STATES, STATUS_COLUMNS, Row, format_summary, status_row, summarize, write_status
from mannequin.batch.video import is_finished, process_video

__all__ = [
    "FINISHED", "STATES", "STATUS_COLUMNS", "VIDEO_EXTENSIONS", "Job", "Row", "check_arguments", "cpu_count",
    "expand_inputs", "format_summary", "is_finished", "is_video", "local_cluster", "process_video", "run_batch",
    "run_jobs", "status_row", "summarize", "write_status",
]
