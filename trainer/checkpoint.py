"""Read the field's public segmentation checkpoints and write our own, safely.

Files are read with ``torch.load(map_location="cpu", weights_only=True)``: the weights-only
unpickler rebuilds tensors and plain containers and refuses every other pickled global, so
loading a file never runs code from it. The one exception we allow, explicitly, is numpy scalar
reconstruction (:data:`NUMPY_SCALAR_GLOBALS`), which old training scripts left in metadata
such as ``mean_iu``. We never fall back to ``weights_only=False``.

Accepted layouts (detected automatically):

==============  ==================================================================
``stylepaste``  our own files, written by :func:`save_checkpoint`
``state_dict``  ``{'state_dict': ..., 'optimizer', 'epoch', 'mean_iu', ...}``
                (NVIDIA ``cityscapes_best.pth``, SML ``r101_os8_base_cty.pth``)
``model``       ``{'model': ..., 'optimizer', 'epoch', 'iteration'}`` (PEBAL)
``raw``         a plain ``{key: tensor}`` state dict
==============  ==================================================================

Key clean-up before the strict comparison with the model: leading ``module.`` (DataParallel /
DDP) and ``branch1.`` (PEBAL's wrapper) are stripped; ``criterion*`` keys (training-loss buffers,
e.g. NVIDIA's ``criterion.nll_loss.weight``) are dropped; ``dsn.*`` (SML's training-only
auxiliary head) is dropped when the model has no ``dsn`` and may be missing as a whole when it
has one; missing ``num_batches_tracked`` buffers keep the model's value. Everything else must
match exactly: names, shapes, and the class count of the classifier.
"""

from __future__ import annotations

import dataclasses
import io
import json
import pickle
import posixpath
import re
from collections.abc import Iterable, Mapping
from typing import Any

import fsspec
import numpy as np
import torch
from torch import nn

from schemas.storage import atomic_write

try:  # numpy >= 2
    from numpy._core.multiarray import scalar as _np_scalar
except ImportError:  # pragma: no cover - numpy 1.x
    from numpy.core.multiarray import scalar as _np_scalar

#: Format tag of the files written by :func:`save_checkpoint`.
FORMAT = "stylepaste-checkpoint/1"


def _numpy_scalar_globals() -> tuple[Any, ...]:
    allowed: list[Any] = [
        (_np_scalar, "numpy.core.multiarray.scalar"),
        (_np_scalar, "numpy._core.multiarray.scalar"),
        (np.dtype, "numpy.dtype"),
    ]
    dtypes = getattr(np, "dtypes", None)  # the dtype classes that BUILD is applied to
    for name in ("Float16DType", "Float32DType", "Float64DType", "Int32DType", "Int64DType", "BoolDType"):
        if dtypes is not None and hasattr(dtypes, name):
            allowed.append(getattr(dtypes, name))
    return tuple(allowed)


#: The only non-torch globals the loader accepts: what a pickled numpy scalar (e.g. a
#: ``mean_iu`` of type ``numpy.float64``) needs: the scalar constructor under its numpy 1.x and
#: 2.x module names, ``numpy.dtype`` and the dtype classes of float/int/bool scalars.
NUMPY_SCALAR_GLOBALS: tuple[Any, ...] = _numpy_scalar_globals()

#: Key prefixes stripped before matching (DataParallel/DDP wrappers, PEBAL's ``branch1``).
STRIPPED_PREFIXES: tuple[str, ...] = ("module.", "branch1.")

#: Top-level entries that hold training state rather than weights; never returned.
_TRAINING_STATE = ("optimizer", "scheduler", "lr_scheduler", "amp", "scaler")

_MAX_LISTED = 8


class CheckpointError(ValueError):
    """A checkpoint that cannot be read or does not fit the model; the message says why."""


def read_checkpoint(url: str) -> Any:
    """Unpickle a checkpoint file with the weights-only unpickler.

    Args:
        url: fsspec URL or local path.

    Returns:
        The file's top-level object (tensors on CPU).

    Raises:
        FileNotFoundError: No file at ``url``.
        CheckpointError: The file pickles something other than tensors, plain containers and
            numpy scalars, or is not a torch file at all.
    """
    fs, path = fsspec.core.url_to_fs(url)
    if not fs.exists(path):
        raise FileNotFoundError(f"checkpoint not found: {url}")
    try:
        with fs.open(path, "rb") as f, torch.serialization.safe_globals(list(NUMPY_SCALAR_GLOBALS)):
            return torch.load(f, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        reason = _unpickler_reason(str(e))
        if not any(s in reason for s in _REFUSAL_MARKERS):
            raise CheckpointError(f"cannot read {url} as a torch checkpoint: {reason}") from e
        match = re.search(r"GLOBAL ([\w.]+)", reason)
        what = f"the pickled global {match.group(1)!r}" if match else "a pickled object"
        raise CheckpointError(
            f"refusing to load {url}: it contains {what}, which the weights-only unpickler does "
            "not allow. Checkpoints are only read with torch.load(weights_only=True) because "
            "unpickling anything else can run code from the file. Allowed are tensors, plain "
            "Python containers and numpy scalars (numpy.core.multiarray.scalar / numpy.dtype, "
            "allowed through torch.serialization.safe_globals). If you trust the file, re-save "
            "only its weights, e.g. torch.save(ck['state_dict'], 'weights.pth'), in a separate "
            f"trusted environment. Unpickler message: {reason}"
        ) from None
    except Exception as e:  # noqa: BLE001 - any failure of the (safe) reader means "not a readable checkpoint"
        raise CheckpointError(
            f"cannot read {url} as a torch checkpoint (a torch.save zip or legacy file): {type(e).__name__}: {e}"
        ) from e


def split_checkpoint(obj: Any, url: str = "<checkpoint>") -> tuple[str, dict[str, torch.Tensor], dict[str, Any]]:
    """Find the state dict and the metadata in a loaded checkpoint object.

    Args:
        obj: What :func:`read_checkpoint` returned.
        url: Name used in error messages.

    Returns:
        ``(layout, state_dict, metadata)``: layout is one of ``stylepaste``, ``state_dict``,
        ``model``, ``raw``; the state dict keeps the file's keys; metadata holds the
        JSON-able top-level entries other than weights and training state (numpy scalars
        converted to Python numbers): e.g. ``epoch``, ``mean_iu``, ``command`` for the public
        files; ``arch``, ``num_classes``, ``model_config`` and ``metadata`` (what was given to
        :func:`save_checkpoint`) for ours.

    Raises:
        CheckpointError: No state dict found, or it holds non-tensor values.
    """
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{url}: expected a dict at the top level, found {type(obj).__name__}")
    if obj.get("format") == FORMAT and isinstance(obj.get("state_dict"), Mapping):
        layout, state = "stylepaste", obj["state_dict"]
    elif isinstance(obj.get("state_dict"), Mapping):
        layout, state = "state_dict", obj["state_dict"]
    elif isinstance(obj.get("model"), Mapping):
        layout, state = "model", obj["model"]
    elif obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
        return "raw", dict(obj), {}
    else:
        entries = ", ".join(f"{k!r}: {type(v).__name__}" for k, v in list(obj.items())[:_MAX_LISTED])
        raise CheckpointError(
            f"{url}: no state dict found. Expected a raw {{key: tensor}} dict or a dict with a "
            f"'state_dict' or 'model' entry; top-level entries are {{{entries}}}"
        )
    bad = [k for k, v in state.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise CheckpointError(f"{url}: the {layout} entry holds non-tensor values at keys {_short(bad)}")
    metadata: dict[str, Any] = {}
    for key, value in obj.items():
        if key in ("state_dict", "model") or key in _TRAINING_STATE:
            continue
        plain = _to_json(value)
        if plain is not _NOT_JSON:
            metadata[key] = plain
    metadata.pop("format", None)
    return layout, dict(state), metadata


def prepare_state_dict(
    model: nn.Module, state: Mapping[str, torch.Tensor], *, strict: bool = True, url: str = "<checkpoint>"
) -> tuple[dict[str, torch.Tensor], dict[str, list[str]]]:
    """Clean a file's state dict and check it against ``model`` (the pure core of loading).

    Args:
        model: The model to load into.
        state: The file's ``{key: tensor}``.
        strict: Raise on missing or unexpected keys (after the clean-up described in the
            module docstring). Shape and class-count mismatches always raise.
        url: Name used in error messages.

    Returns:
        ``(clean_state, report)``: the dict to pass to ``model.load_state_dict`` and
        ``{"dropped_keys", "missing_optional_keys", "missing_keys", "unexpected_keys"}``.

    Raises:
        CheckpointError: Class-count mismatch, shape mismatches, or (strict) missing or
            unexpected keys; the message lists a few of them.
    """
    expected = model.state_dict()
    module_names = {name for name, _ in model.named_modules()}
    has_dsn = "dsn" in module_names

    clean: dict[str, torch.Tensor] = {}
    dropped: list[str] = []
    for key, value in state.items():
        name = _strip_prefixes(key)
        if name.startswith("criterion") or (name.startswith("dsn.") and not has_dsn):
            dropped.append(key)
            continue
        if name in clean:
            raise CheckpointError(f"{url}: keys {key!r} and another key both map to {name!r} after prefix stripping")
        clean[name] = value

    _check_class_count(model, clean, expected, url)

    mismatched = [
        f"{k}: file {list(clean[k].shape)} vs model {list(v.shape)}"
        for k, v in expected.items()
        if k in clean and tuple(clean[k].shape) != tuple(v.shape)
    ]
    if mismatched:
        raise CheckpointError(
            f"{url}: {len(mismatched)} tensor(s) have a different shape than in {type(model).__name__}: "
            f"{_short(mismatched, quote=False)}"
        )

    missing = [k for k in expected if k not in clean]
    unexpected = [k for k in clean if k not in expected]
    optional: list[str] = []
    dsn_keys = [k for k in expected if k.startswith("dsn.")]
    if dsn_keys and not any(k in clean for k in dsn_keys):
        optional += dsn_keys
    for k in missing:
        if k.endswith(".num_batches_tracked") and k not in optional:
            optional.append(k)
    for k in optional:
        clean[k] = expected[k].detach().clone()
    missing = [k for k in missing if k not in optional]

    if strict and (missing or unexpected):
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing key(s) {_short(missing)}")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected key(s) {_short(unexpected)}")
        raise CheckpointError(
            f"{url} does not match {type(model).__name__} (strict=True): {'; '.join(parts)}. "
            "Check the architecture (wrn38 / r101 / small) and the file."
        )
    for k in unexpected:
        del clean[k]
    report = {
        "dropped_keys": dropped,
        "missing_optional_keys": [k for k in optional if not k.endswith(".num_batches_tracked")],
        "missing_keys": missing,
        "unexpected_keys": unexpected,
    }
    return clean, report


def check_finite_state(state: dict[str, torch.Tensor], url: str) -> None:
    """Refuse a state dict with NaN or infinite values (a diverged run): its outputs would be NaN, and every metric
    computed from them meaningless.

    Raises:
        ValueError: Naming the checkpoint, the count and the first tensors concerned.
    """
    bad = {k: int((~torch.isfinite(v)).sum()) for k, v in state.items() if v.is_floating_point()}
    bad = {k: n for k, n in bad.items() if n}
    if bad:
        raise ValueError(f"{url}: {sum(bad.values())} non-finite values in {len(bad)} tensors ({_short(list(bad))}); "
                         "the checkpoint comes from a diverged run and is refused")


def load_checkpoint(model: nn.Module, url: str, *, strict: bool = True) -> dict[str, Any]:
    """Load a checkpoint file into ``model``.

    Args:
        model: Target model (e.g. from :func:`trainer.models.build_model`); modified in place.
        url: fsspec URL or local path of a file in one of the accepted layouts.
        strict: Refuse missing or unexpected keys (after the documented clean-up). With
            ``strict=False`` they are only reported; shape mismatches raise either way.

    Returns:
        ``{"url", "layout", "num_tensors", "metadata", "dropped_keys", "missing_optional_keys",
        "missing_keys", "unexpected_keys"}``; ``metadata`` is described in
        :func:`split_checkpoint` (for our files, ``metadata["metadata"]`` is what was saved).

    Raises:
        FileNotFoundError: No file at ``url``.
        CheckpointError: Unsafe or unreadable file, no state dict, architecture or class-count
            mismatch, shape mismatches, or (strict) missing / unexpected keys.
    """
    layout, state, metadata = split_checkpoint(read_checkpoint(url), url)
    arch = getattr(model, "arch", None)
    if layout == "stylepaste" and arch is not None and metadata.get("arch") not in (None, arch):
        raise CheckpointError(f"{url} was saved from arch {metadata['arch']!r}, the model is {arch!r}")
    _check_model_config(model, metadata, url)
    clean, report = prepare_state_dict(model, state, strict=strict, url=url)
    check_finite_state(clean, url)
    model.load_state_dict(clean, strict=not report["missing_keys"])
    return {"url": url, "layout": layout, "num_tensors": len(clean), "metadata": metadata, **report}


def _check_model_config(model: nn.Module, metadata: Mapping[str, Any], url: str) -> None:
    """Refuse a checkpoint whose recorded model config (e.g. the output stride) differs from the model's.

    Settings such as ``SmallConfig.output_stride`` change no parameter shape, so a shape check alone would load
    such a file silently into a model that computes something else.
    """
    saved = metadata.get("model_config")
    config = getattr(model, "config", None)
    if not saved or not dataclasses.is_dataclass(config):
        return
    mine = json.loads(json.dumps(dataclasses.asdict(config)))
    diffs = [f"{k}: file {saved.get(k)!r}, model {mine[k]!r}" for k in mine if k in saved and saved[k] != mine[k]]
    if diffs:
        raise CheckpointError(f"{url} was saved from a {type(model).__name__} with another configuration "
                              f"({'; '.join(diffs)}); build the model with the file's model_config")


def save_checkpoint(
    model: nn.Module | Mapping[str, torch.Tensor],
    url: str,
    *,
    metadata: Mapping[str, Any] | None = None,
    arch: str | None = None,
    num_classes: int | None = None,
) -> None:
    """Write one of our checkpoints: a plain dict of tensors plus small JSON-able metadata.

    The file is ``{"format": FORMAT, "arch", "num_classes", "model_config", "metadata",
    "state_dict"}`` written with ``torch.save``; it loads with ``weights_only=True`` and with
    :func:`load_checkpoint`.

    Args:
        model: A model (its ``state_dict()`` is saved) or a state dict.
        url: Destination fsspec URL or local path; parent folders are created.
        metadata: JSON-able information (settings, seed, metrics, source checkpoint URL...).
        arch: Architecture name; defaults to ``model.arch`` when the model has one.
        num_classes: Class count; defaults to ``model.num_classes`` when the model has one.

    Raises:
        ValueError: ``metadata`` is not JSON-able (the message names the bad entry), or the
            state dict holds non-tensors.
    """
    if isinstance(model, nn.Module):
        state = model.state_dict()
        arch = arch or getattr(model, "arch", None)
        num_classes = num_classes if num_classes is not None else getattr(model, "num_classes", None)
        config = getattr(model, "config", None)
        model_config = dataclasses.asdict(config) if dataclasses.is_dataclass(config) else None
    else:
        state, model_config = dict(model), None
    bad = [k for k, v in state.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise ValueError(f"state dict values must be tensors; not tensors: {_short(bad)}")
    meta = dict(metadata or {})
    for key, value in meta.items():
        try:
            json.dumps(value, allow_nan=True)
        except (TypeError, ValueError) as e:
            raise ValueError(f"metadata entry {key!r} is not JSON-able ({type(value).__name__}): {e}") from None
    payload = {
        "format": FORMAT,
        "arch": arch,
        "num_classes": None if num_classes is None else int(num_classes),
        "model_config": json.loads(json.dumps(model_config)) if model_config else None,
        "metadata": json.loads(json.dumps(meta)),
        "state_dict": {k: v.detach().to("cpu").contiguous().clone() for k, v in state.items()},
    }
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    fs, path = fsspec.core.url_to_fs(url)
    parent = posixpath.dirname(path)
    if parent:
        fs.makedirs(parent, exist_ok=True)
    atomic_write(url, buffer.getvalue())  # a full disk leaves the previous file, never a truncated one


def checkpoint_info(url: str) -> dict[str, Any]:
    """Describe a checkpoint without a model: layout, metadata, architecture and class count.

    Args:
        url: fsspec URL or local path.

    Returns:
        ``{"layout", "metadata", "arch", "num_classes", "num_tensors"}``; ``arch`` is the saved
        one or guessed from the key names (``wrn38``: ``mod7.*``; ``r101``: ``layer4.*`` with a
        ``final2.0`` classifier; ``small``: ``layer4.*`` with ``final.6``), ``num_classes``
        the saved one or the classifier's output count; ``None`` when unknown.
    """
    layout, state, metadata = split_checkpoint(read_checkpoint(url), url)
    keys = {_strip_prefixes(k) for k in state}
    arch = metadata.get("arch")
    if arch is None:
        if any(k.startswith("mod7.") for k in keys):
            arch = "wrn38"
        elif any(k.startswith("layer4.") for k in keys):
            arch = "r101" if "final2.0.weight" in keys else "small" if "final.6.weight" in keys else None
    num_classes = metadata.get("num_classes")
    if num_classes is None:
        for key, value in state.items():
            if _strip_prefixes(key) in ("final.6.weight", "final2.0.weight"):
                num_classes = int(value.shape[0])
    return {"layout": layout, "metadata": metadata, "arch": arch, "num_classes": num_classes, "num_tensors": len(state)}


# ----------------------------------------------------------------------------- helpers

#: Phrases of the weights-only unpickler that mean "this file pickles something not allowed".
_REFUSAL_MARKERS = ("GLOBAL", "allowlisted", "unrecognized function", "Can only")


def _unpickler_reason(message: str) -> str:
    """The informative part of torch's weights-only error message (it wraps it in advice)."""
    match = re.search(r"WeightsUnpickler error:(.*?)(?:Check the documentation|$)", message, re.S)
    if match:
        reason = match.group(1)
    else:
        paragraphs = [p for p in message.split("\n\n") if p.strip() and not p.startswith("Check the documentation")]
        reason = paragraphs[-1] if paragraphs else message
    return " ".join(reason.split())[:400]


def _strip_prefixes(key: str) -> str:
    changed = True
    while changed:
        changed = False
        for prefix in STRIPPED_PREFIXES:
            if key.startswith(prefix):
                key, changed = key[len(prefix) :], True
    return key


def _check_class_count(
    model: nn.Module, clean: Mapping[str, torch.Tensor], expected: Mapping[str, torch.Tensor], url: str
) -> None:
    names = getattr(model, "head_names", {}).get("classifier", ())
    for key in (f"{n}.weight" for n in names):
        if key not in clean or key not in expected:
            continue
        n_file, n_model = int(clean[key].shape[0]), int(expected[key].shape[0])
        if n_file == n_model:
            continue
        hint = f"build the model with num_classes={n_file} to load this file"
        if n_file == n_model + 1:
            hint = (
                f"this looks like a PEBAL-style checkpoint ({n_model} classes + 1 extra row added for "
                f"anomalies); {hint}, or use the original {n_model}-class checkpoint"
            )
        raise CheckpointError(
            f"{url}: class count mismatch: the checkpoint's classifier {key!r} has {n_file} output "
            f"classes {list(clean[key].shape)}, the model was built with num_classes={n_model} "
            f"{list(expected[key].shape)}; {hint}"
        )


def _short(items: Iterable[str], limit: int = _MAX_LISTED, *, quote: bool = True) -> str:
    items = list(items)
    head = ", ".join(repr(s) if quote else s for s in items[:limit])
    return f"[{head}{f', ... (+{len(items) - limit} more)' if len(items) > limit else ''}]"


_NOT_JSON = object()


def _to_json(value: Any) -> Any:
    """Return a JSON-able copy of ``value`` (numpy / 0-d tensor scalars become numbers), or ``_NOT_JSON``."""
    if isinstance(value, np.generic):  # before the builtins: numpy.float64 subclasses float
        return _to_json(value.item())
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, torch.Tensor):
        return value.item() if value.numel() == 1 and value.dim() == 0 else _NOT_JSON
    if isinstance(value, (list, tuple)):
        out = [_to_json(v) for v in value]
        return _NOT_JSON if any(v is _NOT_JSON for v in out) else out
    if isinstance(value, Mapping):
        items = {str(k): _to_json(v) for k, v in value.items()}
        return _NOT_JSON if any(v is _NOT_JSON for v in items.values()) else items
    return _NOT_JSON


__all__ = [
    "FORMAT",
    "NUMPY_SCALAR_GLOBALS",
    "STRIPPED_PREFIXES",
    "CheckpointError",
    "checkpoint_info",
    "load_checkpoint",
    "prepare_state_dict",
    "read_checkpoint",
    "save_checkpoint",
    "split_checkpoint",
]
