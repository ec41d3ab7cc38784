"""Shard streaming: coverage per epoch over ranks x workers, determinism, schema checks, exact resume."""

from __future__ import annotations

import collections
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from torch.utils.data import DataLoader

from trainer_fixtures import write_frame_shards
from schemas.arrow import SchemaMismatchError
from schemas.labels import IGNORE
from trainer.data import Augment, ShardStream, StreamLoader, augment_frame, shuffle_order

AUG = Augment(scale=(0.75, 1.5), crop=(12, 20), flip=True)


def _epoch_ids(url, *, rank, world, workers, epoch=0, uneven="pad", seed=3, augment=AUG):
    stream = ShardStream(url, seed=seed, rank=rank, world_size=world, uneven=uneven, augment=augment,
                         shuffle_buffer=5)
    stream.set_epoch(epoch)
    loader = DataLoader(stream, batch_size=None, num_workers=workers)
    return [(s["frame_id"], s["worker"]) for s in loader]


def test_every_row_once_per_epoch_over_2_ranks_x_2_workers(shard_dir: Path) -> None:
    for epoch in (0, 1):
        per_rank = [_epoch_ids(str(shard_dir), rank=r, world=2, workers=2, epoch=epoch) for r in range(2)]
        ids = [fid for rank in per_rank for fid, _ in rank]
        assert len(ids) == 16 and sorted(ids) == sorted(set(ids))  # every row exactly once
        assert len(per_rank[0]) == len(per_rank[1]) == 8  # equal counts per rank
        for rank in per_rank:  # both workers of a rank did work
            assert {w for _, w in rank} == {0, 1}
    e0 = [f for r in range(2) for f, _ in _epoch_ids(str(shard_dir), rank=r, world=2, workers=2, epoch=0)]
    e1 = [f for r in range(2) for f, _ in _epoch_ids(str(shard_dir), rank=r, world=2, workers=2, epoch=1)]
    assert e0 != e1  # a new order each epoch


def test_uneven_unit_counts_pad_and_drop(tmp_path: Path) -> None:
    # 2 shards: 8 rows and 6 rows in row groups of 2 -> 7 units over 2 ranks.
    write_frame_shards(tmp_path / "a", shards=1, rows=8, prefix="a")
    write_frame_shards(tmp_path / "b", shards=1, rows=6, prefix="b")
    urls = [str(tmp_path / "a" / "part-00000.parquet"), str(tmp_path / "b" / "part-00000.parquet")]
    pad = [[f for f, _ in _epoch_ids(urls, rank=r, world=2, workers=2, uneven="pad")] for r in range(2)]
    assert len(pad[0]) == len(pad[1]) == 8  # 4 units each
    counts = collections.Counter(pad[0] + pad[1])
    assert len(counts) == 14 and sorted(counts.values()) == [1] * 12 + [2] * 2  # one unit seen twice
    drop = [[f for f, _ in _epoch_ids(urls, rank=r, world=2, workers=2, uneven="drop")] for r in range(2)]
    assert len(drop[0]) == len(drop[1]) == 6  # 3 units each
    assert len(set(drop[0] + drop[1])) == 12  # one unit left out, nothing twice
    none = [[f for f, _ in _epoch_ids(urls, rank=r, world=2, workers=1, uneven="none")] for r in range(2)]
    assert sorted(none[0] + none[1]) == sorted(counts)  # exactly once, unequal counts


def test_order_and_augmentation_are_pure_functions(shard_dir: Path) -> None:
    a = [f for f, _ in _epoch_ids(str(shard_dir), rank=0, world=1, workers=0)]
    b = [f for f, _ in _epoch_ids(str(shard_dir), rank=0, world=1, workers=0)]
    c = [f for f, _ in _epoch_ids(str(shard_dir), rank=0, world=1, workers=0, seed=4)]
    assert a == b and a != c and sorted(a) == sorted(c)

    def by_frame(workers: int) -> dict[str, bytes]:
        stream = ShardStream(str(shard_dir), seed=3, augment=AUG, rank=0, world_size=1)
        return {s["frame_id"]: s["image"].numpy().tobytes() + s["label"].numpy().tobytes()
                for s in DataLoader(stream, batch_size=None, num_workers=workers)}

    one, two = by_frame(0), by_frame(2)
    assert one == two  # augmentation does not depend on the worker layout
    assert len({v for v in one.values()}) == 16


def test_schema_is_validated_when_a_shard_is_opened(tmp_path: Path, shard_dir: Path) -> None:
    table = pq.read_table(shard_dir / "part-00000.parquet")
    bad = table.drop_columns(["objects"]).replace_schema_metadata(table.schema.metadata)
    pq.write_table(bad, tmp_path / "bad.parquet")
    with pytest.raises(SchemaMismatchError, match="objects"):
        ShardStream(str(tmp_path / "bad.parquet"))
    other = pa.table({"x": [1, 2]})
    pq.write_table(other, tmp_path / "other.parquet")
    with pytest.raises(SchemaMismatchError, match="augmented_frame v1"):
        ShardStream(str(tmp_path / "other.parquet"))


def _take(loader: StreamLoader, n: int) -> list[tuple[list[str], torch.Tensor]]:
    out = []
    for batch in loader:
        out.append((list(batch["frame_id"]), batch["image"].clone()))
        if len(out) == n:
            break
    return out


@pytest.mark.parametrize("workers", [0, 2])
def test_loader_resumes_exactly_mid_epoch(shard_dir: Path, workers: int) -> None:
    def make() -> StreamLoader:
        stream = ShardStream(str(shard_dir), seed=5, augment=AUG, shuffle_buffer=4, epochs=None)
        return StreamLoader(stream, batch_size=3, num_workers=workers)

    full = _take(make(), 12)  # 36 samples: more than two epochs of 16
    first = make()
    head = _take(first, 5)
    state = first.state_dict()
    assert state["batches"] == 5
    again = make()
    again.load_state_dict(state)
    tail = _take(again, 7)
    assert [f for f, _ in head + tail] == [f for f, _ in full]
    assert all(torch.equal(a, b) for (_, a), (_, b) in zip(head + tail, full))


def test_resume_refuses_another_layout(shard_dir: Path) -> None:
    stream = ShardStream(str(shard_dir), seed=5, epochs=None)
    loader = StreamLoader(stream, batch_size=2, num_workers=2)
    _take(loader, 2)
    state = loader.state_dict()
    with pytest.raises(ValueError, match="num_workers"):
        StreamLoader(ShardStream(str(shard_dir), seed=5, epochs=None), batch_size=2, num_workers=1
                     ).load_state_dict(state)
    with pytest.raises(ValueError, match="seed"):
        StreamLoader(ShardStream(str(shard_dir), seed=6, epochs=None), batch_size=2, num_workers=2
                     ).load_state_dict(state)


def test_augment_frame_pads_crops_and_flips_consistently() -> None:
    image = np.zeros((4, 6, 3), np.uint8)
    image[..., 0] = np.arange(6, dtype=np.uint8)[None]
    label = np.tile(np.arange(6, dtype=np.uint8), (4, 1))
    aug = Augment(crop=(6, 8), flip=True)
    seen_flip = seen_plain = False
    for seed in range(20):
        img, lab = augment_frame(image, label, np.random.default_rng(seed), aug)
        assert img.shape == (6, 8, 3) and lab.shape == (6, 8)
        valid = lab != IGNORE
        assert valid.sum() == 24  # the whole frame, padded around
        assert np.array_equal(img[..., 0][valid], lab[valid])  # image and label moved together
        row = lab[valid].reshape(4, 6)[0]
        seen_flip |= bool(row[0] == 5)
        seen_plain |= bool(row[0] == 0)
    assert seen_flip and seen_plain


def test_shuffle_order_is_a_permutation() -> None:
    lengths = [3, 2, 4]
    plain = shuffle_order(lengths, 0, None)
    assert plain.tolist() == [[0, 0], [0, 1], [0, 2], [1, 0], [1, 1], [2, 0], [2, 1], [2, 2], [2, 3]]
    mixed = shuffle_order(lengths, 4, np.random.default_rng(0))
    assert sorted(map(tuple, mixed.tolist())) == sorted(map(tuple, plain.tolist()))
    assert mixed.tolist() != plain.tolist()


def test_loader_state_counts_finished_epochs(shard_dir: Path) -> None:
    stream = ShardStream(str(shard_dir), seed=5, epochs=None)
    loader = StreamLoader(stream, batch_size=4, num_workers=2)
    _take(loader, 10)  # 40 samples: both workers (8 rows each per epoch) are in their third epoch
    state = loader.state_dict()
    assert state["epoch"] == 2 and state["consumed"] == [4, 4] and state["batches"] == 10
    with pytest.raises(ValueError, match="row groups"):
        StreamLoader(ShardStream(str(shard_dir), seed=5, epochs=None), batch_size=2, num_workers=9)


def test_parse_pair_reads_both_separators_and_names_the_option_on_error():
    import argparse

    from trainer.data import parse_pair

    assert parse_pair(int, "512,1024", "--crop") == (512, 1024)
    assert parse_pair(int, "512x1024", "--crop") == (512, 1024)
    assert parse_pair(float, "0.5,2", "--scale") == (0.5, 2.0)
    with pytest.raises(argparse.ArgumentTypeError, match="--crop must be two values"):
        parse_pair(int, "1,2,3", "--crop")
    with pytest.raises(argparse.ArgumentTypeError, match="--scale must be two float values"):
        parse_pair(float, "a,b", "--scale")
