"""Elements that travel between the augment pipeline's steps: small frozen dataclasses with encoded pixels."""

from __future__ import annotations

from dataclasses import dataclass, field

from pipelines.paste import Drop, FramePlan, ObjectMeta, Placement
from schemas.cityscapes import CityscapesFrame

@dataclass(frozen=True)
class BankObject:
    """One object-bank row as the join carries it (encoded pixels, source statistics)."""

    object_id: int
    category_id: int
    category_name: str
    image: bytes
    mask: bytes
    source_file: str
    source_stats: tuple[float, ...]
    image_id: int = 0
    license_id: int | None = None


@dataclass(frozen=True)
class FrameJob:
    """A read and planned frame, with its pixels still encoded.

    Attributes:
        frame: The Cityscapes frame record.
        image: Source image file bytes.
        passthrough: Whether ``image`` is an 8-bit RGB PNG that may be written unchanged.
        height: Frame height.
        width: Frame width.
        label_png: trainIds map encoded as PNG (the FRAME ``label`` when nothing is pasted).
        label_source: URL the trainIds came from.
        forbidden_png: 0/1 map of forbidden pixels as PNG (None for frames without pastes).
        plan: The frame's plan.
    """

    frame: CityscapesFrame
    image: bytes
    passthrough: bool
    height: int
    width: int
    label_png: bytes
    label_source: str
    forbidden_png: bytes | None
    plan: FramePlan


@dataclass(frozen=True)
class PlacedFrame:
    """A frame after placement, waiting for its aligned objects."""

    job: FrameJob
    placements: tuple[Placement, ...]
    drops: tuple[Drop, ...]
    objects: dict[int, ObjectMeta] = field(default_factory=dict)


def frame_element(frame: CityscapesFrame) -> dict[str, str]:
    return {"frame_id": frame.frame_id, "image": frame.image_url, "label_ids": frame.label_ids_url,
            "train_ids": frame.train_ids_url}
