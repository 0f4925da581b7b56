"""``tap-meta-ads-sandbox``: run the sandbox in the foreground.

Every option has an environment twin (``--account-budget`` <- ``SANDBOX_ACCOUNT_BUDGET``), so the same
sandbox can be started from a shell, a Meltano plugin or a container without editing a command line. Bad
input ends with exit status 2 and one line on stderr, never a traceback.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import sys
from collections.abc import Callable, Sequence
from types import FrameType
from typing import NoReturn

from tap_meta_ads_sandbox.config import MAX_LIMIT, SandboxConfig
from tap_meta_ads_sandbox.faults import KIND_HELP, FaultPlan
from tap_meta_ads_sandbox.server import SandboxServer

DEFAULT_PORT = 8765

EPILOG = f"""\
fault SPEC grammar (--fault, SANDBOX_FAULTS, POST /_sandbox/faults):
  KIND@N[,M,A-B,after:K]  exact schedule: the N-th, M-th, A-th..B-th Graph request, and
                          every request after the K-th (counted from 1 since the plan was set;
                          control requests do not count), e.g. http503@2,5  token_expired@after:40
  KIND~P[*K]              each Graph request with probability P (0 < P <= 1) from a RNG seeded
                          with --fault-seed, at most K times, e.g. reset~0.05  throttle:17~0.1*3
  act_ID:RULE             either, on requests to ad account ID only, counted per account,
                          e.g. act_1005:permission@after:0 (every request to act_1005 fails)
  The first matching rule of the plan wins.
  KIND is one of: {KIND_HELP}

environment: every option X-Y can be set as SANDBOX_X_Y (e.g. SANDBOX_ACCOUNT_BUDGET=300);
SANDBOX_TOKENS and SANDBOX_FAULTS take several values separated by ';' (tokens also by ',').
The command line wins over the environment.

control endpoints (JSON, no auth): GET /_sandbox/stats, POST /_sandbox/stats/reset,
POST /_sandbox/mutate, GET|POST /_sandbox/clock, POST /_sandbox/faults, GET|POST /_sandbox/config,
GET /_sandbox/truth/act_ID/ads, GET /_sandbox/health.
"""


def _env(name: str, default: str | None = None) -> str | None:
    return os.environ.get(f"SANDBOX_{name}", default)


def _env_list(name: str, separators: str) -> list[str]:
    raw = os.environ.get(f"SANDBOX_{name}", "")
    return [part.strip() for part in re.split(f"[{re.escape(separators)}]", raw) if part.strip()]


def _env_flag(name: str) -> bool:
    return os.environ.get(f"SANDBOX_{name}", "").strip().lower() in ("1", "true", "yes", "on")


def parse_accounts(text: str) -> dict[str, int]:
    """``1001:3000,1002:2500`` -> ``{"1001": 3000, "1002": 2500}`` (``act_`` prefixes tolerated)."""
    accounts: dict[str, int] = {}
    for raw in text.split(","):
        item = raw.strip()
        acct, sep, count = item.partition(":")
        acct = acct.removeprefix("act_")
        if not sep or not acct.isdigit() or not count.isdigit():
            raise argparse.ArgumentTypeError(f"expected ACCOUNT:ADS[,ACCOUNT:ADS...], got {item!r}")
        accounts[acct] = int(count)
    return accounts


def parse_time_zones(text: str) -> dict[str, str]:
    """``1001=Pacific/Kiritimati,1002=Pacific/Pago_Pago`` -> ``{"1001": "Pacific/Kiritimati", ...}``."""
    zones: dict[str, str] = {}
    for raw in text.split(","):
        item = raw.strip()
        if not item:
            continue
        acct, sep, zone = item.partition("=")
        acct = acct.strip().removeprefix("act_")
        if not sep or not acct.isdigit() or not zone.strip():
            raise argparse.ArgumentTypeError(f"expected ACCOUNT=ZONE[,ACCOUNT=ZONE...], got {item!r}")
        zones[acct] = zone.strip()
    return zones


def _optional(convert: Callable[[str], object]) -> Callable[[str], object]:
    """Accept "" / "none" as unset, so an environment variable can switch a limit off."""

    def parse(text: str) -> object:
        return None if text.strip().lower() in ("", "none", "off") else convert(text)

    parse.__name__ = getattr(convert, "__name__", "value")
    return parse


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line (no usage block), exit status 2."""

    def error(self, message: str) -> NoReturn:
        """Print ``prog: error: message`` and exit 2."""
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser; defaults come from the environment."""
    p = _Parser(
        prog="tap-meta-ads-sandbox",
        description="A local Meta Graph API (Marketing API) sandbox: deterministic ad accounts with Meta's "
        "paging, auth, errors, usage headers, rate limits and faults on demand. Point the tap's api_url at "
        "the printed URL.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    net = p.add_argument_group("server")
    net.add_argument("--host", default=_env("HOST", "127.0.0.1"), help="interface to bind (default %(default)s)")
    net.add_argument(
        "--port",
        type=int,
        default=_env("PORT", str(DEFAULT_PORT)),
        help="port; 0 picks a free one (default %(default)s)",
    )
    net.add_argument("--port-file", default=_env("PORT_FILE"), help="write the bound port to this file")
    net.add_argument(
        "--latency",
        type=float,
        default=_env("LATENCY", "0"),
        help="Meta's time to answer: each Graph answer leaves this many seconds after its request (default 0)",
    )
    net.add_argument(
        "--gzip",
        action="store_true",
        default=_env_flag("GZIP"),
        help="gzip answers for clients that accept it, as Meta does (default off)",
    )
    data = p.add_argument_group("data")
    data.add_argument("--seed", type=int, default=_env("SEED", "42"), help="data seed (default %(default)s)")
    data.add_argument(
        "--incomplete-creative-every",
        type=int,
        default=_env("INCOMPLETE_CREATIVE_EVERY", "0"),
        help="every N-th creative is 'Ad Creative Is Incomplete' (100/2446289) for any request beyond its id "
        "(default 0: none)",
    )
    data.add_argument(
        "--heavy-rule-every",
        type=int,
        default=_env("HEAVY_RULE_EVERY", "0"),
        help="every N-th custom audience's rule fails any page asking for it as too much data (default 0: none)",
    )
    data.add_argument(
        "--asset-url-ttl-seconds",
        type=float,
        default=_env("ASSET_URL_TTL_SECONDS", str(20 * 365 * 86400)),
        help="image and thumbnail URLs expire (HTTP 403) this long after the object last changed (default %(default)s)",
    )
    data.add_argument(
        "--accounts",
        type=parse_accounts,
        default=_env("ACCOUNTS", "1001:3000,1002:2500"),
        help="ad accounts and their number of ads, ACCOUNT:ADS[,...] (default %(default)s)",
    )
    data.add_argument(
        "--time-zones",
        type=parse_time_zones,
        default=_env("TIME_ZONES", ""),
        help="accounts' time zones, ACCOUNT=ZONE[,...] (zones: Pacific/Kiritimati UTC+14, Pacific/Pago_Pago "
        "UTC-11, America/Phoenix, Pacific/Pitcairn, Atlantic/Reykjavik, Africa/Lagos, Asia/Kolkata); "
        "default: one by a hash of each account",
    )
    data.add_argument(
        "--archived-ratio", type=float, default=_env("ARCHIVED_RATIO", "0.1"), help="share of ARCHIVED ads (0.1)"
    )
    data.add_argument(
        "--deleted-ratio", type=float, default=_env("DELETED_RATIO", "0.05"), help="share of DELETED ads (0.05)"
    )
    auth = p.add_argument_group("auth")
    auth.add_argument(
        "--token",
        action="append",
        default=None,
        help="accepted access token; repeatable (default: sandbox-token; env SANDBOX_TOKENS)",
    )
    auth.add_argument(
        "--app-secret", default=_env("APP_SECRET"), help="require appsecret_proof = HMAC-SHA256(secret, token)"
    )
    paging = p.add_argument_group("paging")
    paging.add_argument(
        "--page-budget-bytes",
        type=_optional(int),
        default=_env("PAGE_BUDGET_BYTES"),
        help='pages estimated larger fail with HTTP 500 code 1 "Please reduce the amount of data..." (default off)',
    )
    paging.add_argument(
        "--empty-page-every",
        type=int,
        default=_env("EMPTY_PAGE_EVERY", "0"),
        help="serve every N-th page of a run empty but with paging.next (default 0 = never)",
    )
    paging.add_argument(
        "--max-limit",
        type=int,
        default=_env("MAX_LIMIT", str(MAX_LIMIT)),
        help="largest page size served; larger limits are capped silently (default %(default)s)",
    )
    paging.add_argument(
        "--cursor-ttl-seconds",
        type=_optional(float),
        default=_env("CURSOR_TTL_SECONDS"),
        help="cursors older than this (virtual clock) fail with code 2642/2642001 (default off)",
    )
    rate = p.add_argument_group("rate limits")
    rate.add_argument(
        "--rate-window-seconds",
        type=float,
        default=_env("RATE_WINDOW_SECONDS", "3600"),
        help="sliding window of the call budgets (default %(default)s)",
    )
    rate.add_argument(
        "--account-budget",
        type=int,
        default=_env("ACCOUNT_BUDGET", "100000"),
        help="ads_management calls per account per window (default %(default)s)",
    )
    rate.add_argument(
        "--app-budget",
        type=int,
        default=_env("APP_BUDGET", "1000000"),
        help="calls per app per window; over it: code 4 (default %(default)s)",
    )
    rate.add_argument(
        "--throttle-code",
        default=_env("THROTTLE_CODE", "17/2446079"),
        help="error over the account budget: 17/2446079, 80004/2446079, 4, 613, 17 or 32 (default %(default)s)",
    )
    rate.add_argument(
        "--no-usage-headers",
        action="store_true",
        default=_env_flag("NO_USAGE_HEADERS"),
        help="withhold usage headers on successful answers (throttled answers still carry them)",
    )
    faults = p.add_argument_group("faults")
    faults.add_argument(
        "--fault",
        action="append",
        default=None,
        metavar="SPEC",
        help="inject a fault, see the grammar below; repeatable (env SANDBOX_FAULTS, ';'-separated)",
    )
    faults.add_argument(
        "--fault-seed", type=int, default=_env("FAULT_SEED", "0"), help="seed of probability faults (default 0)"
    )
    faults.add_argument(
        "--slow-seconds",
        type=float,
        default=_env("SLOW_SECONDS", "30"),
        help="how long a 'slow' fault waits before answering (default %(default)s)",
    )
    faults.add_argument(
        "--retry-after-seconds",
        type=int,
        default=_env("RETRY_AFTER_SECONDS", "1"),
        help="Retry-After of an 'http429' fault (default %(default)s)",
    )
    return p


def config_from_args(args: argparse.Namespace) -> SandboxConfig:
    """Turn parsed options into a checked config; ValueError/TypeError with a one-line reason."""
    tokens = args.token or _env_list("TOKENS", ";,") or ["sandbox-token"]
    specs = args.fault if args.fault is not None else _env_list("FAULTS", ";")
    plan = FaultPlan(
        tuple(specs),
        seed=args.fault_seed,
        slow_seconds=args.slow_seconds,
        retry_after_seconds=args.retry_after_seconds,
    )
    return SandboxConfig(
        seed=args.seed,
        accounts=args.accounts,
        time_zones=args.time_zones,
        tokens=tuple(tokens),
        app_secret=args.app_secret or None,
        archived_ratio=args.archived_ratio,
        deleted_ratio=args.deleted_ratio,
        page_budget_bytes=args.page_budget_bytes,
        empty_page_every=args.empty_page_every,
        rate_window_seconds=args.rate_window_seconds,
        account_budget=args.account_budget,
        app_budget=args.app_budget,
        throttle_code=args.throttle_code,
        usage_headers=not args.no_usage_headers,
        faults=plan,
        latency_seconds=args.latency,
        cursor_ttl_seconds=args.cursor_ttl_seconds,
        max_limit=args.max_limit,
        gzip=args.gzip,
        incomplete_creative_every=args.incomplete_creative_every,
        heavy_rule_every=args.heavy_rule_every,
        asset_url_ttl_seconds=args.asset_url_ttl_seconds,
    )


def _stop(signum: int, frame: FrameType | None) -> None:
    """SIGTERM ends the server like Ctrl-C: the socket is closed and the exit status is 0."""
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    """Parse options, start the server, print ``sandbox listening on URL`` and serve until stopped."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        config = config_from_args(args)
    except (ValueError, TypeError) as exc:
        parser.error(str(exc))
    try:
        server = SandboxServer(config, host=args.host, port=args.port)
    except OSError as exc:
        parser.exit(1, f"tap-meta-ads-sandbox: cannot listen on {args.host}:{args.port}: {exc.strerror or exc}\n")
    if args.port_file:
        with open(args.port_file, "w", encoding="utf-8") as fh:
            fh.write(f"{server.port}\n")
    signal.signal(signal.SIGTERM, _stop)
    print(f"sandbox listening on {server.url}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
