"""Online engine benchmark: track and recommend latency, stream worker throughput.

A seeded catalogue of 20,000 items (384-d vectors from a mixture of 200 topics, 20
categories, prices, stock flags) and 10,000 users with histories (~20 events each,
drawn around a favourite topic) are loaded; then it measures, in process:

* ``track``     p50/p99 of single events (view/click/cart/purchase mix)
* ``recommend`` p50/p99, k=10, with a category/price/stock filter and the user's
                 exclusions, for random users with histories (after the item-to-item
                 neighbour lists are cached, ``Engine.warm_item_neighbours``, and the
                 item vectors are held in process, ``Engine.warm_vectors``: both timed)
* stream workers: events/s through the consumer group with 1 and 2 worker processes,
                 from the moment every worker is ready (engine open, item vectors
                 loaded, as ``redrec worker`` starts; that start is reported apart)

    python benchmarks/bench_engine.py [--items 20000] [--users 10000]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from _common import emit, percentiles_ms  # noqa: E402

import redrec  # noqa: E402
from redrec.catalog import Catalog, ingest  # noqa: E402
from redrec.engine import Engine, EngineConfig, Event  # noqa: E402
from redrec.engine.worker import Worker, publish  # noqa: E402
from redrec.store.streams import EventStream  # noqa: E402

DIM = 384
TYPES = ["view"] * 6 + ["click"] * 2 + ["add_to_cart", "purchase"]


class LookupEncoder:
    """Vectors made up front: 'item 17' -> vectors[17]."""

    name = "bench-lookup"
    dim = DIM

    def __init__(self, vectors: np.ndarray) -> None:
        self.vectors = vectors

    def encode(self, texts, *, progress=False):
        return np.stack([self.vectors[int(t.split()[1])] for t in texts])


def mapping(name: str) -> dict:
    return {"index": name, "prefix": f"{name}:", "storage": "hash", "id": "id",
            "text": {"field": "vec", "source": ["text"]},
            "vector": {"algorithm": "hnsw", "metric": "cosine", "m": 16, "ef_construction": 100},
            "fields": {"id": "tag", "category": "tag", "price": "numeric", "in_stock": "tag"}}


def build(store, n_items: int, seed: int = 1):
    rng = np.random.default_rng(seed)
    topics = rng.normal(size=(200, DIM)).astype(np.float32)
    topic_of = rng.integers(0, 200, n_items)
    vecs = topics[topic_of] + rng.normal(scale=0.9, size=(n_items, DIM)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    items = [{"id": f"i{i}", "text": f"item {i}", "category": f"c{topic_of[i] % 20}",
              "price": float(rng.integers(1, 200)), "in_stock": "yes" if rng.random() < .8 else "no"}
             for i in range(n_items)]
    enc = {"text": LookupEncoder(vecs)}
    ingest(store, mapping("bench_items"), items, encoders=enc)
    return Catalog(store, mapping("bench_items"), encoders=enc), topic_of


def histories(n_users: int, topic_of: np.ndarray, per_user: int, t0: float, seed: int = 2):
    rng = np.random.default_rng(seed)
    by_topic: dict[int, np.ndarray] = {t: np.nonzero(topic_of == t)[0] for t in range(200)}
    events = []
    for u in range(n_users):
        fav = rng.integers(0, 200, 2)
        for j in range(per_user):
            pool = by_topic[int(fav[j % 2])]
            item = int(pool[rng.integers(0, len(pool))])
            events.append(Event.create(f"u{u}", f"i{item}", TYPES[rng.integers(0, len(TYPES))],
                                       timestamp=t0 + u + j * 0.01, id=f"h{u}-{j}", now=t0 + 1e6))
    return events


def _worker_proc(url: str, consumer: str, ready: mp.Queue, go, out: mp.Queue) -> None:
    """One ``redrec worker``: opens the engine and loads the item vectors (as the CLI
    does at start), says it is ready, and drains the stream once told to go."""
    store = redrec.Store.connect(url)
    from redrec.engine.setup import open_engine

    engine = open_engine(store, "bench_items")
    worker = Worker(engine, EventStream(store.client), consumer=consumer, batch=500,
                    block_ms=200)
    worker.warm()
    ready.put(consumer)
    go.wait()
    worker.run(idle_exit_s=1.0)
    out.put(vars(worker.stats))


def recommend_latency(engine, users: int, queries: int, seed: int = 3):
    """Filtered and plain recommend latencies (seconds) for random users."""
    rng = np.random.default_rng(seed)
    lat_rec, lat_plain, sizes = [], [], []
    for _ in range(queries):
        u = f"u{rng.integers(0, users)}"
        filters = {"in_stock": "yes", "price": {"lte": 150},
                   "category": [f"c{c}" for c in rng.integers(0, 20, 5)]}
        s = time.perf_counter()
        recs = engine.recommend(u, 10, filters=filters)
        lat_rec.append(time.perf_counter() - s)
        sizes.append(len(recs))
        s = time.perf_counter()
        engine.recommend(u, 10)
        lat_plain.append(time.perf_counter() - s)
    return lat_rec, lat_plain, sizes


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--items", type=int, default=20_000)
    ap.add_argument("--users", type=int, default=10_000)
    ap.add_argument("--per-user", type=int, default=20)
    ap.add_argument("--queries", type=int, default=2000)
    ap.add_argument("--stream-events", type=int, default=40_000)
    args = ap.parse_args()
    t0 = 1_780_000_000.0
    with redrec.connect(ephemeral=True) as store:
        t = time.perf_counter()
        catalog, topic_of = build(store, args.items)
        load_s = time.perf_counter() - t
        cfg = EngineConfig(category_field="category")
        engine = Engine(store, catalog, cfg, clock=lambda: t0 + 2e6)
        from redrec.catalog.registry import register
        register(store, catalog.mapping)
        store.put_meta("engine", "bench_items", cfg.model_dump(mode="json"))

        events = histories(args.users, topic_of, args.per_user, t0)
        t = time.perf_counter()
        for s in range(0, len(events), 1000):
            engine.track_many(events[s:s + 1000])
        batch_rate = len(events) / (time.perf_counter() - t)

        # Item-to-item neighbour lists, cached in Redis (computed on first use otherwise).
        t = time.perf_counter()
        engine.warm_item_neighbours()
        warm_s = time.perf_counter() - t
        # Item vectors in process, as a long-running service holds them (they stay until
        # the catalogue changes); without this the first requests read them from Redis.
        t = time.perf_counter()
        engine.warm_vectors()
        vectors_s = time.perf_counter() - t

        rng = np.random.default_rng(3)
        lat_track = []
        for n in range(args.queries):
            ev = Event.create(f"u{rng.integers(0, args.users)}", f"i{rng.integers(0, args.items)}",
                              TYPES[rng.integers(0, len(TYPES))], timestamp=t0 + 1e6 + n,
                              now=t0 + 2e6)
            s = time.perf_counter()
            engine.track(ev)
            lat_track.append(time.perf_counter() - s)

        lat_rec, lat_plain, sizes = recommend_latency(engine, args.users, args.queries)
        mem = store.used_memory()

        # stream workers: producers XADD, N worker processes drain the group
        kw = store.client.get_connection_kwargs()
        url = f"redis://:{kw['password']}@{kw['host']}:{kw['port']}/0"
        stream = EventStream(store.client)
        stream.ensure_group()
        throughput = {}
        for n_workers in (1, 2):
            evs = [Event.create(f"u{rng.integers(0, args.users)}", f"i{rng.integers(0, args.items)}",
                                "view", timestamp=t0 + 1.5e6 + i, id=f"s{n_workers}-{i}",
                                now=t0 + 2e6) for i in range(args.stream_events)]
            publish(stream, evs)
            ctx = mp.get_context("fork")
            q, ready, go = ctx.Queue(), ctx.Queue(), ctx.Event()
            s = time.perf_counter()
            procs = [ctx.Process(target=_worker_proc, args=(url, f"w{n_workers}-{j}", ready, go, q))
                     for j in range(n_workers)]
            for p in procs:
                p.start()
            for _ in procs:
                ready.get()
            throughput[f"{n_workers}_workers_start_s"] = round(time.perf_counter() - s, 2)
            s = time.perf_counter()
            go.set()
            while stream.lag() > 0 or stream.pending() > 0:
                time.sleep(0.05)
            elapsed = time.perf_counter() - s
            for p in procs:
                p.join()
            stats = [q.get() for _ in procs]
            throughput[f"{n_workers}_workers_events_per_s"] = round(args.stream_events / elapsed)
            throughput[f"{n_workers}_workers_applied"] = sum(x["applied"] for x in stats)

        emit("engine", {
            "items": args.items, "users": args.users, "history_events": len(events),
            "catalog_load_s": round(load_s, 1), "item_neighbours_warm_s": round(warm_s, 1),
            "item_vectors_warm_s": round(vectors_s, 1),
            "track_many_events_per_s": round(batch_rate),
            "track": percentiles_ms(lat_track),
            "recommend_filtered": {**percentiles_ms(lat_rec), "min_len": min(sizes)},
            "recommend_plain": percentiles_ms(lat_plain),
            "stream": throughput, "redis_used_memory_mb": round(mem / 2**20, 1),
        })


if __name__ == "__main__":
    main()
