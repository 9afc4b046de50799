"""Training time and peak memory on a synthetic log of >= 250,000 events over >= 20,000 items.

Seeded. The log has a long-tailed item popularity (Zipf) and sequential structure (each
item has a few likely successors), so the models have something to learn and a quick
quality check on a sample of users shows they did. Each model trains in its own
process so its peak RSS is its own.

    .venv/bin/python benchmarks/learning/scale.py [--events 250000] [--items 20000]
        [--users 10000] [--threads 2] [--models popularity,itemknn,als,tower]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np


def synthetic_log(events: int, items: int, users: int, seed: int) -> dict[str, list[str]]:
    """Per-user chronological sequences: half the steps follow an item's successors."""
    rng = np.random.default_rng(seed)
    popularity = 1.0 / np.arange(1, items + 1) ** 0.8
    popularity = rng.permutation(popularity / popularity.sum())
    successors = rng.choice(items, size=(items, 4), p=popularity)
    lengths = rng.lognormal(mean=0.0, sigma=0.8, size=users)
    lengths = np.maximum(3, np.round(lengths / lengths.sum() * events)).astype(int)
    lengths[np.argmax(lengths)] += events - lengths.sum()
    random_items = iter(rng.choice(items, size=events + users, p=popularity).tolist())
    coins = iter(rng.random(events + users).tolist())
    picks = iter(rng.integers(0, 4, events + users).tolist())
    out: dict[str, list[str]] = {}
    for u, length in enumerate(lengths.tolist()):
        seq = [next(random_items)]
        while len(seq) < length:
            follow = next(coins) < 0.5
            seq.append(int(successors[seq[-1], next(picks)]) if follow else next(random_items))
        out[f"u{u}"] = [f"i{i}" for i in seq]
    return out


def run_one(args: argparse.Namespace) -> None:
    import torch

    from redrec.evaluate.metrics import evaluate
    from redrec.evaluate.split import leave_one_out
    from redrec.models.als import ALS
    from redrec.models.itemknn import ItemKNN
    from redrec.models.popularity import Popularity
    from redrec.models.tower import TowerConfig, UserTower

    torch.set_num_threads(args.threads)
    sequences = synthetic_log(args.events, args.items, args.users, args.seed)
    split = leave_one_out(sequences)
    base_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    make = {
        "popularity": Popularity,
        "itemknn": ItemKNN,
        "als": lambda: ALS(num_threads=args.threads, seed=args.seed),
        "tower": lambda: UserTower(TowerConfig(seed=args.seed, **json.loads(args.tower))),
    }[args.model]
    start = time.perf_counter()
    model = make().fit(split.train)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    rng = np.random.default_rng(args.seed)
    sample = [split.test[i] for i in rng.choice(len(split.test), 2000, replace=False)]
    quality = evaluate(model, sample, catalogue=split.catalogue())
    print(
        json.dumps(
            {
                "model": args.model,
                "events": split.n_train_events(),
                "items": len(model.item_ids),
                "users": len(split.train),
                "train_s": round(seconds, 1),
                "peak_rss_mb": round(peak),
                "rss_before_fit_mb": round(base_rss),
                "test_sample_full_NDCG@10": round(quality["NDCG@10"], 4),
                "test_sample_full_HR@10": round(quality["HR@10"], 4),
                "metadata": getattr(model, "metadata", {}),
            }
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=250_000)
    parser.add_argument("--items", type=int, default=24_000, help="item pool (not all occur)")
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--models", default="popularity,itemknn,als,tower")
    parser.add_argument("--tower", default="{}", help="tower overrides as JSON")
    parser.add_argument("--model", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.model:
        run_one(args)
        return
    for name in args.models.split(","):
        command = [
            sys.executable,
            str(Path(__file__).resolve()),
            "--model",
            name,
            "--events",
            str(args.events),
            "--items",
            str(args.items),
            "--users",
            str(args.users),
            "--threads",
            str(args.threads),
            "--seed",
            str(args.seed),
            "--tower",
            args.tower,
        ]
        subprocess.run(command, check=True)


if __name__ == "__main__":
    main()
