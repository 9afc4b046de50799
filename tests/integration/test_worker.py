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


def _popularity(engine: Engine, items: list[str]) -> list[float]:
    return [float(engine.store.client.zscore("redrec:popular", i) or 0.0) for i in items]


def test_a_flushed_script_cache_mid_batch_applies_every_event_once(setup):
    """The scripts go out in pipelined chunks; after SCRIPT FLUSH every chunk is refused
    (NOSCRIPT) and run again once loaded: the same counts as a normal run, none twice."""
    engine, stream, p = setup
    items = [f"p{(i * 7) % 60}" for i in range(60)]
    before = _popularity(engine, items)
    engine.store.client.script_flush()
    assert engine.track_many(_events(p, 350)) == [True] * 350  # four chunks
    flushed = _popularity(engine, items)
    again = [Event.create(f"{p}x{e.user_id}", e.item_id, e.type, timestamp=e.timestamp,
                          id=f"x{e.id}") for e in _events(p, 350)]
    assert engine.track_many(again) == [True] * 350
    normal = _popularity(engine, items)
    assert _total_events(engine, p) == 350
    for b, f, n in zip(before, flushed, normal, strict=True):
        assert f - b == pytest.approx(n - f, rel=1e-9)
    assert engine.track_many(_events(p, 350)) == [False] * 350  # replays change nothing


def test_one_users_events_apply_in_order_across_pipelined_chunks(setup):
    engine, stream, p = setup
    events = [Event.create(f"{p}solo", f"p{(i * 11) % 60}", "view", timestamp=T + i,
                           id=f"{p}s{i}") for i in range(260)]
    engine.track_many(events)
    state = engine.state(f"{p}solo")
    assert state.events == 260
    assert [h.item_id for h in state.history] == [e.item_id for e in events[::-1]][:50]
    assert [h.timestamp for h in state.history] == sorted((h.timestamp for h in state.history),
                                                          reverse=True)


def test_a_warmed_worker_sees_a_changed_item_vector(setup, store):
    """Item vectors held by a worker hold while the catalogue's generation stands (and
    for cache_ttl_s in any case, 0 here): a re-ingested item's new vector is what the
    next saved session vector is made of."""
    engine, stream, p = setup
    engine.cache_ttl_s = 0.0
    worker = Worker(engine, stream, consumer="w", block_ms=10)
    assert worker.warm() == 60
    mapping = {**SHOP_MAPPING, "index": f"{p}_shop", "prefix": f"{p}shop:"}
    item = next(i for i in shop_items() if i["id"] == "p3")
    ingest(store, mapping, [{**item, "description": "a cooking book about romance"}], encoders=ENC)
    fresh = ENC["text"].encode(["a cooking book about romance"])[0]
    publish(stream, [Event.create(f"{p}new", "p3", "view", timestamp=T, id=f"{p}n1")])
    assert worker.run(idle_exit_s=0.2).applied == 1
    import numpy as np

    saved = np.frombuffer(store.client.hget(engine.users.profile_key(f"{p}new"), "vec"), "<f4")
    assert np.allclose(saved, fresh / np.linalg.norm(fresh), atol=1e-6)
