"""`vitsearch serve` as a process: what its log holds when the page refuses a request."""

from __future__ import annotations

import subprocess
import sys
import time

import httpx
import pytest

from tests.conftest import REPO, write_scenes
from tests.e2e.test_ui import bomb_png, free_port
from vitsearch.indexer import build_index


def test_a_refused_oversize_upload_is_one_log_line_not_a_traceback(tmp_path, fake_encoder):
    from gradio_client import Client, handle_file
    from gradio_client.exceptions import AppError

    write_scenes(tmp_path / "photos", range(2))
    build_index([tmp_path / "photos"], tmp_path / "store", encoder=fake_encoder)
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "vitsearch.ui.cli", "serve", "--store", str(tmp_path / "store"), "--port", str(port)],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while not _answers(url):
            assert server.poll() is None and time.monotonic() < deadline, "the server did not start"
            time.sleep(0.5)
        big = tmp_path / "big.png"
        big.write_bytes(bomb_png(7000))  # 49 MP: over the page's 40 MP for formats without draft decoding
        with pytest.raises(AppError, match="at most 40 MP"):
            Client(url, verbose=False).predict(handle_file(str(big)), None, 5, 0.0, "", "", "", None, None, [],
                                               api_name="/run_search")
    finally:
        server.terminate()
        log = server.communicate(timeout=30)[1]
    assert "Traceback" not in log, log
    assert len([line for line in log.splitlines() if "at most 40 MP" in line]) == 1, log


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False
