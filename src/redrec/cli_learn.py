"""CLI commands for learning: train (and publish) a model, evaluate models."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import click

from redrec.cli import emit, open_store, settings

__all__ = ["register"]


def _say(msg: str) -> None:
    click.echo(msg, err=True)


def _threads_option(command: Any) -> Any:
    """``--threads N``: torch intra-op, ``implicit`` and BLAS threads. Checked by the
    command (not click) so a bad value is a one-line redrec error, like other bad input."""
    from redrec.models.threads import default_threads

    return click.option(
        "--threads", type=int, default=None,
        help="Threads for torch, implicit (ALS) and BLAS; default: the CPUs this process may "
             f"use (here {default_threads()}). On a busy machine fewer is often faster.",
    )(command)


def register(main: click.Group) -> None:
    @main.command("train")
    @click.argument("source")
    @click.option("--format", "fmt", type=click.Choice(["auto", "recbole", "pairs"]),
                  default="auto", show_default=True, help="Format of a SOURCE file.")
    @click.option("--model", "kind", type=click.Choice(["tower", "als"]), default="tower",
                  show_default=True)
    @click.option("--catalog", help="Catalogue to publish into; default: the last ingested.")
    @click.option("--epochs", type=int, help="Override the tower's epochs.")
    @click.option("--seed", type=int, default=0, show_default=True)
    @click.option("--out", type=click.Path(file_okay=False), help="Also save the artifact here.")
    @click.option("--no-publish", is_flag=True, help="Train and save only.")
    @_threads_option
    @click.option("--json", "as_json", is_flag=True)
    def train_cmd(source: str, fmt: str, kind: str, catalog: str | None, epochs: int | None,
                  seed: int, out: str | None, no_publish: bool, threads: int | None,
                  as_json: bool) -> None:
        """Train on SOURCE (an interaction file, or 'log' for the engine's event log) and
        publish the model: serving processes pick it up without a restart."""
        from redrec.catalog.registry import find_catalog
        from redrec.evaluate.runner import load_interactions
        from redrec.models.serving import publish
        from redrec.models.threads import check_threads, thread_limits

        n_threads = check_threads(threads)  # before starting Redis: fail fast
        with open_store() as store:
            if source == "log":
                cat = find_catalog(store, catalog)
                from redrec.engine.setup import open_engine

                engine = open_engine(store, cat.mapping.index)
                sequences: dict[str, list[str]] = {}
                for ev in sorted(engine.users.all_events(), key=lambda e: e["timestamp"]):
                    if ev["type"] != "dislike" and not (ev["type"] == "rating"
                                                        and ev.get("value", 5) < 3):
                        sequences.setdefault(ev["user_id"], []).append(ev["item_id"])
                if not sequences:
                    from redrec.exceptions import InvalidInput

                    raise InvalidInput("the event log is empty: track some events first")
            else:
                sequences = load_interactions(source, fmt).sequences()
            n_events = sum(map(len, sequences.values()))
            _say(f"training {kind} on {n_events} events from {len(sequences)} users "
                 f"with {n_threads} thread(s)")
            t = time.perf_counter()
            with thread_limits(n_threads, torch=kind == "tower"):
                model: Any
                if kind == "tower":
                    from redrec.models.tower import UserTower

                    overrides: dict[str, Any] = {"epochs": epochs} if epochs else {}
                    model = UserTower(seed=seed, **overrides)
                    model.fit(sequences, show_progress=not as_json)
                else:
                    from redrec.models.als import ALS

                    model = ALS(seed=seed, num_threads=n_threads).fit(sequences)
            train_s = round(time.perf_counter() - t, 1)
            result = {"model": kind, "events": n_events, "users": len(sequences),
                      "items": len(model.item_ids), "train_s": train_s, "threads": n_threads}
            if out:
                result["artifact"] = str(model.save(Path(out)))
            if not no_publish:
                cat = find_catalog(store, catalog)
                pointer = publish(store, cat, model, info={"train_s": train_s})
                result["published"] = {"catalog": cat.mapping.index, **pointer}
        emit(result, as_json, json.dumps(result, indent=2))

    @main.command("evaluate")
    @click.argument("source", type=click.Path())
    @click.option("--format", "fmt", type=click.Choice(["auto", "recbole", "pairs"]),
                  default="auto", show_default=True)
    @click.option("--models", default="popularity,itemknn,als,tower,hybrid", show_default=True,
                  help="Comma-separated: popularity, itemknn, als (offline baselines), "
                       "tower, hybrid (served through Redis).")
    @click.option("--max-users", type=int, help="Evaluate a seeded sample of users.")
    @click.option("--epochs", type=int, help="Override the tower's epochs.")
    @click.option("--seed", type=int, default=0, show_default=True)
    @click.option("--out", type=click.Path(file_okay=False), default="evaluation",
                  show_default=True, help="Directory for evaluation.json and evaluation.png.")
    @_threads_option
    @click.option("--json", "as_json", is_flag=True)
    def evaluate_cmd(source: str, fmt: str, models: str, max_users: int | None,
                     epochs: int | None, seed: int, out: str, threads: int | None,
                     as_json: bool) -> None:
        """Leave-one-out evaluation of SOURCE (RecBole .inter or 'user item' lines): HR@10,
        NDCG@10, MRR, Recall@10 against 100 sampled negatives and the full catalogue."""
        from redrec.evaluate.runner import run_evaluation, write_outputs

        settings()  # validates the environment like every command
        report = run_evaluation(
            source, fmt=fmt, models=tuple(m.strip() for m in models.split(",") if m.strip()),
            seed=seed, max_users=max_users,
            tower_overrides={"epochs": epochs} if epochs else None, threads=threads,
            progress=not as_json, log=_say,
        )
        files = write_outputs(report, Path(out))
        if as_json:
            emit({**report.as_dict(), "files": files}, True)
        else:
            click.echo(report.table())
            _say(f"wrote {files['json']} and {files['plot']} ({report.timings['total_s']}s)")
