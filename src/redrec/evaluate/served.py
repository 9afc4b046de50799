"""Evaluation through the serving path: users' histories are replayed as events into a
real engine over Redis, and every ranking comes from ``Engine.recommend`` (Redis KNN,
pre-filters, exclusions, fusion), not from a separate offline scorer.

* full catalogue: ``recommend(user, depth, exclude=history)``; the target's position in
  that list is its rank (a target beyond ``depth`` counts as a miss, so MRR is MRR@depth)
* sampled: the same call restricted, as a Redis pre-filter on the id tag, to the target
  and its 100 sampled negatives

When the log comes with user attributes (a RecBole ``.user`` file, e.g. MovieLens's age,
gender, occupation and zip code), they are recorded for every replayed user before the
replay, as a deployment would know them, so lists that use demographics are measured too.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from tqdm import tqdm

from redrec.datasets.interactions import AttributeTable
from redrec.engine import Engine, Event
from redrec.evaluate.metrics import hit_rate, mrr, ndcg
from redrec.evaluate.split import EvalCase
from redrec.exceptions import InvalidInput
from redrec.store.users import profile_value

__all__ = ["ServedResult", "engine_attributes", "record_user_attributes", "replay",
           "served_metrics"]

_T0 = 1_700_000_000.0

# RecBole ``.user`` column -> the attribute name ``Engine.set_user`` accepts. Other columns
# are ignored: the engine rejects names it does not know.
USER_COLUMNS = {"age": "age", "gender": "gender", "occupation": "occupation",
                "zip_code": "zip", "zip": "zip", "loc": "loc"}


def engine_attributes(row: Mapping[str, str]) -> dict[str, str]:
    """The attributes ``Engine.set_user`` takes, from one row of a ``.user`` table.

    Empty values are left out, and so are values the profile index could not hold
    (:func:`redrec.store.users.profile_value` says which): a row with a bad age still
    records the user's gender and occupation. A ``loc`` may also be ``lon lat``.
    """
    out: dict[str, str] = {}
    for column, raw in row.items():
        name = USER_COLUMNS.get(column)
        value = raw.strip() if isinstance(raw, str) else ""
        if name is None or not value:
            continue
        if name == "loc":
            value = ",".join(value.replace(",", " ").split())
        try:
            out[name] = profile_value(name, value)
        except InvalidInput:
            continue
    return out


def record_user_attributes(engine: Engine, table: AttributeTable | None,
                           users: Iterable[str]) -> int:
    """Record each of ``users``' attributes from ``table`` through ``engine.set_user``;
    returns how many users got any. Users missing from the table are skipped.

    One call per user: ``UserStore.set_attributes`` has no batched form, so this is two
    round trips per user: 0.11 s for ML-100k's 943 users over loopback, so a few seconds
    at tens of thousands of users, small next to the replay.
    """
    if table is None:
        return 0
    recorded = 0
    for user in users:
        row = table.get(user)
        attrs = engine_attributes(row) if row else {}
        if attrs:
            engine.set_user(user, **attrs)
            recorded += 1
    return recorded


def replay(engine: Engine, histories: Mapping[str, Sequence[str]], *,
           timestamps: Mapping[str, Sequence[float]] | None = None, batch: int = 2000,
           progress: bool = False) -> float:
    """Feed every user's history (oldest first) to the engine as view events; returns
    events per second. Event ids are deterministic, so replaying twice changes nothing."""
    events = []
    for user, items in histories.items():
        ts = timestamps.get(user) if timestamps else None
        for n, item in enumerate(items):
            t = float(ts[n]) if ts is not None else _T0 + n
            events.append(Event(user_id=user, item_id=item, type="view", timestamp=t,
                                id=f"replay:{user}:{n}"))
    started = time.perf_counter()
    bar = tqdm(total=len(events), desc="replay events", unit="ev", disable=not progress)
    for start in range(0, len(events), batch):
        chunk = events[start:start + batch]
        for result in engine.track_many(chunk):
            if isinstance(result, Exception):
                raise result
        bar.update(len(chunk))
    bar.close()
    return len(events) / max(time.perf_counter() - started, 1e-9)


@dataclass
class ServedResult:
    full: dict[str, float]
    sampled: dict[str, float]
    seconds: float
    users: int
    recommend_ms_p50: float


def _metrics(ranks: np.ndarray, k: int) -> dict[str, float]:
    return {f"HR@{k}": hit_rate(ranks, k), f"NDCG@{k}": ndcg(ranks, k), "MRR": mrr(ranks)}


def served_metrics(
    engine: Engine,
    cases: Sequence[EvalCase],
    *,
    negatives: list[list[str]] | None,
    k: int = 10,
    depth: int = 100,
    progress: bool = False,
) -> ServedResult:
    started = time.perf_counter()
    full_ranks = np.zeros(len(cases), dtype=np.int64)
    samp_ranks = np.zeros(len(cases), dtype=np.int64)
    timings: list[float] = []
    id_field = engine.id_field
    for n, case in enumerate(tqdm(cases, desc="served evaluation", unit="user",
                                  disable=not progress)):
        seen = set(case.history)
        t = time.perf_counter()
        recs = engine.recommend(case.user, depth, exclude=seen)
        timings.append(time.perf_counter() - t)
        ids = [r.item_id for r in recs]
        full_ranks[n] = ids.index(case.target) if case.target in ids else 10**9
        if negatives is not None:
            cands = [case.target, *negatives[n]]
            recs = engine.recommend(case.user, len(cands), filters={id_field: cands},
                                    exclude=seen - set(cands))
            ids = [r.item_id for r in recs]
            samp_ranks[n] = ids.index(case.target) if case.target in ids else len(cands)
    full = _metrics(full_ranks, k)
    full[f"Recall@{k}"] = full[f"HR@{k}"]  # one held-out item per user
    return ServedResult(
        full=full,
        sampled=_metrics(samp_ranks, k) if negatives is not None else {},
        seconds=time.perf_counter() - started,
        users=len(cases),
        recommend_ms_p50=float(np.median(timings) * 1000) if timings else 0.0,
    )
