"""The embedded Redis: starts with search and JSON, persists, leaves no orphan."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import redrec
from redrec.config import Settings
from redrec.exceptions import StoreUnavailable
from redrec.server import EmbeddedRedis, daemon_status, find_binaries, start_daemon, stop_daemon


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie child of ours counts as gone
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"
    except FileNotFoundError:
        return False


def _wait_gone(pid: int, timeout: float = 10) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _alive(pid):
            return True
        time.sleep(0.05)
    return False


def test_embedded_server_has_search_and_json_and_persists(tmp_path):
    with EmbeddedRedis(tmp_path) as info:
        assert info.host == "127.0.0.1" and len(info.password) >= 20
        store = redrec.Store.connect(info.url)
        assert store.server_info()["redis_version"].startswith("8.")
        store.client.set("k", "v")
        assert store.client.config_get("appendonly")["appendonly"] in ("yes", b"yes")
        store.close()
        pid = info.pid
    assert _wait_gone(pid)
    with EmbeddedRedis(tmp_path) as info2:
        store = redrec.Store.connect(info2.url)
        assert store.client.get("k") in (b"v", "v")
        assert info2.password != info.password
        store.close()


def test_data_dir_is_exclusive(tmp_path):
    with EmbeddedRedis(tmp_path), pytest.raises(StoreUnavailable, match="another redrec process"):
        EmbeddedRedis(tmp_path).start()


def test_connect_stops_its_server_on_close(tmp_path):
    store = redrec.connect(Settings(home=tmp_path))
    pid = int(store.client.info("server")["process_id"])
    store.close()
    assert _wait_gone(pid)


@pytest.mark.parametrize("ending", ["exception", "sigint", "sigkill"])
def test_no_orphan_after_exception_ctrl_c_or_kill(tmp_path, ending):
    script = textwrap.dedent(f"""
        import os, signal, sys, time
        import redrec
        from redrec.config import Settings
        with redrec.connect(Settings(home=sys.argv[1])) as store:
            print(store.client.info("server")["process_id"], flush=True)
            if "{ending}" == "exception":
                raise RuntimeError("boom")
            time.sleep(60)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script, str(tmp_path)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    assert line.strip().isdigit(), proc.stderr.read()
    redis_pid = int(line)
    if ending == "sigint":
        proc.send_signal(signal.SIGINT)
    elif ending == "sigkill":
        proc.kill()
    proc.wait(timeout=20)
    assert _wait_gone(redis_pid), f"redis-server {redis_pid} outlived its parent ({ending})"


def test_daemon_start_status_stop_keeps_data(tmp_path):
    home, data = tmp_path / "home", tmp_path / "home" / "redis"
    info = start_daemon(home, data)
    try:
        assert daemon_status(home) == info
        assert start_daemon(home, data) == info  # idempotent
        with redrec.connect(Settings(home=home)) as store:
            store.client.set("kept", "yes")
    finally:
        assert stop_daemon(home)
    assert _wait_gone(info.pid)
    assert daemon_status(home) is None
    assert not stop_daemon(home)
    start_daemon(home, data)
    try:
        with redrec.connect(Settings(home=home)) as store:
            assert store.client.get("kept") in (b"yes", "yes")
    finally:
        stop_daemon(home)


def test_server_without_modules_is_refused_with_a_clear_message(tmp_path):
    server, _ = find_binaries()
    port = 6390 + os.getpid() % 500
    proc = subprocess.Popen([str(server), "--port", str(port), "--bind", "127.0.0.1",
                             "--dir", str(tmp_path), "--save", "", "--appendonly", "no"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        from redrec.store.connection import ping
        deadline = time.monotonic() + 10
        while not ping("127.0.0.1", port, None) and time.monotonic() < deadline:
            time.sleep(0.05)
        with pytest.raises(StoreUnavailable, match=r"lacks search .* and JSON"):
            redrec.Store.connect(f"redis://127.0.0.1:{port}/0")
    finally:
        proc.terminate()
        proc.wait()


def test_redis_url_setting_is_used(store):
    kw = store.client.get_connection_kwargs()
    url = f"redis://:{kw['password']}@{kw['host']}:{kw['port']}/0"
    with redrec.connect(Settings(redis_url=url, home=Path("/nonexistent"))) as s2:
        s2.client.set("via-url", 1)
    assert store.client.get("via-url") in (b"1", "1")
