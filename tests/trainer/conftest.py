"""Fixtures of the trainer tests: tiny augmented-frame shards and a tiny model checkpoint."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from trainer_fixtures import write_frame_shards


@pytest.fixture()
def shard_dir(tmp_path: Path) -> Path:
    """2 shards x 8 rows in row groups of 2: 8 units, 16 frames of 16x32."""
    return write_frame_shards(tmp_path / "shards")


@pytest.fixture(scope="session")
def small_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A ``small`` model with seeded random weights and non-trivial BN statistics, saved in our format."""
    from trainer.checkpoint import save_checkpoint
    from trainer.models import build_model

    torch.manual_seed(0)
    model = build_model("small")
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.normal_(0, 0.1)
                m.running_var.uniform_(0.5, 1.5)
                m.weight.normal_(1.0, 0.1)
    url = str(tmp_path_factory.mktemp("ckpt") / "small.pt")
    save_checkpoint(model, url, metadata={"purpose": "trainer tests"})
    return url
