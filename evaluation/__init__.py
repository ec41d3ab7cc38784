"""Anomaly-segmentation evaluation: scores, exact streaming metrics, benchmark readers, the evaluation loop over
built models, and reports.

Depends on :mod:`schemas` only; the trainer builds models from checkpoints and hands them to the loop.
"""
