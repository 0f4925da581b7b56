"""The Graph API calls' HTTP, through requests' own ``HTTPAdapter`` (``tap_meta_ads/session.py``), over real sockets.

What the tap relies on and must keep now that HTTP is requests' job: one pooled session sized to the calls in
flight, connections kept alive and replaced when the server closed them, gzip decoded, HTTPS with the
certificate checked (the CA bundle from the environment honoured by the tap), a proxy from the environment
used, faults raised as the requests exceptions the retry table knows, and no module of the tap speaking
``http.client`` itself.
"""

from __future__ import annotations

import ast
import gzip
import http.server
import ssl
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
import trustme
from tap_meta_ads_sandbox import FaultPlan, SandboxConfig, SandboxServer

import tap_meta_ads
from tap_meta_ads.errors import connect_failure
from tap_meta_ads.session import graph_session, pool_size
from tap_meta_ads.tap import DEFAULT_EFFECTIVE_STATUSES
from tests.tap_harness import base_config, run_tap

AUTH = {"Authorization": "Bearer sandbox-token"}
FIELDS = "id,name,account_id,adset_id,campaign_id,status,effective_status,created_time,updated_time,targeting"


def ads_url(base: str, account: str = "1001", **params: str) -> str:
    query = {"fields": FIELDS, "limit": "50", **params}
    return requests.Request("GET", f"{base}/v25.0/act_{account}/ads", params=query).prepare().url or ""


def tap_session(pool: int = 4) -> requests.Session:
    """The session the tap's streams share, as ``session.graph_session`` builds it."""
    session = graph_session(pool)
    session.headers.update(AUTH)
    return session


def test_no_module_of_the_tap_imports_http_client():
    """HTTP is requests' job: a module of ours speaking ``http.client`` would be a transport to maintain."""
    offenders = []
    for path in Path(tap_meta_ads.__file__).parent.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
            if any(n == "http.client" or n.startswith("http.client.") for n in names):
                offenders.append(path.name)
    assert offenders == []
    assert not (Path(tap_meta_ads.__file__).parent / "transport.py").exists()


def test_the_pool_keeps_a_connection_per_call_in_flight(sandbox):
    session = tap_session(pool=24)
    assert pool_size(session, sandbox.url) == 24
    assert pool_size(graph_session(1), "https://graph.facebook.com/v25.0") == 1


def test_calls_in_a_row_share_one_kept_alive_connection(sandbox):
    session = tap_session()
    after = None
    for _ in range(20):
        page = session.get(ads_url(sandbox.url, **({"after": after} if after else {})), timeout=10).json()
        after = page["paging"]["cursors"]["after"]
    assert sandbox.stats()["connections"] == 1


def test_threads_calling_at_once_get_their_own_answers(sandbox):
    session = tap_session()
    # The rows, not the bytes: a page's cursors carry the second they were made in.
    expected = {
        a: requests.get(ads_url(sandbox.url, a), headers=AUTH, timeout=10).json()["data"] for a in ("1001", "1002")
    }
    sandbox.reset_stats()
    seen: list[bool] = []
    lock = threading.Lock()

    def read(account: str) -> None:
        for _ in range(15):
            same = session.get(ads_url(sandbox.url, account), timeout=10).json()["data"] == expected[account]
            with lock:
                seen.append(same)

    threads = [threading.Thread(target=read, args=(a,)) for a in ("1001", "1002", "1001", "1002")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert seen == [True] * 60
    assert 1 <= sandbox.stats()["connections"] <= 4


def test_a_connection_the_server_closed_while_idle_is_replaced_without_an_error(make_sandbox):
    sandbox = make_sandbox(idle_timeout_seconds=0.3)
    session = tap_session()
    assert session.get(ads_url(sandbox.url), timeout=10).status_code == 200
    # Wait for the server's own close, not for a timer of ours: which connection thread's idle timer
    # fires first is up to the scheduler.
    assert sandbox.wait_connections_closed(1)
    assert session.get(ads_url(sandbox.url), timeout=10).status_code == 200
    assert sandbox.stats()["connections"] == 2  # the call's, and its replacement


def test_a_gzip_answer_is_decoded_to_the_bytes_the_server_compressed(make_sandbox):
    sandbox = make_sandbox(gzip=True)
    raw = requests.get(ads_url(sandbox.url), headers=AUTH, timeout=10, stream=True)
    assert raw.headers["Content-Encoding"] == "gzip"
    compressed = raw.raw.read(decode_content=False)
    ours = tap_session().get(ads_url(sandbox.url), timeout=10)
    assert ours.headers["Content-Encoding"] == "gzip"
    assert ours.content == gzip.decompress(compressed)
    assert len(ours.json()["data"]) == 50


@pytest.mark.parametrize(
    ("accept", "compressed"),
    [
        ("gzip, deflate", True),
        ("deflate, gzip;q=0.5", True),
        ("gzip;q=0", False),
        ("gzip; q=0.0", False),
        ("br", False),
    ],
)
def test_the_sandbox_compresses_only_for_a_client_that_accepts_gzip(make_sandbox, accept, compressed):
    sandbox = make_sandbox(gzip=True)
    answer = requests.get(ads_url(sandbox.url), headers={**AUTH, "Accept-Encoding": accept}, timeout=10, stream=True)
    assert (answer.headers.get("Content-Encoding") == "gzip") is compressed
    assert len(answer.json()["data"]) == 50


def test_the_tap_reads_gzip_answers_exactly(make_sandbox):
    sandbox = make_sandbox(gzip=True, accounts={"1001": 300})
    run = run_tap(base_config(sandbox.url, ["1001"], page_size=50), streams=["ads"])
    assert run.returncode == 0, run.stderr[-3000:]
    expected = sorted(ad["id"] for ad in sandbox.visible_ads("1001", list(DEFAULT_EFFECTIVE_STATUSES)))
    assert sorted(run.ids()) == expected


@pytest.mark.parametrize(
    ("fault", "raised"),
    [
        ("reset", (requests.exceptions.ConnectionError, requests.exceptions.ChunkedEncodingError)),
        ("truncated", (requests.exceptions.ChunkedEncodingError, requests.exceptions.ConnectionError)),
    ],
)
def test_a_broken_answer_raises_what_the_retry_table_retries_and_the_next_call_reconnects(make_sandbox, fault, raised):
    from tap_meta_ads.retries import RETRIABLE_EXCEPTIONS

    sandbox = make_sandbox(faults=FaultPlan.from_specs([f"{fault}@2"]))
    session = tap_session()
    assert session.get(ads_url(sandbox.url), timeout=10).status_code == 200
    with pytest.raises(raised) as caught:
        session.get(ads_url(sandbox.url), timeout=10)
    assert isinstance(caught.value, RETRIABLE_EXCEPTIONS)
    assert "sandbox-token" not in str(caught.value)
    assert connect_failure(caught.value) is None  # a fault of a server that exists, not "no connection"
    assert session.get(ads_url(sandbox.url), timeout=10).status_code == 200
    assert sandbox.stats()["connections"] == 2


def test_a_slow_answer_is_a_read_timeout(make_sandbox):
    sandbox = make_sandbox(faults=FaultPlan(["slow@1"], slow_seconds=20))
    session = tap_session()
    with pytest.raises(requests.exceptions.ReadTimeout):
        session.get(ads_url(sandbox.url), timeout=(5, 0.5))
    assert session.get(ads_url(sandbox.url), timeout=10).status_code == 200


def test_no_connection_is_told_apart_as_before(refusing_port):
    base = f"http://127.0.0.1:{refusing_port}"
    outcomes = {}
    for name, url in {"refused": base, "unresolved": "http://no-such-host.invalid"}.items():
        with pytest.raises(requests.exceptions.ConnectionError) as caught:
            tap_session().get(f"{url}/v25.0/act_1/ads", timeout=10)
        outcomes[name] = connect_failure(caught.value)
    assert outcomes == {"refused": "connection refused", "unresolved": "name not resolved"}


# -- a proxy from the environment ----------------------------------------------------------------------------


class _ForwardProxy(http.server.BaseHTTPRequestHandler):
    """A plain HTTP forward proxy: a GET for an absolute URL is fetched (without a proxy) and relayed."""

    seen: list[str]

    def do_GET(self) -> None:
        type(self).seen.append(self.path)
        headers = {k: v for k, v in self.headers.items() if k.lower() not in ("proxy-connection", "host")}
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        request = urllib.request.Request(self.path, headers=headers)
        try:
            answer = opener.open(request, timeout=10)
        except urllib.error.HTTPError as exc:
            answer = exc
        body = answer.read()
        self.send_response(answer.status if hasattr(answer, "status") else answer.code)
        for name, value in answer.headers.items():
            if name.lower() not in ("transfer-encoding", "connection", "content-length"):
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def forward_proxy() -> Iterator[tuple[str, list[str]]]:
    handler = type("Proxy", (_ForwardProxy,), {"seen": []})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", handler.seen
    server.shutdown()
    server.server_close()


def test_the_tap_reads_through_the_proxy_of_the_environment(forward_proxy):
    proxy, seen = forward_proxy
    config = SandboxConfig(seed=7, accounts={"1001": 120}, tokens=("sandbox-token",))
    with SandboxServer(config, host="127.0.0.1", port=0) as sandbox:
        env = {"HTTP_PROXY": proxy, "http_proxy": proxy, "NO_PROXY": "", "no_proxy": ""}
        run = run_tap(base_config(sandbox.url, ["1001"], page_size=50), streams=["ads"], env=env)
        assert run.returncode == 0, run.stderr[-3000:]
        expected = sorted(ad["id"] for ad in sandbox.visible_ads("1001", list(DEFAULT_EFFECTIVE_STATUSES)))
        assert sorted(run.ids()) == expected
    assert len(seen) >= 3  # every page went through the proxy
    assert all(url.startswith(sandbox.url) and "access_token" not in url for url in seen)


def test_a_proxy_that_refuses_is_a_proxy_error(sandbox, refusing_port):
    proxies = {"http": f"http://127.0.0.1:{refusing_port}"}
    with pytest.raises(requests.exceptions.ProxyError):
        tap_session().get(ads_url(sandbox.url), timeout=10, proxies=proxies)
    assert sandbox.stats()["requests"] == 0


# -- HTTPS -------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def certificate_authority() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def https_sandbox(certificate_authority: trustme.CA) -> Iterator[SandboxServer]:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    certificate_authority.issue_cert("localhost", "127.0.0.1").configure_cert(context)
    config = SandboxConfig(seed=7, accounts={"1001": 120, "1002": 80}, tokens=("sandbox-token",), gzip=True)
    with SandboxServer(config, host="127.0.0.1", port=0, tls=context) as server:
        yield server


@pytest.fixture
def ca_file(certificate_authority: trustme.CA, tmp_path: Path) -> str:
    path = tmp_path / "ca.pem"
    certificate_authority.cert_pem.write_to_path(str(path))
    return str(path)


def test_https_is_spoken_with_the_certificate_checked(https_sandbox, ca_file):
    base = https_sandbox.url
    assert base.startswith("https://")
    session = tap_session()
    assert len(session.get(ads_url(base), timeout=10, verify=ca_file).json()["data"]) == 50
    assert session.get(ads_url(base), timeout=10, verify=ca_file).status_code == 200
    assert https_sandbox.stats()["connections"] == 1
    with pytest.raises(requests.exceptions.SSLError):  # the public CA bundle does not know our CA
        session.get(ads_url(base), timeout=10)
    assert session.get(ads_url(base), timeout=10, verify=False).status_code == 200


def test_the_tap_reads_https_with_the_ca_bundle_of_the_environment(https_sandbox, ca_file):
    config = base_config(https_sandbox.url, ["1001", "1002"], page_size=50)
    trusted = run_tap(config, streams=["ads"], env={"REQUESTS_CA_BUNDLE": ca_file})
    assert trusted.returncode == 0, trusted.stderr[-3000:]
    statuses = list(DEFAULT_EFFECTIVE_STATUSES)
    expected = sorted(ad["id"] for a in ("1001", "1002") for ad in https_sandbox.visible_ads(a, statuses))
    assert sorted(r["record"]["id"] for r in trusted.records) == expected
    untrusted = run_tap({**config, "max_retries": 0}, streams=["ads"], env={"REQUESTS_CA_BUNDLE": ""})
    assert untrusted.returncode == 1
    assert "SSLError" in untrusted.stderr
    assert "sandbox-token" not in untrusted.stderr
