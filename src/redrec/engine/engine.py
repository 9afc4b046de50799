"""The online engine: ``track`` applies an event atomically; ``recommend`` reads the
user's state and fuses several candidate lists, all served from Redis.

Candidate lists (details and round trips in :meth:`Engine._candidates`):

* ``tower``    the user tower's vector over the learned item vectors (when a model is live)
* ``session``  the user's decayed session vector over the content vectors
* ``recent:X`` items like each of the user's last few items (cached neighbour lists)
* ``people``   what users with similar session vectors, or the same age band, gender and
  occupation, did lately
* ``popular``  time-decayed popularity (the cold-start answer)

The vector lists are KNN queries with the request's filters as a pre-filter; the other
lists are checked against the filters in Redis by one ``INKEYS`` search. They are fused
by reciprocal rank fusion (or weighted scores), boosted by category affinity and context
rules, and cut to ``k``. Exclusions are applied inside every query, so the list is never
short while enough items qualify.
"""

from __future__ import annotations

import itertools
import json
import math
import time
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from tqdm import tqdm

from redrec.catalog import Catalog
from redrec.engine.config import EngineConfig
from redrec.engine.context import apply_context
from redrec.engine.events import Event
from redrec.engine.table import ItemTable, decayed_sums
from redrec.exceptions import ConfigError, InvalidInput, NotFoundError
from redrec.fusion import rrf, weighted
from redrec.store import Store
from redrec.store.filters import required_tag_values
from redrec.store.index import Batch, Hit, Prepared, resp2_rows, run_all, start_all
from redrec.store.users import Interaction, TrackOp, UserState, UserStore
from redrec.store.vectors import distances

__all__ = ["Engine", "Recommendation"]

_T0 = 1_750_000_000.0  # time origin of the growing weights behind decayed popularity
_RANK_WEIGHTS = [1.0 / (1 + 0.1 * r) for r in range(20)]  # a neighbour's latest items

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
        # Item vectors and display names change only on re-ingest: an in-process cache
        # saves a round trip per request. An entry holds while the catalogue's
        # generation (bumped by every upsert or delete) is the one it was read under, and
        # for cache_ttl_s in any case; bounded (cleared past vector_cache_max entries).
        # An entry: (when read, vector, the returned fields or None for no such item,
        # generation read under).
        self._cache: dict[str, tuple[float, np.ndarray | None, dict[str, Any] | None, int]] = {}
        self.vector_cache_max = 100_000
        self._generation = -2  # the catalogue generation read last (-2: none yet)
        vf = spec.vector_field(self.vector_field) if self.vector_field else None
        # The metric to rank cached vectors with (None: a field of several vectors per
        # item, whose distance is the nearest one's, is left to RediSearch).
        self._vector_metric = vf.metric if vf is not None and not vf.multi else None
        # The returned fields of items seen lately, valid for one catalogue generation
        # (any upsert or delete moves it on): an unfiltered request whose candidates are
        # all known skips the round trip that would load them.
        self._fields: dict[str, dict[str, Any]] = {}
        self._fields_generation = -1
        self.cache_ttl_s = 60.0
        # The catalogue held by row for one generation (warm_vectors): vectors, fields
        # and neighbour lists without a dict entry or a round trip per item.
        self._table: ItemTable | None = None

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
        """Apply events in three round trips (item check, the user scripts, global
        counters); each result is True (applied), False (a duplicate) or the InvalidInput
        that rejected it (nothing written for it). Users who acted several times since
        their session vector was saved (for "people like you") get it saved in the last
        round trip."""
        if not events:
            return []
        cat = self.config.category_field
        # The catalogue's generation rides along (pipelined): the item vectors the
        # session vectors below are made of hold in the process cache while it stands.
        generation = start_all(self.store.client, [self.items.prepare_generation()])
        fetched = self.items.fetch_fields([e.item_id for e in events], [cat] if cat else [])
        self._generation = generation.results()[0]
        ops: list[TrackOp] = []
        slots: list[int] = []
        results: list[bool | InvalidInput] = [False] * len(events)
        for n, (ev, got) in enumerate(zip(events, fetched, strict=True)):
            if got is None:
                results[n] = InvalidInput(f"unknown item {ev.item_id!r}")
                continue
            ops.append(self._op(ev, got[1].get(cat) if cat else None))
            slots.append(n)
        applied = self.users.apply(ops, self._profile_writes if self.vector_field else None)
        for n, ok in zip(slots, applied, strict=True):
            results[n] = ok
        return results

    def _profile_writes(self, stale: dict[str, tuple[int, list[Interaction]]]) -> list[Any]:
        """The session vectors (and latest items) to save for users whose saved ones are
        several events old."""
        now = self.clock()
        ids = [h.item_id for _, hist in stale.values() for h in hist[:20]]
        histories = [hist for _, hist in stale.values()]
        table = self._valid_table()
        if table is not None and table.rows(ids) is not None:
            session = self._session_vectors(histories, table.row, now, table)
        else:
            session = self._session_vectors(histories, self._vectors(ids, self._generation), now)
        out: dict[str, tuple[np.ndarray | None, int, list[str]]] = {}
        for (user, (events, hist)), vec in zip(stale.items(), session, strict=True):
            out[user] = (vec, events, list(dict.fromkeys(h.item_id for h in hist if h.positive)))
        return self.users.save_commands(out)

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
        """Record what is known about a user (age, gender, occupation, zip, loc); a bad
        name or value is InvalidInput and nothing is written."""
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
        all_filters = _and([filters, *ctx.filters])
        # With filters the popular lists are part of every pool: they are read with the
        # state (before the exclusions are known, so over-fetched by a fixed margin).
        margin = self.config.filtered_category_popular_depth
        early = self._popular_queries(all_filters, False, margin, 2 * k + 5) if all_filters else {}
        states, (generation, *popular) = self.users.states_with(
            [str(user_id)], ctx.now, also=[self.items.prepare_generation(), *early.values()])
        state = states[0]
        excluded = set(state.excluded) | set(exclude or ()) | set(state.recent)
        lists, fields = self._candidates(state, k, all_filters, excluded, ctx.now, generation,
                                         dict(zip(early, popular, strict=True)))
        return self._rank(state, lists, fields, k, ctx.boosts)

    def _popular_queries(self, filters: dict[str, Any] | None, cold: bool, extra: int,
                         want: int) -> dict[str, Any]:
        """Popular items: the cold-start answer, and with filters the pool's general part
        (taste-based lists may hold no item that passes, popular ones usually do):
        popular within each category a filter asks for, else popular overall; ``extra``
        more are read to make up for exclusions."""
        cfg = self.config
        cats = (required_tag_values(filters, cfg.category_field)
                if filters and cfg.category_field else None)
        if cats:
            # Over-fetched for exclusions, within reason: few excluded items are at the
            # top of any one category (and a short head only trims the pool).
            per_cat = cfg.filtered_category_popular_depth
            per_cat += min(extra, 3 * per_cat)
            return {f"_popular:{c}": self.users.prepare_popular(per_cat, category=c)
                    for c in dict.fromkeys(v.lower() for v in cats[:50])}
        if cold or filters:
            n_popular = cfg.filtered_popular_depth if filters else want
            return {"_popular": self.users.prepare_popular(n_popular + extra)}
        return {}

    def _candidates(
        self, state: UserState, k: int, filters: dict[str, Any] | None, excluded: set[str],
        now: float, generation: int = 0, early: dict[str, Any] | None = None,
    ) -> tuple[dict[str, list[str]], dict[str, dict[str, Any]]]:
        """The candidate lists (ids best first, exclusions and filters applied) and the
        fields of every candidate, in two round trips after the state read.

        Round trip 1 gathers the lists: the item-to-item lists of the user's last items
        (each item's unfiltered nearest neighbours, cached per catalogue generation,
        computed by KNN on a miss); the neighbour search for "people like you"; popular
        items for a new user; and the user's vector lists (tower, session) as KNN
        queries. Round trip 2 checks, in one ``INKEYS`` search inside Redis, every
        candidate that did not come from a pre-filtered query.

        A warm process (:meth:`warm_vectors`) holds the item-to-item lists in its
        :class:`~redrec.engine.table.ItemTable`, and with filters the popular lists
        come with the state (``early``): round trip 1 is then the "people like you"
        search alone, and the pool is checked while Redis runs it.

        Without filters the vector lists are plain HNSW searches and round trip 2 only
        loads the fields of candidates not seen lately (often it is skipped).

        With filters, a pre-filtered KNN costs ~1.5-2 ms on 20k items in RediSearch 2.10
        (mostly evaluating the filter over the catalogue), so the lists are drawn
        without the filters into a pool (``filtered_pool_depth``) joined by popular items
        (from the categories the filter asks for, or overall), and the check ranks the
        pool by the session vector as it filters it: the passing items nearest to the
        session are the session list; every other list keeps its passing items in order
        (a filtered item-to-item list is exactly the head of its pre-filtered version).
        Only if fewer than ``k`` candidates pass does a third round trip run the
        pre-filtered vector queries, so the list is never short while enough items
        qualify.

        Redis and Python overlap (:func:`~redrec.store.index.start_all`): the "people
        like you" search is sent as a batch of its own behind round trip 1, and with
        filters its replies are scored while Redis checks the rest of the pool; their
        items not in the pool yet get a small check of their own, whose hits are merged
        by distance into the session list.
        """
        cfg = self.config
        want = 2 * k + 5  # list depth for fusion
        ret = self._return_fields()
        self._generation = generation
        table = self._valid_table()
        history = state.history[:20]
        rows = table.rows([h.item_id for h in history]) if table is not None else None
        if table is not None and rows is not None:
            session = self._session_vectors([history], table.row, now, table)[0]
            have: Collection[str] = table.row
        else:
            vectors = self._vectors([h.item_id for h in history], generation)
            session = self._session_vector(state, vectors, now)
            have = {i for i, v in vectors.items() if v is not None}
        last = [i for i in state.recent[: cfg.recent_items] if i in have]
        # Each list in the order it is fused: a query to send in round trip 1, or None
        # for a list already at hand (``held``: from the table, or read with the state).
        queries: dict[str, Any] = {}
        held: dict[str, list[str]] = {}
        if filters:
            # Unfiltered vector lists (ids only, cheap HNSW searches) go to the check
            # below with the other lists; a pre-filtered KNN runs only if too few pass.
            vector_kw: dict[str, Any] = {"filters": None, "exclude": excluded, "return_fields": []}
            depth = cfg.filtered_pool_depth
        else:
            vector_kw = {**self._prefilter(filters, excluded), "return_fields": ret}
            depth = want
        if self.tower is not None and state.recent:
            # With filters the tower list (the strongest) is drawn deeper: its items are
            # not ranked by the session check.
            tq = self.tower.prepare(state.recent, 2 * max(depth, want) if filters else depth,
                                    **vector_kw)
            if tq is not None:
                queries["tower"] = tq
        if session is not None and not filters:
            queries["session"] = self.items.prepare_knn(
                session, depth, field=self.vector_field, **vector_kw)
        for item_id in last if self.vector_field else []:
            name = f"recent:{item_id}"
            if table is not None and table.holds(item_id):
                queries[name] = None  # read from the table once the searches are sent
            else:
                queries[name] = self.items.prepare_cached_neighbours(
                    item_id, self.vector_field, generation)
        if cfg.neighbours and self.vector_field:
            for n, q in enumerate(self.users.prepare_neighbours(
                    session, cfg.neighbours, user_id=state.user_id,
                    attributes=state.attributes)):
                queries[f"_users{n}"] = q
        cold = state.events < cfg.cold_start_events
        n_popular = cfg.filtered_popular_depth if filters else want
        if early:
            held.update(early)
            queries.update(dict.fromkeys(early))
        else:
            queries.update(self._popular_queries(filters, cold, len(excluded), want))
        # The neighbour search for "people like you" goes in a batch of its own, read
        # only when needed: with filters, Redis runs it while the lists are read and the
        # pool is built (with every list at hand, before the pool's check), and runs the
        # pool's check while its replies are scored.
        users = [n for n in queries if n.startswith("_users")]
        names = [n for n in queries if not n.startswith("_users") and queries[n] is not None]
        client = self.store.client
        first = start_all(client, [queries[n] for n in names])
        later = start_all(client, [queries[n] for n in users])
        for name, q in queries.items():
            if q is None and name.startswith("recent:") and table is not None:
                held[name] = table.neighbours_of(name.removeprefix("recent:"), excluded, depth) or []
        sent = dict(zip(names, first.results(), strict=True))
        hits = {n: held[n] if n in held else sent[n] for n in queries if not n.startswith("_users")}

        lists: dict[str, list[str]] = {}
        fields: dict[str, dict[str, Any]] = {}
        unchecked: dict[str, list[str]] = {}
        writes = self._item_neighbours(hits, generation)
        for name, hs in hits.items():
            if name.startswith("_"):
                continue
            if name.startswith("recent:"):
                unchecked[name] = [i for i in hs if i not in excluded][:depth]
                continue
            if filters:  # an unfiltered vector list
                unchecked[name] = [h.id for h in hs]
                continue
            lists[name] = [h.id for h in hs]
            for h in hs:
                fields.setdefault(h.id, h.fields)

        def people() -> list[str]:
            return self._people(later, excluded, state.user_id, depth)

        if not filters and users and (ppl := people()):
            unchecked["people"] = ppl
        # Each category's own head (after exclusions), interleaved.
        by_category = [[i for i in hs if i not in excluded][:cfg.filtered_category_popular_depth]
                       for n, hs in hits.items() if n.startswith("_popular:")]
        ranked = ([i for row in itertools.zip_longest(*by_category) for i in row if i]
                  if by_category else hits.get("_popular", []))
        popular = [i for i in dict.fromkeys(ranked) if i not in excluded][:n_popular]
        if popular:
            unchecked["popular"] = popular
        checks: dict[str, Any] = {}
        if self._fields_generation != generation or len(self._fields) > 200_000:
            self._fields = {}
            self._fields_generation = generation
        known = self._fields
        if not filters:
            for ids in unchecked.values():
                for i in ids:
                    if i in known:
                        fields.setdefault(i, known[i])
        pending = [i for ids in unchecked.values() for i in ids if i not in fields]

        # The session list with filters: the pool, ranked by the session vector. When
        # every pooled item's vector is in the process cache the check only filters and
        # the ranking is done here (a KNN in the check costs ~0.2 ms of Redis time);
        # otherwise the check ranks as it filters and returns the nearest passing items
        # (each returned item costs ~6 us end to end); the other lists keep those.
        local: dict[str, np.ndarray] = {}
        by_row: list[ItemTable] = []  # the table, once a check's pool was all in it

        def check(ids: list[str], limit: int | None) -> Any:
            if filters and session is not None:
                if table is not None:
                    if self._vector_metric is not None and table.rows(ids) is not None:
                        # As below, the process holding the whole pool by row.
                        by_row[:] = [table]
                        return self.items.among(ids, filters, return_fields=[])
                elif (got := self._cached_vectors(ids)) is not None:
                    # The process holds these items' vectors and fields (read together):
                    # Redis only says which pass (~4 us less per passing item than
                    # returning their fields, and nothing to decode here).
                    local.update(got)
                    return self.items.among(ids, filters, return_fields=[])
                return self.items.among(ids, filters, return_fields=ret, vector=session,
                                        field=self.vector_field, limit=limit)
            return self.items.among(ids, filters, return_fields=ret)

        check_name = "check:session" if filters and session is not None else "check"
        limit = None if "tower" in unchecked else 2 * want
        if pending:
            checks[check_name] = check(pending, limit)
        if cold or not (lists or unchecked or users):
            checks["catalog"] = self._catalog_list(filters, ret, want + len(excluded))
        second = start_all(client, [*checks.values(), *writes])
        third = None
        if filters and users:
            # Score "people like you" while Redis runs the check, then check those of
            # their items that are not in the pool yet.
            if ppl := people():
                unchecked["people"] = ppl
            seen = set(pending)
            extra = [i for i in ppl if i not in seen and i not in fields]
            if extra:
                third = start_all(client, [check(extra, limit)])
        results = dict(zip(checks, second.results(), strict=False))
        here: dict[str, np.ndarray] | ItemTable | None = by_row[0] if by_row else local or None
        if third is not None or here is not None:
            got = results.get(check_name, [])
            # The pool's distances are taken while Redis checks the extra items.
            dist = (self._distances(got, here or {}, session) if check_name == "check:session"
                    else None)
            if third is not None:
                more = third.finish(0)
                got = [*got, *more]
                if dist is not None:
                    dist += self._distances(more, here or {}, session)
            if dist is not None:  # nearest first
                got = [got[n] for n in sorted(range(len(got)), key=dist.__getitem__)]
                got = got[:limit] if limit is not None else got
            results[check_name] = got
        self._absorb(lists, fields, unchecked, results, excluded, want)
        if here is not None:  # the checks returned ids only: their fields from the process
            for i, f in fields.items():
                if not f:
                    fields[i] = self._held_fields(i, table) or f
        known.update(fields)
        if filters and len(fields) < k and (session is not None or "tower" in queries):
            # Too few candidates pass the filters: the vector lists again, pre-filtered
            # (RediSearch finds the nearest passing items, however far they are).
            prefilter = self._prefilter(filters, excluded)
            again: dict[str, Any] = {}
            if "tower" in queries:
                tq = self.tower.prepare(state.recent, want, return_fields=ret, **prefilter)
                if tq is not None:
                    again["tower"] = tq
            if session is not None:
                again["session"] = self.items.prepare_knn(
                    session, want, field=self.vector_field, return_fields=ret, **prefilter)
            self._merge(lists, fields, {}, again, excluded, want)
        if not cold and len(fields) < k:
            # Short (a tiny catalogue, a model that knows few items, heavy exclusions):
            # fill from popular items, then anything that passes the filters.
            popular = [i for i in self.users.popular(want + len(excluded))
                       if i not in excluded and i not in fields][:want]
            fill: dict[str, Any] = {}
            if popular:
                fill["check"] = self.items.among(popular, filters, return_fields=ret)
            fill["catalog"] = self._catalog_list(filters, ret, want + len(excluded))
            self._merge(lists, fields, {"popular": popular}, fill, excluded, want)
        return lists, fields

    def _prefilter(self, filters: dict[str, Any] | None, excluded: set[str]) -> dict[str, Any]:
        """How a pre-filtered vector query leaves out ``excluded``: inside the filter
        when there are few (RediSearch then finds k passing items: 1.5 ms p50 on the
        engine benchmark, against 1.9 ms for over-fetching k + len(excluded)), by
        over-fetch otherwise (a long id list makes the filter itself slow). The hybrid
        policy is chosen on the user's filters alone, whose clauses repeat across
        requests (an id list never does, and each new clause costs a count query)."""
        if not filters or not excluded or len(excluded) > self.config.exclude_in_filter_max:
            return {"filters": filters, "exclude": excluded}
        return {"filters": {"and": [filters, {"not": {self.id_field: sorted(excluded)}}]},
                "exclude": (), "hybrid_policy": self.items.hybrid_policy_for(filters) or "default"}

    def _catalog_list(self, filters: dict[str, Any] | None, ret: list[str], n: int) -> Any:
        """Any items that pass the filters, in id order (without an order, RediSearch
        returns equally scored documents in a varying order)."""
        return self.items.find(filters, return_fields=ret, limit=n, sort_by=self.id_field)

    def _item_neighbours(self, hits: dict[str, Any], generation: int) -> list[Any]:
        """Fill the cache misses among the item-to-item lists in ``hits`` (one round trip
        of unfiltered KNN queries); returns the writes that cache them."""
        misses = [n for n, got in hits.items() if n.startswith("recent:") and got is None]
        if not misses:
            return []
        depth = self.config.item_list_depth
        self._generation = generation
        table = self._valid_table()
        items = [n.split(":", 1)[1] for n in misses]
        vectors = self._vectors(items, generation)
        found = run_all(self.store.client, [
            self.items.prepare_knn(vectors[i], depth + 1, field=self.vector_field,
                                   return_fields=[]) for i in items])
        writes = []
        for name, item, hs in zip(misses, items, found, strict=True):
            ids = [h.id for h in hs if h.id != item][:depth]
            hits[name] = ids
            if table is not None:
                table.set_neighbours(item, ids)
            writes.append(self.items.cache_neighbours_command(
                item, self.vector_field, generation, ids, self.config.item_list_ttl_s))
        return writes

    def warm_item_neighbours(self, *, batch: int = 200, progress: bool = False) -> int:
        """Compute and cache every item's nearest neighbours now (the item-to-item lists
        are otherwise computed on first use); returns how many items were done."""
        if not self.vector_field:
            return 0
        ids = self.items.scan_ids()
        generation = self._read_generation()
        for chunk in _batches(ids, batch, "item neighbours", progress):
            hits: dict[str, Any] = {f"recent:{i}": None for i in chunk}
            run_all(self.store.client, self._item_neighbours(hits, generation))
        return len(ids)

    def _read_generation(self) -> int:
        (generation,) = run_all(self.store.client, [self.items.prepare_generation()])
        self._generation = generation
        return generation

    def _merge(self, lists: dict[str, list[str]], fields: dict[str, dict[str, Any]],
               unchecked: dict[str, list[str]], queries: dict[str, Any], excluded: set[str],
               want: int) -> None:
        """Run ``queries`` in one round trip and add their results (:meth:`_absorb`)."""
        names = list(queries)
        replies = run_all(self.store.client, [queries[n] for n in names]) if names else []
        self._absorb(lists, fields, unchecked, dict(zip(names, replies, strict=True)),
                     excluded, want)

    @staticmethod
    def _absorb(lists: dict[str, list[str]], fields: dict[str, dict[str, Any]],
                unchecked: dict[str, list[str]], results: dict[str, list[Hit]],
                excluded: set[str], want: int) -> None:
        """Add query results: the ``unchecked`` lists keep, in order, the ids whose
        fields are known by then (they came from a pre-filtered query or passed the
        ``check`` query); any other result is a list of its own (``check:NAME`` is the
        list NAME)."""
        for name, hs in results.items():
            got = {h.id: h for h in hs if h.id not in excluded}
            for h in got.values():
                fields.setdefault(h.id, h.fields)
            if name != "check":
                lists[name.removeprefix("check:")] = [h.id for h in hs if h.id in got][:want]
        for lname, ids in unchecked.items():
            lists[lname] = [i for i in ids if i in fields][:want]

    def _vectors(self, ids: Sequence[str], generation: int | None = None
                 ) -> dict[str, np.ndarray | None]:
        """Item vectors (and display names) through the in-process cache; entries read
        under ``generation`` (the catalogue's, when the caller has just read it, else
        the last one read) hold."""
        if generation is not None:
            self._generation = generation
        now = time.monotonic()
        out, missing = self._cached(dict.fromkeys(ids), now)
        if missing:
            out.update(self._load_vectors(missing, now, -1 if generation is None else generation))
        return out

    def _cached(self, ids: Iterable[str], now: float
                ) -> tuple[dict[str, np.ndarray | None], list[str]]:
        """The cache entries of ``ids`` that hold (read under the current generation, or
        younger than ``cache_ttl_s``), and the ids without one."""
        ttl, current, get = self.cache_ttl_s, self._generation, self._cache.get
        out: dict[str, np.ndarray | None] = {}
        missing = []
        for i in ids:
            hit = get(i)
            if hit is not None and (hit[3] == current or now - hit[0] < ttl):
                out[i] = hit[1]
            else:
                missing.append(i)
        return out, missing

    def _load_vectors(self, ids: Sequence[str], now: float, generation: int
                      ) -> dict[str, np.ndarray | None]:
        if len(self._cache) + len(ids) > self.vector_cache_max:
            self._cache.clear()
        ret = self._return_fields()
        rows = (self.items.fetch(ids, self.vector_field, ret)
                if self.vector_field else self.items.fetch_fields(ids, ret))
        out = {}
        for i, got in zip(ids, rows, strict=True):
            vec = got[0] if got is not None else None
            self._cache[i] = (now, vec, got[1] if got is not None else None, generation)
            out[i] = vec
        return out

    def _valid_table(self) -> ItemTable | None:
        """The item table, if it was built under the catalogue generation read last."""
        table = self._table
        return table if table is not None and table.generation == self._generation else None

    def _held_fields(self, item_id: str, table: ItemTable | None) -> dict[str, Any] | None:
        """An item's returned fields from the table, else from the per-item cache."""
        r = table.row.get(item_id) if table is not None else None
        return table.fields[r] if table is not None and r is not None else self._cached_fields(item_id)

    def _cached_fields(self, item_id: str) -> dict[str, Any] | None:
        """The returned fields the process cache holds for an item (read with its
        vector), or None (not cached, or no such item)."""
        hit = self._cache.get(item_id)
        return hit[2] if hit is not None else None

    def warm_vectors(self, *, batch: int = 1000, progress: bool = False,
                     neighbours: bool = True) -> int:
        """Load the catalogue's item vectors and fields (up to ``vector_cache_max``
        items) into the process now, as a long-running service would at start, and hold
        them by row (:class:`~redrec.engine.table.ItemTable`) with, unless
        ``neighbours`` is False, the item-to-item lists cached in Redis for this
        catalogue generation (:meth:`warm_item_neighbours` computes them). They stay
        until the catalogue changes (then this is to be called again; meanwhile items
        are read as needed). Returns how many items were loaded."""
        ids = self.items.scan_ids()[: self.vector_cache_max]
        generation = self._read_generation()
        for chunk in _batches(ids, batch, "item vectors", progress):
            self._load_vectors(chunk, time.monotonic(), generation)
        self._table = table = self._build_table(ids, generation)
        if neighbours and table is not None and self.vector_field:
            for chunk in _batches(table.ids, batch, "neighbour lists", progress):
                cmds = [self.items.prepare_cached_neighbours(i, self.vector_field, generation)
                        for i in chunk]
                for i, got in zip(chunk, run_all(self.store.client, cmds), strict=True):
                    if got is not None:
                        table.set_neighbours(i, got)
        return len(ids)

    def _build_table(self, ids: Sequence[str], generation: int) -> ItemTable | None:
        """The table of the cached items read under ``generation`` (None if none). The
        cache entries then share the table's rows (float32 vectors: no second copy)."""
        entries = [(i, e) for i in ids
                   if (e := self._cache.get(i)) is not None and e[1] is not None and e[3] == generation]
        if not entries or len({e[1].shape for _, e in entries}) != 1:
            return None
        table = ItemTable(generation, [i for i, _ in entries], np.stack([e[1] for _, e in entries]),
                          [e[2] or {} for _, e in entries], self.config.item_list_depth)
        for n, (i, e) in enumerate(entries):
            if e[1].dtype == np.float32:
                self._cache[i] = (e[0], table.vectors[n], e[2], e[3])
        return table

    def _cached_vectors(self, ids: Sequence[str]) -> dict[str, np.ndarray] | None:
        """The vectors of ``ids`` if the process cache holds every one of them (and the
        field has one vector per item), else None: no round trip is made."""
        if self._vector_metric is None:
            return None
        out, missing = self._cached(ids, time.monotonic())
        vectors = {i: v for i, v in out.items() if v is not None}
        return None if missing or len(vectors) < len(out) else vectors

    def _distances(self, hits: list[Hit], vectors: dict[str, np.ndarray] | ItemTable,
                   query: np.ndarray) -> list[float]:
        """The distance of each hit as RediSearch would give it (the field's metric):
        computed here for those with a vector in ``vectors`` (by id, or the table's
        rows), the others' as they came."""
        dist = [h.distance for h in hits]
        if isinstance(vectors, ItemTable):
            row = vectors.row
            mine = [n for n, h in enumerate(hits) if h.id in row]
            m = vectors.vectors[[row[hits[n].id] for n in mine]] if mine else None
        else:
            mine = [n for n, h in enumerate(hits) if h.id in vectors]
            m = np.array([vectors[hits[n].id] for n in mine], dtype=np.float32) if mine else None
        if m is not None:
            d = distances(m, query, self._vector_metric or "cosine")
            for n, x in zip(mine, d.tolist(), strict=True):
                dist[n] = x
        return dist

    def _session_vector(self, state: UserState, vectors: dict[str, np.ndarray | None],
                        now: float) -> np.ndarray | None:
        """The time-decayed, weighted sum of the user's recent item vectors."""
        return self._session_vectors([state.history], vectors, now)[0]

    def _session_vectors(self, histories: Sequence[Sequence[Interaction]],
                         vectors: Mapping[str, Any], now: float, table: ItemTable | None = None
                         ) -> list[np.ndarray | None]:
        """:meth:`_session_vector` of several users, their rows gathered and normed in
        one go (a worker saves dozens per batch). ``vectors`` maps item ids to their
        vectors, or, with ``table``, to its rows."""
        hl = self.config.session_half_life_s
        rows, coef, spans = [], [], []
        for hist in histories:
            start = len(rows)
            for h in hist[:20]:
                vec = vectors.get(h.item_id)
                if vec is None:
                    continue
                decay = 2.0 ** (-max(0.0, now - h.timestamp) / hl) if h.timestamp else 1.0
                rows.append(vec)
                coef.append(h.weight * max(decay, 1e-3))
            spans.append((start, len(rows)))
        if not rows:
            return [None] * len(histories)
        if table is not None:
            m, norms = table.vectors[rows], table.norms[rows]
        else:
            m = np.array(rows, dtype=np.float32)
            norms = np.sqrt(np.einsum("ij,ij->i", m, m))
            norms[norms == 0] = 1.0
        return decayed_sums(m, norms, coef, spans)

    def _people(self, batch: Batch, excluded: set[str], user_id: str, limit: int) -> list[str]:
        """What users like this one did lately, by their similarity and recency; a
        neighbour found by attributes alone (no vector yet) counts as similarity 0.5.
        ``batch`` holds the neighbour searches (:meth:`UserStore.prepare_neighbours`);
        their RESP2 replies are read here directly (key, items, distance: building hits
        and decoding fields cost as much as the scoring), nearest first."""
        score: dict[str, float] = {}
        seen: set[Any] = set()
        get = score.get
        me = self.users.profile_key(user_id).encode()
        for n, raw in enumerate(batch.raw()):
            if raw is None:
                continue
            if not isinstance(raw, list):  # RESP3 through redis-py: via hits
                rows = [(h.id, h.fields.get("items"), h.distance) for h in batch.finish(n)]
            else:
                rows = []
                for key, flat in resp2_rows(raw):
                    if key == me:
                        continue
                    items = None
                    dist = math.nan
                    for j in range(0, len(flat) - 1, 2):
                        name = flat[j]
                        if name == b"items":
                            items = flat[j + 1]
                        elif name == b"__distance":
                            dist = float(flat[j + 1])
                    rows.append((key, items, dist))
                query = batch.queries[n]
                if isinstance(query, Prepared):  # one over-fetched: the user
                    if query.args.sort_by is None and "vec" in query.args.params:
                        rows.sort(key=_third)
                    del rows[query.k:]
            for who, items, dist in rows:
                if who in seen:
                    continue
                seen.add(who)
                if not items:
                    continue
                sim = 0.5 if math.isnan(dist) else max(0.0, 1.0 - dist)
                text = items.decode() if type(items) is bytes else str(items)
                # a neighbour saves its latest 20 items
                for item, r in zip(text.split("\x1f"), _RANK_WEIGHTS, strict=False):
                    score[item] = get(item, 0.0) + sim * r
        out: list[str] = []
        for i in sorted(score, key=score.__getitem__, reverse=True):
            if i and i not in excluded:
                out.append(i)
                if len(out) >= limit:
                    break
        return out

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
        cat_field = cfg.category_field if top_aff > 0 else None
        rules = [(rule, set(rule.values)) for rule in boosts]
        # Boosts move every candidate; reasons are written for the k that are kept.
        scored: list[tuple[float, str, list[str], str | None, list[str]]] = []
        boost = cfg.affinity_boost / top_aff if top_aff > 0 else 0.0
        for item, score, sources in fused:
            f = fields.get(item, {})
            liked = None
            if cat_field:
                best = 0.0
                for c in _as_list(f.get(cat_field)):
                    a = aff.get(c, 0.0)
                    if a > best:
                        best, liked = a, c
                if liked is not None:
                    score *= 1.0 + boost * best
            boosted = []
            for rule, values in rules:
                if set(_as_list(f.get(rule.field))) & values:
                    score *= rule.boost
                    boosted.append(rule.name)
            scored.append((score, item, sources, liked, boosted))
        scored.sort(key=lambda t: -t[0])
        out = []
        for score, item, sources, liked, boosted in scored[:k]:
            reasons = [self._reason(s, fields) for s in sources]
            if liked is not None:
                reasons.append(f"you like {liked}")
            reasons += [f"boosted: {name}" for name in boosted]
            out.append(Recommendation(item, score, tuple(dict.fromkeys(reasons)),
                                      fields.get(item, {})))
        return out

    def _reason(self, source: str, fields: dict[str, dict[str, Any]]) -> str:
        if source.startswith("recent:"):
            item = source.split(":", 1)[1]
            got = self._cached_fields(item) or {}
            name = next((str(got[d]) for d in self._display if got.get(d)), item)
            return f"similar to {name}, which you looked at"
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


def _third(row: tuple[Any, ...]) -> Any:
    return row[2]


def _as_list(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str) and "," not in value and not value.startswith("["):
        return [value] if value else []
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


def _batches(ids: Sequence[str], size: int, what: str, progress: bool) -> Iterator[Sequence[str]]:
    """``ids`` in chunks of ``size``, with a progress bar when asked."""
    bar = tqdm(total=len(ids), desc=what, unit="item", disable=not progress)
    for start in range(0, len(ids), size):
        chunk = ids[start:start + size]
        yield chunk
        bar.update(len(chunk))
    bar.close()
