"""Bad input against a real Redis: clear redrec errors, nothing half-written."""

from __future__ import annotations

import numpy as np
import pytest

import redrec
from redrec.exceptions import (
    InvalidInput,
    NotFoundError,
    SchemaError,
    StoreUnavailable,
)


def _definition(name: str, storage: str = "hash") -> dict:
    path = (lambda f: {"path": f"$.{f}"}) if storage == "json" else (lambda f: {})
    return {
        "index": {"name": name, "prefix": name, "storage_type": storage},
        "fields": [
            {"name": "genre", "type": "tag", **path("genre")},
            {"name": "price", "type": "numeric", **path("price")},
            {"name": "vec", "type": "vector", **path("vec"),
             "attrs": {"dims": 4, "algorithm": "hnsw", "distance_metric": "cosine"}},
        ],
    }


@pytest.fixture(params=["hash", "json"])
def index(request, store, unique):
    idx = store.create_index(_definition(unique, request.param))
    idx.upsert([{"id": f"d{i}", "genre": "a", "price": i, "vec": np.eye(4)[i % 4] + 0.1}
                for i in range(8)])
    yield idx
    idx.drop(delete_documents=True)


@pytest.mark.parametrize("vector,match", [
    ([1, 2, 3], "dimension 3, the index expects 4"),
    ([1, 2, float("nan"), 4], "NaN"),
    ([1, 2, float("inf"), 4], "infinite"),
])
def test_bad_query_vectors(index, vector, match):
    with pytest.raises(InvalidInput, match=match):
        index.knn(vector, 3)
    with pytest.raises(InvalidInput, match=match):
        index.range(vector, 0.5)


def test_a_failed_batch_writes_nothing(index):
    before = index.count()
    docs = [{"id": f"new{i}", "genre": "b", "price": 1, "vec": [1, 0, 0, 0]} for i in range(50)]
    docs[37]["vec"] = [1, 0, 0]  # one bad vector in the middle
    with pytest.raises(InvalidInput, match="'new37'"):
        index.upsert(docs, batch_size=10)
    assert index.count() == before
    assert index.get("new0") is None


@pytest.mark.parametrize("doc,match", [
    ({"genre": "a", "price": 1, "vec": [1, 0, 0, 0]}, "no id field"),
    ({"id": "x", "genre": "a", "price": "lots", "vec": [1, 0, 0, 0]}, "not a number"),
    ({"id": "x", "genre": "a", "price": 1, "vec": [1, 0, float("nan"), 0]}, "NaN"),
])
def test_bad_documents_are_rejected_whole(index, doc, match):
    before = index.count()
    good = {"id": "good", "genre": "a", "price": 1, "vec": [0, 1, 0, 0]}
    with pytest.raises(InvalidInput, match=match):
        index.upsert([good, doc])
    assert index.count() == before and index.get("good") is None


def test_duplicate_ids_in_one_upsert(index):
    with pytest.raises(InvalidInput, match="twice"):
        index.upsert([{"id": "x", "vec": [1, 0, 0, 0]}, {"id": "x", "vec": [0, 1, 0, 0]}])


def test_upsert_replaces_the_whole_document(index):
    index.upsert([{"id": "r", "genre": "a", "price": 5, "vec": [1, 0, 0, 0]}])
    index.upsert([{"id": "r", "genre": "z", "vec": [0, 1, 0, 0]}])
    doc = index.get("r")
    assert doc["genre"] == "z" and "price" not in doc
    assert index.knn([0, 1, 0, 0], 1, filters={"genre": "z"})[0].id == "r"


def test_delete(index):
    assert index.delete(["d0", "d1", "missing"]) == 2
    assert index.get("d0") is None
    assert all(h.id not in {"d0", "d1"} for h in index.knn([1, 0, 0, 0], 6))


def test_unknown_index(store):
    with pytest.raises(NotFoundError, match="no index named 'nope_missing'"):
        store.index("nope_missing")
    with pytest.raises(NotFoundError):
        store.drop_index("nope_missing")


def test_unknown_field_in_filter_and_vector_field(index):
    with pytest.raises(InvalidInput, match="no field 'colour'"):
        index.knn([1, 0, 0, 0], 3, filters={"colour": "red"})
    with pytest.raises(NotFoundError, match="no vector field 'image'"):
        index.knn([1, 0, 0, 0], 3, field="image")


def test_malformed_filter(index):
    with pytest.raises(InvalidInput):
        index.knn([1, 0, 0, 0], 3, filters={"price": {"between": 3}})
    with pytest.raises(InvalidInput):
        index.knn([1, 0, 0, 0], 3, filters="@genre:{a}")  # raw strings are refused


def test_injection_attempt_is_a_literal(index):
    hits = index.knn([1, 0, 0, 0], 5, filters={"genre": "a} | @price:[-inf +inf"})
    assert hits == []


@pytest.mark.parametrize("kwargs", [
    {"k": 0}, {"k": -1}, {"k": 2.5}, {"offset": -1}, {"k": 20000}, {"ef_runtime": 0},
])
def test_bad_query_arguments(index, kwargs):
    kwargs = dict(kwargs)
    k = kwargs.pop("k", 3)
    with pytest.raises(InvalidInput):
        index.knn([1, 0, 0, 0], k, **kwargs)


def test_bad_radius(index):
    with pytest.raises(InvalidInput, match="radius"):
        index.range([1, 0, 0, 0], -1.0)


def test_creating_an_existing_index(store, index):
    with pytest.raises(SchemaError, match="already exists"):
        store.create_index(index.spec)


def test_describe_and_reopen_by_name(store, index):
    info = index.describe()
    assert info["num_docs"] == 8 and info["storage"] == index.spec.storage
    again = store.index(index.name)
    store.forget(index.name)
    fresh = store.index(index.name)
    assert fresh.spec.vector_field().dims == 4 and fresh.spec.storage == index.spec.storage
    # d0 and d4 hold the same vector, nearest to the query; the rest tie, so compare 2
    top = {h.id for h in again.knn([1, 0, 0, 0], 2)}
    assert top == {h.id for h in fresh.knn([1, 0, 0, 0], 2)} == {"d0", "d4"}


def test_unreachable_redis():
    with pytest.raises(StoreUnavailable, match="cannot reach Redis"):
        redrec.Store.connect("redis://127.0.0.1:1/0", connect_timeout=1)


def test_wrong_password(store):
    kw = store.client.get_connection_kwargs()
    url = f"redis://:wrong-password@{kw['host']}:{kw['port']}/0"
    with pytest.raises(StoreUnavailable, match="refused the credentials"):
        redrec.Store.connect(url, connect_timeout=2)


def test_bad_url():
    with pytest.raises(redrec.ConfigError, match="must start with"):
        redrec.Store.connect("http://localhost:6379")
