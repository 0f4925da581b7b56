"""The tap as a process: its files checked first, one ERROR line per failure, a closed output said plainly.

The SDK's command line (``Tap.cli``) is run as it is; this module only stands around it:

- before the command runs, every config, state and catalog file on the command line is read and
  checked (``inputs.py``), so a bad file is one line naming it, before any request;
- whatever ends the run - a fatal Meta error, a bad file, a target that stopped reading - is one
  ERROR line that names the cause and exit code 1, never a traceback; the run summary is logged
  either way;
- the SDK's generic lines about the same failure ("An unhandled error occurred while syncing",
  "Config validation failed") move to DEBUG, and so does its warning that an unsorted stream's
  progress is not resumable, which is untrue of this tap (``checkpoint.py`` saves resume points);
- the Singer output counts what it wrote, so that when the target stops reading (``| head``, a
  crashed target) the line says how many records and which last STATE reached it.

Click turns a broken pipe into a silent exit 1 and Python prints a second error at exit when
stdout cannot be flushed; both are avoided by raising our own exception from the writer and
pointing stdout at /dev/null once the output is known to be closed.
"""

from __future__ import annotations

import ctypes
import datetime
import gc
import json
import logging
import os
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, NoReturn

from singer_sdk.singerlib import StateMessage
from typing_extensions import override

from tap_meta_ads.errors import GraphAPIError
from tap_meta_ads.inputs import InputFileError, SettingsError, check_files
from tap_meta_ads.records import RecordWriter

if TYPE_CHECKING:
    from singer_sdk.singerlib.encoding.simple import Message

    from tap_meta_ads.tap import TapMetaAds

#: Log lines of the SDK that repeat a failure another line names, or are untrue of this tap: DEBUG.
SDK_NOTICES = frozenset(
    {
        "An unhandled error occurred while syncing '%s'",
        "Config validation failed",
        "Stream is assumed to be unsorted, progress is not resumable if interrupted",
    }
)


#: Container allocations (net of frees) between two runs of the cyclic GC's youngest generation (Python's
#: default is 700). A page is up to tens of thousands of fresh dicts and lists that live until they are
#: written and form no cycles; at 700 the GC walked each page again and again while it was built and
#: written (1,000,000 ads in pages of 500: 44.6 s of CPU, against 27.3 s at this threshold). At this
#: threshold a page is written and freed before the GC runs; cyclic garbage (rare here) waits for at most
#: this many allocations.
GC_YOUNG_THRESHOLD = 200_000
#: How long a thread may hold the interpreter before one that waits gets it (Python's default is 5 ms). A chain's
#: fetcher thread whose answer has come waits for the writer, busy building and writing pages, to let go; at
#: 5 ms that wait was on every call of a chain (8 accounts x every object stream: 0.105 s a call at 0.1 s of
#: latency, bench_accounts.py), at 1 ms it is a fifth of it.
SWITCH_INTERVAL_SECONDS = 0.001
#: glibc's malloc arenas the process may use (its default is 8 per core). Each thread that allocates while
#: another holds an arena may get one of its own, and the bodies the fetcher threads read, freed by the writer,
#: leave memory behind in every arena: peak RSS grew with the threads a run had, 138-139 MB at 150 accounts
#: (bench_accounts.py), against 129-133 MB with two arenas, at the same speed. A ``MALLOC_ARENA_MAX`` in the
#: environment is the user's choice and stays.
MALLOC_ARENAS = 2
_M_ARENA_MAX = -8  # glibc's malloc.h


class SdkNoticeFilter(logging.Filter):
    """Moves :data:`SDK_NOTICES` to DEBUG: shown only when the logger is at DEBUG, and labelled so.

    Installed on the loggers the SDK writes them to (a logger filter runs before any handler,
    whatever handlers ``SINGER_SDK_LOG_CONFIG`` sets up).
    """

    @override
    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno <= logging.DEBUG or not isinstance(record.msg, str) or record.msg not in SDK_NOTICES:
            return True
        record.levelno, record.levelname = logging.DEBUG, logging.getLevelName(logging.DEBUG)
        return logging.getLogger(record.name).isEnabledFor(logging.DEBUG)


SDK_NOTICE_FILTER = SdkNoticeFilter()


def quiet_sdk_notices(*loggers: logging.Logger) -> None:
    """Install the notice filter on these loggers (once each)."""
    for logger in loggers:
        if SDK_NOTICE_FILTER not in logger.filters:
            logger.addFilter(SDK_NOTICE_FILTER)


class TargetClosedError(Exception):
    """The process reading the tap's output (the target) closed it."""

    def __init__(self, records: int, last_state: str | None) -> None:
        self.records, self.last_state = records, last_state
        state = f"the last STATE written was {last_state}" if last_state else "no STATE was written"
        super().__init__(
            f"The target stopped reading the tap's output (broken pipe) after {records} records; {state}. "
            "Find out why the target stopped; a rerun continues from the last STATE the target saved."
        )


class SingerOutput(RecordWriter):
    """The tap's writer (records in blocks, see ``records.py``), counting what reached the output.

    A closed output raises :class:`TargetClosedError`; ``records`` counts the records handed to the pipe.
    """

    def __init__(self) -> None:
        super().__init__()
        self.last_state: str | None = None

    @override
    def write_message(self, message: Message) -> None:
        try:
            super().write_message(message)
        except BrokenPipeError:
            raise TargetClosedError(self.records, self.last_state) from None
        if type(message) is StateMessage:
            self.last_state = json.dumps(message.value, default=str, separators=(",", ":"))

    @override
    def write_record(
        self, stream: str, record: dict[str, Any], version: int | None, time_extracted: datetime.datetime
    ) -> None:
        try:
            super().write_record(stream, record, version, time_extracted)
        except BrokenPipeError:
            raise TargetClosedError(self.records, self.last_state) from None


def cap_malloc_arenas() -> bool:
    """Cap glibc's malloc arenas at ``MALLOC_ARENAS`` (before the run's threads start); False where not glibc."""
    if "MALLOC_ARENA_MAX" in os.environ:
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        return bool(libc.mallopt(_M_ARENA_MAX, MALLOC_ARENAS))
    except (OSError, AttributeError):  # not glibc (macOS, musl): nothing to cap
        return False


def run(tap_class: type[TapMetaAds], argv: Sequence[str] | None = None) -> NoReturn:
    """Run the tap's command line; exit 0, or 1 after one ERROR line that names the cause."""
    args = list(sys.argv[1:] if argv is None else argv)
    gc.set_threshold(GC_YOUNG_THRESHOLD, *gc.get_threshold()[1:])
    sys.setswitchinterval(SWITCH_INTERVAL_SECONDS)
    cap_malloc_arenas()
    command = tap_class.cli  # builds the command and sets up the SDK's logging
    logger = tap_class.logger
    quiet_sdk_notices(logger, logging.getLogger("singer_sdk"))
    status = "failed"
    files: dict[str, str] = {}
    try:
        files = check_files(args)
        command.main(args=args, prog_name=tap_class.name)
    except SystemExit as exc:
        monitor = tap_class.last_monitor
        clean = not exc.code
        status = "succeeded" if clean else "failed"
        if monitor is not None:
            status = monitor.run_status(exited_cleanly=clean)
        if clean and status == "failed":
            raise SystemExit(1) from None  # on_account_error: fail (the accounts' ERROR lines are out already)
        raise
    except InputFileError as exc:
        logger.error("%s", exc.describe(files.get(exc.kind)))  # noqa: TRY400 - one line, no traceback
    except SettingsError as exc:
        for problem in exc.problems:
            logger.error("%s", problem)  # noqa: TRY400 - one line per setting, no traceback
    except TargetClosedError as exc:
        _discard_further_output()
        logger.error("%s", exc)  # noqa: TRY400 - as above
    except GraphAPIError as exc:
        logger.error("%s", exc)  # noqa: TRY400 - as above
    finally:
        monitor = tap_class.last_monitor
        if monitor is not None and (monitor.partitions or monitor.started):
            monitor.log_run(logger, status)
    sys.exit(1)


def _discard_further_output() -> None:
    """Point stdout at /dev/null: what is still buffered for a closed pipe cannot fail again at exit."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
