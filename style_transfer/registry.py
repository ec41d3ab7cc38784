"""The aligners by name: :func:`get_aligner` builds one, :class:`AlignerSpec` names one with its parameters.

An :class:`AlignerSpec` is what crosses stage boundaries (``stylepaste augment``'s settings, the study's
settings, the Beam model handler, the frame rows and the manifest): built once from the command line, recorded
in one shape (``{"name": ..., "params": {...}}``), and turned into a module only where it runs.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from style_transfer.aligners import DEFAULT_ALIGNER, Aligner, Compose, NoAlign
from style_transfer.colour import FDA, Histogram, Reinhard
from style_transfer.learned import LearnedAligner
from style_transfer.sensor import Sensor

_SIMPLE: dict[str, type[Aligner]] = {
    "none": NoAlign,
    "reinhard": Reinhard,
    "sensor": Sensor,
    "histogram": Histogram,
    "fda": FDA,
}

#: Names accepted by :func:`get_aligner` (besides "a+b" chains of the simple ones).
ALIGNER_NAMES: tuple[str, ...] = (*_SIMPLE, "learned", "chain")


def get_aligner(name: str, **params: object) -> Aligner:
    """Build an aligner by name.

    Names and their parameters (see each class):

    * ``"none"``: :class:`NoAlign` (strength).
    * ``"reinhard"``: :class:`Reinhard` (mode="image"|"object", strength, max_ratio).
    * ``"sensor"``: :class:`Sensor` (strength, blur, noise, compression, max_sigma, seed).
    * ``"histogram"``: :class:`Histogram` (mode, space, strength).
    * ``"fda"``: :class:`FDA` (beta, strength).
    * ``"learned"``: :class:`style_transfer.learned.LearnedAligner` (path, kind, module_class, ...).
    * ``"chain"``: :class:`Compose` of ``steps``, a list of ``(name, params)`` pairs or aligners (strength).
    * ``"a+b+..."``: chain of simple aligners with their default parameters, e.g. ``"reinhard+sensor"``
      (:data:`DEFAULT_ALIGNER`); ``params`` then applies to the chain (strength only).

    Args:
        name: One of :data:`ALIGNER_NAMES` or a "+"-joined chain.
        **params: Constructor parameters.

    Returns:
        The aligner module (on the CPU; move it with ``.to(device)``).

    Raises:
        ValueError: For an unknown name.
        TypeError: For a parameter the aligner does not take.
    """
    if not isinstance(name, str):
        raise TypeError(f"aligner name must be a string, got {type(name).__name__}")
    if "+" in name:
        parts = [p.strip() for p in name.split("+")]
        steps = [get_aligner(p) for p in parts]
        return _construct("chain", Compose, steps=steps, **params)
    if name == "chain":
        raw = params.pop("steps", None)
        if not isinstance(raw, (list, tuple)) or not raw:
            raise ValueError("aligner 'chain' needs steps=[(name, params), ...] with at least one step")
        steps = []
        for step in raw:
            if isinstance(step, Aligner):
                steps.append(step)
            elif isinstance(step, (list, tuple)) and len(step) == 2 and isinstance(step[0], str):
                steps.append(get_aligner(step[0], **dict(step[1] or {})))
            elif isinstance(step, str):
                steps.append(get_aligner(step))
            else:
                raise ValueError(f"chain step must be a name, a (name, params) pair or an Aligner, got {step!r}")
        return _construct("chain", Compose, steps=steps, **params)
    if name == "learned":
        return _construct(name, LearnedAligner.from_checkpoint, **params)
    if name not in _SIMPLE:
        raise ValueError(f"unknown aligner {name!r}; choose one of {list(ALIGNER_NAMES)} or join simple ones with '+'")
    return _construct(name, _SIMPLE[name], **params)


def _construct(name: str, factory, **params: object) -> Aligner:
    try:
        return factory(**params)
    except TypeError as exc:
        if "argument" in str(exc):
            raise TypeError(f"aligner {name!r}: {exc}") from exc
        raise


@dataclass(frozen=True)
class AlignerSpec:
    """An aligner by name with its constructor parameters (see :func:`get_aligner`).

    Attributes:
        name: One of :data:`ALIGNER_NAMES` or a ``+``-joined chain of simple ones (``reinhard+sensor``).
        params: Constructor parameters (JSON values only).
    """

    name: str = DEFAULT_ALIGNER
    params: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"aligner name must be a non-empty string, got {self.name!r}")
        for part in self.parts:
            if part not in ALIGNER_NAMES:
                raise ValueError(f"unknown aligner {part!r} in {self.name!r}; choose one of {list(ALIGNER_NAMES)} "
                                 "or join simple ones with '+'")
        if not isinstance(self.params, Mapping):
            raise ValueError(f"aligner parameters must be a mapping, got {type(self.params).__name__}")
        try:
            json.dumps(dict(self.params), sort_keys=True)
        except TypeError as err:
            raise ValueError(f"aligner parameters must be JSON values, got {dict(self.params)!r}: {err}") from None
        object.__setattr__(self, "params", dict(self.params))

    @classmethod
    def parse(cls, name: str, params_json: str = "{}") -> AlignerSpec:
        """From the command line's ``--aligner NAME --aligner-params JSON``.

        Raises:
            ValueError: If the JSON is not an object, or for an unknown name.
        """
        try:
            params = json.loads(params_json or "{}")
        except json.JSONDecodeError as err:
            raise ValueError(f"--aligner-params must be a JSON object, got {params_json!r} ({err})") from None
        if not isinstance(params, dict):
            raise ValueError(f"--aligner-params must be a JSON object, got {params_json!r}")
        return cls(name, params)

    @classmethod
    def from_json(cls, record: Mapping[str, Any]) -> AlignerSpec:
        """From :meth:`to_json`'s shape."""
        return cls(str(record["name"]), dict(record.get("params") or {}))

    def to_json(self) -> dict[str, Any]:
        """``{"name": ..., "params": {...}}``: the one recorded shape (frame rows, manifests, study records)."""
        return {"name": self.name, "params": dict(sorted(self.params.items()))}

    @property
    def parts(self) -> tuple[str, ...]:
        """The simple aligners of a ``+`` chain (the name itself otherwise)."""
        return tuple(p.strip() for p in self.name.split("+"))

    @property
    def is_learned(self) -> bool:
        """Whether a trained network (weights from a file) is involved."""
        return "learned" in self.parts or any(_step_name(s) == "learned" for s in self.params.get("steps") or ())

    @property
    def needs_style_pixels(self) -> bool:
        """Whether the aligner needs the destination thumbnail, not only its statistics; answered without
        building it (no weights are read)."""
        if self.name == "chain":
            return any(_class_of(_step_name(s)).pixels_needed(_step_params(s)) for s in self.params.get("steps") or ())
        if len(self.parts) > 1:
            return any(_class_of(p).pixels_needed({}) for p in self.parts)
        return _class_of(self.name).pixels_needed(self.params)

    def with_params(self, **params: Any) -> AlignerSpec:
        """A copy with ``params`` added (e.g. ``strength``)."""
        return AlignerSpec(self.name, {**self.params, **params})

    def build(self) -> Aligner:
        """The aligner module (on the CPU)."""
        return get_aligner(self.name, **self.params)

    def check(self) -> None:
        """Build it once to refuse bad parameters early, unless that would read a trained network's weights."""
        if not self.is_learned:
            self.build()

    def __str__(self) -> str:
        return self.name if not self.params else f"{self.name} {json.dumps(dict(self.params), sort_keys=True)}"


def _class_of(name: str) -> type[Aligner]:
    """The aligner class behind a simple name (``learned`` included; the base class, which needs the style pixels,
    for a name it does not know)."""
    return LearnedAligner if name == "learned" else _SIMPLE.get(name, Aligner)


def _step_name(step: Any) -> str:
    return step if isinstance(step, str) else str(step[0]) if isinstance(step, (list, tuple)) else ""


def _step_params(step: Any) -> dict[str, Any]:
    return dict(step[1] or {}) if isinstance(step, (list, tuple)) and len(step) == 2 else {}
