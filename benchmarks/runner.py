"""Side-by-side benchmarks of tap-meta-ads: one command, one machine, one table (not a test; CI does not run it).

    bash benchmarks/run            # installs what is missing, runs everything, writes benchmarks/results.md
    bash benchmarks/run --quick    # smaller data, one round: a smoke run of the runner itself
    bash benchmarks/run --only throughput,memory

Every measurement starts its own sandbox (``python -m tap_meta_ads_sandbox``) as a separate process on a free
port and runs each client as a separate process with its stdout to /dev/null, as a target would read it. CPU
seconds (user + system) and peak RSS come from ``wait4`` on the client process, so they include its start-up,
and wall time is measured around it, by a small launcher (``rusage.py``: a child spawned by a large process
would report that process's peak RSS as its own). Records come from the sandbox's own count
(``records_served``), calls from its request count, throttle answers from its outcomes. Data sets have no
ARCHIVED or DELETED ads, so that every client, whatever its status filter, reads the same rows.

1. throughput: records per CPU-second and per wall-second of a full sync of each stream kind (``ads``; the
   insights stream once the tap has one), against the plain ``requests`` + ``json`` loop of
   ``benchmarks/raw_loop.py`` reading the same pages, in alternating rounds; the median of each.
2. tap-facebook: MeltanoLabs tap-facebook 0.9.0 (``meltano-tap-facebook``, in its own virtualenv under
   ``.ci/.tools/tap-facebook``) through ``benchmarks/tap_facebook_launcher.py``, which points its fixed base URL
   at the sandbox. The same rows and the same 20 columns (tap-facebook's), each tap with its own page size
   (25; 100) and writer; tap-meta-ads with every field is shown too. Compared per record, because tap-facebook
   stops at an empty page that still has ``next`` and skips ARCHIVED ads by default (the data set has neither).
3. calls: requests per 1,000 records against the minimum, one call per ``page_size`` rows of each account.
4. budget-bound: the sandbox allows 60 calls per account in any 10 s (a sliding window); the tap's pacing
   threshold is its default, 75 %. The least wall time of any client that is never throttled: the i-th call
   (from 0) cannot come before floor(i / 60) x 10 s, so N calls take at least floor((N - 1) / 60) x 10 s.
5. latency-bound: 20 accounts of 10 pages and 0.2 s added to every answer; the least wall time is
   calls x latency / the tap's account parallelism.
6. memory: peak RSS of a full sync of one account of 100,000 and of 1,000,000 ads (and, for reference, of an
   account with no ads: what start-up alone costs).
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
TAP_FACEBOOK_PYTHON = ROOT / ".ci/.tools/tap-facebook/bin/python"
RESULTS = ROOT / "benchmarks/results.md"
TOKEN = "sandbox-token"
API_VERSION = "v25.0"
#: The tap's default statuses minus nothing: the data sets hold only statuses every client reads.
NO_HIDDEN_ADS = ["--archived-ratio", "0", "--deleted-ratio", "0"]


# -- processes --------------------------------------------------------------------------------------------


@dataclass
class Measured:
    """What one client process cost."""

    wall: float
    cpu: float
    rss_mb: float
    returncode: int
    log: str


def run_measured(args: Sequence[str], workdir: Path, env: dict[str, str] | None = None) -> Measured:
    """Run a process with stdout to /dev/null; wall time, CPU seconds and peak RSS from ``wait4``."""
    log_path, cost_path = workdir / "client.log", workdir / "client-cost.json"
    launcher = [PYTHON, str(ROOT / "benchmarks/rusage.py"), str(cost_path)]  # see rusage.py: a clean peak RSS
    with open(os.devnull, "wb") as devnull, log_path.open("wb") as log:
        proc = subprocess.run([*launcher, *args], stdout=devnull, stderr=log, env={**os.environ, **(env or {})},
                              cwd=ROOT, check=False)  # fmt: skip
    text = log_path.read_text(errors="replace")
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(args[:4])} ... failed with exit status {proc.returncode}:\n{text[-3000:]}")
    cost = json.loads(cost_path.read_text())
    return Measured(cost["wall"], cost["cpu"], cost["rss_mb"], proc.returncode, text)


class Sandbox:
    """``python -m tap_meta_ads_sandbox`` as its own process on a free port."""

    def __init__(self, accounts: dict[str, int], extra: Sequence[str] = ()) -> None:
        spec = ",".join(f"{a}:{n}" for a, n in accounts.items())
        args = [PYTHON, "-m", "tap_meta_ads_sandbox", "--port", "0", "--accounts", spec, *NO_HIDDEN_ADS, *extra]
        self.accounts = accounts
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, text=True, cwd=ROOT)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().strip()
        match = re.search(r"http://\S+", line)
        if not match:
            self.stop()
            raise SystemExit(f"the sandbox did not start: {line!r}")
        self.url = match.group(0)

    def stats(self) -> dict[str, Any]:
        doc: dict[str, Any] = requests.get(f"{self.url}/_sandbox/stats", timeout=60).json()
        doc.pop("log", None)
        return doc

    def reset(self) -> None:
        requests.post(f"{self.url}/_sandbox/stats/reset", timeout=60).raise_for_status()

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=30)


@contextmanager
def sandbox(accounts: dict[str, int], extra: Sequence[str] = ()) -> Iterator[Sandbox]:
    server = Sandbox(accounts, extra)
    try:
        yield server
    finally:
        server.stop()


# -- the tap ----------------------------------------------------------------------------------------------


def tap_settings() -> dict[str, Any]:
    """The tap's settings schema (the runner lives in the tap's virtualenv)."""
    from tap_meta_ads.tap import TapMetaAds  # noqa: PLC0415 - only the runner's own process needs it

    return dict(TapMetaAds.config_jsonschema["properties"])


def concurrency() -> int:
    """How many calls the tap has in flight at once by default (``max_concurrent_requests``)."""
    setting = tap_settings().get("max_concurrent_requests")
    return int(setting.get("default", 1)) if setting else 1


def tap_config(url: str, accounts: Sequence[str], **overrides: Any) -> dict[str, Any]:
    """The tap's config for a measurement of extraction: without the token check, whose calls (the token, then
    each account's node) are no part of what these measure and would count as calls and served rows."""
    return {"access_token": TOKEN, "account_ids": list(accounts), "api_url": url, "check_token": False, **overrides}


class Tap:
    """Runs ``python -m tap_meta_ads`` with one stream selected."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self._catalogs: dict[str, Path] = {}

    def stream_names(self, url: str) -> list[str]:
        return [s["tap_stream_id"] for s in self._discover(url)["streams"]]

    def _discover(self, url: str) -> dict[str, Any]:
        config = self._write("discover-config.json", tap_config(url, ["1"]))
        out = subprocess.run(
            [PYTHON, "-m", "tap_meta_ads", "--config", str(config), "--discover"],
            capture_output=True,
            text=True,
            check=True,
            cwd=ROOT,
        )
        catalog: dict[str, Any] = json.loads(out.stdout)
        return catalog

    def catalog(self, url: str, stream: str, properties: Sequence[str] | None = None) -> Path:
        """A catalog with only ``stream`` selected: every property, as by default, or only ``properties``."""
        name = f"{stream}-{len(properties)}" if properties else stream
        if name not in self._catalogs:
            catalog = self._discover(url)
            for entry in catalog["streams"]:
                for meta in entry["metadata"]:
                    crumb = meta["breadcrumb"]
                    if crumb == []:
                        meta["metadata"]["selected"] = entry["tap_stream_id"] == stream
                    elif properties is not None and len(crumb) == 2:
                        meta["metadata"]["selected"] = crumb[1] in properties
            self._catalogs[name] = self._write(f"catalog-{name}.json", catalog)
        return self._catalogs[name]

    def run(self, url: str, stream: str, config: dict[str, Any], properties: Sequence[str] | None = None) -> Measured:
        args = [PYTHON, "-m", "tap_meta_ads", "--config", str(self._write("config.json", config))]
        args += ["--catalog", str(self.catalog(url, stream, properties))]
        return run_measured(args, self.workdir)

    def _write(self, name: str, doc: object) -> Path:
        path = self.workdir / name
        path.write_text(json.dumps(doc))
        return path


def schema_fields(stream: str) -> list[str]:
    """Every property of a stream's schema, in schema order: what the tap asks for by default."""
    schema = json.loads((ROOT / f"tap_meta_ads/schemas/{stream}.json").read_text())
    return list(schema["properties"])


def default_statuses() -> str:
    from tap_meta_ads.tap import DEFAULT_EFFECTIVE_STATUSES  # noqa: PLC0415 - as above

    return json.dumps(list(DEFAULT_EFFECTIVE_STATUSES))


#: The columns tap-facebook 0.9.0 asks for on ``ads`` (``tap_facebook.streams.ads.AdsStream.columns``).
TAP_FACEBOOK_COLUMNS = (
    "id",
    "account_id",
    "adset_id",
    "campaign_id",
    "bid_type",
    "bid_info",
    "status",
    "updated_time",
    "created_time",
    "name",
    "effective_status",
    "last_updated_by_app_id",
    "source_ad_id",
    "creative",
    "tracking_specs",
    "conversion_specs",
    "recommendations",
    "configured_status",
    "conversion_domain",
    "bid_amount",
)


# -- the table --------------------------------------------------------------------------------------------


@dataclass
class Row:
    measure: str
    ours: str
    reference: str
    ratio: str
    target: str
    met: bool | None
    detail: str = ""


@dataclass
class Report:
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, row: Row) -> None:
        self.rows.append(row)
        mark = {True: "yes", False: "NO", None: "-"}[row.met]
        line = f"  {row.measure}: {row.ours} vs {row.reference} -> {row.ratio} (target {row.target}: {mark})"
        print(line, flush=True)
        if row.detail:
            print(f"    {row.detail}", flush=True)

    def markdown(self, command: str, elapsed: float) -> str:
        head = [
            f"Measured {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC with `{command}` "
            f"({elapsed / 60:.0f} min) on {os.cpu_count()} cores, Python {platform.python_version()}; sandbox and "
            "client as separate processes on the same machine, client output to /dev/null.",
            "",
            "| measure | tap-meta-ads | reference | ratio | target | met |",
            "|---|---|---|---|---|---|",
        ]
        mark = {True: "yes", False: "**no**", None: "-"}
        body = [
            f"| {r.measure} | {r.ours} | {r.reference} | {r.ratio} | {r.target} | {mark[r.met]} |" for r in self.rows
        ]
        details = [f"- {r.measure}: {r.detail}" for r in self.rows if r.detail]
        return "\n".join([*head, *body, "", *details, *(f"- {n}" for n in self.notes), ""])


# -- the six measurements ---------------------------------------------------------------------------------


@dataclass
class Sizes:
    throughput_ads: int = 60_000
    throughput_page: int = 500
    insights_ads: int = 1000
    insights_days: int = 28
    rounds: int = 3
    facebook_ads: int = 50_000
    calls_ads: tuple[int, ...] = (12_345, 9_876)
    budget_ads: int = 20_000  # 200 calls of 100: the last window holds 20 of its 60 calls
    latency_accounts: int = 20
    latency_pages: int = 10
    memory_ads: tuple[int, int] = (100_000, 1_000_000)
    memory_page: int = 500

    @classmethod
    def quick(cls) -> Sizes:
        return cls(
            throughput_ads=6_000,
            insights_ads=50,
            insights_days=7,
            rounds=1,
            facebook_ads=2_000,
            calls_ads=(1_234, 987),
            budget_ads=8_000,
            latency_accounts=8,
            latency_pages=3,
            memory_ads=(10_000, 50_000),
        )


def raw_loop_args(url: str, accounts: Sequence[str], fields: Sequence[str], limit: int) -> list[str]:
    """``benchmarks/raw_loop.py`` reading the ``ads`` of these accounts as the tap asks for them."""
    return [
        PYTHON,
        str(ROOT / "benchmarks/raw_loop.py"),
        "--url",
        url,
        "--accounts",
        ",".join(accounts),
        "--fields",
        ",".join(fields),
        "--limit",
        str(limit),
        "--effective-statuses",
        default_statuses(),
    ]


def throughput(report: Report, tap: Tap, sizes: Sizes) -> None:
    half = sizes.throughput_ads // 2
    accounts = {"1001": half, "1002": sizes.throughput_ads - half}
    with sandbox(accounts) as sb:
        streams = tap.stream_names(sb.url)
        raw_args = raw_loop_args(sb.url, list(accounts), schema_fields("ads"), sizes.throughput_page)
        config = tap_config(sb.url, list(accounts), page_size=sizes.throughput_page)
        taps: list[tuple[Measured, int]] = []
        raws: list[tuple[Measured, int]] = []
        for _ in range(sizes.rounds):  # alternating, so that both see the same machine load
            sb.reset()
            raws.append((run_measured(raw_args, tap.workdir), int(sb.stats()["records_served"])))
            sb.reset()
            taps.append((tap.run(sb.url, "ads", config), int(sb.stats()["records_served"])))
    _throughput_row(
        report,
        "ads",
        taps,
        raws,
        f"{sizes.throughput_ads:,} ads in 2 accounts, pages of {sizes.throughput_page}, every field; "
        f"median of {sizes.rounds} alternating rounds; CPU includes process start-up",
    )
    if "ads_insights" in streams:
        insights_throughput(report, tap, sizes)
    else:
        report.notes.append("`ads_insights`: the tap has no such stream yet; not measured")
    startup = [run_measured([PYTHON, "-c", "import tap_meta_ads.tap"], tap.workdir) for _ in range(sizes.rounds)]
    report.notes.append(
        f"start-up, counted in every CPU figure of the tap: importing it (the SDK mostly) takes "
        f"{statistics.median(m.cpu for m in startup):.2f} s of CPU"
    )


def insights_throughput(report: Report, tap: Tap, sizes: Sizes) -> None:
    """``ads_insights`` (level ad, daily rows, the tap's default report) against the same report runs, replayed.

    The tap runs first; the sandbox's log of its ``POST /act_{id}/insights`` calls gives the raw loop the
    very same report runs (fields, breakdowns, windows), which it submits, polls and pages one by one.
    Compared per CPU-second: the wall time of both is mostly Meta's (the sandbox's) report-run latency.
    """
    accounts = {"1001": sizes.insights_ads, "1002": sizes.insights_ads}
    start = datetime.datetime.now(datetime.timezone.utc).date() - datetime.timedelta(days=sizes.insights_days)
    with sandbox(accounts) as sb:
        config = tap_config(sb.url, list(accounts), start_date=f"{start}T00:00:00Z", insights_poll_interval_seconds=0.2)
        sb.reset()
        taps = [(tap.run(sb.url, "ads_insights", config), int(sb.stats()["records_served"]))]
        log = requests.get(f"{sb.url}/_sandbox/stats", timeout=60).json()["log"]
        limit = next(e["params"].get("limit", "100") for e in log if e["route"] == "report_run_insights")
        runs = [
            {"account": e["account_id"], "params": e["params"], "limit": limit}
            for e in log
            if e["route"] == "insights_submit" and e["outcome"] == "ok"
        ]
        runs_path = tap.workdir / "report-runs.json"
        runs_path.write_text(json.dumps(runs))
        raw_args = [PYTHON, str(ROOT / "benchmarks/raw_loop.py"), "--url", sb.url, "--report-runs", str(runs_path)]
        raws: list[tuple[Measured, int]] = []
        for n in range(sizes.rounds):
            sb.reset()
            raws.append((run_measured(raw_args, tap.workdir), int(sb.stats()["records_served"])))
            if n:  # the first tap run is above
                sb.reset()
                taps.append((tap.run(sb.url, "ads_insights", config), int(sb.stats()["records_served"])))
    _throughput_row(
        report,
        "ads_insights",
        taps,
        raws,
        f"{sizes.insights_ads} ads in each of 2 accounts, {sizes.insights_days} days of daily ad rows, the tap's "
        f"default report ({len(runs)} report runs, pages of {limit}, every field: about 70 metric values a row); "
        f"median of {sizes.rounds} rounds",
    )


def _throughput_row(
    report: Report, stream: str, taps: list[tuple[Measured, int]], raws: list[tuple[Measured, int]], detail: str
) -> None:
    ours = _median_rates(taps)
    theirs = _median_rates(raws)
    ratio = ours[0] / theirs[0]
    report.add(
        Row(
            f"`{stream}` records per CPU-second (wall-second)",
            f"{ours[0]:,.0f} ({ours[1]:,.0f})",
            f"{theirs[0]:,.0f} ({theirs[1]:,.0f}) raw requests+json loop",
            f"{ratio:.2f}x CPU",
            ">= 0.8x (stretch 1.0x)",
            ratio >= 0.8,
            detail,
        )
    )


def _median_rates(runs: list[tuple[Measured, int]]) -> tuple[float, float]:
    return (
        statistics.median(records / m.cpu for m, records in runs),
        statistics.median(records / m.wall for m, records in runs),
    )


def against_tap_facebook(report: Report, tap: Tap, sizes: Sizes) -> None:
    if not TAP_FACEBOOK_PYTHON.exists():
        report.notes.append("tap-facebook: not installed (run `bash benchmarks/run`); not measured")
        return
    page = int(tap_settings()["page_size"]["default"])
    with sandbox({"1001": sizes.facebook_ads}) as sb:
        config = tap.workdir / "facebook-config.json"
        config.write_text(
            json.dumps(
                {
                    "access_token": TOKEN,
                    "account_id": "1001",
                    "api_version": API_VERSION,
                    "start_date": "2000-01-01T00:00:00Z",
                }
            )
        )
        script = ROOT / "benchmarks/tap_facebook_launcher.py"
        launcher = [str(TAP_FACEBOOK_PYTHON), str(script), "--config", str(config)]
        env = {"TAP_FACEBOOK_API_URL": sb.url}
        discovered = subprocess.run(
            [*launcher, "--discover"], capture_output=True, env={**os.environ, **env}, cwd=ROOT, check=True
        )
        catalog = json.loads(discovered.stdout)
        for entry in catalog["streams"]:
            for meta in entry["metadata"]:
                if meta["breadcrumb"] == []:
                    meta["metadata"]["selected"] = entry["tap_stream_id"] == "ads"
        catalog_path = tap.workdir / "facebook-catalog.json"
        catalog_path.write_text(json.dumps(catalog))
        runs: dict[str, list[tuple[Measured, dict[str, Any]]]] = {"theirs": [], "ours": [], "raw": []}
        clients: dict[str, Callable[[], Measured]] = {
            "theirs": lambda: run_measured([*launcher, "--catalog", str(catalog_path)], tap.workdir, env),
            "ours": lambda: tap.run(sb.url, "ads", tap_config(sb.url, ["1001"]), TAP_FACEBOOK_COLUMNS),
            "raw": lambda: run_measured(raw_loop_args(sb.url, ["1001"], TAP_FACEBOOK_COLUMNS, page), tap.workdir),
        }
        for _ in range(sizes.rounds):  # alternating, so that each sees the same machine load
            for name, client in clients.items():
                sb.reset()
                measured = client()
                runs[name].append((measured, sb.stats()))
        sb.reset()
        ours_all = tap.run(sb.url, "ads", tap_config(sb.url, ["1001"]))
        all_rate = sb.stats()["records_served"] / ours_all.wall

    def median_rate(name: str) -> float:
        return statistics.median(stats["records_served"] / m.wall for m, stats in runs[name])

    def cpu(name: str) -> float:
        return statistics.median(m.cpu for m, _ in runs[name])

    their_rate, our_rate, raw_rate = median_rate("theirs"), median_rate("ours"), median_rate("raw")
    our_rates = sorted(stats["records_served"] / m.wall for m, stats in runs["ours"])
    spread = [
        f"{o[1]['records_served'] / o[0].wall / (t[1]['records_served'] / t[0].wall):.1f}x"
        for o, t in zip(runs["ours"], runs["theirs"], strict=True)
    ]
    report.add(
        Row(
            "`ads` records per wall-second vs MeltanoLabs tap-facebook 0.9.0",
            f"{our_rate:,.0f}",
            f"{their_rate:,.0f}",
            f"{our_rate / their_rate:.1f}x",
            ">= 5x",
            our_rate / their_rate >= 5,
            f"{sizes.facebook_ads:,} ads in one account, the same 20 columns (tap-facebook's), each tap with its own "
            f"page size and writer: tap-meta-ads {runs['ours'][0][1]['requests']} calls of {page}, CPU "
            f"{cpu('ours'):.1f} s; tap-facebook {runs['theirs'][0][1]['requests']} calls of 25, CPU "
            f"{cpu('theirs'):.1f} s; median of {sizes.rounds} alternating rounds (round by round: "
            f"{', '.join(spread)}; tap-meta-ads {our_rates[0]:,.0f}-{our_rates[-1]:,.0f} records per wall-second). "
            f"tap-meta-ads with every field (39): {all_rate:,.0f} records per wall-second "
            f"({all_rate / their_rate:.1f}x). One account's chain of pages with requests: the plain requests+json "
            f"loop over the same pages ({page} a page, the same columns, nothing else) reads {raw_rate:,.0f} records "
            f"per wall-second ({raw_rate / their_rate:.1f}x tap-facebook; tap-meta-ads at {our_rate / raw_rate:.2f}x "
            "of it)",
        )
    )


def calls(report: Report, tap: Tap, sizes: Sizes) -> None:
    accounts = {str(1001 + i): n for i, n in enumerate(sizes.calls_ads)}
    page = int(tap_settings()["page_size"]["default"])
    with sandbox(accounts) as sb:
        sb.reset()
        tap.run(sb.url, "ads", tap_config(sb.url, list(accounts)))
        stats = sb.stats()
    records = int(stats["records_served"])
    minimum = sum(max(1, math.ceil(n / page)) for n in accounts.values())
    made = int(stats["requests"])
    report.add(
        Row(
            "calls per 1,000 records",
            f"{1000 * made / records:.2f}",
            f"{1000 * minimum / records:.2f} minimum",
            f"{made / minimum:.3f}x",
            "<= 1.05x",
            made <= 1.05 * minimum,
            f"{records:,} ads in {len(accounts)} accounts, default page size {page}: {made} calls, minimum {minimum}",
        )
    )


def budget_bound(report: Report, tap: Tap, sizes: Sizes) -> None:
    budget, window = 60, 10.0
    threshold = float(tap_settings()["throttle_threshold_pct"]["default"]) / 100
    page = int(tap_settings()["page_size"]["default"])
    extra = ["--rate-window-seconds", str(window), "--account-budget", str(budget)]
    with sandbox({"1001": sizes.budget_ads}, extra) as sb:
        sb.reset()
        ours = tap.run(sb.url, "ads", tap_config(sb.url, ["1001"]))
        stats = sb.stats()
    throttled = int(stats.get("throttled", 0))
    made = int(stats["requests"]) - throttled
    minimum = ((made - 1) // budget) * window
    ratio = ours.wall / minimum if minimum else float("nan")
    report.add(
        Row(
            "budget-bound wall time",
            f"{ours.wall:.1f} s, {throttled} throttled",
            f"{minimum:.1f} s minimum",
            f"{ratio:.2f}x",
            "<= 1.1x, 0 throttled",
            ratio <= 1.1 and throttled == 0,
            f"{sizes.budget_ads:,} ads in one account, pages of {page}: {made} calls; budget {budget} calls per "
            f"{window:.0f} s (sliding), pacing threshold {threshold:.0%}; the minimum: call i (from 0) cannot come "
            f"before floor(i / {budget}) x {window:.0f} s without a throttle answer",
        )
    )


def latency_bound(report: Report, tap: Tap, sizes: Sizes) -> None:
    latency = 0.2
    page = int(tap_settings()["page_size"]["default"])
    accounts = {str(2001 + i): page * sizes.latency_pages for i in range(sizes.latency_accounts)}
    width = concurrency()
    with sandbox(accounts, ["--latency", str(latency)]) as sb:
        sb.reset()
        ours = tap.run(sb.url, "ads", tap_config(sb.url, list(accounts)))
        stats = sb.stats()
    made = int(stats["requests"])
    chain = max(int(n) for n in stats["by_account"].values())
    # the least time any client with the tap's limit takes: its calls spread over the limit, and no account's
    # pages faster than one after another (each page's cursor is in the page before it)
    minimum = max(made * latency / width, chain * latency)
    ratio = ours.wall / minimum
    report.add(
        Row(
            "latency-bound wall time",
            f"{ours.wall:.1f} s",
            f"{minimum:.1f} s = max(calls x latency / calls in flight, longest chain x latency)",
            f"{ratio:.2f}x",
            "<= 1.25x",
            ratio <= 1.25,
            f"{sizes.latency_accounts} accounts x {sizes.latency_pages} pages of {page}, {latency} s added to each "
            f"answer: {made} calls, up to {width} in flight, the longest account {chain} calls",
        )
    )


def memory(report: Report, tap: Tap, sizes: Sizes) -> None:
    peaks: list[float] = []
    with sandbox({"1001": 0}) as sb:  # for reference: start-up and one empty page
        idle = tap.run(sb.url, "ads", tap_config(sb.url, ["1001"], page_size=sizes.memory_page)).rss_mb
    for ads in sizes.memory_ads:
        with sandbox({"1001": ads}) as sb:
            measured = tap.run(sb.url, "ads", tap_config(sb.url, ["1001"], page_size=sizes.memory_page))
            served = int(sb.stats()["records_served"])
        if served != ads:
            raise SystemExit(f"memory run: the sandbox served {served} ads, expected {ads}")
        peaks.append(measured.rss_mb)
    small, large = sizes.memory_ads
    growth = peaks[1] / peaks[0]
    report.add(
        Row(
            f"peak RSS at {large:,} ads",
            f"{peaks[1]:.0f} MB",
            f"{peaks[0]:.0f} MB at {small:,} ads",
            f"{growth:.2f}x",
            "< 120 MB and <= 1.10x",
            peaks[1] < 120 and growth <= 1.10,
            f"one account, pages of {sizes.memory_page}, every field; for reference, the same run of an account "
            f"with no ads (start-up, imports and one empty page) peaks at {idle:.0f} MB",
        )
    )


MEASUREMENTS: dict[str, Callable[[Report, Tap, Sizes], None]] = {
    "throughput": throughput,
    "tap-facebook": against_tap_facebook,
    "calls": calls,
    "budget": budget_bound,
    "latency": latency_bound,
    "memory": memory,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small data, one round (a smoke run)")
    parser.add_argument("--only", default=",".join(MEASUREMENTS), help="comma-separated: " + ", ".join(MEASUREMENTS))
    parser.add_argument("--output", type=Path, help=f"where to write the table (default: {RESULTS.name} for full runs)")
    args = parser.parse_args()
    chosen = [name.strip() for name in args.only.split(",") if name.strip()]
    unknown = set(chosen) - set(MEASUREMENTS)
    if unknown:
        parser.error(f"unknown measurement(s): {', '.join(sorted(unknown))}")
    sizes = Sizes.quick() if args.quick else Sizes()
    report = Report()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="tap-meta-ads-bench-") as tmp:
        tap = Tap(Path(tmp))
        for name in chosen:
            print(f"[bench] {name}", flush=True)
            MEASUREMENTS[name](report, tap, sizes)
    command = "bash benchmarks/run" + (" --quick" if args.quick else "")
    if chosen != list(MEASUREMENTS):
        command += f" --only {args.only}"
    text = report.markdown(command, time.perf_counter() - started)
    print(f"\n{text}")
    output = args.output or (RESULTS if chosen == list(MEASUREMENTS) and not args.quick else None)
    if output:
        # the file's later sections are other benchmarks' (``bench_accounts.py`` writes its own): they stay
        old = output.read_text() if output.exists() else ""
        rest = old[old.index("\n## ") :] if "\n## " in old else ""
        output.write_text(text.rstrip() + "\n" + rest)
        print(f"[bench] written to {output}")


if __name__ == "__main__":
    main()
