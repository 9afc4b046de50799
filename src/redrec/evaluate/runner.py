"""``redrec evaluate``: one run that trains every model on an interaction log and
measures it, the served ones through the real serving path.

* offline baselines (brute-force scoring of their public ``score``): popularity,
  item-kNN, ALS
* served (through ``Engine.recommend`` over a private embedded Redis): the user tower
  alone, and redrec's hybrid (tower + content/session lists + popularity, fused)

Output: a table, a JSON file and a PNG plot.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from redrec.datasets.interactions import Interactions, read_pairs, read_recbole
from redrec.evaluate.metrics import evaluate, sample_negatives
from redrec.evaluate.served import replay, served_metrics
from redrec.evaluate.split import LeaveOneOut, leave_one_out
from redrec.exceptions import InvalidInput, NotFoundError

__all__ = ["EvalReport", "load_interactions", "run_evaluation"]

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

    def as_dict(self) -> dict[str, Any]:
        return {"source": self.source, "users": self.users, "items": self.items,
                "events": self.events, "evaluated_users": self.evaluated_users,
                "results": self.results, "timings": self.timings}

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
        if row:
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
    progress: bool = False,
    log: Any = None,
) -> EvalReport:
    """Train and evaluate ``models`` on the log at ``path`` (see the module docstring)."""
    say = log or (lambda _msg: None)
    unknown = set(models) - set(BASELINES) - set(SERVED)
    if unknown:
        raise InvalidInput(f"unknown model(s) {sorted(unknown)}; use {BASELINES + SERVED}")
    t0 = time.perf_counter()
    data = load_interactions(path, fmt)
    sequences = data.sequences()
    split: LeaveOneOut = leave_one_out(sequences)
    if not split.test:
        raise InvalidInput("no user has 3 or more interactions: nothing to evaluate")
    cases = split.test
    if max_users is not None and max_users < len(cases):
        rng = np.random.default_rng(seed)
        keep = set(rng.choice(len(cases), max_users, replace=False).tolist())
        cases = [c for n, c in enumerate(cases) if n in keep]
    catalogue = split.catalogue()
    negs = sample_negatives(cases, sequences, catalogue, n=100, seed=seed)
    report = EvalReport(str(path), data.n_users, data.n_items, len(data), len(cases))
    report.timings["load_s"] = round(time.perf_counter() - t0, 2)
    say(f"{len(data)} events, {data.n_users} users, {data.n_items} items; "
        f"evaluating {len(cases)} users")

    trained: dict[str, Any] = {}
    for name in [m for m in BASELINES if m in models] + (["tower"] if set(SERVED) & set(models) else []):
        t = time.perf_counter()
        model = _make(name, seed, tower_overrides)
        say(f"training {name} …")
        if name == "tower":
            model.fit(split.train, show_progress=progress, validation=split.valid)
        else:
            model.fit(split.train)
        train_s = round(time.perf_counter() - t, 2)
        trained[name] = model
        if name in BASELINES:
            report.results[name] = {
                "full": evaluate(model, cases, catalogue=catalogue, protocol="full"),
                "sampled": evaluate(model, cases, catalogue=catalogue, protocol="sampled",
                                    negatives=negs),
                "train_s": train_s, "path": "offline",
            }
        else:
            report.timings["tower_train_s"] = train_s

    if set(SERVED) & set(models):
        neg_ids = [[catalogue[j] for j in row if j >= 0] for row in negs]
        report.results.update(_served(data, split, cases, neg_ids, trained["tower"], models,
                                      report, progress, say))
    report.timings["total_s"] = round(time.perf_counter() - t0, 2)
    return report


def _make(name: str, seed: int, tower_overrides: dict[str, Any] | None) -> Any:
    if name == "popularity":
        from redrec.models.popularity import Popularity

        return Popularity()
    if name == "itemknn":
        from redrec.models.itemknn import ItemKNN

        return ItemKNN()
    if name == "als":
        from redrec.models.als import ALS

        return ALS(seed=seed)
    from redrec.models.tower import UserTower

    return UserTower(seed=seed, **(tower_overrides or {}))


def _served(data: Interactions, split: LeaveOneOut, cases: list[Any], neg_ids: list[list[str]],
            tower: Any, models: tuple[str, ...], report: EvalReport, progress: bool,
            say: Any) -> dict[str, dict[str, Any]]:
    import redrec
    from redrec.catalog import Catalog, ingest
    from redrec.engine import Engine, EngineConfig
    from redrec.models.serving import publish

    items = split.catalogue()
    extra = [i for i in data.unique_items() if i not in set(items)]
    records, has_text = _item_records(data, items + extra)
    mapping: dict[str, Any] = {
        "index": "eval_items", "prefix": "eval_item:", "storage": "hash", "id": "id",
        "fields": {"id": "tag"},
    }
    if has_text:
        mapping["text"] = {"field": "content", "source": ["text"]}
        mapping["fields"]["title"] = "text"
    out: dict[str, dict[str, Any]] = {}
    with redrec.connect(ephemeral=True) as store:
        t = time.perf_counter()
        say(f"catalogue of {len(records)} items into Redis"
            + (" (embedding item text)" if has_text else ""))
        ingest(store, mapping, records, progress=progress)
        catalog = Catalog(store, mapping)
        pointer = publish(store, catalog, tower)
        report.timings["catalog_and_publish_s"] = round(time.perf_counter() - t, 2)
        engine = Engine(store, Catalog(store, catalog.mapping),
                        EngineConfig(cold_start_events=1))
        histories = {c.user: list(c.history) for c in cases}
        say(f"replaying {sum(map(len, histories.values()))} events through the engine")
        report.timings["replay_events_per_s"] = round(replay(engine, histories,
                                                              progress=progress))
        for name in [m for m in SERVED if m in models]:
            if name == "tower":
                engine.config = engine.config.model_copy(update={"list_weights": TOWER_ONLY})
            else:
                engine.config = engine.config.model_copy(
                    update={"list_weights": EngineConfig().list_weights})
            say(f"serving {name} for {len(cases)} users")
            res = served_metrics(engine, cases, negatives=neg_ids, progress=progress)
            out[name] = {"full": res.full, "sampled": res.sampled,
                         "train_s": report.timings.get("tower_train_s"),
                         "path": "served", "eval_s": round(res.seconds, 1),
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
