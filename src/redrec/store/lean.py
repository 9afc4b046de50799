"""A lean pipelined path to Redis for the engine's hot round trips.

redis-py 8 spends ~110 us of Python on every round trip (connection pool, retry and
observability hooks) and ~15 us on every pipelined command, and hiredis builds RESP3
maps an order of magnitude slower than RESP2 arrays (a 50-hit KNN reply: 97 us against
8.6 us). For a recommendation (three round trips, a dozen commands, some ~0.1 ms of
Redis time each) that was most of the latency. :func:`execute` sends a batch of
commands over a plain socket kept per thread and process, packed by hiredis and
written at once, and reads the replies back in RESP2 with a hiredis reader (a PING:
122 us through redis-py, 10-90 us here depending on how the VM schedules the two
processes).

Replies are raw RESP2 (no response callbacks): callers that also run on the fallback
path (redis-py, RESP3) accept both shapes (``VectorIndex._parse``, ``HGETALL`` as a
flat list or a map). A client this cannot mirror (TLS, decoded responses, another
connection class) keeps using redis-py; ``REDREC_LEAN=0`` turns the path off. A server
on this machine that also listens on a Unix socket (the embedded one does) is reached
through it.

:func:`send` writes a batch and returns at once; its replies are read when asked for
(:meth:`Pending.result`), so a caller can work while Redis does (several batches may
be in flight on one socket; replies are read in the order the batches were sent).
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
from collections import deque
from collections.abc import Sequence
from typing import Any

import hiredis
import redis
import redis.exceptions as rex
from redis._parsers.base import BaseParser

__all__ = ["Pending", "execute", "lean_of", "send"]

_ATTR = "_redrec_lean"
_RAW = (str, bytes, int)


def execute(client: redis.Redis, commands: Sequence[Sequence[Any]]) -> list[Any]:
    """Run ``commands`` in one round trip and return their replies in order; the first
    error reply is raised (as redis-py would raise it) after all replies are read."""
    if not commands:
        return []
    lean = lean_of(client)
    if lean is not None:
        return lean.execute(commands)
    if len(commands) == 1:
        return [client.execute_command(*commands[0])]
    pipe = client.pipeline(transaction=False)
    for cmd in commands:
        pipe.execute_command(*cmd)
    return pipe.execute()


def send(client: redis.Redis, commands: Sequence[Sequence[Any]]) -> Pending:
    """Send ``commands`` now and read their replies later (``.result()``, which raises
    as :func:`execute` does). Without the lean path the batch runs at ``.result()``."""
    lean = lean_of(client)
    if lean is not None and commands:
        return lean.send(commands)
    return Pending(None, [list(c) for c in commands], client)


def lean_of(client: Any) -> Lean | None:
    """The lean path for ``client`` (made once, kept on the client), or None."""
    got = client.__dict__.get(_ATTR, False) if hasattr(client, "__dict__") else None
    if got is False:
        got = Lean.for_client(client)
        with contextlib.suppress(AttributeError):  # a client that takes no attributes
            setattr(client, _ATTR, got)
    return got


class Lean:
    """One socket per thread and process, opened with a redis-py client's settings."""

    def __init__(self, address: tuple[str, int] | str, *, password: str | None,
                 username: str | None, db: int, encoder: Any, connect_timeout: float | None,
                 timeout: float | None) -> None:
        self.address = address
        self.password = password
        self.username = username
        self.db = db
        self.encoder = encoder
        self.connect_timeout = connect_timeout
        self.timeout = timeout
        self._local = threading.local()

    @classmethod
    def for_client(cls, client: Any) -> Lean | None:
        if os.environ.get("REDREC_LEAN", "1") == "0" or not isinstance(client, redis.Redis):
            return None
        pool = client.connection_pool
        kw = pool.connection_kwargs
        if kw.get("decode_responses"):
            return None
        kind = pool.connection_class
        if kind is redis.Connection:
            address: tuple[str, int] | str = (kw.get("host", "localhost"), int(kw.get("port", 6379)))
            address = _local_socket(client, address[0]) or address
        elif kind is redis.UnixDomainSocketConnection:
            address = kw["path"]
        else:  # TLS and custom connections stay with redis-py
            return None
        if kw.get("credential_provider") is not None:
            return None
        return cls(address, password=kw.get("password"), username=kw.get("username"),
                   db=int(kw.get("db") or 0), encoder=pool.get_encoder(),
                   connect_timeout=kw.get("socket_connect_timeout"),
                   timeout=kw.get("socket_timeout"))

    # -- the connection ----------------------------------------------------------------

    def _connect(self) -> tuple[socket.socket, Any]:
        try:
            if isinstance(self.address, str):
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                sock.settimeout(self.connect_timeout)
                sock.connect(self.address)
            else:
                sock = socket.create_connection(self.address, timeout=self.connect_timeout)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.settimeout(self.timeout)
        except TimeoutError as exc:
            raise rex.TimeoutError(f"timed out connecting to {self.address}") from exc
        except OSError as exc:
            raise rex.ConnectionError(f"cannot connect to {self.address}: {exc}") from exc
        reader = hiredis.Reader(protocolError=rex.InvalidResponse, replyError=_error)
        local = self._local
        local.sock, local.reader, local.pid = sock, reader, os.getpid()
        local.queue = deque()  # batches sent whose replies are not read yet
        setup: list[list[Any]] = []
        if self.password is not None:
            setup.append(["AUTH", self.username or "default", self.password])
        if self.db:
            setup.append(["SELECT", self.db])
        if not setup:
            setup.append(["PING"])
        try:
            for reply in self._roundtrip(setup):
                if isinstance(reply, rex.RedisError):
                    raise reply
        except (rex.RedisError, _Closed) as exc:
            self.close()
            if isinstance(exc, _Closed):
                raise rex.ConnectionError(f"connection to Redis lost: {exc}") from exc
            raise
        return sock, reader

    def close(self) -> None:
        sock = getattr(self._local, "sock", None)
        self._local.sock = None
        for pending in getattr(self._local, "queue", ()):
            pending.lost = True
        self._local.queue = deque()
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.close()

    def _roundtrip(self, commands: Sequence[Sequence[Any]]) -> list[Any]:
        return self._collect(self.send(commands, connect=False))

    def send(self, commands: Sequence[Sequence[Any]], *, connect: bool = True) -> Pending:
        """Write ``commands`` and queue a :class:`Pending` for their replies."""
        local = self._local
        if connect and (getattr(local, "sock", None) is None or local.pid != os.getpid()):
            self._connect()
        payload = b"".join(self._pack(cmd) for cmd in commands)
        pending = Pending(self, commands)
        pending.fresh = not local.queue
        try:
            local.sock.sendall(payload)
        except TimeoutError as exc:
            self.close()
            raise rex.TimeoutError("timed out writing to Redis") from exc
        except OSError as exc:
            self.close()
            pending.lost = True
            pending.failure = _Closed(0, exc)
            return pending
        local.queue.append(pending)
        return pending

    def _collect(self, pending: Pending) -> list[Any]:
        """Read replies, batch by batch in the order sent, until ``pending`` has all of
        its own."""
        if pending.failure is not None:
            raise pending.failure
        local = self._local
        while pending.replies is None:
            if pending.lost or not local.queue:
                # Its connection broke while another batch was read: the server may
                # have run it, so it is not sent again.
                raise rex.ConnectionError("connection to Redis lost with a batch in flight")
            head = local.queue[0]
            sock, reader = local.sock, local.reader
            replies: list[Any] = []
            try:
                while len(replies) < head.n:
                    got = reader.gets()
                    if got is False:
                        data = sock.recv(65536)
                        if not data:
                            raise _Closed(len(replies))
                        reader.feed(data)
                        continue
                    replies.append(got)
            except _Closed:
                self.close()
                raise
            except TimeoutError as exc:
                self.close()
                raise rex.TimeoutError("timed out reading from Redis") from exc
            except OSError as exc:
                self.close()
                raise _Closed(len(replies), exc) from exc
            local.queue.popleft()
            head.replies = replies
        return pending.replies

    def _pack(self, cmd: Sequence[Any]) -> bytes:
        """hiredis packs str (UTF-8), bytes, ints and floats itself (floats as repr(), as
        redis-py does); anything else (numpy numbers, bools, ...) is refused by hiredis
        and encoded as redis-py would (which refuses what redis-py refuses)."""
        try:
            return hiredis.pack_command(tuple(cmd))
        except TypeError:
            pass
        encode = self.encoder.encode
        return hiredis.pack_command(tuple(a if type(a) in _RAW else encode(a) for a in cmd))

    def execute(self, commands: Sequence[Sequence[Any]]) -> list[Any]:
        return self.send(commands).result()

    def result(self, pending: Pending) -> list[Any]:
        first = pending
        for attempt in (0, 1):
            try:
                replies = self._collect(pending)
                break
            except _Closed as closed:
                # A socket the server closed while idle (a restart, a timeout) fails
                # before any reply: when nothing else was in flight on it, open a fresh
                # one and send once more.
                if closed.received or attempt or not pending.fresh:
                    raise rex.ConnectionError(f"connection to Redis lost: {closed}") from closed
                pending = self.send(pending.commands)
        first.replies = replies  # error replies stay readable there after the raise
        for r in replies:
            if isinstance(r, rex.RedisError):
                raise r
        return replies


class Pending:
    """A batch of commands sent (or, without the lean path, waiting to run)."""

    __slots__ = ("client", "commands", "failure", "fresh", "lean", "lost", "n", "replies")

    def __init__(self, lean: Lean | None, commands: Sequence[Sequence[Any]],
                 client: Any = None) -> None:
        self.lean = lean
        self.client = client
        self.commands = commands
        self.n = len(commands)
        self.replies: list[Any] | None = None
        self.fresh = True
        self.lost = False
        self.failure: BaseException | None = None

    def result(self) -> list[Any]:
        """The replies in order; the first error reply is raised after all are read."""
        if self.lean is not None:
            return self.lean.result(self)
        if self.replies is None:
            self.replies = _run_raw(self.client, self.commands)
        for r in self.replies:
            if isinstance(r, rex.RedisError):
                raise r
        return self.replies


def _local_socket(client: redis.Redis, host: str) -> str | None:
    """The Unix socket of a server on this machine, when it listens on one this process
    can open (``redrec server`` does): a round trip over it costs ~10-15 us less than
    over loopback TCP, whose sender also runs the receiver's TCP stack."""
    if host not in ("127.0.0.1", "localhost", "::1"):
        return None
    try:
        got = client.config_get("unixsocket")
    except rex.RedisError:  # CONFIG refused or renamed: stay on TCP
        return None
    path = None
    if isinstance(got, dict):
        path = got.get("unixsocket") or got.get(b"unixsocket")
    if isinstance(path, bytes):
        path = path.decode()
    return path if path and os.access(path, os.R_OK | os.W_OK) else None


def _run_raw(client: Any, commands: Sequence[Sequence[Any]]) -> list[Any]:
    """The replies of ``commands`` through redis-py, error replies kept in place (as
    the lean path keeps them in :attr:`Pending.replies`)."""
    if not commands:
        return []
    if len(commands) == 1:
        try:
            return [client.execute_command(*commands[0])]
        except rex.ResponseError as exc:
            return [exc]
    pipe = client.pipeline(transaction=False)
    for cmd in commands:
        pipe.execute_command(*cmd)
    return list(pipe.execute(raise_on_error=False))


class _Closed(Exception):
    def __init__(self, received: int, cause: BaseException | None = None) -> None:
        super().__init__(str(cause) if cause else "the server closed the connection")
        self.received = received


def _error(message: str) -> rex.RedisError:
    """An error reply as redis-py raises it (NOSCRIPT -> NoScriptError, ...)."""
    return BaseParser.parse_error(message)
