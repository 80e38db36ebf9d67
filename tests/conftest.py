"""Shared fixtures. Engine tests run against both implementations of the per-item engine:
the compiled extension and the same source interpreted (uvloop's habit: one test body, two
implementations, held equal)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from kamicore.engine import Engine

from .support import FakeClock

REPO = Path(__file__).resolve().parent.parent
os.environ.setdefault("KAMICORE_EXT_DIR", str(REPO / "ext"))


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(params=["compiled", "interpreted"])
def implementation(request) -> str:
    return request.param


@pytest.fixture
def engine(tmp_path, clock, implementation, monkeypatch):
    monkeypatch.delenv("KAMICORE_MASTER_KEY", raising=False)
    with Engine(tmp_path / "data", clock=clock, implementation=implementation) as opened:
        yield opened
