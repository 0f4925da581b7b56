"""Fixtures shared by the tap's tests: an in-process sandbox on a free local port."""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from tap_meta_ads_sandbox import SandboxConfig, SandboxServer

#: Two accounts of a few thousand ads each: the size the issue asks the full sync to prove.
ACCOUNTS = {"1001": 3000, "1002": 2500}


@pytest.fixture
def make_sandbox() -> Iterator[Callable[..., SandboxServer]]:
    """Start sandboxes with any config; all are stopped when the test ends."""
    servers: list[SandboxServer] = []

    def start(**overrides: Any) -> SandboxServer:
        settings: dict[str, Any] = {"seed": 7, "accounts": dict(ACCOUNTS), "tokens": ("sandbox-token",)}
        settings.update(overrides)
        server = SandboxServer(SandboxConfig(**settings), host="127.0.0.1", port=0)
        server.__enter__()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.__exit__(None, None, None)


@pytest.fixture
def sandbox(make_sandbox: Callable[..., SandboxServer]) -> SandboxServer:
    """A sandbox with the default two accounts and no faults."""
    return make_sandbox()


@pytest.fixture
def refusing_port() -> Iterator[int]:
    """A local port that refuses connections: bound (so nobody else takes it) but not listening."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]
