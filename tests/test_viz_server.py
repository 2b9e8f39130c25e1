"""The browser server (`abm.viz.server`, `abm.viz.assets`): it dies with `wsf viz` however
`wsf viz` is stopped, SIGKILL included, and its asset route serves installed files only,
answering anything else with a 404 at once, deleting nothing. The server runs on 127.0.0.1
with a throw-away asset folder (`SOLARA_ASSETS_PROXY_CACHE_DIR`) and is killed, with its whole
session, by the test whatever happens.
"""

from __future__ import annotations

import concurrent.futures
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from abm.viz.assets import installed_path
from abm.viz.server import free_port
from tests.conftest import ROOT
from tests.hardening import kill_session, session_members
from tests.test_cli_hardening import scenario_file


@pytest.fixture
def assets(tmp_path: Path) -> Path:
    """An asset folder shaped like solara-assets': a package with a file and a folder."""
    root = tmp_path / "cdn"
    (root / "pkg@1.0.0" / "dist").mkdir(parents=True)
    (root / "pkg@1.0.0" / "dist" / "a.js").write_text("ok();")
    (root / "one@2.0.0").mkdir()
    (root / "one@2.0.0" / "__main.js").write_text("main();")
    return root


def test_installed_path_serves_files_and_refuses_the_rest_without_touching_it(assets):
    assert installed_path(assets, "pkg@1.0.0/dist/a.js").read_text() == "ok();"
    assert installed_path(assets, "one@2.0.0").name == "__main.js"
    for missing in ("pkg@1.0.0/dist", "pkg@1.0.0/dist/b.js", "nothing@9.9.9/x.js"):
        start = time.monotonic()
        with pytest.raises(FileNotFoundError):
            installed_path(assets, missing)
        assert time.monotonic() - start < 0.5
    for outside in ("../secret", "pkg@1.0.0/../../secret", "/etc/passwd"):
        with pytest.raises((PermissionError, FileNotFoundError)):
            installed_path(assets, outside)
    assert (assets / "pkg@1.0.0" / "dist" / "a.js").is_file()  # nothing removed


def _get(url: str, timeout: float = 10) -> tuple[int, float]:
    start = time.monotonic()
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            response.read()
            code = response.status
    except urllib.error.HTTPError as exc:
        code = exc.code
    return code, time.monotonic() - start


def _alive(port: int) -> bool:
    try:
        _get(f"http://127.0.0.1:{port}/", timeout=2)
    except OSError:
        return False
    return True


@pytest.mark.slow
def test_asset_route_is_fast_and_read_only_and_the_server_dies_with_a_killed_wsf_viz(
        tmp_path, assets):
    port = free_port()
    env = {**os.environ, "SOLARA_ASSETS_PROXY_CACHE_DIR": str(assets)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "abm.cli", "viz", str(scenario_file(tmp_path)), "--port",
         str(port)], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
        text=True, start_new_session=True)
    try:
        lines = []
        while not lines or "WallStreetFeds viz" not in lines[-1]:  # printed once it answers
            lines.append(proc.stdout.readline())
            assert lines[-1], lines  # wsf viz exited
        base = f"http://127.0.0.1:{port}/_solara/cdn"
        assert _get(f"{base}/pkg@1.0.0/dist/a.js")[0] == 200
        for path in ("pkg@1.0.0/dist", "pkg@1.0.0/dist/missing.js", "absent@1.2.3/x.js"):
            code, seconds = _get(f"{base}/{path}")
            assert code == 404 and seconds < 2, (path, code, seconds)
        assert (assets / "pkg@1.0.0" / "dist" / "a.js").is_file()  # the folder is kept
        with concurrent.futures.ThreadPoolExecutor(50) as pool:
            start = time.monotonic()
            misses = list(pool.map(lambda i: _get(f"{base}/absent@1.0.{i}/x.js"), range(50)))
            health = _get(f"http://127.0.0.1:{port}/", timeout=5)
        assert all(code == 404 for code, _ in misses) and health[0] == 200
        assert time.monotonic() - start < 10, misses

        server = [pid for pid in session_members(proc.pid) if pid != proc.pid]
        assert server, "no server process"
        os.kill(proc.pid, signal.SIGKILL)  # what no handler of wsf viz can see
        proc.wait(10)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and (session_members(proc.pid) or _alive(port)):
            time.sleep(0.2)
        assert not session_members(proc.pid) and not _alive(port)
    finally:
        kill_session(proc.pid)
        proc.wait(10)
