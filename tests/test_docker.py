"""Static checks of the Docker images (no Docker engine needed): the Beam SDK base image matches the pinned
apache-beam, every COPY source exists, both images install the pinned and the cloud requirements, and the
package they install carries every module the command line can start."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from stylepaste.cli import STAGES

REPO = Path(__file__).resolve().parents[1]
IMAGES = ("pipeline", "trainer")


def _pins(name: str) -> dict[str, str]:
    pins = {}
    for line in (REPO / name).read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            pkg, _, version = line.partition("==")
            assert version, f"{name}: {line!r} is not pinned with =="
            pins[pkg.strip().lower()] = version.strip()
    return pins


def _instructions(image: str) -> list[tuple[str, str]]:
    text = (REPO / "docker" / f"{image}.Dockerfile").read_text()
    text = re.sub(r"\\\n", " ", text)
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            op, _, rest = line.partition(" ")
            out.append((op.upper(), rest.strip()))
    return out


def test_pipeline_image_uses_the_beam_sdk_of_the_pinned_apache_beam():
    beam = _pins("requirements.txt")["apache-beam"]
    froms = [rest for op, rest in _instructions("pipeline") if op == "FROM"]
    assert froms == [f"apache/beam_python3.11_sdk:{beam}"]
    # a worker image must keep the SDK harness entrypoint of its base image
    assert not [op for op, _ in _instructions("pipeline") if op in ("ENTRYPOINT", "CMD")]


def test_cloud_requirements_are_pinned_and_keep_the_fsspec_pin():
    cloud = _pins("requirements-cloud.txt")
    assert {"gcsfs", "s3fs"} <= set(cloud)
    assert "fsspec" not in cloud or cloud["fsspec"] == _pins("requirements.txt")["fsspec"]


@pytest.mark.parametrize("image", IMAGES)
def test_image_copies_existing_sources_and_installs_every_requirement(image):
    steps = _instructions(image)
    copied = set()
    for op, rest in steps:
        if op == "COPY":
            *sources, _dest = rest.split()
            for src in sources:
                assert (REPO / src).exists(), f"{image}.Dockerfile copies {src}, which is not in the repository"
                copied.add(src.rstrip("/"))
    runs = " ".join(rest for op, rest in steps if op == "RUN")
    for req in ("requirements.txt", "requirements-cloud.txt"):
        assert req in copied and f"-r {req}" in runs, f"{image}.Dockerfile does not install {req}"
    packages = {m.split(".")[0] for m, _ in STAGES.values()} | {"schemas", "style_transfer"}
    assert packages <= copied, f"{image}.Dockerfile misses {sorted(packages - copied)}"
    assert "pip install --no-deps ." in runs


def test_docker_context_leaves_out_local_state():
    ignored = set((REPO / ".dockerignore").read_text().split())
    assert {".venv", "runs", ".git"} <= ignored
