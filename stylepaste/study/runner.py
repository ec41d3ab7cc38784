"""Running the study: corpora, cached features per base model, finetune runs and their records."""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
from apache_beam.options.pipeline_options import PipelineOptions
import torch

from evaluation.loop import evaluate_batches
from pipelines import augment
from pipelines.augment import AugmentConfig
from stylepaste.study.ceiling import head_only_ceiling
from stylepaste.study.config import RECORD_VERSION, SCORES, Setting, StudyConfig, checkpoint_tag
from stylepaste.study.report import write_report
from trainer.cached import FeatureCache, compute_features, dataset_frames, finetune_cached, load_cache, save_cache, \
    shard_frames
from trainer.checkpoint import load_checkpoint
from trainer.finetune import FinetuneConfig
from trainer.heads import head_state_dict
from trainer.losses import LossConfig
from trainer.models import build_model

def _log(cfg: StudyConfig, msg: str) -> None:
    if cfg.progress:
        print(f"[study {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def corpus_params(cfg: StudyConfig, alignment: str) -> dict[str, Any]:
    """The augment parameters that define a corpus (compared with an existing corpus's manifest)."""
    return {"aligner": cfg.alignment_spec(alignment).with_params(strength=1.0).to_json(), "seed": cfg.augment_seed,
            "max_frames": cfg.max_train_frames}


def ensure_corpus(cfg: StudyConfig, alignment: str) -> str:
    """The augmented corpus of ``alignment`` in ``out/corpora/``; built with ``stylepaste augment`` if missing.

    An existing folder is reused when its manifest records the same aligner, parameters, seed and frame limit.

    Raises:
        RuntimeError: If the augment run fails.
    """
    folder = Path(cfg.out) / "corpora" / alignment
    want = corpus_params(cfg, alignment)
    manifest = folder / "_manifest.json"
    if manifest.exists():
        p = json.loads(manifest.read_text())["parameters"]
        have = {"aligner": p["aligner"], "seed": p["seed"], "max_frames": p.get("max_frames")}
        if have == want:
            return str(folder)
        _log(cfg, f"corpus {folder} was made with {have}, rebuilding for {want}")
    acfg = AugmentConfig(cityscapes=str(Path(cfg.world) / "cityscapes"), split="train", bank=cfg.bank,
                         out=str(folder), aligner=cfg.alignment_spec(alignment), seed=cfg.augment_seed, num_shards=4,
                         max_frames=cfg.max_train_frames, overwrite=True)
    t = time.perf_counter()
    augment.run(acfg, PipelineOptions(["--runner=DirectRunner", "--direct_running_mode=in_memory"]))
    _log(cfg, f"corpus {alignment}: {time.perf_counter() - t:.1f} s")
    return str(folder)


class _Bases:
    """Per base model: the loaded model and its caches (built lazily, kept on disk)."""

    def __init__(self, cfg: StudyConfig):
        self.cfg = cfg
        self.dtype = torch.float16 if cfg.cache_dtype == "float16" else torch.float32
        self.tag = {b: checkpoint_tag(b) for b in cfg.bases}
        self._models: dict[str, torch.nn.Module] = {}
        self._mem: dict[tuple[str, str, str], FeatureCache] = {}

    def model(self, base: str) -> torch.nn.Module:
        if base not in self._models:
            m = build_model(self.cfg.arch, self.cfg.num_classes)
            load_checkpoint(m, base)
            self._models[base] = m.eval()
        return self._models[base]

    def fresh(self, base: str) -> torch.nn.Module:
        m = build_model(self.cfg.arch, self.cfg.num_classes)
        m.load_state_dict(self.model(base).state_dict())
        return m

    def cache(self, base: str, what: str, head: str, source: str | None = None) -> FeatureCache:
        """``what``: ``test`` / ``val`` (the test world's anomaly set / val split), ``validation-test`` /
        ``validation-val`` (the validation world's) or ``train:<alignment>`` (``source`` = corpus folder)."""
        key = (base, what, head)
        if key in self._mem:
            return self._mem[key]
        if what.startswith("train:"):
            # keep one train corpus in memory at a time
            for k in [k for k in self._mem if k[1].startswith("train:")]:
                del self._mem[k]
        path = (Path(self.cfg.out) / "cache" / self.tag[base]
                / f"{what.replace(':', '_').replace('+', '-')}_{head}_{self.cfg.cache_dtype}.pt")
        if path.exists():
            c = load_cache(path)
        else:
            t = time.perf_counter()
            model = self.model(base)
            w = Path(self.cfg.eval_world if what.startswith("validation-") else self.cfg.world)
            if what.endswith("test"):
                frames = dataset_frames("synthetic", str(w), self.cfg.max_test_frames)
                c = compute_features(model, frames, head, self.dtype, 1)
            elif what.endswith("val"):
                frames = dataset_frames("cityscapes_val", str(w / "cityscapes"), self.cfg.max_val_frames)
                c = compute_features(model, frames, head, self.dtype, 1)
            else:
                c = compute_features(model, shard_frames([source]), head, self.dtype, self.cfg.feature_batch)
            save_cache(c, path)
            _log(self.cfg, f"cached {what} features ({head}) of {Path(base).name} [{self.tag[base]}]: "
                           f"{len(c.ids)} frames, {time.perf_counter() - t:.1f} s")
        self._mem[key] = c
        return c

    def evaluate(self, model: torch.nn.Module, base: str, head: str) -> dict[str, Any]:
        """:func:`evaluate_cached` on the test world, with the validation world's results under ``"validation"``
        when the study has one."""
        res = evaluate_cached(model, head, self.cache(base, "test", head), self.cache(base, "val", head))
        if self.cfg.eval_world:
            res["validation"] = evaluate_cached(model, head, self.cache(base, "validation-test", head),
                                                self.cache(base, "validation-val", head))
        return res


def run_order(cfg: StudyConfig) -> list[tuple[Setting, str, int]]:
    """Every (setting, base, seed) run, most informative first, so that a study stopped early is still useful.

    First the key comparisons (the default setting, CE only, no alignment, plain one-vs-rest) seed by seed, then every other
    setting seed by seed, cheapest first (other k on the default corpus, then the other head, then the alignments
    that need a corpus of their own); within a seed, base by base.
    """
    d, i = cfg.default_alignment, cfg.inlier
    key = {Setting(d, 5, "classifier", i), Setting(d, 5, "classifier", "ce"), Setting("none", 5, "classifier", i),
           Setting(d, cfg.num_classes, "classifier", i)}
    settings = cfg.settings()
    first = [s for s in settings if s in key]
    rest = sorted((s for s in settings if s not in key), key=lambda s: (s.alignment != d, s.head != "classifier"))
    return [(st, b, seed) for tier in (first, rest) for seed in cfg.seeds for b in cfg.bases for st in tier]


def finetune_config(cfg: StudyConfig, st: Setting, base: str, seed: int, shards: str) -> FinetuneConfig:
    """The ``stylepaste finetune`` settings of one run (flip off, see the module docstring)."""
    k = None if st.k >= cfg.num_classes else st.k
    loss = LossConfig(k=k, inlier=st.inlier, inlier_weight=cfg.inlier_weight)
    return FinetuneConfig(shards=(shards,), checkpoint=base, out="unused://", arch=cfg.arch,
                          num_classes=cfg.num_classes, head=st.head, loss=loss, steps=cfg.steps,
                          lr=cfg.lr, optimizer=cfg.optimizer, batch_size=cfg.batch_size, flip=False,
                          shuffle_buffer=cfg.shuffle_buffer, workers=cfg.order_workers, seed=seed, device="cpu",
                          amp="off", progress=False, paste_filter=cfg.paste_filter)


def _base_runs(cfg: StudyConfig, bases: _Bases, report_only: bool, timings: dict[str, float]
               ) -> list[dict[str, Any]]:
    """The base models' own numbers: read from their records, or evaluated and recorded."""
    out = Path(cfg.out)
    base_runs: list[dict[str, Any]] = []
    for b in cfg.bases:
        f = out / "runs" / f"base_{bases.tag[b]}.json"
        if _current(f) or (report_only and f.exists()):
            base_runs.append(json.loads(f.read_text()))
            continue
        if report_only:
            continue
        t = time.perf_counter()
        res = bases.evaluate(bases.model(b), b, "classifier")
        if "validation" in res:
            res["validation"]["miou_change"] = 0.0
        rec = {"kind": "base", "record_version": RECORD_VERSION, "base": b, "base_sha": bases.tag[b], **res,
               "miou_change": 0.0}
        f.write_text(json.dumps(rec, indent=1))
        base_runs.append(rec)
        timings["base_eval"] += time.perf_counter() - t
        _log(cfg, f"base {Path(b).name}: " + ", ".join(
            f"{s} AP {res['metrics'][s]['ap']:.2f}" for s in SCORES) + f", mIoU {res['miou']:.2f}")
    return base_runs


def _probes(cfg: StudyConfig, bases: _Bases, corpora: dict[str, str]) -> None:
    """The head-only ceiling of each base model (the probes), on the default alignment's corpus (built here when
    needed and added to ``corpora``)."""
    out = Path(cfg.out)
    for b in cfg.bases:
        f = out / "runs" / f"probe_{bases.tag[b]}.json"
        if _current(f):
            continue
        d = cfg.default_alignment
        if d not in corpora:  # built once, shared with the finetune runs below
            corpora[d] = ensure_corpus(cfg, d)
        t = time.perf_counter()
        res = head_only_ceiling(bases.cache(b, f"train:{d}", "classifier", corpora[d]),
                                bases.cache(b, "test", "classifier"), cfg.num_classes, cfg.probe_steps)
        rec = {"kind": "probe", "record_version": RECORD_VERSION, "base": b, "base_sha": bases.tag[b],
               "alignment": d, "steps": cfg.probe_steps, **res, "seconds": time.perf_counter() - t}
        f.write_text(json.dumps(rec, indent=1))
        _log(cfg, f"probe {Path(b).name}: on the pastes AP {res['pastes']['ap']:.2f}, cross-validated on the "
                  f"test anomalies AP {res['test_cv']['ap']:.2f} ({rec['seconds']:.1f} s)")


def _finetune_run(cfg: StudyConfig, bases: _Bases, st: Setting, b: str, seed: int, corpus: str, f: Path,
                  base_miou: float, base_val_miou: float | None, timings: dict[str, float]) -> None:
    """One finetune run on cached features: train, evaluate on both worlds, write its record ``f``."""
    fcfg = finetune_config(cfg, st, b, seed, corpus)
    cache = bases.cache(b, f"train:{st.alignment}", st.head, corpus)
    t = time.perf_counter()
    model, log = finetune_cached(fcfg, cache, model=bases.fresh(b))
    t_ft = time.perf_counter() - t
    t = time.perf_counter()
    res = bases.evaluate(model, b, st.head)
    if "validation" in res and base_val_miou is not None:
        res["validation"]["miou_change"] = res["validation"]["miou"] - base_val_miou
    t_ev = time.perf_counter() - t
    timings["finetune"] += t_ft
    timings["evaluate"] += t_ev
    head_hash = hashlib.sha256(b"".join(
        v.numpy().tobytes() for _, v in sorted(head_state_dict(model, st.head).items()))).hexdigest()[:16]
    rec = {"kind": "finetune", "record_version": RECORD_VERSION, "setting": asdict(st), "key": st.key,
           "base": b, "base_sha": bases.tag[b],
           "seed": seed, **res, "miou_change": res["miou"] - base_miou,
           "final_loss": log[-1], "mean_loss_last10": float(np.mean([r["loss"] for r in log[-10:]])),
           "head_sha256": head_hash, "seconds": {"finetune": t_ft, "evaluate": t_ev},
           "finetune_config": fcfg.to_json()}
    f.write_text(json.dumps(rec, indent=1))
    _log(cfg, f"{st.key} base {bases.tag[b]} seed {seed}: finetune {t_ft:.1f} s, eval {t_ev:.1f} s; "
              + ", ".join(f"{s} AP {res['metrics'][s]['ap']:.2f}" for s in SCORES)
              + f", ΔmIoU {rec['miou_change']:+.2f}")


def run(cfg: StudyConfig, *, report_only: bool = False) -> dict[str, Any]:
    """Run (or continue) the study and write ``study.json`` and ``study.md``.

    Runs go seed by seed (every setting and base for the first seed, then the next), so a study stopped early
    has complete rows with fewer seeds. Finished runs (``runs/*.json``) are not repeated.

    Args:
        cfg: Settings.
        report_only: Only aggregate the runs already on disk.

    Returns:
        The summary written to ``study.json``.
    """
    if cfg.threads is not None:
        torch.set_num_threads(cfg.threads)
    out = Path(cfg.out)
    (out / "runs").mkdir(parents=True, exist_ok=True)
    bases = _Bases(cfg)
    t_start = time.perf_counter()
    timings: dict[str, float] = {"corpora": 0.0, "base_eval": 0.0, "finetune": 0.0, "evaluate": 0.0}

    base_runs = _base_runs(cfg, bases, report_only, timings)
    base_miou = {r["base"]: r["miou"] for r in base_runs}
    base_val_miou = {r["base"]: r.get("validation", {}).get("miou") for r in base_runs}

    corpora: dict[str, str] = {}
    if cfg.probe_steps > 0 and not report_only:
        _probes(cfg, bases, corpora)
    for st, b, seed in run_order(cfg):
        f = out / "runs" / f"{st.key}_base{bases.tag[b]}_seed{seed}.json"
        if report_only or (_current(f) and _same_filter(f, cfg)):
            continue
        if st.alignment not in corpora:  # built when first needed
            t = time.perf_counter()
            corpora[st.alignment] = ensure_corpus(cfg, st.alignment)
            timings["corpora"] += time.perf_counter() - t
        _finetune_run(cfg, bases, st, b, seed, corpora[st.alignment], f, base_miou[b], base_val_miou.get(b), timings)
        write_report(cfg, timings=timings, seconds=time.perf_counter() - t_start)  # partial results stay readable
    if report_only:
        return write_report(cfg)
    return write_report(cfg, timings=timings, seconds=time.perf_counter() - t_start)


def _same_filter(record: Path, cfg: StudyConfig) -> bool:
    """Whether a finetune record was trained under ``cfg.paste_filter``."""
    saved = json.loads(record.read_text()).get("finetune_config", {}).get("paste_filter")
    mine = json.loads(json.dumps(asdict(cfg.paste_filter)))
    return (saved or json.loads(json.dumps(asdict(type(cfg.paste_filter)())))) == mine


def _current(record: Path) -> bool:
    """Whether a run record exists and is of the current :data:`RECORD_VERSION`."""
    if not record.exists():
        return False
    return json.loads(record.read_text()).get("record_version", 1) >= RECORD_VERSION


def evaluate_cached(model: torch.nn.Module, head: str, test: FeatureCache, val: FeatureCache | None,
                    scores: Sequence[str] = SCORES, chunk: int = 4) -> dict[str, Any]:
    """Anomaly metrics (in %) on cached test features and mIoU (in %) on cached val features.

    Args:
        model: The model (put in ``eval()``).
        head: Whose input the caches hold.
        test: Anomaly-set features; labels 0 in, 1 anomaly, 255 void.
        val: Val-split features with trainId labels, or ``None``.
        scores: Anomaly scores.
        chunk: Frames per head forward.

    Returns:
        ``{"metrics": {score: {"auroc", "ap", "fpr95", "num_pos", "num_neg"}}, "false_alarms": {score: [per
        predicted class {"inlier_share", "fpr", "alarm_share"} in %, None where undefined]}, "miou": float |
        None}``; the false alarms are the inlier pixels at or above the score's 95 % TPR threshold (exact).
    """
    model.eval()

    def batches(cache: FeatureCache | None) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for i in range(0, len(cache.ids) if cache is not None else 0, chunk):
            yield cache.feats[i:i + chunk], cache.labels[i:i + chunk]

    res = evaluate_batches(lambda feats: model.classify(feats.float(), test.size, head).float(), batches(test),
                           (), scores=scores, num_classes=model.num_classes, alarm_scores=scores)
    if val is not None:
        seg = evaluate_batches(lambda feats: model.classify(feats.float(), val.size, head), (), batches(val),
                               scores=(), num_classes=model.num_classes)
        res["miou"] = seg["miou"]
    out: dict[str, Any] = {"metrics": {}, "false_alarms": {}, "miou": res["miou"]}
    for s, v in res["metrics"].items():
        out["metrics"][s] = {k: v[k] for k in ("auroc", "ap", "fpr95", "num_pos", "num_neg")}
        out["false_alarms"][s] = [
            {k: (None if math.isnan(c[k]) else 100.0 * c[k]) for k in ("inlier_share", "fpr", "alarm_share")}
            for c in v.get("false_alarms", [])]
    return out
