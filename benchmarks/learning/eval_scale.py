"""Time ``redrec evaluate`` end to end on a synthetic log of >= 30,000 users over >= 20,000 items.

``scale.py`` times the models' training alone. This times the whole served evaluation a
user would run, so the slow phases can be found: load + split, training, catalogue +
publish into Redis, replay of every history as events, then serving each evaluated user
through ``Engine.recommend`` (full catalogue and 100 sampled negatives). The log comes
from ``scale.py``'s seeded generator (Zipf-like popularity, 4 likely successors per item)
and is written as a plain ``user item`` file into a temporary directory, never into the
repository. The command runs in its own process, as a user would run it; the phases come
from the ``timings`` of its JSON report.

    .venv/bin/python benchmarks/learning/eval_scale.py [--users 30000] [--items 24000]
        [--events 750000] [--models popularity,tower,hybrid] [--epochs N] [--threads N]
        [--max-users N] [--dir DIR] [--json benchmarks/learning/results.jsonl]

At the default size the log has no item text, so the hybrid's content lists (session,
item-to-item, people) have no vectors: "hybrid" is the tower plus popularity here.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REDREC = str(Path(sys.executable).parent / "redrec")
TARGET_USERS, TARGET_ITEMS = 30_000, 20_000


def parse_args() -> argparse.Namespace:
    from redrec.models.threads import default_threads

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=TARGET_USERS)
    parser.add_argument("--items", type=int, default=24_000, help="item pool (not all occur)")
    parser.add_argument("--events", type=int, help="default: 25 per user, scale.py's density")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--models", default="popularity,tower,hybrid")
    parser.add_argument("--epochs", type=int, help="override the tower's epochs")
    parser.add_argument("--threads", type=int, default=default_threads())
    parser.add_argument("--max-users", type=int, help="serve a seeded sample of users only")
    parser.add_argument("--dir", type=Path, help="where the log and report go (default: a "
                        "temporary directory, removed afterwards)")
    parser.add_argument("--json", type=Path, help="append one JSON line here")
    args = parser.parse_args()
    args.events = args.events or 25 * args.users
    if min(args.users, args.items, args.events) < 1 or args.events < 3 * args.users:
        parser.error("--users, --items must be >= 1 and --events >= 3 x --users")
    return args


def write_log(path: Path, args: argparse.Namespace) -> dict[str, Any]:
    """Generate the seeded log and write it as ``user item`` lines, each user's in order."""
    sys.path.insert(0, str(HERE))  # scale.py is a script beside this one, not a package
    from scale import synthetic_log

    start = time.perf_counter()
    sequences = synthetic_log(args.events, args.items, args.users, args.seed)
    items: set[str] = set()
    with path.open("w", encoding="utf-8") as handle:
        for user, seq in sequences.items():
            items.update(seq)
            handle.writelines(f"{user} {item}\n" for item in seq)
    return {"users": len(sequences), "items": len(items),
            "events": sum(map(len, sequences.values())),
            "generate_s": round(time.perf_counter() - start, 1),
            "mib": round(path.stat().st_size / 2**20, 1)}


def run_evaluate(log: Path, out: Path, args: argparse.Namespace) -> tuple[dict[str, Any], float]:
    """``redrec evaluate`` in its own process (its messages pass through to stderr);
    returns its JSON report and the wall time of the whole process."""
    command = [REDREC, "evaluate", str(log), "--format", "pairs", "--models", args.models,
               "--seed", str(args.seed), "--threads", str(args.threads), "--out", str(out),
               "--json"]
    if args.epochs:
        command += ["--epochs", str(args.epochs)]
    if args.max_users:
        command += ["--max-users", str(args.max_users)]
    print("# " + " ".join(command), file=sys.stderr, flush=True)
    start = time.perf_counter()
    proc = subprocess.run(command, stdout=subprocess.PIPE, text=True, check=False)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"redrec evaluate failed with exit code {proc.returncode}")
    return json.loads(proc.stdout), wall


def phases(report: dict[str, Any], wall: float) -> list[tuple[str, float | None, str]]:
    """(phase, seconds, note) rows from the report; served rows carry users/s."""
    t, results = report["timings"], report["results"]
    users = report["evaluated_users"]
    rows: list[tuple[str, float | None, str]] = [("load + split", t.get("load_s"), "")]
    for name, r in results.items():
        if r.get("path") == "offline":
            rows.append((f"train {name}", r.get("train_s"), ""))
            rows.append((f"score {name} (offline)", r.get("eval_s"), ""))
    if "tower_train_s" in t:
        rows.append(("train tower", t["tower_train_s"], ""))
    if "catalog_and_publish_s" in t:
        rows.append(("catalogue + publish", t["catalog_and_publish_s"], ""))
    if "user_attributes_s" in t:
        rows.append(("user attributes", t["user_attributes_s"], ""))
    if "replay_s" in t:
        rows.append(("replay", t["replay_s"], f"{t.get('replay_events_per_s', 0):,.0f} events/s"))
    for name, r in results.items():
        if r.get("path") == "served":
            rate = r.get("users_per_s") or (users / r["eval_s"] if r.get("eval_s") else 0.0)
            rows.append((f"serve {name}", r.get("eval_s"),
                         f"{rate:,.1f} users/s (2 recommend calls each), "
                         f"recommend p50 {r.get('recommend_ms_p50')} ms"))
    rows.append(("total (runner)", t.get("total_s"), ""))
    rows.append(("wall (process)", round(wall, 1), "interpreter, imports, Redis start/stop, outputs"))
    return rows


def print_table(log_info: dict[str, Any], report: dict[str, Any],
                rows: list[tuple[str, float | None, str]]) -> None:
    print(f"log: {log_info['users']:,} users, {log_info['items']:,} items, "
          f"{log_info['events']:,} events ({log_info['mib']} MiB, generated in "
          f"{log_info['generate_s']} s); evaluated users {report['evaluated_users']:,}, "
          f"threads {report.get('threads')}")
    print("| phase | s | note |\n|---|---|---|")
    for name, seconds, note in rows:
        print(f"| {name} | {'-' if seconds is None else f'{seconds:.1f}'} | {note} |")
    for name, r in report["results"].items():
        full = r.get("full", {})
        print(f"{name}: full NDCG@10 {full.get('NDCG@10', 0):.4f}, HR@10 {full.get('HR@10', 0):.4f}")


def _git() -> str | None:
    proc = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                          text=True, check=False, cwd=HERE)
    return proc.stdout.strip() or None


def main() -> None:
    args = parse_args()
    work = args.dir or Path(tempfile.mkdtemp(prefix="redrec-evalscale-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        log = work / "synthetic.txt"
        log_info = write_log(log, args)
        if log_info["users"] < TARGET_USERS or log_info["items"] < TARGET_ITEMS:
            print(f"# note: below the target scale ({TARGET_USERS:,} users, {TARGET_ITEMS:,} "
                  "items): a smoke run", file=sys.stderr)
        report, wall = run_evaluate(log, work / "report", args)
        rows = phases(report, wall)
        print_table(log_info, report, rows)
        peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        print(f"peak RSS of redrec evaluate: {peak:.0f} MiB")
        if args.json:
            line = {"benchmark": "learning/eval_scale", "git": _git(),
                    "time": time.strftime("%Y-%m-%dT%H:%M:%S"), "machine": platform.machine(),
                    "threads": report.get("threads"), "seed": args.seed, "models": args.models,
                    "epochs": args.epochs, "max_users": args.max_users, "log": log_info,
                    "peak_rss_mb": round(peak), "wall_s": round(wall, 1),
                    "timings": report["timings"],
                    "served_users_per_s": {n: r.get("users_per_s")
                                           for n, r in report["results"].items()
                                           if r.get("path") == "served"},
                    "results": {n: {k: r.get(k) for k in ("full", "sampled", "train_s", "eval_s")}
                                for n, r in report["results"].items()}}
            with args.json.open("a", encoding="utf-8") as handle:
                handle.write(json.dumps(line) + "\n")
    finally:
        if args.dir is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
