"""The Graph API's HTTP transport: requests' interface over ``http.client``, for the calls on a cursor chain.

Why a transport of our own: an account's pages are a chain (the next cursor is in the page just read),
so an account's wall time is its pages times the time from sending a request to holding its body. In that
time requests and urllib3 spent about 0.6 ms of CPU per call on top of ``http.client`` (measured against
the sandbox: 1.0 s vs 0.4 s of client CPU for 500 pages; a profile shows urllib3's per-byte re-encoding
of the query string, its response object and header checks, requests' cookie and hook handling), which
was a quarter of a page's round trip on a fast server and a fifth of the tap's CPU. Mounted on the
stream's session for the Graph API's base URL (``client.GraphStream``), the transport keeps everything
else as it was: the SDK's retries see the same requests exceptions, ``errors.connect_failure`` sees the
same urllib3 connect errors, and the tap still builds requests' ``PreparedRequest`` and reads
``Response``.

What it does itself: sends a request on a kept-alive connection and reads the whole answer with
``http.client``; decodes gzip and deflate (the only encodings it asks for: Meta compresses answers when
the client accepts it). What it leaves to urllib3: opening connections (name resolution, the connect
timeout, TLS with certificate and hostname verification), so a wrong host, a refused port or a bad
certificate fail exactly as before. What it hands whole to requests' own ``HTTPAdapter``: a call through
a proxy, with a client certificate, or streamed. It keeps no cookies (the Graph API sets none that
matter: the token is a header).
"""

from __future__ import annotations

import http.client
import os
import ssl
import threading
import weakref
import zlib
from collections import deque
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import requests
import requests.adapters
import requests.utils
import urllib3.connection
import urllib3.exceptions
from requests.structures import CaseInsensitiveDict
from typing_extensions import override
from urllib3.util.wait import wait_for_read

if TYPE_CHECKING:
    from collections.abc import Mapping

#: The encodings the transport asks for, and so the ones it can decode.
ACCEPT_ENCODING = "gzip, deflate"
#: Idle connections kept per server (requests' default pool size): enough for ``parallel_accounts``
#: fetchers, while a burst of more threads does not leave sockets open for good.
MAX_IDLE_CONNECTIONS = 10

#: requests' timeout argument: one for both, or (connect, read); ``None`` waits for ever.
Timeout = float | tuple[float, float] | tuple[float, None] | None
#: (scheme, host, port, verify): the connections that can serve a request.
_ServerKey = tuple[str, str, int, str | bool]


class GraphTransport(requests.adapters.BaseAdapter):
    """A requests transport adapter that sends on ``http.client`` connections opened by urllib3."""

    def __init__(self, fallback: requests.adapters.HTTPAdapter | None = None) -> None:
        super().__init__()
        #: requests' own adapter, for what this one does not do itself (see the module docstring)
        self.fallback = fallback or requests.adapters.HTTPAdapter()
        self._idle: dict[_ServerKey, deque[http.client.HTTPConnection]] = {}
        self._lock = threading.Lock()
        self._open: weakref.WeakSet[http.client.HTTPConnection] = weakref.WeakSet()
        #: connections opened so far (read by tests: reuse is part of the contract)
        self.connections_opened = 0
        # Kept-alive sockets are closed when the transport goes, at the latest when the process exits
        # (as urllib3's pools do): a socket left to the garbage collector is a ResourceWarning on stderr.
        weakref.finalize(self, _close_all, self._open)

    @override
    def send(
        self,
        request: requests.PreparedRequest,
        stream: bool = False,
        timeout: Timeout = None,
        verify: bool | str = True,
        cert: bytes | str | tuple[bytes | str, bytes | str] | None = None,
        proxies: Mapping[str, str] | None = None,
    ) -> requests.Response:
        """Send one request and return its whole answer; faults raise requests' exceptions."""
        url = request.url or ""
        split = urlsplit(url)
        proxied = bool(proxies) and requests.utils.select_proxy(url, proxies)
        if stream or cert or proxied or split.scheme not in ("http", "https"):
            return self.fallback.send(
                request, stream=stream, timeout=timeout, verify=verify, cert=cert, proxies=proxies
            )
        connect_timeout, read_timeout = timeout if isinstance(timeout, tuple) else (timeout, timeout)
        port = split.port or (443 if split.scheme == "https" else 80)
        key: _ServerKey = (split.scheme, split.hostname or "", port, verify)
        conn = self._idle_connection(key) or self._connect(key, connect_timeout)
        conn.sock.settimeout(read_timeout)
        headers = request.headers
        if headers.get("Accept-Encoding") != ACCEPT_ENCODING:  # requests' default, unless brotli/zstd are installed
            headers = headers.copy()
            headers["Accept-Encoding"] = ACCEPT_ENCODING
        target = f"{split.path or '/'}?{split.query}" if split.query else split.path or "/"
        answer: http.client.HTTPResponse | None = None
        try:
            conn.request(request.method or "GET", target, body=request.body, headers=headers)
            answer = conn.getresponse()
            body = answer.read()
        except (OSError, http.client.HTTPException) as exc:
            conn.close()
            if isinstance(exc, TimeoutError):
                raise requests.exceptions.ReadTimeout(exc, request=request) from exc
            if answer is not None:  # the body was cut short: IncompleteRead, a reset
                raise requests.exceptions.ChunkedEncodingError(exc, request=request) from exc
            raise requests.exceptions.ConnectionError(exc, request=request) from exc
        if answer.will_close:
            conn.close()
        else:
            self._keep(key, conn)
        return self._response(request, answer, body)

    def _idle_connection(self, key: _ServerKey) -> http.client.HTTPConnection | None:
        """A kept-alive connection to the server, skipping those the server has closed meanwhile.

        A connection the server closed while idle (its keep-alive timeout) reads as ready: EOF is waiting.
        """
        idle = self._idle.get(key)
        while idle:
            try:
                conn = idle.pop()
            except IndexError:  # another thread took the last one
                return None
            if conn.sock is not None and not wait_for_read(conn.sock, timeout=0.0):
                return conn
            conn.close()
        return None

    def _keep(self, key: _ServerKey, conn: http.client.HTTPConnection) -> None:
        idle = self._idle.get(key)
        if idle is None:
            with self._lock:
                idle = self._idle.setdefault(key, deque())
        if len(idle) >= MAX_IDLE_CONNECTIONS:
            conn.close()
        else:
            idle.append(conn)

    def _connect(self, key: _ServerKey, connect_timeout: float | None) -> http.client.HTTPConnection:
        """A new connection, opened (and for https verified) by urllib3, to be spoken on by ``http.client``.

        urllib3's connect errors become requests' exceptions as requests' own adapter raises them, so
        ``errors.connect_failure`` tells "connection refused" or "name not resolved" the same way.
        """
        scheme, host, port, verify = key
        opener: urllib3.connection.HTTPConnection
        if scheme == "https":
            tls = _tls_settings(verify=verify)
            opener = urllib3.connection.HTTPSConnection(host, port, timeout=connect_timeout, **tls)
        else:
            opener = urllib3.connection.HTTPConnection(host, port, timeout=connect_timeout)
        try:
            opener.connect()
        except urllib3.exceptions.ConnectTimeoutError as exc:
            raise requests.exceptions.ConnectTimeout(exc) from exc
        except urllib3.exceptions.NewConnectionError as exc:
            raise requests.exceptions.ConnectionError(exc) from exc
        except (urllib3.exceptions.SSLError, OSError) as exc:
            if _is_tls_failure(exc):
                raise requests.exceptions.SSLError(exc) from exc
            raise requests.exceptions.ConnectionError(exc) from exc
        conn = http.client.HTTPConnection(host, port)
        conn.auto_open = 0  # never let http.client reconnect on its own (plaintext, unverified)
        conn.sock = opener.sock
        with self._lock:
            self.connections_opened += 1
            self._open.add(conn)
        return conn

    def _response(
        self, request: requests.PreparedRequest, answer: http.client.HTTPResponse, body: bytes
    ) -> requests.Response:
        """The ``Response`` of a whole answer, its body decoded as its ``Content-Encoding`` says."""
        headers: CaseInsensitiveDict[str] = CaseInsensitiveDict()
        for name, value in answer.getheaders():
            headers[name] = f"{headers[name]}, {value}" if name in headers else value
        response = requests.Response()
        response.status_code = answer.status
        response.reason = answer.reason
        response.headers = headers
        response._content = _decoded(body, headers.get("Content-Encoding"), request)
        response._content_consumed = True  # type: ignore[attr-defined]  # as requests marks a read body
        response.encoding = requests.utils.get_encoding_from_headers(headers)
        response.url = request.url or ""
        response.request = request
        response.connection = self  # type: ignore[assignment]  # requests' adapter sets itself here
        return response

    @override
    def close(self) -> None:
        """Close every connection this transport opened, and the fallback's pool."""
        _close_all(self._open)
        self._idle.clear()
        self.fallback.close()


def _close_all(connections: weakref.WeakSet[http.client.HTTPConnection]) -> None:
    for conn in list(connections):
        conn.close()


def _decoded(body: bytes, encoding: str | None, request: requests.PreparedRequest) -> bytes:
    """The body with its content codings undone, last applied first (RFC 9110, 8.4)."""
    codings = [c.strip().lower() for c in (encoding or "").split(",") if c.strip()]
    try:
        for coding in reversed(codings):
            if coding in ("gzip", "x-gzip"):
                body = zlib.decompress(body, wbits=zlib.MAX_WBITS | 16)
            elif coding == "deflate":
                body = _inflate(body)
            elif coding != "identity":
                raise requests.exceptions.ContentDecodingError(
                    f"the answer is encoded as {coding!r}, which was not asked for", request=request
                )
    except zlib.error as exc:
        raise requests.exceptions.ContentDecodingError(
            f"the answer's {encoding} body cannot be decoded: {exc}", request=request
        ) from exc
    return body


def _inflate(body: bytes) -> bytes:
    """A "deflate" body: zlib-wrapped as RFC 9110 says, or raw deflate as some servers send it."""
    try:
        return zlib.decompress(body)
    except zlib.error:
        return zlib.decompress(body, wbits=-zlib.MAX_WBITS)


def _tls_settings(*, verify: bool | str) -> dict[str, Any]:
    """urllib3's TLS settings for requests' ``verify``, mapped as requests' ``HTTPAdapter.cert_verify`` does.

    The CA bundle requests uses (``True``), a file or directory of one's own, or no verification at all.
    """
    if verify is False:
        return {"cert_reqs": "CERT_NONE", "assert_hostname": False}
    where = requests.utils.extract_zipped_paths(requests.utils.DEFAULT_CA_BUNDLE_PATH) if verify is True else verify
    if os.path.isdir(where):
        return {"cert_reqs": "CERT_REQUIRED", "ca_cert_dir": where}
    return {"cert_reqs": "CERT_REQUIRED", "ca_certs": where}


def _is_tls_failure(exc: BaseException) -> bool:
    return isinstance(exc, (urllib3.exceptions.SSLError, ssl.SSLError, ssl.CertificateError))
