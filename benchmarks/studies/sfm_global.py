"""pycolmap's global mapper against the incremental one (``sfm.mapper``), on synth-0, fountain,
templeRing and TUM a-calib, each beside its incremental twin in the same run: the sfm benchmark's
``--global-only`` rows, written to ``benchmarks/results/sfm_global.json`` (about 5 minutes; `make
studies`).  docs/FINDINGS.md ("Global against incremental mapping") reads them."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from sfm import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(["--global-only", *sys.argv[1:]]))
