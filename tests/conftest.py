"""Shared fixtures."""

from __future__ import annotations

from pathlib import Path

import pytest

from synth import REALDATA


@pytest.fixture(scope="session")
def realdata() -> Path:
    if not REALDATA.exists():
        pytest.skip("shared/realdata not available")
    return REALDATA
