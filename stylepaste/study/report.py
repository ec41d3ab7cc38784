"""Aggregation of the study's run records and its report (``study.json``, ``study.md``)."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from evaluation.scores import SCORE_TITLES
from schemas.labels import TRAIN_CLASSES
from stylepaste.study.config import (
    ALARM_CLASSES, ALARM_SCORE, INLIER_TITLES, METRIC_TITLES, METRICS, RECORD_VERSION, SCORES, SPLITS,
    GROUP_TITLES, Setting, StudyConfig, checkpoint_tag)

def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof=1; 0 for a single value)."""
    a = np.asarray(values, dtype=np.float64)
    if a.size == 0:
        return math.nan, math.nan
    return float(a.mean()), float(a.std(ddof=1)) if a.size > 1 else 0.0


def aggregate(runs: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Mean and std of every metric over runs (each with ``metrics`` and ``miou_change``).

    Returns:
        ``{"n", "metrics": {score: {metric: [mean, std]}}, "miou": [mean, std], "miou_change": [mean, std]}``.
    """
    out: dict[str, Any] = {"n": len(runs), "metrics": {}}
    for s in SCORES:
        if all(s in r["metrics"] for r in runs):
            out["metrics"][s] = {m: list(mean_std([r["metrics"][s][m] for r in runs])) for m in METRICS}
    for key in ("miou", "miou_change"):
        vals = [r[key] for r in runs if r.get(key) is not None]
        out[key] = list(mean_std(vals)) if len(vals) == len(runs) else None
    road = [road_fpr(r) for r in runs]
    out["road_fpr"] = list(mean_std(road)) if road and all(v is not None for v in road) else None
    return out


def road_fpr(record: dict[str, Any]) -> float | None:
    """FPR (in %) within the pixels predicted as road at the :data:`ALARM_SCORE`'s 95 % TPR threshold."""
    try:
        return record["false_alarms"][ALARM_SCORE][ALARM_CLASSES[0]]["fpr"]
    except (KeyError, IndexError, TypeError):
        return None


def fmt(ms: Sequence[float] | None, n: int) -> str:
    """``mean ± std`` with two decimals (``mean`` alone for a single run, ``–`` when missing)."""
    if ms is None or math.isnan(ms[0]):
        return "–"
    return f"{ms[0]:.2f}" if n < 2 else f"{ms[0]:.2f} ± {ms[1]:.2f}"


def _table_head(head: Sequence[str]) -> list[str]:
    """Header and alignment row of a markdown table whose first column is text and the others numbers."""
    return ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] + ["---:"] * (len(head) - 1)) + "|"]


def _setting_label(cfg: StudyConfig, st: Setting) -> str:
    """Row name of a setting in the tables that list every setting once (the label of its first group)."""
    group = next(g for g, rows in cfg.groups().items() if st in rows)
    return st.label(group, cfg.num_classes)


def markdown_tables(summary: dict[str, Any], cfg: StudyConfig) -> str:
    """The report tables (one per group; base models first)."""
    head = (["Setting", "n"] + [f"{SCORE_TITLES[s]} {METRIC_TITLES[m]}" for s in SCORES for m in METRICS]
            + [f"road FPR↓ ({SCORE_TITLES[ALARM_SCORE].lower()})", "ΔmIoU"])
    lines: list[str] = []
    base = summary["base"]
    for group, settings in cfg.groups().items():
        title = GROUP_TITLES[group].format(align=cfg.default_alignment, inlier=INLIER_TITLES[cfg.inlier])
        lines += [f"### {title}", "", *_table_head(head)]
        row = [f"base models (no finetuning; mIoU {fmt(base['miou'], base['n'])})", str(base["n"])]
        row += [fmt(base["metrics"].get(s, {}).get(m), base["n"]) for s in SCORES for m in METRICS]
        row += [fmt(base.get("road_fpr"), base["n"]), "0"]
        lines.append("| " + " | ".join(row) + " |")
        for st in settings:
            agg = summary["settings"].get(st.key)
            n = agg["n"] if agg else 0
            row = [st.label(group, cfg.num_classes), str(n)]
            if agg:
                row += [fmt(agg["metrics"].get(s, {}).get(m), n) for s in SCORES for m in METRICS]
                row += [fmt(agg.get("road_fpr"), n), fmt(agg["miou_change"], n)]
            else:
                row += ["not run"] * (len(head) - 2)
            lines.append("| " + " | ".join(row) + " |")
        lines.append("")
    return "\n".join(lines)


PER_BASE_COLUMNS: tuple[tuple[str, str], ...] = (("max_logit", "ap"), ("energy", "ap"), ("max_min", "ap"),
                                                   ("energy", "fpr95"))
"""(score, metric) columns of the per-base table."""


def per_base_table(cfg: StudyConfig, base_runs: Sequence[dict[str, Any]], runs: Sequence[dict[str, Any]]) -> str:
    """One row per setting, one column block per base model: mean ± std over that base's finetune seeds.

    Shows whether an ordering between settings holds within each base model, which the pooled tables (mean over
    every (base, seed) run) cannot show.
    """
    bases = sorted(base_runs, key=lambda r: r["base"])
    head = ["Setting"] + [f"{Path(b['base']).parent.name or b['base_sha']}: {SCORE_TITLES[s]} {METRIC_TITLES[m]}"
                          for b in bases for s, m in PER_BASE_COLUMNS] + ["n per base"]
    lines = _table_head(head)
    row = ["base model (no finetuning)"]
    for b in bases:
        row += [fmt([b["metrics"][s][m], 0.0], 1) for s, m in PER_BASE_COLUMNS]
    lines.append("| " + " | ".join(row + ["1"]) + " |")
    for st in cfg.settings():
        row, ns = [_setting_label(cfg, st)], []
        for b in bases:
            mine = [r for r in runs if r["key"] == st.key and r["base_sha"] == b["base_sha"]]
            ns.append(str(len(mine)))
            agg = aggregate(mine) if mine else None
            row += [fmt(agg["metrics"][s][m], agg["n"]) if agg and s in agg["metrics"] else "not run"
                    for s, m in PER_BASE_COLUMNS]
        lines.append("| " + " | ".join(row + ["/".join(ns)]) + " |")
    return "\n".join(lines) + "\n"


def false_alarm_table(cfg: StudyConfig, base_runs: Sequence[dict[str, Any]], runs: Sequence[dict[str, Any]]) -> str:
    """Where each setting's false alarms are: for :data:`ALARM_SCORE` at its 95 % TPR threshold, the FPR within
    the inlier pixels predicted as each class of :data:`ALARM_CLASSES`, and road's share of all false alarms
    (mean ± std over the runs that recorded it)."""
    head = (["Setting", "n"] + [f"{TRAIN_CLASSES[k]} FPR↓" for k in ALARM_CLASSES]
            + [f"{TRAIN_CLASSES[ALARM_CLASSES[0]]} share of alarms"])
    lines = _table_head(head)

    def row(label: str, recs: Sequence[dict[str, Any]]) -> str:
        recs = [r for r in recs if ALARM_SCORE in r.get("false_alarms", {})]
        cells = [label, str(len(recs))]
        for k in ALARM_CLASSES:
            vals = [r["false_alarms"][ALARM_SCORE][k]["fpr"] for r in recs]
            cells.append(fmt(mean_std([v for v in vals if v is not None]), len(recs)) if recs else "not run")
        share = [r["false_alarms"][ALARM_SCORE][ALARM_CLASSES[0]]["alarm_share"] for r in recs]
        cells.append(fmt(mean_std([v for v in share if v is not None]), len(recs)) if recs else "not run")
        return "| " + " | ".join(cells) + " |"

    lines.append(row("base models (no finetuning)", base_runs))
    for st in cfg.settings():
        lines.append(row(_setting_label(cfg, st), [r for r in runs if r["key"] == st.key]))
    return "\n".join(lines) + "\n"


def split_view(record: dict[str, Any], split: str) -> dict[str, Any] | None:
    """A run record as seen on one of :data:`SPLITS`: its top-level results are the test world's, the validation
    world's are under ``"validation"`` (``None`` when the record has none)."""
    if split == "test":
        return record
    if split != "validation":
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    v = record.get("validation")
    return None if v is None else {**record, **v}


def collect(cfg: StudyConfig, split: str = "test") -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The base and finetune run records in ``out/runs`` that belong to ``cfg`` (its bases, seeds, settings), as
    seen on ``split`` (:func:`split_view`)."""
    tags = {b: checkpoint_tag(b) for b in cfg.bases}
    keys = {s.key for s in cfg.settings()}
    bases, runs = [], []
    for f in sorted((Path(cfg.out) / "runs").glob("*.json")):
        r = json.loads(f.read_text())
        if r.get("base_sha") not in tags.values() or r["kind"] == "probe":
            continue
        if r["kind"] == "base":
            bases.append(r)
        elif r["key"] in keys and r["seed"] in cfg.seeds and r["finetune_config"]["steps"] == cfg.steps:
            runs.append(r)
    order = {tag: i for i, tag in enumerate(tags.values())}
    bases.sort(key=lambda r: order[r["base_sha"]])
    views = [[v for v in (split_view(r, split) for r in rs) if v is not None] for rs in (bases, runs)]
    return views[0], views[1]


def collect_probes(cfg: StudyConfig) -> list[dict[str, Any]]:
    """The linear-probe records (:func:`head_only_ceiling`) of ``cfg``'s base models, in ``cfg.bases`` order."""
    out = []
    for b in cfg.bases:
        f = Path(cfg.out) / "runs" / f"probe_{checkpoint_tag(b)}.json"
        if f.exists():
            r = json.loads(f.read_text())
            if r.get("record_version", 1) >= RECORD_VERSION:
                out.append(r)
    return out


def ceiling_table(cfg: StudyConfig, base_runs: Sequence[dict[str, Any]], runs: Sequence[dict[str, Any]],
                  probes: Sequence[dict[str, Any]]) -> str:
    """The head-only ceiling per base model beside the default setting's energy AP.

    ``used`` is the share of the headroom between the base model's post-hoc energy AP and the probe trained on the
    pastes that the default finetune takes: ``(AP_finetuned - AP_base) / (AP_probe - AP_base)``.
    """
    default = Setting(cfg.default_alignment, 5, "classifier", cfg.inlier).key
    head = ["Base model", "post-hoc energy AP↑", "probe on the pastes: AUROC↑", "AP↑", "FPR95↓",
            "probe cross-validated on the test anomalies: AUROC↑", "AP↑", "FPR95↓",
            "default finetune: energy AP↑", "headroom used"]
    lines = _table_head(head)
    by_sha = {r["base_sha"]: r for r in base_runs}
    for pr in probes:
        b = by_sha.get(pr["base_sha"])
        if b is None:
            continue
        base_ap = b["metrics"]["energy"]["ap"]
        mine = [r["metrics"]["energy"]["ap"] for r in runs if r["key"] == default and r["base_sha"] == pr["base_sha"]]
        ft = mean_std(mine) if mine else None
        room = pr["pastes"]["ap"] - base_ap
        used = f"{100 * (ft[0] - base_ap) / room:.0f} %" if ft and room > 0 else "–"
        cells = [Path(pr["base"]).parent.name or pr["base_sha"], f"{base_ap:.2f}"]
        cells += [f"{pr[k][m]:.2f}" for k in ("pastes", "test_cv") for m in METRICS]
        cells += [fmt(ft, len(mine)) if ft else "not run", used]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def summarize(cfg: StudyConfig, base_runs: list[dict[str, Any]], runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Aggregates over (base, seed) runs per setting, and over the base models."""
    by_key: dict[str, list[dict[str, Any]]] = {}
    for r in runs:
        by_key.setdefault(r["key"], []).append(r)
    return {"base": aggregate(base_runs) if base_runs else {"n": 0, "metrics": {}, "miou": None},
            "settings": {k: aggregate(v) for k, v in by_key.items()}}


def write_report(cfg: StudyConfig, *, timings: dict[str, float] | None = None,
                 seconds: float | None = None) -> dict[str, Any]:
    """Aggregate the runs on disk into ``study.json`` and ``study.md``.

    With a validation world the report has two parts: the validation world first (where choices are made), then
    the test world (reported only); the probes of the head-only ceiling are on the test world.
    """
    out = Path(cfg.out)
    splits = SPLITS if cfg.eval_world else ("test",)
    views = {sp: collect(cfg, sp) for sp in splits}
    base_runs, runs = views["test"]
    summary = summarize(cfg, base_runs, runs)
    probes = collect_probes(cfg)
    doc = {"config": json.loads(json.dumps(asdict(cfg))), "summary": summary, "base_runs": base_runs,
           "probes": probes, "runs": runs, "timings": timings or {}, "seconds": seconds,
           "groups": {g: [s.key for s in v] for g, v in cfg.groups().items()}}
    if cfg.eval_world:
        doc["summary_validation"] = summarize(cfg, *views["validation"])
    (out / "study.json").write_text(json.dumps(doc, indent=1))
    where = (f"evaluated on the anomaly set and val split of the validation world `{cfg.eval_world}` (where "
             f"choices are made) and of the test world `{cfg.world}` (reported only)" if cfg.eval_world else
             f"evaluated on the anomaly set of `{cfg.world}` ({_count(base_runs)}) and its val split")
    lines = [
        "# stylepaste study: the poster's ablations on the synthetic city", "",
        f"Base models: {len(base_runs)} ({', '.join(Path(r['base']).as_posix() for r in base_runs)}); finetune "
        f"seeds {list(cfg.seeds)}; {cfg.steps} steps, batch {cfg.batch_size}, {cfg.optimizer} lr {cfg.lr}, whole "
        f"frames without flips, head trained on cached body features ({cfg.cache_dtype}). Train corpora from "
        f"`{cfg.world}`; {where}; ΔmIoU against each run's base model. "
        f"Anomaly metrics in %, pooled over all valid pixels, exact; cells are mean ± sample std over the "
        f"(base, seed) runs (n = number of runs).", "",
    ]
    for sp in splits:
        b_runs, f_runs = views[sp]
        if cfg.eval_world:
            world = cfg.eval_world if sp == "validation" else cfg.world
            lines += [f"## On the {sp} world (`{world}`, {_count(b_runs)})"
                      + (": choices are made here" if sp == "validation" else ": reported only"), ""]
        lines.append(markdown_tables(summarize(cfg, b_runs, f_runs), cfg))
        if probes and sp == "test":
            lines += ["### Head-only ceiling (a linear probe on the frozen classifier-input features)", "",
                      f"A 1x1 linear probe to one anomaly logit ({cfg.probe_steps} steps, class-balanced BCE), "
                      f"trained on the pasted objects of the {cfg.default_alignment} corpus, and trained on the test "
                      "anomalies themselves (2-fold over frames, each frame scored by the probe that did not see "
                      "it). The second says how separable the test anomalies are in these features at all; the "
                      "first, what a linear readout of these pastes can reach.", "",
                      ceiling_table(cfg, b_runs, f_runs, probes)]
        if len(b_runs) > 1:
            lines += ["### Per base model (mean ± std over each base's finetune seeds)", "",
                      per_base_table(cfg, b_runs, f_runs)]
        lines += [f"### Where the false alarms are ({SCORE_TITLES[ALARM_SCORE].lower()} at its 95 % TPR threshold)",
                  "", "FPR within the inlier pixels predicted as each class, and that class's share of all false "
                  "alarms, in % (mean ± std over the runs).", "", false_alarm_table(cfg, b_runs, f_runs)]
    spent = [r["seconds"] for r in runs if "seconds" in r]
    if spent:
        ft, ev = sum(s["finetune"] for s in spent), sum(s["evaluate"] for s in spent)
        lines += [f"Compute of the {len(spent)} finetune runs on record: finetuning {ft:.0f} s, evaluation "
                  f"{ev:.0f} s ({ft / len(spent):.1f} s and {ev / len(spent):.1f} s per run).", ""]
    if timings and any(timings.values()):
        lines += ["This invocation (s): " + ", ".join(f"{k} {v:.0f}" for k, v in timings.items())
                  + (f", total {seconds:.0f}" if seconds is not None else ""), ""]
    (out / "study.md").write_text("\n".join(lines))
    return doc


def _count(base_runs: list[dict[str, Any]]) -> str:
    if not base_runs:
        return "not evaluated"
    m = base_runs[0]["metrics"][SCORES[0]]
    return f"{m['num_pos']} anomaly and {m['num_neg']} inlier pixels"
