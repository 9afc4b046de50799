"""Stream workers: shared load, crash recovery with no event lost or counted twice."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from redrec.catalog import Catalog, ingest
from redrec.engine import Engine, EngineConfig, Event
from redrec.engine.worker import Worker, publish
from redrec.store.streams import EventStream
from tests.support.shop import SHOP_MAPPING, KeywordEncoder, shop_items

ENC = {"text": KeywordEncoder()}
T = 1_780_000_000.0


@pytest.fixture
def setup(store, unique):
    mapping = {**SHOP_MAPPING, "index": f"{unique}_shop", "prefix": f"{unique}shop:"}
    ingest(store, mapping, shop_items(), encoders=ENC)
    engine = Engine(store, Catalog(store, mapping, encoders=ENC),
                    EngineConfig(category_field="category"), clock=lambda: T + 10_000)
    stream = EventStream(store.client, name=f"{unique}:events", group="g")
    return engine, stream, unique


def _events(prefix: str, n: int, users: int = 25) -> list[Event]:
    return [Event.create(f"{prefix}u{i % users}", f"p{(i * 7) % 60}",
                         "purchase" if i % 10 == 0 else "view", timestamp=T + i, id=f"{prefix}e{i}")
            for i in range(n)]


def _total_events(engine: Engine, prefix: str, users: int = 25) -> int:
    return sum(s.events for s in engine.users.states([f"{prefix}u{i}" for i in range(users)], T))


def test_crash_before_ack_loses_nothing_and_counts_nothing_twice(setup):
    engine, stream, p = setup
    events = _events(p, 500)
    publish(stream, events)

    class Crash(Exception):
        pass

    def crash(_acked):
        raise Crash  # applied, but killed before XACK

    w1 = Worker(engine, stream, consumer="w1", batch=120, block_ms=10, on_batch=crash)
    with pytest.raises(Crash):
        w1.run_once()
    assert stream.pending() == 120
    w1b = Worker(engine, stream, consumer="w1", batch=120, block_ms=10)  # restart
    stats = w1b.run(idle_exit_s=0.2)
    assert stats.duplicates == 120 and stats.applied == 380 and stats.dead == 0
    assert stream.pending() == 0
    assert _total_events(engine, p) == 500
    # what was bought is excluded, exactly once
    user0 = engine.state(f"{p}u0")
    assert user0.excluded == {e.item_id for e in events if e.user_id == f"{p}u0" and e.type == "purchase"}


def test_another_worker_claims_a_dead_workers_entries(setup):
    engine, stream, p = setup
    publish(stream, _events(p, 100))
    dead = Worker(engine, stream, consumer="dead", batch=60, block_ms=10,
                  on_batch=lambda _: (_ for _ in ()).throw(RuntimeError("died")))
    with pytest.raises(RuntimeError):
        dead.run_once()
    other = Worker(engine, stream, consumer="other", batch=60, block_ms=10, min_idle_ms=0)
    other.run(idle_exit_s=0.2)
    assert stream.pending() == 0
    assert _total_events(engine, p) == 100


def test_bad_entries_go_to_the_dead_letter_stream(setup):
    engine, stream, p = setup
    good = _events(p, 3)
    stream.publish([good[0].to_json(), "{not json", json.dumps({"user_id": "u", "item_id": "zz",
                    "type": "view", "timestamp": T}), good[1].to_json(),
                    json.dumps({"user_id": "u", "item_id": "p1", "type": "wink"})])
    stats = Worker(engine, stream, consumer="w", block_ms=10).run(idle_exit_s=0.2)
    assert stats.applied == 2 and stats.dead == 3
    reasons = [d["error"] for d in stream.dead_entries()]
    assert any("unknown item" in r for r in reasons)
    assert any("unknown event type" in r for r in reasons)
    assert stream.pending() == 0


@pytest.mark.slow
def test_killed_worker_process_then_restarted(tmp_path, setup, store):
    """A real `redrec worker`-style process killed with SIGKILL mid-stream."""
    engine, stream, p = setup
    events = _events(p, 3000)
    publish(stream, events)
    kw = store.client.get_connection_kwargs()
    url = f"redis://:{kw['password']}@{kw['host']}:{kw['port']}/0"
    script = f"""
import sys, time
sys.path.insert(0, {os.getcwd()!r})
import redrec
from redrec.catalog import Catalog
from redrec.engine import Engine, EngineConfig
from redrec.engine.worker import Worker
from redrec.store.streams import EventStream
from tests.support.shop import SHOP_MAPPING, KeywordEncoder
store = redrec.Store.connect({url!r})
mapping = {{**SHOP_MAPPING, "index": "{p}_shop", "prefix": "{p}shop:"}}
engine = Engine(store, Catalog(store, mapping, encoders={{"text": KeywordEncoder()}}),
                EngineConfig(category_field="category"), clock=lambda: {T + 10_000})
def slow(_):
    print("batch", flush=True)
    time.sleep(0.05)
Worker(engine, EventStream(store.client, name="{p}:events", group="g"), consumer="proc",
       batch=100, block_ms=10, on_batch=slow).run(idle_exit_s=1)
"""
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    for _ in range(5):  # let it get through a few batches, then kill it hard
        assert proc.stdout.readline().startswith("batch")
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert 0 < _total_events(engine, p) < 3000
    stats = Worker(engine, stream, consumer="proc", batch=200, block_ms=10).run(idle_exit_s=0.3)
    assert stats.applied + stats.duplicates >= 3000 - 500
    assert stream.pending() == 0
    assert _total_events(engine, p) == 3000
    time.sleep(0)


def test_pending_entries_trimmed_from_the_stream_are_released(setup, store):
    engine, stream, p = setup
    publish(stream, _events(p, 5))
    dying = Worker(engine, stream, consumer="t", block_ms=10,
                   on_batch=lambda _: (_ for _ in ()).throw(RuntimeError("died")))
    with pytest.raises(RuntimeError):
        dying.run_once()
    assert stream.pending() == 5
    store.client.xtrim(stream.name, maxlen=0)  # the entries' content is gone
    Worker(engine, stream, consumer="t", block_ms=10).run(idle_exit_s=0.2)
    assert stream.pending() == 0
