"""The labels stage: label PNGs, index.csv, previews and the HTML report."""
from mannequin.labels.stage import read_index, run_labels, write_report_html

__all__ = [
    "read_index", "run_labels", "write_report_html",
]
