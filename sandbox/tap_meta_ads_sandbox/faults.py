"""Faults on demand: which Graph request goes wrong, and how.

A fault plan is a list of rules, each a SPEC string::

    KIND@N[,M,A-B,after:K]   exact schedule: the N-th, M-th, A-th..B-th, and every request after the K-th
    KIND~P[*K]               each request with probability P (0 < P <= 1), drawn from a seeded RNG,
                             at most K times when ``*K`` is given
    act_ID:RULE              either of the above, on requests to ad account ID only (its edges and node)
    batch:RULE               either of the above, on batch requests only (the batch call itself, not its
                             entries): a fault on it fails the whole batch

Requests are counted from 1, from the moment the plan was installed, and only Graph API requests count
(control endpoints do not); a rule for one ad account counts that account's requests only, so its schedule
holds however requests to several accounts interleave (e.g. shards of accounts read in parallel), and a
``batch:`` rule counts batch calls only. When
several rules hit the same request the first one in the plan wins; every probability rule draws on every
request anyway, so one rule's draws never shift another's.

Why a grammar of strings: the same plan is set from the command line, the environment, the control
endpoint and Python, and a test or a bug report can quote it in one line.
"""

from __future__ import annotations

import random
import re
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from tap_meta_ads_sandbox.errors import GraphError, expired_cursor, reduce_data
from tap_meta_ads_sandbox.usage import SUBCODE_USER_TEXT, THROTTLE_MESSAGES

# Throttle codes whose default subcode is 2446079 (Meta's "too many calls to this ad account").
_SUBCODE_2446079_BY_DEFAULT = frozenset({80000, 80003, 80004})

# A fault on the real answer's content: the first row of a page gets ``"spend": "n/a"``, a metric that is not a
# number (a client must refuse it in one line, naming the field, and write nothing of a report run that has it).
BAD_NUMBER = "bad_number"

# Faults that are not a JSON error body: the server acts them out on the socket.
TRANSPORT_KINDS: frozenset[str] = frozenset({"reset", "truncated", "slow", "http429"})
HTML_KINDS: dict[str, tuple[int, str]] = {
    "http500": (500, "Internal Server Error"),
    "http502": (502, "Bad Gateway"),
    "http503": (503, "Service Unavailable"),
    "http504": (504, "Gateway Timeout"),
}

_JSON_KINDS: dict[str, GraphError] = {
    "code1": GraphError(500, 1, "An unknown error occurred", is_transient=False),
    "code2": GraphError(503, 2, "Service temporarily unavailable", is_transient=True),
    "transient": GraphError(
        400, 2, "An unexpected error has occurred. Please retry your request later.", is_transient=True
    ),
    "token_expired": GraphError(
        400,
        190,
        "Error validating access token: Session has expired on Tuesday, 03-Mar-26 10:00:00 PST. "
        "The current time is Tuesday, 03-Mar-26 11:00:00 PST.",
        subcode=463,
        is_transient=False,
    ),
    "permission": GraphError(
        400,
        200,
        "(#200) Ad account owner has NOT grant ads_management or ads_read permission",
        is_transient=False,
    ),
    "param": GraphError(400, 100, "(#100) Invalid parameter", is_transient=False),
    # An account the token no longer sees: Meta's answer for an unknown or unreadable object (100/33).
    "unknown_object": GraphError(
        400,
        100,
        "Unsupported get request. Object with ID 'act_0' does not exist, cannot be loaded due to missing "
        "permissions, or does not support this operation.",
        subcode=33,
        is_transient=False,
    ),
    "unknown_code": GraphError(400, 99999, "An error the client has never seen", is_transient=False),
    "deprecated_version": GraphError(
        400,
        2635,
        "(#2635) You are calling a deprecated version of the Ads API. Please update to the latest version: v25.0.",
        is_transient=False,
    ),
    "blocked": GraphError(
        400,
        368,
        "The action attempted has been deemed abusive or is otherwise disallowed",
        subcode=1404078,
        is_transient=False,
    ),
    "aborted": GraphError(
        400,
        960,
        "Request aborted. This could happen if a dependent request failed or the entire request timed out.",
        is_transient=True,
    ),
}

BASE_KINDS: tuple[str, ...] = (
    *sorted(_JSON_KINDS),
    *sorted(HTML_KINDS),
    "reduce",
    "expired_cursor",
    BAD_NUMBER,
    *sorted(TRANSPORT_KINDS),
)
KIND_HELP = "throttle:CODE[/SUBCODE] (CODE in 4, 17, 32, 613, 80000-80014), " + ", ".join(BASE_KINDS)

_SPEC_RE = re.compile(r"^(?:act_(?P<account>\d+):|(?P<batch>batch):)?(?P<kind>[a-z0-9_:/]+)(?P<op>[@~])(?P<sched>.+)$")
_PROB_RE = re.compile(r"^(?P<p>\d*\.?\d+(?:[eE]-?\d+)?)(?:\*(?P<k>\d+))?$")


def check_kind(kind: str) -> str:
    """Return ``kind`` if the sandbox knows it; raise ValueError naming the known kinds otherwise."""
    if kind.startswith("throttle:"):
        text = kind.removeprefix("throttle:")
        head, _, tail = text.partition("/")
        if not head.isdigit() or (tail and not tail.isdigit()) or int(head) not in THROTTLE_MESSAGES:
            raise ValueError(f"unknown fault kind {kind!r}; known: {KIND_HELP}")
        return kind
    if kind not in BASE_KINDS:
        raise ValueError(f"unknown fault kind {kind!r}; known: {KIND_HELP}")
    return kind


@dataclass(frozen=True)
class FaultRule:
    """One parsed SPEC: a fault kind plus when it fires."""

    kind: str
    spec: str
    exact: frozenset[int] = frozenset()
    ranges: tuple[tuple[int, int], ...] = ()
    after: int | None = None
    probability: float | None = None
    max_times: int | None = None
    account_id: str | None = None
    #: fires on batch calls only, counted among batch calls
    batch: bool = False

    def scheduled(self, n: int) -> bool:
        """Whether the exact schedule covers request ``n``."""
        if n in self.exact:
            return True
        if self.after is not None and n > self.after:
            return True
        return any(a <= n <= b for a, b in self.ranges)


def parse_fault_spec(spec: str) -> FaultRule:
    """Parse one SPEC string (see the module docstring); ValueError with a one-line reason otherwise."""
    text = spec.strip()
    m = _SPEC_RE.match(text)
    if m is None:
        raise ValueError(
            f"bad fault spec {spec!r}: expected [act_ID:|batch:]KIND@N[,M,A-B,after:K] or [act_ID:|batch:]KIND~P[*K], "
            "e.g. http503@2,5"
        )
    kind = check_kind(m["kind"])
    sched = m["sched"]
    if m["op"] == "~":
        pm = _PROB_RE.match(sched)
        if pm is None:
            raise ValueError(f"bad fault spec {spec!r}: expected a probability such as ~0.1 or ~0.1*3")
        p = float(pm["p"])
        if not 0 < p <= 1:
            raise ValueError(f"bad fault spec {spec!r}: probability must be > 0 and <= 1")
        k = int(pm["k"]) if pm["k"] is not None else None
        if k is not None and k < 1:
            raise ValueError(f"bad fault spec {spec!r}: *K must be >= 1")
        return FaultRule(
            kind=kind, spec=text, probability=p, max_times=k, account_id=m["account"], batch=m["batch"] is not None
        )
    exact: set[int] = set()
    ranges: list[tuple[int, int]] = []
    after: int | None = None
    for raw in sched.split(","):
        item = raw.strip()
        if item.startswith("after:") and item[6:].isdigit():
            after = int(item[6:]) if after is None else min(after, int(item[6:]))
        elif item.isdigit() and int(item) >= 1:
            exact.add(int(item))
        elif re.fullmatch(r"\d+-\d+", item):
            a, b = (int(x) for x in item.split("-"))
            if not 1 <= a <= b:
                raise ValueError(f"bad fault spec {spec!r}: range {item!r} must be A-B with 1 <= A <= B")
            ranges.append((a, b))
        else:
            raise ValueError(f"bad fault spec {spec!r}: schedule item {item!r} is not N (>= 1), A-B or after:K")
    return FaultRule(
        kind=kind,
        spec=text,
        exact=frozenset(exact),
        ranges=tuple(ranges),
        after=after,
        account_id=m["account"],
        batch=m["batch"] is not None,
    )


@dataclass(frozen=True)
class FaultPlan:
    """A fault plan as given by the user: SPEC strings (or parsed rules) and the knobs faults need.

    ``seed`` seeds the probability draws; ``slow_seconds`` is how long a ``slow`` answer waits (longer
    than the client's timeout); ``retry_after_seconds`` goes in the 429's Retry-After header.
    """

    specs: Sequence[str | FaultRule] = ()
    seed: int = 0
    slow_seconds: float = 30.0
    retry_after_seconds: int = 1
    rules: tuple[FaultRule, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        """Parse every spec up front, so a bad plan fails when it is given, not at request 5000."""
        if isinstance(self.specs, str):
            raise TypeError("FaultPlan specs must be a list of SPEC strings, not one string")
        rules = tuple(s if isinstance(s, FaultRule) else parse_fault_spec(str(s)) for s in self.specs)
        if not self.slow_seconds >= 0:
            raise ValueError("slow_seconds must be >= 0")
        if self.retry_after_seconds < 0:
            raise ValueError("retry_after_seconds must be >= 0")
        object.__setattr__(self, "rules", rules)

    @classmethod
    def from_specs(cls, specs: Iterable[str], **kwargs: object) -> FaultPlan:
        """Build a plan from SPEC strings (CLI, env); ValueError on the first bad one."""
        return cls(tuple(specs), **kwargs)  # type: ignore[arg-type]


class FaultInjector:
    """The running state of a plan: the request counter, the seeded RNG, how often each rule fired."""

    def __init__(self, plan: FaultPlan) -> None:
        self.plan = plan
        self._lock = threading.Lock()
        self._n = 0
        self._n_by_account: dict[str, int] = {}
        self._n_batch = 0
        self._rng = random.Random(plan.seed)  # noqa: S311 - a reproducible fault schedule, not secrets
        self._fired = [0] * len(plan.rules)

    def next_request(self, account_id: str | None = None, *, batch: bool = False) -> tuple[int, FaultRule | None]:
        """Count one Graph request and return its number and the rule that hits it, if any.

        ``account_id`` is the ad account the request names (None for other paths); rules for one account
        count and fire on that account's requests only. ``batch``: the request is a batch call; ``batch:``
        rules count and fire on those only.
        """
        with self._lock:
            self._n += 1
            n = self._n
            n_account = 0
            if account_id is not None:
                n_account = self._n_by_account[account_id] = self._n_by_account.get(account_id, 0) + 1
            if batch:
                self._n_batch += 1
            hit: FaultRule | None = None
            for i, rule in enumerate(self.plan.rules):
                if rule.probability is not None:
                    fires = self._rng.random() < rule.probability
                    if rule.max_times is not None and self._fired[i] >= rule.max_times:
                        fires = False
                elif rule.batch:
                    fires = rule.scheduled(self._n_batch)
                elif rule.account_id is None:
                    fires = rule.scheduled(n)
                else:
                    fires = rule.scheduled(n_account)
                if (rule.account_id is not None and rule.account_id != account_id) or (rule.batch and not batch):
                    fires = False
                if fires and hit is None:
                    hit = rule
                    self._fired[i] += 1
            return n, hit


def graph_error_for(kind: str) -> GraphError | None:
    """The JSON error a fault kind answers with, or ``None`` for HTML and transport faults."""
    if kind.startswith("throttle:"):
        head, _, tail = kind.removeprefix("throttle:").partition("/")
        code = int(head)
        subcode = int(tail) if tail else (2446079 if code in _SUBCODE_2446079_BY_DEFAULT else None)
        return throttle_error(code, subcode)
    if kind == "reduce":
        return reduce_data()
    if kind == "expired_cursor":
        return expired_cursor()
    template = _JSON_KINDS.get(kind)
    if template is None:
        return None
    return GraphError(
        template.status,
        template.code,
        template.message,
        error_type=template.error_type,
        subcode=template.subcode,
        is_transient=template.is_transient,
    )


def throttle_error(code: int, subcode: int | None) -> GraphError:
    """A throttling error in Meta's words; used by both the rate limiter and the fault injector."""
    title, msg = SUBCODE_USER_TEXT.get(subcode, (None, None)) if subcode is not None else (None, None)
    message = THROTTLE_MESSAGES[code]
    if code == 17 and subcode == 2446079:  # noqa: PLR2004 - Meta drops the "(#17)" prefix here
        message = "User request limit reached"
    return GraphError(400, code, message, subcode=subcode, is_transient=True, user_title=title, user_msg=msg)
