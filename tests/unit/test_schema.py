import pytest

from redrec.exceptions import NotFoundError, SchemaError
from redrec.store.schema import DEFAULT_EF_RUNTIME, IndexSpec

BASE = {
    "index": {"name": "books_idx", "prefix": "book", "storage_type": "json"},
    "fields": [
        {"name": "title", "type": "tag", "path": "$.title"},
        {"name": "year_published", "type": "numeric", "path": "$.year_published"},
        {"name": "embedding", "type": "vector", "path": "$.embedding",
         "attrs": {"dims": 384, "algorithm": "HNSW", "distance_metric": "COSINE"}},
    ],
}


def test_dict_definition_is_normalised():
    spec = IndexSpec.from_dict(BASE)
    assert spec.name == "books_idx"
    assert spec.prefix == "book:"
    assert spec.storage == "json"
    vf = spec.vector_field()
    assert (vf.dims, vf.metric, vf.algorithm, vf.datatype, vf.multi) == (
        384, "cosine", "hnsw", "float32", False)
    hnsw = spec.to_dict()["fields"][2]["attrs"]
    assert hnsw["ef_runtime"] == DEFAULT_EF_RUNTIME


def test_yaml_round_trip(tmp_path):
    import yaml

    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(BASE))
    assert IndexSpec.from_yaml(path).to_dict() == IndexSpec.from_dict(BASE).to_dict()


def test_hnsw_parameters_are_kept():
    d = {"index": {"name": "x"}, "fields": [{"name": "v", "type": "vector", "attrs": {
        "dims": 8, "algorithm": "hnsw", "distance_metric": "ip", "datatype": "float64",
        "initial_cap": 1000, "m": 32, "ef_construction": 100, "ef_runtime": 20}}]}
    attrs = IndexSpec.from_dict(d).to_dict()["fields"][0]["attrs"]
    assert (attrs["m"], attrs["ef_construction"], attrs["ef_runtime"], attrs["initial_cap"]) == (
        32, 100, 20, 1000)
    assert attrs["datatype"] == "float64" and attrs["distance_metric"] == "ip"


def test_multi_vector_json_field():
    d = {"index": {"name": "f", "storage_type": "json"}, "fields": [
        {"name": "embeddings", "type": "vector", "path": "$.embeddings[*]",
         "attrs": {"dims": 128, "algorithm": "flat", "distance_metric": "cosine"}}]}
    assert IndexSpec.from_dict(d).vector_field("embeddings").multi


def test_several_vector_fields_need_a_name():
    d = {"index": {"name": "p"}, "fields": [
        {"name": "text_vector", "type": "vector", "attrs": {"dims": 4, "algorithm": "flat"}},
        {"name": "img_vector", "type": "vector", "attrs": {"dims": 8, "algorithm": "flat"}}]}
    spec = IndexSpec.from_dict(d)
    assert spec.vector_field("img_vector").dims == 8
    with pytest.raises(SchemaError, match="name one"):
        spec.vector_field()
    with pytest.raises(NotFoundError, match="no vector field 'nope'"):
        spec.vector_field("nope")


@pytest.mark.parametrize("bad,match", [
    ({}, "'index' and a 'fields'"),
    ({"index": {}, "fields": [{"name": "a", "type": "tag"}]}, "needs a name"),
    ({"index": {"name": "x"}, "fields": []}, "at least one field"),
    ({"index": {"name": "x"}, "fields": [{"name": "a", "type": "blob"}]}, "unknown type"),
    ({"index": {"name": "x"}, "fields": [{"name": "a"}]}, "name and a type"),
    ({"index": {"name": "x"}, "fields": [{"name": "v", "type": "vector",
                                          "attrs": {"dims": 4}}]}, "invalid index definition"),
    ({"index": {"name": "x"}, "fields": [{"name": "v", "type": "vector", "attrs": {
        "dims": 4, "algorithm": "flat", "distance_metric": "manhattan"}}]}, "invalid"),
    ({"index": {"name": "x", "storage_type": "hash"}, "fields": [{"name": "v", "type": "vector",
     "path": "$.v[*]", "attrs": {"dims": 4, "algorithm": "flat"}}]}, "need storage_type json"),
])
def test_bad_definitions_raise_schema_error(bad, match):
    with pytest.raises(SchemaError, match=match):
        IndexSpec.from_dict(bad)


def test_missing_yaml_file(tmp_path):
    with pytest.raises(NotFoundError):
        IndexSpec.from_yaml(tmp_path / "none.yaml")


def test_broken_yaml_file(tmp_path):
    p = tmp_path / "b.yaml"
    p.write_text("index: [unclosed")
    with pytest.raises(SchemaError, match="not valid YAML"):
        IndexSpec.from_yaml(p)
