"""Every query kind on HASH and JSON, each metric, FLAT and HNSW, against a real Redis.

Expected neighbours are computed by brute force in numpy, so the assertions check the
engine's answers rather than restating them.
"""

from __future__ import annotations

import numpy as np
import pytest

N, DIM = 300, 16
GENRES = ["jazz", "rock", "folk"]


def _definition(name: str, storage: str, algorithm: str, metric: str) -> dict:
    path = (lambda f: {"path": f"$.{f}"}) if storage == "json" else (lambda f: {})
    attrs = {"dims": DIM, "algorithm": algorithm, "distance_metric": metric}
    if algorithm == "hnsw":
        attrs.update({"m": 16, "ef_construction": 200, "ef_runtime": 200})
    return {
        "index": {"name": name, "prefix": name, "storage_type": storage},
        "fields": [
            {"name": "genre", "type": "tag", **path("genre")},
            {"name": "price", "type": "numeric", **path("price")},
            {"name": "title", "type": "text", **path("title")},
            {"name": "loc", "type": "geo", **path("loc")},
            {"name": "vec", "type": "vector", **path("vec"), "attrs": attrs},
        ],
    }


def _docs(seed: int = 7) -> tuple[list[dict], np.ndarray]:
    rng = np.random.default_rng(seed)
    vecs = rng.normal(size=(N, DIM)).astype(np.float32)
    # unit vectors, so inner-product distances (1 - ip) stay non-negative as with embeddings
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    docs = [
        {
            "id": f"i{i}",
            "genre": GENRES[i % 3],
            "price": float(i),
            "title": f"item number {i} {'special offer' if i % 10 == 0 else 'plain'}",
            # a line of shops going east from Paris, about 0.74 km apart
            "loc": f"{2.35 + 0.01 * i:.4f},48.85",
            "vec": vecs[i],
        }
        for i in range(N)
    ]
    return docs, vecs


def _distances(vecs: np.ndarray, q: np.ndarray, metric: str) -> np.ndarray:
    if metric == "cosine":
        vn = vecs / np.linalg.norm(vecs, axis=1, keepdims=True)
        return 1 - vn @ (q / np.linalg.norm(q))
    if metric == "ip":
        return 1 - vecs @ q
    return ((vecs - q) ** 2).sum(axis=1)  # RediSearch L2 is the squared distance


CASES = [(s, a, m) for s in ("hash", "json") for a in ("flat", "hnsw") for m in ("cosine", "l2", "ip")]


@pytest.fixture(scope="module", params=CASES, ids=lambda c: "-".join(c))
def loaded(request, store):
    storage, algorithm, metric = request.param
    name = f"q_{storage}_{algorithm}_{metric}"
    index = store.create_index(_definition(name, storage, algorithm, metric), overwrite=True)
    docs, vecs = _docs()
    assert index.upsert(docs) == N
    yield index, vecs, metric, algorithm
    index.drop(delete_documents=True)


def _expected(vecs, q, metric, mask=None, k=10):
    d = _distances(vecs, q, metric)
    if mask is not None:
        d = np.where(mask, d, np.inf)
    order = np.argsort(d, kind="stable")
    return [f"i{i}" for i in order[:k] if np.isfinite(d[i])], d


def _overlap(got, want):
    return len(set(got) & set(want)) / max(len(want), 1)


def test_knn_matches_brute_force(loaded):
    index, vecs, metric, algorithm = loaded
    q = vecs[5] * 0.9 + vecs[6] * 0.1
    hits = index.knn(q, 10)
    want, d = _expected(vecs, q, metric)
    got = [h.id for h in hits]
    assert len(hits) == 10
    if algorithm == "flat":
        assert got == want
    else:
        assert _overlap(got, want) >= 0.9
    assert [h.distance for h in hits] == sorted(h.distance for h in hits)
    np.testing.assert_allclose(hits[0].distance, d[int(got[0][1:])], rtol=1e-3, atol=1e-4)
    assert hits[0].fields["genre"] in GENRES and isinstance(hits[0].fields["price"], float)


def test_knn_with_tag_and_numeric_prefilter(loaded):
    index, vecs, metric, _ = loaded
    q = vecs[42]
    hits = index.knn(q, 5, filters={"genre": "rock", "price": {"gte": 100, "lt": 250}})
    mask = np.array([(i % 3 == 1) and 100 <= i < 250 for i in range(N)])
    want, _ = _expected(vecs, q, metric, mask, 5)
    assert len(hits) == 5
    assert all(h.fields["genre"] == "rock" and 100 <= h.fields["price"] < 250 for h in hits)
    assert _overlap([h.id for h in hits], want) >= 0.8


def test_knn_with_text_filter_and_or_not(loaded):
    index, vecs, metric, _ = loaded
    q = vecs[0]
    hits = index.knn(q, 50, filters={"title": "special offer"})
    assert {h.id for h in hits} == {f"i{i}" for i in range(0, N, 10)}
    hits = index.knn(q, 300, filters={"or": [{"genre": "jazz"}, {"genre": "folk"}],
                                       "not": {"price": {"lt": 150}}})
    assert {h.id for h in hits} == {f"i{i}" for i in range(150, N) if i % 3 != 1}


def test_knn_with_geo_radius(loaded):
    index, vecs, *_ = loaded
    hits = index.knn(vecs[3], 50, filters={"loc": {"lon": 2.35, "lat": 48.85, "radius": 4}})
    # 0.01 degrees of longitude at 48.85N is ~0.73 km: shops 0..5 lie within 4 km
    assert {h.id for h in hits} == {f"i{i}" for i in range(6)}


def test_paging_is_consistent_with_one_big_page(loaded):
    index, vecs, *_ = loaded
    q = vecs[17]
    everything = [h.id for h in index.knn(q, 30)]
    pages = [h.id for off in (0, 10, 20) for h in index.knn(q, 10, offset=off)]
    assert pages == everything


def test_exclusions_never_shorten_the_list(loaded):
    index, vecs, *_ = loaded
    q = vecs[9]
    top = [h.id for h in index.knn(q, 10)]
    hits = index.knn(q, 10, exclude=top[:5] + ["i9"])
    got = [h.id for h in hits]
    assert len(got) == 10
    assert not set(got) & set(top[:5] + ["i9"])
    assert got[:5] == [t for t in top if t not in set(top[:5] + ["i9"])][:5]


def test_return_fields(loaded):
    index, vecs, *_ = loaded
    hits = index.knn(vecs[1], 3, return_fields=["title"])
    assert set(hits[0].fields) == {"title"}
    assert index.knn(vecs[1], 3, return_fields=[])[0].fields == {}


def test_ef_runtime_per_query(loaded):
    index, vecs, metric, algorithm = loaded
    q = vecs[11] + 0.05
    low = index.knn(q, 10, ef_runtime=10)
    high = index.knn(q, 10, ef_runtime=500)
    want, _ = _expected(vecs, q, metric)
    assert len(low) == len(high) == 10
    assert _overlap([h.id for h in high], want) >= _overlap([h.id for h in low], want) - 1e-9


def test_range_query_returns_everything_within_radius(loaded):
    index, vecs, metric, algorithm = loaded
    q = vecs[20]
    d = _distances(vecs, q, metric)
    radius = float(np.sort(d)[7])  # eight documents lie within
    hits = index.range(q, radius * 1.0001, limit=100)
    want = {f"i{i}" for i in np.nonzero(d <= radius * 1.0001)[0]}
    got = {h.id for h in hits}
    assert got == want if algorithm == "flat" else len(got & want) >= len(want) - 1
    assert all(h.distance <= radius * 1.001 for h in hits)
    assert [h.distance for h in hits] == sorted(h.distance for h in hits)
    filtered = index.range(q, radius * 1.0001, limit=100, filters={"genre": "jazz"})
    assert all(h.fields["genre"] == "jazz" for h in filtered)
    paged = index.range(q, radius * 1.0001, limit=3, offset=2, exclude=["i20"])
    assert [h.id for h in paged] == [h.id for h in hits if h.id != "i20"][2:5]


def test_among_checks_given_ids_against_a_filter(loaded):
    index, _, _, _ = loaded
    # i1, i4 are rock (i % 3 == 1); i2 is folk; "nope" does not exist
    hits = index.among(["i1", "i2", "i4", "nope", "i1"], {"genre": "rock"},
                       return_fields=["genre", "price"]).run()
    assert sorted(h.id for h in hits) == ["i1", "i4"]
    assert all(h.fields["genre"] == "rock" for h in hits)
    assert sorted(h.id for h in index.among(["i2", "nope"]).run()) == ["i2"]  # exists: no filter
    assert index.among([], {"genre": "rock"}).run() == []


def test_writes_move_the_generation_on(loaded):
    index, _, _, _ = loaded
    gen = int(index.client.get(index.generation_key) or 0)
    docs, _ = _docs()
    index.upsert(docs[:1])
    index.delete(["i299"])
    assert int(index.client.get(index.generation_key)) == gen + 2
    index.upsert(docs[-1:])


def test_distances_computed_in_process_match_redisearch(loaded):
    """store.vectors.distances (the engine ranks cached vectors with it) gives the
    distances RediSearch gives, for each metric."""
    from redrec.store.vectors import distances

    index, vecs, metric, _ = loaded
    q = vecs[7] * 0.6 + vecs[8] * 0.4
    ids = [f"i{i}" for i in range(0, 60, 3)]
    hits = index.among(ids, vector=q, field="vec").run()
    assert len(hits) == len(ids)
    got = distances(vecs[[int(h.id[1:]) for h in hits]], q, metric)
    np.testing.assert_allclose(got, [h.distance for h in hits], rtol=1e-4, atol=1e-5)
    assert list(np.argsort(got, kind="stable")) == list(range(len(hits)))
    with pytest.raises(ValueError):
        distances(vecs[:2], q, "manhattan")


def test_filter_strings_are_compiled_once_and_bad_filters_always_fail(loaded):
    index, _, _, _ = loaded
    f = {"genre": ["rock", "folk"], "price": {"lte": 50}}
    first = index.among(["i1", "i2", "i3"], f).command()
    assert index.among(["i1", "i2", "i3"], dict(reversed(f.items()))).command() == first
    assert len([h for h in index.among(["i1", "i2", "i3", "i60"], f).run()]) == 2
    for _ in range(2):
        with pytest.raises(Exception, match="price"):
            index.among(["i1"], {"price": {"lte": "cheap"}})


# Filters written flat ("(a b c)", one numeric range per field) mean what the nested
# RedisVL form means: the documents RediSearch returns for each are the ones a plain
# Python reading of the filter picks.
FLAT_CASES = [
    ({"genre": "rock", "price": {"gte": 100, "lt": 250}, "title": "plain"},
     lambda i: i % 3 == 1 and 100 <= i < 250 and i % 10 != 0),
    ({"and": [{"genre": ["jazz", "folk"]}, {"and": [{"price": {"gt": 30}}, {"price": {"lte": 90}}]}]},
     lambda i: i % 3 != 1 and 30 < i <= 90),
    ({"or": [{"genre": "jazz"}, {"or": [{"price": {"lt": 5}}, {"title": "special"}]}]},
     lambda i: i % 3 == 0 or i < 5 or i % 10 == 0),
    ({"not": {"genre": "rock"}, "price": {"gt": 280}}, lambda i: i % 3 != 1 and i > 280),
    ({"or": [{"and": [{"genre": "rock"}, {"price": {"lt": 20}}]}, {"price": {"gte": 295}}]},
     lambda i: (i % 3 == 1 and i < 20) or i >= 295),
    ({"price": {"gte": 10, "gt": 12, "lt": 16}}, lambda i: 12 < i < 16),
]


@pytest.mark.parametrize("n", range(len(FLAT_CASES)))
def test_flat_filters_select_what_the_filter_says(loaded, n):
    index, *_ = loaded
    value, keep = FLAT_CASES[n]
    got = {h.id for h in index.among([f"i{i}" for i in range(N)], value).run()}
    assert got == {f"i{i}" for i in range(N) if keep(i)}
