"""A shard folder as a dataset others can take: what is in it (:func:`corpus_info`), whether every shard is intact
(:func:`verify_corpus`), and its dataset card (:func:`card_text`, a README.md in the Hugging Face dataset-card
format that every bank and augment run writes beside its manifest).

The numbers come from the manifest and from a few small columns of the shards (categories, pixel counts,
licences); image and mask bytes are never read.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping
from typing import Any

import fsspec

from schemas.arrow import FRAME, KINDS, OBJECT_BANK, ShardKind
from schemas.manifest import Manifest, file_sha256, join_url, open_shard, read_manifest

NONCOMMERCIAL_COCO_LICENSES: tuple[int, ...] = (1, 2, 3)
"""Ids of the NonCommercial licences in the official COCO ``licenses`` list (BY-NC-SA, BY-NC, BY-NC-ND)."""

CARD_NAME = "README.md"
"""The dataset card beside the manifest."""


def _kind(man: Manifest, url: str) -> ShardKind:
    kind = KINDS.get(man.kind)
    if kind is None or kind.version_of(man.schema_version) is None:
        raise ValueError(f"{url}: unknown shard kind {man.kind} v{man.schema_version}")
    return kind


def corpus_info(url: str, manifest: Manifest | None = None) -> dict[str, Any]:
    """Describe a bank or frame corpus (``manifest``: the one about to be written for the shards in ``url``;
    default: read ``url``'s).

    Returns:
        ``{"url", "kind", "schema_version", "rows", "shards", "bytes", "categories": {name: {"objects",
        "pixels", "pixel_share"}}, "licenses": {id or "unknown": {"name", "objects", "pixels", "pixel_share"}},
        "parameters", "seed", "source", "counts", "written_by", "missing_fields"}`` (shares in %, pixels: mask
        area for a bank, pasted pixels for frames).

    Raises:
        FileNotFoundError: If ``url`` holds no manifest.
        ValueError: For an unknown kind or unreadable shards.
    """
    man = read_manifest(url) if manifest is None else manifest
    kind = _kind(man, url)
    objects: Counter = Counter()
    pixels: Counter = Counter()
    lic_objects: Counter = Counter()
    lic_pixels: Counter = Counter()
    lic_names: dict[Any, str | None] = dict(man.source.get("licenses", {}) or {})
    missing: list[str] = []
    for shard in man.shards:
        pf = open_shard(join_url(url, shard.path), kind)
        names = pf.schema_arrow.names
        if kind.name == OBJECT_BANK.name:
            cols = ["category_name", "area"] + [c for c in ("license_id", "license_name") if c in names]
            for row in pf.read(columns=cols).to_pylist():
                lid = row.get("license_id")
                objects[row["category_name"]] += 1
                pixels[row["category_name"]] += float(row["area"])
                lic_objects[lid] += 1
                lic_pixels[lid] += float(row["area"])
                if lid is not None and row.get("license_name"):
                    lic_names[str(lid)] = row["license_name"]
        else:
            for objs in pf.read(columns=["objects"]).column("objects").to_pylist():
                for o in objs:
                    lid = o.get("license_id")
                    objects[o["category_name"]] += 1
                    pixels[o["category_name"]] += int(o["ood_pixels"])
                    lic_objects[lid] += 1
                    lic_pixels[lid] += int(o["ood_pixels"])
        if kind.version_of(man.schema_version) is not kind:
            missing = [n for n in kind.schema.names if n not in names]
    total = sum(pixels.values()) or 1
    ltotal = sum(lic_pixels.values()) or 1
    categories = {c: {"objects": objects[c], "pixels": pixels[c], "pixel_share": 100.0 * pixels[c] / total}
                  for c in sorted(objects, key=lambda c: (-pixels[c], c))}
    licenses = {}
    for lid in sorted(lic_objects, key=lambda v: (v is None, v if v is not None else 0)):
        key = "unknown" if lid is None else str(lid)
        licenses[key] = {"name": lic_names.get(key) if lid is not None else None, "objects": lic_objects[lid],
                         "pixels": lic_pixels[lid], "pixel_share": 100.0 * lic_pixels[lid] / ltotal}
    return {
        "url": url, "kind": man.kind, "schema_version": man.schema_version, "rows": man.rows,
        "shards": len(man.shards), "bytes": sum(s.bytes or 0 for s in man.shards), "categories": categories,
        "licenses": licenses, "parameters": man.parameters, "seed": man.seed, "source": man.source,
        "counts": man.counts, "written_by": man.written_by, "missing_fields": missing,
    }


def format_info(info: Mapping[str, Any]) -> str:
    """The human-readable form of :func:`corpus_info`."""
    unit = "mask pixels" if info["kind"] == OBJECT_BANK.name else "pasted pixels"
    lines = [
        f"{info['url']}: {info['kind']} v{info['schema_version']}, {info['rows']} rows in {info['shards']} shards, "
        f"{info['bytes'] / 1e6:.1f} MB",
        f"written by {json.dumps(info['written_by']) if info['written_by'] else 'an unrecorded version'}; "
        f"seed {info['seed']}",
    ]
    if info["missing_fields"]:
        lines.append(f"older schema: no {', '.join(info['missing_fields'])} (licence figures unknown)")
    lines.append(f"categories ({unit}):")
    lines += [f"  {c:<16} {v['objects']:>6} objects {v['pixel_share']:6.2f} %" for c, v in info["categories"].items()]
    lines.append(f"licences ({unit}):")
    lines += [f"  {k:<8} {v['name'] or '':<48} {v['objects']:>6} objects {v['pixel_share']:6.2f} %"
              for k, v in info["licenses"].items()]
    params = info["parameters"]
    if params:
        keys = [k for k in ("aligner", "align_strength", "paste", "min_contrast", "image_codec", "split", "min_area",
                            "excluded_categories") if k in params]
        lines.append("settings: " + "; ".join(f"{k}={json.dumps(params[k], sort_keys=True)}" for k in keys))
    if info["source"]:
        lines.append("inputs: " + json.dumps(info["source"], sort_keys=True))
    return "\n".join(lines)


def verify_corpus(url: str) -> list[str]:
    """Check every shard against the manifest: present, same size and SHA-256 as recorded at write time, the
    recorded row count and an accepted schema.

    Returns:
        The problems, first bad shard first ([] when the corpus is intact). A manifest written before checksums
        were recorded is reported as such (the other checks still run).

    Raises:
        FileNotFoundError: If ``url`` holds no manifest.
    """
    man = read_manifest(url)
    kind = _kind(man, url)
    problems = []
    for shard in man.shards:
        shard_url = join_url(url, shard.path)
        fs, path = fsspec.core.url_to_fs(shard_url)
        if not fs.exists(path):
            problems.append(f"{shard_url}: missing")
            continue
        if shard.sha256 is None:
            problems.append(f"{shard_url}: the manifest records no checksum (written by an older version)")
        else:
            digest, size = file_sha256(shard_url)
            if size != shard.bytes or digest != shard.sha256:
                problems.append(f"{shard_url}: content differs from the manifest (sha256 {digest[:12]}..., "
                                f"{size} bytes; recorded {shard.sha256[:12]}..., {shard.bytes} bytes)")
                continue
        try:
            rows = open_shard(shard_url, kind).metadata.num_rows
        except (ValueError, OSError) as err:
            problems.append(f"{shard_url}: {err}")
            continue
        if rows != shard.rows:
            problems.append(f"{shard_url}: {rows} rows, the manifest records {shard.rows}")
    return problems


def card_text(info: Mapping[str, Any]) -> str:
    """A dataset card (README.md with a YAML header in the Hugging Face format) for a corpus."""
    is_bank = info["kind"] == OBJECT_BANK.name
    n = info["rows"]
    size = ("n<1K" if n < 1_000 else "1K<n<10K" if n < 10_000 else "10K<n<100K" if n < 100_000 else
            "100K<n<1M" if n < 1_000_000 else "n>1M")
    kind = OBJECT_BANK if is_bank else FRAME
    features = [{"name": f.name, "dtype": str(f.type) if not str(f.type).startswith(("list", "struct")) else "nested"}
                for f in kind.schema]
    known = {k: v for k, v in info["licenses"].items() if k != "unknown"}
    nc = [k for k in known if k.isdigit() and int(k) in NONCOMMERCIAL_COCO_LICENSES]
    header = {
        "pretty_name": "stylepaste object bank" if is_bank else "stylepaste augmented frames",
        "license": "other",
        "license_name": "mixed: see the licence table",
        "size_categories": [size],
        "task_categories": ["image-segmentation"],
        "tags": ["stylepaste", "anomaly-segmentation", "out-of-distribution", "copy-paste",
                 "object-bank" if is_bank else "augmented-frames"],
        "configs": [{"config_name": "default", "data_files": [{"split": "train", "path": "*.parquet"}]}],
        "dataset_info": {"features": features},
    }
    yaml = _yaml(header)
    unit = "mask pixels" if is_bank else "pasted pixels"
    lines = ["---", yaml.rstrip(), "---", "",
             f"# {header['pretty_name']}", "",
             f"{n} rows in {info['shards']} Parquet shards ({info['bytes'] / 1e6:.1f} MB), schema "
             f"`{info['kind']}` v{info['schema_version']}, written by stylepaste "
             f"{info['written_by'].get('stylepaste', 'unknown')}.", "",
             "## Licences", "",
             ("Each object keeps the licence of the COCO image it was cut from (`license_id`, `license_name`, "
              "`license_url`)." if is_bank else
              "Each pasted object keeps the licence of its COCO source image (`objects.license_id`); each frame "
              "names the terms of its own source in `frame_terms`."), "",
             f"| licence id | name | objects | share of {unit} |", "|---|---|---:|---:|"]
    lines += [f"| {k} | {v['name'] or ''} | {v['objects']} | {v['pixel_share']:.2f} % |"
              for k, v in info["licenses"].items()]
    if nc:
        lines += ["", f"Licences {', '.join(nc)} are NonCommercial in COCO's list. Train without them with "
                      "`stylepaste finetune --exclude-licences " + ",".join(nc) + "`."]
    lines += ["", "## Contents", "", f"| category | objects | share of {unit} |", "|---|---:|---:|"]
    lines += [f"| {c} | {v['objects']} | {v['pixel_share']:.2f} % |" for c, v in info["categories"].items()]
    lines += ["", "## How it was made", "",
              "```json", json.dumps({"parameters": {k: v for k, v in info["parameters"].items()
                                                    if k not in ("out", "overwrite")}, "seed": info["seed"],
                                     "source": info["source"]}, indent=1, sort_keys=True), "```", "",
              "## How to load it", "", "```python",
              "import pyarrow.parquet as pq",
              "# this card and the _files beside the shards are not Parquet: skip them when reading the folder",
              'table = pq.read_table("<this folder>", ignore_prefixes=["README", "_", "."])',
              "# or: datasets.load_dataset(\"parquet\", data_files=\"<this folder>/*.parquet\")",
              "# or: duckdb.sql(\"SELECT * FROM read_parquet('<this folder>/*.parquet')\")",
              "```", "",
              "Check it before use: `stylepaste corpus verify <this folder>` (every shard against the SHA-256 in "
              "`_manifest.json`); `stylepaste corpus info <this folder>` describes it.", ""]
    return "\n".join(lines)


def _yaml(value: Any, indent: int = 0) -> str:
    """A small YAML writer for the card header (dicts, lists, strings, numbers; strings quoted as JSON)."""
    pad = " " * indent
    if isinstance(value, dict):
        out = []
        for k, v in value.items():
            if isinstance(v, (dict, list)) and v:
                out.append(f"{pad}{k}:\n{_yaml(v, indent + 2)}")
            else:
                out.append(f"{pad}{k}: {_scalar(v)}")
        return "\n".join(out)
    if isinstance(value, list):
        out = []
        for v in value:
            if isinstance(v, dict) and v:
                inner = _yaml(v, indent + 2).lstrip()
                out.append(f"{pad}- {inner}")
            else:
                out.append(f"{pad}- {_scalar(v)}")
        return "\n".join(out)
    return pad + _scalar(value)


def _scalar(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return str(v)
    if isinstance(v, (list, dict)):
        return json.dumps(v)
    return json.dumps(str(v))


def parse_licence_ids(text: str) -> tuple[int, ...]:
    """``--exclude-licences 1,2,3`` -> ``(1, 2, 3)`` (sorted, unique).

    Raises:
        ValueError: For a value that is not an integer.
    """
    try:
        return tuple(sorted({int(v) for v in text.split(",") if v.strip()}))
    except ValueError:
        raise ValueError(f"--exclude-licences takes integer COCO licence ids like 1,2,3, got {text!r}") from None
