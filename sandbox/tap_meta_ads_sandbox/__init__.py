"""A local Graph API sandbox that behaves like Meta's, bad days included.

Why it exists: the Marketing API cannot be reached from CI or a laptop without secrets, and a tap tested
only against the live API ships the bugs nobody saw. The sandbox serves deterministic ad accounts with
Meta's paging, auth, errors, rate limits and faults, over real HTTP, using the standard library only. It
never imports the tap, so it cannot share the tap's bugs.
"""

from __future__ import annotations

from tap_meta_ads_sandbox.config import SandboxConfig
from tap_meta_ads_sandbox.faults import FaultPlan, FaultRule, parse_fault_spec
from tap_meta_ads_sandbox.server import SandboxServer

__all__ = ["FaultPlan", "FaultRule", "SandboxConfig", "SandboxServer", "parse_fault_spec"]
