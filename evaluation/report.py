"""Report writers of the evaluator: results tables, ROC / precision-recall curves and overlays."""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from evaluation.results import EvaluateConfig, EvaluationResult
from evaluation.scores import SCORE_TITLES
from schemas.labels import TRAIN_CLASSES

MAX_CURVE_POINTS = 2000
ANOMALY_RGB = np.array([255, 40, 40], np.uint8)
VOID_RGB = np.array([40, 40, 40], np.uint8)


def thin_curves(curves: dict[str, np.ndarray], max_points: int = MAX_CURVE_POINTS) -> dict[str, np.ndarray]:
    """Keep at most ``max_points`` evenly spaced points (first and last included) of each curve, for plots."""
    out = {}
    for key, pairs in (("roc", ("fpr", "tpr")), ("pr", ("recall", "precision"))):
        n = len(curves[pairs[0]])
        idx = np.unique(np.linspace(0, n - 1, min(n, max_points)).round().astype(np.int64)) if n else np.zeros(0, int)
        for k in pairs:
            out[k] = np.asarray(curves[k])[idx]
    return out


def write_curves(out: Path, curves_by_ds: dict[str, list[tuple[str, dict[str, np.ndarray], dict]]]) -> list[str]:
    """Draw one ROC and one precision-recall plot per dataset, a line per (model, score).

    Returns:
        Paths of the PNG files written.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    files = []
    (out / "curves").mkdir(parents=True, exist_ok=True)
    for ds, entries in curves_by_ds.items():
        for kind in ("roc", "pr"):
            fig, ax = plt.subplots(figsize=(5.5, 4.5), dpi=100)
            for label, c, values in entries:
                if kind == "roc":
                    ax.plot(c["fpr"], c["tpr"], lw=1.4, label=f"{label} (AUROC {100 * values['auroc']:.1f})")
                else:
                    ax.plot(c["recall"], c["precision"], lw=1.4, label=f"{label} (AP {100 * values['ap']:.1f})")
            if kind == "roc":
                ax.plot([0, 1], [0, 1], color="0.7", lw=0.8, ls="--")
                ax.axhline(0.95, color="0.6", lw=0.6, ls=":")
                ax.set(xlabel="false positive rate", ylabel="true positive rate", xlim=(0, 1), ylim=(0, 1.01))
            else:
                ax.set(xlabel="recall", ylabel="precision", xlim=(0, 1), ylim=(0, 1.01))
            ax.set_title(f"{ds}: {'ROC' if kind == 'roc' else 'precision-recall'}")
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7, loc="lower right" if kind == "roc" else "upper right")
            fig.tight_layout()
            path = out / "curves" / f"{ds}_{kind}.png"
            fig.savefig(path)
            plt.close(fig)
            files.append(str(path))
    return files


def heatmap(scores: np.ndarray, valid: np.ndarray | None = None) -> np.ndarray:
    """Colour a score map (higher = more anomalous) with the ``inferno`` colormap.

    The map is scaled between the 1st and 99.9th percentile of the valid pixels.

    Args:
        scores: float (H, W).
        valid: Optional bool (H, W) of pixels used for the scaling.

    Returns:
        uint8 RGB (H, W, 3).
    """
    from matplotlib import colormaps

    ref = scores[valid] if valid is not None and valid.any() else scores.ravel()
    lo, hi = np.percentile(ref, [1.0, 99.9]) if ref.size else (0.0, 1.0)
    norm = np.clip((scores - lo) / max(hi - lo, 1e-12), 0.0, 1.0)
    return (colormaps["inferno"](norm)[..., :3] * 255).astype(np.uint8)


def label_overlay(image: np.ndarray, label: np.ndarray, alpha: float = 0.6) -> np.ndarray:
    """The frame with anomaly pixels (label 1) in red and void (255) darkened."""
    out = image.astype(np.float32)
    anomaly = label == 1
    void = label == 255
    out[anomaly] = (1 - alpha) * out[anomaly] + alpha * ANOMALY_RGB
    out[void] = 0.5 * out[void] + 0.5 * VOID_RGB
    return out.round().astype(np.uint8)


def overlay_panels(image: np.ndarray, label: np.ndarray, scores: np.ndarray, *more: np.ndarray) -> np.ndarray:
    """Frame, ground truth and one anomaly heat map per score map, side by side, each at the frame's size.

    Args:
        image: uint8 (H, W, 3).
        label: uint8 (H, W) with 0 = in, 1 = anomaly, 255 = void.
        scores: float (H, W).
        *more: Further float (H, W) score maps (e.g. the base model's), each scaled on its own.

    Returns:
        uint8 (H, (2 + maps) W, 3).
    """
    for s in (scores, *more):
        if image.shape[:2] != label.shape or label.shape != s.shape:
            raise ValueError(f"overlay: image {image.shape}, label {label.shape} and scores {s.shape} differ in size")
    valid = label != 255
    return np.concatenate([image, label_overlay(image, label)] + [heatmap(s, valid) for s in (scores, *more)],
                          axis=1)


def write_overlay(path: Path, image: np.ndarray, label: np.ndarray, scores: np.ndarray | list[np.ndarray],
                  title: str | list[str] = "") -> None:
    """Write :func:`overlay_panels` as a PNG, each heat map with its one-line title in its top-left corner.

    Args:
        path: PNG to write.
        image: uint8 (H, W, 3).
        label: uint8 (H, W).
        scores: One score map or a list of them.
        title: One title per score map (a single string for a single map).
    """
    maps = list(scores) if isinstance(scores, (list, tuple)) else [scores]
    titles = list(title) if isinstance(title, (list, tuple)) else [title]
    if len(titles) != len(maps):
        raise ValueError(f"overlay: {len(maps)} score maps but {len(titles)} titles")
    panel = Image.fromarray(overlay_panels(image, label, *maps))
    draw = ImageDraw.Draw(panel)
    width = image.shape[1]
    for i, text in enumerate(titles):
        if text:
            x0 = (2 + i) * width
            draw.rectangle([x0, 0, x0 + min(width, 6 * len(text) + 8), 14], fill=(0, 0, 0))
            draw.text((x0 + 4, 2), text, fill=(255, 255, 255))
    path.parent.mkdir(parents=True, exist_ok=True)
    panel.save(path)


def _fmt(v: float) -> str:
    return "–" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.2f}"


def markdown_table(result: EvaluationResult) -> str:
    """The results in the poster's format: a row per (model, score), AUROC / AP / FPR95 per dataset.

    mIoU (and its change from the base model) gets its own small table.
    """
    datasets = list(dict.fromkeys(r["dataset"] for r in result.rows))
    keys = list(dict.fromkeys((r["model"], r["score"]) for r in result.rows))
    lines = []
    if datasets:
        head = "| model | score | " + " | ".join(f"{d} AUROC ↑ | {d} AP ↑ | {d} FPR95 ↓" for d in datasets) + " |"
        lines += [head, "|" + "---|" * (2 + 3 * len(datasets))]
        for model, score in keys:
            cells = []
            for d in datasets:
                try:
                    r = result.lookup(model, score, d)
                    cells += [_fmt(r["auroc"]), _fmt(r["ap"]), _fmt(r["fpr95"])]
                except KeyError:
                    cells += ["–"] * 3

            lines.append(f"| {model} | {SCORE_TITLES.get(score, score)} | " + " | ".join(cells) + " |")
    if result.miou:
        seg = list(dict.fromkeys(d for per in result.miou.values() for d in per))
        lines += ["", "| model | " + " | ".join(f"{d} mIoU | {d} ΔmIoU" for d in seg) + " |",
                  "|" + "---|" * (1 + 2 * len(seg))]
        for model, per in result.miou.items():
            cells = []
            for d in seg:
                change = result.miou_change.get(model, {}).get(d)
                cells += [_fmt(per.get(d, float("nan"))), "–" if change is None else f"{change:+.2f}"]
            lines.append(f"| {model} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def false_alarm_tables(result: EvaluationResult, class_names: tuple[str, ...] | None = None,
                       min_share: float = 0.001) -> str:
    """Where the false alarms are: per anomaly dataset, the inlier pixels flagged at each model's 95 % TPR
    threshold, by predicted class (rows: classes holding at least ``min_share`` of the inliers or of the alarms
    of some model, ordered by the first model's share of the alarms).

    Columns per model: the class's share of the inlier pixels, its FPR at that threshold (the fraction of its
    pixels flagged) and its share of all flagged inlier pixels, in %. Empty when nothing was counted.
    """
    if not result.false_alarms:
        return ""
    if class_names is None:

        class_names = TRAIN_CLASSES

    lines: list[str] = []
    for ds in dict.fromkeys(fa["dataset"] for fa in result.false_alarms):
        per = [fa for fa in result.false_alarms if fa["dataset"] == ds]
        stride = per[0]["stride"]
        lines += ["", f"### {ds}: false alarms at the 95 % TPR threshold, by predicted class", "",
                  "Share of the inlier pixels predicted as the class, FPR within the class and share of all false "
                  "alarms, in %" + (f" (counted on every {stride}th inlier pixel)." if stride > 1 else "."), ""]
        head = ["class"] + [f"{fa['model']} {SCORE_TITLES.get(fa['score'], fa['score'])}: {what}"
                            for fa in per for what in ("pixels", "FPR", "alarms")]
        lines += ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] + ["---:"] * (len(head) - 1)) + "|"]
        n = len(per[0]["classes"])
        keep = [k for k in range(n) if any(
            (fa["classes"][k]["inlier_share"] or 0) >= min_share or (fa["classes"][k]["alarm_share"] or 0) >= min_share
            for fa in per)]
        first = per[0]["classes"]
        keep.sort(key=lambda k: -(0.0 if math.isnan(first[k]["alarm_share"]) else first[k]["alarm_share"]))
        for k in keep:
            cells = [class_names[k] if k < len(class_names) else str(k)]
            for fa in per:
                c = fa["classes"][k]
                cells += [_fmt(100 * c["inlier_share"]), _fmt(100 * c["fpr"]), _fmt(100 * c["alarm_share"])]
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines).lstrip("\n")


def _nan_to_none(x):
    if isinstance(x, float) and math.isnan(x):
        return None
    if isinstance(x, dict):
        return {k: _nan_to_none(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_nan_to_none(v) for v in x]
    return x


def write_tables(out: Path, result: EvaluationResult, cfg: EvaluateConfig) -> list[str]:
    """Write ``results.md``, ``results.csv`` and ``results.json``.

    Returns:
        Paths written.
    """
    md = out / "results.md"
    parts = ["# Evaluation results", "", "Pixel-level metrics pooled over all valid pixels of each dataset "
             f"(FPR95 convention: {cfg.fpr_mode}). Values in %.", "", markdown_table(result)]
    if result.hardest:
        parts += ["", "## Hardest frames (lowest frame AP of the first model)", ""]
        for ds, items in result.hardest.items():
            parts.append(f"- {ds}: " + ", ".join(f"{sid} ({100 * ap:.1f})" for sid, ap in items))
    alarms = false_alarm_tables(result)
    if alarms:
        parts += ["", "## Where the false alarms are", "", alarms]
    md.write_text("\n".join(parts) + "\n")
    buf = io.StringIO()
    fields = ["model", "score", "dataset", "auroc", "ap", "fpr95", "num_pos", "num_neg", "miou", "miou_change"]
    writer = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n", restval="")
    writer.writeheader()
    for r in result.rows:
        writer.writerow({k: r[k] for k in fields if k in r})
    for model, per in result.miou.items():
        for d, v in per.items():
            change = result.miou_change.get(model, {}).get(d)
            writer.writerow({"model": model, "score": "segmentation", "dataset": d, "miou": f"{v:.4f}",
                             "miou_change": "" if change is None else f"{change:.4f}"})
    (out / "results.csv").write_text(buf.getvalue())
    payload = {
        "rows": result.rows, "miou": result.miou, "miou_change": result.miou_change,
        "hardest": {k: [list(x) for x in v] for k, v in result.hardest.items()},
        "false_alarms": _nan_to_none(result.false_alarms),
        "fpr_mode": cfg.fpr_mode, "seconds": result.seconds,
        "models": [{"label": m.label, "checkpoint": m.checkpoint, "arch": m.arch, "scores": list(m.scores)}
                   for m in cfg.models],
        "datasets": [{"name": n, "root": r} for n, r in cfg.datasets],
    }
    (out / "results.json").write_text(json.dumps(payload, indent=2))
    return [str(md), str(out / "results.csv"), str(out / "results.json")]
