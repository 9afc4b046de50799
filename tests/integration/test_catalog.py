"""Catalogues with the real encoders: the books sample in the reference layout, content
recommendations, semantic and range search, the embedding cache, ingestion formats and
storage types, bad input, live rebuild, and visual search on real photographs."""

from __future__ import annotations

import csv
import json
import shutil
import threading
from pathlib import Path

import numpy as np
import pytest

from redrec.apps.books import BOOKS_DIR, books_catalog, ingest_books
from redrec.catalog import Catalog, ingest
from redrec.exceptions import ConfigError, InvalidInput, NotFoundError, SchemaError

ROOT = Path(__file__).resolve().parents[2]
TRANSFORMERS = {"2", "3", "9", "14", "15", "36", "110"}  # every Transformers title in the sample

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def books(store):
    report = ingest_books(store)
    assert report.written == 1486 and report.without_vector["text"] == 1
    return books_catalog(store)


def test_reference_layout(books, store):
    doc = json.loads(store.client.execute_command("JSON.GET", "book:26415", "$"))[0]
    assert doc["title"] == "It" and doc["author"] == "Stephen King"
    assert len(doc["embedding"]) == 384 and doc["metrics"]["score"] == 4.24
    info = books.index.describe()
    attrs = {a["attribute"]: a for a in info["attributes"]}
    assert attrs["title"]["type"] == "TAG" and attrs["author"]["type"] == "TAG"
    assert attrs["year_published"]["type"] == "NUMERIC"
    vec = attrs["embedding"]
    assert (vec["type"], vec["algorithm"], vec["distance_metric"], vec["dim"]) == (
        "VECTOR", "HNSW", "COSINE", 384)
    # plain redis-py queries written for the reference layout work unchanged
    q = np.asarray(doc["embedding"], dtype=np.float32).tobytes()
    knn = store.client.execute_command(
        "FT.SEARCH", "books_idx", "*=>[KNN 5 @embedding $vec AS score]", "PARAMS", 2, "vec", q,
        "SORTBY", "score", "RETURN", 2, "title", "score", "DIALECT", 2)
    assert knn[b"results"][0][b"id"] == b"book:26415"
    rng = store.client.execute_command(
        "FT.SEARCH", "books_idx",
        "@embedding:[VECTOR_RANGE $radius $vec]=>{$YIELD_DISTANCE_AS: score}",
        "PARAMS", 4, "radius", 0.6, "vec", q, "SORTBY", "score", "DIALECT", 2)
    assert rng[b"total_results"] >= 2
    assert all(float(r[b"extra_attributes"][b"score"]) <= 0.6 for r in rng[b"results"])


def test_neighbours_of_a_transformers_book_are_transformers_books(books):
    top = books.similar("9", 5)
    assert "9" not in {m.id for m in top}
    assert len({m.id for m in top} & TRANSFORMERS) >= 4, [m.fields["title"] for m in top]


def test_neighbours_of_it_are_horror(books, store):
    # checked by hand: Wayward, Before the Devil Breaks You, Neverwhere, The Dead
    top = books.similar("26415", 10)
    genres = [books.get(m.id)["genres"] for m in top]
    assert all("horror" in g for g in genres[:4]) and sum("horror" in g for g in genres) >= 5


def test_similar_with_filters_and_paging(books):
    recent = books.similar("26415", 5, filters={"year_published": {"gte": 2000}})
    assert len(recent) == 5 and all(m.fields["year_published"] >= 2000 for m in recent)
    king = books.similar("26415", 5, filters={"author": "Stephen King"})
    assert king and all(m.fields["author"] == "Stephen King" for m in king)
    ten = [m.id for m in books.similar("26415", 10)]
    assert [m.id for m in books.similar("26415", 5, offset=5)] == ten[5:]


def test_semantic_search(books):
    assert {m.id for m in books.search("transformers", 5)} <= TRANSFORMERS
    assert {m.id for m in books.search("Autobots and Decepticons at war", 2)} <= TRANSFORMERS
    wizards = books.search("a young wizard learns magic at a school for wizards", 5,
                           filters={"genres": "fantasy"})
    assert len(wizards) == 5 and all("fantasy" in w.fields["genres"] for w in wizards)


def test_range_query(books):
    small = books.within(0.53, item_id="9", limit=100)
    large = books.within(0.6, item_id="9", limit=100)
    assert {m.id for m in small} == {"15", "3", "110", "2"}  # checked by hand
    assert {m.id for m in small} < {m.id for m in large} and "9" not in {m.id for m in large}
    assert all(m.distance <= 0.53 for m in small) and all(m.distance <= 0.6 for m in large)
    by_text = books.within(0.6, text="transformers autobots decepticons", limit=50)
    assert by_text and all(m.distance <= 0.6 for m in by_text)


def test_reingest_computes_nothing_and_a_changed_item_alone(store, books, tmp_path):
    again = ingest_books(store)
    assert again.computed["text"] == 0
    items = tmp_path / "items"
    items.mkdir()
    for name in ("26415.json", "9.json", "2.json"):
        shutil.copy(BOOKS_DIR / "items" / name, items / name)
    book = json.loads((items / "9.json").read_text())
    book["description"] += " A new edition with a foreword."
    (items / "9.json").write_text(json.dumps(book))
    report = ingest(store, BOOKS_DIR / "mapping.yaml", items)
    assert report.computed["text"] == 1 and report.cached["text"] == 2
    ingest_books(store)  # restore the sample for the other tests


# -- formats, storage types, bad input (a small catalogue, real text model) ------------------

ROWS = [
    {"sku": "a1", "name": "Trail running shoes", "about": "light shoes for running on trails",
     "category": "shoes", "price": 80, "store": "2.35,48.85"},
    {"sku": "a2", "name": "Road running shoes", "about": "cushioned shoes for road running",
     "category": "shoes", "price": 95, "store": "2.36,48.86"},
    {"sku": "b1", "name": "Cast iron pan", "about": "a heavy pan for searing steak",
     "category": "kitchen", "price": 40, "store": "4.83,45.76"},
    {"sku": "b2", "name": "Chef knife", "about": "a sharp knife for the kitchen",
     "category": "kitchen", "price": 60, "store": "4.84,45.75"},
]


def _mapping(name: str, storage: str) -> dict:
    return {"index": name, "storage": storage, "id": "sku",
            "text": {"field": "vec", "source": ["name", "about"]},
            "fields": {"sku": "tag", "category": "tag", "price": "numeric", "store": "geo",
                       "name": "text"}}


def _write(tmp: Path, fmt: str) -> Path:
    if fmt == "dir":
        d = tmp / "dir"
        d.mkdir()
        for r in ROWS:
            (d / f"{r['sku']}.json").write_text(json.dumps(r))
        return d
    if fmt == "json":
        (tmp / "c.json").write_text(json.dumps(ROWS))
        return tmp / "c.json"
    if fmt == "jsonl":
        (tmp / "c.jsonl").write_text("\n".join(json.dumps(r) for r in ROWS))
        return tmp / "c.jsonl"
    with open(tmp / "c.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(ROWS[0]))
        w.writeheader()
        w.writerows(ROWS)
    return tmp / "c.csv"


@pytest.mark.parametrize("storage", ["hash", "json"])
@pytest.mark.parametrize("fmt", ["dir", "json", "jsonl", "csv"])
def test_round_trip_each_format_and_storage(store, tmp_path, unique, fmt, storage):
    src = _write(tmp_path, fmt)
    report = ingest(store, _mapping(unique, storage), src)
    assert report.written == 4
    cat = Catalog(store, _mapping(unique, storage))
    doc = cat.get("b1")
    assert float(doc["price"]) == 40.0 and doc["category"] == "kitchen"
    assert [m.id for m in cat.similar("a1", 1)] == ["a2"]
    assert {m.id for m in cat.search("something to cook with", 2)} == {"b1", "b2"}
    near = cat.search("shoes", 4, filters={"store": {"lon": 2.35, "lat": 48.85, "radius": 5}})
    assert {m.id for m in near} == {"a1", "a2"}
    assert {m.id for m in cat.search("shoes", 4, filters={"price": {"lt": 50}})} == {"b1"}
    cat.delete(["b2"])
    assert ingest(store, _mapping(unique, storage), src, prune=True).deleted == 0
    ingest(store, _mapping(unique, storage), [r for r in ROWS if r["sku"] != "a1"], prune=True)
    with pytest.raises(NotFoundError):
        cat.get("a1")


def test_bad_catalogues(store, tmp_path, unique):
    m = _mapping(unique, "json")
    with pytest.raises(InvalidInput, match="no id field 'sku'"):
        ingest(store, m, [{"name": "x", "about": "y", "category": "c", "price": 1}])
    with pytest.raises(ConfigError, match="no record has a field 'colour'"):
        ingest(store, {**m, "fields": {**m["fields"], "colour": "tag"}}, ROWS)
    with pytest.raises(InvalidInput, match="not a number"):
        ingest(store, m, [{**ROWS[0], "price": "cheap"}])
    with pytest.raises(InvalidInput, match="already used"):
        ingest(store, m, [ROWS[0], ROWS[0]])
    with pytest.raises(ConfigError, match="invalid mapping"):
        ingest(store, {**m, "storage": "xml"}, ROWS)
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"sku": "z"}\n{broken\n')
    with pytest.raises(InvalidInput, match=r"bad.jsonl:2"):
        ingest(store, m, bad)
    assert unique not in store.list_indexes() + [i.split("__")[0] for i in store.list_indexes()]


def test_dimension_mismatch_with_an_existing_index(store, unique):
    from tests.support.shop import KeywordEncoder

    m = _mapping(unique, "hash")
    ingest(store, m, ROWS, encoders={"text": KeywordEncoder()})  # 16-d vectors
    with pytest.raises(SchemaError, match="16-d vectors .* 384-d"):
        ingest(store, m, ROWS)  # the real 384-d model


def test_rebuild_while_readers_get_answers(store, tmp_path, unique):
    m = _mapping(unique, "json")
    ingest(store, m, ROWS)
    cat = Catalog(store, m)
    errors: list[Exception] = []
    answers = []
    stop = threading.Event()

    def reader():
        reader_cat = Catalog(store, m)
        while not stop.is_set():
            try:
                answers.append(len(reader_cat.similar("a1", 3)))
            except Exception as exc:  # noqa: BLE001 - any failure is the finding
                errors.append(exc)

    t = threading.Thread(target=reader)
    t.start()
    changed = Catalog(store, {**m, "vector": {"algorithm": "hnsw", "m": 8}})
    for _ in range(3):
        changed.rebuild()
    stop.set()
    t.join()
    assert not errors and answers and set(answers) == {3}
    assert cat.index.count() == 4


# -- images: visual search on real photographs -----------------------------------------


@pytest.fixture(scope="module")
def products(store, tmp_path_factory):
    import importlib.util
    import sys

    spec = importlib.util.spec_from_file_location("make_catalog",
                                                  ROOT / "examples/products/make_catalog.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["make_catalog"] = module
    spec.loader.exec_module(module)
    out = tmp_path_factory.mktemp("products")
    csv_path = module.build(out)
    mapping = ROOT / "examples/products/mapping.yaml"
    report = ingest(store, mapping, csv_path)
    assert report.written == 15
    return Catalog(store, mapping), out


def test_product_reference_layout(products, store):
    row = store.client.hgetall("product_vector:p1")
    assert row[b"product_id"] == b"p1"
    assert len(row[b"text_vector"]) == 384 * 4 and len(row[b"img_vector"]) == 1280 * 4
    fields = {a["attribute"] for a in products[0].index.describe()["attributes"]}
    assert {"text_vector", "img_vector"} <= fields


def test_visual_search_finds_the_product_in_a_new_photo(products, tmp_path):
    from PIL import Image

    cat, out = products
    photo = Image.open(out / "images" / "chelsea.png").convert("RGB")
    w, h = photo.size
    crop = photo.crop((w // 10, h // 10, w - w // 10, h - h // 8)).transpose(
        Image.Transpose.FLIP_LEFT_RIGHT).resize((w // 2, h // 2))
    crop.save(tmp_path / "snapshot.jpg", quality=80)
    assert cat.search_image(tmp_path / "snapshot.jpg", 3)[0].id == "p1"
    rocket = Image.open(out / "images" / "rocket.jpg").convert("L").rotate(4)
    rocket.save(tmp_path / "rocket.png")
    assert cat.search_image(str(tmp_path / "rocket.png"), 1)[0].id == "p4"


def test_similar_by_image_text_or_both(products):
    cat, _ = products
    by_text = [m.id for m in cat.similar("p3", 3, by="text")]
    by_both = cat.similar("p3", 3, by="both")
    assert "p3" not in by_text and "p3" not in {m.id for m in by_both}
    assert all(len(m.reasons) >= 1 for m in by_both)
    textures = {m.id for m in cat.similar("p10", 3, by="image")}
    assert textures & {"p9", "p11"}  # grass is closest to the other textures


def test_corrupt_and_missing_images(store, tmp_path, unique):
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    rows = [{"product_id": "x1", "name": "n", "description": "d", "category": "c",
             "price": 1, "image": "images/broken.png"}]
    with open(tmp_path / "p.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    m = {"index": unique, "storage": "hash", "id": "product_id",
         "image": {"field": "img", "source": "image"}, "fields": {"product_id": "tag"}}
    with pytest.raises(InvalidInput, match="broken.png"):
        ingest(store, m, tmp_path / "p.csv")
    rows[0]["image"] = "images/missing.png"
    with pytest.raises(NotFoundError, match="missing.png"):
        ingest(store, m, rows)
