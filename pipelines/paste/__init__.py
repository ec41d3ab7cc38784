"""Pure core of the augment pipeline: per-frame paste plans, object placement and vectorised pasting.

Everything here is numpy/torch on decoded arrays and has no Beam dependency; :mod:`pipelines.augment` wraps it.
Modules: :mod:`~pipelines.paste.plan` (settings and plans), :mod:`~pipelines.paste.place` (objects and placement),
:mod:`~pipelines.paste.compose` (pasting, visibility, accounting, frame style).

A frame's life:

1. :func:`plan_frame` draws, from ``rng_for(seed, frame_id)`` alone, whether the frame gets pastes, how many
   *slots* (objects) it gets, and for every slot ``K`` *candidates* drawn in advance (bank object, scale, flip
   and a bounded list of anchor points on the drivable area). Drawing the re-draws in advance keeps the
   pipeline to a single join with the bank: the first candidate of a slot that can be placed and stays
   visible after style alignment is used, the others are spares.
2. :func:`place_candidates` resizes each candidate's object (object crop tightened to its mask, longer side =
   ``scale * frame height``, flipped) and tries its anchors in order until the placed mask touches no
   forbidden pixel (ego vehicle and the other Cityscapes *void* labels) and no region claimed by an earlier
   slot's candidates. Candidates that fit nowhere are dropped with reason ``no_placement``.
3. The placed candidates are restyled to the destination frame (at their pasted size) outside this module.
4. :func:`compose_frame` pastes, slot by slot, the first candidate whose paste is visible
   (``visibility >= min_contrast``); the label map gets :data:`~schemas.labels.OOD` (254) where the resized
   object mask is 1. A slot whose candidates are all invisible is dropped with reason ``invisible``.

Every dropped candidate and slot is returned so that the pipeline can count it; nothing is dropped silently.
"""

from __future__ import annotations

from pipelines.paste.compose import (
    BlendFn,
    ComposeResult,
    PastedObject,
    SLOT_PASTED,
    STYLE_WINDOW,
    VISIBILITY_RING,
    VisibilityFn,
    blend_pad,
    compose_frame,
    composite_region,
    default_blend,
    default_visibility,
    frame_style,
    paste,
    paste_into,
    slot_outcomes,
    to_uint8,
    visibility_region,
)
from pipelines.paste.place import (
    Drop,
    ObjectCrop,
    ObjectMeta,
    Placement,
    object_size,
    place_candidates,
    resize_object,
    tighten,
)
from pipelines.paste.plan import (
    Anchor,
    BLEND_MODES,
    Candidate,
    DEFAULT_SURFACES,
    DROP_BAD_OBJECT,
    DROP_INVISIBLE,
    DROP_MISSING_OBJECT,
    DROP_NO_PLACEMENT,
    DROP_REASONS,
    FramePlan,
    PasteConfig,
    Slot,
    VOID_LABEL_IDS,
    forbidden_mask,
    plan_frame,
)

__all__ = [
    "Anchor",
    "BLEND_MODES",
    "BlendFn",
    "Candidate",
    "ComposeResult",
    "DEFAULT_SURFACES",
    "DROP_BAD_OBJECT",
    "DROP_INVISIBLE",
    "DROP_MISSING_OBJECT",
    "DROP_NO_PLACEMENT",
    "DROP_REASONS",
    "Drop",
    "FramePlan",
    "ObjectCrop",
    "ObjectMeta",
    "PasteConfig",
    "PastedObject",
    "Placement",
    "SLOT_PASTED",
    "STYLE_WINDOW",
    "Slot",
    "VISIBILITY_RING",
    "VOID_LABEL_IDS",
    "VisibilityFn",
    "blend_pad",
    "compose_frame",
    "composite_region",
    "default_blend",
    "default_visibility",
    "forbidden_mask",
    "frame_style",
    "object_size",
    "paste",
    "paste_into",
    "place_candidates",
    "plan_frame",
    "resize_object",
    "slot_outcomes",
    "tighten",
    "to_uint8",
    "visibility_region",
]
