"""Meta's batch requests: many Graph API calls in one HTTP request, each answered as if it came alone.

Sources: Meta's Graph API reference, "Making batch requests" (``POST /`` or ``POST /{version}/`` with a
``batch`` parameter, a JSON array of at most 50 ``{"method", "relative_url", "body"}``; the answer is an
array in the same order of ``{"code", "headers", "body"}`` with ``body`` the sub-request's JSON as a string,
and ``null`` for a sub-request that timed out; ``include_headers=false`` leaves the headers out). Airbyte's
source-facebook-marketing polls its async report runs this way, through the Business SDK's
``FacebookAdsApiBatch``, in batches of 50.

This module only reads a batch and writes its answer. The server answers every entry through the same
path as a standalone request (routing, token, rate limits, faults, stats), so a batch can never be
answered differently from the same calls sent one by one.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from tap_meta_ads_sandbox.errors import invalid_parameter

#: Meta refuses a batch of more entries than this (code 100).
MAX_BATCH = 50

#: The version of an entry whose ``relative_url`` names none, in a batch sent to ``POST /`` (no version).
#: Meta would use the oldest version the app may call; the sandbox has no app, so it uses the latest
#: version its errors quote.
DEFAULT_VERSION = "v25.0"

# A path segment that is meant as a version (``v24.0``; also ``v24``, which is then refused with 2635 as
# the same path sent alone would be). Graph node ids never start with "v" and a digit.
_VERSION_SEGMENT = re.compile(r"^v\d")

# Entry methods Meta's batch takes; the sandbox then answers each as it answers that method alone.
_METHODS = frozenset({"GET", "POST", "DELETE"})


@dataclass(frozen=True)
class BatchEntry:
    """One request of a batch, as the client wrote it (``name`` and dependencies are not supported)."""

    method: str
    relative_url: str
    body: str = ""

    def target(self, version: str) -> tuple[str, str]:
        """The entry's path and query string; a path without a version gets ``version`` (the batch's).

        ``relative_url`` may start with ``/`` or not, and with its own version or not, as Meta allows.
        """
        path, _, query = self.relative_url.partition("?")
        path = path.lstrip("/")
        if not _VERSION_SEGMENT.match(path.partition("/")[0]):
            path = f"{version}/{path}"
        return "/" + path, query


def parse_batch(text: str | None) -> list[BatchEntry]:
    """Read the ``batch`` parameter; raise code 100 with one line saying what is wrong with it."""
    if text is None:
        raise invalid_parameter("(#100) The parameter batch is required")
    try:
        doc: Any = json.loads(text)
    except ValueError as exc:
        raise invalid_parameter(f"(#100) The parameter batch is not valid JSON: {exc.args[0]}") from None
    if not isinstance(doc, list):
        raise invalid_parameter("(#100) The parameter batch must be a JSON array of requests")
    if not doc:
        raise invalid_parameter("(#100) The parameter batch must hold at least one request")
    if len(doc) > MAX_BATCH:
        raise invalid_parameter(f"(#100) Too many requests in batch message. Maximum batch size is {MAX_BATCH}")
    return [_entry(i, item) for i, item in enumerate(doc)]


def _entry(i: int, item: object) -> BatchEntry:
    """One entry of the array, checked: an object with a known ``method``, a ``relative_url``, a string body."""
    if not isinstance(item, dict):
        raise invalid_parameter(f"(#100) batch[{i}] must be an object with method and relative_url")
    method, url, body = item.get("method"), item.get("relative_url"), item.get("body", "")
    if not isinstance(method, str) or method.upper() not in _METHODS:
        raise invalid_parameter(f"(#100) batch[{i}].method must be one of {', '.join(sorted(_METHODS))}")
    if not isinstance(url, str) or not url.strip("/"):
        raise invalid_parameter(f"(#100) batch[{i}].relative_url must be a non-empty string")
    if not isinstance(body, str):
        raise invalid_parameter(f"(#100) batch[{i}].body must be a string such as k=v&k2=v2")
    return BatchEntry(method.upper(), url, body)


def includes_headers(params: dict[str, str]) -> bool:
    """Whether each answer carries its headers: yes unless ``include_headers=false``."""
    return params.get("include_headers", "true").strip().lower() != "false"


def element(
    status: int, content_type: str, headers: dict[str, str], body: bytes, *, include_headers: bool
) -> dict[str, Any]:
    """One entry's answer in Meta's shape: its HTTP status, its headers as name/value pairs, its body as text."""
    doc: dict[str, Any] = {"code": status}
    if include_headers:
        pairs = [("Content-Type", content_type), *headers.items()]
        doc["headers"] = [{"name": name, "value": value} for name, value in pairs]
    doc["body"] = body.decode("utf-8", "replace")
    return doc
