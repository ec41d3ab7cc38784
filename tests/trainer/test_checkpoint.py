"""Checkpoint reading and writing: public layouts, strictness, clear errors, no unsafe unpickling.

Layout tests use the small model (a 9 MB state dict) in the public file layouts; the key
clean-up for R101's ``dsn`` head is checked on a meta-device R101 through the pure core.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import fsspec
import numpy as np
import pytest
import torch

from trainer.checkpoint import (
    CheckpointError,
    checkpoint_info,
    load_checkpoint,
    prepare_state_dict,
    read_checkpoint,
    save_checkpoint,
)
from trainer.models import build_model


@pytest.fixture(scope="module")
def source() -> dict[str, torch.Tensor]:
    """A small-model state dict with non-trivial values everywhere (BN statistics included)."""
    torch.manual_seed(0)
    model = build_model("small")
    with torch.no_grad():
        for t in model.state_dict().values():
            if t.is_floating_point():
                t.copy_(torch.rand_like(t) + 0.5)
    return {k: v.clone() for k, v in model.state_dict().items()}


def _assert_loaded(model: torch.nn.Module, source: dict[str, torch.Tensor]) -> None:
    got = model.state_dict()
    assert got.keys() == source.keys()
    for key, value in source.items():
        if not key.endswith("num_batches_tracked"):
            assert torch.equal(got[key], value), key


def test_nvidia_layout_loads_strictly(tmp_path, source):
    ck = {
        "state_dict": {"module." + k: v for k, v in source.items()}
        | {"module.criterion.nll_loss.weight": torch.ones(19)},
        "optimizer": {"state": {}, "param_groups": [{"lr": 0.01, "params": [0, 1]}]},
        "epoch": 175,
        "mean_iu": np.float64(0.8046),
        "command": "train.py --arch network.deepv3.DeepWV3Plus",
    }
    path = tmp_path / "cityscapes_best.pth"
    torch.save(ck, path)
    model = build_model("small")
    info = load_checkpoint(model, str(path))
    _assert_loaded(model, source)
    assert info["layout"] == "state_dict"
    assert info["dropped_keys"] == ["module.criterion.nll_loss.weight"]
    assert info["missing_keys"] == info["unexpected_keys"] == []
    assert info["metadata"] == {"epoch": 175, "mean_iu": pytest.approx(0.8046), "command": ck["command"]}
    assert type(info["metadata"]["mean_iu"]) is float


def test_legacy_file_with_numpy1_scalar_loads(tmp_path, source):
    """Old (non-zip) torch files whose metadata holds a numpy 1.x scalar (``numpy.core...``)."""
    path = tmp_path / "old.pth"
    state = {"module." + k: v for k, v in source.items()}
    ck = {"state_dict": state, "mean_iu": np.float64(0.5), "epoch": np.int64(3)}
    torch.save(ck, path, _use_new_zipfile_serialization=False)
    data = path.read_bytes()
    assert data.count(b"numpy._core.multiarray\nscalar") == 1
    path.write_bytes(data.replace(b"numpy._core.multiarray\nscalar", b"numpy.core.multiarray\nscalar"))
    model = build_model("small")
    info = load_checkpoint(model, str(path))
    _assert_loaded(model, source)
    assert info["metadata"] == {"mean_iu": 0.5, "epoch": 3}


def test_raw_state_dict_without_num_batches_tracked_loads(tmp_path, source):
    raw = {k: v for k, v in source.items() if not k.endswith("num_batches_tracked")}
    path = tmp_path / "raw.pth"
    torch.save(raw, path)
    model = build_model("small")
    info = load_checkpoint(model, str(path))
    _assert_loaded(model, source)
    assert info["layout"] == "raw" and info["missing_keys"] == [] and info["missing_optional_keys"] == []


def test_sml_layout_dsn_is_dropped_for_models_without_dsn(tmp_path, source):
    dsn = {"dsn.0.weight": torch.zeros(8, 64, 3, 3), "dsn.0.bias": torch.zeros(8), "dsn.4.weight": torch.zeros(19, 8, 1, 1)}
    state = {"module." + k: v for k, v in (source | dsn).items()}
    ck = {"state_dict": state, "scheduler": {"last_epoch": 3}, "epoch": 3}
    path = tmp_path / "sml.pth"
    torch.save(ck, path)
    model = build_model("small")
    info = load_checkpoint(model, str(path))
    _assert_loaded(model, source)
    assert sorted(info["dropped_keys"]) == sorted("module." + k for k in dsn)


def test_r101_dsn_may_be_missing_as_a_whole_but_not_in_part():
    with torch.device("meta"):
        model = build_model("r101")
    full = model.state_dict()
    without_dsn = {"module." + k: v for k, v in full.items() if not k.startswith("dsn.")}
    clean, report = prepare_state_dict(model, without_dsn)
    assert clean.keys() == full.keys()
    assert report["missing_optional_keys"] == [k for k in full if k.startswith("dsn.") and "num_batches" not in k]
    assert report["missing_keys"] == []

    clean, report = prepare_state_dict(model, full)  # SML file with dsn: nothing dropped or missing
    assert report == {"dropped_keys": [], "missing_optional_keys": [], "missing_keys": [], "unexpected_keys": []}

    partial = {k: v for k, v in full.items() if k != "dsn.4.bias"}
    with pytest.raises(CheckpointError, match=r"1 missing key\(s\) \['dsn.4.bias'\]"):
        prepare_state_dict(model, partial)


def test_pebal_20_class_checkpoint_gives_class_count_error(tmp_path):
    pebal = build_model("small", num_classes=20).state_dict()
    path = tmp_path / "pebal.pth"
    torch.save({"model": {"branch1." + k: v for k, v in pebal.items()}, "epoch": 1, "iteration": 100}, path)
    with pytest.raises(CheckpointError, match=r"class count mismatch.*20 output classes.*num_classes=19.*PEBAL"):
        load_checkpoint(build_model("small"), str(path))
    model20 = build_model("small", num_classes=20)
    info = load_checkpoint(model20, str(path))
    assert info["layout"] == "model"
    assert torch.equal(model20.final[6].weight, pebal["final.6.weight"])


def test_missing_and_unexpected_keys_are_listed_briefly(tmp_path, source):
    broken = {k: v for i, (k, v) in enumerate(source.items()) if i % 4}  # drops 1 key in 4
    dropped = [k for k in source if k not in broken and not k.endswith("num_batches_tracked")]
    broken["head.extra.weight"] = torch.zeros(3)
    path = tmp_path / "broken.pth"
    torch.save(broken, path)
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(build_model("small"), str(path))
    message = str(err.value)
    assert f"{len(dropped)} missing key(s)" in message and repr(dropped[0]) in message
    assert f"(+{len(dropped) - 8} more)" in message and repr(dropped[-1]) not in message
    assert "1 unexpected key(s) ['head.extra.weight']" in message
    assert len(message) < 1500

    model = build_model("small")
    info = load_checkpoint(model, str(path), strict=False)
    assert info["missing_keys"] == dropped and info["unexpected_keys"] == ["head.extra.weight"]
    loaded = model.state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in broken.items() if k in source)


def test_shape_mismatch_is_an_error_even_when_not_strict(tmp_path, source):
    bad = dict(source)
    bad["layer2.0.conv1.weight"] = torch.zeros(64, 32, 1, 1)
    path = tmp_path / "bad.pth"
    torch.save(bad, path)
    for strict in (True, False):
        match = r"layer2.0.conv1.weight: file \[64, 32, 1, 1\] vs model \[64, 32, 3, 3\]"
        with pytest.raises(CheckpointError, match=match):
            load_checkpoint(build_model("small"), str(path), strict=strict)


def _touch_marker(path: str) -> None:
    Path(path).write_text("executed")


class _Exploit:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (_touch_marker, (self.marker,))


def test_disallowed_global_is_refused_without_running_it(tmp_path, source):
    marker = tmp_path / "marker.txt"
    path = tmp_path / "evil.pth"
    torch.save({"state_dict": source, "epoch": _Exploit(str(marker))}, path)
    with pytest.raises(CheckpointError, match=r"refusing to load .*_touch_marker.*weights_only=True"):
        load_checkpoint(build_model("small"), str(path))
    assert not marker.exists()


def test_unreadable_and_absent_files(tmp_path):
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a checkpoint" * 8)
    with pytest.raises(CheckpointError, match="cannot read .*junk.pth"):
        read_checkpoint(str(junk))
    with pytest.raises(FileNotFoundError, match="absent.pth"):
        read_checkpoint(str(tmp_path / "absent.pth"))
    other = tmp_path / "other.pth"
    torch.save({"weights": [1, 2], "epoch": 3}, other)
    with pytest.raises(CheckpointError, match=r"no state dict found.*'weights': list"):
        load_checkpoint(build_model("small"), str(other))


@pytest.mark.parametrize("where", ["memory", "local"])
def test_save_checkpoint_round_trip(tmp_path, source, where):
    url = f"memory://ck-{uuid.uuid4().hex}/run/head.pth" if where == "memory" else str(tmp_path / "a" / "b.pth")
    model = build_model("small")
    model.load_state_dict(source)
    save_checkpoint(model, url, metadata={"seed": 3, "loss": "topk_ovr", "k": [5], "mean_iu": None})
    with fsspec.open(url, "rb") as f:
        plain = torch.load(f, weights_only=True)  # loadable without any extra allowed globals
    assert plain["arch"] == "small" and plain["num_classes"] == 19
    assert plain["model_config"]["widths"] == [32, 64, 128, 160]

    fresh = build_model("small")
    info = load_checkpoint(fresh, url)
    _assert_loaded(fresh, source)
    assert info["layout"] == "stylepaste"
    assert info["metadata"]["metadata"] == {"seed": 3, "loss": "topk_ovr", "k": [5], "mean_iu": None}
    assert checkpoint_info(url) | {"metadata": None} == {
        "layout": "stylepaste",
        "metadata": None,
        "arch": "small",
        "num_classes": 19,
        "num_tensors": len(source),
    }
    with torch.device("meta"):
        other_arch = build_model("r101")
    with pytest.raises(CheckpointError, match="saved from arch 'small', the model is 'r101'"):
        load_checkpoint(other_arch, url)
    if where == "memory":
        fsspec.filesystem("memory").rm(url.removeprefix("memory://").split("/")[0], recursive=True)


def test_save_checkpoint_rejects_bad_input(source):
    url = f"memory://ck-{uuid.uuid4().hex}.pth"
    with pytest.raises(ValueError, match="metadata entry 'seed' is not JSON-able"):
        save_checkpoint(source, url, metadata={"seed": np.int64(1)})
    with pytest.raises(ValueError, match="not tensors: \\['bad'\\]"):
        save_checkpoint({"bad": 1.0}, url)
    assert not fsspec.filesystem("memory").exists(url.removeprefix("memory://"))


def test_checkpoint_info_guesses_arch_and_classes(tmp_path, source):
    path = tmp_path / "raw.pth"
    torch.save({"state_dict": {"module." + k: v for k, v in source.items()}}, path)
    info = checkpoint_info(str(path))
    assert (info["arch"], info["num_classes"], info["layout"]) == ("small", 19, "state_dict")


def test_head_only_checkpoint_loads_non_strictly(tmp_path, source):
    head = {k: v for k, v in source.items() if k.startswith("final.6.")}
    url = str(tmp_path / "head.pt")
    save_checkpoint(head, url, arch="small", num_classes=19, metadata={"head": "classifier"})
    model = build_model("small")
    with pytest.raises(CheckpointError, match="missing key"):
        load_checkpoint(model, url)
    info = load_checkpoint(model, url, strict=False)
    assert torch.equal(model.final[6].weight, source["final.6.weight"])
    assert len(info["missing_keys"]) == len([k for k in source if not k.endswith("num_batches_tracked")]) - 2
