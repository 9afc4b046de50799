"""The static text backend: token vectors distilled from the bundled all-MiniLM-L6-v2.

The model is built once per session by the ``static_model`` fixture (tests/conftest.py),
with the first 10,000 token ids only, so the texts here use common words."""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"  # before anything can import huggingface_hub

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from redrec.catalog.mapping import Mapping
from redrec.embed.cache import MemoryCache, content_key, encode_cached
from redrec.embed.static import RECIPE
from redrec.embed.text import DEFAULT_TEXT_MODEL, TextEncoder, resolve_text_model
from redrec.exceptions import ConfigError, InvalidInput
from tests.conftest import STATIC_VOCAB

WAR = "Soldiers fought a long war against the enemy army."
BATTLE = "The army won the battle after years of fighting."
BAKING = "She baked bread and a chocolate cake in the kitchen."
DINNER = "A simple recipe for dinner: cook the chicken with rice."
LONG = " ".join(["The library keeps old maps, letters and diaries of sailors."] * 40)
TEXTS = [WAR, BATTLE, BAKING, DINNER, "", "   ", "[PAD] [SEP]", "qzxv", "naïve café — ünïcode", LONG]


@pytest.fixture(scope="module")
def enc(static_model: dict) -> TextEncoder:
    return static_model["encoder"]


def _unit_rows(vecs: np.ndarray, n: int, dim: int = 384) -> None:
    assert vecs.shape == (n, dim)
    assert vecs.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-5)


def test_the_build_prints_progress_and_records_its_time(static_model: dict, enc: TextEncoder) -> None:
    log = static_model["log"]
    assert "distilling static embeddings from all-MiniLM-L6-v2: 10,000 tokens" in log
    assert "token/s" in log  # the progress bar of the forward passes
    assert "static embeddings for all-MiniLM-L6-v2 built in" in log
    meta = enc.static_meta
    assert meta is not None and meta["build_s"] > 0
    shape = (meta["recipe"], meta["dim"], meta["hidden"], meta["vocab_size"])
    assert shape == (RECIPE, 384, 384, STATIC_VOCAB)
    assert meta["max_seq_length"] == 256 and enc.max_seq_length == 256


def test_contract(enc: TextEncoder) -> None:
    assert enc.backend == "static" and enc.dim == 384
    assert enc.name == f"all-MiniLM-L6-v2+static-v{STATIC_VOCAB}"
    _unit_rows(enc.encode(TEXTS), len(TEXTS))
    assert enc.encode([]).shape == (0, 384)
    with pytest.raises(InvalidInput, match="single string"):
        enc.encode("one text")
    with pytest.raises(InvalidInput, match="not str"):
        enc.encode(["ok", 3])  # type: ignore[list-item]


def test_deterministic_and_independent_of_batching(static_model: dict, enc: TextEncoder,
                                                   capfd: pytest.CaptureFixture[str]) -> None:
    first = enc.encode(TEXTS)
    np.testing.assert_array_equal(first, enc.encode(TEXTS))
    one_by_one = np.vstack([enc.encode([t]) for t in TEXTS])
    np.testing.assert_allclose(one_by_one, first, atol=1e-6)
    # Another process would load the built folder: nothing is rebuilt, same vectors.
    again = TextEncoder(backend="static", vocab_size=STATIC_VOCAB,
                        cache_dir=static_model["home"] / "models", batch_size=3)
    assert "distilling" not in capfd.readouterr().err
    assert again.name == enc.name
    np.testing.assert_allclose(again.encode(TEXTS), first, atol=1e-6)


def test_close_texts_are_closer_than_unrelated_ones(enc: TextEncoder) -> None:
    war, battle, baking, dinner = enc.encode([WAR, BATTLE, BAKING, DINNER])
    assert war @ battle > war @ baking + 0.3
    assert war @ battle > war @ dinner + 0.3
    assert baking @ dinner > baking @ battle + 0.3


def test_a_text_without_known_tokens_gets_the_empty_text_vector(enc: TextEncoder) -> None:
    empty, blank, special = enc.encode(["", "  \n ", "[PAD] [SEP]"])
    np.testing.assert_allclose(blank, empty, atol=1e-6)
    np.testing.assert_allclose(special, empty, atol=1e-6)
    assert abs(float(empty @ enc.encode([WAR])[0])) < 0.9


def test_texts_are_truncated_like_the_reference_model(static_model: dict, enc: TextEncoder) -> None:
    # LONG is well over 256 tokens: what follows it is past the model's limit.
    a, b = enc.encode([LONG + " " + WAR, LONG + " " + BAKING])
    np.testing.assert_allclose(a, b, atol=1e-6)
    longer = TextEncoder(backend="static", vocab_size=STATIC_VOCAB, max_seq_length=512,
                         cache_dir=static_model["home"] / "models")
    assert longer.name == enc.name + "+len512"
    a, b = longer.encode([LONG + " " + WAR, LONG + " " + BAKING])
    assert float(a @ b) < 0.9999


def test_cache_key_differs_from_the_reference_models(enc: TextEncoder) -> None:
    reference_name = resolve_text_model(DEFAULT_TEXT_MODEL)[0]  # TextEncoder()'s name
    assert enc.name != reference_name and enc.name.startswith(reference_name + "+static")
    cache = MemoryCache()
    vecs, computed = encode_cached(enc, [WAR, BATTLE, WAR], cache)
    assert computed == 2
    key = content_key(WAR)
    assert cache.get_many(reference_name, [key]) == [None]
    stored = cache.get_many(enc.name, [key])[0]
    assert stored is not None and np.allclose(stored, vecs[0])


def test_pca_to_fewer_dimensions(tmp_path: Path) -> None:
    small = TextEncoder(backend="static", vocab_size=2500, dim=32, cache_dir=tmp_path)
    assert small.dim == 32 and small.name == "all-MiniLM-L6-v2+static-d32-v2500"
    assert small.static_meta is not None and 0 < small.static_meta["explained_variance"] < 1
    _unit_rows(small.encode(["the war", "a cake", ""]), 3, dim=32)


def test_bad_options_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="unknown text backend"):
        TextEncoder(backend="nope")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="need backend='static'"):
        TextEncoder(dim=64)
    with pytest.raises(ConfigError, match="need backend='static'"):
        TextEncoder(backend="onnx", vocab_size=1000)
    with pytest.raises(ConfigError, match="vocab_size must be at least 1"):
        TextEncoder(backend="static", vocab_size=0)
    with pytest.raises(ConfigError, match="quantize=True needs backend='onnx'"):
        TextEncoder(backend="static", quantize=True)


def test_loading_a_built_model_imports_no_torch(static_model: dict) -> None:
    code = (
        "import sys\nfrom redrec.embed.text import TextEncoder\n"
        f"e = TextEncoder(backend='static', vocab_size={STATIC_VOCAB}, "
        f"cache_dir={str(static_model['home'] / 'models')!r})\n"
        "e.encode(['a war story'])\n"
        "heavy = {'torch', 'onnxruntime', 'sentence_transformers', 'transformers'}\n"
        "print(sorted(heavy & set(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]" and "distilling" not in out.stderr


def _text_map(**text: object) -> dict:
    return {"index": "x", "text": {"field": "v", "source": "about", **text}}


def test_mapping_keeps_items_and_queries_in_one_vector_space() -> None:
    m = Mapping.load(_text_map(backend="static", static={"vocab_size": 5000}))
    assert m.text is not None and m.text.encoder_options() == {"vocab_size": 5000}
    assert Mapping.load(_text_map(backend="static")).text.encoder_options() == {}  # type: ignore[union-attr]
    assert Mapping.load(_text_map(backend="onnx")).text.encoder_options() == {}  # type: ignore[union-attr]
    with pytest.raises(ConfigError, match="both be static or neither"):
        Mapping.load(_text_map(backend="static", query_backend="onnx"))
    with pytest.raises(ConfigError, match="both be static or neither"):
        Mapping.load(_text_map(backend="torch", query_backend="static"))
    with pytest.raises(ConfigError, match="need backend: static"):
        Mapping.load(_text_map(backend="torch", static={"dim": 64}))
    with pytest.raises(ConfigError, match="invalid mapping"):
        Mapping.load(_text_map(backend="static", static={"dim": 0}))
    with pytest.raises(ConfigError, match="no static backend"):
        Mapping.load({"index": "x", "image": {"field": "i", "source": "img", "backend": "static",
                                              "query_backend": "static"}})
