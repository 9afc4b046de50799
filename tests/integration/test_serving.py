"""Learned models served from Redis: publish, recommend through the engine, hot reload."""

from __future__ import annotations

import pytest

from redrec.catalog import Catalog, ingest
from redrec.engine import Engine, EngineConfig
from redrec.models.serving import LiveModel, publish, read_artifact
from redrec.models.tower import UserTower
from tests.support.shop import SHOP_MAPPING, KeywordEncoder, shop_items

ENC = {"text": KeywordEncoder()}
T = 1_780_000_000.0
TOWER_ONLY = {"tower": 1.0, "session": 0.0, "recent": 0.0, "people": 0.0, "popular": 0.0,
              "catalog": 0.0}


def _tower(continuation: str) -> UserTower:
    # every user goes p0 -> p1 -> <continuation>, or p10 -> p11 -> p12
    seqs = {f"s{u}": ["p0", "p1", continuation] if u % 2 else ["p10", "p11", "p12"]
            for u in range(60)}
    return UserTower(epochs=30, dim=16, max_len=5, seed=1).fit(seqs)


@pytest.fixture
def shop(store, unique):
    mapping = {**SHOP_MAPPING, "index": f"{unique}_shop", "prefix": f"{unique}shop:"}
    ingest(store, mapping, shop_items(), encoders=ENC)
    return Catalog(store, mapping, encoders=ENC)


def _engine(store, shop):
    eng = Engine(store, Catalog(store, shop.mapping, encoders=ENC),
                 EngineConfig(category_field="category", list_weights=TOWER_ONLY,
                              cold_start_events=0), clock=lambda: T + 100)
    eng.tower.check_every_s = 0.0
    return eng


def test_published_tower_continues_the_sequence(store, shop, unique):
    publish(store, shop, _tower("p2"))
    engine = _engine(store, shop)
    engine.track(user_id=f"{unique}a", item_id="p0", type="view", timestamp=T)
    engine.track(user_id=f"{unique}a", item_id="p1", type="view", timestamp=T + 1)
    top = engine.recommend(f"{unique}a", 3)
    assert top[0].item_id == "p2"
    assert "picked for you from your recent activity" in top[0].reasons
    # the vector follows the sequence: after p10, p11 the next is p12
    engine.track(user_id=f"{unique}b", item_id="p10", type="view", timestamp=T)
    engine.track(user_id=f"{unique}b", item_id="p11", type="view", timestamp=T + 1)
    assert engine.recommend(f"{unique}b", 1)[0].item_id == "p12"


def test_new_version_is_served_without_restart(store, shop, unique):
    first = publish(store, shop, _tower("p2"))
    engine = _engine(store, shop)
    user = f"{unique}c"
    engine.track(user_id=user, item_id="p0", type="view", timestamp=T)
    engine.track(user_id=user, item_id="p1", type="view", timestamp=T + 1)
    assert engine.recommend(user, 1)[0].item_id == "p2"
    second = publish(store, shop, _tower("p5"))
    assert second["version"] == first["version"] + 1 and second["slot"] != first["slot"]
    assert engine.recommend(user, 1)[0].item_id == "p5"  # same engine object
    assert engine.tower.version == second["version"]


def test_artifact_round_trip_through_redis(store, shop):
    model = _tower("p2")
    pointer = publish(store, shop, model)
    again = read_artifact(store, shop.mapping.index, pointer["version"])
    assert again.item_ids == model.item_ids
    assert (again.item_vectors() == model.item_vectors()).all()
    assert (again.user_vector(["p0", "p1"]) == model.user_vector(["p0", "p1"])).all()


def test_no_model_means_no_tower_list(store, shop):
    live = LiveModel(store, shop, check_every_s=0)
    assert live.prepare(["p1"], 5) is None


def test_reingest_keeps_the_learned_vectors(store, shop):
    publish(store, shop, _tower("p2"))
    from redrec.catalog.registry import find_catalog

    cat = find_catalog(store, shop.mapping.index)
    ingest(store, cat.mapping, shop_items(), encoders=ENC)
    live = LiveModel(store, Catalog(store, cat.mapping, encoders=ENC), check_every_s=0)
    hits = live.prepare(["p1", "p0"], 1).run()
    assert hits[0].id == "p2"
