"""The user's duplicate decisions: "these are not duplicates" and "keep this one".

They live in the store's `decisions` table, beside the images they name, and are written like
every other write: under the writer lock, in one transaction, for ids that exist.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from ..errors import ConfigError
from ..faults import fault_point
from .lock import WriterLock
from .store import LIVE, Store, open_store

__all__ = ["Decisions", "read_decisions", "record_not_duplicates", "record_keeper", "record_thresholds",
           "DECISION_WAIT_SECONDS"]

# A decision made while an index run holds the store waits this long for it, then says "busy".
DECISION_WAIT_SECONDS = 10.0


@dataclass
class Decisions:
    not_duplicates: set[tuple[int, int]] = field(default_factory=set)  # pairs (a, b) with a < b
    keepers: set[int] = field(default_factory=set)


def read_decisions(store: Store) -> Decisions:
    with store.connect() as con:
        rows = con.execute("SELECT kind, a, b FROM decisions").fetchall()
    decisions = Decisions()
    for kind, a, b in rows:
        if kind == "not_duplicate":
            decisions.not_duplicates.add((a, b))
        elif kind == "keep":
            decisions.keepers.add(a)
    return decisions


def record_not_duplicates(store_dir: str | os.PathLike | None, ids, *,
                          wait: float = DECISION_WAIT_SECONDS) -> int:
    """The user says these images are not duplicates of one another: later runs keep them apart.
    All pairs are written in one transaction; returns how many pairs were new."""
    distinct = sorted({int(i) for i in ids})
    if len(distinct) < 2:
        raise ConfigError("not_duplicates needs at least two different image ids", parameter="not_duplicates")
    pairs = [(a, b) for i, a in enumerate(distinct) for b in distinct[i + 1:]]
    return _write(store_dir, distinct, "not_duplicate", pairs, wait)


def record_keeper(store_dir: str | os.PathLike | None, keeper: int, *,
                  wait: float = DECISION_WAIT_SECONDS) -> int:
    """The user keeps this image in whatever group it lands in."""
    return _write(store_dir, [int(keeper)], "keep", [(int(keeper), None)], wait)


def _write(store_dir, ids: list[int], kind: str, pairs: list[tuple], wait: float) -> int:
    store = open_store(store_dir, read_only=False)
    store.require()
    with WriterLock(store.dir / "writer.lock", wait=wait), store.connect() as con:
        con.execute("BEGIN TRANSACTION")
        try:
            known = {r[0] for r in con.execute(
                f"SELECT id FROM images WHERE {LIVE} AND id IN (SELECT unnest(?::BIGINT[]))", [ids]).fetchall()}
            unknown = [i for i in ids if i not in known]
            if unknown:
                raise ConfigError(
                    f"no indexed image has id {', '.join(map(str, unknown[:10]))}"
                    f"{' …' if len(unknown) > 10 else ''}: see the ids with `vitsearch dupes --json`"
                )
            before = con.execute("SELECT count(*) FROM decisions").fetchone()[0]
            con.execute(
                "INSERT INTO decisions SELECT DISTINCT $1, n.a, n.b, current_localtimestamp() "
                "FROM (SELECT unnest($2::BIGINT[]) AS a, unnest($3::BIGINT[]) AS b) n "
                "WHERE NOT EXISTS (SELECT 1 FROM decisions d WHERE d.kind = $1 AND d.a = n.a "
                "AND d.b IS NOT DISTINCT FROM n.b)",
                [kind, [a for a, _ in pairs], [b for _, b in pairs]],
            )
            added = con.execute("SELECT count(*) FROM decisions").fetchone()[0] - before
            fault_point("decisions_commit")
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
    return int(added)


def record_thresholds(store_dir: str | os.PathLike | None, *, near: float, similar: float | None = None,
                      labels: int = 0, wait: float = DECISION_WAIT_SECONDS) -> None:
    """Per-store duplicate thresholds, from a calibration: later `dupes` runs use them."""
    store = open_store(store_dir, read_only=False)
    store.require()
    values = {"near_threshold": float(near), "calibration_labels": int(labels)}
    if similar is not None:
        values["similar_threshold"] = float(similar)
    with WriterLock(store.dir / "writer.lock", wait=wait):
        store.set_manifest(**values)
