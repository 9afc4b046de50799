"""A catalogue ingested and queried with the static text backend (``backend: static`` in
its mapping), end to end against the real embedded Redis. The static model is the one the
session's ``static_model`` fixture built (a reduced vocabulary: common words below)."""

from __future__ import annotations

import numpy as np
import pytest

from redrec.catalog import Catalog, ingest
from redrec.catalog.registry import find_catalog
from redrec.embed.cache import content_key
from redrec.store.embcache import RedisEmbeddingCache
from tests.conftest import STATIC_VOCAB

ITEMS = [
    {"id": "w1", "kind": "war", "about": "Soldiers fought a long war against the enemy army."},
    {"id": "w2", "kind": "war", "about": "The army won the battle after years of fighting."},
    {"id": "w3", "kind": "war", "about": "A general leads his troops into the last battle of the war."},
    {"id": "c1", "kind": "food", "about": "She baked bread and a chocolate cake in the kitchen."},
    {"id": "c2", "kind": "food", "about": "A simple recipe for dinner: cook the chicken with rice."},
    {"id": "c3", "kind": "food", "about": "Cooking food for the family: soup, bread and fresh vegetables."},
    {"id": "s1", "kind": "sea", "about": "The ship sailed across the ocean to a distant island."},
    {"id": "s2", "kind": "sea", "about": "Sailors on a boat at sea, far from any land."},
]
WAR, FOOD, SEA = {"w1", "w2", "w3"}, {"c1", "c2", "c3"}, {"s1", "s2"}


@pytest.fixture
def mapping(unique: str) -> dict:
    return {
        "index": unique, "prefix": f"{unique}:", "storage": "json", "id": "id",
        "text": {"field": "vec", "source": ["about"], "backend": "static",
                 "static": {"vocab_size": STATIC_VOCAB}},
        "vector": {"algorithm": "flat", "metric": "cosine"},
        "fields": {"kind": "tag"},
    }


def test_ingest_and_query_with_the_static_backend(store, mapping, static_model, monkeypatch):
    # The mapping names no folder: the encoder is found under REDREC_HOME, where the
    # session fixture built it (so nothing is rebuilt here).
    monkeypatch.setenv("REDREC_HOME", str(static_model["home"]))
    report = ingest(store, mapping, ITEMS)
    assert report.written == 8 and report.computed["text"] == 8

    cat = Catalog(store, mapping)
    enc = cat.encoder("text")
    assert enc.name == static_model["encoder"].name == f"all-MiniLM-L6-v2+static-v{STATIC_VOCAB}"
    assert cat.index.spec.vectors["vec"].dims == enc.dim == 384
    stored = cat.index.get_vector("w1", "vec")
    assert stored is not None and np.allclose(stored, enc.encode([ITEMS[0]["about"]])[0], atol=1e-6)

    assert {m.id for m in cat.similar("w1", 2)} <= WAR
    assert {m.id for m in cat.similar("c2", 2)} <= FOOD
    assert {m.id for m in cat.search("bread cake and cooking recipes", 3)} == FOOD
    assert {m.id for m in cat.search("sailing a ship at sea", 2)} == SEA
    assert {m.id for m in cat.search("war", 3, filters={"kind": "war"})} == WAR

    # Static vectors are cached under the static encoder's name only.
    cache = RedisEmbeddingCache(store.client)
    keys = [content_key(item["about"]) for item in ITEMS]
    assert all(v is not None for v in cache.get_many(enc.name, keys))
    assert cache.get_many("all-MiniLM-L6-v2", keys) == [None] * len(keys)

    again = ingest(store, mapping, ITEMS)
    assert again.computed["text"] == 0 and again.cached["text"] == 8
    # The registered mapping keeps the backend and its options: other processes query alike.
    assert find_catalog(store, mapping["index"]).encoder("text").name == enc.name
