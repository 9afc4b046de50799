"""The online engine: ``track`` applies an event atomically; ``recommend`` reads the
user's state and fuses several candidate lists, all served from Redis.

Candidate lists (each a Redis query with the request's pre-filters and exclusions):

* ``tower``   the user tower's vector over the learned item vectors (when a model is live)
* ``session`` the user's decayed session vector over the content vectors
* ``recent``  items like each of the user's last few items
* ``people``  what users with similar session vectors did recently
* ``popular`` time-decayed popularity (the cold-start answer)

They are fused by reciprocal rank fusion (or weighted scores), boosted by category
affinity and context rules, and cut to ``k``. Exclusions are applied inside every
query, so the list is never short while enough items qualify.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from redrec.catalog import Catalog
from redrec.engine.config import EngineConfig
from redrec.engine.context import apply_context
from redrec.engine.events import Event
from redrec.exceptions import ConfigError, InvalidInput, NotFoundError
from redrec.fusion import rrf, weighted
from redrec.store import Store
from redrec.store.index import Hit, Prepared, run_all
from redrec.store.users import TrackOp, UserState, UserStore

__all__ = ["Engine", "Recommendation"]

_T0 = 1_750_000_000.0  # time origin of the growing weights behind decayed popularity

_REASONS = {
    "tower": "picked for you from your recent activity",
    "session": "close to what you are browsing now",
    "people": "people like you liked it",
    "popular": "popular right now",
    "catalog": "in the catalogue",
}


@dataclass(frozen=True)
class Recommendation:
    """One recommended item: higher ``score`` is better; ``reasons`` say why."""

    item_id: str
    score: float
    reasons: tuple[str, ...]
    fields: dict[str, Any]


class Engine:
    """Online recommendations over one catalogue."""

    def __init__(
        self,
        store: Store,
        catalog: Catalog,
        config: EngineConfig | None = None,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.catalog = catalog
        self.config = config or EngineConfig()
        self.clock = clock
        self.items = catalog.index
        # The content vectors behind session, item-based and "people like you" lists; a
        # catalogue with none (an interaction log without item data) relies on the model.
        content = catalog.mapping.text or catalog.mapping.image
        self.vector_field: str | None = content.field if content else None
        spec = self.items.spec
        self.dim = spec.vector_field(self.vector_field).dims if self.vector_field else 0
        self.id_field = catalog.mapping.id
        if spec.fields.get(self.id_field) is None or spec.fields[self.id_field].type != "tag":
            raise ConfigError(
                f"the catalogue's index must index the id field {self.id_field!r} as a tag "
                f"(add `{self.id_field}: tag` to the mapping's fields and rebuild)"
            )
        cat = self.config.category_field
        if cat is not None and (cat not in spec.fields or spec.fields[cat].type != "tag"):
            raise ConfigError(f"category_field {cat!r} is not a tag field of the catalogue")
        self.users = UserStore(
            store.client, self.dim, recent_cap=self.config.recent_cap,
            dedupe_window=self.config.dedupe_window,
        )
        if self.vector_field:
            self.users.ensure_index()
        from redrec.models.serving import LiveModel

        # The published user tower (or other vector model), followed without a restart.
        self.tower: Any = LiveModel(store, catalog)
        self._display = [f for f in ("title", "name") if f in spec.fields]
        # Item vectors and display names change only on re-ingest: a short-lived
        # in-process cache saves a round trip per request (bounded, expires).
        self._cache: dict[str, tuple[float, np.ndarray | None, str]] = {}
        self.cache_ttl_s = 60.0

    # -- events --------------------------------------------------------------------------

    def track(self, event: Event | dict[str, Any] | None = None, /, **kwargs: Any) -> bool:
        """Apply one event; returns False if an event with the same id was applied
        before. Raises InvalidInput (nothing written) for a bad event."""
        if event is None:
            event = Event.create(now=self.clock(), **kwargs)
        elif isinstance(event, dict):
            event = Event.from_dict(event, now=self.clock())
        result = self.track_many([event])[0]
        if isinstance(result, Exception):
            raise result
        return result

    def track_many(self, events: Sequence[Event]) -> list[bool | InvalidInput]:
        """Apply events in two round trips; each result is True (applied), False
        (a duplicate) or the InvalidInput that rejected it (nothing written for it)."""
        if not events:
            return []
        cat = self.config.category_field
        fetched = self.items.fetch_fields([e.item_id for e in events], [cat] if cat else [])
        ops: list[TrackOp] = []
        slots: list[int] = []
        results: list[bool | InvalidInput] = [False] * len(events)
        for n, (ev, got) in enumerate(zip(events, fetched, strict=True)):
            if got is None:
                results[n] = InvalidInput(f"unknown item {ev.item_id!r}")
                continue
            ops.append(self._op(ev, got[1].get(cat) if cat else None))
            slots.append(n)
        applied, stale = self.users.apply(ops)
        for n, ok in zip(slots, applied, strict=True):
            results[n] = ok
        if stale and self.vector_field:
            self._refresh_vectors(sorted(stale))
        return results

    def _refresh_vectors(self, user_ids: list[str]) -> None:
        """Save the session vectors of users who acted several times since the last save."""
        now = self.clock()
        states = self.users.states(user_ids, now, recent_n=20)
        vectors = self._vectors([h.item_id for st in states for h in st.history])
        self.users.save_vectors({st.user_id: (self._session_vector(st, vectors, now), st.events)
                                 for st in states})

    def _op(self, ev: Event, cats: Any) -> TrackOp:
        cfg = self.config
        if ev.type == "rating":
            weight = ((ev.value or 0.0) - cfg.rating_centre) * cfg.rating_scale
        else:
            weight = cfg.weights.get(ev.type, 0.0)
        until: float | None = None
        if ev.type in cfg.exclude:
            dur = cfg.exclude[ev.type]
            until = math.inf if dur is None else ev.timestamp + dur
        grow = 2.0 ** ((ev.timestamp - _T0) / cfg.popularity_half_life_s)
        categories = _as_list(cats)
        return TrackOp(
            event_id=ev.id, user_id=ev.user_id, item_id=ev.item_id, timestamp=ev.timestamp,
            weight=weight,
            categories=categories, exclude_until=until, positive=weight > 0,
            affinity_inc=weight * grow, payload=ev.to_json(),
            popularity_inc=max(weight, 0.0) * grow,
        )

    def set_user(self, user_id: str, **attributes: Any) -> None:
        """Record what is known about a user (age, gender, occupation, zip, loc)."""
        allowed = {"age", "gender", "occupation", "zip", "loc"}
        unknown = set(attributes) - allowed
        if unknown:
            raise InvalidInput(f"unknown user attribute(s) {sorted(unknown)}; use {sorted(allowed)}")
        Event.create(user_id, "x", "view", now=self.clock())  # checks the id
        self.users.set_attributes(str(user_id), attributes)

    # -- recommendations -----------------------------------------------------------------

    def recommend(
        self,
        user_id: str,
        k: int = 10,
        *,
        filters: dict[str, Any] | None = None,
        context: dict[str, Any] | None = None,
        exclude: Collection[str] | None = None,
    ) -> list[Recommendation]:
        """The top ``k`` items for ``user_id`` now (an unknown user is a new user)."""
        if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= 1000:
            raise InvalidInput(f"k must be an integer in 1..1000, got {k!r}")
        ctx = apply_context(self.config, context, self.clock())
        state = self.users.state(str(user_id), ctx.now)
        excluded = set(state.excluded) | set(exclude or ()) | set(state.recent)
        all_filters = _and([filters, *ctx.filters])
        lists, fields = self._candidates(state, k, all_filters, excluded, ctx.now)
        return self._rank(state, lists, fields, k, ctx.boosts)

    def _candidates(
        self, state: UserState, k: int, filters: dict[str, Any] | None, excluded: set[str],
        now: float,
    ) -> tuple[dict[str, list[str]], dict[str, dict[str, Any]]]:
        cfg = self.config
        want = 2 * k + 5  # list depth for fusion
        ret = self._return_fields()
        queries: dict[str, Prepared] = {}
        vectors = self._vectors([h.item_id for h in state.history[:20]])
        session = self._session_vector(state, vectors, now)
        last = [i for i in state.recent[: cfg.recent_items] if vectors.get(i) is not None]
        if self.tower is not None and state.recent:
            tq = self.tower.prepare(state.recent, want, filters=filters, exclude=excluded,
                                    return_fields=ret)
            if tq is not None:
                queries["tower"] = tq
        if session is not None:
            queries["session"] = self.items.prepare_knn(
                session, want, field=self.vector_field, filters=filters,
                exclude=excluded, return_fields=ret)
            if cfg.neighbours:
                queries["_users"] = self.users.profiles.prepare_knn(
                    session, cfg.neighbours, exclude=[f"{{{state.user_id}}}"],
                    return_fields=["uid"])
        for item_id in last if self.vector_field else []:
            queries[f"recent:{item_id}"] = self.items.prepare_knn(
                vectors[item_id], want, field=self.vector_field, filters=filters,
                exclude=excluded, return_fields=ret)
        fields: dict[str, dict[str, Any]] = {}
        names = list(queries)
        hits = dict(zip(names, run_all(self.store.client, [queries[n] for n in names]),
                        strict=True))
        lists: dict[str, list[str]] = {}
        for name, hs in hits.items():
            if name == "_users":
                continue
            lists[name] = [h.id for h in hs]
            for h in hs:
                fields.setdefault(h.id, h.fields)
        # Round trip 2: what similar users did, and (for new users) popular items, both
        # checked against the filters in Redis when there are filters.
        pool: dict[str, list[str]] = {}
        if "_users" in hits and hits["_users"]:
            pool["people"] = self._people(hits["_users"], excluded)[:want]
        cold = state.events < cfg.cold_start_events or sum(len(v) for v in lists.values()) < k
        if cold:
            popular = [i for i, _ in self.users.popular(want + len(excluded)) if i not in excluded]
            if popular:
                pool["popular"] = popular[:want]
        checks: dict[str, Prepared] = {}
        for name, ids in pool.items():
            if ids and (filters or name == "popular"):
                checks[name] = self._verify(ids, filters, ret)
            elif ids:
                lists[name] = ids
        if cold or not lists:
            checks["catalog"] = self.items.find(filters, return_fields=ret,
                                                limit=want + len(excluded))
        names = list(checks)
        for name, hs in zip(names, run_all(self.store.client, [checks[n] for n in names]),
                            strict=True):
            got = {h.id: h for h in hs if h.id not in excluded}
            order = pool.get(name, list(got))
            lists[name] = [i for i in order if i in got][:want]
            for h in got.values():
                fields.setdefault(h.id, h.fields)
        if not cold:
            lists.pop("catalog", None)
        return lists, fields

    def _vectors(self, ids: Sequence[str]) -> dict[str, np.ndarray | None]:
        """Item vectors (and display names) through the in-process cache."""
        now = time.monotonic()
        out: dict[str, np.ndarray | None] = {}
        missing = []
        for i in dict.fromkeys(ids):
            hit = self._cache.get(i)
            if hit is not None and now - hit[0] < self.cache_ttl_s:
                out[i] = hit[1]
            else:
                missing.append(i)
        if missing:
            if len(self._cache) > 100_000:
                self._cache.clear()
            rows = (self.items.fetch(missing, self.vector_field, self._display)
                    if self.vector_field else self.items.fetch_fields(missing, self._display))
            for i, got in zip(missing, rows, strict=True):
                vec = got[0] if got is not None else None
                name = next((str(got[1][d]) for d in self._display if got and got[1].get(d)), i)
                self._cache[i] = (now, vec, name)
                out[i] = vec
        return out

    def _session_vector(self, state: UserState, vectors: dict[str, np.ndarray | None],
                        now: float) -> np.ndarray | None:
        """The time-decayed, weighted sum of the user's recent item vectors."""
        acc = np.zeros(self.dim, dtype=np.float64)
        used = False
        hl = self.config.session_half_life_s
        for h in state.history[:20]:
            vec = vectors.get(h.item_id)
            if vec is None:
                continue
            decay = 2.0 ** (-max(0.0, now - h.timestamp) / hl) if h.timestamp else 1.0
            acc += (h.weight * max(decay, 1e-3)) * (vec / (np.linalg.norm(vec) or 1.0))
            used = True
        norm = float(np.linalg.norm(acc))
        return (acc / norm).astype(np.float32) if used and norm > 1e-9 else None

    def _people(self, neighbours: list[Hit], excluded: set[str]) -> list[str]:
        recent = self.users.recent_many([h.fields.get("uid", h.id) for h in neighbours], 20)
        score: dict[str, float] = {}
        for h in neighbours:
            sim = max(0.0, 1.0 - h.distance)
            for rank, item in enumerate(recent.get(h.fields.get("uid", h.id), [])):
                if item not in excluded:
                    score[item] = score.get(item, 0.0) + sim / (1 + 0.1 * rank)
        return sorted(score, key=lambda i: -score[i])[:200]

    def _verify(self, ids: list[str], filters: dict[str, Any] | None,
                ret: list[str]) -> Prepared:
        """Which of ``ids`` exist and pass ``filters`` (one FT.SEARCH on the id tag)."""
        clause = {self.id_field: ids[:200]}
        return self.items.find(_and([clause, filters]), return_fields=ret, limit=len(ids[:200]))

    def _return_fields(self) -> list[str]:
        out = [*self._display]
        if self.config.category_field:
            out.append(self.config.category_field)
        for rule in self.config.rules:
            if rule.field and rule.field not in out:
                out.append(rule.field)
        return out

    def _rank(self, state: UserState, lists: dict[str, list[str]],
              fields: dict[str, dict[str, Any]], k: int, boosts: list[Any]) -> list[Recommendation]:
        cfg = self.config
        weights = {n: cfg.list_weights.get(n.split(":")[0], 0.5) for n in lists}
        if state.events < cfg.cold_start_events:
            weights["popular"] = max(weights.get("popular", 0.3), 1.0)
        if cfg.fusion == "weighted":
            fused = weighted({n: {i: 1.0 / (1 + r) for r, i in enumerate(ids)}
                              for n, ids in lists.items()}, weights=weights)
        else:
            fused = rrf(lists, weights=weights)
        aff = state.affinity
        top_aff = max(aff.values()) if aff else 0.0
        out = []
        for item, score, sources in fused:
            f = fields.get(item, {})
            reasons = [self._reason(s, fields) for s in sources]
            if top_aff > 0 and cfg.category_field:
                cats = _as_list(f.get(cfg.category_field))
                best = max((aff.get(c, 0.0) for c in cats), default=0.0)
                if best > 0:
                    score *= 1.0 + cfg.affinity_boost * best / top_aff
                    liked = max(cats, key=lambda c: aff.get(c, 0.0))
                    reasons.append(f"you like {liked}")
            for rule in boosts:
                if set(_as_list(f.get(rule.field))) & set(rule.values):
                    score *= rule.boost
                    reasons.append(f"boosted: {rule.name}")
            out.append(Recommendation(item, score, tuple(dict.fromkeys(reasons)), f))
        out.sort(key=lambda r: -r.score)
        return out[:k]

    def _reason(self, source: str, fields: dict[str, dict[str, Any]]) -> str:
        if source.startswith("recent:"):
            item = source.split(":", 1)[1]
            cached = self._cache.get(item)
            return f"similar to {cached[2] if cached else item}, which you looked at"
        return _REASONS.get(source, source)

    def recommend_from_examples(
        self,
        positive: Sequence[str],
        negative: Sequence[str] = (),
        k: int = 10,
        *,
        filters: dict[str, Any] | None = None,
    ) -> list[Recommendation]:
        """Items like ``positive`` and unlike ``negative``, for visitors without a profile."""
        if not positive:
            raise InvalidInput("give at least one positive example")
        if set(positive) & set(negative):
            raise ValueError("an item cannot be both a positive and a negative example")
        if not self.vector_field:
            raise InvalidInput("this catalogue has no content vectors to compare examples by")
        got = self.items.fetch([*positive, *negative], self.vector_field)
        vecs = []
        for item, g in zip([*positive, *negative], got, strict=True):
            if g is None or g[0] is None:
                raise NotFoundError(f"no item {item!r} with a vector")
            vecs.append(g[0] / (np.linalg.norm(g[0]) or 1.0))
        pos = np.mean(vecs[: len(positive)], axis=0)
        query = pos / (np.linalg.norm(pos) or 1.0)
        if negative:
            neg = np.mean(vecs[len(positive):], axis=0)
            query = query - 0.5 * neg / (np.linalg.norm(neg) or 1.0)
        hits = self.items.knn(query, k, field=self.vector_field, filters=filters,
                              exclude={*positive, *negative},
                              return_fields=self._return_fields())
        why = "like " + ", ".join(positive) + ("; unlike " + ", ".join(negative) if negative else "")
        return [Recommendation(h.id, 1.0 - h.distance, (why,), h.fields) for h in hits]

    def state(self, user_id: str) -> UserState:
        return self.users.state(str(user_id), self.clock())

    def session_vector(self, user_id: str) -> np.ndarray | None:
        """The user's current session vector (None without positive history)."""
        state = self.state(user_id)
        vectors = self._vectors([h.item_id for h in state.history[:20]])
        return self._session_vector(state, vectors, self.clock())


def _as_list(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, list):
        return [str(v) for v in value]
    if isinstance(value, str) and value.startswith("["):
        try:
            return [str(v) for v in json.loads(value)]
        except ValueError:
            pass
    return [s for s in str(value).split(",") if s]


def _and(parts: Iterable[dict[str, Any] | None]) -> dict[str, Any] | None:
    items = [p for p in parts if p]
    if not items:
        return None
    return items[0] if len(items) == 1 else {"and": items}
