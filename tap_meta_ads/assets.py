"""Creative files: the bytes behind image and thumbnail URLs, kept while their signed URLs still load.

Meta serves an image's ``url`` (``adimages``) and a creative's ``image_url`` and ``thumbnail_url``
(``adcreatives``) from its CDN, signed for a limited time (``oh``/``oe`` in the query string): a backup that
keeps only the URLs points, weeks later, at files that answer 403. The ``ad_assets`` stream keeps the files:

- per account, it reads those two edges (only the URL fields, through the base stream's paging, retries,
  pacing and error table) and fetches each file once: the state remembers, per account, a short digest of
  every URL it stored (without the query string, which changes with each signature) and of every file's
  SHA-256, so a file is fetched and emitted once per account across runs, even when it appears under
  several URLs (a creative's ``image_url`` is its image's ``url``);
- a record is the file (base64), its ``sha256``, MIME type, size, the URL without its query string and the
  object and field it was found on; the key is (``account_id``, ``sha256``): the same file shown by two
  accounts is kept for each, so restoring one account never depends on another's rows;
- files larger than ``asset_max_bytes`` are not fetched (``Content-Length`` is checked first, and the body is
  cut off at the cap when a server sends none); a file that cannot be fetched (an expired signature answers
  403, a deleted file 404) is a counted warning, never a failed run, and is tried again by the next run;
- the CDN gets no access token: its URLs are signed, and the token must not travel to another host;
- videos are out of scope: a video file is hundreds of megabytes, which a Singer record (one JSON line, base64)
  and the targets this tap feeds cannot carry sensibly; ``advideos`` keeps each video's ``source`` URL and
  ``permalink_url``, and Meta keeps uploaded videos in the ad account's library (see docs/account-backup.md).

Transient faults (HTTP 429 or 5xx, a reset connection) are retried with the stream's backoff; the checkpoint
(the stored digests) is written after every page of a source edge, only for files already written.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import time
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import requests
from singer_sdk.exceptions import FatalAPIError, RetriableAPIError
from singer_sdk.helpers.types import Context
from typing_extensions import override

from tap_meta_ads import checkpoint
from tap_meta_ads.calls import CONNECT_TIMEOUT_SECONDS, without_query
from tap_meta_ads.checkpoint import ResumePoint
from tap_meta_ads.client import GraphStream
from tap_meta_ads.errors import GraphAPIError, TransientError
from tap_meta_ads.pages import GraphPage
from tap_meta_ads.partitions import AccountFetch
from tap_meta_ads.retries import retry_reason
from tap_meta_ads.usage import Pacer

#: The partition-state key of the stored files' digests.
STORED_KEY = "stored_files"
#: Hex digits kept of each digest in the state: 64 bits, collision-free in practice for one account's files,
#: and 17 bytes of state per file instead of 65.
DIGEST_HEX = 16
HTTP_TOO_MANY_REQUESTS = 429
HTTP_SERVER_ERROR = 500
HTTP_OK = 200
_CHUNK = 64 * 1024


@dataclass(frozen=True)
class AssetSource:
    """An edge whose objects show files: the fields holding their URLs, and what names the object."""

    edge: str
    source_type: str
    key_field: str
    url_fields: tuple[str, ...]

    @property
    def fields(self) -> str:
        """The ``fields=`` of the edge's pages."""
        return ",".join((self.key_field, "status", *self.url_fields))


SOURCES = (
    AssetSource("adimages", "adimage", "hash", ("url",)),
    AssetSource("adcreatives", "adcreative", "id", ("image_url", "thumbnail_url")),
)


class AssetSkippedError(Exception):
    """A file that is not fetched: ``reason`` is the counter it goes to, the text says why."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class StoredFiles:
    """An account's stored files as the state keeps them: digests of URLs (no query string) and of contents."""

    def __init__(self, saved: object) -> None:
        doc = saved if isinstance(saved, dict) else {}
        self.urls: set[str] = {str(u) for u in doc.get("urls") or []}
        self.files: set[str] = {str(f) for f in doc.get("files") or []}

    @staticmethod
    def digest(text: str) -> str:
        """The short digest the state keeps of a URL."""
        return hashlib.sha256(text.encode()).hexdigest()[:DIGEST_HEX]

    def as_state(self) -> dict[str, list[str]]:
        """The state's form (sorted, so that a STATE line does not change when nothing did)."""
        return {"urls": sorted(self.urls), "files": sorted(self.files)}


class AssetsStream(GraphStream):
    """The files of an account's images and creatives, once per account (see the module docstring)."""

    edge = "adimages"  # the first source; the stream reads its sources itself (``request_records``)
    replication_key = None
    status_param = None
    #: Chosen on purpose: a first run downloads every image and thumbnail of every account.
    selected_by_default = False

    def __init__(self, *args: Any, **kwargs: Any) -> None:  # noqa: ANN401 - the SDK's signature
        super().__init__(*args, **kwargs)
        self._max_bytes = int(self.config["asset_max_bytes"])
        self._source_page_with_retries = self.request_decorator(self._source_page)
        self._download_with_retries = self.request_decorator(self._download)

    @cached_property
    def _cdn(self) -> requests.Session:
        """The session for file hosts: no ``Authorization`` header, no ``appsecret_proof``."""
        return requests.Session()

    @override
    def request_records(self, context: Context | None) -> Iterator[dict]:
        """One account's files, on the main thread: sources page by page, files one by one."""
        if context is None:  # pragma: no cover - partitions always give a context
            msg = f"{self.name} needs an account context"
            raise GraphAPIError(msg)
        account = self._account(context)
        with self.get_http_request_counter() as counter:
            counter.with_context(context)
            try:
                yield from self._read_account(account)
            finally:
                counter.increment(account.stats.requests)

    def _account(self, context: Context) -> AccountFetch:
        cfg = self.config
        account = AccountFetch(
            context=dict(context),
            start=ResumePoint(after=None, pages=0, since=None, max_seen=None, cap=None),
            fresh_since=None,
            page_size_limit=int(cfg["page_size"]),
            pacer=Pacer(
                threshold_pct=float(cfg["throttle_threshold_pct"]),
                fallback_seconds=float(cfg["backoff_base_seconds"]),
                max_wait_seconds=float(cfg["backoff_max_seconds"]),
            ),
        )
        account.stats = self.monitor.start(self.name, str(context["account_id"]))
        account.started = True
        return account

    def _read_account(self, account: AccountFetch) -> Iterator[dict]:
        context, stats = account.context, account.stats
        stored = StoredFiles(self.get_context_state(context).get(STORED_KEY))
        try:
            for source in SOURCES:
                for page in self._source_pages(account, source):
                    yield from self._files_of(account, source, page, stored)
                    checkpoint.save_progress(self, context, STORED_KEY, stored.as_state())
        except (FatalAPIError, RetriableAPIError, requests.RequestException) as exc:
            stats.status = "failed"
            self.monitor.log_partition(self.logger, stats)
            if isinstance(exc, GraphAPIError):
                raise
            reason, _ = retry_reason(exc)
            gave_up = "" if isinstance(exc, FatalAPIError) else f"Gave up after {self.backoff_max_tries()} attempts "
            msg = f"{gave_up}on {self.name} account {context['account_id']} ({reason}): {without_query(str(exc))}"
            raise GraphAPIError(msg.strip()) from exc
        finally:
            self._cdn.close()
        checkpoint.save_progress(self, context, STORED_KEY, stored.as_state())
        stats.status = "complete"
        self.monitor.log_partition(self.logger, stats)

    def _source_pages(self, account: AccountFetch, source: AssetSource) -> Iterator[GraphPage]:
        """The source edge's pages, in order (a full pass each run: the state says what is stored)."""
        after: str | None = None
        seen: set[str] = set()
        while True:
            page = self._source_page_with_retries(account, source, after)
            self._page_succeeded(account)
            account.stats.pages += 1
            yield page
            if not (page.has_next and page.after) or page.after in seen:
                return
            after = page.after
            seen.add(after)

    def _source_page(self, account: AccountFetch, source: AssetSource, after: str | None) -> GraphPage:
        """One attempt at one page of a source edge (the page size is read here, so a retry uses the shrunk one)."""
        params: dict[str, Any] = {"fields": source.fields, "limit": account.page_size}
        if after:
            params["after"] = after
        return self.read_page(account, f"{self.url_base}/act_{account.context['account_id']}/{source.edge}", params)

    def _files_of(
        self, account: AccountFetch, source: AssetSource, page: GraphPage, stored: StoredFiles
    ) -> Iterator[dict[str, Any]]:
        """The records of the files a page's objects show that the account has not stored yet."""
        stats = account.stats
        for object_id, reason in page.skipped:
            stats.skipped["unservable_object"] += 1
            self.logger.warning(
                "Skipped %s %s of account %s: Meta cannot serve it (%s)",
                source.edge,
                object_id,
                stats.account_id,
                reason,
            )
        for row in page.records:
            if row.get("status") in self._hidden:
                continue
            for field in source.url_fields:
                url = row.get(field)
                if not isinstance(url, str) or not url:
                    continue
                plain = url.split("?", 1)[0]
                url_digest = StoredFiles.digest(plain)
                if url_digest in stored.urls:
                    continue
                try:
                    content, mime = self._download_with_retries(account, url)
                except (AssetSkippedError, RetriableAPIError, requests.RequestException) as exc:
                    reason = exc.reason if isinstance(exc, AssetSkippedError) else "asset_unavailable"
                    why = str(exc) if isinstance(exc, AssetSkippedError) else f"gave up: {retry_reason(exc)[0]}"
                    stats.skipped[reason] += 1
                    self.logger.warning(
                        "Skipped the file of %s %s %s (%s): %s", source.source_type, row.get(source.key_field), field,
                        plain, why,
                    )  # fmt: skip
                    continue
                sha256 = hashlib.sha256(content).hexdigest()
                file_digest = sha256[:DIGEST_HEX]
                if file_digest not in stored.files:
                    stats.records += 1
                    yield {
                        "sha256": sha256,
                        "account_id": str(account.context["account_id"]),
                        "source_type": source.source_type,
                        "source_id": str(row.get(source.key_field)),
                        "source_field": field,
                        "mime_type": mime,
                        "size_bytes": len(content),
                        "url": plain,
                        "content_base64": base64.b64encode(content).decode("ascii"),
                        "fetched_at": datetime.datetime.now(datetime.timezone.utc).isoformat(),
                    }
                stored.urls.add(url_digest)
                stored.files.add(file_digest)

    def _download(self, account: AccountFetch, url: str) -> tuple[bytes, str]:
        """One attempt at one file: its bytes and MIME type; ``AssetSkippedError`` for a file not to be had."""
        if account.pace_wait > 0:  # the account's pacing applies to everything the stream does for it
            time.sleep(account.pace_wait)
            account.stats.pacing_wait_seconds += account.pace_wait
            account.pace_wait = 0.0
        account.stats.requests += 1
        timeouts = (min(CONNECT_TIMEOUT_SECONDS, self.timeout), self.timeout)
        with self._cdn.get(url, timeout=timeouts, stream=True) as response:
            status = response.status_code
            if status == HTTP_TOO_MANY_REQUESTS or status >= HTTP_SERVER_ERROR:
                msg = f"HTTP {status} from the file's host"
                raise TransientError(f"http{status}", msg)
            if status != HTTP_OK:
                detail = response.raw.read(200, decode_content=True).decode("utf-8", "replace").strip()
                raise AssetSkippedError("asset_unavailable", f"HTTP {status} {detail[:120]}".strip())
            length = response.headers.get("Content-Length", "")
            if length.isdigit() and int(length) > self._max_bytes:
                raise AssetSkippedError(
                    "asset_too_large", f"{int(length)} bytes, over asset_max_bytes={self._max_bytes}"
                )
            content = bytearray()
            for chunk in response.iter_content(_CHUNK):
                content += chunk
                if len(content) > self._max_bytes:
                    raise AssetSkippedError("asset_too_large", f"more than asset_max_bytes={self._max_bytes} bytes")
            mime = response.headers.get("Content-Type", "application/octet-stream").split(";", 1)[0].strip()
        return bytes(content), mime
