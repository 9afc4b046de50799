import numpy as np
import pytest

from redrec.exceptions import InvalidInput
from redrec.store.documents import check_id, to_hash, to_json
from redrec.store.schema import IndexSpec
from redrec.store.vectors import as_vector, from_bytes, to_bytes


def test_vector_round_trip_float32():
    v = as_vector([1, 2, 3], 3)
    assert v.dtype == np.float32
    assert np.array_equal(from_bytes(to_bytes(v)), v)


def test_float64_vectors():
    v = as_vector([1.5, 2.5], 2, "float64")
    assert len(to_bytes(v)) == 16


@pytest.mark.parametrize("value,match", [
    ([1, 2], "dimension 2, the index expects 3"),
    ([1, float("nan"), 3], "NaN"),
    ([1, float("inf"), 3], "NaN or infinite"),
    ([[1, 2, 3]], "one-dimensional"),
    (["a", "b", "c"], "array of numbers"),
    (b"\x00" * 12, "raw bytes"),
])
def test_bad_vectors(value, match):
    with pytest.raises(InvalidInput, match=match):
        as_vector(value, 3)


@pytest.mark.parametrize("bad", ["", "a b", None, 1.5, True, "x" * 600])
def test_bad_ids(bad):
    with pytest.raises(InvalidInput):
        check_id(bad)


SPEC = IndexSpec.from_dict({"index": {"name": "d", "storage_type": "hash"}, "fields": [
    {"name": "genre", "type": "tag"}, {"name": "price", "type": "numeric"},
    {"name": "loc", "type": "geo"},
    {"name": "v", "type": "vector", "attrs": {"dims": 2, "algorithm": "flat"}}]})


def test_hash_document_conversion():
    out = to_hash(SPEC, {"id": "1", "genre": ["a", "b"], "price": 3, "loc": [2.0, 48.0],
                         "v": [1, 0], "extra": {"k": 1}, "none": None}, "1")
    assert out["genre"] == "a,b"
    assert out["price"] == "3"
    assert out["loc"] == "2.0,48.0"
    assert out["v"] == np.array([1, 0], np.float32).tobytes()
    assert out["extra"] == '{"k": 1}'
    assert "none" not in out


@pytest.mark.parametrize("doc,match", [
    ({"price": "cheap"}, "not a number"),
    ({"loc": "nowhere"}, "location"),
    ({"loc": [500, 0]}, "out of range"),
    ({"v": [1, 2, 3]}, "dimension"),
    ({"genre": [{"a": 1}]}, "tag values"),
])
def test_bad_documents(doc, match):
    with pytest.raises(InvalidInput, match=match):
        to_hash(SPEC, doc, "x")


def test_json_document_with_multi_vectors():
    spec = IndexSpec.from_dict({"index": {"name": "j", "storage_type": "json"}, "fields": [
        {"name": "embeddings", "type": "vector", "path": "$.embeddings[*]",
         "attrs": {"dims": 2, "algorithm": "flat"}}]})
    text = to_json(spec, {"embeddings": np.ones((3, 2))}, "p")
    assert text == '{"embeddings": [[1.0, 1.0], [1.0, 1.0], [1.0, 1.0]]}'
    with pytest.raises(InvalidInput, match=r"embeddings'\[1\]"):
        to_json(spec, {"embeddings": [[1, 1], [1, float("nan")]]}, "p")


@pytest.mark.parametrize("bad", ["a b", "a\tb", "x\x1fy", "nbsp\u00a0", "ideo\u3000", "\n", ""])
def test_ids_with_any_kind_of_space_are_refused(bad):
    # \x1f joins ids in stored lists: an id holding it would split in two
    with pytest.raises(InvalidInput, match="bad document id"):
        check_id(bad)
    assert check_id("book:26415") == "book:26415" and check_id(7) == "7"
