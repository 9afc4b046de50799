"""The online engine against a real Redis: every action moves the next list."""

from __future__ import annotations

import threading

import pytest

from redrec.catalog import Catalog, ingest
from redrec.engine import ContextRule, Engine, EngineConfig, Event, Period
from redrec.exceptions import ConfigError, InvalidInput
from redrec.store import Store
from tests.support.shop import SHOP_MAPPING, KeywordEncoder, shop_items

ENC = {"text": KeywordEncoder()}
T = 1_780_000_000.0  # a fixed "now" (2026-05-28) so tests do not depend on the clock


class Clock:
    def __init__(self, t: float = T) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


@pytest.fixture(scope="module")
def shop(store):
    ingest(store, SHOP_MAPPING, shop_items(), encoders=ENC)
    return Catalog(store, SHOP_MAPPING, encoders=ENC)


@pytest.fixture
def engine(store, shop):
    # each test gets fresh user state: clear users, popularity and the profile index
    for key in store.client.scan_iter("redrec:user:*"):
        store.client.delete(key)
    for key in store.client.scan_iter("redrec:profile:*"):
        store.client.delete(key)
    store.client.delete("redrec:popular", "redrec:users",
                        *store.client.scan_iter("redrec:popular:cat:*"))
    cfg = EngineConfig(
        category_field="category", geo_field="store",
        periods={"bbq-week": Period(start="06-01", end="06-07")},
        rules=[ContextRule(name="bbq week", when={"period": "bbq-week"}, field="category",
                           values=["cooking"], boost=3.0),
               ContextRule(name="night: no cooking", when={"daypart": "night"},
                           filter={"category": {"ne": "cooking"}})],
    )
    return Engine(store, shop, cfg, clock=Clock())


def cats(recs):
    return [r.fields.get("category") for r in recs]


def view(engine, user, item, kind="view", **kw):
    engine.clock.t += 10
    return engine.track(user_id=user, item_id=item, type=kind, timestamp=engine.clock.t, **kw)


def test_scripted_session_moves_the_list(engine):
    cold = engine.recommend("ann", 5)
    assert len(cold) == 5
    for item in ("p1", "p2", "p3"):  # three science-fiction views
        view(engine, "ann", item)
    recs = engine.recommend("ann", 5)
    assert cats(recs) == ["scifi"] * 5
    assert not {"p1", "p2", "p3"} & {r.item_id for r in recs}  # just seen: not repeated
    assert any("similar to scifi product 3" in why for r in recs for why in r.reasons)
    for item in ("p41", "p42", "p43", "p44", "p45"):  # she moves to cooking
        view(engine, "ann", item, "click")
    recs = engine.recommend("ann", 5)
    assert cats(recs).count("cooking") >= 4
    view(engine, "ann", "p46", "purchase")
    assert "p46" not in {r.item_id for r in engine.recommend("ann", 40)}
    state = engine.state("ann")
    assert state.recent[:2] == ["p46", "p45"] and state.events == 9
    assert state.affinity["cooking"] > state.affinity["scifi"]


def test_dislike_excludes_and_pushes_away(engine):
    for item in ("p21", "p22"):
        view(engine, "bob", item)
    before = [r.item_id for r in engine.recommend("bob", 5)]
    view(engine, "bob", before[0], "dislike")
    after = [r.item_id for r in engine.recommend("bob", 5)]
    assert before[0] not in after


def test_purchases_never_come_back_even_under_concurrency(engine):
    items = [f"p{i}" for i in range(40)]
    purchases = set(items[::4])

    def worker(chunk):
        for n, item in enumerate(chunk):
            kind = "purchase" if item in purchases else "view"
            engine.track(user_id="cara", item_id=item, type=kind, timestamp=T + n)

    threads = [threading.Thread(target=worker, args=(items[i::4],)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    state = engine.state("cara")
    assert state.events == 40
    assert purchases <= state.excluded
    recs = engine.recommend("cara", 20)
    assert len(recs) == 20
    assert not purchases & {r.item_id for r in recs}


def test_replayed_event_ids_change_nothing(engine):
    ev = Event.create("dan", "p5", "purchase", timestamp=T, id="evt-1")
    assert engine.track(ev) is True
    assert engine.track(ev) is False
    assert engine.state("dan").events == 1
    assert len(engine.users.events("dan")) == 1


def test_cold_start_is_popular_items(engine):
    for u in range(5):
        for item in ("p50", "p51", "p52"):
            view(engine, f"fan{u}", item, "purchase")
    recs = engine.recommend("newcomer", 5)
    assert len(recs) == 5
    assert {r.item_id for r in recs[:3]} == {"p50", "p51", "p52"}
    assert all("popular right now" in r.reasons for r in recs[:3])
    assert engine.state("newcomer").is_new  # asking does not create state


def test_unknown_user_becomes_a_new_user(engine):
    assert view(engine, "zoe", "p7")
    assert engine.state("zoe").events == 1
    assert "zoe" in engine.users.all_users()


def test_filters_run_inside_redis_and_never_shorten_the_list(engine):
    for item in ("p1", "p2", "p3", "p4"):
        view(engine, "eve", item, "purchase")
    recs = engine.recommend("eve", 10, filters={"category": "scifi", "in_stock": "yes",
                                                "price": {"lte": 40}})
    expected = {i["id"] for i in shop_items() if i["category"] == "scifi"
                and i["in_stock"] == "yes" and i["price"] <= 40} - {"p1", "p2", "p3", "p4"}
    assert {r.item_id for r in recs} == set(list(expected)[:10]) or (
        len(recs) == min(10, len(expected)) and {r.item_id for r in recs} <= expected)


def test_near_me_is_a_geo_prefilter(engine):
    view(engine, "fay", "p10")
    recs = engine.recommend("fay", 10, context={"location": {"lon": 2.30, "lat": 48.85},
                                                 "radius_km": 1})
    stores = {i["id"]: i["store"] for i in shop_items()}
    assert recs and all(stores[r.item_id].startswith("2.300") for r in recs)


def test_context_rules_boost_and_filter(engine):
    view(engine, "gus", "p1")
    june3 = {"time": "2026-06-03T12:00:00Z"}
    plain = engine.recommend("gus", 10, context={"time": "2026-05-03T12:00:00Z"})
    boosted = engine.recommend("gus", 10, context=june3)
    assert cats(boosted).count("cooking") > cats(plain).count("cooking")
    assert any("boosted: bbq week" in r.reasons for r in boosted)
    night = engine.recommend("gus", 10, context={"time": "2026-05-03T02:00:00Z"})
    assert "cooking" not in cats(night)


@pytest.mark.parametrize("kwargs,match", [
    ({"user_id": "u", "item_id": "nope", "type": "view"}, "unknown item"),
    ({"user_id": "u", "item_id": "p1", "type": "like"}, "unknown event type"),
    ({"user_id": "u", "item_id": "p1", "type": "view", "timestamp": "yesterday"}, "bad timestamp"),
    ({"user_id": "u", "item_id": "p1", "type": "view", "timestamp": 1e15}, "out of range"),
    ({"user_id": "u", "item_id": "p1", "type": "rating"}, "numeric value"),
    ({"user_id": "u", "item_id": "p1", "type": "view", "context": {"x": "y" * 5000}}, "limit"),
    ({"user_id": "", "item_id": "p1", "type": "view"}, "bad user id"),
])
def test_bad_events_are_rejected_and_write_nothing(engine, kwargs, match):
    with pytest.raises(InvalidInput, match=match):
        engine.track(**kwargs)
    assert engine.state("u").events == 0
    assert engine.users.events("u") == []


def test_ratings_move_the_vector_by_their_value(engine):
    view(engine, "hal", "p1")
    engine.track(user_id="hal", item_id="p2", type="rating", value=5, timestamp=T + 100)
    engine.track(user_id="hal", item_id="p42", type="rating", value=1, timestamp=T + 101)
    state = engine.state("hal")
    assert "p2" in state.recent and "p42" not in state.recent  # a bad rating is not a like
    assert cats(engine.recommend("hal", 3)) == ["scifi"] * 3


def test_people_like_you(engine):
    # two users share science-fiction taste; one of them also bought p30 (romance)
    for item in ("p1", "p2", "p3"):
        view(engine, "ivy", item)
        view(engine, "jon", item)
    view(engine, "jon", "p30", "click")
    recs = engine.recommend("ivy", 25)
    liked = {r.item_id for r in recs if "people like you liked it" in r.reasons}
    assert "p30" in liked  # a romance title, reachable only through Jon
    assert [r.item_id for r in recs].index("p30") < 20


def test_recommend_from_examples(engine):
    recs = engine.recommend_from_examples(["p1", "p2"], ["p41"], 5)
    assert len(recs) == 5 and cats(recs) == ["scifi"] * 5
    assert not {"p1", "p2", "p41"} & {r.item_id for r in recs}
    with pytest.raises(ValueError):
        engine.recommend_from_examples(["p1"], ["p1"])


def test_durable_log_keeps_every_event_in_order(engine):
    for n, item in enumerate(("p1", "p2", "p3")):
        engine.track(user_id="kim", item_id=item, type="view", timestamp=T + n, id=f"k{n}")
    log = engine.users.events("kim")
    assert [e["item_id"] for e in log] == ["p1", "p2", "p3"]
    assert [e["id"] for e in log] == ["k0", "k1", "k2"]


def test_bad_arguments(engine):
    with pytest.raises(InvalidInput):
        engine.recommend("x", 0)
    with pytest.raises(InvalidInput):
        engine.recommend("x", 5, context={"period": "nope"})
    with pytest.raises(InvalidInput):
        engine.set_user("x", shoe_size=42)


def test_engine_needs_an_id_tag(store):
    mapping = {**SHOP_MAPPING, "index": "noid_idx", "prefix": "noid:",
               "fields": {"category": "tag"}}
    ingest(store, mapping, shop_items(3), encoders=ENC)
    with pytest.raises(ConfigError, match="id field"):
        Engine(store, Catalog(store, mapping, encoders=ENC))


def test_item_to_item_lists_are_filtered_cached_and_renewed_on_catalogue_change(engine, store):
    view(engine, "ola", "p2")
    recs = engine.recommend("ola", 10, filters={"in_stock": "yes"})
    stock = {i["id"]: i["in_stock"] for i in shop_items()}
    assert len(recs) == 10 and all(stock[r.item_id] == "yes" for r in recs)
    assert any("similar to scifi product 2" in why for r in recs for why in r.reasons)
    assert list(store.client.scan_iter("redrec:nn:*"))  # p2's neighbours are cached
    twin = {**shop_items()[2], "id": "p999", "name": "scifi twin"}  # same text as p2
    try:
        ingest(store, SHOP_MAPPING, [twin], encoders=ENC)  # moves the generation on
        recs = {r.item_id: r for r in engine.recommend("ola", 20)}
        assert "similar to scifi product 2, which you looked at" in recs["p999"].reasons
    finally:
        engine.items.delete(["p999"])
    assert "p999" not in {r.item_id for r in engine.recommend("ola", 20)}


def test_people_like_you_by_attributes_for_a_new_user(engine):
    engine.set_user("kim", gender="F", occupation="nurse", age=31)
    engine.set_user("lou", gender="F", occupation="nurse", age=29)
    engine.set_user("max", gender="M", occupation="lawyer", age=52)
    for item in ("p31", "p32"):
        view(engine, "lou", item)
    for item in ("p51", "p52"):
        view(engine, "max", item)
    recs = engine.recommend("kim", 10)  # kim has no events at all
    liked = {r.item_id for r in recs if "people like you liked it" in r.reasons}
    assert {"p31", "p32"} <= liked and not {"p51", "p52"} & liked
    assert engine.state("kim").attributes == {"gender": "F", "occupation": "nurse", "age": "31"}


def test_filtered_requests_rank_the_checked_pool_by_the_session(engine, store):
    """With filters the lists are checked as one pool, which the session vector ranks."""
    for item in ("p1", "p2", "p3"):
        view(engine, "pia", item)
    f = {"in_stock": "yes", "price": {"lte": 40}}
    recs = engine.recommend("pia", 10, filters=f)
    items = {i["id"]: i for i in shop_items()}
    assert len(recs) == 10
    assert all(items[r.item_id]["in_stock"] == "yes" and items[r.item_id]["price"] <= 40
               for r in recs)
    assert cats(recs[:5]) == ["scifi"] * 5  # nearest to a scifi session
    assert any("close to what you are browsing now" in r.reasons for r in recs)
    assert not {"p1", "p2", "p3"} & {r.item_id for r in recs}


def test_a_filter_away_from_the_users_taste_gets_popular_items_of_those_categories(engine):
    for u in range(4):  # cooking fans make p46 and p47 the popular cooking items
        for item in ("p46", "p47"):
            view(engine, f"chef{u}", item, "purchase")
    for item in ("p1", "p2", "p3", "p4"):
        view(engine, "raf", item)  # raf only ever looked at scifi
    recs = engine.recommend("raf", 10, filters={"category": ["Cooking"], "in_stock": "yes"})
    assert len(recs) == 10 and set(cats(recs)) == {"cooking"}
    popular = {r.item_id for r in recs if "popular right now" in r.reasons}
    assert {"p46", "p47"} <= popular
    assert engine.store.client.zscore("redrec:popular:cat:cooking", "p46") > 0


def test_too_few_pooled_items_pass_so_the_prefiltered_search_fills_the_list(engine):
    """No popularity and a filter none of the user's lists reach: the pre-filtered KNN
    still returns k items that pass."""
    view(engine, "sam", "p1")
    recs = engine.recommend("sam", 8, filters={"category": "romance", "price": {"gte": 20}})
    items = {i["id"]: i for i in shop_items()}
    expected = [i for i in items.values() if i["category"] == "romance" and i["price"] >= 20]
    assert len(recs) == min(8, len(expected))
    assert all(items[r.item_id]["category"] == "romance" and items[r.item_id]["price"] >= 20
               for r in recs)
    assert any("close to what you are browsing now" in r.reasons for r in recs)


def test_item_vectors_stay_cached_until_the_catalogue_changes(engine, store, monkeypatch):
    loaded: list[str] = []
    fetch = engine.items.fetch

    def counting_fetch(ids, *args, **kwargs):
        loaded.extend(ids)
        return fetch(ids, *args, **kwargs)

    monkeypatch.setattr(engine.items, "fetch", counting_fetch)
    assert engine.warm_vectors() == len(engine.items.scan_ids())
    engine.cache_ttl_s = 0.0  # from here only the catalogue's generation keeps an entry
    loaded.clear()
    for item in ("p2", "p3"):
        view(engine, "uma", item)
    assert cats(engine.recommend("uma", 5)) == ["scifi"] * 5
    assert loaded == []  # every vector came from the cache
    # The same items re-ingested as cooking texts: the generation moves on, so the
    # next request reads their new vectors and the session turns to cooking.
    original = shop_items()[2:4]
    try:
        ingest(store, SHOP_MAPPING, [{**i, "description": f"a cooking item {i['id']}"}
                                     for i in original], encoders=ENC)
        assert cats(engine.recommend("uma", 5)).count("cooking") >= 4
        assert {"p2", "p3"} <= set(loaded)
    finally:
        ingest(store, SHOP_MAPPING, original, encoders=ENC)


def test_a_pool_ranked_in_process_matches_the_pool_ranked_by_redis(engine, monkeypatch):
    """With every pooled vector cached the check only filters and the session ranks the
    pool here: the same list, in the same order, as the check's own KNN."""
    for item in ("p1", "p2", "p41"):
        view(engine, "val", item)
    f = {"in_stock": "yes", "price": {"lte": 45}}
    checks: list = []
    among = engine.items.among
    monkeypatch.setattr(engine.items, "among",
                        lambda ids, *a, **kw: checks.append(kw.get("vector")) or among(
                            ids, *a, **kw))
    ranked_by_redis = engine.recommend("val", 12, filters=f)
    assert checks and all(v is not None for v in checks)  # the check ranked the pool
    engine.warm_vectors()
    checks.clear()
    ranked_here = engine.recommend("val", 12, filters=f)
    assert checks and all(v is None for v in checks)  # no KNN in the checks
    assert [r.item_id for r in ranked_here] == [r.item_id for r in ranked_by_redis]
    assert [r.reasons for r in ranked_here] == [r.reasons for r in ranked_by_redis]
    # the check returned ids only: the fields came from the process cache, the same
    assert [r.fields for r in ranked_here] == [r.fields for r in ranked_by_redis]
    assert all(r.fields.get("category") for r in ranked_here)


def test_the_same_recommendations_without_the_lean_path(engine, store, monkeypatch):
    """Replies read through redis-py (RESP3 maps, no lean pipeline) give the same lists,
    "people like you" and the filtered check included."""
    for item in ("p1", "p2", "p3"):
        view(engine, "wes", item)
        view(engine, "xia", item)
    view(engine, "xia", "p30", "click")
    engine.set_user("wes", gender="M", occupation="nurse", age=40)
    engine.set_user("xia", gender="M", occupation="nurse", age=42)
    kw = store.client.connection_pool.connection_kwargs
    monkeypatch.setenv("REDREC_LEAN", "0")
    plain = Store.connect(f"redis://:{kw['password']}@{kw['host']}:{kw['port']}/0")
    try:
        from redrec.store import lean

        assert lean.lean_of(plain.client) is None
        other = Engine(plain, Catalog(plain, SHOP_MAPPING, encoders=ENC), engine.config,
                       clock=engine.clock)
        for f in (None, {"in_stock": "yes"}, {"category": "romance"}):
            here = engine.recommend("wes", 25, filters=f)
            there = other.recommend("wes", 25, filters=f)
            assert [(r.item_id, r.reasons) for r in here] == [(r.item_id, r.reasons)
                                                              for r in there]
            assert [r.fields for r in here] == [r.fields for r in there]
        liked = {r.item_id for r in here if "people like you liked it" in r.reasons}
        assert "p30" in liked  # the romance title only Xia reached
    finally:
        plain.close()


def test_the_item_table_serves_the_same_lists_until_the_catalogue_changes(engine, store, shop):
    """A warm engine (vectors, fields and neighbour lists held by row) recommends exactly
    what a cold one reads from Redis; once the catalogue changes it stops using its table
    (the change shows at once) until it is warmed again."""
    for item in ("p1", "p2", "p41"):
        view(engine, "yan", item)
        view(engine, "zoe", item)
    view(engine, "zoe", "p30", "click")
    cold = Engine(store, shop, engine.config, clock=engine.clock)
    engine.warm_item_neighbours()
    assert engine.warm_vectors() == len(engine.items.scan_ids())
    table = engine._table
    assert table is not None and len(table) == len(shop_items())
    assert table.held_neighbours() == len(shop_items())
    sent: list[str] = []
    get = engine.items.prepare_cached_neighbours
    engine.items.prepare_cached_neighbours = lambda *a, **kw: sent.append(a[0]) or get(*a, **kw)
    try:
        for f in (None, {"in_stock": "yes"}, {"category": ["romance", "scifi"], "price": {"lte": 40}}):
            warm = engine.recommend("yan", 12, filters=f)
            assert sent == []  # every neighbour list came from the table
            plain = cold.recommend("yan", 12, filters=f)
            sent.clear()
            assert [(r.item_id, r.reasons, r.fields) for r in warm] == [
                (r.item_id, r.reasons, r.fields) for r in plain]
            assert any(why.startswith("similar to") for r in warm for why in r.reasons)
        twin = {**shop_items()[1], "id": "p998", "name": "scifi twin"}  # same text as p1
        ingest(store, SHOP_MAPPING, [twin], encoders=ENC)  # the generation moves on
        recs = {r.item_id: r for r in engine.recommend("yan", 30)}
        assert "p998" in recs and sent  # read from Redis again, not from the stale table
        engine.warm_vectors()
        assert "p998" in engine._table.row
    finally:
        del engine.items.prepare_cached_neighbours
        engine.items.delete(["p998"])
