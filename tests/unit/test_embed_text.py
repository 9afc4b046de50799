"""TextEncoder on the real bundled all-MiniLM-L6-v2: torch reference, ONNX fp32 and int8."""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"  # before anything can import huggingface_hub

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from redrec.embed.text import TextEncoder, resolve_text_model
from redrec.exceptions import ConfigError, InvalidInput

NN = "Transformer neural networks learn language with stacked self-attention layers."
ATTENTION = "Attention models weigh every word against the others to build representations."
COOKING = "Simmer the tomatoes with garlic and basil, then stir in the cooked pasta."
# Over 256 tokens: truncated by the model.
LONG = " ".join(["The library keeps old maps, letters and diaries of sailors."] * 40)
TEXTS = [NN, ATTENTION, COOKING, "", "  spaces around  ", LONG, "naïve café — ünïcode"]


@pytest.fixture(scope="module")
def export_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("onnx-models")


@pytest.fixture(scope="module")
def reference() -> TextEncoder:
    return TextEncoder()


@pytest.fixture(scope="module")
def onnx_fp32(export_dir: Path) -> TextEncoder:
    return TextEncoder(backend="onnx", cache_dir=export_dir)


@pytest.fixture(scope="module")
def onnx_int8(export_dir: Path, onnx_fp32: TextEncoder) -> TextEncoder:
    return TextEncoder(backend="onnx", quantize=True, cache_dir=export_dir, batch_size=3, threads=1)


def _check_contract(vecs: np.ndarray, n: int) -> None:
    assert vecs.shape == (n, 384)
    assert vecs.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-5)


def _semantic_order(enc: TextEncoder) -> None:
    nn, attention, cooking = enc.encode([NN, ATTENTION, COOKING])
    assert nn @ attention > nn @ cooking + 0.2
    assert attention @ nn > attention @ cooking + 0.2


def test_importing_the_module_loads_no_heavy_dependency() -> None:
    code = (
        "import sys, redrec.embed.text, redrec.embed.image, redrec.embed.cache\n"
        "heavy = {'torch', 'onnxruntime', 'sentence_transformers', 'transformers', 'PIL'}\n"
        "print(sorted(heavy & set(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_reference_encoder_contract(reference: TextEncoder) -> None:
    assert reference.name == "all-MiniLM-L6-v2"
    assert reference.dim == 384
    assert reference.max_seq_length == 256
    _check_contract(reference.encode(TEXTS), len(TEXTS))
    _semantic_order(reference)


def test_bundled_model_is_found_under_both_names() -> None:
    short, path = resolve_text_model("all-MiniLM-L6-v2")
    full, same = resolve_text_model("sentence-transformers/all-MiniLM-L6-v2")
    assert short == full == "all-MiniLM-L6-v2"
    assert path == same and (path / "modules.json").is_file()


def test_local_directory_is_accepted_and_named_after_itself(tmp_path: Path) -> None:
    _, bundled = resolve_text_model("all-MiniLM-L6-v2")
    assert resolve_text_model(str(bundled)) == ("all-MiniLM-L6-v2", bundled)
    (tmp_path / "my-model").mkdir()
    (tmp_path / "my-model" / "config.json").write_text("{}")
    assert resolve_text_model(str(tmp_path / "my-model")) == ("my-model", tmp_path / "my-model")


def test_encode_edge_inputs(reference: TextEncoder) -> None:
    empty = reference.encode([])
    assert empty.shape == (0, 384) and empty.dtype == np.float32
    with pytest.raises(InvalidInput, match="not str"):
        reference.encode(["fine", 42])  # type: ignore[list-item]
    with pytest.raises(InvalidInput, match="single string"):
        reference.encode("a bare string is not a list of texts")


def test_same_text_same_vector_regardless_of_batch(reference: TextEncoder) -> None:
    alone = reference.encode([COOKING])[0]
    batched = reference.encode(TEXTS)[2]
    assert float(alone @ batched) > 0.99999


@pytest.mark.parametrize("model", ["no-such-model-xyz", "acme/no-such-model", "./missing/dir"])
def test_unknown_model_is_a_config_error_naming_it(model: str) -> None:
    with pytest.raises(ConfigError, match="not found") as err:
        TextEncoder(model)
    assert model in str(err.value)


def test_directory_without_a_model_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="without a model"):
        TextEncoder(str(tmp_path))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"backend": "tensorflow"}, "unknown text backend"),
        ({"quantize": True}, "needs backend='onnx'"),
        ({"batch_size": 0}, "batch_size"),
        ({"max_seq_length": 1}, "max_seq_length"),
        ({"max_seq_length": 100_000}, "exceeds"),
        ({"threads": 2}, "torch.set_num_threads"),
    ],
)
def test_bad_settings_are_config_errors(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        TextEncoder(**kwargs)  # type: ignore[arg-type]


def test_onnx_fp32_reproduces_the_reference(reference: TextEncoder, onnx_fp32: TextEncoder) -> None:
    assert onnx_fp32.name == "all-MiniLM-L6-v2+onnx"
    assert onnx_fp32.dim == 384
    got = onnx_fp32.encode(TEXTS)
    _check_contract(got, len(TEXTS))
    cosines = (got * reference.encode(TEXTS)).sum(axis=1)
    assert cosines.min() > 0.9999  # including the empty, the unicode and the truncated text


def test_onnx_int8_is_close_and_keeps_the_semantics(
    reference: TextEncoder, onnx_int8: TextEncoder
) -> None:
    assert onnx_int8.name == "all-MiniLM-L6-v2+onnx-int8"
    got = onnx_int8.encode(TEXTS)  # batch_size=3: several batches, sorted by length
    _check_contract(got, len(TEXTS))
    cosines = (got * reference.encode(TEXTS)).sum(axis=1)
    assert cosines.min() > 0.95 and cosines.mean() > 0.98
    assert cosines.min() < 0.99999  # really the quantised model, not the fp32 one
    _semantic_order(onnx_int8)


def test_onnx_export_is_cached_and_served_without_torch(
    export_dir: Path, onnx_int8: TextEncoder
) -> None:
    before = sorted(p.relative_to(export_dir) for p in export_dir.rglob("*"))
    assert {p.name for p in before} >= {"model.onnx", "model-int8.onnx", "tokenizer.json"}
    code = (
        "import sys\n"
        "from redrec.embed.text import TextEncoder\n"
        f"enc = TextEncoder(backend='onnx', quantize=True, cache_dir={str(export_dir)!r})\n"
        f"vec = enc.encode([{NN!r}])\n"
        "print(enc.name, vec.shape, 'torch' in sys.modules)"
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env
    )
    assert out.stdout.split() == ["all-MiniLM-L6-v2+onnx-int8", "(1,", "384)", "False"]
    assert sorted(p.relative_to(export_dir) for p in export_dir.rglob("*")) == before


def test_shorter_max_seq_length_is_named_and_changes_long_texts(
    export_dir: Path, onnx_fp32: TextEncoder
) -> None:
    short = TextEncoder(backend="onnx", cache_dir=export_dir, max_seq_length=16)
    assert short.name == "all-MiniLM-L6-v2+onnx+len16"
    texts = ["Pasta with basil.", LONG]
    a, b = short.encode(texts), onnx_fp32.encode(texts)
    assert float(a[0] @ b[0]) > 0.9999  # fits in 16 tokens either way: unchanged
    assert float(a[1] @ b[1]) < 0.99  # truncated harder: a different vector


def test_progress_bar_goes_to_stderr(
    onnx_fp32: TextEncoder, capsys: pytest.CaptureFixture[str]
) -> None:
    onnx_fp32.encode(TEXTS, progress=True)
    captured = capsys.readouterr()
    assert captured.out == ""
    assert f"{len(TEXTS)}/{len(TEXTS)}" in captured.err
