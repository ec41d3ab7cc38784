"""Failure modes of training and evaluation: non-finite losses and weights stop the job, diverged checkpoints are
refused, failed runs leave no partial output, and the command line reports user errors on one line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from stylepaste import cli
from trainer.checkpoint import load_checkpoint, save_checkpoint
from trainer.cached import run_cached
from trainer.finetune import FinetuneConfig, run
from trainer.models import build_model
from trainer.training import NonFiniteError, optimizer_step

REPO = Path(__file__).resolve().parents[2]


def test_optimizer_step_refuses_a_nan_loss_and_checks_the_weights():
    w = torch.nn.Parameter(torch.ones(3))
    opt = torch.optim.SGD([w], lr=0.1)
    with pytest.raises(NonFiniteError, match="loss is nan"):
        optimizer_step((w * float("nan")).sum(), opt)
    assert torch.equal(w.detach(), torch.ones(3))  # not updated
    big = torch.optim.SGD([w], lr=1e38)
    with pytest.raises(NonFiniteError, match="3 non-finite weights"):
        optimizer_step((w * 1e3).sum() ** 2, big)


def test_finetune_with_a_diverging_learning_rate_stops_and_leaves_nothing(shard_dir: Path, small_checkpoint: str,
                                                                          tmp_path: Path):
    out = tmp_path / "ft"
    cfg = FinetuneConfig(shards=(str(shard_dir),), checkpoint=small_checkpoint, out=str(out), arch="small", steps=4,
                         batch_size=2, workers=0, optimizer="sgd", lr=1e38, save_every=100, log_every=1,
                         progress=False)
    with pytest.raises(NonFiniteError, match=r"finetune stopped at step \d: .*nothing was saved"):
        run(cfg)
    assert not out.exists()


def test_a_checkpoint_with_nan_weights_is_refused(tmp_path: Path):
    model = build_model("small")
    with torch.no_grad():
        model.final[6].weight[0, 0] = float("nan")
    url = str(tmp_path / "diverged.pt")
    save_checkpoint(model, url)
    with pytest.raises(ValueError, match="1 non-finite values in 1 tensors .*final.6.weight"):
        load_checkpoint(build_model("small"), url)


def test_user_errors_print_one_line_and_exit_2(tmp_path: Path, capsys):
    missing = str(tmp_path / "nope.pt")
    args = ["evaluate", "--checkpoint", missing, "--arch", "small", "--dataset", f"synthetic={tmp_path}",
            "--out", str(tmp_path / "eval")]
    assert cli.main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("stylepaste evaluate: error: ") and "no known layout" in err[0]
    # --log-level debug keeps the traceback
    proc = subprocess.run([sys.executable, "-m", "stylepaste", *args, "--log-level", "debug"], cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1 and "Traceback (most recent call last)" in proc.stderr


def test_finetune_refuses_a_corpus_without_a_pasted_pixel(tmp_path: Path, small_checkpoint: str):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from trainer_fixtures import write_frame_shards

    shards = write_frame_shards(tmp_path / "shards", shards=1, rows=4)
    path = next(shards.glob("*.parquet"))
    table = pq.read_table(path)
    i = table.schema.get_field_index("ood_pixels")
    pq.write_table(table.set_column(i, table.schema.field(i), pa.array([0] * table.num_rows, pa.int64())), path)  # as if nothing was pasted
    kw = dict(shards=(str(shards),), checkpoint=small_checkpoint, arch="small", steps=1, batch_size=2, workers=0,
              progress=False, flip=False)
    with pytest.raises(ValueError, match="hold no pasted pixel.*--allow-no-pastes"):
        run(FinetuneConfig(out=str(tmp_path / "a"), **kw))
    with pytest.raises(ValueError, match="hold no pasted pixel"):
        run_cached(FinetuneConfig(out=str(tmp_path / "b"), **kw))
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
    assert run(FinetuneConfig(out=str(tmp_path / "c"), allow_no_pastes=True, **kw))["step"] == 1


def test_a_label_value_outside_the_classes_names_its_frame(tmp_path: Path):
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    from schemas.codecs import encode_png
    from trainer.data import ShardStream
    from trainer_fixtures import write_frame_shards

    shards = write_frame_shards(tmp_path / "shards", shards=1, rows=2)
    path = next(shards.glob("*.parquet"))
    table = pq.read_table(path)
    label = np.zeros((16, 32), np.uint8)
    label[0, 0] = 77
    labels = table.column("label").to_pylist()
    labels[1] = encode_png(label)
    i = table.schema.get_field_index("label")
    pq.write_table(table.set_column(i, table.schema.field(i), pa.array(labels, pa.binary())), path)
    stream = ShardStream([str(shards)], shuffle_buffer=0, rank=0, world_size=1, epochs=1)
    with pytest.raises(ValueError, match=r"row 1 \(fcity_000000_000001\): label values must be .* found 77"):
        list(stream)


def test_non_finite_logits_stop_the_evaluation_naming_the_frame():
    from evaluation.datasets import Sample
    from evaluation.loop import _finite
    from evaluation.results import ModelSpec

    logits = torch.zeros(1, 19, 4, 4)
    sample = Sample("frame_7", None, None, "img.png", "label.png")
    assert _finite(logits, ModelSpec("m", "x", "small", ("energy",)), "synthetic", sample) is logits
    logits[0, 3, 1, 1] = float("nan")
    with pytest.raises(ValueError, match="model 'm' gives 1 non-finite logits on synthetic frame frame_7"):
        _finite(logits, ModelSpec("m", "x", "small", ("energy",)), "synthetic", sample)


def test_a_worker_error_sent_back_as_text_reads_as_its_original_line():
    from schemas.errors import user_error_message

    wrapped = RuntimeError("Pipeline failed:\nTraceback (most recent call last):\n  File \"x.py\", line 3\n"
                           "schemas.arrow.SchemaMismatchError: bank/shard-0.parquet: expected object_bank v1, "
                           "found v2 [while running 'ReadBank']\n")
    assert user_error_message(wrapped).startswith("bank/shard-0.parquet: expected object_bank v1")
    assert user_error_message(RuntimeError("a bug")) is None
    try:
        try:
            raise FileNotFoundError("coco/annotations.json not found")
        except FileNotFoundError as err:
            raise RuntimeError("stage failed") from err
    except RuntimeError as outer:
        assert user_error_message(outer) == "coco/annotations.json not found"


@pytest.mark.parametrize("fault, expected", [
    ("corrupt image cell", "row 1"), ("bank shards as frames", "expected shards of augmented_frame"),
    ("unknown schema version", "augmented_frame v9"), ("wrong-keys checkpoint", "ckpt.pt"),
])
def test_finetune_faults_end_in_one_line_errors(tmp_path: Path, small_checkpoint: str, capsys, fault, expected):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from schemas.arrow import OBJECT_BANK
    from trainer_fixtures import write_frame_shards

    shards = write_frame_shards(tmp_path / "shards", shards=1, rows=4)
    path = next(shards.glob("*.parquet"))
    checkpoint = small_checkpoint
    table = pq.read_table(path)
    if fault == "corrupt image cell":
        images = table.column("image").to_pylist()
        images[1] = images[1][: len(images[1]) // 2]
        i = table.schema.get_field_index("image")
        pq.write_table(table.set_column(i, table.schema.field(i), pa.array(images, pa.binary())), path)
    elif fault == "bank shards as frames":  # a bank folder given to --shards
        from schemas.manifest import Manifest, shard_info, write_manifest

        pq.write_table(pa.table({n: pa.array([], f.type) for n, f in zip(OBJECT_BANK.schema.names, OBJECT_BANK.schema)},
                                schema=OBJECT_BANK.schema), path)
        write_manifest(str(shards), Manifest(OBJECT_BANK.name, OBJECT_BANK.version, (shard_info(str(path)),)))
    elif fault == "unknown schema version":
        meta = dict(table.schema.metadata)
        meta[b"stylepaste.schema_version"] = b"9"
        pq.write_table(table.replace_schema_metadata(meta), path)
    else:
        checkpoint = str(tmp_path / "ckpt.pt")
        torch.save({"state_dict": {"nothing.weight": torch.zeros(1)}}, checkpoint)
    rc = cli.main(["finetune", "--shards", str(shards), "--checkpoint", checkpoint, "--arch", "small", "--out",
                   str(tmp_path / "ft"), "--steps", "2", "--batch-size", "2", "--workers", "0", "--no-progress",
                   "--no-flip"])
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert rc == 2 and len(err) == 1 and err[0].startswith("stylepaste finetune: error: "), err
    assert expected in err[0]
    assert not (tmp_path / "ft").exists()
