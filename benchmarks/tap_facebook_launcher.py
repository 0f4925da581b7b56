"""Run MeltanoLabs tap-facebook (``meltano-tap-facebook``) against the sandbox instead of graph.facebook.com.

    .ci/.tools/tap-facebook/bin/python benchmarks/tap_facebook_launcher.py --config config.json --catalog c.json

tap-facebook fixes its API base in ``FacebookStream.url_base`` (``https://graph.facebook.com/{version}/
act_{account_id}``) and has no setting for it; this launcher replaces that one property with the same URL on
``TAP_FACEBOOK_API_URL`` and then runs the tap's own CLI. One more change, to the query only: the ads stream
glues the Python repr of its column list into its path (``/ads?fields=['id', 'account_id', ...]``), which the
sandbox's field parser refuses as a field named ``['id'``; the launcher sends the same columns comma-separated.
Paging, page size (25), parsing, schema handling and the writer are tap-facebook's own. It runs in
tap-facebook's virtualenv (its singer-sdk must not meet ours), so it imports nothing of this repository.
"""

from __future__ import annotations

import os

from tap_facebook.client import FacebookStream
from tap_facebook.streams.ads import AdsStream
from tap_facebook.tap import TapFacebook

API_URL = os.environ["TAP_FACEBOOK_API_URL"].rstrip("/")


def sandbox_url_base(self: FacebookStream) -> str:
    """tap-facebook's own ``url_base``, with the sandbox in place of graph.facebook.com."""
    return f"{API_URL}/{self.config['api_version']}/act_{self.config['account_id']}"


FacebookStream.url_base = property(sandbox_url_base)  # type: ignore[method-assign,assignment]
AdsStream.path = f"/ads?fields={','.join(AdsStream.columns)}"

if __name__ == "__main__":
    TapFacebook.cli()
