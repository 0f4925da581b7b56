"""Building and sending one Graph API call.

The token header, ``appsecret_proof``, the query quoted once per account, the run's calls-in-flight limit,
usage noted and the answer classified through the error table.

Every call of the tap goes through :meth:`GraphCalls.send`. HTTP itself is requests' (``session.py``).
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import re
import time
import urllib.parse
from collections.abc import Callable
from functools import cached_property
from typing import TYPE_CHECKING, Any

import requests
from singer_sdk import metrics
from singer_sdk.helpers.types import Context
from singer_sdk.streams import RESTStream
from typing_extensions import override

from tap_meta_ads.chains import RunChains
from tap_meta_ads.errors import (
    GraphError,
    parse_json_body,
    raise_for_error,
    retry_after_seconds,
)
from tap_meta_ads.usage import Usage

if TYPE_CHECKING:
    from tap_meta_ads.monitor import RunMonitor
    from tap_meta_ads.partitions import AccountFetch

HTTP_OK_MAX = 299

#: The part of ``request_timeout_seconds`` allowed for opening the TCP connection: a host that drops
#: connection attempts (a firewall, a wrong address) is found out in seconds, not after the whole timeout.
CONNECT_TIMEOUT_SECONDS = 10.0


def appsecret_proof(token: str, app_secret: str | None) -> str | None:
    """Meta's ``appsecret_proof``: hex HMAC-SHA256 of the token keyed with the app secret."""
    if not app_secret:
        return None
    return hmac.new(app_secret.encode(), token.encode(), hashlib.sha256).hexdigest()


class BearerAuth(requests.auth.AuthBase):
    """Puts the token in the ``Authorization`` header and nowhere else; its repr hides it."""

    def __init__(self, token: str) -> None:
        self._token = token

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        """Add the header to an outgoing request."""
        request.headers["Authorization"] = f"Bearer {self._token}"
        return request

    def __repr__(self) -> str:
        return "BearerAuth(<redacted>)"


class GraphCalls(RESTStream[str | None]):
    """One Graph API call of an account: prepared once, paced, sent, classified (a mixin of ``GraphStream``)."""

    #: Declared here, set by ``client.GraphStream`` (the one class that combines the mixins).
    monitor: RunMonitor
    edge: str
    _proof: str | None
    _get_template: requests.PreparedRequest | None
    run_chains: Callable[[], RunChains]  # partitions.PartitionChains

    # -- one request, classified --------------------------------------------------------------

    @override
    def validate_response(self, response: requests.Response) -> None:
        """Map Meta's error body through the error table; 2xx passes."""
        if response.status_code <= HTTP_OK_MAX:
            return
        error = GraphError.from_body(response.status_code, parse_json_body(response.text))
        hint = retry_after_seconds(response.headers.get("Retry-After"))
        if hint is None:
            hint = Usage.from_headers(response.headers).reset_seconds
        raise_for_error(error, hint)

    def send(
        self, account: AccountFetch, method: str, url: str, params: dict[str, Any], *, endpoint: str | None = None
    ) -> requests.Response:
        """One attempt at one Graph API call of an account: pace, send, note usage, classify.

        Every call of the tap goes through here. A POST carries its parameters as a form body, as Meta's
        SDKs send them. Returns a 2xx response; anything else raises through the error table.
        """
        stats = account.stats
        wait = max(account.pace_wait, account.pacer.held_for())  # this chain's pace, or the account's throttle
        if wait > 0:
            time.sleep(wait)
            stats.pacing_wait_seconds += wait
            account.pace_wait = 0.0
        if self._proof:
            params = {**params, "appsecret_proof": self._proof}
        prepared = self.prepare(method, url, params)
        stats.requests += 1
        started, sent_at = time.perf_counter(), time.monotonic()
        timeouts = (min(CONNECT_TIMEOUT_SECONDS, self.timeout), self.timeout)
        with self.run_chains().calls:  # the run's calls in flight, every stream and account together
            response = self.requests_session.send(
                prepared, timeout=timeouts, allow_redirects=False, **self._environment
            )
        self._log_duration(response, started, account.context, endpoint or self.edge)
        account.pace_wait = account.pacer.observe(Usage.from_headers(response.headers), sent_at=sent_at)
        self.validate_response(response)
        return response

    def prepare(self, method: str, url: str, params: dict[str, Any]) -> requests.PreparedRequest:
        """The request of one call: a POST carries its parameters as a form body, a GET in its URL.

        A GET is a copy of the stream's GET request (headers and auth, prepared once through the SDK's
        ``build_prepared_request``) with its URL set: preparing every call anew (merging the session's
        settings, parsing and re-quoting a URL of a few hundred characters) cost about a fifth of a
        fetcher thread's CPU. The URL is the one requests would build (``tests/test_errors_and_usage.py``).
        """
        base = self.url_base
        if method != "GET" or not url.startswith(f"{base}/"):
            body = {"data": params} if method == "POST" else {"params": params}
            return self.build_prepared_request(method=method, url=url, **body)
        if self._get_template is None:
            self._get_template = self.build_prepared_request(method="GET", url=base)
        prepared = self._get_template.copy()
        prepared.url = f"{url}?{'&'.join(map(_query_pair, params.items()))}" if params else url
        return prepared

    @cached_property
    def _environment(self) -> dict[str, Any]:
        """The environment's proxies and CA bundle for ``api_url``, resolved once: every call goes there.

        What ``Session.request`` would merge on every call (``HTTPS_PROXY``/``NO_PROXY``,
        ``REQUESTS_CA_BUNDLE``/``CURL_CA_BUNDLE``), which ``Session.send`` alone skips: the proxies cost
        about a tenth of the fetcher thread's CPU when resolved per call (a scan of the whole environment,
        twice), and the environment does not change during a run.
        """
        settings = self.requests_session.merge_environment_settings(self.url_base, {}, None, None, None)
        return {"proxies": settings["proxies"], "verify": settings["verify"], "cert": settings["cert"]}

    def _log_duration(self, response: requests.Response, started: float, context: Context, endpoint: str) -> None:
        """Keep the SDK's ``http_request_duration`` METRIC line, without the URL (it has the proof)."""
        point = metrics.Point(
            "timer",
            metric=metrics.Metric.HTTP_REQUEST_DURATION,
            value=time.perf_counter() - started,
            tags={
                metrics.Tag.STREAM: self.name,
                metrics.Tag.ENDPOINT: endpoint,
                metrics.Tag.HTTP_STATUS_CODE: response.status_code,
                metrics.Tag.STATUS: "succeeded" if response.ok else "failed",
                metrics.Tag.CONTEXT: dict(context),
            },
        )
        metrics.log(self.metrics_logger, point=point)


_QUERY = re.compile(r"\?[^\s'\")]*")


def _query_pair(item: tuple[str, object]) -> str:
    """``key=value`` of a query, quoted as ``urlencode`` quotes it.

    Cached (``_quoted_pair``) because every page of an account repeats the same ``fields`` (hundreds of
    characters, which ``urlencode`` quotes one by one in Python), status list and filter; only the cursor
    changes. A value that is neither text nor a number is quoted each time.
    """
    return _quoted_pair(item) if isinstance(item[1], (str, int)) else urllib.parse.urlencode([item])


@functools.lru_cache(maxsize=256)
def _quoted_pair(item: tuple[str, object]) -> str:
    return urllib.parse.urlencode([item])


def without_query(text: str) -> str:
    """Drop query strings from URLs in an exception text: they repeat every parameter of the request."""
    return _QUERY.sub("?...", text)
