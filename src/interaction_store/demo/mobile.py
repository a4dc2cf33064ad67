"""SMS and push journeys: messages to contacts who opted in, delivery, clicks and replies, and
the STOP keyword that ends SMS for good."""

from __future__ import annotations

from interaction_store.demo.campaigns import PUSH, SMS, SMS_REPLIES
from interaction_store.demo.clock import DAY, MIN, SEC, Part
from interaction_store.demo.consent import contact_point
from interaction_store.demo.content import slug
from interaction_store.demo.people import Contact
from interaction_store.events import InteractionEvent


class Mobile(Part):
    def sms(self, t: int, c: Contact) -> InteractionEvent | None:
        rng = self.rng
        clock = self.clock
        if not c.sms_ok or c.phone is None:
            return None  # replied STOP earlier, or never opted in
        campaign, text, link = rng.choice(SMS[c.lang])
        corr = {"journey_id": "jrn-sms", "campaign_id": campaign, "message_id": str(clock.uid())}
        sent = self.event(
            t, "sms.sent", "journeys", c.subject, {"text": text, "to_number": c.phone}, corr
        )
        subj = c.subject
        if rng.random() < 0.04:
            reason = rng.choice(("unreachable handset", "carrier rejected", "invalid number"))
            failed = t + rng.randrange(5 * SEC, 5 * MIN)
            self.later(failed, "sms.failed", "journeys", subj, {"reason": reason}, corr, c)
            return sent
        delivered = t + rng.randrange(2 * SEC, 40 * SEC)
        self.later(delivered, "sms.delivered", "journeys", subj, {}, corr, c)
        read = clock.daytime(delivered + clock.delay(10 * MIN, 1.5, 10 * SEC, 2 * DAY))
        if link is not None and rng.random() < 0.06 * c.engagement:
            self.later(read, "sms.clicked", "journeys", subj, {"url": link}, corr, c)
        elif rng.random() < 0.05:
            if rng.random() < 0.45:
                keyword = "ALTO" if c.lang == "es" and rng.random() < 0.5 else "STOP"
                text = keyword if rng.random() < 0.7 else keyword.capitalize()

                def stopped() -> None:
                    c.sms_ok = False

                reply = {"text": text, "keyword": keyword}
                self.later(read, "sms.replied", "journeys", subj, reply, corr, c, stopped)
                self.later(
                    read + SEC,
                    "consent.contact_point_changed",
                    "journeys",
                    subj,
                    contact_point("sms", c.phone, False),
                    None,
                    c,
                    stopped,
                )
            else:
                reply = {"text": rng.choice(SMS_REPLIES[c.lang])}
                self.later(read, "sms.replied", "journeys", subj, reply, corr, c)
        return sent

    def push(self, t: int, c: Contact) -> InteractionEvent | None:
        rng = self.rng
        clock = self.clock
        if not c.push_ok:
            return None
        title, body = rng.choice(PUSH[c.lang])
        corr = {
            "journey_id": "jrn-app",
            "campaign_id": f"cmp-push-{slug(title)[:24]}",
            "message_id": str(clock.uid()),
        }
        sent = self.event(
            t, "push.sent", "journeys", c.subject, {"title": title, "body": body}, corr
        )
        if rng.random() < 0.93:
            delivered = t + rng.randrange(SEC, 20 * SEC)
            self.later(delivered, "push.delivered", "journeys", c.subject, {}, corr, c)
            if rng.random() < 0.12 * c.engagement:
                opened = clock.daytime(delivered + clock.delay(30 * MIN, 1.5, 5 * SEC, 3 * DAY))
                self.later(opened, "push.opened", "journeys", c.subject, {}, corr, c)
        return sent
