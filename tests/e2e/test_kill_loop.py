"""The kill loop as a slow test: random SIGKILLs, the store survives each, the end equals a clean run."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import REPO


@pytest.mark.slow
def test_random_kills_are_survived(tmp_path):
    result = subprocess.run(
        [sys.executable, "tests/e2e/kill_loop.py", "--kills", "15", "--images", "80", "--workdir", str(tmp_path)],
        cwd=REPO, capture_output=True, text=True, timeout=1200,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    figures = json.loads(result.stdout.splitlines()[-1])
    print(figures)
    assert figures["survived"] == figures["kills"] > 0 and figures["final_equals_clean_run"]
