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
