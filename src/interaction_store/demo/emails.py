"""Email journeys: welcome series, promotions, the monthly newsletter and transactional mail,
sent only where consent allows, and what recipients then do (open, click, bounce, unsubscribe)."""

from __future__ import annotations

from bisect import bisect_left
from datetime import timedelta
from typing import TYPE_CHECKING

from interaction_store.demo.campaigns import (
    HARD_BOUNCE,
    NEWSLETTER_MAIL,
    PROMOS,
    SOFT_BOUNCE,
    TRANSACTIONAL,
    WELCOME,
    Mail,
)
from interaction_store.demo.clock import DAY, HOUR, MIN, SEC, Doc, Part
from interaction_store.demo.content import MONTHS, SITE
from interaction_store.demo.people import Contact
from interaction_store.events import InteractionEvent

if TYPE_CHECKING:
    from interaction_store.demo.simulation import Simulation


class Emails(Part):
    def __init__(self, sim: Simulation) -> None:
        super().__init__(sim)
        self.newsletters = self._newsletter_calendar()

    def _newsletter_calendar(self) -> list[int]:
        # The monthly newsletter leaves on the first Tuesday of each month at 08:00 UTC.
        clock = self.clock
        out: list[int] = []
        month = clock.t0.replace(day=1, hour=8, minute=0, second=0, microsecond=0)
        while True:
            first_tuesday = month + timedelta(days=(1 - month.weekday()) % 7)
            t = (first_tuesday - clock.t0) // timedelta(milliseconds=1)
            if t >= clock.end:
                return out
            if t >= 0:
                out.append(t)
            month = (month + timedelta(days=32)).replace(day=1)

    # ----------------------------------------------------------------- campaigns

    def welcome(self, t: int, c: Contact) -> None:
        """The welcome series for a contact created at ``t``."""
        rng = self.rng
        self.at(t + rng.randrange(5 * MIN, 30 * MIN), self.send, c, WELCOME[0], None)
        for mail, after in ((WELCOME[1], 3 * DAY), (WELCOME[2], 10 * DAY)):
            at = self.clock.daytime(t + after + rng.randrange(-2 * HOUR, 2 * HOUR))
            self.at(at, self.send, c, mail, None)

    def promo(self, t: int, c: Contact) -> InteractionEvent | None:
        return self.send(t, c, self.rng.choice(PROMOS), None)

    def transactional(self, t: int, c: Contact) -> InteractionEvent | None:
        return self.send(t, c, self.rng.choice(TRANSACTIONAL), None)

    def first_newsletter(self, c: Contact, settled: int) -> None:
        self._schedule_newsletter(c, bisect_left(self.newsletters, settled))

    def _schedule_newsletter(self, c: Contact, k: int) -> None:
        if k < len(self.newsletters):
            self.at(self.newsletters[k] + self.rng.randrange(2 * HOUR), self.newsletter, c, k)

    def newsletter(self, t: int, c: Contact, k: int) -> InteractionEvent | None:
        if c.gone:
            return None
        self._schedule_newsletter(c, k + 1)
        return self.send(t, c, NEWSLETTER_MAIL, None)

    # ----------------------------------------------------------------- sending

    def send(
        self, t: int, c: Contact, mail: Mail, ctx: dict[str, str] | None
    ) -> InteractionEvent | None:
        """Send if consent allows (else maybe record the block), and schedule what follows."""
        rng = self.rng
        if c.gone:
            return None
        block: str | None = None
        if c.email is None:
            return None
        if not c.allow_email:
            block = "contact does not allow email"
        elif c.hard_bounced:
            block = "address hard-bounced earlier"
        elif mail.legal == "commercial":
            if mail.list_bit and not c.lists & mail.list_bit:
                return None  # not in the list's audience at all
            block = c.commercial_block(mail.list_bit)
        when = self.clock.when(t)
        campaign = mail.campaign
        if mail is NEWSLETTER_MAIL:
            campaign = f"{campaign}-{when:%Y-%m}"
        message_id = str(self.clock.uid())
        corr = {"journey_id": mail.journey, "campaign_id": campaign, "message_id": message_id}
        if block is not None:
            if rng.random() < 0.2:
                return self.event(
                    t, "email.blocked", mail.source, c.subject, {"reason": block}, corr
                )
            return None
        values = {
            "first": c.first,
            "month": MONTHS[c.lang][when.month - 1],
            "event": "",
            "date": "",
            "case": "",
        }
        if ctx:
            values.update(ctx)
        subject, preview = mail.fr if c.lang == "fr" else mail.es
        payload: Doc = {
            "subject": subject.format_map(values),
            "preview_text": preview.format_map(values),
            "to_address": c.email,
            "legal_designation": mail.legal,
        }
        if mail.list_bit:
            payload["list_id"] = mail.list_id
        sent = self.event(t, "email.sent", mail.source, c.subject, payload, corr)
        self._outcome(t, c, mail, corr)
        return sent

    def _outcome(self, t: int, c: Contact, mail: Mail, corr: Doc) -> None:
        rng = self.rng
        clock = self.clock
        src, subj = mail.source, c.subject
        hard = c.bad_email or rng.random() < 0.0008
        if hard or rng.random() < 0.015:
            # A dead address bounces within seconds and for good; a full mailbox, minutes later.
            low, high, reasons = (
                (2 * SEC, 40 * SEC, HARD_BOUNCE) if hard else (5 * SEC, 10 * MIN, SOFT_BOUNCE)
            )
            at = t + rng.randrange(low, high)
            bounce = {"bounce_type": "hard" if hard else "soft", "reason": rng.choice(reasons)}

            def bounced() -> None:
                c.hard_bounced = True

            self.later(at, "email.bounced", src, subj, bounce, corr, c, bounced if hard else None)
            return
        self.later(t + rng.randrange(SEC, 30 * SEC), "email.delivered", src, subj, {}, corr, c)
        commercial = mail.legal == "commercial"
        if commercial and rng.random() < 0.0015:

            def complained() -> None:
                c.bulk = False  # a complaint stops marketing email to this contact

            reported = clock.daytime(t + clock.delay(3 * HOUR, 1.2, MIN, 5 * DAY))
            self.later(reported, "email.spam_reported", src, subj, {}, corr, c, complained)
            return
        p_open = min(0.9, (0.2 if commercial else 0.5) * c.engagement)
        if rng.random() >= p_open:
            return
        opened = clock.daytime(t + clock.delay(2 * HOUR, 1.6, 20 * SEC, 12 * DAY))
        self.later(opened, "email.opened", src, subj, {}, corr, c)
        if rng.random() < 0.15:
            again = clock.daytime(opened + clock.delay(6 * HOUR, 1.0, 5 * MIN, 7 * DAY))
            self.later(again, "email.opened", src, subj, {}, corr, c)
        if rng.random() < min(0.6, 0.1 + 0.08 * c.engagement):
            clicked = opened + rng.randrange(5 * SEC, 2 * MIN)
            path = mail.landing[0] if c.lang == "fr" else mail.landing[1]
            url = f"{SITE}/{c.lang}/{path}?utm_source=email&utm_campaign={corr['campaign_id']}"
            self.later(clicked, "email.clicked", src, subj, {"url": url}, corr, c)
            web = self.sim.web
            if not c.linked:
                # The tracked link carries the contact: the browser's cookie is now known.
                self.at(clicked + 300, web.link, c)
            self.at(clicked + SEC, web.visit, c.anon, c.lang, c, url, None)
        elif commercial and rng.random() < 0.03:
            self._unsubscribe(opened + rng.randrange(10 * SEC, 3 * MIN), c, mail, corr)

    def _unsubscribe(self, t: int, c: Contact, mail: Mail, corr: Doc) -> None:
        list_id = mail.list_id
        bit = mail.list_bit

        def leave() -> None:
            if bit:
                c.lists &= ~bit
            else:
                c.bulk = False

        payload: Doc = {"via": "link"}
        if list_id:
            payload["list_id"] = list_id
        self.later(t, "email.unsubscribed", mail.source, c.subject, payload, corr, c, leave)
        # The subscription centre records the consent change itself, a moment later.
        change: Doc
        if list_id:
            etype, change = "consent.subscription_left", {"list_id": list_id}
        else:
            etype, change = "consent.preferences_changed", {"allow_bulk_email": False}
        self.later(t + 800, etype, "journeys", c.subject, change, None, c, leave)
