"""Reading ahead: the next pages, and the next ad accounts, fetched while the current page is written.

Two limits bound an extraction: the API (its latency, and each ad account's own rate budget) and the tap's
CPU. Read strictly in turn, a page is fetched, then written, then the next is fetched: network time and CPU
time add up, and accounts wait for each other although each has its own budget. Here they overlap, and
this module is the one home of that concurrency.

What does not change: the SDK syncs a stream's partitions one after another on the main thread, and only
the main thread writes RECORD and STATE messages. Each STATE (and the resume point in it) still covers
exactly the pages the main thread has written, never a page that was merely fetched; a kill -9 loses the
pages waiting in the queues, which the next run fetches again from the saved cursor.

What does: each partition gets a fetcher thread that reads its pages in order into a bounded queue, at most
``depth`` pages ahead of the writer (``depth`` never exceeds ``checkpoint_every_pages``, so a killed run
fetches again at most that many pages of an account it had not started writing), and up to ``width``
partitions are read at once: the one being written and the next ones in order. Pacing, retries and the
error table stay per partition: each fetcher owns its partition's pacer and page size.

The queue is bounded in bytes too (``max_bytes``, with each item's ``size``): a bound in pages alone lets
the memory a run needs depend on how heavy its pages are and on how far ahead a fetcher happens to get
while the writer is slow, so the peak of a long run was set by its worst moment. A fetcher starts another
item only while the items waiting for the writer leave room for one more as large as its last one; when
nothing is waiting it always may (one item read ahead is what overlaps the network with the writing).

Other partitions start only once the first one has shown the run works (its fetcher has read a few
pages, or all of them): a wrong token, version or field list then fails on one account with one error
line, as in a sequential run, instead of on ``width`` accounts at once, each burning its budget.

A fetcher that fails (a fatal error, retries exhausted) queues the exception after the pages it read; the
writer raises it when it gets there, after writing those pages, exactly as a sequential run would. When the
writer stops for any reason, :meth:`ReadAhead.close` tells every fetcher to stop, unless the error is
``isolated`` (it concerns that partition alone: an ad account that denies access), when the others go on.
"""

from __future__ import annotations

import collections
import enum
import queue
import threading
import time
from collections.abc import Callable, Hashable, Iterator
from dataclasses import dataclass, field
from typing import Generic, TypeVar

T = TypeVar("T")
K = TypeVar("K", bound=Hashable)

#: How often a fetcher blocked on a full queue checks whether it should stop (seconds).
_POLL_SECONDS = 0.2
#: A partition that found no room for a reservation keeps its claim on the next room this long after it
#: last asked (it asks again every ``report_runs.AWAIT_WRITER_SECONDS``); see ``ReadAhead.reserve``.
_WANT_FRESH_SECONDS = 1.0
#: A reservation ``d`` partitions ahead of the writer may fill the run-wide bound up to ``1 - (d - 1) / _NEAR``
#: of it (at least ``1 / _NEAR``): the next partitions may use all of it, far ones only its first part.
_NEAR = 16


class WriterAt(enum.Enum):
    """Where the writer is relative to one partition (``ReadAhead.writer_at``).

    A producer that waits for the writer (an insights chain whose report runs are complete) asks this on
    every turn of its wait, so the wait always ends: with the writer arriving (``NOW``) or never coming
    (``NEVER``: the writer left the partition, went past it, or the run stopped).
    """

    NOW = "now"
    LATER = "later"
    NEVER = "never"


class RunStoppedError(RuntimeError):
    """A partition was asked for after the run's fetchers were stopped (the writer failed earlier)."""


@dataclass(frozen=True)
class _Failed:
    """A fetcher's exception, delivered to the writer in the place it happened."""

    error: BaseException


_END = object()


class _Feed(Generic[T]):
    """One partition's items on their way from its fetcher thread to the writer.

    The fetcher takes a slot before it produces an item (before the request is sent) and the writer
    gives it back when it takes the item, so at most ``depth`` items are fetched and not yet taken. A slot
    is free only while the items waiting hold at most ``max_bytes`` with one more as large as the last
    one (``None``: no byte bound), or while none is waiting.
    """

    def __init__(
        self,
        items: Iterator[T],
        bounds: _Bounds[T],
        proven_after: int,
        stop: threading.Event,
        *,
        on_proven: Callable[[], None],
        on_done: Callable[[], None],
    ) -> None:
        self._items = items
        self._bounds = bounds
        self._proven_after = proven_after
        self._queue: queue.SimpleQueue[object] = queue.SimpleQueue()
        self._room = threading.Condition()
        self._slots = 0  # items fetched (or being fetched) and not yet taken
        self._bytes = 0  # the size of the items fetched and not yet taken
        self.stalled = False  # the fetcher waits for the writer to make room
        self._done = False
        self._cancelled = False  # the writer left this partition before its end (``cancel``)
        self._stop = stop
        self._on_proven = on_proven
        self._on_done = on_done
        self.current = False  # the writer is draining this partition: exempt from the run-wide byte bound
        self._thread = threading.Thread(target=self._run, name="tap-meta-ads-fetcher", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        """Read the items into the queue.

        Its last entry (the end, or a failure) is queued once the fetcher is done and has given its place to the
        next partition, so a writer that sees it never finds that place still taken.
        """
        produced = 0
        last = 0
        final: object = None  # what ends the queue: _END, or a failure for the writer to raise
        try:
            while self._wait_for_room(last):
                item = next(self._items, _END)
                if item is _END:
                    with self._room:
                        self._slots -= 1  # the end of the items waits in no slot
                    final = _END
                    return
                size = self._bounds.size(item)  # type: ignore[arg-type]  # anything but _END is a T
                # an item its producer made room for (``ReadAhead.reserve``): the producer reserves for the next
                # one too, so the feed never holds it back (it still has report runs to submit and poll)
                last = 0 if getattr(item, "reserved", False) else size
                with self._room:
                    if self._cancelled:  # nobody will take it: it must not count against the run's bound
                        return
                    self._bounds.add(size)
                    self._bytes += size
                    self._queue.put((item, size))
                produced += 1
                if produced == self._proven_after or getattr(item, "proves_run", False):
                    self._on_proven()  # e.g. a report run Meta accepted proves the token and fields at once
            # the run is stopping: a writer that still drains this partition gets that, not a wait forever
            final = _Failed(RunStoppedError("the run stopped before this partition was read to its end"))
        except BaseException as exc:  # noqa: BLE001 - handed to the writer, which raises it in order
            final = _Failed(exc)
        finally:
            close = getattr(self._items, "close", None)
            try:
                if close is not None:
                    close()
            finally:
                with self._room:
                    self._done = True
                    self._room.notify_all()
                if final is _END:
                    self._on_proven()
                self._on_done()  # outside ``_room``: the read-ahead's lock is never taken while holding it
                if final is not None:
                    self._queue.put(final)

    def _wait_for_room(self, last: int) -> bool:
        """Take a slot, waiting for the writer; ``False`` when the run is stopping."""
        with self._room:
            while not self._stop.is_set() and not self._cancelled:
                if self._bounds.room(self._slots, self._bytes, last, current=self.current):
                    self._slots += 1
                    self.stalled = False
                    return True
                self.stalled = True
                self._room.notify_all()  # for whoever watches ``stalled``
                self._room.wait(_POLL_SECONDS)
            return False

    def drain(self) -> Iterator[T]:
        """The items in order; raises the fetcher's exception where it happened."""
        with self._room:
            self.current = True
            self._room.notify_all()
        while True:
            entry = self._queue.get()
            if entry is _END:
                return
            if isinstance(entry, _Failed):
                raise entry.error
            item: T
            size: int
            item, size = entry  # type: ignore[misc]  # everything else in the queue is (T, size)
            self._bounds.add(-size)
            with self._room:
                self._slots -= 1
                self._bytes -= size
                self.stalled = False  # until the fetcher has looked at the room made
                self._room.notify_all()
            yield item

    def cancel(self) -> None:
        """The writer leaves this partition before its end (a record limit, a stream stopped): stop its fetcher.

        What waits in its queue is given back to the run-wide byte bound, so a partition left behind never
        holds back the others.
        """
        with self._room:
            self._cancelled = True
            while True:
                try:
                    entry = self._queue.get_nowait()
                except queue.Empty:
                    break
                if isinstance(entry, tuple):
                    self._bounds.add(-entry[1])
                    self._slots -= 1
                    self._bytes -= entry[1]
            self._room.notify_all()

    def settled(self, timeout: float) -> bool:
        """Wait until the fetcher can go no further without the writer (it waits for room, or is done)."""
        with self._room:
            return self._room.wait_for(lambda: self.stalled or self._done, timeout)

    def room_for(self, size: int) -> bool:
        """Whether ``size`` more bytes fit this partition's own bound (one item always does)."""
        with self._room:
            return self._bytes == 0 or self._bounds.max_bytes is None or self._bytes + size <= self._bounds.max_bytes

    def waiting(self) -> tuple[int, int]:
        """How many items are fetched and not yet taken, and their size."""
        with self._room:
            return self._slots, self._bytes


@dataclass
class _Bounds(Generic[T]):
    """How far a fetcher may read ahead: ``depth`` items, and ``max_bytes`` of ``size`` (``None``: unbounded).

    ``max_total_bytes`` bounds the items waiting in every partition together (the run's memory); the partition
    the writer is draining is exempt from it (``current``), so the writer always gets its next item and a full
    run-wide budget can never stall the run: it only holds back partitions the writer has not reached.
    """

    depth: int
    max_bytes: int | None
    size: Callable[[T], int]
    max_total_bytes: int | None = None
    total: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def room(self, slots: int, waiting_bytes: int, last: int, *, current: bool = True) -> bool:
        """Whether one more item may be fetched, with ``slots`` items of ``waiting_bytes`` not yet taken."""
        if slots >= self.depth:
            return False
        if not current and self.max_total_bytes is not None and last and self.total + last > self.max_total_bytes:
            return False  # after a free item (a mark, or none yet) one more may come: a page, a report's progress
        return slots == 0 or self.max_bytes is None or waiting_bytes + last <= self.max_bytes

    def add(self, size: int) -> None:
        """Count bytes that started (positive) or stopped (negative) waiting for the writer."""
        with self.lock:
            self.total += size

    def reserve(self, size: int, share: float = 1.0) -> bool:
        """Count ``size`` bytes about to be read ahead if ``share`` of the run-wide bound has room for them."""
        with self.lock:
            if self.max_total_bytes is not None and self.total and self.total + size > self.max_total_bytes * share:
                return False
            self.total += size
            return True


def _no_size(_: object) -> int:
    return 0


class ReadAhead(Generic[K, T]):
    """Fetches the items of up to ``width`` partitions at once, each at most ``depth`` ahead of the writer.

    Each partition's items waiting for the writer hold at most about ``max_bytes`` of ``size(item)`` (the
    next item is assumed as large as the last; one item is always allowed).
    Partitions after the first start once the first has produced ``proven_after`` items (or all).

    ``keys`` are the partitions in the order the writer will ask for them; ``produce(key)`` returns the
    iterator of one partition's items, run on that partition's fetcher thread. ``group(key)``: the partitions
    the writer leaves together when it leaves one of them early (a stream's).

    ``width`` counts fetchers still working, not partitions waiting for the writer: a fetcher that read its
    partition to the end holds only its queued items (bounded in bytes), so the next partition starts then,
    not when the writer has taken them. Counted until taken, 50 accounts' insights chains done and waiting
    for the writer kept accounts 33-50 from even submitting their report runs (bench_accounts.py).
    ``lane(key)`` sorts partitions into lanes with widths of their own (``widths``; others share ``width``),
    each started in the writer's order: partitions that mostly wait on Meta (report runs) then start at once
    beside the ones that mostly call, instead of behind them in the writer's order. ``on_leave(key)`` is told
    when the writer is done with a partition (it took its items, or left it), under the read-ahead's lock.
    """

    def __init__(
        self,
        keys: list[K],
        produce: Callable[[K], Iterator[T]],
        *,
        width: int,
        depth: int,
        proven_after: int,
        max_bytes: int | None = None,
        size: Callable[[T], int] = _no_size,
        isolated: Callable[[BaseException], bool] = lambda _exc: False,
        max_total_bytes: int | None = None,
        group: Callable[[K], Hashable] = lambda key: key,
        lane: Callable[[K], Hashable] = lambda _key: None,
        widths: dict[Hashable, int] | None = None,
        on_leave: Callable[[K], None] = lambda _key: None,
    ) -> None:
        if min(width, depth, proven_after, *(widths or {}).values()) < 1:
            msg = f"width, depth and proven_after must be at least 1, got {width}, {depth} and {proven_after}"
            raise ValueError(msg)
        if max_bytes is not None and max_bytes < 0:
            msg = f"max_bytes must be at least 0, got {max_bytes}"
            raise ValueError(msg)
        self._proven_after = proven_after
        self._isolated = isolated
        self._group = group
        self._keys = keys
        self._produce = produce
        self._width = width
        self._widths = dict(widths or {})
        self._lane = lane
        self._pending: dict[Hashable, collections.deque[K]] = {}  # per lane, the writer's order
        for key in keys:
            self._pending.setdefault(lane(key), collections.deque()).append(key)
        self._live: dict[Hashable, set[K]] = {name: set() for name in self._pending}  # fetchers still working
        self._bounds = _Bounds(depth, max_bytes, size, max_total_bytes)
        self._feeds: dict[K, _Feed[T]] = {}
        self._started: set[K] = set()
        self._index = {key: i for i, key in enumerate(keys)}
        self._left: set[K] = set()  # partitions the writer left (or went past): nobody will take their items
        self._passed = 0  # index in keys up to which ``_pass_before`` has looked
        self._on_leave = on_leave  # told of each partition the writer is done with (took or left)
        self._wanting: dict[K, float] = {}  # partitions that found no room to reserve, and when they last asked
        self._at = 0  # the index in keys of the partition the writer drains
        self._proven = False
        self._stop = threading.Event()
        self._lock = threading.Lock()

    def items(self, key: K) -> Iterator[T]:
        """The items of one partition, in order, for the writer (the main thread)."""
        with self._lock:
            self._pass_before(key)
            self._fill()
            feed = self._feeds.get(key) or self._start(key)  # a key out of order is read now, alone
            self._wanting.pop(key, None)  # the writer is here: it needs no reservation
            self._at = self._index.get(key, self._at)
        finished = False
        try:
            yield from feed.drain()
            finished = True
        except GeneratorExit:  # the writer left on purpose (a record limit): it leaves the partition's group
            with self._lock:
                self._leave_group(key)
            raise
        except BaseException as exc:
            if not self._isolated(exc):
                self.close()  # the writer stops here: so does every fetcher
            raise
        finally:
            if not finished:
                feed.cancel()
            with self._lock:
                self._feeds.pop(key, None)
                self._left.add(key)
                self._on_leave(key)
                self._fill()

    def writer_at(self, key: K) -> WriterAt:
        """Whether the writer drains this partition now, may later, or never will (see ``WriterAt``)."""
        with self._lock:
            if self._stop.is_set() or key in self._left:
                return WriterAt.NEVER
            feed = self._feeds.get(key)
            return WriterAt.NOW if feed is not None and feed.current else WriterAt.LATER

    def reserve(self, key: K, size: int) -> bool:
        """Room for ``size`` bytes a producer is about to read ahead of the writer, in its partition and the run.

        For an item that is read in many calls (a report run's rows) by a producer that must go on working while
        it waits for room (submitting and polling report runs): it reserves before the calls, ``release`` s
        just before it hands the item over (the queue then counts its real size), and marks the item
        ``reserved`` so the feed does not hold the producer back before its next item.

        Room goes in the writer's order: while a partition the writer reaches sooner is waiting for room, later
        ones get none, and a partition far ahead may only fill the first part of the bound (``_NEAR``), so the
        run-wide bound holds the next partitions' items rather than the farthest ones' (first come, first
        served, 50 accounts' report rows spread the bound over every account, one run each, and the writer then
        waited at each account for the rest of its rows: bench_accounts.py).
        """
        feed = self._feeds.get(key)
        if feed is not None and not feed.room_for(size):
            return False
        with self._lock:
            now = time.monotonic()
            mine = self._index.get(key, len(self._keys))
            first = not any(
                self._index.get(other, len(self._keys)) < mine and now - asked < _WANT_FRESH_SECONDS
                for other, asked in self._wanting.items()
            )
            share = max(1 / _NEAR, 1 - (mine - self._at - 1) / _NEAR)
            if first and self._bounds.reserve(size, share):
                self._wanting.pop(key, None)
                return True
            self._wanting[key] = now
            return False

    def release(self, size: int) -> None:
        """Give back a ``reserve``."""
        self._bounds.add(-size)

    def _leave(self, key: K) -> None:
        """Nobody will take this partition's items: its fetcher stops, its bytes are given back."""
        self._left.add(key)
        self._wanting.pop(key, None)
        self._on_leave(key)
        feed = self._feeds.pop(key, None)
        if feed is not None:
            feed.cancel()

    def _leave_group(self, key: K) -> None:
        """The writer left ``key`` before its end on purpose: the rest of its group is never asked for either.

        The SDK stops the whole stream there (a record limit, as in ``--test``).
        """
        group = self._group(key)
        for other in self._keys[self._passed :]:
            if other != key and other not in self._left and self._group(other) == group:
                self._leave(other)

    def _pass_before(self, key: K) -> None:
        """The writer asks for ``key``: the partitions before it that it never took, it never will.

        (A stream stopped at a record limit, an account skipped.) Their fetchers stop and their bytes are given back.
        """
        index = self._index.get(key)
        if index is None:  # a key out of order
            return
        while self._passed < index:
            passed = self._keys[self._passed]
            self._passed += 1
            if passed not in self._left:
                self._leave(passed)

    def waiting_bytes(self) -> int:
        """The size of every item fetched and not yet taken, over all partitions (read by tests)."""
        return self._bounds.total

    def close(self) -> None:
        """Stop every fetcher (the writer is done, or failed)."""
        self._stop.set()

    def _proven_now(self) -> None:
        with self._lock:
            if not self._proven:
                self._proven = True
                self._fill()

    def _fill(self) -> None:
        """Start partitions in order while their lane has room: the first at once, the others once proven."""
        for name, pending in self._pending.items():
            live = self._live.setdefault(name, set())
            width = self._widths.get(name, self._width)
            while not self._stop.is_set() and pending and len(live) < width and (self._proven or not self._started):
                key = pending.popleft()
                if key not in self._started and key not in self._left:  # passed before it started: never
                    self._start(key)

    def _fetcher_done(self, key: K) -> None:
        """A fetcher read its partition to the end (or stopped): its place in the lane goes to the next one."""
        with self._lock:
            self._live.get(self._lane(key), set()).discard(key)
            self._fill()

    def _start(self, key: K) -> _Feed[T]:
        self._left.discard(key)  # asked for again (out of order): read anew
        self._live.setdefault(self._lane(key), set()).add(key)
        feed = _Feed(
            self._produce(key),
            self._bounds,
            self._proven_after,
            self._stop,
            on_proven=self._proven_now,
            on_done=lambda: self._fetcher_done(key),
        )
        self._feeds[key] = feed
        self._started.add(key)
        return feed
