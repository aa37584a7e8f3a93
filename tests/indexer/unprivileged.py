"""Index as a process that file permissions bind. Root reads any file whatever its mode bits
(CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH), so under root the child drops those two capabilities
from its bounding set before it starts: it stays root, owner of the test's files, and a chmod
binds it as it binds their owner.

    python -m tests.indexer.unprivileged FOLDER STORE   # build_index with the fake encoder; JSON report
"""

from __future__ import annotations

import ctypes
import functools
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PR_CAPBSET_DROP = 24  # <linux/prctl.h>
CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH = 1, 2  # <linux/capability.h>


def child_options() -> dict:
    """subprocess options for a child bound by file permissions; skips the test, saying why,
    where that cannot be had."""
    if os.geteuid() != 0:
        return {}
    reason = _cannot_drop()
    if reason:
        pytest.skip(f"running as root, and a child cannot be made to feel file permissions: {reason}")
    return {"preexec_fn": _drop_dac_capabilities}


def _drop_dac_capabilities() -> None:
    """In the child, before exec: the new program is given no capability outside the bounding set."""
    prctl = ctypes.CDLL(None, use_errno=True).prctl
    for cap in (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH):
        if prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), f"prctl(PR_CAPBSET_DROP, {cap})")


@functools.cache
def _cannot_drop() -> str:
    probe = "import os, sys, tempfile; d = tempfile.mkdtemp(); f = os.path.join(d, 'x'); open(f, 'w').close(); "
    probe += "os.chmod(f, 0); ok = not os.access(f, os.R_OK, effective_ids=True); os.remove(f); os.rmdir(d); "
    probe += "sys.exit(0 if ok else 3)"
    try:
        done = subprocess.run([sys.executable, "-c", probe], preexec_fn=_drop_dac_capabilities,
                              capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.SubprocessError) as e:
        return f"{type(e).__name__}: {e}"
    if done.returncode == 3:
        return "a mode-000 file is still readable without CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH"
    return "" if done.returncode == 0 else done.stderr[-300:]


def index_in_child(folder: Path, store: Path) -> dict:
    """build_index(folder, store) with the fake encoder, bound by permissions: its report as a dict."""
    done = subprocess.run([sys.executable, "-m", "tests.indexer.unprivileged", str(folder), str(store)],
                          cwd=REPO, capture_output=True, text=True, timeout=300, **child_options())
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    from tests.conftest import FakeEncoder
    from vitsearch.indexer import build_index

    report = build_index([sys.argv[1]], sys.argv[2], encoder=FakeEncoder(), batch_size=4)
    print(json.dumps({**report.summary(), "failures": [[f.path, f.reason, f.detail] for f in report.failures]}))


if __name__ == "__main__":
    main()
