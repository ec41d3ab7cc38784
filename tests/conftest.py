from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def samples_dir() -> Path:
    """The real sample files in the official dataset layouts (``../shared/samples``); skip when absent."""
    root = Path(os.environ.get("STYLEPASTE_SAMPLES", REPO.parent / "shared" / "samples"))
    if not root.is_dir():
        pytest.skip(f"real sample files not found at {root}")
    return root
