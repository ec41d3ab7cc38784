from __future__ import annotations

import io
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import ndimage
from sklearn.metrics import average_precision_score, roc_auc_score, roc_curve

from evaluation.metrics import (
    SIOU_THRESHOLDS,
    AnomalyMetrics,
    ComponentMetrics,
    FalseAlarmsByClass,
    SegmentationMetrics,
)

REPO = Path(__file__).resolve().parents[2]
TOL = 1e-9


# ----------------------------------------------------------------------------------------------------
# Reference computations
# ----------------------------------------------------------------------------------------------------


def pooled(frames: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """Valid pixels of all frames as (y_true, scores), the way sklearn users pool them."""
    ys, ss = [], []
    for s, y in frames:
        s, y = np.asarray(s).ravel(), np.asarray(y).ravel()
        ys.append((y[y != 255] == 1).astype(np.uint8))
        ss.append(s[y != 255])
    return np.concatenate(ys), np.concatenate([s.astype(np.float64) for s in ss])


def fpr_first(y: np.ndarray, s: np.ndarray, target: float = 0.95) -> float:
    """FPR at the highest threshold with TPR >= target, on the curve over all distinct thresholds."""
    fpr, tpr, _ = roc_curve(y, s, drop_intermediate=False)
    return float(fpr[np.flatnonzero(tpr >= target)[0]])


def fpr_closest(y: np.ndarray, s: np.ndarray, target: float = 0.95) -> float:
    """PEBAL's rule: TPR closest to the target among the distinct thresholds down to the first point of
    full recall, scanned from the lowest of them upwards (np.argmin keeps the first minimum)."""
    fpr, tpr, _ = roc_curve(y, s, drop_intermediate=False)
    fpr, tpr = fpr[1:], tpr[1:]  # drop sklearn's extra (0, 0) point at threshold +inf
    last = int(np.flatnonzero(tpr == 1.0)[0])
    candidates_tpr, candidates_fpr = tpr[: last + 1][::-1], fpr[: last + 1][::-1]
    return float(candidates_fpr[np.argmin(np.abs(candidates_tpr - target))])


def assert_matches_sklearn(m: AnomalyMetrics, frames: list[tuple[np.ndarray, np.ndarray]]) -> dict:
    y, s = pooled(frames)
    r = m.compute()
    assert r["num_pos"] == int(y.sum()) and r["num_neg"] == int(y.size - y.sum())
    assert abs(r["auroc"] - roc_auc_score(y, s)) < TOL
    assert abs(r["ap"] - average_precision_score(y, s)) < TOL
    expected_fpr = fpr_first(y, s) if m.fpr_mode == "first" else fpr_closest(y, s)
    assert abs(r["fpr95"] - expected_fpr) < TOL
    return r


def random_frames(rng: np.random.Generator, shapes, pos_rate: float, void_rate: float, decimals: int | None = None):
    frames = []
    for shape in shapes:
        y = (rng.random(shape) < pos_rate).astype(np.uint8)
        y[rng.random(shape) < void_rate] = 255
        s = (rng.standard_normal(shape) + 1.5 * (y == 1)).astype(np.float32)
        if decimals is not None:
            s = np.round(s, decimals).astype(np.float32)
        frames.append((s, y))
    return frames


# ----------------------------------------------------------------------------------------------------
# AnomalyMetrics: exactness
# ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["first", "closest"])
def test_random_scores_multiple_updates_match_sklearn(mode):
    rng = np.random.default_rng(0)
    frames = random_frames(rng, [(37, 53), (2, 64, 48), (1, 5, 7), (128, 96)], pos_rate=0.05, void_rate=0.1)
    m = AnomalyMetrics(fpr_mode=mode)
    for i, (s, y) in enumerate(frames):
        m.update(torch.from_numpy(s) if i % 2 else s, torch.from_numpy(y) if i % 2 else y)
    r = assert_matches_sklearn(m, frames)
    assert 0.5 < r["auroc"] < 1.0


@pytest.mark.parametrize("mode", ["first", "closest"])
@pytest.mark.parametrize("decimals", [0, 1])
def test_tie_heavy_scores_match_sklearn(mode, decimals):
    rng = np.random.default_rng(1 + decimals)
    frames = random_frames(rng, [(64, 64), (3, 40, 40), (90, 30)], pos_rate=0.2, void_rate=0.05, decimals=decimals)
    m = AnomalyMetrics(fpr_mode=mode)
    for s, y in frames:
        m.update(s, y)
    _, s_all = pooled(frames)
    assert np.unique(s_all).size < 200  # really tie-heavy
    assert_matches_sklearn(m, frames)


def test_tiny_positive_rate_matches_sklearn():
    rng = np.random.default_rng(2)
    frames = random_frames(rng, [(4, 256, 256)], pos_rate=1e-4, void_rate=0.1)
    frames += random_frames(rng, [(256, 256)], pos_rate=1e-4, void_rate=0.0, decimals=2)
    for mode in ("first", "closest"):
        m = AnomalyMetrics(fpr_mode=mode)
        for s, y in frames:
            m.update(s, y)
        r = assert_matches_sklearn(m, frames)
        assert 10 <= r["num_pos"] <= 200


def test_negative_zero_equals_positive_zero():
    rng = np.random.default_rng(3)
    y = (rng.random(400) < 0.3).astype(np.uint8)
    s = rng.choice(np.array([-0.0, 0.0, 1.0, -1.0], dtype=np.float32), size=400)
    assert np.signbit(s[s == 0]).any() and (~np.signbit(s[s == 0])).any()
    m = AnomalyMetrics()
    m.update(s.reshape(20, 20), y.reshape(20, 20))
    r = assert_matches_sklearn(m, [(s, y)])
    # Same result as with every zero written +0.0, and no -0.0 leaks into reported thresholds.
    m2 = AnomalyMetrics()
    m2.update(np.abs(s).reshape(20, 20) * np.sign(s).reshape(20, 20) + 0.0, y.reshape(20, 20))
    assert m2.compute() == r
    for key in ("fpr95_threshold", "best_f1_threshold"):
        assert not (r[key] == 0 and np.signbit(r[key]))


def test_float64_and_integer_scores_mixed_with_float32_are_exact():
    rng = np.random.default_rng(4)
    s32 = rng.standard_normal((30, 30)).astype(np.float32)
    s64 = rng.standard_normal((30, 30)) * (1 + 1e-12)  # values float32 cannot hold
    s_int = rng.integers(-3, 4, size=(10, 10))
    ys = [(rng.random(sh) < 0.2).astype(np.uint8) for sh in ((30, 30), (30, 30), (10, 10))]
    m = AnomalyMetrics()
    m.update(s32, ys[0])
    m.compute()  # sorts the float32 scores; the float64 update below must widen them exactly
    m.update(s64, ys[1])
    m.update(s_int, ys[2])
    assert_matches_sklearn(m, [(s32, ys[0]), (s64, ys[1]), (s_int, ys[2])])


def test_update_after_compute_and_repeated_compute():
    rng = np.random.default_rng(5)
    frames = random_frames(rng, [(50, 50), (60, 40), (30, 30)], pos_rate=0.1, void_rate=0.1, decimals=1)
    m = AnomalyMetrics()
    m.update(*frames[0])
    first = assert_matches_sklearn(m, frames[:1])
    assert m.compute() == first
    m.update(*frames[1])
    m.update(*frames[2])
    assert_matches_sklearn(m, frames)
    # Many compute calls between updates (one sorted run each, then a full re-sort) stay exact.
    single = AnomalyMetrics(num_threads=1)
    more = random_frames(rng, [(20, 20)] * 7, pos_rate=0.2, void_rate=0.1, decimals=1)
    for i, f in enumerate(more):
        single.update(*f)
        assert_matches_sklearn(single, more[: i + 1])


def test_fpr_conventions_on_a_hand_made_curve():
    # 19 positives at 10 and one at 0 (TPR 0.95 reached at threshold 10); negatives: 2 at 20, 3 at 5, 5 at -1.
    # Distinct thresholds: 20 (tp 0, fp 2), 10 (19, 2), 5 (19, 5), 0 (20, 5), -1 (20, 10).
    scores = np.array([10.0] * 19 + [0.0] + [20.0] * 2 + [5.0] * 3 + [-1.0] * 5, dtype=np.float32)
    labels = np.array([1] * 20 + [0] * 10, dtype=np.uint8)
    first = AnomalyMetrics(fpr_mode="first")
    first.update(scores[None], labels[None])
    r = first.compute()
    assert r["fpr95"] == 2 / 10 and r["fpr95_threshold"] == 10.0  # highest threshold with TPR >= 0.95
    closest = AnomalyMetrics(fpr_mode="closest")
    closest.update(scores[None], labels[None])
    r = closest.compute()
    # |TPR - 0.95| = 0 at thresholds 10 and 5; PEBAL's scan keeps the lower one: FPR 5/10.
    assert r["fpr95"] == 5 / 10 and r["fpr95_threshold"] == 5.0
    assert r["fpr95"] == fpr_closest(labels, scores)
    # The same rule applied to sklearn's ascending roc_curve arrays picks the other end of the tie.
    fpr, tpr, _ = roc_curve(labels, scores)
    assert fpr[np.argmin(np.abs(tpr - 0.95))] == 2 / 10


@pytest.mark.parametrize("mode", ["first", "closest"])
def test_fpr95_threshold_reproduces_the_operating_point(mode):
    rng = np.random.default_rng(6)
    (s, y), = random_frames(rng, [(80, 80)], pos_rate=0.1, void_rate=0.0, decimals=1)
    m = AnomalyMetrics(fpr_mode=mode)
    m.update(s, y)
    r = m.compute()
    t = np.float32(r["fpr95_threshold"])
    assert np.mean(s[y == 0] >= t) == pytest.approx(r["fpr95"], abs=1e-12)
    f1 = 2 * np.sum(s[y == 1] >= np.float32(r["best_f1_threshold"]))
    f1 /= np.sum(s >= np.float32(r["best_f1_threshold"])) + np.sum(y == 1)
    assert f1 == pytest.approx(r["best_f1"], abs=1e-12)


def test_tpr_target_option():
    rng = np.random.default_rng(7)
    (s, y), = random_frames(rng, [(60, 60)], pos_rate=0.1, void_rate=0.0)
    m = AnomalyMetrics(tpr_target=0.8)
    m.update(s, y)
    assert abs(m.compute()["fpr95"] - fpr_first(*pooled([(s, y)]), target=0.8)) < TOL


def test_curves_are_consistent_with_the_metrics():
    rng = np.random.default_rng(8)
    frames = random_frames(rng, [(70, 70)], pos_rate=0.1, void_rate=0.1, decimals=1)
    m = AnomalyMetrics()
    m.update(*frames[0])
    r, c = m.compute(), m.curves()
    assert abs(np.trapezoid(c["tpr"], c["fpr"]) - r["auroc"]) < TOL
    assert abs(np.sum(np.diff(c["recall"], prepend=0.0) * c["precision"]) - r["ap"]) < TOL
    assert c["fpr"][0] == 0 and c["tpr"][0] == 0 and c["fpr"][-1] == 1 and c["tpr"][-1] == 1
    assert np.all(np.diff(c["fpr"]) >= 0) and np.all(np.diff(c["tpr"]) >= 0)


# ----------------------------------------------------------------------------------------------------
# AnomalyMetrics: state
# ----------------------------------------------------------------------------------------------------


def test_merge_and_state_dict_round_trip():
    rng = np.random.default_rng(9)
    frames = random_frames(rng, [(40, 40), (2, 30, 30), (50, 20), (25, 25)], pos_rate=0.1, void_rate=0.1, decimals=1)
    whole = AnomalyMetrics()
    for f in frames:
        whole.update(*f)
    a, b = AnomalyMetrics(), AnomalyMetrics()
    for f in frames[:2]:
        a.update(*f)
    for f in frames[2:]:
        b.update(*f)
    b.compute()  # b's scores are sorted now; merging must not disturb them
    b_before = b.compute()
    assert a.merge(b) is a
    assert a.compute() == whole.compute()
    assert b.compute() == b_before

    buf = io.BytesIO()
    torch.save(a.state_dict(), buf)
    buf.seek(0)
    restored = AnomalyMetrics()
    restored.load_state_dict(torch.load(buf, weights_only=True))
    assert restored.compute() == whole.compute()
    assert_matches_sklearn(restored, frames)


def test_state_dict_tensors_stay_valid_while_the_metric_grows():
    rng = np.random.default_rng(12)
    frames = random_frames(rng, [(300, 300)] * 4, pos_rate=0.1, void_rate=0.0)
    m = AnomalyMetrics()
    m.update(*frames[0])
    held = m.state_dict()
    snapshot = {k: held[k].clone() for k in ("pos", "neg")}
    for f in frames[1:]:
        m.update(*f)  # the buffers must grow without freeing the memory the tensors point to
    assert all(torch.equal(held[k], snapshot[k]) for k in ("pos", "neg"))
    assert_matches_sklearn(m, frames)


def test_load_state_dict_rejects_bad_states():
    m = AnomalyMetrics()
    good = {"kind": "AnomalyMetrics", "version": 1, "pos": torch.ones(3), "neg": torch.zeros(3)}
    m.load_state_dict(good)
    assert m.num_pos == 3 and m.num_neg == 3
    with pytest.raises(ValueError, match="kind"):
        m.load_state_dict({**good, "kind": "ComponentMetrics"})
    with pytest.raises(ValueError, match="version"):
        m.load_state_dict({**good, "version": 99})
    with pytest.raises(ValueError, match="lacks keys"):
        m.load_state_dict({k: v for k, v in good.items() if k != "neg"})
    with pytest.raises(ValueError, match="dtype"):
        m.load_state_dict({**good, "pos": torch.ones(3, dtype=torch.int64)})
    with pytest.raises(ValueError, match="finite"):
        m.load_state_dict({**good, "neg": torch.tensor([0.0, float("nan")])})


def test_sync_is_a_no_op_without_distributed():
    m = AnomalyMetrics()
    m.update(np.array([[0.1, 0.9]], dtype=np.float32), np.array([[0, 1]], dtype=np.uint8))
    m.sync()
    assert m.num_pos == 1 and m.num_neg == 1


_SYNC_SCRIPT = """
import sys, json
import numpy as np, torch, torch.distributed as dist
from evaluation.metrics import AnomalyMetrics, ComponentMetrics, SegmentationMetrics
rank, path = int(sys.argv[1]), sys.argv[2]
dist.init_process_group("gloo", init_method="file://" + path + "/rdv", rank=rank, world_size=2)
rng = np.random.default_rng(rank)
n = 300 + 200 * rank                       # different sizes per rank
s = np.round(rng.standard_normal((1, n)), 1).astype(np.float64 if rank else np.float32)
y = (rng.random((1, n)) < 0.2).astype(np.uint8)
m = AnomalyMetrics(); m.update(s, y); m.sync()
c = ComponentMetrics(0.5, min_gt_size=1, min_pred_size=1)
c.update(np.kron(s[:, :100].reshape(10, 10), np.ones((3, 3))), np.kron(y[:, :100].reshape(10, 10), np.ones((3, 3), np.uint8)))
c.sync()
seg = SegmentationMetrics(num_classes=3); seg.update(rng.integers(0, 3, (8, 8)), rng.integers(0, 3, (8, 8))); seg.sync()
out = dict(anomaly=m.compute(), component=c.compute(), confusion=seg.confusion.tolist())
open(path + "/out%d.json" % rank, "w").write(json.dumps(out))
dist.destroy_process_group()
"""


def test_sync_across_two_gloo_processes(tmp_path):
    script = tmp_path / "sync.py"
    script.write_text(textwrap.dedent(_SYNC_SCRIPT))
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    procs = [subprocess.Popen([sys.executable, str(script), str(r), str(tmp_path)], env=env, cwd=REPO,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT) for r in range(2)]
    for p in procs:
        out, _ = p.communicate(timeout=120)
        assert p.returncode == 0, out.decode()
    import json

    results = [json.loads((tmp_path / f"out{r}.json").read_text()) for r in range(2)]
    assert results[0] == results[1]
    # Every rank now has the union of both ranks' data: recompute it locally.
    whole, comp, seg = AnomalyMetrics(), ComponentMetrics(0.5, min_gt_size=1, min_pred_size=1), SegmentationMetrics(3)
    frames = []
    for rank in range(2):
        rng = np.random.default_rng(rank)
        n = 300 + 200 * rank
        s = np.round(rng.standard_normal((1, n)), 1).astype(np.float64 if rank else np.float32)
        y = (rng.random((1, n)) < 0.2).astype(np.uint8)
        whole.update(s, y)
        frames.append((s, y))
        comp.update(np.kron(s[:, :100].reshape(10, 10), np.ones((3, 3))), np.kron(y[:, :100].reshape(10, 10), np.ones((3, 3), np.uint8)))
        seg.update(rng.integers(0, 3, (8, 8)), rng.integers(0, 3, (8, 8)))
    assert results[0]["anomaly"] == whole.compute()
    assert results[0]["component"] == pytest.approx(comp.compute(), nan_ok=True)
    assert results[0]["confusion"] == seg.confusion.tolist()
    assert_matches_sklearn(whole, frames)


# ----------------------------------------------------------------------------------------------------
# AnomalyMetrics: errors
# ----------------------------------------------------------------------------------------------------


def test_input_errors():
    m = AnomalyMetrics()
    s = np.zeros((4, 4), dtype=np.float32)
    y = np.zeros((4, 4), dtype=np.uint8)
    bad = s.copy()
    bad[1, 1] = np.nan
    with pytest.raises(ValueError, match="finite.*1 NaN"):
        m.update(bad, y)
    bad[1, 1] = np.inf
    with pytest.raises(ValueError, match="finite.*1 infinite"):
        m.update(bad, y)
    y_pos = y.copy()
    y_pos[0, 0] = 1
    with pytest.raises(ValueError, match="finite on in-distribution pixels"):
        m.update(bad, y_pos)  # the anomaly pixel is fine, the update is still rejected as a whole
    assert m.num_pos == 0 and m.num_neg == 0
    y_void = y.copy()
    y_void[1, 1] = 255
    m.update(bad, y_void)  # a non-finite score on a void pixel is ignored
    assert m.num_neg == 15
    with pytest.raises(ValueError, match="same shape"):
        m.update(s, y[:3])
    with pytest.raises(ValueError, match=r"\(H, W\) or \(B, H, W\)"):
        m.update(s.ravel(), y.ravel())
    y_bad = y.copy()
    y_bad[0, :2] = 2
    with pytest.raises(ValueError, match=r"0 \(in-distribution\), 1 \(anomaly\) or 255.*2 pixels.*\[2\]"):
        m.update(s, y_bad)
    with pytest.raises(TypeError, match="numpy array or a torch tensor"):
        m.update(s.tolist(), y)
    with pytest.raises(ValueError, match="fpr_mode"):
        AnomalyMetrics(fpr_mode="nearest")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="tpr_target"):
        AnomalyMetrics(tpr_target=1.5)


def test_compute_needs_both_classes():
    m = AnomalyMetrics()
    with pytest.raises(ValueError, match="num_pos=0, num_neg=0"):
        m.compute()
    m.update(np.ones((2, 2), np.float32), np.zeros((2, 2), np.uint8))
    with pytest.raises(ValueError, match="num_pos=0, num_neg=4"):
        m.compute()
    only_pos = AnomalyMetrics()
    only_pos.update(np.ones((2, 2), np.float32), np.ones((2, 2), np.uint8))
    with pytest.raises(ValueError, match="num_pos=4, num_neg=0"):
        only_pos.compute()


# ----------------------------------------------------------------------------------------------------
# ComponentMetrics
# ----------------------------------------------------------------------------------------------------


def _component(threshold=0.5, gt=1, pred=1):
    return ComponentMetrics(threshold, min_gt_size=gt, min_pred_size=pred)


def test_component_perfect_prediction():
    y = np.zeros((40, 40), np.uint8)
    y[5:25, 10:30] = 1
    c = _component()
    c.update(y.astype(np.float32), y)
    r = c.compute()
    assert r["siou_gt"] == 1 and r["ppv"] == 1 and r["siou_pred"] == 1 and r["f1_mean"] == 1
    assert r["num_gt_components"] == 1 and r["num_pred_components"] == 1 and r["num_frames"] == 1


def test_component_adjusted_union_for_one_prediction_over_two_objects():
    # Two 10x10 objects 5 columns apart; one prediction covers both and the gap (10 x 25 = 250 px).
    y = np.zeros((30, 50), np.uint8)
    y[10:20, 10:20] = 1
    y[10:20, 25:35] = 1
    s = np.zeros((30, 50), np.float32)
    s[10:20, 10:35] = 1.0
    c = _component()
    c.update(s, y)
    r = c.compute()
    # GT: |k ∩ K'| = 100; the union without the other object = 100 + 50 (gap) -> 2/3 (plain IoU: 100/250).
    assert r["siou_gt"] == pytest.approx(100 / 150)
    # Prediction: it intersects both objects (200 px), union = 250 -> 0.8; PPV = 200/250.
    assert r["siou_pred"] == pytest.approx(200 / 250)
    assert r["ppv"] == pytest.approx(200 / 250)
    # sIoU 2/3 passes thresholds 0.25..0.65 (9 of 11); PPV 0.8 passes all.
    n_pass = sum(t <= 100 / 150 for t in SIOU_THRESHOLDS)
    assert n_pass == 9
    assert r["f1_mean"] == pytest.approx(n_pass / len(SIOU_THRESHOLDS))
    assert (r["tp_50"], r["fn_50"], r["fp_50"], r["f1_50"]) == (2, 0, 0, 1.0)
    assert (r["tp_75"], r["fn_75"], r["fp_75"], r["f1_75"]) == (0, 2, 0, 0.0)


def test_component_two_predictions_on_one_object():
    # A 10x20 object; two 10x8 predictions on it with a 4-column gap (still object) between them.
    y = np.zeros((30, 40), np.uint8)
    y[10:20, 10:30] = 1
    s = np.zeros((30, 40), np.float32)
    s[10:20, 10:18] = 1
    s[10:20, 22:30] = 1
    c = _component()
    c.update(s, y)
    r = c.compute()
    assert r["siou_gt"] == pytest.approx(160 / 200)
    # Each prediction: 80 px on the object; union with the object minus the other prediction: 200 - 80.
    assert r["siou_pred"] == pytest.approx(80 / 120)
    assert r["ppv"] == 1.0
    assert (r["tp_50"], r["fn_50"], r["fp_50"]) == (1, 0, 0)


def test_component_void_size_filters_and_misses():
    y = np.zeros((60, 60), np.uint8)
    y[5:15, 5:15] = 1  # object A (100 px), predicted with a 10x10 spill onto void
    y[5:15, 15:25] = 255
    y[40:42, 40:42] = 1  # object B, 4 px: below min_gt_size -> void
    y[30:40, 5:15] = 1  # object C, 100 px, missed
    s = np.zeros((60, 60), np.float32)
    s[5:15, 5:25] = 0.9
    s[50:56, 50:58] = 0.9  # 48 px false positive: below min_pred_size -> dropped
    s[50:60, 20:30] = 0.9  # 100 px false positive, kept
    s[39:43, 39:43] = 0.9  # prediction around B: B's 4 px leave the ROI, 12 px remain (dropped, < 50)
    c = ComponentMetrics(0.9, min_gt_size=10, min_pred_size=50)
    c.update(s[None], y[None])
    v = c.component_values()
    assert sorted(v["siou_gt"].tolist()) == [0.0, 1.0]  # C missed, A exact (void spill not counted)
    assert sorted(v["ppv"].tolist()) == [0.0, 1.0]
    r = c.compute()
    assert (r["tp_50"], r["fn_50"], r["fp_50"]) == (1, 1, 1)
    assert r["f1_50"] == pytest.approx(2 / (2 + 1 + 1))
    # The threshold is inclusive: raising it just above 0.9 removes every prediction.
    above = ComponentMetrics(float(np.nextafter(np.float32(0.9), np.float32(1))), min_gt_size=10, min_pred_size=50)
    above.update(s, y)
    assert above.compute()["num_pred_components"] == 0 and above.compute()["siou_gt"] == 0.0


def test_component_matches_a_per_component_reference():
    rng = np.random.default_rng(10)
    c = _component(threshold=0.5, gt=5, pred=8)
    expected_gt, expected_pred, expected_ppv = [], [], []
    for _ in range(3):
        y = (ndimage.uniform_filter(rng.random((48, 64)), 5) > 0.56).astype(np.uint8)
        y[rng.random(y.shape) < 0.03] = 255
        s = ndimage.uniform_filter(rng.random((48, 64)), 5) + 0.08 * (y == 1)
        c.update(s, y)
        g, p, q = reference_components(s, y, 0.5, 5, 8)
        expected_gt += g
        expected_pred += p
        expected_ppv += q
    v = c.component_values()
    assert len(expected_gt) >= 5 and len(expected_pred) >= 5
    np.testing.assert_allclose(np.sort(v["siou_gt"]), np.sort(expected_gt))
    np.testing.assert_allclose(np.sort(v["siou_pred"]), np.sort(expected_pred))
    np.testing.assert_allclose(np.sort(v["ppv"]), np.sort(expected_ppv))


def reference_components(s, y, thr, min_gt, min_pred):
    """The SMIYC definition with explicit masks and loops, one component at a time."""
    st = np.ones((3, 3))
    pred, n_pred = ndimage.label((s >= thr) & (y != 255), st)
    for j in range(1, n_pred + 1):
        if (pred == j).sum() < min_pred:
            pred[pred == j] = 0
    gt, n_gt = ndimage.label(y == 1, st)
    roi = y != 255
    for i in range(1, n_gt + 1):
        if (gt == i).sum() < min_gt:
            roi &= gt != i
    out_gt, out_pred, out_ppv = [], [], []
    for i in range(1, n_gt + 1):
        k = (gt == i) & roi
        if not k.any():
            continue
        touching = np.unique(pred[k])
        kp = np.isin(pred, touching[touching > 0]) & roi
        others = (gt > 0) & (gt != i)
        out_gt.append((k & kp).sum() / ((k | kp) & ~others).sum())
    for j in range(1, n_pred + 1):
        k = (pred == j) & roi
        if not k.any():
            continue
        touching = np.unique(gt[k])
        kg = np.isin(gt, touching[touching > 0]) & roi
        others = (pred > 0) & (pred != j)
        out_pred.append((k & kg).sum() / ((k | kg) & ~others).sum())
        out_ppv.append((k & (gt > 0)).sum() / k.sum())
    return out_gt, out_pred, out_ppv


def test_component_state_merge_presets_and_errors():
    y = np.zeros((20, 20), np.uint8)
    y[2:8, 2:8] = 1
    s = y.astype(np.float32)
    a, b, whole = _component(), _component(), _component()
    a.update(s, y)
    b.update(s[::-1].copy(), y[::-1].copy())
    whole.update(np.stack([s, s[::-1]]), np.stack([y, y[::-1]]))
    restored = _component()
    restored.load_state_dict(a.merge(b).state_dict())
    assert restored.compute() == whole.compute()
    with pytest.raises(ValueError, match="settings"):
        _component(threshold=0.7).load_state_dict(a.state_dict())
    with pytest.raises(ValueError, match="settings"):
        a.merge(_component(gt=3))
    assert (ComponentMetrics.anomaly_track(0.1).min_gt_size, ComponentMetrics.anomaly_track(0.1).min_pred_size) == (100, 500)
    assert (ComponentMetrics.obstacle_track(0.1).min_gt_size, ComponentMetrics.obstacle_track(0.1).min_pred_size) == (10, 50)
    with pytest.raises(ValueError, match="same shape"):
        a.update(s, y[:5])
    with pytest.raises(ValueError, match="finite"):
        a.update(np.full((20, 20), np.nan, np.float32), y)
    with pytest.raises(ValueError, match="threshold must be finite"):
        ComponentMetrics(float("nan"))
    empty = _component().compute()
    assert np.isnan(empty["siou_gt"]) and np.isnan(empty["f1_mean"])


# ----------------------------------------------------------------------------------------------------
# SegmentationMetrics
# ----------------------------------------------------------------------------------------------------


def test_segmentation_iou_by_hand_with_ignore_labels():
    target = np.array([[0, 0, 1, 1], [2, 2, 255, 254]])
    pred = np.array([[0, 1, 1, 1], [2, 0, 2, 2]])
    m = SegmentationMetrics(num_classes=4)
    m.update(pred, target)
    r = m.compute()
    # class 0: tp 1, gt 2, pred 2 -> 1/3; class 1: tp 2, gt 2, pred 3 -> 2/3; class 2: tp 1, gt 2, pred 1 -> 1/2.
    assert r["iou"][:3] == pytest.approx([1 / 3, 2 / 3, 1 / 2])
    assert np.isnan(r["iou"][3])  # never occurs: excluded from the mean
    assert r["miou"] == pytest.approx((1 / 3 + 2 / 3 + 1 / 2) / 3)
    assert r["num_pixels"] == 6 and r["pixel_accuracy"] == pytest.approx(4 / 6)


def test_segmentation_torch_logits_merge_and_errors():
    rng = np.random.default_rng(11)
    logits = torch.from_numpy(rng.standard_normal((2, 19, 8, 8)).astype(np.float32))
    target = rng.integers(0, 19, (2, 8, 8))
    target[0, 0, :4] = 255
    target[1, 0, :4] = 254
    a = SegmentationMetrics()
    a.update(logits, torch.from_numpy(target))
    b = SegmentationMetrics()
    b.update(logits.argmax(1).numpy()[:1], target[:1])
    b.update(logits.numpy()[1], target[1])
    np.testing.assert_array_equal(a.confusion, b.confusion)
    assert a.confusion.sum() == 2 * 64 - 8
    c = SegmentationMetrics()
    c.load_state_dict(a.state_dict())
    c.merge(b)
    np.testing.assert_array_equal(c.confusion, 2 * a.confusion)
    with pytest.raises(ValueError, match=r"neither a class id.*\[19\]"):
        a.update(np.zeros((2, 2), int), np.full((2, 2), 19))
    with pytest.raises(ValueError, match="predictions are outside"):
        a.update(np.full((2, 2), 19), np.zeros((2, 2), int))
    with pytest.raises(ValueError, match="same shape"):
        a.update(np.zeros((2, 3), int), np.zeros((2, 2), int))
    with pytest.raises(ValueError, match="overlap"):
        SegmentationMetrics(num_classes=19, ignore_labels=(5,))


def test_false_alarms_by_class_add_up_to_the_fpr95_of_anomaly_metrics():
    rng = np.random.default_rng(5)
    frames = []
    for _ in range(3):
        pred = rng.integers(0, 4, size=(40, 50))
        label = np.where(rng.random((40, 50)) < 0.03, 1, 0).astype(np.uint8)
        label[:3] = 255
        score = (rng.normal(size=(40, 50)) + 2.0 * (label == 1) + 0.8 * (pred == 2)).astype(np.float32)
        frames.append((score, label, pred))
    am, exact, sampled = AnomalyMetrics(), FalseAlarmsByClass(num_classes=4, stride=1), FalseAlarmsByClass(4, 7)
    for score, label, pred in frames:
        am.update(score, label)
        exact.update(score, label, pred)
        sampled.update(torch.from_numpy(score), torch.from_numpy(label), torch.from_numpy(pred))
    v = am.compute()
    per = exact.compute(v["fpr95_threshold"])
    scores = np.concatenate([f[0][f[1] == 0] for f in frames])
    classes = np.concatenate([f[2][f[1] == 0] for f in frames])
    flagged = scores >= v["fpr95_threshold"]
    for k in range(4):
        assert per[k]["sampled"] == int((classes == k).sum())
        assert per[k]["fpr"] == pytest.approx(flagged[classes == k].mean())
        assert per[k]["alarm_share"] == pytest.approx(flagged[classes == k].sum() / flagged.sum())
    assert sum(c["fpr"] * c["inlier_share"] for c in per) == pytest.approx(v["fpr95"])
    assert max(range(4), key=lambda k: per[k]["fpr"]) == 2  # the class the score confuses with anomalies
    # every 7th inlier pixel across frame boundaries: a uniform sample of the same pixels
    assert sum(c["sampled"] for c in sampled.compute(0.0)) == -(-scores.size // 7)
    got = sampled.compute(v["fpr95_threshold"])
    assert [c["sampled"] for c in got] == [int((classes[::7] == k).sum()) for k in range(4)]
    assert [c["fpr"] for c in got] == pytest.approx([flagged[::7][classes[::7] == k].mean() for k in range(4)])


def test_false_alarms_by_class_refuses_bad_input():
    fa = FalseAlarmsByClass(num_classes=3, stride=1)
    with pytest.raises(ValueError, match="predicted has shape"):
        fa.update(np.zeros((2, 2), np.float32), np.zeros((2, 2), np.uint8), np.zeros((2, 3), np.int64))
    with pytest.raises(ValueError, match=r"predicted classes must be in 0\.\.2"):
        fa.update(np.zeros((2, 2), np.float32), np.zeros((2, 2), np.uint8), np.full((2, 2), 3))
    with pytest.raises(ValueError, match="labels must be 0"):
        fa.update(np.zeros((2, 2), np.float32), np.full((2, 2), 7, np.uint8), np.zeros((2, 2), np.int64))
    with pytest.raises(ValueError, match="stride must be"):
        FalseAlarmsByClass(stride=0)
    assert all(np.isnan(c["fpr"]) for c in fa.compute(0.0))
