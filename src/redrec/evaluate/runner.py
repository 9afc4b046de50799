"""``redrec evaluate``: one run that trains every model on an interaction log and
measures it, the served ones through the real serving path.

* offline baselines (brute-force scoring of their public ``score``): popularity,
  item-kNN, ALS
* served (through ``Engine.recommend`` over a private embedded Redis): the user tower
  alone, and redrec's hybrid (tower + content/session lists + popularity, fused)

Output: a table, a JSON file and a PNG plot. ``timings`` holds each phase's seconds
(load, training, catalogue + publish, user attributes, replay, and per served model its
``eval_s``), so large runs show where the time goes.

The served set-up (catalogue, publish, user attributes, replay) is split into public
functions so ``benchmarks/learning/tune_hybrid.py`` measures through the same path.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from redrec.datasets.interactions import Interactions, read_pairs, read_recbole
from redrec.evaluate.metrics import evaluate, sample_negatives
from redrec.evaluate.served import record_user_attributes, replay, served_metrics
from redrec.evaluate.split import EvalCase, LeaveOneOut, leave_one_out
from redrec.exceptions import InvalidInput, NotFoundError
from redrec.models.threads import check_threads, thread_limits

if TYPE_CHECKING:
    from redrec.catalog import Catalog
    from redrec.engine import Engine
    from redrec.store import Store

__all__ = ["EvalReport", "load_interactions", "prepare_served", "run_evaluation",
           "sample_cases", "served_engine", "serving_catalog"]

BASELINES = ("popularity", "itemknn", "als")
SERVED = ("tower", "hybrid")
TOWER_ONLY = {"tower": 1.0, "session": 0.0, "recent": 0.0, "people": 0.0, "popular": 0.0,
              "catalog": 0.0}


def load_interactions(path: str | Path, fmt: str = "auto") -> Interactions:
    """A RecBole atomic log (``.inter`` file or its directory) or a ``user item`` text
    file; ``auto`` decides by the suffix / directory contents."""
    p = Path(path)
    if not p.exists():
        raise NotFoundError(f"no interaction log at {p}")
    if fmt == "auto":
        fmt = "recbole" if p.is_dir() or p.suffix == ".inter" else "pairs"
    if fmt == "recbole":
        return read_recbole(p)
    if fmt == "pairs":
        return read_pairs(p)
    raise InvalidInput(f"unknown format {fmt!r} (auto, recbole or pairs)")


@dataclass
class EvalReport:
    source: str
    users: int
    items: int
    events: int
    evaluated_users: int
    results: dict[str, dict[str, Any]] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    threads: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"source": self.source, "users": self.users, "items": self.items,
                "events": self.events, "evaluated_users": self.evaluated_users,
                "threads": self.threads, "results": self.results, "timings": self.timings}

    def table(self) -> str:
        cols = ["sampled HR@10", "sampled NDCG@10", "sampled MRR", "full HR@10",
                "full NDCG@10", "full MRR", "full Recall@10", "train s"]
        lines = [f"{'model':<12}" + "".join(f"{c:>16}" for c in cols)]
        for name, r in self.results.items():
            s, f = r.get("sampled", {}), r.get("full", {})
            vals = [s.get("HR@10"), s.get("NDCG@10"), s.get("MRR"), f.get("HR@10"),
                    f.get("NDCG@10"), f.get("MRR"), f.get("Recall@10"), r.get("train_s")]
            lines.append(f"{name:<12}" + "".join(
                f"{v:>16.4f}" if isinstance(v, float) else f"{'-':>16}" for v in vals))
        return "\n".join(lines)

    def plot(self, path: Path) -> None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        names = list(self.results)
        fig, axes = plt.subplots(1, 2, figsize=(10, 4))
        for ax, (proto, metric) in zip(axes, (("full", "NDCG@10"), ("sampled", "HR@10")),
                                       strict=True):
            vals = [self.results[n].get(proto, {}).get(metric, 0.0) for n in names]
            bars = ax.bar(names, vals, color=["#999"] * len(BASELINES) + ["#c0392b", "#2874a6"])
            ax.bar_label(bars, fmt="%.3f", fontsize=8)
            ax.set_title(f"{proto} {metric}")
            ax.tick_params(axis="x", rotation=20)
        fig.suptitle(f"{Path(self.source).name}: leave-one-out, {self.evaluated_users} users")
        fig.tight_layout()
        fig.savefig(path, dpi=110)
        plt.close(fig)


def _item_records(data: Interactions, items: list[str]) -> tuple[list[dict[str, Any]], bool]:
    """Catalogue records for the log's items; text from the ``.item`` file if any."""
    table = data.item_attributes
    out = []
    has_text = False
    for item in items:
        rec: dict[str, Any] = {"id": item}
        row = table.get(item) if table is not None else None
        if row and table is not None:
            text = " ".join(str(v) for k, v in row.items() if k != table.key and v)
            if text:
                rec["text"] = text
                rec["title"] = next(iter(v for k, v in row.items() if k != table.key), "")
                has_text = True
        out.append(rec)
    return out, has_text


def run_evaluation(
    path: str | Path,
    *,
    fmt: str = "auto",
    models: tuple[str, ...] = BASELINES + SERVED,
    seed: int = 0,
    max_users: int | None = None,
    tower_overrides: dict[str, Any] | None = None,
    threads: int | None = None,
    store: Store | None = None,
    progress: bool = False,
    log: Any = None,
) -> EvalReport:
    """Train and evaluate ``models`` on the log at ``path`` (see the module docstring).

    ``threads`` caps torch, ``implicit`` and BLAS threads (default: the CPUs this process
    may use). ``store`` serves the served models (default: a private embedded Redis,
    removed afterwards); a given store should hold no catalogue ``eval_items`` nor user
    state yet, and keeps what the run wrote, which is how a test inspects it.
    """
    say = log or (lambda _msg: None)
    unknown = set(models) - set(BASELINES) - set(SERVED)
    if unknown:
        raise InvalidInput(f"unknown model(s) {sorted(unknown)}; use {BASELINES + SERVED}")
    n_threads = check_threads(threads)
    t0 = time.perf_counter()
    data = load_interactions(path, fmt)
    sequences = data.sequences()
    split: LeaveOneOut = leave_one_out(sequences)
    if not split.test:
        raise InvalidInput("no user has 3 or more interactions: nothing to evaluate")
    cases = sample_cases(split.test, max_users, seed)
    catalogue = split.catalogue()
    negs = sample_negatives(cases, sequences, catalogue, n=100, seed=seed)
    report = EvalReport(str(path), data.n_users, data.n_items, len(data), len(cases),
                        threads=n_threads)
    report.timings["load_s"] = round(time.perf_counter() - t0, 2)
    say(f"{len(data)} events, {data.n_users} users, {data.n_items} items; "
        f"evaluating {len(cases)} users with {n_threads} thread(s)")
    served = bool(set(SERVED) & set(models))
    with thread_limits(n_threads, torch=served):
        trained = _train_and_score(split, cases, negs, models, seed, tower_overrides, n_threads,
                                   report, progress, say)
        if served:
            neg_ids = [[catalogue[j] for j in row if j >= 0] for row in negs]
            report.results.update(_served(data, split, cases, neg_ids, trained["tower"], models,
                                          report, store, progress, say))
    report.timings["total_s"] = round(time.perf_counter() - t0, 2)
    return report


def sample_cases(cases: Sequence[EvalCase], max_users: int | None, seed: int) -> list[EvalCase]:
    """A seeded sample of ``max_users`` cases, in their original order (all of them
    without a limit). Drawn by position, so the validation and test lists of one split,
    which hold the same users in the same order, give the same users."""
    if max_users is not None and max_users < 1:
        raise InvalidInput(f"max_users must be >= 1, got {max_users}")
    if max_users is None or max_users >= len(cases):
        return list(cases)
    rng = np.random.default_rng(seed)
    keep = set(rng.choice(len(cases), max_users, replace=False).tolist())
    return [c for n, c in enumerate(cases) if n in keep]


def _train_and_score(split: LeaveOneOut, cases: list[EvalCase], negs: Any, models: tuple[str, ...],
                     seed: int, tower_overrides: dict[str, Any] | None, threads: int,
                     report: EvalReport, progress: bool, say: Any) -> dict[str, Any]:
    """Train every requested model (the tower once, for both served rows) and score the
    offline baselines; returns the trained models by name."""
    catalogue = split.catalogue()
    trained: dict[str, Any] = {}
    for name in [m for m in BASELINES if m in models] + (["tower"] if set(SERVED) & set(models) else []):
        t = time.perf_counter()
        model = _make(name, seed, tower_overrides, threads)
        say(f"training {name} …")
        if name == "tower":
            model.fit(split.train, show_progress=progress, validation=split.valid)
        else:
            model.fit(split.train)
        train_s = round(time.perf_counter() - t, 2)
        trained[name] = model
        if name in BASELINES:
            t = time.perf_counter()
            full = evaluate(model, cases, catalogue=catalogue, protocol="full")
            sampled = evaluate(model, cases, catalogue=catalogue, protocol="sampled",
                               negatives=negs)
            report.results[name] = {"full": full, "sampled": sampled, "train_s": train_s,
                                    "path": "offline",
                                    "eval_s": round(time.perf_counter() - t, 1)}
        else:
            report.timings["tower_train_s"] = train_s
    return trained


def _make(name: str, seed: int, tower_overrides: dict[str, Any] | None, threads: int = 0) -> Any:
    if name == "popularity":
        from redrec.models.popularity import Popularity

        return Popularity()
    if name == "itemknn":
        from redrec.models.itemknn import ItemKNN

        return ItemKNN()
    if name == "als":
        from redrec.models.als import ALS

        return ALS(seed=seed, num_threads=threads)
    from redrec.models.tower import UserTower

    return UserTower(seed=seed, **(tower_overrides or {}))


def eval_mapping(has_text: bool) -> dict[str, Any]:
    """The catalogue mapping of the evaluation's items (``eval_items``); with item text,
    a content vector so the session, item-to-item and "people like you" lists run."""
    mapping: dict[str, Any] = {
        "index": "eval_items", "prefix": "eval_item:", "storage": "hash", "id": "id",
        "fields": {"id": "tag"},
    }
    if has_text:
        mapping["text"] = {"field": "content", "source": ["text"]}
        mapping["fields"]["title"] = "text"
    return mapping


def serving_catalog(store: Store, data: Interactions, split: LeaveOneOut, tower: Any, *,
                    progress: bool = False, say: Any = None) -> tuple[Catalog, dict[str, Any]]:
    """Ingest the log's items (training catalogue first, then items seen only in held-out
    positions) and publish ``tower`` into them; returns the catalogue and the pointer."""
    from redrec.catalog import Catalog, ingest
    from redrec.models.serving import publish

    say = say or (lambda _msg: None)
    items = split.catalogue()
    known = set(items)
    extra = [i for i in data.unique_items() if i not in known]
    records, has_text = _item_records(data, items + extra)
    mapping = eval_mapping(has_text)
    say(f"catalogue of {len(records)} items into Redis"
        + (" (embedding item text)" if has_text else ""))
    ingest(store, mapping, records, progress=progress)
    catalog = Catalog(store, mapping)
    pointer = publish(store, catalog, tower)
    return Catalog(store, catalog.mapping), pointer


def served_engine(store: Store, catalog: Catalog,
                  list_weights: dict[str, float] | None = None) -> Engine:
    """The engine the served rows are measured with: the shipped configuration, except
    that one event already counts as a history (every evaluated user has two or more)."""
    from redrec.engine import Engine, EngineConfig

    update: dict[str, Any] = {"cold_start_events": 1}
    if list_weights is not None:
        update["list_weights"] = dict(list_weights)
    return Engine(store, catalog, EngineConfig().model_copy(update=update))


def prepare_served(store: Store, data: Interactions, split: LeaveOneOut, tower: Any,
                   histories: dict[str, list[str]], timings: dict[str, float], *,
                   progress: bool = False, say: Any = None) -> tuple[Engine, dict[str, Any]]:
    """Everything before serving: catalogue and published tower, the users' attributes
    (when the log has a ``.user`` table), then their ``histories`` replayed as events.
    Fills ``timings``; returns the engine and the model pointer."""
    say = say or (lambda _msg: None)
    t = time.perf_counter()
    catalog, pointer = serving_catalog(store, data, split, tower, progress=progress, say=say)
    timings["catalog_and_publish_s"] = round(time.perf_counter() - t, 2)
    engine = served_engine(store, catalog)
    if data.user_attributes is not None:
        t = time.perf_counter()
        n = record_user_attributes(engine, data.user_attributes, histories)
        timings["user_attributes_s"] = round(time.perf_counter() - t, 2)
        say(f"recorded attributes of {n} users")
    n_events = sum(map(len, histories.values()))
    say(f"replaying {n_events} events through the engine")
    t = time.perf_counter()
    timings["replay_events_per_s"] = round(replay(engine, histories, progress=progress))
    timings["replay_s"] = round(time.perf_counter() - t, 2)
    return engine, pointer


@contextmanager
def _serving_store(store: Store | None) -> Iterator[Store]:
    if store is not None:
        yield store
        return
    import redrec

    with redrec.connect(ephemeral=True) as own:
        yield own


def _served(data: Interactions, split: LeaveOneOut, cases: list[Any], neg_ids: list[list[str]],
            tower: Any, models: tuple[str, ...], report: EvalReport, store: Store | None,
            progress: bool, say: Any) -> dict[str, dict[str, Any]]:
    from redrec.engine import EngineConfig

    out: dict[str, dict[str, Any]] = {}
    with _serving_store(store) as st:
        histories = {c.user: list(c.history) for c in cases}
        engine, pointer = prepare_served(st, data, split, tower, histories, report.timings,
                                         progress=progress, say=say)
        for name in [m for m in SERVED if m in models]:
            weights = TOWER_ONLY if name == "tower" else EngineConfig().list_weights
            engine.config = engine.config.model_copy(update={"list_weights": weights})
            say(f"serving {name} for {len(cases)} users")
            res = served_metrics(engine, cases, negatives=neg_ids, progress=progress)
            out[name] = {"full": res.full, "sampled": res.sampled,
                         "train_s": report.timings.get("tower_train_s"),
                         "path": "served", "eval_s": round(res.seconds, 1),
                         "users_per_s": round(res.users / max(res.seconds, 1e-9), 1),
                         "recommend_ms_p50": round(res.recommend_ms_p50, 2),
                         "model_version": pointer["version"]}
    return out


def write_outputs(report: EvalReport, out_dir: Path) -> dict[str, str]:
    out_dir.mkdir(parents=True, exist_ok=True)
    js = out_dir / "evaluation.json"
    js.write_text(json.dumps(report.as_dict(), indent=2))
    png = out_dir / "evaluation.png"
    report.plot(png)
    return {"json": str(js), "plot": str(png)}
