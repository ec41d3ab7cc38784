"""Beam pipelines (object bank, augmentation), the synthetic city, the command line, the demo and the study."""

import logging


class _BeamImportNoise(logging.Filter):
    """Drop apache-beam's import-time warning about the optional BigQuery client (apitools), which no stage uses
    and which would otherwise open every ``--help``."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "apitools not found" not in record.getMessage()


logging.getLogger().addFilter(_BeamImportNoise())
