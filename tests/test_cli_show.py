"""`istore show contact` answers like the HTTP API: a contact known only from its interactions
(no consent or contact event yet) shows its timeline and the consent rules' defaults; an id no
view knows is refused, in the API's words."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import orjson

from interaction_store.settings import Settings
from tests.api_support import auth, client
from tests.factories import doc
from tests.test_cli_views import istore

RECENT = datetime.now(UTC) - timedelta(hours=1)


def test_show_contact_known_only_from_interactions_answers_like_the_api(
    embedded_settings: Settings,
) -> None:
    contact, nobody = str(uuid.uuid4()), str(uuid.uuid4())
    visit = doc("web.page_viewed", contact, RECENT, {"url": "https://example.com/pricing"})
    path = embedded_settings.data_dir / "visit.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(orjson.dumps(visit) + b"\n")
    istore(embedded_settings, "publish", str(path))
    istore(embedded_settings, "run", "--once")

    with client(embedded_settings) as http:
        api = http.get(f"/v1/contacts/{contact}/consent", headers=auth("admin"))
        assert api.status_code == 200, api.text
        decision = http.get(
            f"/v1/contacts/{contact}/consent/decision",
            params={"channel": "email", "purpose": "commercial"},
            headers=auth("admin"),
        ).json()
        unknown = http.get(f"/v1/contacts/{nobody}/consent", headers=auth("admin"))
    assert unknown.status_code == 404

    shown = istore(embedded_settings, "show", "contact", contact.upper()).stdout
    assert shown.startswith(f"Timeline of contact {contact} (1 interactions in the window):")
    assert "web.page_viewed" in shown
    state = api.json()
    for name, value in state["preferences"].items():
        assert f"  {name} = {value['value']}  " in shown
    assert f"  level = {state['level']['value']}  " in shown
    verdict = "yes" if decision["may_send"] else "no"
    assert f"May we send a marketing email now? {verdict}" in shown
    for reason in decision["reasons"][:4]:
        assert f"  - {reason}"[:160] in shown

    missing = istore(embedded_settings, "show", "contact", nobody, code=1)
    assert unknown.json()["detail"].split(" (")[0] in missing.stderr
