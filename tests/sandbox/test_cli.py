"""The command line: --help documents every option, the listening line, port files, one-line errors."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest
import requests
from tap_meta_ads_sandbox.cli import build_parser, config_from_args

from .conftest import TOKEN

PY = [sys.executable, "-m", "tap_meta_ads_sandbox"]
EXPECTED_OPTIONS = {
    "--host", "--port", "--port-file", "--latency", "--seed", "--accounts", "--archived-ratio",
    "--deleted-ratio", "--token", "--app-secret", "--page-budget-bytes", "--empty-page-every", "--max-limit",
    "--cursor-ttl-seconds", "--rate-window-seconds", "--account-budget", "--app-budget", "--throttle-code",
    "--no-usage-headers", "--fault", "--fault-seed", "--slow-seconds", "--retry-after-seconds", "--gzip",
    "--time-zones",
    "--incomplete-creative-every", "--heavy-rule-every", "--asset-url-ttl-seconds",
}  # fmt: skip


def test_help_documents_every_option_and_the_fault_grammar():
    out = subprocess.run([*PY, "--help"], capture_output=True, text=True, timeout=30, check=True).stdout
    declared = {opt for action in build_parser()._actions for opt in action.option_strings if opt.startswith("--")}
    assert declared - {"--help"} == EXPECTED_OPTIONS
    for option in EXPECTED_OPTIONS:
        assert re.search(rf"^\s+{re.escape(option)}\b.*\S", out, re.MULTILINE), option
    for word in ("KIND@N", "KIND~P", "after:K", "http503", "throttle:CODE", "SANDBOX_"):
        assert word in out


@pytest.mark.parametrize(
    ("args", "env", "gzip"), [([], {}, False), (["--gzip"], {}, True), ([], {"SANDBOX_GZIP": "1"}, True)]
)
def test_gzip_is_off_unless_asked_for(monkeypatch, args, env, gzip):
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert config_from_args(build_parser().parse_args(args)).gzip is gzip


@pytest.mark.parametrize(
    ("args", "env", "needle"),
    [
        (["--fault", "boom@1"], {}, "unknown fault kind 'boom'"),
        (["--fault", "http503@0"], {}, "schedule item '0'"),
        (["--fault", "reset~2"], {}, "probability"),
        (["--accounts", "12x"], {}, "ACCOUNT:ADS"),
        (["--throttle-code", "99"], {}, "unknown throttle code"),
        ([], {"SANDBOX_PORT": "abc"}, "--port"),
        ([], {"SANDBOX_FAULTS": "http503@1;nope~0.1"}, "unknown fault kind 'nope'"),
        (["--archived-ratio", "0.7", "--deleted-ratio", "0.7"], {}, "must not exceed 1"),
        (["--time-zones", "1001"], {}, "ACCOUNT=ZONE"),
        (["--time-zones", "1001=Mars/Olympus"], {}, "time_zones: 'Mars/Olympus' is not one of"),
        (["--time-zones", "1009=Pacific/Kiritimati"], {}, "time_zones: '1009' is not one of the accounts"),
    ],
)
def test_bad_options_exit_2_with_one_line(args, env, needle):
    proc = subprocess.run(
        [*PY, *args] if "SANDBOX_PORT" in env else [*PY, *args, "--port", "0"],
        check=False,
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, **env},
    )
    assert proc.returncode == 2
    assert proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert needle in lines[0]
    assert "Traceback" not in proc.stderr


def test_time_zones_choose_each_accounts_zone():
    args = build_parser().parse_args(["--time-zones", "1001=Pacific/Kiritimati, act_1002=Pacific/Pago_Pago"])
    assert config_from_args(args).time_zones == {"1001": "Pacific/Kiritimati", "1002": "Pacific/Pago_Pago"}


def test_subprocess_prints_listening_line_on_port_0_and_serves(tmp_path):
    port_file = tmp_path / "port"
    env = {**os.environ, "SANDBOX_ACCOUNTS": "2001:40", "SANDBOX_FAULTS": "http503@1"}
    proc = subprocess.Popen(
        [*PY, "--port", "0", "--port-file", str(port_file), "--token", "t1", "--token", TOKEN],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        m = re.fullmatch(r"sandbox listening on (http://127\.0\.0\.1:(\d+))\n", line)
        assert m, line
        url, port = m.group(1), int(m.group(2))
        assert port != 0
        assert int(port_file.read_text()) == port
        ads = f"{url}/v25.0/act_2001/ads"
        assert requests.get(ads, params={"access_token": "t1"}, timeout=10).status_code == 503  # env fault
        for token in ("t1", TOKEN):
            assert requests.get(ads, params={"access_token": token}, timeout=10).status_code == 200
        rows = requests.get(f"{url}/_sandbox/truth/act_2001/ads", timeout=10).json()["data"]
        assert 0 < len(rows) <= 40
    finally:
        proc.terminate()
        assert proc.wait(timeout=10) == 0
