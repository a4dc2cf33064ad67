"""Realistic event documents, as the raw JSON bytes an upstream system sends.

Prefers the package's demo data (``interaction_store.demo.generate(contacts, seed)``) when that
module exists; otherwise a seeded generator here makes a comparable mix: email sends with
subject and preview text, deliveries, opens, clicks with tracking urls, web page views, forms,
SMS, chat, a few profile and consent changes. Documents are ~300-600 bytes of JSON.
"""

from __future__ import annotations

import math
import random
import uuid
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any, BinaryIO

import orjson
from pydantic import BaseModel

from interaction_store.codec import EventRejected, decode, encode
from interaction_store.events import InteractionEvent

START = datetime(2025, 3, 1, tzinfo=UTC)

# (type, weight): roughly what a marketing-automation tenant's stream looks like.
MIX: list[tuple[str, float]] = [
    ("email.sent", 17),
    ("email.delivered", 15),
    ("email.opened", 13),
    ("email.clicked", 7),
    ("email.bounced", 0.5),
    ("email.unsubscribed", 0.3),
    ("web.page_viewed", 22),
    ("web.link_clicked", 3),
    ("form.viewed", 3),
    ("form.submitted", 1.5),
    ("sms.sent", 3),
    ("sms.delivered", 2.5),
    ("push.sent", 1),
    ("event.registered", 1),
    ("chat.invitation_shown", 1),
    ("chat.message", 2.5),
    ("activity.phone_call", 1),
    ("contact.updated", 1.2),
    ("lead.created", 0.5),
    ("consent.subscription_joined", 0.6),
    ("consent.preferences_changed", 0.4),
]

_SUBJECTS = [
    "Your spring product update is here",
    "Last chance: early-bird pricing for Summit 2025 ends Friday",
    "{first}, here is what is new in your workspace this month",
    "Webinar invitation: scaling customer journeys without the chaos",
    "Your quarterly account review with {company}",
    "3 templates our best customers use for onboarding emails",
    "Reminder: your trial ends in 5 days",
    "Thanks for visiting our booth, {first}!",
]
_PREVIEWS = [
    "See the features we shipped this month, from real-time segments to a faster journey "
    "designer, plus a short video walkthrough.",
    "Register today to lock in the lower price and get access to all recorded sessions after "
    "the event.",
    "We put together a short summary of your team's activity and a few tips to get more out of "
    "the platform.",
    "Join our product team live on Thursday at 16:00 CET for a 45 minute session with Q&A.",
]
_PAGES = [
    "/pricing",
    "/product/journeys",
    "/product/segments",
    "/blog/2025/03/how-to-measure-email-engagement",
    "/customers/northwind-traders",
    "/events/summit-2025/agenda",
    "/docs/getting-started/connect-your-crm",
    "/contact-sales",
]
_REFERRERS = [
    "https://www.google.com/",
    "https://www.linkedin.com/feed/",
    "https://news.ycombinator.com/",
    None,
]
_CHAT = [
    "Hi, can you tell me whether the Professional plan includes the SMS channel?",
    "Sure! SMS is included in Professional and Enterprise; Starter has email only.",
    "Great, and is there a limit on the number of contacts per month?",
    "Thanks, that answers it. Could someone from sales send me a quote?",
]
_FIRST = ["Ada", "Grace", "Alan", "Katherine", "Linus", "Margaret", "Tim", "Barbara", "Dennis"]
_LAST = ["Lovelace", "Hopper", "Turing", "Johnson", "Torvalds", "Hamilton", "Berners-Lee"]
_COMPANIES = ["Northwind Traders", "Contoso Ltd", "Fabrikam Inc", "Adventure Works", "Litware"]


def _uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


class _Contact:
    def __init__(self, rng: random.Random, accounts: list[str]) -> None:
        self.id = _uuid(rng)
        self.first = rng.choice(_FIRST)
        self.last = rng.choice(_LAST)
        self.company = rng.choice(_COMPANIES)
        self.email = f"{self.first}.{self.last}@{self.company.split()[0]}.example".lower()
        self.phone = f"+4915{rng.randrange(10**8, 10**9)}"
        self.account = rng.choice(accounts) if rng.random() < 0.6 else None
        self.anonymous = f"anon-{rng.getrandbits(64):016x}"


def synthetic(count: int, contacts: int = 1000, seed: int = 1) -> Iterator[bytes]:
    """``count`` valid event documents for ``contacts`` contacts, in time order."""
    rng = random.Random(seed)
    accounts = [_uuid(rng) for _ in range(max(1, contacts // 5))]
    people = [_Contact(rng, accounts) for _ in range(contacts)]
    journeys = [f"journey-{i:03d}" for i in range(25)]
    types = [t for t, _ in MIX]
    weights = [w for _, w in MIX]
    step = timedelta(days=365) / max(count, 1)
    for i in range(count):
        person = rng.choice(people)
        kind = rng.choices(types, weights)[0]
        when = START + step * i + timedelta(milliseconds=rng.randrange(1000))
        yield orjson.dumps(_document(rng, kind, person, when, journeys))


def _document(
    rng: random.Random, kind: str, c: _Contact, when: datetime, journeys: list[str]
) -> dict[str, Any]:
    subject: dict[str, Any] = {"contact_id": c.id}
    if c.account:
        subject["account_id"] = c.account
    doc: dict[str, Any] = {
        "event_id": _uuid(rng),
        "type": kind,
        "schema_version": 2 if kind == "email.bounced" else 1,
        "occurred_at": when.isoformat().replace("+00:00", "Z"),
        "source": "journeys",
        "subject": subject,
    }
    channel = kind.split(".", 1)[0]
    if channel in ("email", "sms", "push"):
        journey = rng.choice(journeys)
        doc["correlation"] = {
            "journey_id": journey,
            "campaign_id": f"campaign-2025-{rng.randrange(1, 40):02d}",
            "message_id": f"{journey}-msg-{rng.randrange(1, 9)}",
        }
    utm = "?utm_source=email&utm_medium=journey&utm_campaign=spring-2025"
    payload: dict[str, Any] = {}
    if kind == "email.sent":
        payload = {
            "subject": rng.choice(_SUBJECTS).format(first=c.first, company=c.company),
            "preview_text": rng.choice(_PREVIEWS),
            "to_address": c.email,
            "legal_designation": "commercial",
            "list_id": "newsletter-en",
        }
    elif kind in ("email.clicked", "web.link_clicked"):
        payload = {"url": "https://www.example.com" + rng.choice(_PAGES) + utm}
        if kind == "web.link_clicked":
            payload["page_url"] = "https://www.example.com" + rng.choice(_PAGES)
            doc["source"] = "web-tracking"
    elif kind == "email.bounced":
        payload = {"bounce_type": "soft", "reason": "452 4.2.2 mailbox full; try again later"}
    elif kind == "email.unsubscribed":
        payload = {"list_id": "newsletter-en", "via": "link"}
    elif kind == "web.page_viewed":
        doc["source"] = "web-tracking"
        if rng.random() < 0.2:
            doc["subject"] = {"anonymous_id": c.anonymous}
        payload = {
            "url": "https://www.example.com" + rng.choice(_PAGES),
            "seconds_on_page": round(rng.expovariate(1 / 40), 1),
        }
        referrer = rng.choice(_REFERRERS)
        if referrer:
            payload["referrer"] = referrer
    elif kind in ("form.viewed", "form.submitted"):
        doc["source"] = "forms"
        payload = {
            "form_id": f"form-{rng.choice(['demo-request', 'webinar', 'whitepaper'])}",
            "page_url": "https://www.example.com" + rng.choice(_PAGES),
        }
        if kind == "form.submitted":
            del payload["page_url"]
            payload["fields"] = {
                "first_name": c.first,
                "last_name": c.last,
                "email": c.email,
                "company": c.company,
                "job_title": "Marketing Operations Manager",
            }
            payload["consent_checkboxes"] = {"newsletter": True, "partners": False}
    elif kind == "sms.sent":
        doc["source"] = "sms-gateway"
        payload = {
            "text": f"Hi {c.first}, your webinar starts in 1 hour. Join: https://ex.am/p/"
            f"{rng.getrandbits(32):08x} Reply STOP to opt out.",
            "to_number": c.phone,
        }
    elif kind == "push.sent":
        payload = {"title": "Your report is ready", "body": rng.choice(_PREVIEWS)}
    elif kind == "event.registered":
        payload = {"event_ref": "summit-2025", "event_name": "Customer Summit 2025, Berlin"}
    elif kind == "chat.invitation_shown":
        doc["source"] = "chat"
        payload = {
            "rule_name": "pricing-page-30s",
            "page_url": "https://www.example.com/pricing",
            "seconds_on_page": 30.0,
            "trigger_message": "Questions about plans? We are happy to help.",
        }
    elif kind == "chat.message":
        doc["source"] = "chat"
        payload = {
            "conversation_id": f"conv-{rng.getrandbits(48):012x}",
            "sender": rng.choice(["customer", "agent"]),
            "text": rng.choice(_CHAT),
        }
    elif kind == "activity.phone_call":
        doc["source"] = "crm"
        payload = {
            "direction": "outbound",
            "subject": "Follow-up on demo request",
            "duration_seconds": rng.randrange(60, 1800),
        }
    elif kind == "contact.updated":
        doc["source"] = "crm"
        payload = {"last_name": c.last, "email": c.email, "phone": c.phone}
    elif kind == "lead.created":
        doc["source"] = "crm"
        payload = {"topic": "Enterprise plan, 50 seats", "parent_contact_id": c.id}
    elif kind == "consent.subscription_joined":
        payload = {"list_id": "newsletter-en", "list_name": "Monthly newsletter (English)"}
    elif kind == "consent.preferences_changed":
        payload = {"allow_bulk_email": True, "track_email": rng.random() < 0.5}
    doc["payload"] = payload
    return doc


def _as_bytes(item: Any) -> bytes:
    if isinstance(item, bytes):
        return item.strip()
    if isinstance(item, str):
        return item.strip().encode()
    if isinstance(item, InteractionEvent):
        return encode(item)
    if isinstance(item, BaseModel):
        return orjson.dumps(item.model_dump(mode="json", exclude_none=True))
    return orjson.dumps(item)


def demo_documents(count: int, contacts: int, seed: int) -> tuple[Iterable[bytes], int] | None:
    """The package's demo data as JSON bytes, with the number of contacts used (raised from
    ``contacts`` when a year of that many is fewer than ``count`` events); None when there is
    no demo module."""
    try:
        from interaction_store import demo
    except ImportError:
        return None
    generate = getattr(demo, "generate", None)
    if generate is None:
        return None
    estimate = getattr(demo, "estimate_events", None)
    if estimate is not None:
        expected = estimate(contacts)
        if expected < count * 1.1:
            contacts = math.ceil(contacts * count * 1.1 / max(expected, 1))
    return (_as_bytes(item) for item in generate(contacts, seed)), contacts


def _valid(source: Iterable[bytes], count: int) -> Iterator[bytes]:
    """Up to ``count`` valid documents of ``source`` with distinct event ids."""
    seen: set[uuid.UUID] = set()
    for line in source:
        if len(seen) >= count:
            return
        try:
            event_id = decode(line).event_id
        except EventRejected:
            continue
        if event_id not in seen:
            seen.add(event_id)
            yield line


def write_documents(out: BinaryIO, count: int, contacts: int = 1000, seed: int = 1) -> str:
    """Write ``count`` valid documents with distinct event ids as JSON Lines; return where
    they came from. Invalid or repeated documents of the source are skipped, so every one
    written is accepted. Falls back to :func:`synthetic` when the demo module is missing or
    fails.

    Streaming to a file (and reading it back in one go) keeps 100k small byte strings from
    being scattered over a heap the generator churned through, which would triple the RSS.
    """
    start = out.tell()
    written = 0
    demo = demo_documents(count, contacts, seed)
    if demo is not None:
        source, used = demo
        origin = f"interaction_store.demo.generate(contacts={used}, seed={seed})"
        try:
            for line in _valid(source, count):
                out.write(line + b"\n")
                written += 1
        except Exception as exc:  # the demo module is someone else's work in progress
            reason = str(exc).splitlines()[0][:160]
            origin = f"synthetic (demo.generate failed: {type(exc).__name__}: {reason})"
            out.seek(start)
            out.truncate()
            written = 0
    else:
        origin = "synthetic (no interaction_store.demo)"
    if written == 0:
        origin = f"bench.documents.synthetic({contacts} contacts, seed {seed}); {origin}"
    elif written < count:
        # The demo data of this many contacts is smaller than asked: top up synthetically.
        origin += f" + {count - written} synthetic"
        seed += 1
    for line in _valid(synthetic(count - written, contacts, seed), count - written):
        out.write(line + b"\n")
    return origin
