"""Shared Beam I/O (pipelines.beam_io): deterministic shards, rejects, counts and the run-folder commit."""

from __future__ import annotations

import dataclasses
import json
import uuid
from pathlib import Path

import apache_beam as beam
import fsspec
import pyarrow as pa
import pytest
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.testing.test_pipeline import TestPipeline as BeamTestPipeline
from apache_beam.testing.util import assert_that, equal_to

from pipelines import beam_io, run_folder, running
from schemas.arrow import ShardKind
from schemas.manifest import join_url, read_manifest, read_shard
from schemas.storage import WORK_DIR

KIND = ShardKind("toy_rows", 3, pa.schema(
    [pa.field("key", pa.string(), nullable=False), pa.field("value", pa.int64(), nullable=False),
     pa.field("blob", pa.binary(), nullable=False)],
    metadata={b"stylepaste.schema": b"toy_rows", b"stylepaste.schema_version": b"3"}))


def _rows(n: int) -> list[dict]:
    return [{"key": f"k{i:03d}", "value": i, "blob": bytes([i % 256]) * (i % 7)} for i in range(n)]


def _write(rows: list[dict], work: str, num_shards: int, *, reverse: bool = False) -> None:
    with BeamTestPipeline() as p:
        shards = (p | "Rows" >> beam.Create(rows[::-1] if reverse else rows)
                  | "Write" >> beam_io.WriteShards(KIND, work, num_shards, key="key", row_group_rows=4))
        assert_that(shards | beam.Map(lambda s: s["rows"]) | beam.CombineGlobally(sum), equal_to([len(rows)]))


def test_write_shards_is_a_function_of_rows_and_settings(tmp_path):
    rows = _rows(30)
    _write(rows, str(tmp_path / "a"), 5)
    _write(rows, str(tmp_path / "b"), 5, reverse=True)  # another input order, another bundling
    names = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert names == [beam_io.shard_name(i, 5) for i in range(5)]
    for name in names:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    seen = []
    for i, name in enumerate(names):
        table = read_shard(str(tmp_path / "a" / name), KIND)
        keys = table.column("key").to_pylist()
        assert keys == sorted(keys)
        assert all(beam_io.shard_of(k, 5) == i for k in keys)
        seen += keys
    assert sorted(seen) == [r["key"] for r in rows]


def test_every_shard_index_is_written_even_when_empty(tmp_path):
    _write(_rows(2), str(tmp_path), 6)
    infos = [beam_io.shard_name(i, 6) for i in range(6)]
    assert sorted(p.name for p in tmp_path.iterdir()) == infos
    assert sum(read_shard(str(tmp_path / n), KIND).num_rows for n in infos) == 2


def test_write_shard_row_groups_and_duplicate_keys(tmp_path):
    info = beam_io.write_shard(_rows(10), str(tmp_path / "s.parquet"), KIND, row_group_rows=4)
    assert (info.rows, info.row_groups, info.row_group_rows) == (10, 3, (4, 4, 2))
    assert [p.name for p in tmp_path.iterdir()] == ["s.parquet"]  # no temporary file left
    with pytest.raises(ValueError, match="share the key 'k000'"):
        beam_io.sort_shard_rows(_rows(3) + _rows(2), lambda r: r["key"])


def test_counts_nesting_and_accounting_line():
    flat = {"inputs": 10, "written": 5, "filtered/crowd": 2, "filtered/too_small": 1, "rejected/image_missing": 2,
            "per_category/dog": 5}
    counts = beam_io.nest_counts(flat)
    assert counts == {"filtered": {"crowd": 2, "too_small": 1}, "inputs": 10, "per_category": {"dog": 5},
                      "rejected": {"image_missing": 2}, "written": 5}
    beam_io.check_accounting(counts)
    assert beam_io.accounting_line(counts) == (
        "inputs 10 = written 5 + filtered 3 (crowd 2, too_small 1) + rejected 2 (image_missing 2)")
    with pytest.raises(RuntimeError, match="does not balance"):
        beam_io.check_accounting(beam_io.nest_counts({**flat, "inputs": 11}))


def test_rejects_and_counts_files_are_sorted_and_complete(tmp_path):
    work = str(tmp_path)

    class Emit(beam.DoFn):
        def process(self, i):
            yield beam_io.tagged_count(beam_io.INPUTS)
            if i % 3 == 0:
                yield beam_io.tagged_reject({"id": i, "score": float("nan")}, "toy", "bad", f"element {i} is bad")
                yield beam_io.tagged_count("rejected/bad")
            else:
                yield beam_io.tagged_count(beam_io.WRITTEN)
                yield i

    with BeamTestPipeline() as p:
        out = p | beam.Create(list(range(10))) | beam.ParDo(Emit()).with_outputs(
            beam_io.REJECTS, beam_io.COUNTS, main="rows")
        _ = out[beam_io.REJECTS] | "WR" >> beam_io.WriteRejects(work)
        totals = out[beam_io.COUNTS] | "WC" >> beam_io.WriteCounts(work)
        assert_that(totals, equal_to([("inputs", 10), ("written", 6), ("rejected/bad", 4)]))
    lines = (tmp_path / "_rejects.jsonl").read_text().splitlines()
    assert lines == sorted(lines) and len(lines) == 4
    first = json.loads(lines[0])
    assert set(first) == {"element", "stage", "reason", "detail"}
    assert first["element"]["score"] == "nan"  # valid JSON, no NaN literal
    assert json.loads((tmp_path / "_counts.json").read_text()) == {"inputs": 10, "rejected/bad": 4, "written": 6}


def _fake_run(folder: run_folder.RunFolder, n: int, rejected: int = 0) -> None:
    """Write what a pipeline would have written into the work folder."""
    rows = _rows(n)
    for i in range(2):
        part = [r for r in rows if beam_io.shard_of(r["key"], 2) == i]
        beam_io.write_shard(part, join_url(folder.work_url, beam_io.shard_name(i, 2)), KIND)
    with fsspec.open(join_url(folder.work_url, beam_io.COUNTS_NAME), "w") as f:
        f.write(json.dumps({"inputs": n + rejected, "written": n, **({"rejected/bad": rejected} if rejected else {})}))
    with fsspec.open(join_url(folder.work_url, "_rejects.jsonl"), "w") as f:
        f.write("".join(json.dumps({"element": i}) + "\n" for i in range(rejected)))


@pytest.mark.parametrize("base", ["local", "memory"])
def test_run_folder_commit_overwrite_and_discard(tmp_path, base):
    out = str(tmp_path / "out") if base == "local" else f"memory://beam-io-test-{uuid.uuid4().hex}/out"
    fs, out_path = fsspec.core.url_to_fs(out)

    folder = run_folder.RunFolder.begin(out)
    _fake_run(folder, 7, rejected=2)
    manifest = folder.commit(KIND, parameters={"a": (1, 2)}, seed=3, source={"x": "y"})
    assert manifest.rows == 7 and manifest.counts["rejected"] == {"bad": 2}
    assert sorted(p.rsplit("/", 1)[-1] for p in fs.ls(out_path, detail=False)) == [
        "_manifest.json", "_rejects.jsonl", beam_io.shard_name(0, 2), beam_io.shard_name(1, 2)]
    assert read_manifest(out, kind=KIND).parameters == {"a": [1, 2]}

    with pytest.raises(FileExistsError, match="--overwrite"):
        run_folder.RunFolder.begin(out)

    # A failed overwrite leaves the committed output untouched and no work folder behind.
    failed = run_folder.RunFolder.begin(out, overwrite=True)
    _fake_run(failed, 3)
    failed.discard()
    assert read_manifest(out, kind=KIND).rows == 7
    assert not fs.exists(f"{out_path}/{WORK_DIR}")

    # An unbalanced run is refused at commit time.
    bad = run_folder.RunFolder.begin(out, overwrite=True)
    _fake_run(bad, 3)
    with fsspec.open(join_url(bad.work_url, beam_io.COUNTS_NAME), "w") as f:
        f.write(json.dumps({"inputs": 5, "written": 3}))
    with pytest.raises(RuntimeError, match="does not balance"):
        bad.commit(KIND, overwrite=True)
    bad.discard()
    assert read_manifest(out, kind=KIND).rows == 7

    again = run_folder.RunFolder.begin(out, overwrite=True)
    _fake_run(again, 4)
    assert again.commit(KIND, overwrite=True).rows == 4
    assert read_manifest(out, kind=KIND).rows == 4
    assert (fs.open(f"{out_path}/_rejects.jsonl").read()) == b""
    assert not fs.exists(f"{out_path}/{WORK_DIR}")


def test_discard_removes_an_output_folder_the_run_created(tmp_path):
    out = tmp_path / "fresh"
    folder = run_folder.RunFolder.begin(str(out))
    assert Path(folder.work_url).is_dir()
    folder.discard()
    assert not out.exists()


def test_memory_urls_need_an_in_process_runner():
    ok = PipelineOptions(["--runner=DirectRunner", "--direct_running_mode=multi_threading"])
    running.check_shared_storage(["memory://x/out", "/data/coco"], ok)
    bad = PipelineOptions(["--runner=DirectRunner", "--direct_running_mode=multi_processing"])
    with pytest.raises(ValueError, match="memory://x/out"):
        running.check_shared_storage(["memory://x/out"], bad)
    running.check_shared_storage(["/local/out"], bad)
    with pytest.raises(ValueError, match="DataflowRunner"):
        running.check_shared_storage(["memory://x"], PipelineOptions(["--runner=DataflowRunner"]))


def test_overwrite_replaces_only_a_stylepaste_output_of_the_same_kind(tmp_path):
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "thesis.tex").write_text("years of work")
    with pytest.raises(FileExistsError, match="no _manifest.json"):
        run_folder.RunFolder.begin(str(precious), overwrite=True, kind=KIND)
    assert (precious / "thesis.tex").read_text() == "years of work"
    assert sorted(p.name for p in precious.iterdir()) == ["thesis.tex"]  # no work folder left either

    out = tmp_path / "out"
    folder = run_folder.RunFolder.begin(str(out), kind=KIND)
    _fake_run(folder, 3)
    folder.commit(KIND)
    other = dataclasses.replace(KIND, name="other_rows")
    with pytest.raises(FileExistsError, match=f"holds {KIND.name} shards"):
        run_folder.RunFolder.begin(str(out), overwrite=True, kind=other)
    assert run_folder.RunFolder.begin(str(out), overwrite=True, kind=KIND).work_url.startswith(str(out))


def test_an_output_folder_may_not_be_or_hold_an_input(tmp_path):
    coco = tmp_path / "coco"
    (coco / "train2017").mkdir(parents=True)
    for out, inputs in ((coco, [str(coco)]), (coco, [str(coco / "train2017")]),
                        (tmp_path / "x" / ".." / "coco", [str(coco)])):
        with pytest.raises(ValueError, match="is \\(or holds\\) the input"):
            run_folder.RunFolder.begin(str(out), overwrite=True, inputs=inputs)
    run_folder.check_not_an_input(str(coco / "bank"), [str(coco)])  # an output inside an input folder is allowed
