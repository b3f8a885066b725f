"""Shared test fixtures.

Real data lives in ``../shared/data`` next to the project (or wherever ``VIVIT_TL_SHARED_DATA``
points). A user's clone has none: tests that need it skip cleanly.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("VIVIT_TL_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Path to the shared real-data folder; skips the test when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared data folder not found at {SHARED_DATA} (set VIVIT_TL_SHARED_DATA)")
    return SHARED_DATA
