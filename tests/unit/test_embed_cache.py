"""The embedding cache: content keys, MemoryCache, and encode_cached with a real encoder."""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"

import hashlib

import numpy as np
import pytest

from redrec.embed.cache import EmbeddingCache, MemoryCache, content_key, encode_cached
from redrec.embed.text import TextEncoder

TEXTS = [
    "A quiet detective novel set in a rainy harbour town.",
    "An introduction to neural networks and attention.",
    "One hundred recipes for soups and stews.",
]


class CountingEncoder:
    """A real TextEncoder that remembers how many texts it was asked to embed."""

    def __init__(self, inner: TextEncoder) -> None:
        self.inner, self.name, self.dim = inner, inner.name, inner.dim
        self.seen: list[str] = []

    def encode(self, items: list[str], *, progress: bool = False) -> np.ndarray:
        self.seen += items
        return self.inner.encode(items, progress=progress)


@pytest.fixture(scope="module")
def text_encoder() -> TextEncoder:
    return TextEncoder()


@pytest.fixture
def encoder(text_encoder: TextEncoder) -> CountingEncoder:
    return CountingEncoder(text_encoder)


def test_content_key_is_the_sha256_of_the_utf8_content() -> None:
    assert content_key("café") == hashlib.sha256("café".encode()).hexdigest()
    assert content_key("café") == content_key("café".encode())
    assert content_key(b"\x00\x01") != content_key(b"\x00\x02")
    assert len(content_key("")) == 64


def test_memory_cache_follows_the_protocol() -> None:
    cache = MemoryCache()
    assert isinstance(cache, EmbeddingCache)
    vec = np.arange(4, dtype=np.float64)
    cache.set_many("model-a", {"k1": vec})
    vec[0] = 99.0  # the caller's array is not the stored one
    got = cache.get_many("model-a", ["k1", "k2"])
    assert got[1] is None
    assert got[0] is not None and got[0].dtype == np.float32
    np.testing.assert_array_equal(got[0], [0, 1, 2, 3])
    with pytest.raises(ValueError):
        got[0][0] = 5.0  # read-only: a caller cannot corrupt the cache
    assert cache.get_many("model-b", ["k1"]) == [None]  # another model, another space
    assert len(cache) == 1


def test_memory_cache_bound_drops_least_recently_used() -> None:
    cache = MemoryCache(max_items=2)
    one = np.ones(2, dtype=np.float32)
    cache.set_many("m", {"a": one, "b": one})
    cache.get_many("m", ["a"])  # a is now more recent than b
    cache.set_many("m", {"c": one})
    hits = [v is not None for v in cache.get_many("m", ["a", "b", "c"])]
    assert hits == [True, False, True]
    with pytest.raises(ValueError):
        MemoryCache(max_items=0)


def test_encode_cached_computes_only_misses(
    encoder: CountingEncoder, text_encoder: TextEncoder
) -> None:
    cache = MemoryCache()
    first, computed = encode_cached(encoder, TEXTS, cache)
    assert computed == 3 and len(encoder.seen) == 3
    assert first.shape == (3, 384) and first.dtype == np.float32
    np.testing.assert_allclose(first, text_encoder.encode(TEXTS), atol=1e-6)

    again, computed = encode_cached(encoder, TEXTS[::-1], cache)
    assert computed == 0 and len(encoder.seen) == 3
    np.testing.assert_array_equal(again, first[::-1])

    new = "A field guide to the birds of the northern coast."
    mixed, computed = encode_cached(encoder, [TEXTS[0], new, TEXTS[2]], cache)
    assert computed == 1 and encoder.seen[-1] == new
    np.testing.assert_array_equal(mixed[[0, 2]], first[[0, 2]])
    assert len(cache) == 4


def test_duplicates_are_embedded_once(encoder: CountingEncoder) -> None:
    vecs, computed = encode_cached(encoder, [TEXTS[1], TEXTS[1], TEXTS[0], TEXTS[1]], MemoryCache())
    assert computed == 2 and encoder.seen == [TEXTS[1], TEXTS[0]]
    np.testing.assert_array_equal(vecs[0], vecs[3])


def test_entries_are_per_encoder_name(encoder: CountingEncoder) -> None:
    cache = MemoryCache()
    encode_cached(encoder, TEXTS, cache)
    encoder.name = "all-MiniLM-L6-v2+onnx-int8"  # another variant must not reuse them
    _, computed = encode_cached(encoder, TEXTS, cache)
    assert computed == 3 and len(cache) == 6


def test_wrong_sized_cached_vectors_are_recomputed(encoder: CountingEncoder) -> None:
    cache = MemoryCache()
    cache.set_many(encoder.name, {content_key(TEXTS[0]): np.zeros(3, dtype=np.float32)})
    vecs, computed = encode_cached(encoder, TEXTS[:1], cache)
    assert computed == 1
    assert np.linalg.norm(vecs[0]) == pytest.approx(1.0, abs=1e-5)
    stored = cache.get_many(encoder.name, [content_key(TEXTS[0])])[0]
    assert stored is not None and stored.shape == (384,)


def test_empty_input(encoder: CountingEncoder) -> None:
    vecs, computed = encode_cached(encoder, [], MemoryCache())
    assert vecs.shape == (0, 384) and computed == 0 and encoder.seen == []
