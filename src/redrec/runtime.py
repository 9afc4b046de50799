"""Opening a Store: an external Redis (``REDIS_URL``), the long-lived embedded server, or
an embedded server owned by this process."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from redrec.config import Settings
from redrec.server import EmbeddedRedis, daemon_status
from redrec.store import Store

__all__ = ["connect"]


def connect(settings: Settings | None = None, *, ephemeral: bool = False) -> Store:
    """A Store for ``settings``; close it (or use ``with``) to release everything.

    * ``REDIS_URL`` set: that server, checked for search and JSON.
    * else, if ``redrec server start`` is running under ``settings.home``: that server.
    * else: an embedded server started now over ``settings.data_dir`` (its data
      persists in the AOF) and stopped when the Store is closed.
    ``ephemeral=True`` always starts a private server over a temporary directory that is
    removed on close (tests, benchmarks).
    """
    settings = settings or Settings()
    kwargs = {
        "ef_runtime": settings.ef_runtime,
        "connect_timeout": settings.connect_timeout,
        "socket_timeout": settings.socket_timeout,
    }
    if settings.redis_url and not ephemeral:
        return Store.connect(settings.redis_url, **kwargs)  # type: ignore[arg-type]
    if not ephemeral:
        running = daemon_status(settings.home)
        if running is not None:
            return Store.connect(running.url, **kwargs)  # type: ignore[arg-type]
    tmp: Path | None = None
    if ephemeral:
        tmp = Path(tempfile.mkdtemp(prefix="redrec-"))
        data_dir = tmp
    else:
        data_dir = settings.data_dir
    server = EmbeddedRedis(data_dir)
    try:
        info = server.start()
        store = Store.connect(info.url, **kwargs)  # type: ignore[arg-type]
    except BaseException:
        server.stop()
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
        raise
    store.on_close(server.stop)
    if tmp is not None:
        store.on_close(lambda: shutil.rmtree(tmp, ignore_errors=True))
    return store
