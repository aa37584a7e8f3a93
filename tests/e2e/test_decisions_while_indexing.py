"""A decision made while `vitsearch index` runs on the same store: busy said plainly, or
recorded once the indexer lets go; the store opens consistent afterwards."""

from __future__ import annotations

import json
import subprocess
import sys
import time

from tests.conftest import REPO, run_cli, write_scenes
from tests.e2e.test_crash import assert_invariants
from vitsearch.indexer.store.decisions import read_decisions
from vitsearch.indexer.store.store import Store


def test_dupes_keep_during_an_index_run(tmp_path):
    photos, store = tmp_path / "photos", tmp_path / "store"
    write_scenes(photos, range(6))
    assert run_cli("index", photos, "--store", store, "--weights", "random").returncode == 0
    write_scenes(photos, range(6, 60))
    indexer = subprocess.Popen([sys.executable, "-m", "vitsearch.ui.cli", "index", str(photos), "--store", str(store)],
                               cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while json.loads((store / "writer.lock").read_text() or "{}").get("pid") != indexer.pid:
        assert indexer.poll() is None and time.monotonic() < deadline, "the indexer never took the store"
        time.sleep(0.05)

    busy = run_cli("dupes", "--store", store, "--keep", "1", "--wait", "0")
    assert indexer.poll() is None, "the indexer must still be running for this check to mean anything"
    assert busy.returncode == 1 and "busy" in busy.stderr and str(indexer.pid) in busy.stderr, busy.stderr
    assert "Traceback" not in busy.stderr

    waited = run_cli("dupes", "--store", store, "--keep", "1", "--wait", "300")
    assert waited.returncode == 0, waited.stderr
    assert indexer.wait(timeout=300) == 0, indexer.stderr.read()
    assert read_decisions(Store(store)).keepers == {1}
    assert_invariants(store)
    assert len(Store(store).live_ids()) == 60
