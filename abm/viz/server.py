"""Launch the browser app: `wsf viz FILE [--port N]` and `python -m abm.viz.server FILE`.

`launch` validates the scenario file, starts `solara run abm.viz.app` in a child process
bound to 127.0.0.1 only (the app runs the simulation, it must not be reachable from the
network), waits until the server answers, prints the URL and blocks until interrupted.
The page needs no internet: the JS/CSS come from the bundled `solara-assets`.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from abm.scenario import ScenarioError, load_scenario
from abm.viz import SCENARIO_ENV, SETTINGS_ENV

#: Exit codes, as `wsf`'s (abm.cli): bad input; the server failed to start (EX_SOFTWARE).
EXIT_BAD_INPUT = 2
EXIT_SERVER_FAILED = 70

#: The only interface the server listens on.
HOST = "127.0.0.1"
#: Port used when none is given (Solara's own default).
DEFAULT_PORT = 8765
#: Seconds to wait for the server to accept connections before giving up.
START_TIMEOUT_S = 120.0
#: Seconds the server gets to shut down after Ctrl+C before it is killed.
STOP_TIMEOUT_S = 10.0
#: Module Solara imports as the app.
APP_MODULE = "abm.viz.app"
#: `PYTHONWARNINGS` filter for Solara's SameSite cookie warning (see `solara_environment`).
COOKIE_WARNING = "ignore:Cookies with samesite=none require https:UserWarning"


def free_port(host: str = HOST) -> int:
    """A TCP port on `host` that is free right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def port_is_free(port: int, host: str = HOST) -> bool:
    """Whether a server could bind `host:port` now (with SO_REUSEADDR, as uvicorn binds, so
    that connections of a server stopped a moment ago do not count)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


def solara_command(port: int) -> list[str]:
    """The `solara run` command line: 127.0.0.1 only, production mode, no browser, no
    version check (it would query PyPI at every start)."""
    return [sys.executable, "-m", "solara", "run", APP_MODULE, "--host", HOST,
            "--port", str(port), "--production", "--no-open", "--no-check-version"]


def solara_environment(scenario_path: str | Path, settings: dict[str, Any] | None = None
                       ) -> dict[str, str]:
    """The child's environment: the scenario for the app (with the command line's `--set`
    values, as JSON), and Solara kept offline."""
    env = dict(os.environ)
    env[SCENARIO_ENV] = str(Path(scenario_path).resolve())
    env.pop(SETTINGS_ENV, None)
    if settings:
        env[SETTINGS_ENV] = json.dumps(settings)
    # Solara reports usage to Mixpanel by default; a research tool phones nowhere.
    env["SOLARA_TELEMETRY_MIXPANEL_ENABLE"] = "False"
    # Serve JS/CSS through Solara's local /_solara/cdn proxy (backed by solara-assets) even
    # where Solara would otherwise point the page at the public CDN (VS Code, Colab).
    env["SOLARA_ASSETS_PROXY"] = "True"
    env["SOLARA_THEME_SHOW_BANNER"] = "False"
    # Solara warns (12 lines, at every page load) that it cannot give its session cookie
    # `SameSite=None`, which it wants only so that the app can be embedded in another site's
    # iframe, and falls back to `SameSite=Lax` because the page is served over http from a
    # host other than "localhost". Lax is the right setting for an app opened directly on
    # 127.0.0.1 (and "localhost" may resolve to ::1, where the server does not listen), so
    # this one warning is filtered out; every other warning still shows.
    env["PYTHONWARNINGS"] = ",".join(filter(None, [env.get("PYTHONWARNINGS"), COOKIE_WARNING]))
    return env


#: prctl(2) option: the signal the kernel sends this process when its parent dies.
PR_SET_PDEATHSIG = 1


def die_with_parent(parent: int) -> None:
    """`preexec_fn` of the server: ask the kernel (prctl PR_SET_PDEATHSIG) for SIGKILL when
    the `wsf viz` process that started it dies, however it dies (SIGKILL included, which no
    handler of ours sees); exit at once if it is gone already. Linux only; elsewhere the
    server is stopped by `launch`'s handlers alone."""
    import ctypes

    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:  # the parent died before the request was made
        os._exit(1)


def wait_until_listening(port: int, process: subprocess.Popen, timeout: float) -> bool:
    """Poll `HOST:port` until it accepts a connection; False if the process exits first or
    the timeout passes."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return False
        with contextlib.suppress(OSError), socket.create_connection((HOST, port), timeout=1):
            return True
        time.sleep(0.2)
    return False


def launch(scenario_path: str | Path, port: int | None = None, *,
           settings: dict[str, Any] | None = None, prefix: str = "error") -> int:
    """Serve the app for `scenario_path` on http://127.0.0.1:PORT/ until interrupted.

    Args:
        scenario_path: the scenario YAML file.
        port: TCP port; `None` uses 8765, `0` picks a free one.
        settings: dotted path -> value set on the scenario (`wsf viz --set`).
        prefix: what starts each message (`wsf viz`), as every `wsf` command's do.

    Returns the exit code, with `wsf`'s meanings: 0 after Ctrl+C (or SIGTERM), 2 for bad
    input (a bad scenario file, a port already in use), 70 if the server fails to start
    (its own output, above, says why).
    """
    try:
        scenario = load_scenario(scenario_path)
        if settings:
            scenario.with_overrides(settings, source=f"{scenario_path} (command line)")
    except ScenarioError as exc:
        print(f"{prefix}: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    port = DEFAULT_PORT if port is None else (free_port() if port == 0 else port)
    if not port_is_free(port):
        print(f"{prefix}: --port = {port}: the port on {HOST} is already in use; pass a free "
              f"one with --port N (or --port 0 for any free port).", file=sys.stderr)
        return EXIT_BAD_INPUT
    parent = os.getpid()
    process = subprocess.Popen(solara_command(port),
                               env=solara_environment(scenario_path, settings),
                               preexec_fn=lambda: die_with_parent(parent))
    # Forward SIGTERM to the server so that stopping this process never leaves it orphaned.
    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, lambda *_: process.terminate())
    try:
        if not wait_until_listening(port, process, START_TIMEOUT_S):
            print(f"{prefix}: internal error: the visualization server did not start on "
                  f"{HOST}:{port} (its output above says why); this is a bug in wsf, not a "
                  f"problem with your input.", file=sys.stderr)
            return EXIT_SERVER_FAILED
        print(f"WallStreetFeds viz of {scenario_path}: http://{HOST}:{port}/ "
              f"(Ctrl+C to stop)", flush=True)
        code = process.wait()
        return 0 if code in (0, -signal.SIGTERM, -signal.SIGINT) else code
    except KeyboardInterrupt:
        return 0
    finally:
        _stop(process)
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def port_number(text: str) -> int:
    """argparse type of `--port`: a TCP port number, 0 (any free port) to 65535."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer, got {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(
            f"must be a TCP port from 1 to 65535 (or 0 for any free port), got {text!r}"
        )
    return value


def main(argv: list[str] | None = None) -> int:
    """`python -m abm.viz.server FILE [--port N]` (the same as `wsf viz`)."""
    parser = argparse.ArgumentParser(prog="python -m abm.viz.server", description=__doc__)
    parser.add_argument("scenario", help="scenario YAML file")
    parser.add_argument("--port", type=port_number, default=None,
                        help=f"TCP port on {HOST} (default {DEFAULT_PORT}; 0 = any free port)")
    args = parser.parse_args(argv)
    return launch(args.scenario, args.port)


if __name__ == "__main__":
    sys.exit(main())
