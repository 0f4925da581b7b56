"""Supervise target-gcs so that STATE is only forwarded for data that is verified in the bucket.

Why: Meltano stores every STATE line the target prints. target-gcs 1.2.3 prints STATE while its objects
are still being uploaded (it finishes at exit) and exits 0 when that upload fails, so a run could move the
bookmark past ads that never landed.

How (console script `target-gcs-guard`, the loader's executable in meltano.yml):
1. It gives the run a unique `run_id` and puts it into `key_naming_convention` (which must contain
   `{run_id}`): two runs never write the same object name, even in the same second.
2. It runs the guarded target (`target_gcs_guard.target`) as a child, feeds it stdin line by line and
   counts the RECORD messages per stream.
3. It holds back every STATE line the child prints.
4. When the child exits 0, it lists the bucket: for every stream that had records, the objects of this run
   must exist and hold exactly as many lines as records were received.
5. Only then does it print the LAST state; on any failure it prints no state and exits non-zero.

Only the standard library and google-cloud-storage are used here (orjson, when present, for speed).
"""

from __future__ import annotations

import datetime
import io
import json
import logging
import os
import re
import secrets
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from collections import Counter
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator

try:
    import orjson

    _loads: Callable[[bytes], Any] = orjson.loads
except ImportError:  # pragma: no cover - orjson comes with target-gcs
    _loads = json.loads

LOGGER = logging.getLogger("target-gcs-guard")

DEFAULT_KEY_NAMING_CONVENTION = "{stream}/{date}/{stream}-{timestamp}-{run_id}.jsonl"
"""One object per stream per run; `{run_id}` makes names unique across runs."""

VERIFY_TIMEOUT_SECONDS = 60.0
"""How long verification may retry the bucket before the run is declared failed (`verify_timeout_seconds`)."""

GUARD_SETTINGS = {"verify_timeout_seconds"}
"""Settings of the guard itself: not passed on to target-gcs."""

CHILD_WARNING_FILTERS = (
    "ignore:pkg_resources is deprecated as an API:UserWarning",
    "ignore:Deprecated call to `pkg_resources.declare_namespace:DeprecationWarning",
)
"""Warnings target-gcs 1.2.3's dependencies print at import (`fs` 2.4 through singer-sdk 0.40) under Meltano,
which runs plugins with PYTHONWARNINGS=once. The guard pins `setuptools<81`, so `pkg_resources` works; the
warnings only say it will go one day, to someone who cannot act on it."""

EXIT_CONFIG_ERROR = 2
EXIT_NOT_VERIFIED = 3
PASSTHROUGH_FLAGS = {"--about", "--version", "--help", "--discover", "--test"}


class GuardError(Exception):
    """A problem that makes the guard withhold STATE and exit non-zero."""


def new_run_id() -> str:
    """Return a run id that sorts by time and is unique: UTC time plus 64 random bits (16 hex digits)."""
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + secrets.token_hex(8)


def object_name_pattern(config: dict[str, Any], stream: str, dates: Iterable[str]) -> tuple[list[str], re.Pattern[str]]:
    """Return (listing prefixes, full-name regex) of the objects target-gcs 1.2.3 writes for `stream`.

    This mirrors `GCSSink.key_name` of target-gcs 1.2.3: `key_prefix` + "/" + convention, "//" folded,
    leading "/" stripped, then `{stream}`, `{date}`, `{timestamp}` filled in and unknown fields emptied.
    The convention passed here already has `{run_id}` replaced. `dates` are the values `{date}` can have
    during this run (the day it started and the day it ended), so the listing stays within those days.
    """
    convention = config["key_naming_convention"]
    name = f"{config.get('key_prefix', '')}/{convention}".replace("//", "/").lstrip("/")
    dates = sorted(set(dates))
    regex = []
    for piece in re.split(r"(\{[^{}]*\})", name):
        if piece == "{stream}":
            regex.append(re.escape(stream))
        elif piece == "{timestamp}":
            regex.append(r"\d+")
        elif piece == "{date}":
            regex.append("(?:" + "|".join(re.escape(d) for d in dates) + ")")
        elif piece.startswith("{") and piece.endswith("}"):
            continue  # target-gcs formats unknown fields as ""
        else:
            regex.append(re.escape(piece))
    prefixes = {name.replace("{stream}", stream).replace("{date}", date).split("{", 1)[0] for date in dates}
    return sorted(prefixes), re.compile("".join(regex) + r"\Z")


def today(config: dict[str, Any]) -> str:
    """`{date}` as target-gcs 1.2.3 computes it (local time, `date_format`)."""
    return datetime.datetime.today().strftime(config.get("date_format", "%Y-%m-%d"))


def _storage_client(config: dict[str, Any]) -> Any:  # noqa: ANN401 - google.cloud.storage.Client
    from google.cloud import storage  # noqa: PLC0415 - imported only when verification runs

    credentials_file = config.get("credentials_file")
    if credentials_file:
        return storage.Client.from_service_account_json(credentials_file)
    return storage.Client()


def _count_lines(blob: Any, retry: Any) -> int:  # noqa: ANN401 - google.cloud.storage types
    """Newlines in an object, read in 1 MiB chunks."""
    count = 0
    with blob.open("rb", retry=retry, timeout=30) as stream_in:
        while chunk := stream_in.read(1 << 20):
            count += chunk.count(b"\n")
    return count


def verify_objects(config: dict[str, Any], record_counts: Counter[str], dates: Iterable[str]) -> list[str]:
    """Check that each stream's objects of this run hold exactly its record count; return their names."""
    from google.api_core.retry import Retry  # noqa: PLC0415

    client = _storage_client(config)
    retry = Retry(timeout=float(config.get("verify_timeout_seconds", VERIFY_TIMEOUT_SECONDS)))
    bucket = client.bucket(config["bucket_name"])
    verified: list[str] = []
    for stream, expected in sorted(record_counts.items()):
        prefixes, pattern = object_name_pattern(config, stream, dates)
        blobs = [
            blob
            for prefix in prefixes
            for blob in client.list_blobs(bucket, prefix=prefix, retry=retry, timeout=30)
            if pattern.match(blob.name)
        ]
        if not blobs:
            raise GuardError(f"stream {stream!r}: no object matching {pattern.pattern!r} in the bucket")
        found = sum(_count_lines(blob, retry) for blob in blobs)
        if found != expected:
            names = ", ".join(blob.name for blob in blobs)
            raise GuardError(f"stream {stream!r}: {found} lines in {names}, but {expected} records were sent")
        verified.extend(f"gs://{config['bucket_name']}/{blob.name} ({expected} records)" for blob in blobs)
    return verified


def describe_failure(exc: BaseException, seconds: float) -> str:
    """One honest line about a failed verification.

    google-api-core's `RetryError` says "Timeout of 60.0s exceeded" when it stops early because the next
    wait would pass the limit (often after 20-40 s); say how long it really tried and what the last error was.
    """
    from google.api_core.exceptions import RetryError  # noqa: PLC0415 - with the storage client

    if not isinstance(exc, RetryError) or exc.cause is None:
        return f"{type(exc).__name__}: {exc}"
    cause = exc.cause
    request = getattr(cause, "request", None)
    host = urllib.parse.urlsplit(request.url).netloc if getattr(request, "url", None) else None
    reason = _innermost_os_error(cause)
    if host and reason:
        return f"the storage server at {host} could not be reached for {seconds:.0f} s of retries ({reason})"
    return f"the storage server kept failing for {seconds:.0f} s of retries; last error {type(cause).__name__}: {cause}"


def _innermost_os_error(exc: BaseException) -> str | None:
    """The operating system's words for a network failure deep in an exception chain ("Connection refused")."""
    seen: set[int] = set()
    pending: list[object] = [exc]
    found = None
    while pending:
        item = pending.pop(0)
        if not isinstance(item, BaseException) or id(item) in seen:
            continue
        seen.add(id(item))
        if isinstance(item, OSError) and item.strerror:
            found = item.strerror
        pending.extend([*item.args, getattr(item, "reason", None), item.__cause__, item.__context__])
    return found


def _message_type_and_stream(line: bytes) -> tuple[str | None, str | None]:
    """Return (type, stream) of a Singer message line; (None, None) for blank or non-JSON lines."""
    if not line.strip():
        return None, None
    try:
        message = _loads(line)
    except ValueError:
        return None, None
    if not isinstance(message, dict):
        return None, None
    return message.get("type"), message.get("stream")


class _StateCollector(threading.Thread):
    """Reads the child's stdout and holds it back: a Singer target prints only state there.

    Each line is a state value (the SDK writes `{"bookmarks": ...}`, not a STATE message); the last
    JSON object line is kept. Anything else is passed to stderr as a log line, never to Meltano.
    """

    def __init__(self, child_stdout: IO[bytes]) -> None:
        super().__init__(name="state-collector", daemon=True)
        self._child_stdout = child_stdout
        self.last_state: bytes | None = None
        self.states_held = 0

    def run(self) -> None:
        for line in self._child_stdout:
            try:
                value = _loads(line) if line.strip() else None
            except ValueError:
                value = None
            if isinstance(value, dict):
                self.last_state = line if line.endswith(b"\n") else line + b"\n"
                self.states_held += 1
            elif line.strip():
                sys.stderr.buffer.write(b"target-gcs stdout: " + line)
                sys.stderr.buffer.flush()


def _feed(lines: Iterator[bytes], child_stdin: IO[bytes], counts: Counter[str]) -> bool:
    """Copy input lines to the child, counting records per stream; False if the child stopped reading."""
    try:
        for line in lines:
            if b"RECORD" in line:
                message_type, stream = _message_type_and_stream(line)
                if message_type == "RECORD" and stream:
                    counts[stream] += 1
            child_stdin.write(line)
        child_stdin.close()
    except BrokenPipeError:
        return False
    return True


def _prepare_config(config_path: str, run_id: str) -> dict[str, Any]:
    try:
        config = json.loads(Path(config_path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise GuardError(f"cannot read config {config_path}: {exc}") from exc
    if not config.get("bucket_name"):
        raise GuardError("setting bucket_name is required")
    convention = config.get("key_naming_convention") or DEFAULT_KEY_NAMING_CONVENTION
    if "{run_id}" not in convention:
        raise GuardError(
            "setting key_naming_convention must contain {run_id}: without it two runs in the same "
            f"second write the same object name and the later overwrites the earlier (got {convention!r})"
        )
    config["key_naming_convention"] = convention.replace("{run_id}", run_id)
    return config


def _child_command(argv: list[str]) -> list[str]:
    # `-c`, not `-m`: the SDK looks up package resources by the target class's module, which must not be
    # `__main__`.
    warning_options = [arg for f in CHILD_WARNING_FILTERS for arg in ("-W", f)]
    return [sys.executable, *warning_options, "-c", "from target_gcs_guard.target import main; main()", *argv]


def run(argv: list[str], stdin: IO[bytes], stdout: IO[bytes]) -> int:
    """Run one guarded load; return the exit code."""
    if "--config" not in argv or PASSTHROUGH_FLAGS.intersection(argv):
        return subprocess.call(_child_command(argv))  # noqa: S603 - our own interpreter and module
    config_path = argv[argv.index("--config") + 1]
    run_id = new_run_id()
    try:
        config = _prepare_config(config_path, run_id)
    except GuardError as exc:
        LOGGER.error("%s", exc)  # noqa: TRY400 - a one-line message, no traceback wanted
        return EXIT_CONFIG_ERROR

    started_on = today(config)
    with tempfile.TemporaryDirectory(prefix="target-gcs-guard-") as tmp:
        child_config = Path(tmp) / "config.json"
        child_config.touch(mode=0o600)
        child_config.write_text(
            json.dumps({k: v for k, v in config.items() if k not in GUARD_SETTINGS}), encoding="utf-8"
        )
        rest = argv[:]
        rest[argv.index("--config") + 1] = str(child_config)
        LOGGER.info("run_id %s: objects will be named like %s", run_id, config["key_naming_convention"])
        child = subprocess.Popen(  # noqa: S603 - our own interpreter and module
            _child_command(rest), stdin=subprocess.PIPE, stdout=subprocess.PIPE, bufsize=0
        )  # unbuffered: each line reaches the target as soon as the tap sent it
        assert child.stdin is not None
        assert child.stdout is not None

        def _forward_signal(signum: int, _frame: object) -> None:
            child.send_signal(signum)

        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, _forward_signal)

        child_out = io.BufferedReader(child.stdout)  # type: ignore[type-var] # raw pipe
        try:
            collector = _StateCollector(child_out)
            collector.start()
            counts: Counter[str] = Counter()
            fed_all = _feed(iter(stdin.readline, b""), child.stdin, counts)
            returncode = child.wait()
            collector.join()
        finally:
            child_out.close()
            child.stdin.close()

    if returncode != 0 or not fed_all:
        LOGGER.error(
            "target-gcs exited with code %s%s: withholding %d STATE message(s); the bookmark does not move",
            returncode,
            "" if fed_all else " before reading all input",
            collector.states_held,
        )
        return returncode or 1
    verify_started = time.monotonic()
    try:
        verified = verify_objects(config, counts, {started_on, today(config)})
    except Exception as exc:  # noqa: BLE001 - any failure to verify means: do not report success
        LOGGER.error(  # noqa: TRY400 - one line: what failed and what it means
            "verification failed (%s): withholding %d STATE message(s); the bookmark does not move",
            describe_failure(exc, time.monotonic() - verify_started),
            collector.states_held,
        )
        return EXIT_NOT_VERIFIED
    for line in verified:
        LOGGER.info("verified %s", line)
    if collector.last_state is not None:
        stdout.write(collector.last_state)
        stdout.flush()
        LOGGER.info("forwarded the last of %d STATE message(s)", collector.states_held)
    return 0


def main() -> None:
    """Console script `target-gcs-guard`: the same command line as target-gcs."""
    logging.basicConfig(
        level=os.environ.get("TARGET_GCS_GUARD_LOGLEVEL", "INFO"),
        format="%(asctime)s | %(levelname)-8s | %(name)-20s | %(message)s",
        stream=sys.stderr,
    )
    sys.exit(run(sys.argv[1:], sys.stdin.buffer, sys.stdout.buffer))


if __name__ == "__main__":
    main()
