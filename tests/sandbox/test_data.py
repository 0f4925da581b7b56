"""The generator's fast paths give the same answers as the plain ones they replace."""

from __future__ import annotations

import json
import time

import pytest
from tap_meta_ads_sandbox.data import AD_FIELDS, DEFAULT_VISIBLE, AdCollection, format_time

from .conftest import ads_url


@pytest.mark.parametrize(("offset", "suffix"), [(-7 * 3600, "-0700"), (0, "+0000"), (19800, "+0530")])
def test_format_time_matches_strftime(offset, suffix):
    epochs = [0, 86399, 86400, 1672531200, 1767139199, 1767139200, 4102444800]
    epochs += list(range(1672531200, 1767139200, 86400 * 7 + 3607))
    for epoch in epochs:
        expected = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(epoch + offset)) + suffix
        assert format_time(epoch, offset, suffix) == expected


def test_every_member_names_its_own_field():
    coll = AdCollection(42, "1001", 2000, 0.1, 0.05)
    for index in range(0, 2000, 7):
        members = coll.members(index)
        assert set(members) == set(AD_FIELDS)
        for name, text in members.items():
            assert text == "" or text.startswith(f'"{name}":'), (name, text)
        assert json.loads("{" + ",".join(filter(None, members.values())) + "}") == coll.row(index)


def test_status_memo_gives_way_to_mutations(make_sandbox):
    sb = make_sandbox(accounts={"1001": 50})
    coll = sb.app.store.ads["1001"]
    before = [coll.effective_status(i) for i in range(50)]  # fills the memo
    deleted = sb.mutate("1001", delete=3)["deleted"]
    after = {coll.id_of(i): coll.effective_status(i) for i in range(50)}
    assert all(after[ad_id] == "DELETED" for ad_id in deleted)
    assert sum(s in DEFAULT_VISIBLE for s in after.values()) == sum(s in DEFAULT_VISIBLE for s in before) - 3


def test_a_page_sent_in_chunks_is_one_json_document(make_sandbox, client):
    sb = make_sandbox(accounts={"1001": 2000}, archived_ratio=0, deleted_ratio=0)
    resp = client.get(ads_url(sb), params={"limit": 1000, "fields": ",".join(AD_FIELDS)}, timeout=30)
    assert resp.status_code == 200
    assert int(resp.headers["Content-Length"]) == len(resp.content)
    doc = resp.json()
    assert doc["data"] == sb.visible_ads("1001")[:1000]
    assert doc["paging"]["next"].startswith(f"{sb.url}/")
