"""The watcher's churn soak, short, as a slow test: 75 s of random churn under `index --watch` with
4 SIGKILLs and restarts, then the store equals a fresh index of the tree (tests/e2e/watch_churn_soak.py;
run it for 10 minutes by hand)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.slow


def test_churn_with_kills_under_the_watcher_ends_as_a_fresh_index(tmp_path):
    result = subprocess.run(
        [sys.executable, "tests/e2e/watch_churn_soak.py", "--minutes", "1.25", "--kills", "4", "--seed", "34",
         "--workdir", str(tmp_path)],
        cwd=REPO, capture_output=True, text=True, timeout=600,
    )
    figures = json.loads(result.stdout.splitlines()[-1])
    print(figures)
    assert result.returncode == 0, result.stdout + result.stderr
    assert figures["result"] == "ok" and figures["kills"] == 4 and figures["restarts"] == 4
    assert figures["steps"] > 50 and figures["rows"] > 0
