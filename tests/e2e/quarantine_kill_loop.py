"""Kill loop for the cleanup: SIGKILL `vitsearch dupes --resolve ... --apply` and `--undo` at random
instants, with the store on a tmpfs and the library on disk (every move crosses file systems).
After each kill: every original's bytes are at its library path or, intact, at its place in the
quarantine with a manifest naming it, and no library path holds anything else (never a truncated
photo). Then the documented repair (the same command again, or --undo) and the same checks; at the
end --undo restores the library byte for byte. Needs root to mount the tmpfs. Prints one JSON line.

    python tests/e2e/quarantine_kill_loop.py [--kills 24] [--photos 16] [--seed 0] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.conftest import FakeEncoder, scene_bytes
from vitsearch.indexer import build_index

REPO = Path(__file__).resolve().parents[2]
PLAN = ("--resolve", "shortest-path")


def make_library(folder: Path, photos: int) -> None:
    """Originals of ~1 MB each (so a copy takes a moment) and one exact copy of each elsewhere, the
    copies with the files that belong to them (an XMP sidecar; an Apple edit file on every third),
    which move and come back with them."""
    (folder / "album").mkdir(parents=True)
    (folder / "copies").mkdir()
    for n in range(photos):
        data = scene_bytes(n, "JPEG", size=(1600, 1200), quality=97)
        (folder / "album" / f"{n:03d}.jpg").write_bytes(data)
        (folder / "copies" / f"{n:03d}-copy.jpg").write_bytes(data)
        (folder / "copies" / f"{n:03d}-copy.jpg.xmp").write_bytes(_SIDECAR % n)
        if n % 3 == 0:
            (folder / "copies" / f"{n:03d}-copy.AAE").write_bytes(b"<plist><dict/></plist>" * (n + 1))


_SIDECAR = (b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
            b'<rdf:Description rdf:about="" xmlns:xmp="http://ns.adobe.com/xap/1.0/" xmp:Label="copy %d"/>'
            b'</rdf:RDF></x:xmpmeta>')


def digests(folder: Path) -> dict[str, str]:
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*")) if p.is_file()}


def dupes(store: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "vitsearch.ui.cli", "dupes", "--store", str(store), *args]


def quarantined_copies(store: Path, path: str) -> list[Path]:
    """The file's copies in the quarantine: each apply moves into a folder of its own."""
    mirrored = Path(path).relative_to("/")
    return [folder / mirrored for folder in (store / ".quarantine").glob("manifest-*") if folder.is_dir()]


def manifest_names(store: Path) -> set[str]:
    named = set()
    for manifest in (store / ".quarantine").glob("manifest-*.json"):
        named |= {m["source"] for m in json.loads(manifest.read_text())["moves"]}
    return named


def check(library: Path, store: Path, originals: dict[str, str]) -> list[str]:
    """What is wrong with the tree now (empty when every photo is safe)."""
    problems = []
    now = digests(library)
    for path, digest in now.items():
        if Path(path).name.endswith(".vitsearch-partial"):
            continue  # a hidden partial copy: the next repair removes it
        if path not in originals:
            problems.append(f"unexpected file {path}")
        elif digest != originals[path]:
            problems.append(f"{path} holds other bytes (truncated?)")
    named = manifest_names(store)
    for path, digest in originals.items():
        if now.get(path) == digest:
            continue
        intact = [p for p in quarantined_copies(store, path)
                  if p.is_file() and hashlib.sha256(p.read_bytes()).hexdigest() == digest]
        if not intact:
            problems.append(f"{path}: its bytes are neither at home nor intact in the quarantine")
        elif path not in named:
            problems.append(f"{path}: quarantined but no manifest names it")
    return problems


def run_killed(command: list[str], delay: float) -> bool:
    """Run, SIGKILL after `delay` seconds; False when it finished first."""
    process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(delay)
    if process.poll() is not None:
        return False
    process.send_signal(signal.SIGKILL)
    process.wait()
    return True


def timed(command: list[str]) -> float:
    started = time.monotonic()
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
    if result.returncode not in (0, 1):
        raise SystemExit(f"{' '.join(command)} failed: {result.stderr}")
    return time.monotonic() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kills", type=int, default=24)
    parser.add_argument("--photos", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workdir")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    work = Path(args.workdir or tempfile.mkdtemp(prefix="vitsearch-cleanup-kill-loop-"))
    library, fast = work / "library", work / "fast"
    fast.mkdir(parents=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256m", "tmpfs", str(fast)], capture_output=True)
    if mounted.returncode != 0:
        print(json.dumps({"skipped": f"cannot mount a tmpfs: {mounted.stderr.decode().strip()}"}))
        return 3
    try:
        return loop(args, rng, library, fast / "store")
    finally:
        subprocess.run(["umount", "-l", str(fast)], check=False)


def loop(args, rng: random.Random, library: Path, store: Path) -> int:
    make_library(library, args.photos)
    build_index([library], store, encoder=FakeEncoder())
    originals = digests(library)
    # the window to aim at: a dry run is start-up and planning, the rest of an apply is moving
    dry = timed(dupes(store, *PLAN))
    window = {"apply": timed(dupes(store, *PLAN, "--apply")), "undo": timed(dupes(store, "--undo"))}
    assert digests(library) == originals, "a clean apply and undo restore the library"

    figures = {"kills": 0, "in_apply": 0, "in_undo": 0, "finished_first": 0, "mid_move": 0, "survived": 0,
               "problems": []}
    applied = False
    while figures["kills"] < args.kills:
        operation = "undo" if applied else "apply"
        command = dupes(store, "--undo") if applied else dupes(store, *PLAN, "--apply")
        delay = rng.uniform(dry * 0.8, window[operation] * 1.1)
        if not run_killed(command, delay):
            figures["finished_first"] += 1
            applied = not applied
            continue
        figures["kills"] += 1
        figures[f"in_{operation}"] += 1
        problems = check(library, store, originals)
        figures["mid_move"] += any(json.loads(m.read_text())["state"] in ("applying", "undoing")
                                   for m in (store / ".quarantine").glob("manifest-*.json"))
        # the documented repair: the same command again, or --undo after a killed apply
        repair = dupes(store, "--undo") if applied or rng.random() < 0.3 else command
        subprocess.run(repair, cwd=REPO, capture_output=True)
        applied = repair == command and not applied
        problems += check(library, store, originals)
        if applied:
            home = digests(library)
            problems += [f"{p} still in the library after the apply finished" for p in home if "/copies/" in p]
        elif digests(library) != originals:
            problems.append("an undo did not restore the library")
        figures["problems"] += problems
        figures["survived"] += not problems
    for _ in range(10):  # every manifest left, latest first
        if not list((store / ".quarantine").glob("manifest-*.json")):
            break
        subprocess.run(dupes(store, "--undo"), cwd=REPO, capture_output=True)
    figures["final_tree_equal"] = digests(library) == originals
    figures["problems"] = figures["problems"][:20]  # the first ones say enough
    figures["seconds"] = {"dry_run": round(dry, 2), **{k: round(v, 2) for k, v in window.items()}}
    print(json.dumps(figures))
    return 0 if figures["survived"] == figures["kills"] and figures["final_tree_equal"] else 1


if __name__ == "__main__":
    sys.exit(main())
