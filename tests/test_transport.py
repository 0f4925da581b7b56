"""The Graph API transport (``tap_meta_ads/transport.py``) against the sandbox, over real sockets.

What the tap relies on: the same answers as requests' own adapter, connections kept alive and replaced
when the server closed them, gzip decoded, HTTPS with the certificate checked (the CA bundle from the
environment honoured by the tap), faults raised as the requests exceptions the retry table knows, and
anything through a proxy left to requests.
"""

from __future__ import annotations

import gzip
import re
import socket
import ssl
import threading
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
import trustme
from tap_meta_ads_sandbox import FaultPlan, SandboxConfig, SandboxServer

from tap_meta_ads.errors import connect_failure
from tap_meta_ads.tap import DEFAULT_EFFECTIVE_STATUSES
from tap_meta_ads.transport import GraphTransport, _decoded
from tests.tap_harness import base_config, run_tap

AUTH = {"Authorization": "Bearer sandbox-token"}
FIELDS = "id,name,account_id,adset_id,campaign_id,status,effective_status,created_time,updated_time,targeting"


def ads_url(base: str, account: str = "1001", **params: str) -> str:
    query = {"fields": FIELDS, "limit": "50", **params}
    return requests.Request("GET", f"{base}/v25.0/act_{account}/ads", params=query).prepare().url or ""


def session_on(base: str, transport: GraphTransport) -> requests.Session:
    session = requests.Session()
    session.headers.update(AUTH)
    session.mount(f"{base}/", transport)
    return session


def plain_session() -> requests.Session:
    session = requests.Session()
    session.headers.update(AUTH)
    return session


#: What differs between two answers to the same call: the clock (in cursors too), and each call's trace id.
PER_CALL = ("date", "x-fb-trace-id")
PER_CALL_TEXT = re.compile(rb'"(fbtrace_id|before|after|next|previous)":"[^"]*"')


def comparable(response: requests.Response) -> tuple[int, bytes, dict[str, str], str | None]:
    """Status, body, headers (lower-cased) and encoding of an answer, without what differs per call."""
    headers = {k.lower(): v for k, v in response.headers.items() if k.lower() not in PER_CALL}
    body = PER_CALL_TEXT.sub(rb'"\1":""', response.content)
    return response.status_code, body, headers, response.encoding


@pytest.mark.parametrize(
    "what",
    ["page", "next page", "node", "unknown edge", "bad token", "bad fields"],
)
def test_an_answer_is_the_one_requests_own_adapter_gives(sandbox, what):
    base = sandbox.url
    first = plain_session().get(ads_url(base), timeout=10).json()
    url, headers = {
        "page": (ads_url(base), AUTH),
        "next page": (ads_url(base, after=first["paging"]["cursors"]["after"]), AUTH),
        "node": (f"{base}/v25.0/act_1001?fields=id,name,currency,timezone_name", AUTH),
        "unknown edge": (f"{base}/v25.0/act_1001/no_such_edge", AUTH),
        "bad token": (ads_url(base), {"Authorization": "Bearer not-a-token"}),
        "bad fields": (ads_url(base, fields="id,no_such_field"), AUTH),
    }[what]
    ours = session_on(base, GraphTransport()).get(url, headers=headers, timeout=10)
    theirs = plain_session().get(url, headers=headers, timeout=10)
    assert comparable(ours) == comparable(theirs)
    assert ours.url == theirs.url
    assert (ours.status_code == 200) == (what in ("page", "next page", "node"))


def test_calls_in_a_row_share_one_kept_alive_connection(sandbox):
    transport = GraphTransport()
    session = session_on(sandbox.url, transport)
    after = None
    for _ in range(20):
        page = session.get(ads_url(sandbox.url, **({"after": after} if after else {})), timeout=10).json()
        after = page["paging"]["cursors"]["after"]
    assert transport.connections_opened == 1


def test_threads_calling_at_once_get_their_own_answers(sandbox):
    transport = GraphTransport()
    session = session_on(sandbox.url, transport)
    # The rows, not the bytes: a page's cursors carry the second they were made in.
    expected = {a: plain_session().get(ads_url(sandbox.url, a), timeout=10).json()["data"] for a in ("1001", "1002")}
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
    assert 1 <= transport.connections_opened <= 4


def test_a_connection_the_server_closed_while_idle_is_replaced_without_an_error(make_sandbox):
    sandbox = make_sandbox(idle_timeout_seconds=0.3)
    transport = GraphTransport()
    session = session_on(sandbox.url, transport)
    assert session.get(ads_url(sandbox.url), timeout=10).status_code == 200
    # A probe connection opened after the call idles out after the same timeout, so once the server has
    # closed the probe it has closed the (longer idle) connection of the call too.
    with socket.create_connection((sandbox.host, sandbox.port), timeout=10) as probe:
        assert probe.recv(1) == b""
    assert session.get(ads_url(sandbox.url), timeout=10).status_code == 200
    assert transport.connections_opened == 2


def test_a_gzip_answer_is_decoded_to_the_bytes_the_server_compressed(make_sandbox):
    sandbox = make_sandbox(gzip=True)
    raw = requests.get(ads_url(sandbox.url), headers=AUTH, timeout=10, stream=True)
    assert raw.headers["Content-Encoding"] == "gzip"
    compressed = raw.raw.read(decode_content=False)
    ours = session_on(sandbox.url, GraphTransport()).get(ads_url(sandbox.url), timeout=10)
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


def _raw_deflate(body: bytes) -> bytes:
    packer = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    return packer.compress(body) + packer.flush()


@pytest.mark.parametrize(
    ("encoding", "encode"),
    [
        ("gzip", gzip.compress),
        ("x-gzip", gzip.compress),
        ("deflate", zlib.compress),  # as RFC 9110 says: zlib-wrapped
        ("deflate", _raw_deflate),  # as some servers send it
        ("identity", lambda body: body),
        ("deflate, gzip", lambda body: gzip.compress(zlib.compress(body))),  # last applied, first undone
    ],
)
def test_every_coding_asked_for_is_undone(encoding, encode):
    body = b'{"data":[{"id":"1"}]}' * 100
    assert _decoded(encode(body), encoding, requests.Request("GET", "http://x/").prepare()) == body


@pytest.mark.parametrize(
    ("encoding", "body", "says"),
    [("br", b"...", "encoded as 'br', which was not asked for"), ("gzip", b"not gzip", "gzip body cannot be decoded")],
)
def test_a_body_that_cannot_be_decoded_is_one_line(encoding, body, says):
    with pytest.raises(requests.exceptions.ContentDecodingError) as caught:
        _decoded(body, encoding, requests.Request("GET", "http://x/").prepare())
    assert says in str(caught.value)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize(
    ("fault", "raised"),
    [
        ("reset", (requests.exceptions.ConnectionError, requests.exceptions.ChunkedEncodingError)),
        ("truncated", (requests.exceptions.ChunkedEncodingError,)),
    ],
)
def test_a_broken_answer_raises_what_the_retry_table_retries_and_the_next_call_reconnects(make_sandbox, fault, raised):
    sandbox = make_sandbox(faults=FaultPlan.from_specs([f"{fault}@2"]))
    transport = GraphTransport()
    session = session_on(sandbox.url, transport)
    assert session.get(ads_url(sandbox.url), timeout=10).status_code == 200
    with pytest.raises(raised) as caught:
        session.get(ads_url(sandbox.url), timeout=10)
    assert "sandbox-token" not in str(caught.value)
    assert connect_failure(caught.value) is None  # a fault of a server that exists, not "no connection"
    assert session.get(ads_url(sandbox.url), timeout=10).status_code == 200
    assert transport.connections_opened == 2


def test_a_slow_answer_is_a_read_timeout(make_sandbox):
    sandbox = make_sandbox(faults=FaultPlan(["slow@1"], slow_seconds=20))
    session = session_on(sandbox.url, GraphTransport())
    with pytest.raises(requests.exceptions.ReadTimeout):
        session.get(ads_url(sandbox.url), timeout=(5, 0.5))
    assert session.get(ads_url(sandbox.url), timeout=10).status_code == 200


def test_no_connection_is_told_apart_as_before(refusing_port):
    base = f"http://127.0.0.1:{refusing_port}"
    outcomes = {}
    for name, url in {"refused": base, "unresolved": "http://no-such-host.invalid"}.items():
        with pytest.raises(requests.exceptions.ConnectionError) as caught:
            session_on(url, GraphTransport()).get(f"{url}/v25.0/act_1/ads", timeout=10)
        outcomes[name] = connect_failure(caught.value)
    assert outcomes == {"refused": "connection refused", "unresolved": "name not resolved"}


def test_a_call_through_a_proxy_is_left_to_requests_own_adapter(sandbox, refusing_port):
    # The proxy refuses connections: only requests' adapter speaks to proxies, and it says ProxyError.
    transport = GraphTransport()
    proxies = {"http": f"http://127.0.0.1:{refusing_port}"}
    with pytest.raises(requests.exceptions.ProxyError):
        session_on(sandbox.url, transport).get(ads_url(sandbox.url), timeout=10, proxies=proxies)
    assert transport.connections_opened == 0


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
    transport = GraphTransport()
    session = session_on(base, transport)
    ours = session.get(ads_url(base), timeout=10, verify=ca_file)
    theirs = plain_session().get(ads_url(base), timeout=10, verify=ca_file)
    assert comparable(ours) == comparable(theirs)
    assert session.get(ads_url(base), timeout=10, verify=ca_file).status_code == 200
    assert transport.connections_opened == 1
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
