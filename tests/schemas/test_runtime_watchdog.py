"""A Beam worker process ends when its driver is killed (schemas.processes.exit_with_driver)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from schemas import processes

REPO = Path(__file__).resolve().parents[2]


def test_the_driver_is_not_watched():
    assert not processes.is_beam_worker() and processes.exit_with_driver() is False


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc")
def test_a_worker_started_through_a_shell_dies_with_its_driver(tmp_path):
    worker = tmp_path / "sdk_worker_main.py"  # the name Beam's local runners start workers under
    worker.write_text(textwrap.dedent(f"""
        import sys, time
        sys.path.insert(0, {str(REPO)!r})
        from schemas import processes
        assert processes.exit_with_driver(poll=0.1)
        open({str(tmp_path / "ready")!r}, "w").write("ok")
        time.sleep(60)
    """))
    pid_file = tmp_path / "worker.pid"
    driver = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import os, subprocess, sys, time
        env = dict(os.environ, CONTROL_API_SERVICE_DESCRIPTOR="url: 'localhost:1'", STYLEPASTE_DRIVER_PID=str(os.getpid()))
        p = subprocess.Popen("{sys.executable} {worker} > /dev/null; true", shell=True, env=env)
        time.sleep(1.5)
        open({str(pid_file)!r}, "w").write(str(p.pid))
        time.sleep(60)
    """)])
    try:
        deadline = time.time() + 60
        while not (pid_file.exists() and (tmp_path / "ready").exists()) and time.time() < deadline:
            time.sleep(0.1)
        shell = int(pid_file.read_text())
        children = [int(p) for p in Path(f"/proc/{shell}/task/{shell}/children").read_text().split()]
        assert len(children) == 1
        worker_pid = children[0]
        os.kill(driver.pid, signal.SIGKILL)
        driver.wait()
        deadline = time.time() + 10
        while time.time() < deadline and Path(f"/proc/{worker_pid}").exists() and \
                Path(f"/proc/{worker_pid}/stat").read_text().split()[2] != "Z":
            time.sleep(0.1)
        alive = Path(f"/proc/{worker_pid}").exists() and Path(f"/proc/{worker_pid}/stat").read_text().split()[2] != "Z"
        assert not alive, "the worker outlived its driver"
    finally:
        if driver.poll() is None:
            driver.kill()


@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="needs /proc")
def test_the_reaper_ends_a_worker_that_never_ran_our_code(tmp_path):
    pid_file = tmp_path / "child.pid"
    driver = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import subprocess, sys, time
        sys.path.insert(0, {str(REPO)!r})
        from schemas import processes
        processes.mark_driver()
        child = subprocess.Popen(["sleep", "60"])  # inherits the driver's id, runs none of our code
        open({str(pid_file)!r}, "w").write(str(child.pid))
        time.sleep(60)
    """)])
    try:
        deadline = time.time() + 60
        while not pid_file.exists() and time.time() < deadline:
            time.sleep(0.1)
        child = int(pid_file.read_text())
        os.kill(driver.pid, signal.SIGKILL)
        driver.wait()
        deadline = time.time() + 10
        while time.time() < deadline and _running(child):
            time.sleep(0.1)
        assert not _running(child), "the child outlived its driver"
    finally:
        if driver.poll() is None:
            driver.kill()


def _running(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False
