"""``stylepaste study``: the poster's ablations on the embedded benchmark (the synthetic city).

Four groups of settings, each finetuned from every base model with every finetune seed and evaluated on the
synthetic anomaly set (pooled pixels, exact AUROC / AP / FPR95 with :class:`evaluation.metrics.AnomalyMetrics`, scores
max logit, energy and max-min logit; the road FPR at the energy's 95 % TPR threshold) and on the synthetic val split
(mIoU change from the base model):

* **inlier term** of the loss (:data:`trainer.losses.INLIER_KINDS`: ``distill`` = our default, ``ce`` = the loss
  as the poster writes it, ``true_bce``, ``ovr_bce``), default alignment, top-5, head only;
* **alignment** of the pasted objects (``none``, ``sensor``, ``reinhard``, ``reinhard+sensor`` = our default,
  ``reinhard_object`` = Reinhard statistics of the object itself, ``histogram``, ``fda``), top-5, head only;
* **top-k** of the one-vs-rest loss, k in {1, 3, 5, 7, C} (``k = C`` is plain one-vs-rest), default alignment;
* **trained part**: the 1x1 classifier (``--head classifier``) against the whole final block (``--head final``),
  default alignment, k = 5.

Beside them, the **head-only ceiling** of each base model (:func:`head_only_ceiling`): a linear probe on the frozen
classifier-input features, trained on the pastes and cross-validated on the test anomalies.

One augmented corpus per alignment (``stylepaste augment`` with a fixed seed, Beam in memory), shared by every
base model and finetune seed. Every run is evaluated on the test world (``--world``, reported only) and, with
``--eval-world`` (a world drawn with another seed, ``stylepaste world --seed 1``), on the validation world, where
choices are made; the report shows the validation world first. The train corpora always come from ``--world``.

**Cached body features** (:mod:`trainer.cached`). The body is frozen, so the study computes its output once per
(base model, corpus) (and once per base model for the test and val frames), stores it in ``cache/`` (float32 by
default, float16 with ``--cache-dtype float16``) and trains the head on it with the very step of ``stylepaste
finetune``. The only difference from the demo's finetune settings is ``flip=False`` (a flipped frame's features
are not the flipped features; flips would double the cache).

Outputs in ``--out``: ``corpora/<alignment>/`` (augmented shards), ``cache/``, ``runs/<run>.json`` (one file per
finetune run or probe, so an interrupted study continues where it stopped), ``study.json`` (every run and the
aggregates) and ``study.md`` (tables in the poster's format: rows = setting, columns = score metrics, mean ± sample
standard deviation over the (base, seed) runs; the base models' own numbers first).
"""

from stylepaste.study.ceiling import head_only_ceiling, probe_metrics, train_probe
from stylepaste.study.cli import build_parser, config_from_args, main
from stylepaste.study.config import (
    ALIGNMENTS, DEFAULT_ALIGNMENT, DEFAULT_INLIER, LEARNED, METRICS, RECORD_VERSION, SCORES, SPLITS, Setting,
    StudyConfig)
from stylepaste.study.report import aggregate, collect, per_base_table, split_view, write_report
from stylepaste.study.runner import evaluate_cached, run

__all__ = [
    "ALIGNMENTS", "DEFAULT_ALIGNMENT", "DEFAULT_INLIER", "LEARNED", "METRICS", "RECORD_VERSION", "SCORES", "SPLITS",
    "Setting", "StudyConfig", "aggregate", "build_parser", "collect", "config_from_args", "evaluate_cached",
    "head_only_ceiling", "main", "per_base_table", "probe_metrics", "run", "split_view", "train_probe",
    "write_report",
]
