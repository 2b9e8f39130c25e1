"""Helpers for end-to-end tests in a real browser: the viz server and headless Chromium.

- `ensure_chromium()`: the Debian `chromium` binary, installed with apt-get if missing. Under
  CI (`CI=true`) a missing browser fails the test; elsewhere it skips with the reason.
- `VizServer`: `python -m abm.viz.server FILE --port N` in its own process group, stopped by
  that group's id (SIGTERM, then SIGKILL) even when the test fails.
- `chromium()`: Playwright driving that binary (`executable_path`; never `playwright
  install`), and `OfflinePage`: a page on which every request to a host other than
  127.0.0.1/localhost is aborted and recorded, with console errors, page errors and failed
  responses collected for assertions.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest

REPO = Path(__file__).resolve().parents[1]
#: Where the browser test leaves its screenshot (git-ignored).
ARTIFACTS = REPO / "test-artifacts"
#: Flags for headless Chromium in a container: no sandbox (root), no GPU, and none of
#: Chromium's own background traffic (updates, sync), so that every request is the page's.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
LOCAL_HOSTS = {"127.0.0.1", "localhost"}
#: Seconds allowed for `apt-get update && apt-get install chromium`.
INSTALL_TIMEOUT_S = 600
#: Seconds the server gets to print its URL (imports mesa, torch and the scenario).
SERVER_START_TIMEOUT_S = 90


def in_ci() -> bool:
    """Whether the tests run under CI (`CI=true`), where nothing may be skipped."""
    return os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}


def unavailable(reason: str) -> None:
    """Fail under CI, skip elsewhere, with `reason`."""
    if in_ci():
        pytest.fail(f"browser test cannot run under CI: {reason}")
    pytest.skip(reason)


def ensure_chromium() -> str:
    """Path of the Debian `chromium` binary, installing the package with apt-get if needed."""
    found = shutil.which("chromium")
    if found:
        return found
    apt = shutil.which("apt-get")
    if apt is None:
        unavailable("chromium is not installed and apt-get is not available to install it")
    sudo: list[str] = [] if os.geteuid() == 0 else ["sudo", "-n"]
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in ([*sudo, apt, "update"], [*sudo, apt, "install", "-y", "chromium"]):
        try:
            done = subprocess.run(command, env=env, capture_output=True, text=True,
                                  timeout=INSTALL_TIMEOUT_S, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            unavailable(f"installing chromium failed: {' '.join(command)}: {exc}")
        if done.returncode != 0:
            tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
            unavailable(f"installing chromium failed: {' '.join(command)}: {' | '.join(tail)}")
    found = shutil.which("chromium")
    if found is None:
        unavailable("apt-get installed chromium but no `chromium` binary is on PATH")
    return found


#: Ports tried before a server start that found its port taken fails (`VizServer.start`).
PORT_ATTEMPTS = 3


def free_port() -> int:
    """A free TCP port on 127.0.0.1 (the OS picks it)."""
    from abm.viz.server import free_port as pick

    return pick()


@dataclass
class VizServer:
    """`python -m abm.viz.server` serving one scenario on 127.0.0.1, stopped by its PID."""

    scenario: Path
    log_path: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def log(self) -> str:
        """Everything the server wrote to stdout and stderr so far."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def start(self) -> None:
        """Start the server in a new process group; return once it printed its URL and the
        page answers. The port is chosen before the server binds it, so another process can
        take it in between (seen under load with Dask's ports): the server then exits with
        "already in use", and it is started again on a new free port (`PORT_ATTEMPTS`)."""
        for attempt in range(1, PORT_ATTEMPTS + 1):
            try:
                self._start_once()
                return
            except AssertionError:
                taken = "already in use" in self.log().lower()
                if not taken or attempt == PORT_ATTEMPTS:
                    raise
                self.stop()
                self.port = free_port()

    def _start_once(self) -> None:
        with open(self.log_path, "wb") as log:
            # A new session makes the server (and the solara child it starts) one process
            # group whose id is the server's PID, so one killpg stops both.
            self.process = subprocess.Popen(
                [sys.executable, "-m", "abm.viz.server", str(self.scenario),
                 "--port", str(self.port)],
                cwd=REPO, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
        deadline = time.monotonic() + SERVER_START_TIMEOUT_S
        while self.url not in self.log():
            if self.process.poll() is not None:
                raise AssertionError(f"viz server exited with {self.process.returncode}:\n"
                                     f"{self.log()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"viz server printed no URL within "
                                     f"{SERVER_START_TIMEOUT_S} s:\n{self.log()}")
            time.sleep(0.2)
        with urllib.request.urlopen(self.url, timeout=30) as response:
            assert response.status == 200

    def stop(self) -> None:
        """Stop the server's process group by its id: SIGTERM, then SIGKILL after 15 s."""
        if self.process is None or self.process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=15)

    def __enter__(self) -> VizServer:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


@contextlib.contextmanager
def chromium() -> Iterator[Any]:
    """A headless Playwright `Browser` on the Debian chromium binary."""
    executable = ensure_chromium()
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as exc:
        unavailable(f"the Python package playwright is not installed ({exc})")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, headless=True,
                                             args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@dataclass
class OfflinePage:
    """A page that may only reach 127.0.0.1/localhost, with everything that went wrong."""

    page: Any
    blocked: list[str] = field(default_factory=list)
    console_errors: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)

    @classmethod
    def open(cls, browser: Any, **context_options: Any) -> OfflinePage:
        """A new page in a new browser context (its own cookies: a separate session)."""
        context = browser.new_context(**context_options)
        watched = cls(context.new_page())

        def route(route: Any) -> None:
            if urlparse(route.request.url).hostname in LOCAL_HOSTS:
                route.continue_()
            else:
                watched.blocked.append(route.request.url)
                route.abort()

        watched.page.route("**/*", route)
        watched.page.on("console", lambda message: message.type == "error"
                        and watched.console_errors.append(message.text))
        watched.page.on("pageerror", lambda error: watched.page_errors.append(str(error)))
        watched.page.on("response", lambda response: response.status >= 400
                        and watched.failed.append(f"{response.status} {response.url}"))
        watched.page.on("requestfailed", lambda request: watched.failed.append(
            f"{request.failure} {request.url}"))
        return watched

    def problems(self) -> list[str]:
        """Everything that indicates a broken or online-dependent page."""
        return ([f"blocked non-local request: {u}" for u in self.blocked]
                + [f"console error: {m}" for m in self.console_errors]
                + [f"page error: {m}" for m in self.page_errors]
                + [f"failed request: {m}" for m in self.failed])
