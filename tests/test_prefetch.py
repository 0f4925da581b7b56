"""ReadAhead: partitions read in parallel, written in order, each a bounded number of items ahead."""

from __future__ import annotations

import threading
import time

import pytest

from tap_meta_ads.prefetch import ReadAhead, WriterAt

PAGES = {"a": 7, "b": 3, "c": 5, "d": 4, "e": 1}


class Recorder:
    """A producer of numbered items per partition that notes what the fetchers and the writer did."""

    def __init__(self, pages=PAGES, fail=None):
        self.pages = pages
        self.fail = fail or {}
        self.lock = threading.Lock()
        self.produced = dict.fromkeys(pages, 0)
        self.taken = dict.fromkeys(pages, 0)
        self.ahead = 0
        self.first_done_when_started: dict[str, int] = {}
        self.read_ahead: ReadAhead | None = None
        self.open_when_started: list[int] = []

    def produce(self, key):
        with self.lock:
            self.first_done_when_started[key] = self.produced["a"]
            self.open_when_started.append(sum(map(len, self.read_ahead._live.values())))  # under its lock
        return self._items(key)

    def _items(self, key):
        for n in range(self.pages[key]):
            if self.fail.get(key) == n:
                raise ValueError(f"{key} failed at {n}")
            with self.lock:
                self.produced[key] += 1
                self.ahead = max(self.ahead, self.produced[key] - self.taken[key])
            yield (key, n)


def read_all(recorder, width, depth, proven=3):
    keys = list(recorder.pages)
    read_ahead = recorder.read_ahead = ReadAhead(keys, recorder.produce, width=width, depth=depth, proven_after=proven)
    written = []
    try:
        for key in keys:
            for item in read_ahead.items(key):
                with recorder.lock:
                    recorder.taken[key] += 1
                written.append(item)
    finally:
        read_ahead.close()
    return written


@pytest.mark.parametrize(("width", "depth", "proven"), [(1, 1, 1), (1, 3, 3), (3, 2, 4), (4, 10, 3), (4, 10, 10)])
def test_every_item_is_written_once_in_order_within_the_bounds(width, depth, proven):
    recorder = Recorder()
    written = read_all(recorder, width, depth, proven)
    assert written == [(k, n) for k, pages in PAGES.items() for n in range(pages)]
    # at most depth items fetched and not yet taken, plus the one the writer was handed
    assert recorder.ahead <= depth + 1
    # never more than width fetchers working at once (the one starting counted)
    assert max(recorder.open_when_started) <= width
    # the others start only once the first has read `proven` items (or all of its 7)
    for key, first_done in recorder.first_done_when_started.items():
        if key != "a":
            assert first_done >= min(proven, PAGES["a"])


def test_a_failure_is_raised_after_the_items_before_it_and_stops_the_rest():
    recorder = Recorder(fail={"a": 2})
    with pytest.raises(ValueError, match="a failed at 2"):
        read_all(recorder, width=4, depth=3)
    assert recorder.taken["a"] == 2
    assert set(recorder.first_done_when_started) == {"a"}  # never proven: nobody else started


def test_a_failure_in_a_partition_read_ahead_waits_for_its_turn():
    recorder = Recorder(fail={"c": 1})
    with pytest.raises(ValueError, match="c failed at 1"):
        read_all(recorder, width=4, depth=2, proven=2)
    assert recorder.taken == {"a": 7, "b": 3, "c": 1, "d": 0, "e": 0}


def test_bad_bounds_are_refused():
    with pytest.raises(ValueError, match="at least 1"):
        ReadAhead(["a"], iter, width=0, depth=1, proven_after=1)


def sized_items(count, size):
    return [("a", n, size) for n in range(count)]


@pytest.mark.parametrize(
    ("size", "max_bytes", "depth", "ahead"),
    [
        (300, 1000, 10, 3),  # 3 x 300 waiting: a fourth would make 1,200
        (300, 900, 10, 3),  # exactly full
        (5000, 1000, 10, 1),  # an item larger than the bound: one may always wait
        (300, 100_000, 4, 4),  # the bound in items holds too
        (300, None, 5, 5),  # no byte bound: items only
    ],
)
def test_the_items_waiting_for_the_writer_stay_within_the_byte_bound(size, max_bytes, depth, ahead):
    """After each item the writer takes, the fetcher goes exactly as far as the bounds let it, and stops."""
    items = sized_items(9, size)
    read_ahead = ReadAhead(
        ["a"],
        lambda _: iter(items),
        width=1,
        depth=depth,
        proven_after=1,
        max_bytes=max_bytes,
        size=lambda item: item[2],
    )
    written = []
    try:
        feed_items = read_ahead.items("a")
        for item in feed_items:
            written.append(item)
            feed = read_ahead._feeds["a"]
            assert feed.settled(timeout=60), "the fetcher neither stopped for room nor finished"
            left = len(items) - len(written)
            assert feed.waiting() == (min(ahead, left), min(ahead, left) * size)
    finally:
        read_ahead.close()
    assert written == items


def test_the_next_item_is_assumed_as_large_as_the_last():
    """Items that grow: the fetcher stops once one more like the last would not fit (one may exceed the bound)."""
    items = [("a", 0, 100), ("a", 1, 100), ("a", 2, 700), ("a", 3, 100), ("a", 4, 100), ("a", 5, 100)]
    read_ahead = ReadAhead(
        ["a"], lambda _: iter(items), width=1, depth=10, proven_after=1, max_bytes=1000, size=lambda item: item[2]
    )
    try:
        feed_items = read_ahead.items("a")
        assert next(feed_items) == items[0]
        feed = read_ahead._feeds["a"]
        assert feed.settled(timeout=60)
        # 100 + 700 waiting (800); one more of 700 would make 1,500
        assert feed.waiting() == (2, 800)
        assert next(feed_items) == items[1]
        assert feed.settled(timeout=60)
        assert feed.waiting() == (1, 700)  # 700 + 700 > 1,000: no room until the 700 is taken
        assert next(feed_items) == items[2]
        assert feed.settled(timeout=60)
        assert feed.waiting() == (3, 300)  # the rest, 100 each
        assert list(feed_items) == items[3:]
    finally:
        read_ahead.close()


def test_a_negative_byte_bound_is_refused():
    with pytest.raises(ValueError, match="max_bytes"):
        ReadAhead(["a"], iter, width=1, depth=1, proven_after=1, max_bytes=-1)


def test_the_run_wide_byte_bound_holds_back_partitions_ahead_of_the_writer_but_never_the_one_written():
    """Many partitions read at once hold at most about ``max_total_bytes`` together while the writer is slow.

    Each partition may always fetch its first item (so the bound is ``max_total_bytes`` plus one item per
    partition read at once), and the partition being written is exempt (the writer is never starved).
    """
    keys = [f"p{i}" for i in range(12)]
    size, per_partition, total = 100, 20, 1000
    peak = 0
    read_ahead = ReadAhead(
        keys,
        lambda key: iter([(key, n) for n in range(per_partition)]),
        width=12,
        depth=10,
        proven_after=1,
        max_bytes=None,
        size=lambda _item: size,
        max_total_bytes=total,
    )
    written = []
    try:
        for key in keys:
            for item in read_ahead.items(key):
                peak = max(peak, read_ahead.waiting_bytes())
                written.append(item)
                threading.Event().wait(0.002)  # a slow writer: fetchers run ahead as far as the bounds let them
    finally:
        read_ahead.close()
    assert written == [(k, n) for k in keys for n in range(per_partition)]
    assert peak <= total + len(keys) * size + 10 * size  # the bound, one first item each, the written one's depth
    assert peak > total // 2  # the fetchers did run ahead


def _waiting_for_the_writer(read_ahead, seen):
    """A producer like an insights chain whose report runs are complete: it waits until the writer is here."""

    def produce(key):
        seen.setdefault("started", set()).add(key)
        try:
            yield (key, "proven")  # a first item, so the partitions after the first start
            while True:
                where = read_ahead[0].writer_at(key)
                if where is not WriterAt.LATER:
                    seen[key] = where
                    if where is WriterAt.NOW:
                        yield (key, "rows")
                    return
                time.sleep(0.01)  # what the chain does between looks (AWAIT_WRITER_SECONDS)
        finally:  # it returned, or its fetcher stopped and closed it
            seen.setdefault("ended", set()).add(key)

    return produce


def test_a_partition_the_writer_goes_past_or_leaves_with_its_stream_is_never_waited_for():
    """No wait without an end: the writer leaving a stream early (a record limit) ends that stream's other
    partitions, going past a partition ends it, and closing the run ends the rest."""
    keys = [("s1", "a"), ("s1", "b"), ("s2", "a"), ("s2", "b"), ("s3", "a"), ("s3", "b")]
    seen: dict = {}
    holder: list = []
    read_ahead = ReadAhead(
        keys, _waiting_for_the_writer(holder, seen), width=6, depth=5, proven_after=1, group=lambda key: key[0]
    )
    holder.append(read_ahead)
    first = read_ahead.items(("s1", "a"))
    assert next(first) == (("s1", "a"), "proven")
    first.close()  # the SDK's record limit: the writer leaves s1 after one item
    assert list(read_ahead.items(("s2", "b"))) == [(("s2", "b"), "proven"), (("s2", "b"), "rows")]
    read_ahead.close()  # the run's end (``chains.end_run``)
    deadline = time.monotonic() + 10
    while seen.get("ended") != seen["started"] and time.monotonic() < deadline:  # every producer must end
        time.sleep(0.01)
    assert seen.get("ended") == seen["started"]
    # a partition left before its producer started never starts; one that started learns it is never written
    # the writer took one item and left: the producer looked while it was there, or after it left
    assert seen.get(("s1", "a"), WriterAt.NEVER) in (WriterAt.NOW, WriterAt.NEVER)
    assert seen.get(("s1", "b"), WriterAt.NEVER) is WriterAt.NEVER  # left with its stream
    assert seen.get(("s2", "a"), WriterAt.NEVER) is WriterAt.NEVER  # the writer went past it
    assert seen[("s2", "b")] is WriterAt.NOW
    assert seen.get(("s3", "a"), WriterAt.NEVER) is WriterAt.NEVER  # the run ended before the writer came
    assert seen.get(("s3", "b"), WriterAt.NEVER) is WriterAt.NEVER
    assert read_ahead.waiting_bytes() == 0


def test_room_reserved_ahead_of_the_writer_counts_in_the_chain_and_the_run():
    """A chain that reads a report run's rows ahead of the writer reserves room first, within both bounds."""
    keys = ["a", "b"]
    gate = threading.Event()

    def produce(key):
        gate.wait(10)
        yield key

    read_ahead = ReadAhead(keys, produce, width=2, depth=5, proven_after=1, max_bytes=100, max_total_bytes=150)
    try:
        items = read_ahead.items("a")
        assert read_ahead.reserve("a", 90)  # nothing waits yet: one item always fits
        assert not read_ahead.reserve("b", 90)  # 180 would exceed the run's 150
        assert read_ahead.waiting_bytes() == 90
        read_ahead.release(90)
        assert read_ahead.reserve("b", 120)
        assert not read_ahead.reserve("a", 40)
        read_ahead.release(120)
        assert read_ahead.waiting_bytes() == 0
        gate.set()
        assert list(items) == ["a"]
    finally:
        read_ahead.close()


def test_a_fetcher_done_frees_its_place_and_lanes_start_beside_each_other():
    """Width counts fetchers still working: one that read its partition to the end (its items waiting for the
    writer) lets the next start; a lane of its own (report runs) starts beside the others, not behind them."""
    keys = [("objects", n) for n in range(4)] + [("reports", n) for n in range(3)]
    started: list = []
    release = threading.Event()
    lock = threading.Lock()

    def produce(key):
        with lock:
            started.append(key)
        if key[0] == "reports":
            release.wait(10)  # a report chain waits on Meta for a long time
        yield (key, 0)

    read_ahead = ReadAhead(
        keys, produce, width=1, depth=5, proven_after=1, lane=lambda key: key[0], widths={"reports": 2}
    )
    try:
        deadline = time.monotonic() + 10
        first = read_ahead.items(keys[0])
        assert next(first) == (keys[0], 0)
        # nothing written past the first item, yet every object partition was read (one fetcher at a time) and
        # two report partitions wait on Meta beside them; the third waits for a report lane's place
        while (
            not (len(started) == 6 and all(k in read_ahead._feeds for k in keys[1:4])) and time.monotonic() < deadline
        ):
            time.sleep(0.01)
        assert sorted(started) == sorted([*keys[:4], ("reports", 0), ("reports", 1)])
        assert ("reports", 2) not in started
        for key in keys[1:4]:  # done, their one item waiting for the writer
            assert read_ahead._feeds[key].settled(timeout=10)
            assert read_ahead._feeds[key].waiting() == (1, 0)
        release.set()
        written = list(first)
        for key in keys[1:]:
            written += list(read_ahead.items(key))
        assert written == [(k, 0) for k in keys[1:]]
    finally:
        release.set()
        read_ahead.close()


def test_a_lane_of_width_zero_is_refused():
    with pytest.raises(ValueError, match="width"):
        ReadAhead(["a"], iter, width=1, depth=1, proven_after=1, widths={"reports": 0})


def test_room_to_read_ahead_goes_to_the_partitions_the_writer_reaches_first():
    keys = [f"p{i}" for i in range(20)]
    ahead: ReadAhead[str, int] = ReadAhead(
        keys, lambda _key: iter(()), width=1, depth=4, proven_after=1, max_bytes=100, max_total_bytes=100
    )
    assert ahead.reserve("p1", 60)  # the next partition may fill the whole bound
    assert not ahead.reserve("p2", 60)  # no room: p2 now waits for room
    ahead.release(60)
    assert not ahead.reserve("p3", 10)  # room again, but p2 (nearer the writer) asked for it first
    assert ahead.reserve("p2", 60)
    ahead.release(60)
    assert ahead.reserve("p3", 10)  # p3's turn
    ahead.release(10)
    # a partition far ahead may only fill the first part of the bound (1/16 at 15 or more partitions away)
    assert ahead.reserve("p19", 6)
    assert not ahead.reserve("p18", 6)  # 12 > 100 * (1 - 17 / 16) floored at 1/16
    assert ahead.reserve("p2", 80)  # a near one still has the rest
    assert ahead.waiting_bytes() == 86


def test_report_run_places_go_in_the_writers_order_and_the_written_account_always_gets_one():
    from tap_meta_ads.chains import ReportRunCap

    keys = [("ads_insights", a) for a in ("1", "2", "3")]
    cap = ReportRunCap(4, keys, first_want=2)
    assert not cap.take(keys[2], want=2)  # accounts 1 and 2 may need 2 places each: all 4
    assert cap.take(keys[1], want=2)
    assert cap.take(keys[1], want=1)
    assert not cap.take(keys[1], want=1)  # 2 wanted by account 1 + 2 held: the cap
    assert cap.take(keys[0], want=1)  # account 1 comes first; it now needs 1 more
    cap.done(keys[0])  # ... until its chain ends
    assert not cap.take(keys[2], want=1)  # 1 + 2 held and 1 wanted before it
    assert cap.take(keys[1], want=1)  # account 2 gets the place it waited for
    cap.done(keys[1])
    assert not cap.take(keys[2], want=1)  # the cap is full
    assert cap.take(keys[2], want=1, force=True)  # the account being written always may
    assert (cap.in_flight, cap.peak) == (5, 5)
    for key in (keys[0], keys[1], keys[1]):
        cap.give(key)
    assert cap.take(keys[2], want=1)  # nothing before it any more
    assert cap.in_flight == 3
