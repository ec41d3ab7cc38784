"""The ``learned`` aligner slot: a user-provided generator network.

Generator contract (what a user's network must do)::

    generator(content, style) -> restyled
    content:  (B, 3, H, W) float32 RGB in [0, 1], the object's crop (the object and its source background)
    style:    (B, 3, h, w) float32 RGB in [0, 1], the destination frame (resized to ``style_size`` if set)
    restyled: (B, 3, H, W) float RGB, expected in [0, 1] (the wrapper clamps it)

The generator restyles the whole crop; :class:`LearnedAligner` then applies the standard aligner output
contract (only masked pixels change, ``strength`` blends with the input), so the generator never sees the
mask or the statistics. It runs on the device the aligner was moved to, in ``eval()`` mode.

Loading (always through fsspec, so local paths, ``memory://``, ``s3://``, ``gs://`` work; never unpickling
arbitrary Python objects):

* ``kind="torchscript"``: ``torch.jit.save`` archive, read with ``torch.jit.load`` from the bytes.
* ``kind="export"``: ``torch.export.save`` program (``.pt2``), read with ``torch.export.load``; its
  ``.module()`` is called. Export with dynamic batch/height/width (``torch.export.Dim``) or set
  ``per_item=True`` and a fixed crop size, since an exported program only accepts the shapes it allows.
  Export in eval mode: an exported program keeps the train/eval mode it was exported in.
* ``kind="state_dict"``: ``torch.save`` of a state dict (optionally under ``state_dict_key``), read with
  ``torch.load(weights_only=True)`` and loaded with ``strict=True`` into ``module_class`` ("package.module:Class",
  built with ``module_kwargs``).
"""

from __future__ import annotations

import importlib
import io
import warnings
from collections.abc import Mapping

import fsspec
import torch
import torch.nn.functional as F
from torch import nn

from style_transfer.aligners import AlignInputs, Aligner

#: Accepted checkpoint kinds.
KINDS: tuple[str, ...] = ("torchscript", "export", "state_dict")


class LearnedAligner(Aligner):
    """Wrap a generator following the module's contract as an aligner.

    Args:
        generator: The network (any callable module taking ``(content, style)``).
        strength: Blend with the input, in [0, 1].
        style_size: Optional (h, w) the style is resized to (bilinear, antialiased) before the call.
        per_item: Call the generator one item at a time (for programs exported with a batch of 1).
    """

    def __init__(
        self,
        generator: nn.Module,
        strength: float = 1.0,
        style_size: tuple[int, int] | None = None,
        per_item: bool = False,
    ) -> None:
        super().__init__(strength)
        if not callable(generator):
            raise TypeError(f"generator must be a callable module, got {type(generator).__name__}")
        if style_size is not None:
            if len(style_size) != 2 or min(int(v) for v in style_size) < 1:
                raise ValueError(f"style_size must be (h, w) with positive sides, got {style_size!r}")
            style_size = (int(style_size[0]), int(style_size[1]))
        self.generator = generator
        self.style_size = style_size
        self.per_item = bool(per_item)
        self.train(False)

    def train(self, mode: bool = True) -> LearnedAligner:
        """Set the mode of the wrapper and, where it allows it, of the generator.

        Programs from ``torch.export`` refuse ``train()``/``eval()``: they keep the mode they were exported
        in (export them in eval mode).
        """
        self.training = mode
        if isinstance(self.generator, nn.Module):
            try:
                self.generator.train(mode)
            except NotImplementedError:
                pass
        return self

    @classmethod
    def from_checkpoint(
        cls,
        path: str,
        kind: str,
        module_class: str | None = None,
        module_kwargs: Mapping[str, object] | None = None,
        state_dict_key: str | None = None,
        strength: float = 1.0,
        style_size: tuple[int, int] | None = None,
        per_item: bool = False,
    ) -> LearnedAligner:
        """Load a generator with :func:`load_generator` and wrap it (``get_aligner("learned", ...)``)."""
        generator = load_generator(
            path, kind, module_class=module_class, module_kwargs=module_kwargs, state_dict_key=state_dict_key
        )
        return cls(generator, strength=strength, style_size=style_size, per_item=per_item)

    def restyle(self, inputs: AlignInputs) -> torch.Tensor:
        content = inputs.content
        style = inputs.require_style()
        if self.style_size is not None and tuple(style.shape[-2:]) != self.style_size:
            style = F.interpolate(style, size=self.style_size, mode="bilinear", align_corners=False, antialias=True)
        if self.per_item:
            out = torch.cat([self._call(content[i : i + 1], style[i : i + 1]) for i in range(content.shape[0])])
        else:
            out = self._call(content, style.contiguous())
        if not isinstance(out, torch.Tensor) or tuple(out.shape) != tuple(content.shape):
            got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            raise ValueError(
                f"the learned generator must return a tensor shaped like content {tuple(content.shape)}, got {got}"
            )
        if not bool(torch.isfinite(out).all()):
            raise ValueError("the learned generator returned non-finite values")
        return out.float()

    def _call(self, content: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        try:
            return self.generator(content, style)
        except Exception as exc:  # the user's network: report the shapes it was given
            raise RuntimeError(
                f"the learned generator failed on content {tuple(content.shape)} and style {tuple(style.shape)}: {exc}"
            ) from exc

    def extra_repr(self) -> str:
        return f"strength={self.strength}, style_size={self.style_size}, per_item={self.per_item}"


class ColorShiftGenerator(nn.Module):
    """A minimal generator that follows the contract (an example, and the fixture of tests and benchmarks).

    ``out = clamp(mix(content) + shift(mean colour of style), 0, 1)``: a 1x1 colour mix of the content plus
    a per-image colour shift predicted from the style's mean colour by a small MLP. Initialised to the
    identity (``mix`` = identity, last layer of ``shift`` = 0).

    Args:
        hidden: Width of the shift MLP.
    """

    def __init__(self, hidden: int = 8) -> None:
        super().__init__()
        self.mix = nn.Conv2d(3, 3, kernel_size=1)
        self.shift = nn.Sequential(nn.Linear(3, hidden), nn.ReLU(), nn.Linear(hidden, 3))
        with torch.no_grad():
            self.mix.weight.copy_(torch.eye(3)[:, :, None, None])
            self.mix.bias.zero_()
            self.shift[2].weight.zero_()
            self.shift[2].bias.zero_()

    def forward(self, content: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) content and (B, 3, h, w) style in [0, 1] -> (B, 3, H, W) in [0, 1]."""
        shift = self.shift(style.mean(dim=(2, 3)))
        return (self.mix(content) + shift[:, :, None, None]).clamp(0.0, 1.0)


def _read_bytes(path: str) -> bytes:
    if not isinstance(path, str) or not path:
        raise ValueError(f"path must be a non-empty fsspec URL or local path, got {path!r}")
    fs, fs_path = fsspec.core.url_to_fs(path)
    if not fs.exists(fs_path):
        raise FileNotFoundError(f"generator checkpoint not found: {path}")
    with fsspec.open(path, "rb") as fh:
        return fh.read()


def _import_class(spec: str) -> type[nn.Module]:
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise ValueError(f"module_class must look like 'package.module:ClassName', got {spec!r}")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ValueError(f"module_class {spec!r}: cannot import {module_name!r}: {exc}") from exc
    obj = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise ValueError(f"module_class {spec!r}: {module_name!r} has no attribute {attr!r}")
        obj = getattr(obj, part)
    if not (isinstance(obj, type) and issubclass(obj, nn.Module)):
        raise ValueError(f"module_class {spec!r} is not a torch.nn.Module subclass")
    return obj


def load_generator(
    path: str,
    kind: str,
    module_class: str | None = None,
    module_kwargs: Mapping[str, object] | None = None,
    state_dict_key: str | None = None,
) -> nn.Module:
    """Load a generator network on the CPU, in ``eval()`` mode (see the module docstring).

    Args:
        path: fsspec URL or local path of the checkpoint.
        kind: "torchscript", "export" or "state_dict".
        module_class: "package.module:ClassName" to build for ``kind="state_dict"`` (required there only).
        module_kwargs: Constructor keyword arguments for ``module_class``.
        state_dict_key: Key under which the state dict sits in the saved dict (e.g. "state_dict"), if any.

    Returns:
        The generator module.

    Raises:
        FileNotFoundError: If the checkpoint does not exist.
        ValueError: For an unknown kind, a missing/invalid module_class, a file that is not a checkpoint of
            that kind, or a state dict whose keys or shapes do not match the module.
    """
    if kind not in KINDS:
        raise ValueError(f"learned kind must be one of {list(KINDS)}, got {kind!r}")
    if kind != "state_dict" and (module_class is not None or module_kwargs or state_dict_key is not None):
        raise ValueError(f"module_class, module_kwargs and state_dict_key apply to kind='state_dict' only, not {kind!r}")
    cls: type[nn.Module] | None = None
    if kind == "state_dict":
        if module_class is None:
            raise ValueError("kind='state_dict' needs module_class='package.module:ClassName'")
        cls = _import_class(module_class)
    data = _read_bytes(path)

    if kind == "torchscript":
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)
                model = torch.jit.load(io.BytesIO(data), map_location="cpu")
        except Exception as exc:
            raise ValueError(f"{path} is not a TorchScript archive (torch.jit.save): {exc}") from exc
        return model.eval()

    if kind == "export":
        try:
            program = torch.export.load(io.BytesIO(data))
        except Exception as exc:
            raise ValueError(f"{path} is not a torch.export program (torch.export.save): {exc}") from exc
        return program.module()  # keeps the mode it was exported in

    try:
        obj = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ValueError(f"{path} is not a weights-only torch.save state dict: {exc}") from exc
    if state_dict_key is not None:
        if not isinstance(obj, Mapping) or state_dict_key not in obj:
            keys = list(obj)[:10] if isinstance(obj, Mapping) else type(obj).__name__
            raise ValueError(f"{path} has no entry {state_dict_key!r} (top level: {keys})")
        obj = obj[state_dict_key]
    if not isinstance(obj, Mapping) or not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items()):
        raise ValueError(f"{path} does not hold a state dict of name -> tensor (got {type(obj).__name__})")
    try:
        model = cls(**dict(module_kwargs or {}))  # type: ignore[misc]
    except Exception as exc:
        raise ValueError(f"cannot build {module_class} with {dict(module_kwargs or {})}: {exc}") from exc
    expected = set(model.state_dict())
    missing = sorted(expected - set(obj))
    unexpected = sorted(set(obj) - expected)
    if missing or unexpected:
        raise ValueError(
            f"{path} does not match {module_class}: missing keys {missing[:10]}"
            f"{' ...' if len(missing) > 10 else ''}, unexpected keys {unexpected[:10]}"
            f"{' ...' if len(unexpected) > 10 else ''}"
        )
    try:
        model.load_state_dict(obj, strict=True)
    except RuntimeError as exc:
        raise ValueError(f"{path} does not match {module_class}: {exc}") from exc
    return model.eval()
