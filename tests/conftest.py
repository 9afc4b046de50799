"""Shared fixtures: one real embedded Redis for the whole test session (never a mock)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

# Model weights come from installed packages only; never reach for a hub in tests.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def store() -> Iterator:
    from redrec.runtime import connect

    s = connect(ephemeral=True)
    try:
        yield s
    finally:
        s.close()


@pytest.fixture
def unique() -> str:
    """A fresh name for an index/prefix so tests never see each other's data."""
    return "t" + uuid.uuid4().hex[:10]


@pytest.fixture(scope="session")
def shared_data() -> Path:
    return SHARED_DATA


# The static text backend in tests: distilled from the bundled MiniLM with its first 10,000
# token ids only (~15 s instead of ~45 s for the whole vocabulary), once per session, into
# a REDREC_HOME of its own so that a mapping's `backend: static` finds it there.
STATIC_VOCAB = 10_000


@pytest.fixture(scope="session")
def static_model(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """``home`` (a REDREC_HOME holding the built model), ``encoder`` and ``log`` (what the
    build printed on stderr)."""
    import contextlib
    import io

    from redrec.embed.text import TextEncoder

    home = tmp_path_factory.mktemp("static-home")
    log = io.StringIO()
    with contextlib.redirect_stderr(log):
        encoder = TextEncoder(backend="static", vocab_size=STATIC_VOCAB, cache_dir=home / "models")
    return {"home": home, "encoder": encoder, "log": log.getvalue()}
