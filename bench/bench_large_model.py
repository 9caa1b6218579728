"""`make bench` entry for bench/large_model.py (3.2 GiB synthetic FP16 model through the default
passes and the precision stage; goals <= 1 GB peak RSS, <= 5 s wall)."""

import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import large_model  # noqa: E402

if __name__ == "__main__":
    here = Path(__file__).resolve().parent
    large_model.main(here / "large_model.json")
    if len(sys.argv) > 1:
        shutil.copy(here / "large_model.json", sys.argv[1])
