"""Start-up: wall time of the commands people run one at a time; one JSON line per figure.

    python tests/bench/startup_bench.py [--runs 5]

In a scratch folder: a store of a few photos (random weights), then `vitsearch search FILE` with
a photo that is not indexed (the model must run) and `vitsearch index` of a folder holding one
photo into a fresh store. Each first with an empty prepared-model cache (the first run a user
makes), then `--runs` times with it filled (every later run), as medians; against
`python -c "import torch"` in the same run, the floor any command that runs the model pays.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from PIL import Image


def emit(**figure) -> None:
    print(json.dumps(figure), flush=True)


def wall(command: list[str], env: dict) -> float:
    started = time.perf_counter()
    subprocess.run(command, cwd=REPO, env=env, check=True, capture_output=True)
    return time.perf_counter() - started


def main() -> None:
    import skimage

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    cli = [sys.executable, "-m", "vitsearch.ui.cli"]
    with tempfile.TemporaryDirectory(prefix="vitsearch-startup-") as scratch:
        root = Path(scratch)
        env = dict(os.environ, VITSEARCH_CACHE=str(root / "cache"))
        data = Path(skimage.__file__).parent / "data"
        (root / "photos").mkdir()
        (root / "one").mkdir()
        for name in ("astronaut.png", "chelsea.png", "coffee.png"):
            Image.open(data / name).convert("RGB").save(root / "photos" / f"{Path(name).stem}.jpg", quality=90)
        Image.open(data / "rocket.jpg").convert("RGB").resize((2400, 1600)).save(root / "query.jpg", quality=90)
        shutil.copy(root / "query.jpg", root / "one" / "photo.jpg")
        store = root / "store"
        subprocess.run([*cli, "index", str(root / "photos"), "--store", str(store), "--weights", "random"],
                       cwd=REPO, env=env, check=True, capture_output=True)
        shutil.rmtree(root / "cache")  # the first timed run starts from an empty cache

        search = [*cli, "search", str(root / "query.jpg"), "--store", str(store), "-k", "3"]

        def index_one() -> list[str]:
            shutil.rmtree(root / "one-store", ignore_errors=True)
            return [*cli, "index", str(root / "one"), "--store", str(root / "one-store"), "--weights", "random"]

        torch_floor = statistics.median(wall([sys.executable, "-c", "import torch"], env) for _ in range(args.runs))
        first_search = wall(search, env)
        searches = statistics.median(wall(search, env) for _ in range(args.runs))
        shutil.rmtree(root / "cache")
        first_index = wall(index_one(), env)
        indexes = statistics.median(wall(index_one(), env) for _ in range(args.runs))
    emit(figure="import_torch", wall_s=round(torch_floor, 2))
    for name, first, later in (("search_file", first_search, searches), ("index_one_photo", first_index, indexes)):
        emit(figure=name, first_run_wall_s=round(first, 2), later_runs_median_wall_s=round(later, 2),
             vs_import_torch=round(later / torch_floor, 2), bar_s=3.0)


if __name__ == "__main__":
    main()
