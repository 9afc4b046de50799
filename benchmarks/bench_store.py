"""Store benchmark: load, KNN latency (with/without tag filter), recall@10, memory.

100,000 normalised 384-d FLOAT32 vectors drawn from a seeded mixture of 1,000 Gaussian
clusters (shaped like sentence embeddings: most mass near a cluster centre, pairwise
cosine within a cluster around 0.5-0.7), a tag field with 20 categories, HNSW index.
Queries are fresh draws from the same mixture, not stored vectors.

    python benchmarks/bench_store.py [--n 100000] [--queries 1000]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import emit, percentiles_ms  # noqa: E402

import redrec  # noqa: E402


def mixture(n: int, dim: int, clusters: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    centres = rng.normal(size=(clusters, dim)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    labels = rng.integers(0, clusters, size=n)
    noise = rng.normal(scale=0.9 / np.sqrt(dim), size=(n, dim)).astype(np.float32)
    x = centres[labels] + noise
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x.astype(np.float32), labels


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--dim", type=int, default=384)
    ap.add_argument("--clusters", type=int, default=1000)
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--m", type=int, default=16)
    ap.add_argument("--ef-construction", type=int, default=64)
    ap.add_argument("--batch", type=int, default=1000)
    ap.add_argument("--ef", type=int, nargs="*", default=[10, 20, 32, 64, 100, 200])
    args = ap.parse_args()

    rng = np.random.default_rng(42)
    data, _ = mixture(args.n, args.dim, args.clusters, rng)
    queries, _ = mixture(args.queries, args.dim, args.clusters, np.random.default_rng(7))
    # mixture() draws its centres from the generator: regenerate queries around the same ones
    rng_q = np.random.default_rng(42)
    centres = rng_q.normal(size=(args.clusters, args.dim)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    qlab = np.random.default_rng(7).integers(0, args.clusters, size=args.queries)
    queries = centres[qlab] + np.random.default_rng(8).normal(
        scale=0.9 / np.sqrt(args.dim), size=(args.queries, args.dim)).astype(np.float32)
    queries = (queries / np.linalg.norm(queries, axis=1, keepdims=True)).astype(np.float32)
    categories = [f"c{i % 20}" for i in range(args.n)]

    with redrec.connect(ephemeral=True) as store:
        mem0 = store.used_memory()
        index = store.create_index({
            "index": {"name": "bench", "prefix": "b", "storage_type": "hash"},
            "fields": [
                {"name": "category", "type": "tag"},
                {"name": "vec", "type": "vector", "attrs": {
                    "dims": args.dim, "algorithm": "hnsw", "distance_metric": "cosine",
                    "m": args.m, "ef_construction": args.ef_construction,
                    "initial_cap": args.n}},
            ],
        })
        docs = [{"id": str(i), "category": categories[i], "vec": data[i]} for i in range(args.n)]
        t0 = time.perf_counter()
        prepared = index.prepare(docs)
        t1 = time.perf_counter()
        index.write_prepared(prepared, batch_size=args.batch)
        index.wait_until_indexed(600)
        t2 = time.perf_counter()
        mem1 = store.used_memory()
        load_rate = args.n / (t2 - t0)

        # exact neighbours by brute force
        sims = queries @ data.T
        exact = np.argsort(-sims, axis=1)[:, :10]
        cat_mask = np.array([c == "c3" for c in categories])
        sims_f = np.where(cat_mask[None, :], sims, -np.inf)
        exact_f = np.argsort(-sims_f, axis=1)[:, :10]

        recall: dict[int, float] = {}
        latency: dict[int, dict] = {}
        for ef in args.ef:
            lat, rec = [], []
            for qi, q in enumerate(queries):
                s = time.perf_counter()
                hits = index.knn(q, 10, ef_runtime=ef, return_fields=[])
                lat.append(time.perf_counter() - s)
                rec.append(len({int(h.id) for h in hits} & set(exact[qi].tolist())) / 10)
            recall[ef] = round(float(np.mean(rec)), 4)
            latency[ef] = percentiles_ms(lat)
        default_ef = redrec.store.schema.DEFAULT_EF_RUNTIME
        by_policy = {}
        for policy in ("auto", "default", "BATCHES", "ADHOC_BF"):
            lat_f, rec_f = [], []
            for qi, q in enumerate(queries):
                s = time.perf_counter()
                hits = index.knn(q, 10, filters={"category": "c3"}, ef_runtime=default_ef,
                                 return_fields=[], hybrid_policy=policy)
                lat_f.append(time.perf_counter() - s)
                rec_f.append(len({int(h.id) for h in hits} & set(exact_f[qi].tolist())) / 10)
            by_policy[policy] = {**percentiles_ms(lat_f),
                                 "recall_at_10": round(float(np.mean(rec_f)), 4)}
        lat_d = []
        for q in queries:  # the default path: index default EF, default return fields
            s = time.perf_counter()
            index.knn(q, 10)
            lat_d.append(time.perf_counter() - s)

        emit("store", {
            "n": args.n, "dim": args.dim, "m": args.m, "ef_construction": args.ef_construction,
            "redis_version": store.server_info()["redis_version"],
            "prepare_s": round(t1 - t0, 2), "load_s": round(t2 - t0, 2),
            "load_vectors_per_s": round(load_rate),
            "memory_bytes_per_vector": round((mem1 - mem0) / args.n),
            "default_ef_runtime": default_ef,
            "recall_at_10_by_ef": recall, "knn_latency_by_ef": latency,
            "knn_default": percentiles_ms(lat_d),
            "knn_tag_filter_5pct_by_policy": by_policy,
        })


if __name__ == "__main__":
    main()
