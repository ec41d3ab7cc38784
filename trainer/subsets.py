"""Training on part of a corpus without rewriting it: which frames a run skips by what was pasted into them
(:class:`PasteFilter`, applied by :class:`trainer.data.ShardStream`), and the check that a corpus holds any pasted
pixel at all (:func:`require_pastes`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pyarrow.compute as pc

from schemas.arrow import FRAME
from schemas.manifest import open_shard


@dataclass(frozen=True)
class PasteFilter:
    """Which frames of a corpus a run trains on, by what was pasted into them (the corpus is not rewritten).

    A frame is kept when every object pasted into it passes: its licence is not in ``exclude_licences`` (an
    object whose licence is unknown fails any licence filter) and, when ``categories`` is given, its category is
    one of them. Frames without pastes are always kept.

    Attributes:
        exclude_licences: COCO licence ids whose objects are not trained on (e.g. ``(1, 2, 3)``: NonCommercial).
        categories: COCO category names allowed, or ``None`` for all.
    """

    exclude_licences: tuple[int, ...] = ()
    categories: tuple[str, ...] | None = None

    @property
    def active(self) -> bool:
        """Whether it can drop anything."""
        return bool(self.exclude_licences) or self.categories is not None

    def reason(self, objects: Sequence[Mapping[str, Any]]) -> str | None:
        """Why a frame with these pasted objects is skipped (``licence`` or ``category``), or ``None``."""
        for o in objects:
            if self.exclude_licences and (o.get("license_id") is None or int(o["license_id"]) in
                                          self.exclude_licences):
                return "licence"
            if self.categories is not None and o["category_name"] not in self.categories:
                return "category"
        return None


def filter_rows(urls: Sequence[str], paste_filter: PasteFilter) -> tuple[dict[int, frozenset[int]], dict[str, int]]:
    """The rows of each shard that ``paste_filter`` skips, and the counts kept / skipped (by reason).

    Raises:
        ValueError: For a licence filter on shards that record no licences (``augmented_frame`` v1).
    """
    skipped: dict[int, frozenset[int]] = {}
    counts = {"kept": 0, "skipped": 0, "skipped_licence": 0, "skipped_category": 0}
    for i, url in enumerate(urls):
        pf = open_shard(url, FRAME)
        objects = pf.read(columns=["objects"]).column("objects").to_pylist()
        if paste_filter.exclude_licences and objects and any(
                "license_id" not in o for objs in objects for o in objs):
            raise ValueError(f"{url}: the shards record no licences (augmented_frame v1); --exclude-licences "
                             "needs a corpus written by a newer stylepaste augment")
        rows = set()
        for r, objs in enumerate(objects):
            why = paste_filter.reason(objs)
            if why is None:
                counts["kept"] += 1
            else:
                rows.add(r)
                counts["skipped"] += 1
                counts[f"skipped_{why}"] += 1
        if rows:
            skipped[i] = frozenset(rows)
    return skipped, counts


def filter_line(paste_filter: PasteFilter, counts: Mapping[str, int]) -> str:
    """One line saying what a paste filter kept and skipped."""
    what = []
    if paste_filter.exclude_licences:
        what.append("licences " + ",".join(str(v) for v in paste_filter.exclude_licences) + " excluded")
    if paste_filter.categories is not None:
        what.append("categories " + ",".join(paste_filter.categories))
    return (f"{'; '.join(what)}: kept {counts['kept']} frames, skipped {counts['skipped']} "
            f"(licence {counts.get('skipped_licence', 0)}, category {counts.get('skipped_category', 0)})")


def require_pastes(urls: Sequence[str], allow: bool = False) -> int:
    """The pasted (OoD) pixels of augmented-frame shards, from their ``ood_pixels`` column; refuse a corpus
    without any unless ``allow`` (the OoD term would never act, and the run would only look like a finetune).

    Raises:
        ValueError: Naming the shards, when they hold no pasted pixel and ``allow`` is False.
    """
    total = 0
    for url in urls:
        column = open_shard(url, FRAME).read(columns=["ood_pixels"]).column("ood_pixels")
        total += int(pc.sum(column).as_py() or 0)
    if total == 0 and not allow:
        shown = ", ".join(list(urls)[:3]) + (", ..." if len(urls) > 3 else "")
        raise ValueError(f"the shards ({shown}) hold no pasted pixel: no object was pasted into any frame, so the "
                         "OoD term cannot train anything; rebuild the corpus, or pass --allow-no-pastes")
    return total
