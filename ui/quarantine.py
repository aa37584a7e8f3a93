"""Move duplicates out of the way, never delete: a dry-run plan, a manifest, and an undo."""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from ..indexer.errors import ConfigError

__all__ = ["Move", "plan_quarantine", "apply_quarantine", "undo_quarantine", "latest_manifest"]


@dataclass(frozen=True)
class Move:
    source: str
    target: str


def plan_quarantine(paths: list[str], keeper: str, folder: Path) -> list[Move]:
    """Where each non-keeper would go: the quarantine folder mirrors its absolute path."""
    moves = []
    for path in paths:
        if path == keeper or not os.path.exists(path):
            continue
        moves.append(Move(path, str(folder / Path(path).relative_to(Path(path).anchor))))
    return moves


def apply_quarantine(moves: list[Move], folder: Path) -> Path:
    """Move the files, writing the manifest first so that an interruption can still be undone."""
    folder.mkdir(parents=True, exist_ok=True)
    manifest = folder / f"manifest-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.json"
    manifest.write_text(json.dumps([asdict(m) for m in moves], indent=1))
    for move in moves:
        if os.path.exists(move.target):
            raise ConfigError(f"quarantine already holds {move.target}; nothing was overwritten")
        os.makedirs(os.path.dirname(move.target), exist_ok=True)
        shutil.move(move.source, move.target)
    return manifest


def undo_quarantine(manifest: Path) -> int:
    """Move the files of one manifest back; returns how many came back."""
    moves = [Move(**m) for m in json.loads(manifest.read_text())]
    restored = 0
    for move in moves:
        if os.path.exists(move.target) and not os.path.exists(move.source):
            os.makedirs(os.path.dirname(move.source), exist_ok=True)
            shutil.move(move.target, move.source)
            restored += 1
    manifest.rename(manifest.with_suffix(".undone"))
    return restored


def latest_manifest(folder: Path) -> Path | None:
    manifests = sorted(folder.glob("manifest-*.json")) if folder.is_dir() else []
    return manifests[-1] if manifests else None
