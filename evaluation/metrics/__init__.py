"""Exact, streaming, mergeable evaluation metrics.

Modules: :mod:`~evaluation.metrics.pixel` (:class:`AnomalyMetrics`), :mod:`~evaluation.metrics.components`
(:class:`ComponentMetrics`), :mod:`~evaluation.metrics.segmentation` (:class:`SegmentationMetrics`,
:class:`FalseAlarmsByClass`), :mod:`~evaluation.metrics.common` (input checks, distributed helpers, the score
multiset).

Three accumulators share one life cycle: ``update`` on any number of frames, ``compute`` at the end,
``state_dict`` / ``load_state_dict`` / ``merge`` to combine partial results, and ``sync`` to combine them
across the processes of a ``torch.distributed`` job (gloo or NCCL).

* :class:`AnomalyMetrics`: pixel-level AUROC, average precision (AP) and FPR at 95 % TPR, pooled over
  all valid pixels of a data set (anomaly = positive, void ignored). The values are *exact*: they equal
  ``sklearn.metrics.roc_auc_score`` and ``average_precision_score`` on the pooled pixels (ties
  included), without binning and without casting scores to a lower precision. Memory is the score
  itself (4 bytes per valid pixel for float32 scores), against about 60 bytes per pixel for sklearn.
* :class:`ComponentMetrics`: the component-level metrics of the SegmentMeIfYouCan benchmark
  (Chan et al., NeurIPS 2021 Datasets and Benchmarks): sIoU of ground-truth components, positive
  predictive value (PPV) of predicted components and the F1 score averaged over sIoU thresholds.
* :class:`SegmentationMetrics`: confusion matrix, per-class IoU and mIoU for the 19 Cityscapes classes.

Label conventions (anomaly benchmarks): 0 = in-distribution, 1 = anomaly, 255 = void.

How AnomalyMetrics stays exact with little memory
-------------------------------------------------
``update`` appends the scores of anomaly pixels and of in-distribution pixels to two growable buffers
in their float dtype (``-0.0`` is normalised to ``+0.0``). ``compute`` sorts the buffers in place, in a
few contiguous runs sorted by parallel threads, and never merges the runs: every quantity the curves
need is a count of scores below or equal to one of the *distinct anomaly scores* ``u_j``, and such a
count is a sum of ``searchsorted`` results over the sorted runs.
With ``tp_j = #{pos >= u_j}``, ``fp_j = #{neg >= u_j}`` and ``c_j = #{pos == u_j}``:

* AUROC (trapezoidal rule on the ROC curve over all distinct thresholds, which is what
  ``roc_auc_score`` computes) equals the Mann-Whitney statistic with half credit for ties,
  ``sum_j c_j (#{neg < u_j} + #{neg <= u_j}) / (2 P N)``, evaluated in exact integer arithmetic.
* AP (sklearn's step-wise definition ``sum_n (R_n - R_{n-1}) P_n`` over distinct thresholds) only
  gains terms where the recall changes, i.e. at the ``u_j``: ``sum_j (c_j / P) * tp_j / (tp_j + fp_j)``.
* FPR at the highest threshold whose TPR reaches 0.95 is ``fp_j / N`` at the largest ``u_j`` with
  ``tp_j / P >= 0.95``.
"""

from __future__ import annotations


from evaluation.metrics.common import SIOU_THRESHOLDS, FprMode
from evaluation.metrics.components import ComponentMetrics
from evaluation.metrics.pixel import AnomalyMetrics
from evaluation.metrics.segmentation import FalseAlarmsByClass, SegmentationMetrics

__all__ = ["SIOU_THRESHOLDS", "AnomalyMetrics", "ComponentMetrics", "FalseAlarmsByClass", "FprMode",
           "SegmentationMetrics"]
