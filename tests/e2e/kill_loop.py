"""Kill loop: SIGKILL `vitsearch index` at random instants, check the store after each kill, then
finish the run and compare with a clean one. Prints how many kills the store survived.

    python tests/e2e/kill_loop.py [--kills 25] [--images 120] [--seed 0] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import json
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.conftest import write_scenes
from tests.e2e.test_crash import assert_invariants, assert_same, snapshot


def index_command(folder: Path, store: Path) -> list[str]:
    return [sys.executable, "-m", "vitsearch.ui.cli", "index", str(folder), "--store", str(store),
            "--weights", "random", "--batch-size", "8", "--json"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kills", type=int, default=25)
    parser.add_argument("--images", type=int, default=120)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workdir")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    work = Path(args.workdir or tempfile.mkdtemp(prefix="vitsearch-kill-loop-"))
    folder = work / "photos"
    write_scenes(folder, range(args.images))
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff not really")
    repo = Path(__file__).resolve().parent.parent

    started = time.monotonic()
    subprocess.run(index_command(folder, work / "clean"), cwd=repo, check=True, capture_output=True)
    clean_seconds = time.monotonic() - started
    clean = snapshot(work / "clean")

    store = work / "store"
    survived = finished_early = 0
    for attempt in range(args.kills):
        process = subprocess.Popen(index_command(folder, store), cwd=repo,
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        time.sleep(rng.uniform(0.2, clean_seconds * 0.6))
        if process.poll() is not None:
            finished_early += 1  # later runs are no-ops: their kills land in open, repair and save
            continue
        process.send_signal(signal.SIGKILL)
        process.wait()
        if not (store / "metadata.duckdb").exists():
            survived += 1  # killed while loading the model, before the store was created: nothing to check
            continue
        try:
            assert_invariants(store)
            survived += 1
        except Exception as e:  # noqa: BLE001 - report, do not hide
            print(json.dumps({"kill": attempt, "store_broken": repr(e)}))
            return 1
    final = subprocess.run(index_command(folder, store), cwd=repo, capture_output=True, text=True)
    assert final.returncode == 0, final.stderr
    assert_invariants(store)
    assert_same(snapshot(store), clean)
    print(json.dumps({"kills": args.kills - finished_early, "survived": survived,
                      "runs_finished_before_kill": finished_early, "images": args.images,
                      "final_equals_clean_run": True, "clean_run_seconds": round(clean_seconds, 1)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
