"""hack/stack's lifecycle: up reports healthy, a dead process is reported, down leaves nothing."""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from fraudpipe_testing.stack import Stack, StackError
from fraudpipe_testing.stack.process import alive
from fraudpipe_testing.stack.services.base import Running


@pytest.fixture
def scratch_stack() -> Iterator[Stack]:
    root = Path(tempfile.mkdtemp(prefix="fraudpipe-lifecycle-", dir="/tmp"))
    stack = Stack(root)
    try:
        yield stack
    finally:
        stack.down()
        shutil.rmtree(root, ignore_errors=True)


def pids_of(stack: Stack, name: str) -> list[int]:
    state: dict[str, Running] = stack._load()
    return state[name].pids


def test_up_status_down_leaves_no_process(scratch_stack: Stack) -> None:
    env = scratch_stack.up(["redis", "registry"])
    assert env["REDIS_URL"].startswith("redis://:")
    assert env["OCI_REGISTRY"].startswith("127.0.0.1:")
    status = scratch_stack.status()
    assert status["redis"] == "healthy"
    assert status["registry"] == "healthy"
    assert status["kafka"] == "stopped"
    pids = pids_of(scratch_stack, "redis") + pids_of(scratch_stack, "registry")

    scratch_stack.down()

    assert not any(alive(pid) for pid in pids)
    assert set(scratch_stack.status().values()) == {"stopped"}


def test_up_again_keeps_a_healthy_service_and_replaces_a_dead_one(scratch_stack: Stack) -> None:
    first = scratch_stack.up(["redis"])
    assert scratch_stack.up(["redis"]) == first  # healthy: same process, same settings

    pid = pids_of(scratch_stack, "redis")[0]
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while alive(pid) and time.monotonic() < deadline:  # the kernel takes a moment to reap
        time.sleep(0.05)
    assert scratch_stack.status()["redis"].startswith("failed")

    second = scratch_stack.up(["redis"])
    assert second["REDIS_URL"] != first["REDIS_URL"]  # new password, new port
    assert scratch_stack.status()["redis"] == "healthy"


def test_unknown_services_are_refused_by_name(scratch_stack: Stack) -> None:
    with pytest.raises(StackError, match="unknown service"):
        scratch_stack.up(["zookeeper"])
