"""Beam runner options shared by the pipelines' command lines, and running a pipeline to completion."""

from __future__ import annotations

import argparse
import textwrap
from collections.abc import Iterable

import apache_beam as beam
from apache_beam.options.pipeline_options import DirectOptions, PipelineOptions, StandardOptions
from apache_beam.runners.runner import PipelineState

from schemas.processes import exit_with_driver, mark_driver

RUNNING_MODES = ("in_memory", "multi_threading", "multi_processing")

def add_beam_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the runner options every pipeline shows in ``--help``; other Beam options pass through unparsed."""
    g = parser.add_argument_group(
        "Beam runner",
        textwrap.fill(
            "Any other Beam pipeline option (e.g. --project, --region, --temp_location, --sdk_container_image, "
            "--setup_file for Dataflow; --flink_master, --environment_type for Flink; --spark_master_url for "
            "Spark) is passed to the runner unchanged. memory:// URLs need --direct_running_mode in_memory or "
            "multi_threading: worker processes do not share memory.", width=100),
    )
    g.add_argument("--runner", default="DirectRunner",
                   help="Beam runner: DirectRunner, DataflowRunner, FlinkRunner, SparkRunner, PortableRunner "
                        "(default: %(default)s)")
    g.add_argument("--direct_num_workers", type=int, default=1,
                   help="DirectRunner workers; 0 = one per CPU core (default: %(default)s)")
    g.add_argument("--direct_running_mode", choices=RUNNING_MODES, default="in_memory",
                   help="DirectRunner mode (default: %(default)s)")


def pipeline_options(args: argparse.Namespace, beam_args: list[str]) -> PipelineOptions:
    """PipelineOptions from the parsed runner arguments (:func:`add_beam_arguments`) and the pass-through rest.

    Raises:
        ValueError: For a negative ``--direct_num_workers``.
    """
    if args.direct_num_workers < 0:
        raise ValueError(f"--direct_num_workers must be >= 0, got {args.direct_num_workers}")
    return PipelineOptions([
        f"--runner={args.runner}",
        f"--direct_num_workers={args.direct_num_workers}",
        f"--direct_running_mode={args.direct_running_mode}",
        *beam_args,
    ])


_IN_PROCESS_RUNNERS = {"directrunner", "direct", "switchingdirectrunner", "bundlebaseddirectrunner", "fnapirunner"}


def check_shared_storage(urls: Iterable[str], options: PipelineOptions) -> None:
    """Refuse ``memory://`` URLs where pipeline workers run in other processes.

    Raises:
        ValueError: For a ``memory://`` URL with a non-direct runner or ``direct_running_mode=multi_processing``.
    """
    memory = [u for u in urls if u and str(u).startswith("memory://")]
    if not memory:
        return
    runner = options.view_as(StandardOptions).runner or "DirectRunner"
    name = runner.rsplit(".", 1)[-1].lower() if isinstance(runner, str) else type(runner).__name__.lower()
    mode = options.view_as(DirectOptions).direct_running_mode
    if name not in _IN_PROCESS_RUNNERS or mode == "multi_processing":
        raise ValueError(
            f"{memory[0]}: memory:// storage lives inside one process, but runner {runner!r} with "
            f"direct_running_mode={mode!r} runs workers in other processes; use a shared filesystem "
            "(local path, s3://, gs://) or --runner DirectRunner --direct_running_mode in_memory|multi_threading")


def run_to_completion(pipeline: beam.Pipeline) -> None:
    """Run a pipeline and wait for it.

    Raises:
        RuntimeError: If it ends in any state other than DONE (runner exceptions propagate as they are).
    """
    mark_driver()  # worker processes end when this process dies (WorkerDoFn)
    result = pipeline.run()
    state = result.wait_until_finish()
    if state is not None and state != PipelineState.DONE:
        raise RuntimeError(f"pipeline finished in state {state}, not DONE")


class WorkerDoFn(beam.DoFn):
    """A ``DoFn`` whose worker process ends when the driver dies (:func:`schemas.processes.exit_with_driver`): the
    base of every DoFn of the pipelines. Subclasses that define ``setup`` call ``super().setup()``."""

    def setup(self) -> None:
        exit_with_driver()
