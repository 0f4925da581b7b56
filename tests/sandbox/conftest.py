"""Shared fixtures for the sandbox's own tests: an in-process server on a free port, and a client."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests
from tap_meta_ads_sandbox import SandboxConfig, SandboxServer

TOKEN = "sandbox-token"
VERSION = "v25.0"


@pytest.fixture
def make_sandbox() -> Iterator[Callable[..., SandboxServer]]:
    """Start sandboxes with any config; every one is stopped at the end of the test."""
    started: list[SandboxServer] = []

    def make(**kwargs: Any) -> SandboxServer:
        kwargs.setdefault("accounts", {"1001": 300, "1002": 57})
        sb = SandboxServer(SandboxConfig(**kwargs)).start()
        started.append(sb)
        return sb

    yield make
    for sb in started:
        sb.stop()


@pytest.fixture
def sandbox(make_sandbox: Callable[..., SandboxServer]) -> SandboxServer:
    """A small default sandbox: accounts 1001 (300 ads) and 1002 (57 ads)."""
    return make_sandbox()


@pytest.fixture
def client() -> Iterator[requests.Session]:
    """A session that sends the token in the Authorization header, as a careful client does."""
    with requests.Session() as s:
        s.headers["Authorization"] = f"Bearer {TOKEN}"
        yield s


def ads_url(sb: SandboxServer, account: str = "1001") -> str:
    """The ads edge of an account."""
    return f"{sb.url}/{VERSION}/act_{account}/ads"


def fetch_all(
    session: requests.Session, url: str, params: dict[str, Any] | None = None, max_pages: int = 10_000
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Follow ``paging.next`` verbatim to the end; return (all rows, every page document)."""
    rows: list[dict[str, Any]] = []
    pages: list[dict[str, Any]] = []
    resp = session.get(url, params=params, timeout=30)
    for _ in range(max_pages):
        assert resp.status_code == 200, resp.text
        doc = resp.json()
        pages.append(doc)
        rows.extend(doc["data"])
        nxt = doc.get("paging", {}).get("next")
        if not nxt:
            return rows, pages
        resp = session.get(nxt, timeout=30)
    raise AssertionError("pagination did not end")


def error_of(resp: requests.Response) -> dict[str, Any]:
    """The ``error`` member of a Graph error body (fails the test when the body is not one)."""
    body = resp.json()
    assert set(body) == {"error"}, body
    return body["error"]
