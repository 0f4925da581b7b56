"""The HTTP session every Graph API call of a run goes through: requests' own, with a pool sized to the run.

Why requests' ``HTTPAdapter`` and nothing of ours: an extraction's wall time is set by Meta's clock (0.2-2 s
per call, seconds to minutes per report run), not by the client's CPU. A transport of our own on
``http.client`` saved about 0.6 ms of CPU per call and no wall time at all (27.7 s either way at 0.2 s of
latency, 20,662 records), while requests and urllib3 have already paid for what HTTP clients get wrong:
keep-alive races with a server that closed the connection, proxies (``HTTPS_PROXY``/``NO_PROXY``), TLS and
CA bundles (``REQUESTS_CA_BUNDLE``), content codings, chunked bodies cut short.

What stays the tap's (and is not HTTP): the page is decoded once with msgspec from the body's bytes
(``client.GraphPage``), pages are read ahead while others are written (``prefetch.py``), and the query of an
account's calls is quoted once (``client._query_pair``).

One session per run, shared by every stream: its connection pool holds up to ``max_concurrent_requests``
kept-alive connections to the Graph API's host (the most calls the run has in flight), so no call waits for
a connection and none is opened and closed again. ``pool_block`` stays off: a pool that is full opens one
more connection rather than stalling a chain (the concurrency limit, not the pool, bounds calls in flight).
"""

from __future__ import annotations

import weakref

import requests
import requests.adapters

#: Hosts a run talks to: the Graph API, and in tests a second server at most (a proxy is not a host here).
POOLS = 4


def graph_session(max_concurrent_requests: int) -> requests.Session:
    """A session whose pool keeps one kept-alive connection per call the run may have in flight."""
    session = requests.Session()
    adapter = requests.adapters.HTTPAdapter(pool_connections=POOLS, pool_maxsize=max(1, max_concurrent_requests))
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    return session


_SESSIONS: weakref.WeakKeyDictionary[object, requests.Session] = weakref.WeakKeyDictionary()


def session_of_run(run: object, max_concurrent_requests: int) -> requests.Session:
    """The one session of ``run`` (the tap object): made by the first stream that asks, shared by the others."""
    session = _SESSIONS.get(run)
    if session is None:
        session = _SESSIONS[run] = graph_session(max_concurrent_requests)
    return session


def pool_size(session: requests.Session, url: str) -> int:
    """How many connections the session keeps for ``url`` (read by tests: the pool is part of the contract)."""
    adapter = session.get_adapter(url)
    if not isinstance(adapter, requests.adapters.HTTPAdapter):  # pragma: no cover - graph_session mounts one
        return 0
    return int(adapter.poolmanager.connection_pool_kw["maxsize"])
