"""Reaching a Dask scheduler: the address checked, the peer proved one, then Dask's client.

`connect(address, timeout)` is the one way `wsf sweep` and `wsf optimize` reach a scheduler.
Before Dask's client is built, the address is parsed with Dask's own parser and its scheme
checked against those a sweep can use (`SUPPORTED_SCHEMES`), and the peer is read once, as
Dask's client would read it, with two bounds Dask's comm layer does not have: at most
`HANDSHAKE_MAX_BYTES` bytes and the time left of `timeout`. A Dask server writes its handshake
(`{"compression", "python", "pickle-protocol"}`, ~60 bytes, `distributed.comm.core`) as soon
as it accepts a connection, so a peer that does not is not one.

Why by hand: `distributed.comm.tcp.TCP.read` takes the peer's first 8 bytes as the length of
the message and allocates it (an HTTP server's `HTTP/1.1` reads as 3.07 EiB: a MemoryError),
and the client's handshake read has no deadline of its own (a listener that accepts and stays
silent held `wsf sweep` past `--connect-timeout`). Only the framing is read here; the frames
are decoded by Dask's own `unpack_frames` and `from_frames`.
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
import time
from typing import Any

from abm.errors import shown
from abm.sweep.store import SweepError

__all__ = ["HANDSHAKE_MAX_BYTES", "SUPPORTED_SCHEMES", "check_address", "connect",
           "read_handshake"]

#: Schemes a sweep's client can use: Dask's TCP, and TLS over it when Dask's configuration
#: gives the client a certificate (`distributed.comm.tls.*`). `inproc` is one process only;
#: `ucx` needs `distributed-ucxx`, `ws`/`wss` a scheduler started for them: not offered.
SUPPORTED_SCHEMES = ("tcp", "tls")
#: Bytes read from a peer before it is proved a Dask scheduler; Dask's handshake is ~60 bytes.
HANDSHAKE_MAX_BYTES = 64 << 10
#: The keys of Dask's handshake (`distributed.comm.core.Comm.handshake_info`).
HANDSHAKE_KEYS = frozenset({"compression", "python", "pickle-protocol"})


class NotASchedulerError(SweepError):
    """The peer at the address answered, but not as a Dask scheduler does."""


def check_address(address: str) -> tuple[str, str, int]:
    """`(scheme, host, port)` of a scheduler address; SweepError naming what is allowed.

    Parsed by Dask (`parse_address`, `parse_host_port`): `HOST:PORT` means `tcp://HOST:PORT`.
    """
    from distributed.comm.addressing import parse_address, parse_host_port

    allowed = ("allowed: tcp://HOST:PORT, or tls://HOST:PORT with Dask's TLS configuration "
               "(distributed.comm.tls.ca-file, .client.cert, .client.key)")
    try:
        scheme, location = parse_address(address)
    except (ValueError, TypeError):
        raise SweepError(f"--scheduler {shown(address, 80)}: not an address; {allowed}.") \
            from None
    if scheme not in SUPPORTED_SCHEMES:
        raise SweepError(f"--scheduler {shown(address, 80)}: the scheme {shown(scheme, 20)} "
                         f"is not supported; {allowed}.")
    try:
        host, port = parse_host_port(location)
    except (ValueError, TypeError):
        host, port = "", None
    if not host or not isinstance(port, int) or not 0 < port < 65536:
        raise SweepError(f"--scheduler {shown(address, 80)}: expected HOST:PORT with a port "
                         f"from 1 to 65535 after '{scheme}://'; {allowed}.")
    return scheme, host, port


def _ssl_context(address: str, scheme: str) -> Any:
    """The client's TLS context from Dask's configuration (`Security()`), None for tcp."""
    if scheme != "tls":
        return None
    from distributed.security import Security

    context = Security().get_connection_args("client")["ssl_context"]
    if context is None:
        raise SweepError(
            f"--scheduler {shown(address, 80)}: tls:// needs Dask's TLS configuration for the "
            "client (distributed.comm.tls.ca-file, distributed.comm.tls.client.cert and "
            ".client.key, e.g. in ~/.config/dask/distributed.yaml); none is set."
        )
    return context


async def read_handshake(reader: asyncio.StreamReader, *, limit: int = HANDSHAKE_MAX_BYTES,
                         ) -> dict[str, Any]:
    """Read and decode one Dask message from `reader`, refusing one longer than `limit` bytes.

    Raises NotASchedulerError (without the address; `connect` adds it) for anything that is
    not a Dask handshake; `asyncio.IncompleteReadError` if the peer closes first.
    """
    from distributed.comm.utils import from_frames
    from distributed.protocol.utils import unpack_frames

    (size,) = struct.unpack("Q", await reader.readexactly(8))
    if size > limit:
        raise NotASchedulerError(f"its first message claims {size:,} bytes; Dask's handshake "
                                 f"is under {limit:,}")
    payload = await reader.readexactly(size)
    try:
        frames, missing = unpack_frames(payload, partial=True)
        if missing:
            raise ValueError(f"{len(missing)} frame(s) missing")
        message = await from_frames(frames, deserialize=False)
    except Exception as exc:  # any decoding failure of foreign bytes means "not Dask"
        raise NotASchedulerError(f"its first message is not Dask's ({type(exc).__name__})") \
            from None
    if not isinstance(message, dict) or not message.keys() >= HANDSHAKE_KEYS:
        raise NotASchedulerError("its first message is not Dask's handshake")
    return message


async def _probe(host: str, port: int, context: Any, deadline: float) -> dict[str, Any]:
    """Connect (retrying a refused connection until `deadline`, as Dask's client does) and
    read the handshake before `deadline`; TimeoutError if the time runs out."""
    delay, refused = 0.05, "no answer"
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError(refused)
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(host, port, ssl=context,
                                        server_hostname=host if context else None), left)
            break
        except (ConnectionRefusedError, ConnectionResetError) as exc:
            refused = exc.strerror or type(exc).__name__
            await asyncio.sleep(min(delay, max(0.0, deadline - time.monotonic())))
            delay = min(2 * delay, 1.0)
    try:
        try:
            return await asyncio.wait_for(read_handshake(reader),
                                          max(0.0, deadline - time.monotonic()))
        except TimeoutError:
            raise NotASchedulerError("it accepted the connection but sent no handshake in "
                                     "time (a Dask scheduler sends one at once)") from None
        except asyncio.IncompleteReadError:
            raise NotASchedulerError("it closed the connection before a whole handshake") \
                from None
    finally:
        writer.close()
        with contextlib.suppress(OSError, TimeoutError):
            await asyncio.wait_for(writer.wait_closed(), 1.0)


def connect(address: str, timeout: float) -> Any:
    """A Dask client of the scheduler at `address`, reached within ~`timeout` s.

    SweepError (exit 2) for an address or scheme that cannot be used, a peer that cannot be
    reached in time, or one that is not a Dask scheduler ("not a Dask scheduler at ADDR").
    `timeout` covers connecting and the handshake; Dask's client gets what is left (at least
    1 s) to register.
    """
    try:
        from dask.distributed import Client
    except ImportError:
        raise SweepError(
            "--scheduler needs dask.distributed: pip install 'wallstreetfeds-abm[sweep]'."
        ) from None
    scheme, host, port = check_address(address)
    context = _ssl_context(address, scheme)
    deadline = time.monotonic() + timeout
    unreachable = (f"cannot reach the Dask scheduler at {shown(address, 80)} within "
                   f"{timeout:g} s ({{}}). Start one (`dask scheduler`), check the address "
                   "(tcp://HOST:PORT), or allow more time with --connect-timeout SECONDS.")
    try:
        asyncio.run(_probe(host, port, context, deadline))
    except NotASchedulerError as exc:
        raise NotASchedulerError(f"not a Dask scheduler at {shown(address, 80)}: {exc}. Check "
                                 "the address and port (`dask scheduler` prints it).") from None
    except (OSError, TimeoutError) as exc:
        raise SweepError(unreachable.format(
            f"{type(exc).__name__}: {' '.join(str(exc).split())[:200]}")) from None
    try:
        from distributed.security import Security

        return Client(address, timeout=f"{max(1.0, deadline - time.monotonic())}s",
                      security=Security())
    except (OSError, TimeoutError, ValueError) as exc:
        raise SweepError(unreachable.format(
            f"{type(exc).__name__}: {' '.join(str(exc).split())[:200]}")) from None
