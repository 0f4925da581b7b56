"""Checkpoint and resume in the middle of a partition's pagination.

The SDK writes STATE every 10,000 records and at the end of a partition, and for an unsorted
stream (Meta's edges are not ordered by ``updated_time``) its bookmark only becomes valid at
the end. A crash three hours into one ad account would restart it from zero. So the partition
state also holds a *resume point*: the ``after`` cursor of the next page to read, the pages
read so far, and the query the cursor belongs to (``since``), because a cursor is only valid
with the filter it was issued for. A run started with that state continues from the cursor.

This module is the only place that touches the SDK's state internals: the partition state
dict, its ``progress_markers``, the private STATE writer, the starting-bookmark writer and the
per-record bookkeeping it replaces. An SDK upgrade that moves them
fails the tests of this module loudly instead of silently losing resumability.
"""

from __future__ import annotations

import datetime
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from typing import IO, Any

from singer_sdk.contrib.msgspec import serialize_jsonl
from singer_sdk.helpers._state import StateWriter
from singer_sdk.singerlib import StateMessage
from singer_sdk.streams import Stream
from typing_extensions import override

RESUME_KEY = "resume"
_PROGRESS_MARKERS = "progress_markers"  # the SDK's key (singer_sdk.helpers._state.PROGRESS_MARKERS)


@dataclass
class ResumePoint:
    """Where a partition's pagination stands, in epoch seconds where times are concerned.

    ``after``: cursor of the next page (``None`` = first page). ``pages``: pages read so far.
    ``since``: the ``updated_time`` GREATER_THAN filter the cursor belongs to (``None``: none).
    ``max_seen``: the newest ``updated_time`` read so far. ``cap``: the newest value the
    bookmark may take, one second before the partition started on Meta's clock, so that an
    ad updated while the partition was being read is read again next time.
    """

    after: str | None
    pages: int
    since: int | None
    max_seen: int | None
    cap: int | None

    @classmethod
    def from_state(cls, partition_state: dict[str, Any]) -> ResumePoint | None:
        """The saved point, or ``None`` when there is none or it is malformed."""
        raw = partition_state.get(RESUME_KEY)
        if not isinstance(raw, dict):
            return None
        try:
            return cls(
                after=str(raw["after"]) if raw.get("after") else None,
                pages=int(raw.get("pages", 0)),
                since=_opt_int(raw.get("since")),
                max_seen=_opt_int(raw.get("max_seen")),
                cap=_opt_int(raw.get("cap")),
            )
        except (KeyError, TypeError, ValueError):
            return None

    def bookmark(self) -> int | None:
        """The bookmark this partition earns when it completes (epoch seconds)."""
        if self.max_seen is None:
            return None
        return self.max_seen if self.cap is None else min(self.max_seen, self.cap)


class SentIds:
    """The ids a pass over a partition has written, for the rare pass that Meta makes start again.

    When Meta refuses a cursor (code 2642) the partition is read again from its bookmark, and rows this
    run already wrote must not be written twice. Keeping every id in a set costs about 110 bytes per
    record (170 MB at a million ads) for something almost never needed, so the ids go to an unnamed
    temporary file instead, one write per page (the file vanishes with the process, even after
    kill -9); only a restart reads them back into memory, for that pass alone.
    """

    def __init__(self, key: Callable[[dict[str, Any]], str] | None = None) -> None:
        #: a row's identity when the stream's objects have no ``id`` (the change log); ``None``: the ``id``
        self._key = key
        self._journal: IO[bytes] | None = None
        self._loaded: set[str] | None = None

    def restart(self) -> None:
        """A new pass begins: from now on rows whose id was already written are skipped."""
        loaded = self._loaded if self._loaded is not None else set()
        if self._journal is not None:
            self._journal.seek(0)
            loaded.update(self._journal.read().decode().split("\n"))
            self._journal.close()
            self._journal = None
        self._loaded = loaded

    def unsent(self, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The rows of a page not written yet in this run, noted as written (the caller writes them)."""
        loaded, key = self._loaded, self._key or _id_of
        if loaded is not None:
            records = [r for r in records if key(r) not in loaded]
            loaded.update(map(key, records))
            return records
        if self._journal is None:
            self._journal = tempfile.TemporaryFile()  # noqa: SIM115 - lives as long as the partition
        if self._key is None:  # the hot path (every page of every run): no call per row
            self._journal.write("".join(f"{r.get('id')}\n" for r in records).encode())
        else:
            self._journal.write("".join(f"{key(r)}\n" for r in records).encode())
        return records

    def close(self) -> None:
        """Drop the journal (the partition is done)."""
        if self._journal is not None:
            self._journal.close()
            self._journal = None
        self._loaded = None


def _id_of(row: dict[str, Any]) -> str:
    return str(row.get("id"))


def save(stream: Stream, context: Mapping[str, Any], point: ResumePoint) -> None:
    """Store the resume point in the partition state and emit a STATE message now."""
    stream.get_context_state(context)[RESUME_KEY] = asdict(point)
    emit_state(stream)


def complete(stream: Stream, context: Mapping[str, Any], point: ResumePoint) -> None:
    """End a partition: drop the resume point, set its bookmark and emit a STATE now.

    The bookmark is written where the next run reads it and in the progress markers the SDK
    promotes when it finalises the partition (the same value: our capped maximum, in UTC, not the
    SDK's running maximum of strings, which compares Meta's ``-0700`` offsets as text). The STATE
    goes out at once, so a run killed while the next account is being read does not read this
    one's last pages again (the SDK would only write it at the end of the stream).
    """
    state = stream.get_context_state(context)
    state.pop(RESUME_KEY, None)
    bookmark = point.bookmark()
    if bookmark is not None and stream.replication_key is not None:
        old = state.get("replication_key_value")
        if isinstance(old, str):
            bookmark = max(bookmark, to_epoch(old))  # a bookmark never moves backwards
        _set_bookmark(stream, state, from_epoch(bookmark))
    emit_state(stream)


class CheckpointedBookmarks(Stream):
    """A stream whose bookmarks are set by :func:`complete`, not by the SDK's per-record bookkeeping.

    The SDK updates the partition's progress markers with every record (a running maximum of the
    replication key, compared as text, which orders Meta's ``-0700`` offsets wrongly); for these
    streams that value is overwritten by :func:`complete` when the partition ends and never read before,
    so the per-record work (about a tenth of the tap's CPU) is skipped. Sorting checks do not apply:
    Meta's edges are unsorted (``is_sorted = False``).
    """

    @override
    def _increment_stream_state(
        self, latest_record: dict[str, Any], *, context: Mapping[str, Any] | None = None
    ) -> None:
        if self.is_sorted:  # pragma: no cover - every stream of this tap is unsorted
            super()._increment_stream_state(latest_record, context=context)


def write_starting_value(stream: Stream, context: Mapping[str, Any]) -> None:
    """Write a partition's starting bookmark now, through the SDK's (private) writer.

    The SDK writes it when its partition loop reaches the partition; an account read ahead of that
    needs it earlier, to filter from the same bookmark. The SDK writing it again later gives the same
    value: nothing else touches the partition's state before then.
    """
    stream._write_starting_replication_value(context)


def peek_context_state(stream: Stream, context: Mapping[str, Any]) -> dict[str, Any]:
    """A partition's state as it stands, without creating it (the SDK's getter adds an empty partition).

    Chains are planned before the SDK reaches their stream; an empty partition added then would be written in
    every STATE until the chain starts, and mean nothing.
    """
    partitions = stream.tap_state.get("bookmarks", {}).get(stream.name, {}).get("partitions", [])
    for partition in partitions:
        if partition.get("context") == dict(context):
            return dict(partition)
    return {}


def save_progress(stream: Stream, context: Mapping[str, Any], key: str, progress: dict[str, Any]) -> None:
    """Store a stream's own progress record (e.g. the insights run's contiguous days) and emit STATE now."""
    stream.get_context_state(context)[key] = progress
    emit_state(stream)


def complete_with(stream: Stream, context: Mapping[str, Any], key: str, bookmark: str) -> None:
    """End a partition whose bookmark is a text value (a date): drop its progress record, set the bookmark.

    As :func:`complete` (the bookmark where the next run reads it, in the progress markers the SDK promotes,
    and a STATE now); ISO dates compare correctly as text, and a bookmark never moves backwards.
    """
    state = stream.get_context_state(context)
    state.pop(key, None)
    old = state.get("replication_key_value")
    _set_bookmark(stream, state, max(old, bookmark) if isinstance(old, str) else bookmark)
    emit_state(stream)


def _set_bookmark(stream: Stream, state: dict[str, Any], value: str) -> None:
    """Put a partition's bookmark where the next run reads it and in the progress markers the SDK promotes."""
    state["replication_key"] = stream.replication_key
    state["replication_key_value"] = value
    markers = state.setdefault(_PROGRESS_MARKERS, {})
    markers["replication_key"] = stream.replication_key
    markers["replication_key_value"] = value


class StateLineWriter(StateWriter):
    """The SDK's STATE writer, telling a changed state from the last one by its JSON line, not by a deep copy.

    The SDK keeps a deep copy of every STATE it writes to compare the next one with. With every chain at once
    a STATE holds every partition of every stream (50 accounts: about 500 partitions), and it is written after
    each account's pages and report runs: the copies (and ``dataclasses.asdict`` of each message, see
    ``records.py``) took about 15 s of the writer's CPU in a 50-account run, on the writer's critical path.
    The line is what a target reads; two states with the same line are the same state.
    """

    def __init__(self, message_writer: Any) -> None:  # noqa: ANN401 - the SDK's writer protocol
        super().__init__(message_writer)
        self._last_line: bytes | None = None

    @override
    def write_state(self, state: Any) -> None:
        line = bytes(serialize_jsonl(state))
        if line != self._last_line:
            self._message_writer.write_message(StateMessage(value=state))
            self._last_line = line


def emit_state(stream: Stream) -> None:
    """Write the tap's STATE now, through the SDK's (private) writer."""
    stream.state_manager.is_flushed = False
    stream._write_state_message()


def to_epoch(value: str) -> int:
    """Epoch seconds of a Meta or ISO 8601 time (``2023-03-21T22:41:46-0700``)."""
    parsed = datetime.datetime.fromisoformat(value)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=datetime.timezone.utc)
    return int(parsed.timestamp())


def newest_epoch(values: list[str], newest: int | None = None) -> int | None:
    """The newest of some Meta times (and ``newest``), in epoch seconds; empty strings are skipped.

    Meta writes times in one shape (``2023-03-21T22:41:46-0700``), an account's in its time zone's
    offsets: strings of one length and one offset order as their instants do, so a page whose times
    share them is read with one ``max`` of the strings and one parse instead of a parse per row. Others
    (a daylight-saving change within the page, any other shape) are parsed one by one.
    """
    values = [v for v in values if v]
    if len({(len(v), v[19:]) for v in values}) == 1:
        values = [max(values)]
    for value in values:
        epoch = to_epoch(value)
        if newest is None or epoch > newest:
            newest = epoch
    return newest


def from_epoch(epoch: int) -> str:
    """ISO 8601 in UTC, the form bookmarks are written in."""
    return datetime.datetime.fromtimestamp(epoch, tz=datetime.timezone.utc).isoformat()


def _opt_int(value: object) -> int | None:
    if value is None:
        return None
    return int(value)  # type: ignore[call-overload]  # ValueError/TypeError are handled by the caller
