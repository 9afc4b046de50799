"""Tune the served hybrid's list weights on MovieLens-100K's validation items only.

The shipped weights (tower 4.0) came from comparing two values on the *test* items
(benchmarks/README.md says a proper tuning was still to do). This script does that tuning
the way every other model choice in redrec was made: on the validation items.

Protocol (leave-one-out by time, ``redrec.evaluate.split``): the tower is trained once on
the training sequences (each user's items minus the last two) and published into a
private embedded Redis; each evaluated user's training history is replayed as events
(with their ``.user`` attributes recorded first, as ``redrec evaluate`` does); then, for
each setting of ``EngineConfig.list_weights``, an Engine with that config over the same
store ranks the whole catalogue through ``Engine.recommend`` and the validation item (the
one before the test item) is scored: full-catalogue NDCG@10 and HR@10. The test items are
never read. The grid: tower weight x a scale on the content lists (session, recent,
people), popularity kept at its default; "tower only" is printed as a reference.

    .venv/bin/python benchmarks/learning/tune_hybrid.py [--data ../shared/data/ml-100k]
        [--towers 2,4,8] [--scales 0.5,1] [--epochs N] [--threads N] [--max-users N]
        [--json benchmarks/learning/results.jsonl]

MovieLens may not be redistributed: it is read from its path, never copied here.
"""

from __future__ import annotations

import argparse
import itertools
import json
import platform
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
CONTENT_LISTS = ("session", "recent", "people")


def settings(towers: list[float], scales: list[float]) -> list[tuple[str, dict[str, float]]]:
    """The grid of list weights (named), the shipped defaults scaled, plus the tower-only
    reference first."""
    from redrec.engine import EngineConfig
    from redrec.evaluate.runner import TOWER_ONLY

    base = EngineConfig().list_weights
    out = [("tower only (reference)", dict(TOWER_ONLY))]
    for tower, scale in itertools.product(towers, scales):
        weights = {name: w * scale if name in CONTENT_LISTS else w for name, w in base.items()}
        weights["tower"] = tower
        out.append((f"tower {tower:g}, content x{scale:g}", weights))
    return out


def _floats(text: str) -> list[float]:
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None
    if not values or any(v < 0 for v in values):
        raise argparse.ArgumentTypeError(f"expected non-negative numbers, got {text!r}")
    return values


def parse_args() -> argparse.Namespace:
    from redrec.models.threads import default_threads

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "ml-100k")
    parser.add_argument("--towers", type=_floats, default=[2.0, 4.0, 8.0])
    parser.add_argument("--scales", type=_floats, default=[0.5, 1.0],
                        help="multipliers on the session, recent and people weights")
    parser.add_argument("--epochs", type=int, help="override the tower's epochs (smoke tests)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=default_threads())
    parser.add_argument("--max-users", type=int, help="a seeded sample of validation users")
    parser.add_argument("--json", type=Path, default=Path(__file__).with_name("results.jsonl"),
                        help="append one JSON line per setting here")
    parser.add_argument("--progress", action="store_true")
    return parser.parse_args()


def say(msg: str) -> None:
    print(f"# {msg}", file=sys.stderr, flush=True)


def train_tower(split: Any, args: argparse.Namespace) -> tuple[Any, float]:
    """The tower exactly as ``redrec evaluate`` trains it (best epoch on valid items)."""
    from redrec.models.tower import UserTower

    start = time.perf_counter()
    tower = UserTower(seed=args.seed, **({"epochs": args.epochs} if args.epochs else {}))
    tower.fit(split.train, show_progress=args.progress, validation=split.valid)
    return tower, time.perf_counter() - start


def measure(store: Any, catalog: Any, cases: list[Any], grid: list[tuple[str, dict[str, float]]],
            progress: bool) -> list[dict[str, Any]]:
    """Served validation metrics of each setting: a fresh Engine with that config over
    the same store (so the same replayed user state) per setting."""
    from redrec.evaluate.runner import served_engine
    from redrec.evaluate.served import served_metrics

    rows = []
    for name, weights in grid:
        say(f"serving '{name}' for {len(cases)} users")
        result = served_metrics(served_engine(store, catalog, weights), cases, negatives=None,
                                progress=progress)
        rows.append({"setting": name, "list_weights": weights,
                     "valid_full_NDCG@10": result.full["NDCG@10"],
                     "valid_full_HR@10": result.full["HR@10"],
                     "eval_s": round(result.seconds, 1),
                     "recommend_ms_p50": round(result.recommend_ms_p50, 2)})
    return rows


def best_of(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The best grid point (the reference row is not a candidate): NDCG@10, then HR@10."""
    grid = [r for r in rows if "reference" not in r["setting"]]
    return max(grid, key=lambda r: (r["valid_full_NDCG@10"], r["valid_full_HR@10"]))


def print_table(rows: list[dict[str, Any]], best: dict[str, Any]) -> None:
    lists = list(rows[-1]["list_weights"])
    head = ["setting", *lists, "valid NDCG@10", "valid HR@10", "eval s"]
    print("| " + " | ".join(head) + " |\n|" + "---|" * len(head))
    for r in rows:
        mark = "**" if r is best else ""
        weights = [f"{r['list_weights'].get(n, 0.0):g}" for n in lists]
        print(f"| {mark}{r['setting']}{mark} | " + " | ".join(weights)
              + f" | {r['valid_full_NDCG@10']:.4f} | {r['valid_full_HR@10']:.4f} | {r['eval_s']:.1f} |")
    print(f"\nbest on the validation items: {best['setting']} "
          f"(NDCG@10 {best['valid_full_NDCG@10']:.4f}, HR@10 {best['valid_full_HR@10']:.4f})\n"
          f"list_weights: {json.dumps(best['list_weights'])}")


def write_lines(path: Path, rows: list[dict[str, Any]], best: dict[str, Any],
                run: dict[str, Any]) -> None:
    with path.open("a", encoding="utf-8") as handle:
        for r in rows:
            handle.write(json.dumps({**run, **r, "best": r is best}) + "\n")


def _git() -> str | None:
    proc = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                          text=True, check=False, cwd=ROOT)
    return proc.stdout.strip() or None


def main() -> None:
    import redrec
    from redrec.evaluate.runner import load_interactions, prepare_served, sample_cases
    from redrec.evaluate.split import leave_one_out
    from redrec.models.threads import thread_limits

    args = parse_args()
    t0 = time.perf_counter()
    data = load_interactions(args.data)
    split = leave_one_out(data.sequences())
    cases = sample_cases(split.valid, args.max_users, args.seed)
    grid = settings(args.towers, args.scales)
    say(f"{args.data}: {len(data)} events; {len(cases)} validation users, {len(grid)} settings, "
        f"{args.threads} thread(s)")
    timings: dict[str, float] = {}
    with thread_limits(args.threads, torch=True) as threads:
        tower, train_s = train_tower(split, args)
        timings["tower_train_s"] = round(train_s, 1)
        say(f"tower trained in {train_s:.1f}s")
        with redrec.connect(ephemeral=True) as store:
            histories = {c.user: list(c.history) for c in cases}
            engine, pointer = prepare_served(store, data, split, tower, histories, timings,
                                             progress=args.progress, say=say)
            rows = measure(store, engine.catalog, cases, grid, args.progress)
    timings["total_s"] = round(time.perf_counter() - t0, 1)
    best = best_of(rows)
    print_table(rows, best)
    print(f"\ntimings: {json.dumps(timings)}")
    run = {"benchmark": "learning/tune_hybrid", "git": _git(), "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
           "data": str(args.data), "machine": platform.machine(), "threads": threads,
           "seed": args.seed, "validation_users": len(cases), "max_users": args.max_users,
           "tower": asdict(tower.config), "tower_metadata": tower.metadata,
           "model_version": pointer["version"], "timings": timings}
    write_lines(args.json, rows, best, run)
    say(f"appended {len(rows)} lines to {args.json}")


if __name__ == "__main__":
    main()
