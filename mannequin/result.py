"""What a stage returns to the pipeline: :class:`StageResult`."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class StageResult:
    """The outcome of one stage run.

    ``stage``: the stage's name (``config.STAGES``).  ``output``: the folder holding its main
    output (``WS/frames``, ``WS/sparse``, ``WS/depth``, ``WS/labels``).  ``report``: the counts and
    choices that go into ``WS/report.json`` under ``stages.<stage>`` (docs/FORMATS.md), built in
    memory by the stage itself, so the pipeline never reads a stage's files back to learn what it did.
    """

    stage: str
    output: Path
    report: dict[str, Any] = field(default_factory=dict)
