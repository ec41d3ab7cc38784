"""Settings of ``stylepaste augment``: one frozen dataclass composed of the paste plan's and the aligner's own."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

from pipelines.paste import BLEND_MODES, PasteConfig
from schemas.codecs import IMAGE_CODECS, PNG_COMPRESS_LEVEL
from style_transfer.registry import AlignerSpec

STAGE = "augment"
"""Stage name recorded in reject records."""

REJECT_REASONS: tuple[str, ...] = (
    "missing_label", "size_mismatch", "unreadable_image", "unreadable_label", "invalid_label",
)
"""Why a frame could not be used (written to the rejects file)."""

CLEAN = "clean"
ALIGN = "align"
TIME_NAMESPACE = "stylepaste_time"
"""Beam Metrics namespace of the per-phase wall-clock counters (microseconds): decode, plan, place, style,
paste, encode (alignment time is RunInference's own ``StylepasteAlign`` metrics)."""

CITYSCAPES_TERMS = "Cityscapes terms of use (non-commercial research): https://www.cityscapes-dataset.com/license/"
"""Default ``frame_terms``: the source frames are in the Cityscapes layout and under its licence."""

BANK_COLUMNS = ["object_id", "image_id", "category_id", "category_name", "image", "mask", "source_file",
                "src_lab_mean", "src_lab_std", "src_sharpness", "src_noise", "src_blockiness"]
"""The bank columns the augment pipeline reads (every version has them; ``license_id`` is read when present)."""


@dataclass(frozen=True)
class AugmentConfig:
    """Settings of one augment run (the whole command line except the Beam runner options).

    Attributes:
        cityscapes: Cityscapes root (local path or fsspec URL) in the official layout.
        bank: Object-bank folder (with ``_manifest.json``), a shard, or a glob of shards.
        out: Output folder URL.
        split: Split folder to read (``train``, ``val``, ...).
        aligner: The style aligner and its parameters (strength aside).
        align_strength: Blend of the aligned object with the unaligned one, in [0, 1].
        blend: Seam blending: ``feather``, ``laplacian`` or ``none``.
        paste: The paste plan and placement (:class:`pipelines.paste.PasteConfig`).
        min_contrast: Smallest visibility of a kept paste (:func:`style_transfer.visibility.visibility`).
        style_height: Height of the destination thumbnail the aligners see.
        seed: Run seed.
        num_shards: Output shards.
        row_group_rows: Rows per Parquet row group.
        image_codec: Shard image codec (png, jpeg, webp).
        image_quality: Quality of a lossy codec (95..100).
        png_level: zlib level of shard PNGs.
        device: Aligner device: cpu, cuda, cuda:N or auto.
        align_batch_size: Largest RunInference batch.
        torch_threads: torch threads in each worker process (None: leave torch's default); the process that runs
            the pipeline in memory keeps its own setting.
        max_frames: Use only the first N frames (sorted by frame id); None for all.
        overwrite: Replace a non-empty output folder after a successful run.
        frame_terms: Terms of use of the source frames, recorded in every row (``frame_terms``).
        append: Add this run's frames to the corpus in ``out`` as new shards (another seed, other settings)
            instead of writing a new corpus; existing shards are never rewritten.
    """

    cityscapes: str
    bank: str
    out: str
    split: str = "train"
    aligner: AlignerSpec = field(default_factory=AlignerSpec)
    align_strength: float = 1.0
    blend: str = "feather"
    paste: PasteConfig = field(default_factory=PasteConfig)
    min_contrast: float = 0.5
    style_height: int = 256
    seed: int = 0
    num_shards: int = 4
    row_group_rows: int = 8
    image_codec: str = "png"
    image_quality: int = 95
    png_level: int = PNG_COMPRESS_LEVEL
    device: str = "auto"
    align_batch_size: int = 16
    torch_threads: int | None = 1
    max_frames: int | None = None
    overwrite: bool = False
    frame_terms: str = CITYSCAPES_TERMS
    append: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.aligner, AlignerSpec):
            raise ValueError(f"aligner must be an AlignerSpec, got {type(self.aligner).__name__}")
        if not isinstance(self.paste, PasteConfig):
            raise ValueError(f"paste must be a PasteConfig, got {type(self.paste).__name__}")
        if self.blend not in BLEND_MODES:
            raise ValueError(f"--blend must be one of {BLEND_MODES}, got {self.blend!r}")
        if not 0.0 <= self.align_strength <= 1.0:
            raise ValueError(f"--align-strength must lie in [0, 1], got {self.align_strength}")
        if "strength" in self.aligner.params and float(self.aligner.params["strength"]) != self.align_strength:
            raise ValueError("give the strength with --align-strength, not inside --aligner-params")
        if self.min_contrast < 0:
            raise ValueError(f"--min-contrast must be >= 0, got {self.min_contrast}")
        if self.image_codec not in IMAGE_CODECS:
            raise ValueError(f"--image-codec must be one of {IMAGE_CODECS}, got {self.image_codec!r}")
        if self.image_codec != "png" and not 95 <= self.image_quality <= 100:
            raise ValueError(f"--image-quality must lie in 95..100, got {self.image_quality}")
        if not 0 <= self.png_level <= 9:
            raise ValueError(f"--png-level must lie in 0..9, got {self.png_level}")
        for name in ("num_shards", "row_group_rows", "style_height", "align_batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}")
        if self.torch_threads is not None and self.torch_threads < 1:
            raise ValueError(f"--torch-threads must be >= 1, got {self.torch_threads}")
        if self.max_frames is not None and self.max_frames < 1:
            raise ValueError(f"--max-frames must be >= 1, got {self.max_frames}")
        if self.seed < 0:
            raise ValueError(f"--seed must be >= 0, got {self.seed}")
        if self.append and self.overwrite:
            raise ValueError("--append adds to the corpus in --out and --overwrite replaces it: give one of them")

    @property
    def aligner_run(self) -> AlignerSpec:
        """The aligner as it runs: :attr:`aligner` with ``strength`` = :attr:`align_strength`."""
        return self.aligner.with_params(strength=self.align_strength)

    def provenance(self) -> tuple[str, str]:
        """The FRAME row's ``aligner`` and ``aligner_params`` fields (the aligner as it ran, and the paste
        settings that shaped the pixels)."""
        spec = self.aligner_run
        params = {
            "aligner": spec.name,
            "params": dict(spec.params),
            "blend": self.blend,
            "min_contrast": self.min_contrast,
            "style_height": self.style_height,
            "candidates_per_slot": self.paste.candidates_per_slot,
        }
        return f"{spec.name}; blend={self.blend}", json.dumps(params, sort_keys=True)

    def manifest_parameters(self) -> dict[str, Any]:
        """The run's settings as the manifest records them (the aligner in :meth:`AlignerSpec.to_json`'s shape,
        as it ran)."""
        params = asdict(self)
        params["aligner"] = self.aligner_run.to_json()
        return params
