"""Issue 11: the tap's edges - the user's files, a target that stops reading, the first contact with api_url.

Every case runs the real CLI as a process (as Meltano does) and checks what a person sees: the exit
code, exactly one ERROR line that names what is wrong, no traceback, and how many requests reached the
sandbox.
"""

from __future__ import annotations

import json
import socket
import subprocess
import time
from collections.abc import Iterator

import pytest
import requests
from tap_meta_ads_sandbox import FaultPlan

from tap_meta_ads.errors import connect_failure
from tap_meta_ads.tap import DEFAULT_EFFECTIVE_STATUSES
from tests.tap_harness import (
    ADS,
    FAST_RETRIES,
    TAP,
    TapRun,
    base_config,
    catalog_selecting,
    duplicates,
    parse_messages,
    run_streaming,
    run_tap,
)

ACCOUNTS = {"1001": 250, "1002": 150}
ACCOUNT_IDS = ["1001", "1002"]


def all_ids(sandbox) -> list[str]:
    """Every ad a complete run of the sandbox extracts, sorted."""
    return sorted(ad["id"] for a in ACCOUNTS for ad in sandbox.visible_ads(a, list(DEFAULT_EFFECTIVE_STATUSES)))


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if "| ERROR" in line]


def run_cli(args: list[str]) -> TapRun:
    proc = subprocess.run([*TAP, *args], capture_output=True, text=True, timeout=120, check=False)
    run = TapRun(proc.returncode, proc.stdout, proc.stderr)
    parse_messages(proc.stdout, run)
    return run


# -- config, state and catalog files -------------------------------------------------------------

NOT_JSON = '{"bookmarks": {\n  "ads": {]\n}'
ADS_PARTITION = {"context": {"account_id": "1001"}, "replication_key_value": "2024-01-01T00:00:00+00:00"}
#: (file, what it holds, words the one ERROR line must carry besides the file's path)
BAD_FILES = {
    "config-missing": ("config", None, "not found"),
    "config-empty": ("config", "", "is empty"),
    "config-not-json": ("config", '{"access_token": "t",\n "account_ids": ["1001"],}', "line 2 column 26"),
    "config-array": ("config", "[1, 2]", "holds an array"),
    "config-not-utf8": ("config", b'{"access_token": "\xff"}', "not UTF-8"),
    "state-missing": ("state", None, "not found"),
    "state-empty": ("state", " \n", "is empty"),
    "state-not-json": ("state", NOT_JSON, "line 2 column 11"),
    "state-another-taps": ("state", {"bookmarks": {"x": 1}}, "stream 'x': its bookmark is a number (1)"),
    "state-array": ("state", [], "holds an array"),
    "state-meltano-wrapper": ("state", {"singer_state": {"bookmarks": {}}}, "singer_state"),
    "state-bookmarks-array": ("state", {"bookmarks": []}, '"bookmarks" is an array'),
    "state-partitions-object": ("state", {"bookmarks": {"ads": {"partitions": {}}}}, "stream 'ads': \"partitions\""),
    "state-context-missing": ("state", {"bookmarks": {"ads": {"partitions": [{}]}}}, "stream 'ads': partition 0"),
    "state-foreign-partition": (
        "state",
        {"bookmarks": {"ads": {"partitions": [ADS_PARTITION, {"context": {"campaign": "1"}}]}}},
        "stream 'ads': partition 1 has context",
    ),
    "state-bookmark-not-a-time": (
        "state",
        {"bookmarks": {"ads": {"partitions": [{**ADS_PARTITION, "replication_key_value": "yesterday"}]}}},
        'stream \'ads\': partition 0: "replication_key_value" "yesterday" is not an ISO 8601 time',
    ),
    "state-resume-garbled": (
        "state",
        {"bookmarks": {"ads": {"partitions": [{**ADS_PARTITION, "resume": {"pages": "many"}}]}}},
        "stream 'ads': partition 0: \"resume\"",
    ),
    "catalog-missing": ("catalog", None, "not found"),
    "catalog-empty": ("catalog", "", "is empty"),
    "catalog-not-json": ("catalog", "{streams: []}", "line 1 column 2"),
    "catalog-no-streams": ("catalog", {"type": "catalog"}, '"streams" is null'),
    "catalog-entry-without-id": ("catalog", {"streams": [{"schema": {}}]}, 'streams[0]: "tap_stream_id"'),
    "catalog-of-another-tap": (
        "catalog",
        {"streams": [{"tap_stream_id": "campaigns_of_another_tap", "schema": {}, "metadata": []}]},
        "adsets, advideos, campaigns, custom_audiences, customconversions, saved_audiences); it lists: "
        "campaigns_of_another_tap",
    ),
    "catalog-no-stream-listed": (
        "catalog",
        {"streams": []},
        "adsets, advideos, campaigns, custom_audiences, customconversions, saved_audiences); it lists: none",
    ),
    "catalog-bad-metadata": (
        "catalog",
        {"streams": [{"tap_stream_id": "ads", "schema": {}, "metadata": [{"breadcrumb": "properties"}]}]},
        "stream 'ads': metadata[0]",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_a_bad_file_is_one_line_naming_it_before_any_request(make_sandbox, tmp_path, case):
    sandbox = make_sandbox(accounts=ACCOUNTS)
    kind, content, words = BAD_FILES[case]
    config = tmp_path / "config.json"
    config.write_text(json.dumps(base_config(sandbox.url, ACCOUNT_IDS)))
    bad = tmp_path / f"{kind}-file.json"
    if isinstance(content, bytes):
        bad.write_bytes(content)
    elif isinstance(content, str):
        bad.write_text(content)
    elif content is not None:
        bad.write_text(json.dumps(content))
    args = ["--config", str(bad if kind == "config" else config)]
    if kind != "config":
        args += [f"--{kind}", str(bad)]
    run = run_cli(args)
    assert run.returncode == 1
    (error,) = error_lines(run.stderr)
    assert f"{kind} file {bad}: " in error
    assert words in error
    assert "Traceback" not in run.stderr
    assert run.records == []
    assert sandbox.stats()["requests"] == 0


def test_settings_that_fail_validation_are_one_line_each_naming_the_setting(make_sandbox, tmp_path):
    sandbox = make_sandbox(accounts=ACCOUNTS)
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"api_url": sandbox.url, "account_ids": "act_1", "page_size": 0}))
    run = run_cli(["--config", str(config)])
    assert run.returncode == 1
    errors = error_lines(run.stderr)
    assert [e.split("| ")[-1].split(":")[0] for e in errors] == ["access_token", "account_ids"]
    assert "Config validation failed" not in run.stderr
    assert "Traceback" not in run.stderr
    assert sandbox.stats()["requests"] == 0


def test_bookmarks_of_streams_the_tap_lacks_are_one_warning_and_the_run_goes_on(make_sandbox):
    sandbox = make_sandbox(accounts=ACCOUNTS)
    other = {"currently_syncing": None, "bookmarks": {"campaigns_of_another_tap": {"replication_key_value": 7}}}
    run = run_tap(base_config(sandbox.url, ACCOUNT_IDS), state=other, streams=ADS)
    assert run.returncode == 0, run.stderr[-3000:]
    warnings = [line for line in run.stderr.splitlines() if "| WARNING" in line]
    assert len(warnings) == 1
    assert "campaigns_of_another_tap" in warnings[0]
    assert sorted(run.ids()) == all_ids(sandbox)
    assert error_lines(run.stderr) == []


def test_catalog_streams_the_tap_lacks_are_one_warning_and_the_run_goes_on(make_sandbox):
    sandbox = make_sandbox(accounts=ACCOUNTS)
    config = base_config(sandbox.url, ACCOUNT_IDS)
    catalog = catalog_selecting(ADS)
    catalog["streams"].append({"tap_stream_id": "campaigns_of_another_tap", "schema": {}, "metadata": []})
    run = run_tap(config, catalog=catalog)
    assert run.returncode == 0, run.stderr[-3000:]
    (warning,) = [line for line in run.stderr.splitlines() if "| WARNING" in line]
    assert "campaigns_of_another_tap" in warning
    assert sorted(run.ids()) == all_ids(sandbox)


def test_a_good_state_passes_the_checks_and_resumes(make_sandbox):
    sandbox = make_sandbox(accounts=ACCOUNTS)
    first = run_tap(base_config(sandbox.url, ACCOUNT_IDS), streams=ADS)
    assert first.returncode == 0, first.stderr[-3000:]
    again = run_tap(base_config(sandbox.url, ACCOUNT_IDS), state=first.last_state, streams=ADS)
    assert again.returncode == 0, again.stderr[-3000:]
    assert [line for line in again.stderr.splitlines() if "| WARNING" in line or "| ERROR" in line] == []
    assert again.ids() == []  # nothing changed since the bookmarks


# -- the target stops reading ------------------------------------------------------------------


@pytest.mark.parametrize("lines", [5, 120])
def test_a_target_that_stops_reading_is_one_line_with_what_it_received(make_sandbox, tmp_path, lines):
    sandbox = make_sandbox(accounts=ACCOUNTS)
    config = tmp_path / "config.json"
    config.write_text(json.dumps(base_config(sandbox.url, ACCOUNT_IDS, page_size=50, checkpoint_every_pages=1)))
    # ``tap-meta-ads --config c.json | head -N``, with the real head
    catalog = tmp_path / "catalog.json"
    catalog.write_text(json.dumps(catalog_selecting(ADS)))
    args = [*TAP, "--config", str(config), "--catalog", str(catalog)]
    tap = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    head = subprocess.Popen(["head", f"-{lines}"], stdin=tap.stdout, stdout=subprocess.PIPE)
    assert tap.stdout is not None
    tap.stdout.close()  # only head reads it now
    shown, _ = head.communicate(timeout=60)
    _, stderr = tap.communicate(timeout=60)
    text = stderr.decode()
    assert tap.returncode == 1
    (error,) = error_lines(text)
    assert "stopped reading the tap's output (broken pipe)" in error
    assert "Traceback" not in text
    assert "Exception ignored" not in text
    received = TapRun(0, "", "")
    parse_messages(shown.decode(), received)
    assert len(received.records) + len(received.schemas) + len(received.states) == lines
    # what the line reports is at least what the reader saw, and the STATE it names is the last one sent
    written = int(error.split(" after ")[1].split(" records")[0])
    assert written >= len(received.records) > 0
    if received.last_state is not None:  # head -120 saw a STATE: the one reported is that one or a later one
        last_state = json.loads(error.split("the last STATE written was ")[1].split(". Find")[0])
        assert (
            last_state["bookmarks"]["ads"]["partitions"][0]["resume"]["pages"]
            >= received.last_state["bookmarks"]["ads"]["partitions"][0]["resume"]["pages"]
        )
    else:
        assert lines == 5


# -- first contact -----------------------------------------------------------------------------


def test_unreachable_api_url_fails_within_a_minute_naming_the_host(refusing_port):
    # the production retry settings (max_retries 10, backoff from 5 s to 900 s): over half an hour before
    config = base_config(f"http://127.0.0.1:{refusing_port}", ACCOUNT_IDS)
    for setting in FAST_RETRIES:
        del config[setting]
    started = time.monotonic()
    run = run_tap(config, streams=ADS)
    elapsed = time.monotonic() - started
    assert run.returncode == 1
    assert elapsed < 60
    (error,) = error_lines(run.stderr)
    assert f"127.0.0.1:{refusing_port}" in error
    assert "connection refused" in error
    assert "api_url" in error
    assert "Traceback" not in run.stderr
    retries = [line for line in run.stderr.splitlines() if "Retrying ads account" in line]
    assert len(retries) == 2
    assert all("of 3," in line for line in retries)


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A local port where connecting hangs: it listens, but its accept queue is full and never drained."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(0)
        port = server.getsockname()[1]
        fillers = []
        for _ in range(3):
            filler = socket.socket()
            filler.setblocking(False)
            filler.connect_ex(("127.0.0.1", port))
            fillers.append(filler)
        try:
            yield port
        finally:
            for filler in fillers:
                filler.close()


def test_a_host_that_never_answers_the_connect_is_given_up_in_seconds(silent_port):
    # request_timeout_seconds stays 120: only the connect part is short, and one try is allowed
    config = base_config(f"http://127.0.0.1:{silent_port}", ["1001"], max_retries=0, request_timeout_seconds=120)
    started = time.monotonic()
    run = run_tap(config, streams=ADS)
    elapsed = time.monotonic() - started
    assert run.returncode == 1
    (error,) = error_lines(run.stderr)
    assert f"Cannot connect to http://127.0.0.1:{silent_port} (connect timed out; 1 attempts)" in error
    assert elapsed < 30


def test_connect_failure_tells_no_connection_from_a_fault_of_a_server_that_exists(make_sandbox, refusing_port):
    sandbox = make_sandbox(accounts={"1001": 10}, faults=FaultPlan.from_specs(["reset@1"]))
    outcomes = {}
    for name, url in {
        "refused": f"http://127.0.0.1:{refusing_port}/",
        "unresolved": "http://no-such-host.invalid/",
        "reset": f"{sandbox.url}/v25.0/act_1001/ads",
    }.items():
        with pytest.raises(requests.RequestException) as caught:
            requests.get(url, headers={"Authorization": "Bearer sandbox-token"}, timeout=10)
        outcomes[name] = connect_failure(caught.value)
    assert outcomes == {"refused": "connection refused", "unresolved": "name not resolved", "reset": None}


def test_resets_from_the_first_request_on_are_survived(make_sandbox):
    sandbox = make_sandbox(accounts=ACCOUNTS, faults=FaultPlan.from_specs(["reset@1,2,4"]))
    run = run_tap(base_config(sandbox.url, ACCOUNT_IDS, page_size=50), streams=ADS)
    assert run.returncode == 0, run.stderr[-3000:]
    assert sorted(run.ids()) == all_ids(sandbox)
    assert duplicates(run.ids()) == {}
    assert run.summary()["retries_total"] == 3


def test_connection_faults_after_progress_keep_every_retry(make_sandbox):
    # After the first page the sandbox resets every request and stops listening: the API was reached
    # once, so this is an outage, not a wrong api_url, and every one of max_retries is used.
    sandbox = make_sandbox(accounts=ACCOUNTS, faults=FaultPlan.from_specs(["reset@after:1"]))
    config = base_config(sandbox.url, ACCOUNT_IDS, page_size=50, max_retries=5, backoff_base_seconds=0.2)

    def stop_listening(message, _run):
        if message["type"] == "RECORD":
            sandbox.stop()
        return False

    run = run_streaming(config, state=None, on_message=stop_listening, streams=ADS)
    assert run.returncode == 1
    (error,) = error_lines(run.stderr)
    assert "Gave up on ads account 1001 after 6 attempts" in error
    # some of the six attempts found no listener at all, and were retried all the same
    assert sandbox.stats()["requests"] < 6
    assert len(run.ids()) == 50
