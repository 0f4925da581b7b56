"""The user's files: config, state and catalog, checked before the SDK reads them and before any request.

The SDK reads these files with no word of which file failed or where: a config that is not JSON
ends in a ``simplejson`` traceback, a state of another tap (``{"bookmarks": {"x": 1}}``) in an
``AttributeError`` deep in its state helpers. Here every file named on the command line is read
once up front and checked for what the SDK relies on (a JSON object; Singer's state and catalog
structure); the first problem becomes an :class:`InputFileError` whose text is the one line the
user sees: the file, what is wrong, and where (line and column for JSON).

What only the tap can judge - bookmarks of streams it does not have, partitions that are not its
own - is checked by :func:`check_state_for_streams` once the streams exist (``Tap.load_state``).

Settings given as text where the schema wants a number (from the environment, ``.env``, or Meltano,
which declares them ``kind: string``) are read as numbers by :func:`numbers_from_text` before the
config is validated (``TapMetaAds._validate_config``).
"""

from __future__ import annotations

import datetime
import decimal
import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tap_meta_ads.checkpoint import RESUME_KEY, ResumePoint

if TYPE_CHECKING:
    from singer_sdk.streams import Stream

#: The command-line options that name files, and what each file holds.
FILE_OPTIONS = {"--config": "config", "--state": "state", "--catalog": "catalog"}
#: What each kind of file should look like, for messages about an empty or wrong file.
EXPECTED = {
    "config": 'a JSON object of settings, e.g. {"access_token": "...", "account_ids": ["act_123"]}',
    "state": 'a JSON object, e.g. {"bookmarks": {...}} or {} for none',
    "catalog": 'a JSON object {"streams": [...]}, e.g. the output of --discover',
}


class InputFileError(Exception):
    """A config, state or catalog file the run cannot use; its text is the one line to show."""

    def __init__(self, kind: str, path: str | None, problem: str) -> None:
        self.kind, self.path, self.problem = kind, path, problem
        super().__init__(self.describe())

    def describe(self, path: str | None = None) -> str:
        """``state file /x/state.json: ...``; ``path`` names the file when the raiser did not know it."""
        where = path or self.path
        return f"{self.kind} file {where}: {self.problem}" if where else f"{self.kind}: {self.problem}"


class SettingsError(Exception):
    """Settings the run cannot use; each of ``problems`` is one line that names its setting."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("; ".join(problems))


def files_in(argv: Iterable[str]) -> list[tuple[str, str]]:
    """The (kind, path) of every file named on a command line, in order (``--config ENV`` is not a file)."""
    files: list[tuple[str, str]] = []
    args = list(argv)
    for i, arg in enumerate(args):
        option, equals, value = arg.partition("=")
        if option not in FILE_OPTIONS:
            continue
        if not equals:
            if i + 1 >= len(args):
                continue  # click reports the missing value
            value = args[i + 1]
        if not (option == "--config" and value == "ENV"):
            files.append((FILE_OPTIONS[option], value))
    return files


def check_files(argv: Iterable[str]) -> dict[str, str]:
    """Read and check every file named in ``argv``; return {kind: path} (the last of each kind)."""
    named: dict[str, str] = {}
    for kind, path in files_in(argv):
        CHECKS[kind](read_json(kind, path), kind, path)
        named[kind] = path
    return named


def read_json(kind: str, path: str) -> Any:  # noqa: ANN401 - any JSON value; the shape is checked next
    """The file's JSON value; an :class:`InputFileError` naming the file, and line and column, if it has none."""
    file = Path(path)
    try:
        data = file.read_bytes()
    except FileNotFoundError:
        raise InputFileError(kind, path, "not found") from None
    except IsADirectoryError:
        raise InputFileError(kind, path, "is a directory, not a file") from None
    except OSError as exc:
        raise InputFileError(kind, path, f"cannot be read ({exc.strerror})") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputFileError(kind, path, f"is not UTF-8 text (byte {exc.start}); expected {EXPECTED[kind]}") from None
    if not text.strip():
        raise InputFileError(kind, path, f"is empty; expected {EXPECTED[kind]}")
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputFileError(
            kind, path, f"is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from None


def _kind_of(value: object) -> str:
    """A JSON value's type in JSON's words, with a short sample: ``a number (1)``."""
    names = {dict: "an object", list: "an array", str: "a string", bool: "a boolean", type(None): "null"}
    name = names.get(type(value), "a number")
    sample = json.dumps(value)
    return f"{name} ({sample if len(sample) <= 40 else sample[:37] + '...'})"  # noqa: PLR2004 - sample length


def check_config(value: object, kind: str, path: str) -> None:
    """A config file holds one JSON object; its settings are validated by the tap's schema."""
    if not isinstance(value, dict):
        raise InputFileError(kind, path, f"holds {_kind_of(value)}; expected {EXPECTED[kind]}")


def check_state(value: object, kind: str, path: str) -> None:
    """Singer's state: ``{"bookmarks": {stream: {..., "partitions": [{"context": {...}, ...}]}}}``."""
    if not isinstance(value, dict):
        raise InputFileError(kind, path, f"holds {_kind_of(value)}; expected {EXPECTED[kind]}")
    if "singer_state" in value and "bookmarks" not in value:
        # what `meltano state get` prints: read as is, the tap would find no bookmark and start over
        raise InputFileError(kind, path, 'holds Meltano\'s {"singer_state": ...} wrapper; pass the value inside it')
    bookmarks = value.get("bookmarks", {})
    if not isinstance(bookmarks, dict):
        raise InputFileError(kind, path, f'"bookmarks" is {_kind_of(bookmarks)}; expected an object of streams')
    for stream, stream_state in bookmarks.items():
        problem = stream_state_problem(stream_state)
        if problem:
            raise InputFileError(kind, path, f"stream {stream!r}: {problem}")


def stream_state_problem(stream_state: object) -> str | None:
    """What keeps the SDK from reading one stream's state, or ``None``."""
    if not isinstance(stream_state, dict):
        return f"its bookmark is {_kind_of(stream_state)}; expected an object"
    problem = _bookmark_value_problem(stream_state)
    if problem:
        return problem
    partitions = stream_state.get("partitions", [])
    if not isinstance(partitions, list):
        return f'"partitions" is {_kind_of(partitions)}; expected an array'
    contexts: list[object] = []
    for i, partition in enumerate(partitions):
        if not isinstance(partition, dict):
            return f"partition {i} is {_kind_of(partition)}; expected an object"
        context = partition.get("context")
        if not isinstance(context, dict):
            return f'partition {i}: "context" is {_kind_of(context)}; expected an object'
        if context in contexts:
            return f"partitions {contexts.index(context)} and {i} have the same context {json.dumps(context)}"
        contexts.append(context)
        problem = _bookmark_value_problem(partition)
        if problem:
            return f"partition {i}: {problem}"
    return None


def _bookmark_value_problem(state: Mapping[str, Any]) -> str | None:
    value = state.get("replication_key_value")
    if value is None or (isinstance(value, (str, int, float)) and not isinstance(value, bool)):
        return None
    return f'"replication_key_value" is {_kind_of(value)}; expected a string or a number'


def check_catalog(value: object, kind: str, path: str) -> None:
    """Singer's catalog: ``{"streams": [{"tap_stream_id", "schema", "metadata": [...]}, ...]}``."""
    if not isinstance(value, dict):
        raise InputFileError(kind, path, f"holds {_kind_of(value)}; expected {EXPECTED[kind]}")
    streams = value.get("streams")
    if not isinstance(streams, list):
        raise InputFileError(kind, path, f'"streams" is {_kind_of(streams)}; expected {EXPECTED[kind]}')
    for i, entry in enumerate(streams):
        problem = _catalog_entry_problem(entry)
        if problem:
            name = entry.get("tap_stream_id") if isinstance(entry, dict) else None
            label = f"stream {name!r}" if isinstance(name, str) and name else f"streams[{i}]"
            raise InputFileError(kind, path, f"{label}: {problem}")


def _catalog_entry_problem(entry: object) -> str | None:
    if not isinstance(entry, dict):
        return f"is {_kind_of(entry)}; expected an object"
    stream_id = entry.get("tap_stream_id")
    if not isinstance(stream_id, str) or not stream_id:
        return f'"tap_stream_id" is {_kind_of(stream_id)}; expected the stream\'s name'
    if not isinstance(entry.get("schema", {}), dict):
        return f'"schema" is {_kind_of(entry["schema"])}; expected a JSON schema object'
    metadata = entry.get("metadata", [])
    if not isinstance(metadata, list):
        return f'"metadata" is {_kind_of(metadata)}; expected an array'
    for j, item in enumerate(metadata):
        if not isinstance(item, dict):
            return f"metadata[{j}] is {_kind_of(item)}; expected an object"
        breadcrumb = item.get("breadcrumb")
        if not isinstance(breadcrumb, list) or not all(isinstance(b, str) for b in breadcrumb):
            return f'metadata[{j}]: "breadcrumb" is {_kind_of(breadcrumb)}; expected an array of strings'
        if not isinstance(item.get("metadata"), dict):
            return f'metadata[{j}]: "metadata" is {_kind_of(item.get("metadata"))}; expected an object'
    return None


CHECKS = {"config": check_config, "state": check_state, "catalog": check_catalog}


def check_state_for_streams(state: Mapping[str, Any], streams: Mapping[str, Stream]) -> list[str]:
    """Check a state against the tap's streams; return the names of streams it has bookmarks for but the tap lacks.

    A partition of a stream the tap has must be one the tap would read (its context has the
    stream's partition keys) and carry values the tap can use (an ISO 8601 bookmark, a resume
    point it can parse); otherwise an :class:`InputFileError` names the stream. Bookmarks of
    other streams are the caller's to warn about: they are kept and ignored.
    """
    bookmarks = state.get("bookmarks") or {}
    unknown = sorted(name for name in bookmarks if name not in streams)
    for name, stream_state in bookmarks.items():
        stream = streams.get(name)
        if stream is None:
            continue
        problem = stream_state_problem(stream_state) or _partitions_problem(stream, stream_state)
        if problem:
            raise InputFileError("state", None, f"stream {name!r}: {problem}")
    return unknown


def check_catalog_for_streams(catalog_streams: Iterable[str], streams: Mapping[str, Stream]) -> list[str]:
    """Check a catalog against the tap's streams; return the names it lists that the tap lacks.

    A catalog without any stream of this tap (another tap's, or an empty list) would make a run
    that extracts nothing and exits 0: that is an :class:`InputFileError`, not a quiet success.
    """
    listed = list(catalog_streams)
    if not any(name in streams for name in listed):
        theirs = ", ".join(listed) or "none"
        raise InputFileError(
            "catalog", None, f"has no stream of this tap ({', '.join(streams)}); it lists: {theirs}. Run --discover"
        )
    return sorted(name for name in listed if name not in streams)


def _partitions_problem(stream: Stream, stream_state: Mapping[str, Any]) -> str | None:
    """A partition the stream would not recognise, or values in it the stream cannot read."""
    problem = _bookmark_time_problem(stream, stream_state)
    if problem:
        return problem
    keys = getattr(stream, "partition_keys", None)  # declared: reading partitions would discover the accounts
    expected_keys = {frozenset(keys)} if keys else {frozenset(p) for p in stream.partitions or []}
    for i, partition in enumerate(stream_state.get("partitions", [])):
        context = partition["context"]
        if expected_keys and frozenset(context) not in expected_keys:
            keys = " or ".join(sorted(", ".join(sorted(k)) for k in expected_keys))
            return f"partition {i} has context {json.dumps(context)}; this tap's partitions are keyed by {keys}"
        problem = _bookmark_time_problem(stream, partition)
        if problem:
            return f"partition {i}: {problem}"
        if RESUME_KEY in partition and ResumePoint.from_state(partition) is None:
            return f'partition {i}: "{RESUME_KEY}" is not a resume point this tap wrote'
    return None


def _bookmark_time_problem(stream: Stream, state: Mapping[str, Any]) -> str | None:
    """The tap's replication keys are times: a bookmark must be an ISO 8601 string."""
    value = state.get("replication_key_value")
    if value is None or not stream.replication_key:
        return None
    try:
        datetime.datetime.fromisoformat(value)
    except (TypeError, ValueError):
        return f'"replication_key_value" {json.dumps(value)} is not an ISO 8601 time'
    return None


def numbers_from_text(config: Mapping[str, Any], schema: Mapping[str, Any]) -> dict[str, Any]:
    """The config with each ``number`` setting given as text (``"0.5"``) read as a ``Decimal``.

    Why: neither way of setting a number from the environment delivers one. The SDK's ``--config ENV``
    casts integers, booleans, arrays and objects from their text but leaves a ``number`` as a string;
    and under Meltano 4.4.1 a ``kind: decimal`` setting read from the environment or ``.env`` crashes
    Meltano itself ("Object of type Decimal is not JSON serializable", see ``meltano.yml``), so our
    ``meltano.yml`` declares number settings as ``kind: string`` and Meltano passes their text on.
    ``Decimal`` is what the SDK reads a JSON config's non-integer numbers as, so every way a number
    arrives ends the same. Text that is not a finite number is left as it is, for the schema's
    validation to name the setting.
    """
    converted = dict(config)
    for name, prop in schema.get("properties", {}).items():
        value = config.get(name)
        types = prop.get("type", [])
        if not isinstance(value, str) or "number" not in ([types] if isinstance(types, str) else types):
            continue
        try:
            number = decimal.Decimal(value.strip())
        except decimal.InvalidOperation:
            continue
        if number.is_finite():
            converted[name] = number
    return converted
