"""Hand-written, versioned Arrow schemas of the shard kinds, and their validation.

Each schema carries its name and version in the schema metadata (``stylepaste.schema``,
``stylepaste.schema_version``) and per-field metadata (``dtype``, ``shape``, ``codec``, ``doc``) so that
shards describe themselves to any Parquet reader. Schemas are never inferred and rows are never pickled.

Versions. A version number changes with any change of fields or their meaning. Writers write the current
version only. Readers accept the current version and the earlier ones a kind lists in ``previous`` (they read
the fields both have and treat the newer fields as unknown, with a note saying what is missing); any other
name or version is a :class:`SchemaMismatchError` naming the expected and the found one.

* ``object_bank`` v2 (current) adds the licence and source URLs of each object's COCO image: ``license_id``,
  ``license_name``, ``license_url``, ``coco_url``, ``flickr_url``. v1 has none of them.
* ``augmented_frame`` v2 (current) adds, per pasted object, its source ``image_id`` and ``license_id``, and per
  frame the terms of its own source (``frame_terms``). v1 has none of them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import pyarrow as pa

SCHEMA_NAME_KEY = b"stylepaste.schema"
SCHEMA_VERSION_KEY = b"stylepaste.schema_version"


class SchemaMismatchError(ValueError):
    """Raised when a table or shard does not carry the schema (or version) that was expected."""


@dataclass(frozen=True)
class ShardKind:
    """A named, versioned shard schema.

    Attributes:
        name: Schema name, e.g. ``"object_bank"``.
        version: Integer version; bumped on any change of fields or their meaning.
        schema: The Arrow schema, including its metadata.
    """

    name: str
    version: int
    schema: pa.Schema
    previous: tuple[ShardKind, ...] = ()

    @property
    def tag(self) -> str:
        """``"<name> v<version>"`` as used in messages."""
        return f"{self.name} v{self.version}"

    def accepted(self) -> tuple[ShardKind, ...]:
        """This version and the earlier ones readers accept, newest first."""
        return (self, *self.previous)

    def version_of(self, version: int) -> ShardKind | None:
        """The accepted kind of that version, or ``None``."""
        return next((k for k in self.accepted() if k.version == version), None)


def _field(name: str, type_: pa.DataType, doc: str, *, dtype: str = "", shape: str = "", codec: str = "",
           nullable: bool = False) -> pa.Field:
    meta = {"doc": doc}
    if dtype:
        meta["dtype"] = dtype
    if shape:
        meta["shape"] = shape
    if codec:
        meta["codec"] = codec
    return pa.field(name, type_, nullable=nullable, metadata=meta)


def _schema(name: str, version: int, fields: list[pa.Field], doc: str,
            previous: tuple[ShardKind, ...] = ()) -> ShardKind:
    meta = {
        SCHEMA_NAME_KEY: name.encode(),
        SCHEMA_VERSION_KEY: str(version).encode(),
        b"stylepaste.doc": doc.encode(),
    }
    return ShardKind(name, version, pa.schema(fields, metadata=meta), previous)


_BANK_V1_FIELDS = [
        _field("object_id", pa.int64(), "COCO annotation id (unique object id)", dtype="int64"),
        _field("image_id", pa.int64(), "COCO image id", dtype="int64"),
        _field("category_id", pa.int32(), "COCO category id", dtype="int32"),
        _field("category_name", pa.string(), "COCO category name"),
        _field("image", pa.binary(), "RGB crop of the object's box plus margin", dtype="uint8",
               shape="height,width,3", codec="png"),
        _field("mask", pa.binary(), "instance mask of the crop, 0 = background, 1 = object", dtype="uint8",
               shape="height,width", codec="png"),
        _field("height", pa.int32(), "crop height in pixels", dtype="int32"),
        _field("width", pa.int32(), "crop width in pixels", dtype="int32"),
        _field("crop_box", pa.list_(pa.int32(), 4), "crop in source-image pixels: x0, y0, x1, y1 (exclusive)",
               dtype="int32", shape="4"),
        _field("bbox", pa.list_(pa.float64(), 4), "COCO bbox in source-image pixels: x, y, w, h",
               dtype="float64", shape="4"),
        _field("area", pa.float64(), "mask area in pixels (pycocotools)", dtype="float64"),
        _field("iscrowd", pa.bool_(), "COCO iscrowd flag"),
        _field("source_file", pa.string(), "URL of the source image"),
        _field("source_height", pa.int32(), "source image height", dtype="int32"),
        _field("source_width", pa.int32(), "source image width", dtype="int32"),
        _field("src_lab_mean", pa.list_(pa.float32(), 3), "Lab mean of the whole source image",
               dtype="float32", shape="3"),
        _field("src_lab_std", pa.list_(pa.float32(), 3), "Lab std of the whole source image",
               dtype="float32", shape="3"),
        _field("src_sharpness", pa.float32(), "sharpness of the whole source image", dtype="float32"),
        _field("src_noise", pa.float32(), "noise sigma estimate of the whole source image", dtype="float32"),
        _field("src_blockiness", pa.float32(), "JPEG blockiness of the whole source image", dtype="float32"),
]
_BANK_DOC = "One row per out-of-distribution object cut from a COCO-layout dataset."
_BANK_V1 = _schema("object_bank", 1, _BANK_V1_FIELDS, _BANK_DOC)

OBJECT_BANK = _schema(
    "object_bank",
    2,
    [
        *_BANK_V1_FIELDS,
        _field("license_id", pa.int32(), "COCO licence id of the source image (its 'license'); null if none",
               dtype="int32", nullable=True),
        _field("license_name", pa.string(), "name of that licence in the json's 'licenses'", nullable=True),
        _field("license_url", pa.string(), "URL of that licence", nullable=True),
        _field("coco_url", pa.string(), "the source image's coco_url, when the json gives one", nullable=True),
        _field("flickr_url", pa.string(), "the source image's flickr_url, when the json gives one", nullable=True),
    ],
    _BANK_DOC,
    previous=(_BANK_V1,),
)
"""Object bank: one row per OoD object (v2: with the source image's licence and URLs)."""

_PASTED_OBJECT_V1 = pa.struct([
    pa.field("object_id", pa.int64(), nullable=False),
    pa.field("category_id", pa.int32(), nullable=False),
    pa.field("category_name", pa.string(), nullable=False),
    pa.field("box", pa.list_(pa.int32(), 4), nullable=False),
    pa.field("scale", pa.float32(), nullable=False),
    pa.field("flip", pa.bool_(), nullable=False),
    pa.field("ood_pixels", pa.int64(), nullable=False),
    pa.field("contrast", pa.float32(), nullable=False),
])

_PASTED_OBJECT = pa.struct([
    *_PASTED_OBJECT_V1,
    pa.field("image_id", pa.int64(), nullable=False),
    pa.field("license_id", pa.int32(), nullable=True),
])


def _frame_fields(objects: pa.DataType, objects_doc: str) -> list[pa.Field]:
    return [
        _field("frame_id", pa.string(), "Cityscapes frame id <city>_<seq>_<frame>"),
        _field("split", pa.string(), "source split (train, val, ...)"),
        _field("image", pa.binary(), "RGB frame after pasting", dtype="uint8", shape="height,width,3",
               codec="png|jpeg|webp"),
        _field("label", pa.binary(), "trainIds 0..18, 254 = pasted OoD, 255 = ignore", dtype="uint8",
               shape="height,width", codec="png"),
        _field("height", pa.int32(), "frame height", dtype="int32"),
        _field("width", pa.int32(), "frame width", dtype="int32"),
        _field("ood_pixels", pa.int64(), "number of pixels labelled 254", dtype="int64"),
        _field("objects", pa.list_(objects), objects_doc),
        _field("aligner", pa.string(), "style aligner and blending used"),
        _field("aligner_params", pa.string(), "JSON of the aligner parameters"),
        _field("seed", pa.int64(), "run seed the frame's plan was drawn from", dtype="int64"),
        _field("source_image", pa.string(), "URL of the source frame"),
        _field("source_label", pa.string(), "URL of the source label map"),
    ]


_FRAME_DOC = "One row per Cityscapes-layout frame, with or without pasted objects."
_OBJECTS_DOC = ("pasted objects: bank object id, category, box x0,y0,x1,y1 in the frame, scale, flip, pasted pixels, "
                "visibility contrast after alignment")
_FRAME_V1 = _schema("augmented_frame", 1, _frame_fields(_PASTED_OBJECT_V1, _OBJECTS_DOC), _FRAME_DOC)

FRAME = _schema(
    "augmented_frame",
    2,
    [
        *_frame_fields(_PASTED_OBJECT, _OBJECTS_DOC + "; source COCO image id and its licence id (null if none)"),
        _field("frame_terms", pa.string(), "terms of use of the source frame (e.g. the Cityscapes licence)"),
    ],
    _FRAME_DOC,
    previous=(_FRAME_V1,),
)
"""Augmented frames: one row per frame (v2: with the pasted objects' source images and licences)."""

KINDS: dict[str, ShardKind] = {OBJECT_BANK.name: OBJECT_BANK, FRAME.name: FRAME}


def schema_tag(schema: pa.Schema) -> str:
    """Describe the name and version a schema carries, e.g. ``"object_bank v1"`` or ``"<untagged>"``."""
    meta = schema.metadata or {}
    name = meta.get(SCHEMA_NAME_KEY)
    version = meta.get(SCHEMA_VERSION_KEY)
    if name is None:
        return "<untagged schema>"
    return f"{name.decode()} v{version.decode() if version else '?'}"


def validate_schema(schema: pa.Schema, kind: ShardKind, *, where: str = "table") -> ShardKind:
    """Check that a schema is exactly ``kind``'s, or one of the earlier versions readers accept, fields included.

    Args:
        schema: Schema found in a table or Parquet file.
        kind: Expected shard kind (the current version).
        where: Name of the file or element, used in the error message.

    Returns:
        The accepted kind the schema is (``kind`` itself or one of ``kind.previous``).

    Raises:
        SchemaMismatchError: Naming the expected and found schema, version and the first differing field.
    """
    found = schema_tag(schema)
    match = next((k for k in kind.accepted() if k.tag == found), None)
    if match is None:
        also = "".join(f" or {k.tag}" for k in kind.previous)
        raise SchemaMismatchError(f"{where}: expected schema {kind.tag}{also}, found {found}")
    expected_fields = [(f.name, f.type, f.nullable) for f in match.schema]
    found_fields = [(f.name, f.type, f.nullable) for f in schema]
    if expected_fields != found_fields:
        exp_names = [f[0] for f in expected_fields]
        got_names = [f[0] for f in found_fields]
        if exp_names != got_names:
            missing = [n for n in exp_names if n not in got_names]
            extra = [n for n in got_names if n not in exp_names]
            detail = f"missing fields {missing}, unexpected fields {extra}" if missing or extra else (
                f"field order {got_names}, expected {exp_names}")
        else:
            bad = next(e for e, g in zip(expected_fields, found_fields) if e != g)
            got = dict((g[0], g) for g in found_fields)[bad[0]]
            detail = f"field {bad[0]!r}: expected {bad[1]} (nullable={bad[2]}), found {got[1]} (nullable={got[2]})"
        raise SchemaMismatchError(f"{where}: schema {found} does not match {match.tag}: {detail}")
    return match


def missing_in(older: ShardKind, kind: ShardKind) -> list[str]:
    """Top-level fields of ``kind`` that an ``older`` version of it lacks (for the note readers print)."""
    have = set(older.schema.names)
    return [n for n in kind.schema.names if n not in have]


def table_from_rows(rows: list[dict], kind: ShardKind) -> pa.Table:
    """Build a table with ``kind``'s schema from row dicts, validating every value's type.

    Args:
        rows: Row dictionaries with exactly the schema's field names.
        kind: Shard kind.

    Returns:
        A :class:`pyarrow.Table` with ``kind.schema``.

    Raises:
        SchemaMismatchError: If a row has missing/extra fields or a value of the wrong type.
    """
    names = kind.schema.names
    for i, row in enumerate(rows):
        if set(row) != set(names):
            missing = sorted(set(names) - set(row))
            extra = sorted(set(row) - set(names))
            raise SchemaMismatchError(
                f"row {i} for {kind.tag}: missing fields {missing}, unexpected fields {extra}")
    try:
        return pa.Table.from_pylist(rows, schema=kind.schema)
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError) as err:
        raise SchemaMismatchError(f"rows do not fit {kind.tag}: {err}") from err


def describe(kind: ShardKind) -> str:
    """Return a JSON description of a kind's fields and their metadata (for docs and ``--help``)."""
    fields = []
    for f in kind.schema:
        meta = {k.decode(): v.decode() for k, v in (f.metadata or {}).items()}
        fields.append({"name": f.name, "type": str(f.type), **meta})
    return json.dumps({"schema": kind.name, "version": kind.version, "fields": fields}, indent=2)
