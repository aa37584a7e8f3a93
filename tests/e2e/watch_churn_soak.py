"""Churn soak of `vitsearch index --watch` (issue 34): random churn of a photo tree (creates,
overwrites, renames and moves across folders, copies, folders made, moved and deleted) for MINUTES,
in bursts and gaps, with the watcher SIGKILLed at random moments, some during its start-up sync,
and restarted at once or after more churn that its start-up whole sync must find. At the end the
store must follow the tree, equal a fresh `vitsearch index` of it and hold the invariants, and no
watcher may have printed a traceback. Prints one JSON line of figures; exits 1 naming the seed on
any failure, leaving the steps (steps.log) and each watcher's stderr (watcher-N.log) in the workdir.

    python tests/e2e/watch_churn_soak.py [--minutes 10] [--kills 8] [--seed 0] [--workdir DIR]
        [--churn-while-starting]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.conftest import REPO
from tests.e2e.test_crash import assert_invariants
from tests.e2e.test_watch import equals_a_fresh_index, wait_until
from tests.e2e.test_watch_targeted import in_store, on_disk
from tests.indexer.churn import Churn, seed_tree

KILL_WHILE_STARTING = 0.3  # share of restarts killed again before they say "watching"
CONVERGE_LIMIT_SECONDS = 180  # the last bursts, maybe a restart's whole sync, on 2 shared cores


class Watcher:
    """The real `vitsearch index --watch` (the real architecture with random weights, as the other
    watcher tests run it) in a session of its own, so a kill takes any child with it; its stderr
    goes to a file, since a pipe nobody reads would fill and block it within minutes."""

    def __init__(self, folder: Path, store: Path, work: Path):
        self.folder, self.store, self.work = folder, store, work
        self.process: subprocess.Popen | None = None
        self.starts = 0
        self.start_seconds = 10.0  # replaced by the first start's

    @property
    def log(self) -> Path:
        return self.work / f"watcher-{self.starts}.log"

    def start(self) -> None:
        self.starts += 1
        with open(self.log, "w") as err:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "vitsearch.ui.cli", "index", str(self.folder), "--store", str(self.store),
                 "--weights", "random", "--watch"],
                cwd=REPO, stdout=subprocess.DEVNULL, stderr=err, start_new_session=True)

    def watching(self) -> bool:
        """Past its start-up sync: it printed `watching ...`."""
        assert self.process.poll() is None, f"the watcher exited ({self.process.returncode}): see {self.log}"
        return "\nwatching " in "\n" + self.log.read_text(errors="replace")

    def wait_watching(self) -> float:
        took = wait_until(self.watching, f"watcher {self.starts} past its start-up sync", limit=300)
        time.sleep(0.5)  # its OS watches are set up right after the line (see test_watch.start_watcher)
        return took

    def kill(self) -> None:
        assert self.process.poll() is None, f"the watcher exited ({self.process.returncode}): see {self.log}"
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        assert self.process.wait(timeout=120) == 0, f"SIGTERM: exit {self.process.returncode}, see {self.log}"

    def tracebacks(self) -> list[str]:
        return [path.name for path in sorted(self.work.glob("watcher-*.log")) if "Traceback" in path.read_text()]


def pause(rng: random.Random) -> float:
    """Bursts that one sync takes together, and gaps past the watcher's settle time (1.5 s) that
    split them into syncs of their own."""
    if rng.random() < 0.06:
        return rng.uniform(2.0, 6.0)
    return rng.choice([0.0, 0.0, 0.0, 0.05, 0.1, 0.3, 0.5, 1.0])


def difference(store: Path, folder: Path) -> str:
    """What the store's ok rows and the tree disagree on, briefly."""
    have, want = in_store(store), on_disk(folder)
    missing = sorted(set(want) - set(have))
    extra = sorted(set(have) - set(want))
    stale = sorted(p for p in set(want) & set(have) if want[p] != have[p])
    return json.dumps({"missing_from_store": missing[:10], "extra_in_store": extra[:10],
                       "other_content": stale[:10], "counts": [len(missing), len(extra), len(stale)]})


class Soak:
    """One soak: the tree, its churn, the watcher, the figures, and the log of every step taken."""

    def __init__(self, args, work: Path):
        self.args, self.work = args, work
        self.rng = random.Random(args.seed)
        self.folder, self.store = work / "photos", work / "store"
        self.churn = Churn(self.folder, self.rng)
        self.watcher = Watcher(self.folder, self.store, work)
        self.began = time.monotonic()
        self.steps = open(work / "steps.log", "w")
        self.figures = {"seed": args.seed, "minutes": args.minutes, "steps": 0, "steps_while_down": 0, "kills": 0,
                        "kills_while_starting": 0, "restarts": 0}

    def step(self, while_down: bool = False) -> None:
        done = self.churn.step()[0]
        self.steps.write(f"{time.monotonic() - self.began:8.2f} {'(down) ' if while_down else ''}{done}\n")
        self.steps.flush()
        self.figures["steps"] += 1
        self.figures["steps_while_down"] += while_down

    def run(self) -> None:
        seed_tree(self.folder, folders=6)
        self.watcher.start()
        self.watcher.start_seconds = self.watcher.wait_watching()
        duration, churning = self.args.minutes * 60, time.monotonic()
        end = churning + duration
        kill_at = sorted(churning + self.rng.uniform(0.05, 0.9) * duration for _ in range(self.args.kills))
        while time.monotonic() < end or kill_at:  # a kill overdue behind slow restarts still comes
            if kill_at and time.monotonic() >= kill_at[0]:
                kill_at.pop(0)
                self.kill_and_restart(kill_at)
                continue
            self.step()
            time.sleep(pause(self.rng))
        self.steps.write(f"{time.monotonic() - self.began:8.2f} churn ends\n")
        self.steps.close()
        self.finish()

    def kill_and_restart(self, kill_at: list[float]) -> None:
        """Kill -9, check the store opens whole, maybe churn while nobody watches, start again; some
        restarts are killed again mid start-up sync (a later scheduled kill taken early)."""
        while True:
            self.watcher.kill()
            self.figures["kills"] += 1
            assert_invariants(self.store)  # the store opens after every kill
            if self.rng.random() < 0.5:
                for _ in range(self.rng.randint(1, 8)):
                    self.step(while_down=True)
            self.watcher.start()
            self.figures["restarts"] += 1
            if not (kill_at and self.rng.random() < KILL_WHILE_STARTING):
                break
            time.sleep(self.rng.uniform(0.3, self.watcher.start_seconds))
            if self.watcher.watching():
                break
            kill_at.pop(0)
            self.figures["kills_while_starting"] += 1
        if not self.args.churn_while_starting:
            self.watcher.wait_watching()

    def finish(self) -> None:
        try:
            took = wait_until(lambda: in_store(self.store) == on_disk(self.folder), "the store follows the tree",
                              limit=CONVERGE_LIMIT_SECONDS)
        except AssertionError as e:
            raise AssertionError(f"{e}: {difference(self.store, self.folder)}") from None
        self.figures["converge_seconds"] = round(took, 1)
        self.watcher.stop()
        self.figures["rows"] = len(in_store(self.store))
        assert equals_a_fresh_index(self.store, self.folder, self.work), "the store differs from a fresh index"
        assert_invariants(self.store)
        traced = self.watcher.tracebacks()
        assert not traced, f"tracebacks in {traced}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=10)
    parser.add_argument("--kills", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workdir")
    parser.add_argument("--churn-while-starting", action="store_true",
                        help="churn on while a restarted watcher runs its start-up sync, not after it says watching")
    args = parser.parse_args()
    work = Path(args.workdir or tempfile.mkdtemp(prefix="vitsearch-watch-soak-"))
    work.mkdir(parents=True, exist_ok=True)
    soak = Soak(args, work)
    try:
        soak.run()
        soak.figures["result"] = "ok"
    except Exception as e:  # noqa: BLE001 - report with the seed, do not hide
        soak.figures["result"] = f"FAILED with --seed {args.seed}: {e}"
        print(f"watch churn soak failed (--seed {args.seed}); steps in {work / 'steps.log'}, watchers' stderr in "
              f"{work}/watcher-*.log", file=sys.stderr)
    finally:
        if soak.watcher.process is not None and soak.watcher.process.poll() is None:
            soak.watcher.kill()
    print(json.dumps(soak.figures))
    (work / "figures.json").write_text(json.dumps(soak.figures) + "\n")  # kept with the reproduction
    return 0 if soak.figures["result"] == "ok" else 1


if __name__ == "__main__":
    sys.exit(main())
