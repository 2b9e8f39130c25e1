"""Reaching a Dask scheduler (`abm.sweep.scheduler`): addresses checked against the schemes a
sweep can use; a peer on 127.0.0.1 that answers garbage, stays silent or hangs up is "not a
Dask scheduler at ADDR" within `--connect-timeout`; Dask's own listener passes. A fuzz target
sends random bytes from a 127.0.0.1 listener: never anything but a SweepError, never past the
deadline. Every listener is started and stopped by the test itself.
"""

from __future__ import annotations

import asyncio
import socket
import struct
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from abm.sweep.scheduler import (
    HANDSHAKE_MAX_BYTES,
    NotASchedulerError,
    _probe,
    check_address,
    connect,
    read_handshake,
)
from abm.sweep.store import SweepError
from tests.hardening import assert_refused, run_wsf
from tests.test_cli_hardening import scenario_file, sweep_file

#: What an HTTP server sends first: `HTTP/1.1` read as a length is 3.07 EiB.
HTTP = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"


class Peer:
    """A listener on 127.0.0.1 that sends `payload` to each connection, then holds it open
    (or closes it with `close=True`); stopped, with its connections, by `stop()`."""

    def __init__(self, payload: bytes = b"", *, close: bool = False) -> None:
        self.payload, self.close = payload, close
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(0.1)
        self.port = self.sock.getsockname()[1]
        self.connections: list[socket.socket] = []
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    @property
    def address(self) -> str:
        return f"tcp://127.0.0.1:{self.port}"

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self.connections.append(conn)
            with suppress(OSError):
                conn.sendall(self.payload)
                if self.close:
                    conn.close()

    def stop(self) -> None:
        self._stop.set()
        self.thread.join(5)
        for conn in [*self.connections, self.sock]:
            with suppress(OSError):
                conn.close()


@contextmanager
def peer(payload: bytes = b"", *, close: bool = False) -> Iterator[Peer]:
    listener = Peer(payload, close=close)
    try:
        yield listener
    finally:
        listener.stop()


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        ("ucx://127.0.0.1:8786", "the scheme 'ucx' is not supported; allowed: tcp://HOST:PORT"),
        ("inproc://x", "the scheme 'inproc' is not supported"),
        ("ws://127.0.0.1:8786", "the scheme 'ws' is not supported"),
        ("gopher://127.0.0.1:70", "the scheme 'gopher' is not supported"),
        ("tcp://127.0.0.1", "expected HOST:PORT with a port from 1 to 65535"),
        ("tcp://127.0.0.1:99999", "expected HOST:PORT with a port from 1 to 65535"),
        ("tls://127.0.0.1:8786", "tls:// needs Dask's TLS configuration"),
    ],
)
def test_an_unusable_address_is_refused_naming_the_schemes_allowed(address, expected):
    start = time.monotonic()
    with pytest.raises(SweepError, match="--scheduler") as info:
        connect(address, 5.0)
    assert expected in str(info.value), str(info.value)
    assert time.monotonic() - start < 2  # refused before any connection


def test_host_port_alone_means_tcp():
    assert check_address("127.0.0.1:8786") == ("tcp", "127.0.0.1", 8786)


@pytest.mark.parametrize(
    ("payload", "close", "expected"),
    [
        (HTTP, False, "claims 3,543,824,036,068,086,856 bytes"),
        (b"", False, "sent no handshake in time"),
        (b"\x01\x02", True, "closed the connection before a whole handshake"),
        (struct.pack("Q", 16) + b"\x00" * 16, False, "not Dask's"),
    ],
)
def test_a_peer_that_is_not_a_scheduler_is_named_within_the_timeout(payload, close, expected):
    with peer(payload, close=close) as listener:
        start = time.monotonic()
        with pytest.raises(NotASchedulerError) as info:
            connect(listener.address, 1.5)
        elapsed = time.monotonic() - start
    assert f"not a Dask scheduler at '{listener.address}'" in str(info.value)
    assert expected in str(info.value), str(info.value)
    assert elapsed < 1.5 + 1.0, elapsed


def test_dasks_own_listener_passes_the_handshake():
    """The handshake Dask's comm layer writes (`distributed.comm.listen`) is read whole."""
    from distributed.comm import listen

    async def main() -> dict:
        async def handle(comm) -> None:
            await comm.close()

        listener = listen("tcp://127.0.0.1:0", handle)
        await listener.start()
        try:
            host, port = listener.listen_address.removeprefix("tcp://").rsplit(":", 1)
            return await _probe(host, int(port), None, time.monotonic() + 5)
        finally:
            listener.stop()

    info = asyncio.run(main())
    assert {"compression", "python", "pickle-protocol"} <= info.keys()


def test_a_handshake_over_the_bound_is_not_read():
    async def main() -> None:
        reader = asyncio.StreamReader()
        reader.feed_data(struct.pack("Q", HANDSHAKE_MAX_BYTES + 1))
        reader.feed_eof()
        await read_handshake(reader)

    with pytest.raises(NotASchedulerError, match="claims 65,537 bytes"):
        asyncio.run(main())


@pytest.fixture(scope="module")
def fuzz_peer() -> Iterator[Peer]:
    with peer(close=True) as listener:
        yield listener


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow,
          HealthCheck.function_scoped_fixture])
@given(st.one_of(
    st.binary(max_size=256),
    st.builds(lambda n, rest: struct.pack("Q", n) + rest,
              st.integers(0, 2**64 - 1), st.binary(max_size=64)),
    st.builds(lambda frames, body: struct.pack("Q", len(body) + 8 + 8 * len(frames))
              + struct.pack("Q", len(frames)) + b"".join(struct.pack("Q", f) for f in frames)
              + body, st.lists(st.integers(0, 2**64 - 1), max_size=3), st.binary(max_size=64)),
))
@example(HTTP)
def test_fuzz_random_bytes_from_a_listener_are_never_taken_for_a_scheduler(fuzz_peer, payload):
    """Whatever a 127.0.0.1 peer sends first: a NotASchedulerError within the deadline,
    never a MemoryError, a decoding error of Dask's or a hang."""
    fuzz_peer.payload = payload
    start = time.monotonic()
    with pytest.raises(NotASchedulerError):
        connect(fuzz_peer.address, 1.0)
    assert time.monotonic() - start < 2.0


@pytest.mark.slow
def test_wsf_sweep_at_an_http_server_exits_2_and_writes_nothing(tmp_path: Path):
    base = scenario_file(tmp_path)
    sweep = sweep_file(tmp_path, base, "seeds: 1\n")
    out = tmp_path / "out"
    with peer(HTTP) as listener:
        outcome = run_wsf("sweep", str(sweep), "--scheduler", listener.address,
                          "--connect-timeout", "2", "--out", str(out), timeout=60)
    assert_refused(outcome, f"wsf sweep: not a Dask scheduler at '{listener.address}'",
                   seconds=30, peak_mb=600)
    assert not out.exists()


@pytest.mark.slow
def test_wsf_optimize_at_a_silent_listener_gives_up_within_the_connect_timeout(tmp_path):
    with peer() as listener:
        outcome = run_wsf("optimize", str(Path("scenarios/optimize/fair_and_cheap.yaml")
                                          .resolve()),
                          "--scheduler", listener.address, "--connect-timeout", "2",
                          "--out", str(tmp_path / "study"), timeout=60)
    assert_refused(outcome, f"wsf optimize: not a Dask scheduler at '{listener.address}'",
                   "sent no handshake in time", seconds=30)
    assert outcome.seconds < 2 + 15, outcome.seconds  # imports, then at most the timeout
    assert not (tmp_path / "study").exists()
