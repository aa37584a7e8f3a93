"""`vitsearch dupes --calibrate`: show sample pairs, read "same photo?" answers, store thresholds."""

from __future__ import annotations

import sys

__all__ = ["run_calibration"]


def run_calibration(index, args, shown) -> int:
    from ..indexer.store.decisions import record_thresholds
    from ..search.calibrate import fit_near_threshold, sample_pairs
    from ..search.dupes import SIMILAR_DEFAULT, thresholds

    pairs = sample_pairs(index)
    if not pairs:
        print("no neighbour pairs scoring 0.70 or more to label: nothing to calibrate", file=sys.stderr)
        return 1
    print(f"Label {len(pairs)} pairs: y = the same photo (a copy, resize, re-encode, crop), n = different, "
          "s = skip, q = stop and fit.", file=sys.stderr)
    labels = []
    for n, pair in enumerate(pairs, 1):
        print(f"[{n}/{len(pairs)}] cosine {pair.score:.4f}\n  {shown(pair.path_a)}\n  {shown(pair.path_b)}",
              file=sys.stderr)
        print("same photo? [y/n/s/q] ", end="", file=sys.stderr, flush=True)
        answer = sys.stdin.readline().strip().lower()[:1]
        if answer in ("", "q"):
            break
        if answer in ("y", "n"):
            labels.append((pair.score, answer == "y"))
    near = fit_near_threshold(labels)
    if near is None:
        print("need at least one 'y' and one 'n' to place a threshold; nothing changed", file=sys.stderr)
        return 1
    similar = min(thresholds(index.store)[1], near) if near < SIMILAR_DEFAULT else None
    record_thresholds(args.store, near=near, similar=similar, labels=len(labels), wait=args.wait)
    print(f"near-duplicate threshold for this store: {near:.4f} (from {len(labels)} labels); "
          "`vitsearch dupes` uses it from now on", file=sys.stderr)
    return 0
