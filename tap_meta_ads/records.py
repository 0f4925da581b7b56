"""RECORD messages without a walk of every record: deselected properties are pruned by a plan made once.

The SDK strips deselected properties with ``pop_deselected_record_properties``, a recursive walk of every
key of every nested dict of every record, looking each one up in the selection mask; it runs even when
every property is selected, and took about 28 % of the tap's CPU in a profile of 36,000 ads. The selection
does not change during a run, so :class:`Pruner` reads it once into the list of property paths that are
deselected (explicitly ``selected: false`` in the catalog, under selected parents) and removes only those
from each record: nothing at all when every property is selected, a few ``dict.pop`` calls otherwise.

The SDK calls the walk from ``Stream._generate_record_messages``, a private method: this module is the one
place that replaces it (:class:`PrunedRecordMessages`, a mixin of the base stream), and
``tests/test_records.py`` checks it against the SDK's own walk, so an SDK upgrade that changes either fails
loudly instead of silently writing deselected data.
"""

from __future__ import annotations

import atexit
import contextlib
import datetime
import select
import sys
from collections.abc import Generator, Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import msgspec
from singer_sdk import singerlib
from singer_sdk.contrib.msgspec import MsgSpecWriter, serialize_jsonl
from singer_sdk.helpers.conform import TypeConformanceLevel
from singer_sdk.mapper import SameRecordTransform
from singer_sdk.streams import Stream
from typing_extensions import override

from tap_meta_ads.errors import GraphAPIError

Breadcrumb = tuple[str, ...]
_PROPERTIES = "properties"


@dataclass(frozen=True)
class Pruner:
    """A stream's deselected properties: top-level names, and nested paths such as ``("targeting", "geo")``."""

    top: frozenset[str]
    nested: tuple[tuple[str, ...], ...]

    @property
    def paths(self) -> tuple[tuple[str, ...], ...]:
        """Every deselected path, top-level names first."""
        return (*((name,) for name in sorted(self.top)), *self.nested)

    @classmethod
    def from_mask(cls, mask: Mapping[Breadcrumb, bool]) -> Pruner:
        """Read the selection mask the way the SDK's walk reads it, once.

        The walk pops a key when its breadcrumb resolves to deselected (a breadcrumb absent from the mask
        takes its parent's value) and never looks below a popped key, so exactly the explicitly deselected
        ``properties`` breadcrumbs whose ancestors are all selected matter.
        """
        paths: list[tuple[str, ...]] = []
        for breadcrumb, selected in mask.items():
            if selected or not _is_property_path(breadcrumb):
                continue
            names = breadcrumb[1::2]
            if all(_resolve(mask, names[:i]) for i in range(1, len(names))):
                paths.append(names)
        return cls(frozenset(p[0] for p in paths if len(p) == 1), tuple(p for p in paths if len(p) > 1))

    def prune(self, record: dict[str, Any]) -> None:
        """Remove the deselected properties from one record, in place (as the SDK does).

        Top-level names are found with one set intersection in C (Meta only sends the fields asked for,
        so it is usually empty); nested paths are followed one by one.
        """
        for name in self.top.intersection(record):
            del record[name]
        for path in self.nested:
            node: object = record
            for name in path[:-1]:
                node = node.get(name) if isinstance(node, dict) else None
            if isinstance(node, dict):
                node.pop(path[-1], None)


def _is_property_path(breadcrumb: Breadcrumb) -> bool:
    """``("properties", "a", "properties", "b")``: the only breadcrumbs the SDK's walk consults."""
    return len(breadcrumb) >= 2 and len(breadcrumb) % 2 == 0 and all(p == _PROPERTIES for p in breadcrumb[::2])  # noqa: PLR2004


def _resolve(mask: Mapping[Breadcrumb, bool], names: tuple[str, ...]) -> bool:
    """Whether the property at ``names`` is selected (absent breadcrumbs inherit, as in the SDK's mask)."""
    return mask[tuple(part for name in names for part in (_PROPERTIES, name))]


class PrunedRecordMessages(Stream):
    """The SDK's RECORD messages, with deselected properties removed by a :class:`Pruner`.

    Everything else is the SDK's: stream maps (aliases, filters, flattening), the stream version,
    ``time_extracted``. Type conformance is not repeated here: the tap's streams conform nothing
    (``TYPE_CONFORMANCE_LEVEL = NONE``, see ``client.py``); a stream that asks for it gets the SDK's path.

    When no stream map changes the stream's records (no ``stream_maps``, no flattening: the usual case),
    a record goes straight to the tap's :class:`RecordWriter` as the same line the SDK would write,
    without a message object and the five calls that carry it there (about a third of the CPU per
    record of an object stream).
    """

    _pruner: Pruner | None = None
    #: When the page being written was read: one ``time_extracted`` per page, not a clock read per record.
    page_extracted_at: datetime.datetime | None = None

    @override
    def _write_record_message(self, record: dict[str, Any]) -> None:
        writer = self._direct_writer
        if writer is None:
            super()._write_record_message(record)
            return
        self._prune(record)
        writer.write_record(
            self.name,
            record,
            self._stream_version,
            self.page_extracted_at or datetime.datetime.now(datetime.timezone.utc),
        )
        self.state_manager.is_flushed = False

    @cached_property
    def _direct_writer(self) -> RecordWriter | None:
        """The tap's writer when records may skip the message objects (see the class docstring).

        Decided at the first record: the stream maps and the writer are set up by then and do not change.
        """
        writer = getattr(self._tap, "message_writer", None)
        maps = self.stream_maps
        same = len(maps) == 1 and type(maps[0]) is SameRecordTransform and not maps[0].flattening_enabled
        plain = self.TYPE_CONFORMANCE_LEVEL is TypeConformanceLevel.NONE and maps[0].stream_alias == self.name
        return writer if isinstance(writer, RecordWriter) and same and plain else None

    def _prune(self, record: dict[str, Any]) -> None:
        pruner = self._pruner
        if pruner is None:
            pruner = self._pruner = Pruner.from_mask(self.mask)
        if pruner.top or pruner.nested:
            pruner.prune(record)

    @override
    def _generate_record_messages(self, record: dict[str, Any]) -> Generator[singerlib.RecordMessage, None, None]:
        if self.TYPE_CONFORMANCE_LEVEL is not TypeConformanceLevel.NONE:
            yield from super()._generate_record_messages(record)
            return
        self._prune(record)
        extracted = self.page_extracted_at or datetime.datetime.now(datetime.timezone.utc)
        for stream_map in self.stream_maps:
            mapped = stream_map.transform(record)
            if mapped is not None:
                yield singerlib.RecordMessage(
                    stream=stream_map.stream_alias,
                    record=mapped,
                    version=self._stream_version,
                    time_extracted=extracted,
                )


class RecordWriter(MsgSpecWriter):
    """The SDK's msgspec writer, without a system call for every RECORD.

    The SDK writes and flushes stdout for each message: one system call per record (stdout is often
    unbuffered: ``PYTHONUNBUFFERED``, as Meltano and containers set it), about a sixth of the tap's CPU on
    small records. RECORD lines are gathered here instead and written in blocks of at most ``PIPE_BUF``
    bytes, which a pipe takes whole; every other message (SCHEMA, STATE, ...) is written after the block
    and flushed. So a STATE line
    still reaches the target only after every record it covers, a killed tap loses only records that no
    STATE covers (the next run reads them again), and the rest is written at exit. ``records`` counts the
    records handed to the output (not those still gathered).
    """

    #: A write of at most PIPE_BUF bytes to a pipe is atomic: a killed tap never leaves half a line.
    BLOCK_BYTES = select.PIPE_BUF

    def __init__(self) -> None:
        super().__init__()
        self.records = 0
        self._block = bytearray()
        self._block_records = 0
        atexit.register(self._flush_at_exit)

    @override
    def write_message(self, message: singerlib.Message) -> None:
        try:
            if type(message) is singerlib.StateMessage:
                # Byte for byte what format_message writes (tests/test_records.py), without the SDK's
                # ``dataclasses.asdict`` copy of the whole state first (every partition of every stream).
                line = serialize_jsonl({"type": "STATE", "value": message.value})
            else:
                line = self.format_message(message)
        except (msgspec.EncodeError, ValueError) as exc:
            raise _unwritable(getattr(message, "stream", "?"), exc) from None
        if type(message) is singerlib.RecordMessage:
            self._gather(line)
        else:
            self._gather(line, records=0)
            self.flush()

    def write_record(
        self, stream: str, record: dict[str, Any], version: int | None, time_extracted: datetime.datetime
    ) -> None:
        """One RECORD line, byte for byte what :meth:`write_message` writes for the same RecordMessage."""
        message: dict[str, Any] = {"type": "RECORD", "stream": stream, "record": record}
        if version is not None:
            message["version"] = version
        message["time_extracted"] = time_extracted
        try:
            line = serialize_jsonl(message)
        except (msgspec.EncodeError, ValueError) as exc:
            raise _unwritable(stream, exc) from None
        self._gather(line)

    def _gather(self, line: bytearray, records: int = 1) -> None:
        """Add a line to the block, writing the block first when the line would not fit in it."""
        if len(self._block) + len(line) > self.BLOCK_BYTES:
            self._write_block()
        self._block += line
        self._block_records += records

    def flush(self) -> None:
        """Write what was gathered, and flush stdout."""
        self._write_block()
        sys.stdout.flush()

    def _write_block(self) -> None:
        if self._block:
            out = sys.stdout.buffer
            out.write(self._block)
            out.flush()  # one block, one write: a buffered stdout must not join blocks
            self._block.clear()
            self.records += self._block_records
            self._block_records = 0

    def _flush_at_exit(self) -> None:
        with contextlib.suppress(BrokenPipeError, ValueError):  # the output is gone: the run reported it
            self.flush()


def _unwritable(stream: str, exc: Exception) -> GraphAPIError:
    """A record msgspec cannot encode (a ``Decimal`` NaN: JSON has no such number), as one line."""
    what = str(exc).split(";")[0]  # msgspec goes on with advice for its own callers
    return GraphAPIError(f"{stream}: a record has a value JSON cannot carry ({what}); it was not written")
