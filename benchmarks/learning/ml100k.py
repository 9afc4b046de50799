"""Offline quality of every model on MovieLens-100K, leave-one-out by time.

Seeded. Trains popularity, item-kNN, ALS (its defaults, and the best of a small grid
chosen on the validation items), and the user tower (its defaults), then prints one
table: sampled (100 negatives) HR@10 / NDCG@10 / MRR and full-catalogue HR@10 / NDCG@10
/ MRR / Recall@10 on the test items (valid items in a second table), plus training time.

Ranking is brute force here (numpy dot products over the whole catalogue). A user's
already-seen items are excluded from the ranking, as serving does; that applies to every
model alike. Every model scores from the user's history at request time (no stored user
factors), and the test history includes the validation item.

    .venv/bin/python benchmarks/learning/ml100k.py [--data DIR] [--threads 2] [--json OUT]

MovieLens may not be redistributed: it is read from a path, never committed.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from redrec.datasets.interactions import Interactions, read_pairs, read_recbole
from redrec.evaluate.metrics import evaluate, sample_negatives
from redrec.evaluate.split import LeaveOneOut, leave_one_out
from redrec.models.als import ALS
from redrec.models.base import Recommender
from redrec.models.itemknn import ItemKNN
from redrec.models.popularity import Popularity
from redrec.models.tower import TowerConfig, UserTower

ALS_GRID = {"factors": [32, 64, 128], "regularization": [0.1, 1.0, 10.0], "alpha": [1.0, 5.0, 20.0]}
KNN_GRID = {"neighbours": [20, 50, 100, 200], "shrink": [0.0, 10.0]}


def report(model: Recommender, split: LeaveOneOut, negatives: dict[str, np.ndarray]) -> dict:
    catalogue = split.catalogue()
    out: dict[str, Any] = {}
    for part in ("valid", "test"):
        cases = getattr(split, part)
        full = evaluate(model, cases, catalogue=catalogue, protocol="full")
        sampled = evaluate(model, cases, catalogue=catalogue, protocol="sampled", negatives=negatives[part])
        out[part] = {f"sampled_{k}": v for k, v in sampled.items()} | {
            f"full_{k}": v for k, v in full.items()
        }
    return out


def tune(make: Any, grid: dict[str, list], split: LeaveOneOut) -> tuple[dict, float]:
    """Best grid point by full-catalogue NDCG@10 on the validation items."""
    best: tuple[dict, float] = ({}, -1.0)
    for values in itertools.product(*grid.values()):
        params = dict(zip(grid, values, strict=True))
        model = make(**params).fit(split.train)
        score = evaluate(model, split.valid, catalogue=split.catalogue())["NDCG@10"]
        if score > best[1]:
            best = (params, score)
    return best


def user_vector_latency(model: UserTower, split: LeaveOneOut, n: int = 1000) -> dict:
    """Request-time cost of one user vector for a full-length (max_len) history."""
    from threadpoolctl import threadpool_limits

    longest = max(split.test, key=lambda c: len(c.history)).history
    history = list(longest)[-model.config.max_len :]
    times = []
    with threadpool_limits(1, "blas"):
        for _ in range(n):
            start = time.perf_counter()
            model.user_vector(history)
            times.append(time.perf_counter() - start)
    return {
        "len": len(history),
        "p50_ms": float(np.percentile(times, 50) * 1e3),
        "p99_ms": float(np.percentile(times, 99) * 1e3),
    }


def load(path: Path) -> Interactions:
    return read_pairs(path) if path.is_file() and path.suffix != ".inter" else read_recbole(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("/work/shared/data/ml-100k"))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-tune", action="store_true", help="skip the baseline grids")
    parser.add_argument(
        "--tower",
        type=json.loads,
        default={},
        help="tower overrides as JSON, e.g. '{\"epochs\": 50}'",
    )
    parser.add_argument("--json", type=Path, help="append one JSON line per run here")
    args = parser.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    data = load(args.data)
    split = leave_one_out(data.sequences())
    catalogue = split.catalogue()
    negatives = {
        part: sample_negatives(getattr(split, part), split.sequences, catalogue, seed=args.seed + i)
        for i, part in enumerate(("valid", "test"))
    }
    print(
        f"# {args.data}: {len(data)} events, {data.n_users} users, {data.n_items} items; "
        f"{len(split.test)} evaluated users, {split.n_train_events()} training events, "
        f"read+split {time.perf_counter() - t0:.1f}s",
        file=sys.stderr,
    )

    models: dict[str, Any] = {
        "popularity": Popularity,
        "itemknn": ItemKNN,
        "als": lambda: ALS(seed=args.seed, num_threads=args.threads),
    }
    if not args.no_tune:
        params, _ = tune(lambda **p: ItemKNN(**p), KNN_GRID, split)
        models[f"itemknn*{params}"] = lambda p=params: ItemKNN(**p)
        params, _ = tune(lambda **p: ALS(seed=args.seed, num_threads=args.threads, **p), ALS_GRID, split)
        models[f"als*{params}"] = lambda p=params: ALS(seed=args.seed, num_threads=args.threads, **p)
    config = TowerConfig(seed=args.seed, **args.tower)
    models["tower"] = lambda: UserTower(config)

    rows = []
    latency: dict[str, float] = {}
    for name, make in models.items():
        start = time.perf_counter()
        model = make().fit(split.train, show_progress=name == "tower")
        seconds = time.perf_counter() - start
        rows.append((name, seconds, report(model, split, negatives)))
        print(f"# {name}: trained in {seconds:.1f}s", file=sys.stderr)
        if name == "tower":
            latency = user_vector_latency(model, split)

    for part in ("test", "valid"):
        print(
            f"\n{part} items (n={len(getattr(split, part))}); sampled = 100 negatives, "
            "full = whole catalogue minus seen items"
        )
        head = (
            "model",
            "s-HR@10",
            "s-NDCG@10",
            "s-MRR",
            "HR@10",
            "NDCG@10",
            "MRR",
            "Recall@10",
            "train s",
        )
        print("| " + " | ".join(head) + " |\n|" + "---|" * len(head))
        for name, seconds, result in rows:
            r = result[part]
            cells = [
                r["sampled_HR@10"],
                r["sampled_NDCG@10"],
                r["sampled_MRR"],
                r["full_HR@10"],
                r["full_NDCG@10"],
                r["full_MRR"],
                r["full_Recall@10"],
            ]
            print(f"| {name} | " + " | ".join(f"{c:.4f}" for c in cells) + f" | {seconds:.1f} |")
    if latency:
        print(
            f"\ntower user_vector, one sequence of {latency['len']} items (numpy, 1 BLAS "
            f"thread): p50 {latency['p50_ms']:.3f} ms, p99 {latency['p99_ms']:.3f} ms"
        )
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"\npeak RSS {peak_mb:.0f} MiB, torch threads {args.threads}, total {time.perf_counter() - t0:.0f}s"
    )
    if args.json:
        sha = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False
        ).stdout.strip()
        line = {
            "benchmark": "learning/ml100k",
            "git": sha or None,
            "data": str(args.data),
            "machine": platform.machine(),
            "cpus": os.cpu_count(),
            "threads": args.threads,
            "seed": args.seed,
            "tower": config.__dict__,
            "peak_rss_mb": round(peak_mb),
            "user_vector_latency": latency,
            "models": {name: {"train_s": round(s, 2), **res} for name, s, res in rows},
        }
        with args.json.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(line) + "\n")


if __name__ == "__main__":
    main()
