"""Beam ``ModelHandler`` that runs an aligner under ``RunInference`` (the only module importing apache_beam).

Usage in a pipeline::

    handler = AlignerModelHandler("reinhard+sensor", device="auto", max_batch_size=16)
    restyled = keyed_requests | "AlignObjects" >> RunInference(handler)
    # keyed_requests: PCollection[tuple[key, AlignRequest]]  ->  PCollection[tuple[key, np.ndarray]]

The aligner is built once per worker process (Beam's shared model handle), moved to the device and reused
for every batch. Each batch of crops of different sizes is brought to one shape, run as one tensor batch,
and brought back (see ``batch_shape``); results are ``(h, w, 3)`` uint8 arrays on the CPU under the
request's key (the augment pipeline uses ``(frame_id, object_id)``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from apache_beam.ml.inference.base import ModelHandler
from torch import nn

from schemas.processes import exit_with_driver
from schemas.runtime import acquire_torch_threads, check_device_name, resolve_device
from style_transfer.aligners import DEFAULT_ALIGNER, Aligner
from style_transfer.registry import AlignerSpec
from style_transfer.stats import NUM_STATS, style_stats

#: Accepted ``device`` values (``"cuda:N"`` is accepted too).
#: Accepted ``batch_shape`` values.
BATCH_SHAPES: tuple[str, ...] = ("pad", "resize", "group")


def _stats_vector(value: Any, name: str) -> np.ndarray | None:
    if value is None:
        return None
    arr = np.asarray(value, dtype=np.float32).reshape(-1)
    if arr.shape != (NUM_STATS,) or not np.isfinite(arr).all():
        raise ValueError(f"{name} must be {NUM_STATS} finite numbers (StyleStats.to_tensor order), got {value!r}")
    return arr


@dataclass(frozen=True, eq=False)
class AlignRequest:
    """One object to restyle.

    Attributes:
        content: (h, w, 3) uint8 RGB crop of the object (resized to its paste size).
        mask: (h, w) object mask, bool or integer (non-zero inside).
        style: (H, W, 3) uint8 RGB destination frame or a thumbnail of it; may be None when ``style_stats``
            is given and the aligner needs no style pixels (``reinhard`` image mode, ``sensor``, chains of them).
        style_mask: Optional (H, W) region of ``style`` to take statistics from.
        style_stats: Optional (9,) destination statistics, computed on the full-resolution frame (preferred
            for ``sensor``: sharpness and noise depend on resolution).
        source_stats: Optional (9,) statistics of the object's whole source image (object-bank fields);
            None falls back to the crop's own statistics.
        content_scale: Size of the object in ``content`` over its size in the source image.
        seed: Noise seed of this object (e.g. ``rng_for(seed, (frame_id, object_id)).integers(2**63)``).
    """

    content: np.ndarray
    mask: np.ndarray
    style: np.ndarray | None = None
    style_mask: np.ndarray | None = None
    style_stats: np.ndarray | None = None
    source_stats: np.ndarray | None = None
    content_scale: float = 1.0
    seed: int = 0

    def __post_init__(self) -> None:
        content = np.asarray(self.content)
        if content.dtype != np.uint8 or content.ndim != 3 or content.shape[2] != 3 or min(content.shape[:2]) < 1:
            raise ValueError(f"AlignRequest.content must be uint8 (h, w, 3), got {content.dtype} {content.shape}")
        mask = np.asarray(self.mask)
        if mask.shape != content.shape[:2]:
            raise ValueError(f"AlignRequest.mask must have shape {content.shape[:2]}, got {mask.shape}")
        if self.style is not None:
            style = np.asarray(self.style)
            if style.dtype != np.uint8 or style.ndim != 3 or style.shape[2] != 3 or min(style.shape[:2]) < 1:
                raise ValueError(f"AlignRequest.style must be uint8 (H, W, 3) or None, got {style.dtype} {style.shape}")
            if self.style_mask is not None and np.asarray(self.style_mask).shape != style.shape[:2]:
                raise ValueError(
                    f"AlignRequest.style_mask must have shape {style.shape[:2]}, got {np.asarray(self.style_mask).shape}"
                )
        elif self.style_mask is not None:
            raise ValueError("AlignRequest.style_mask needs a style image")
        if self.style is None and self.style_stats is None:
            raise ValueError("AlignRequest needs a style image, style_stats, or both")
        object.__setattr__(self, "style_stats", _stats_vector(self.style_stats, "AlignRequest.style_stats"))
        object.__setattr__(self, "source_stats", _stats_vector(self.source_stats, "AlignRequest.source_stats"))
        if not float(self.content_scale) > 0:
            raise ValueError(f"AlignRequest.content_scale must be > 0, got {self.content_scale!r}")
        object.__setattr__(self, "content_scale", float(self.content_scale))
        object.__setattr__(self, "seed", int(self.seed))


def _to_float(image: np.ndarray, device: torch.device) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(image)).to(device).permute(2, 0, 1).float().div_(255.0)


def _to_mask(mask: np.ndarray, device: torch.device) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(np.asarray(mask) != 0)).to(device)[None].float()


class AlignerModelHandler(ModelHandler[tuple[Any, AlignRequest], tuple[Any, np.ndarray], nn.Module]):
    """Run a style aligner on keyed :class:`AlignRequest` elements with ``RunInference``.

    Batching (``batch_shape``):

    * ``"pad"`` (default): crops are padded at the bottom/right to the batch's largest size (edge pixels
      repeated, mask 0) and cropped back. Exact for aligners that only look at masked pixels and statistics
      (``none``, ``reinhard``, ``sensor`` without compression: its blur ignores unmasked pixels and its noise
      is a function of (seed, row, column), ``histogram`` object mode), with ``source_stats`` given or
      not (missing ones are computed before padding); the whole-crop ones (``fda``, ``histogram`` image
      mode, ``learned``) and JPEG blocks on the padded edge see the padding.
    * ``"resize"``: crops are resized to ``crop_size`` (bilinear, mask nearest), run, and resized back;
      only masked pixels take the result. Cheap for very uneven sizes, approximate.
    * ``"group"``: crops of equal size run together, one tensor batch per size. Exact for every aligner.

    Style images of different sizes in one batch are resized (bilinear, antialiased) to the largest one.
    Missing ``source_stats`` are computed from each crop before padding; when some requests carry
    ``style_stats``, those of the others are computed from their style images.

    Args:
        aligner: The aligner (:class:`style_transfer.registry.AlignerSpec`), or its name for
            :func:`style_transfer.get_aligner` (default :data:`DEFAULT_ALIGNER`).
        params: Parameters when ``aligner`` is a name (plain JSON values).
        device: "cpu", "cuda" (a clear RuntimeError on a worker without a GPU), "cuda:N" or "auto".
        batch_shape: "pad", "resize" or "group".
        crop_size: (h, w) for ``batch_shape="resize"``.
        min_batch_size: Smallest batch ``BatchElements`` forms.
        max_batch_size: Largest batch ``BatchElements`` forms.
        num_threads: If set, ``torch.set_num_threads`` on the worker when the model loads.
        share_model_across_processes: Load one copy per machine instead of per process.
    """

    def __init__(
        self,
        aligner: AlignerSpec | str = DEFAULT_ALIGNER,
        params: Mapping[str, Any] | None = None,
        *,
        device: str = "auto",
        batch_shape: str = "pad",
        crop_size: tuple[int, int] | None = None,
        min_batch_size: int = 1,
        max_batch_size: int = 16,
        num_threads: int | None = None,
        share_model_across_processes: bool = False,
    ) -> None:
        check_device_name(device)
        if batch_shape not in BATCH_SHAPES:
            raise ValueError(f"batch_shape must be one of {list(BATCH_SHAPES)}, got {batch_shape!r}")
        if batch_shape == "resize":
            if crop_size is None or len(crop_size) != 2 or min(int(v) for v in crop_size) < 1:
                raise ValueError(f"batch_shape='resize' needs crop_size=(h, w) with positive sides, got {crop_size!r}")
        if not (1 <= int(min_batch_size) <= int(max_batch_size)):
            raise ValueError(f"need 1 <= min_batch_size <= max_batch_size, got {min_batch_size} and {max_batch_size}")
        if num_threads is not None and int(num_threads) < 1:
            raise ValueError(f"num_threads must be >= 1 or None, got {num_threads!r}")
        super().__init__(
            min_batch_size=int(min_batch_size),
            max_batch_size=int(max_batch_size),
            large_model=bool(share_model_across_processes),
        )
        if isinstance(aligner, AlignerSpec):
            if params:
                raise ValueError("give the parameters inside the AlignerSpec, not beside it")
            self.spec = aligner
        else:
            self.spec = AlignerSpec(aligner, dict(params or {}))
        self.device = device
        self.batch_shape = batch_shape
        self.crop_size = None if crop_size is None else (int(crop_size[0]), int(crop_size[1]))
        self.num_threads = None if num_threads is None else int(num_threads)
        self.spec.check()  # fail on the driver for bad parameters (a trained network's weights load on workers)

    def load_model(self) -> nn.Module:
        """Build the aligner on this worker's device (called once per worker process by RunInference)."""
        acquire_torch_threads(self.num_threads)  # held for the worker's life
        exit_with_driver()
        device = resolve_device(self.device)
        model = self.spec.build()
        return model.to(device).eval()

    def run_inference(
        self,
        batch: Sequence[tuple[Any, AlignRequest]],
        model: nn.Module,
        inference_args: Mapping[str, Any] | None = None,
    ) -> Iterable[tuple[Any, np.ndarray]]:
        """Restyle a batch; returns ``(key, (h, w, 3) uint8)`` pairs in the batch's order.

        Raises:
            TypeError: If an element is not a ``(key, AlignRequest)`` pair.
            ValueError: If the aligner needs style pixels that a request does not carry.
        """
        if inference_args:
            raise ValueError(f"AlignerModelHandler takes no inference_args, got {sorted(inference_args)}")
        for element in batch:
            if not (isinstance(element, tuple) and len(element) == 2 and isinstance(element[1], AlignRequest)):
                raise TypeError(f"RunInference elements must be (key, AlignRequest) pairs, got {type(element).__name__}")
        if not batch:
            return []
        keys = [k for k, _ in batch]
        requests = [r for _, r in batch]
        device = resolve_device(self.device)
        with torch.inference_mode():
            if self.batch_shape == "group":
                outputs: list[np.ndarray | None] = [None] * len(requests)
                groups: dict[tuple[int, int], list[int]] = {}
                for i, r in enumerate(requests):
                    groups.setdefault(tuple(r.content.shape[:2]), []).append(i)
                for idx in groups.values():
                    for i, out in zip(idx, self._run(model, [requests[i] for i in idx], device)):
                        outputs[i] = out
                results = outputs
            else:
                results = self._run(model, requests, device)
        return list(zip(keys, results))

    def _run(self, model: nn.Module, requests: list[AlignRequest], device: torch.device) -> list[np.ndarray]:
        aligner = model if isinstance(model, Aligner) else None
        needs_pixels = aligner.needs_style_pixels if aligner is not None else True
        contents = [_to_float(r.content, device) for r in requests]
        masks = [_to_mask(r.mask, device) for r in requests]

        source = torch.stack(
            [
                torch.from_numpy(r.source_stats).to(device)
                if r.source_stats is not None
                else style_stats(c[None])[0]
                for r, c in zip(requests, contents)
            ]
        )
        style, style_mask = self._styles(requests, device, needs_pixels)
        dst = None
        if any(r.style_stats is not None for r in requests) or style is None:
            dst = torch.stack(
                [
                    torch.from_numpy(r.style_stats).to(device)
                    if r.style_stats is not None
                    else style_stats(
                        _to_float(r.style, device)[None],
                        None if r.style_mask is None else _to_mask(r.style_mask, device)[None],
                    )[0]
                    for r in requests
                ]
            )
        sizes = [tuple(c.shape[-2:]) for c in contents]
        scale = torch.tensor([r.content_scale for r in requests], dtype=torch.float32, device=device)
        if self.batch_shape == "resize":
            h, w = self.crop_size  # type: ignore[misc]
            x = torch.stack([F.interpolate(c[None], size=(h, w), mode="bilinear", align_corners=False, antialias=True)[0] for c in contents])
            m = torch.stack([F.interpolate(k[None], size=(h, w), mode="nearest")[0] for k in masks])
            factor = torch.tensor([((h * w) / (s[0] * s[1])) ** 0.5 for s in sizes], device=device)
            scale = scale * factor
        else:
            h = max(s[0] for s in sizes)
            w = max(s[1] for s in sizes)
            x = torch.stack([F.pad(c[None], (0, w - c.shape[-1], 0, h - c.shape[-2]), mode="replicate")[0] for c in contents])
            m = torch.stack([F.pad(k, (0, w - k.shape[-1], 0, h - k.shape[-2])) for k in masks])
        out = model(
            x, m, style, style_mask, source,
            style_stats=dst, content_scale=scale, noise_seeds=[r.seed for r in requests],
        )
        results = []
        for i, (sh, sw) in enumerate(sizes):
            if self.batch_shape == "resize":
                back = F.interpolate(out[i : i + 1], size=(sh, sw), mode="bilinear", align_corners=False, antialias=True)[0]
                y = contents[i] + masks[i] * (back - contents[i])
            else:
                y = out[i, :, :sh, :sw]
            results.append(
                y.clamp(0, 1).mul(255).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy()
            )
        return results

    def _styles(
        self, requests: list[AlignRequest], device: torch.device, needs_pixels: bool
    ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        missing = [i for i, r in enumerate(requests) if r.style is None]
        if missing:
            if needs_pixels:
                raise ValueError(
                    f"aligner {self.spec.name!r} needs style pixels, but {len(missing)} request(s) carry only "
                    "style_stats"
                )
            return None, None
        shapes = {r.style.shape[:2] for r in requests}  # type: ignore[union-attr]
        h = max(s[0] for s in shapes)
        w = max(s[1] for s in shapes)
        styles, masks = [], []
        any_mask = any(r.style_mask is not None for r in requests)
        for r in requests:
            s = _to_float(r.style, device)[None]  # type: ignore[arg-type]
            k = _to_mask(r.style_mask, device)[None] if r.style_mask is not None else torch.ones_like(s[:, :1])
            if s.shape[-2:] != (h, w):
                s = F.interpolate(s, size=(h, w), mode="bilinear", align_corners=False, antialias=True)
                k = F.interpolate(k, size=(h, w), mode="nearest")
            styles.append(s)
            masks.append(k)
        return torch.cat(styles), (torch.cat(masks) if any_mask else None)

    def get_num_bytes(self, batch: Sequence[tuple[Any, AlignRequest]]) -> int:
        """Bytes of image data in the batch (for RunInference's metrics)."""
        total = 0
        for _, r in batch:
            for arr in (r.content, r.mask, r.style, r.style_mask):
                if arr is not None:
                    total += np.asarray(arr).nbytes
        return total

    def get_metrics_namespace(self) -> str:
        return "StylepasteAlign"

    def share_model_across_processes(self) -> bool:
        return bool(getattr(self, "_share_across_processes", False))
