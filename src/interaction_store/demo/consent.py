"""Consent: what a new contact agrees to and the events that record it, and the subscription
centre where it changes its mind later."""

from __future__ import annotations

from collections.abc import Callable

from interaction_store.demo.campaigns import (
    EVENTS,
    LISTS,
    NEWSLETTER,
    OFFERS,
    PRODUCT_NEWS,
    SubscriptionList,
)
from interaction_store.demo.clock import SEC, Doc, Part
from interaction_store.demo.content import SITE
from interaction_store.demo.people import Contact

_FORM = "form-subscription-center"

# A consent event of the subscription centre: type, payload, and its effect on the contact.
_Change = tuple[str, Doc, Callable[[], None] | None]


def contact_point(channel: str, point: str | None, opted_in: bool) -> Doc:
    """The payload of a commercial contact-point consent (an address, a number, a device)."""
    return {
        "channel": channel,
        "contact_point": point,
        "purpose": "commercial",
        "status": "opted_in" if opted_in else "opted_out",
    }


def _joined(sub: SubscriptionList, lang: str) -> Doc:
    """The payload of consent.subscription_joined."""
    return {"list_id": sub.id, "list_name": sub.name(lang)}


class Consent(Part):
    def draw(self, c: Contact, bulk_p: float) -> None:
        """Decide a new contact's consent; ``bulk_p`` is how likely it accepts bulk email."""
        rng = self.rng
        c.allow_email = c.email is not None and rng.random() < 0.97
        c.bulk = not c.child and c.allow_email and rng.random() < bulk_p
        c.prefill = not c.child and rng.random() < 0.6
        if c.bulk:
            c.lists = NEWSLETTER if rng.random() < 0.7 else 0
            for bit, p in ((OFFERS, 0.45), (EVENTS, 0.45), (PRODUCT_NEWS, 0.3)):
                if rng.random() < p:
                    c.lists |= bit
        c.sms_ok = not c.child and c.phone is not None and rng.random() < 0.55
        c.push_ok = rng.random() < (0.15 if c.child else 0.3)

    def announce(self, t: int, c: Contact, source: str) -> None:
        """The events that record a new contact's consent, from ``t`` on."""
        rng = self.rng
        subj = c.subject
        prefs: Doc = {
            "allow_email": c.allow_email,
            "allow_bulk_email": c.bulk,
            "allow_prefill": c.prefill,
        }
        if rng.random() < 0.7:
            prefs["track_email"] = rng.random() < 0.8
        self.later(t, "consent.preferences_changed", source, subj, prefs)
        if c.child:
            level = "consent"  # given by the guardian
        elif c.bulk:
            level = "profiling" if rng.random() < 0.25 else "marketing"
        else:
            level = "transactional" if c.allow_email else "consent"
        self.later(t + 10, "consent.level_changed", source, subj, {"level": level})
        for i, sub in enumerate(LISTS):
            if c.lists & (1 << i):
                joined = _joined(sub, c.lang)
                self.later(t + 20 + i, "consent.subscription_joined", source, subj, joined)
        cp = "consent.contact_point_changed"
        if c.email and not c.child:
            self.later(t + 30, cp, source, subj, contact_point("email", c.email, c.bulk))
        if c.sms_ok:
            self.later(t + 40, cp, source, subj, contact_point("sms", c.phone, True))
        if c.push_ok:
            device = f"device:{c.anon[:16]}"
            self.later(t + 50, cp, source, subj, contact_point("push", device, True))

    def preferences(self, t: int, c: Contact) -> None:
        """A visit to the subscription centre: a list joined or left, or bulk email toggled."""
        rng = self.rng
        if c.email is None or c.hard_bounced:
            return
        lang = c.lang
        web = self.sim.web
        url = f"{SITE}/{lang}/{'preferences' if lang == 'fr' else 'preferencias'}"
        subj = c.subject
        web.view_page(t, subj, url, round(15 + rng.random() * 60, 1), c)
        web.view_form(t + SEC, subj, _FORM, url, c)
        ts = t + rng.randrange(10 * SEC, 90 * SEC)
        tc = ts + 700
        r = rng.random()
        changes: list[_Change] = []
        bulk_after = c.bulk
        # Each consent event carries its own part of the state change, applied when emitted, so
        # the simulated state always equals what a reader of the log would fold.
        if c.bulk and c.lists and r < 0.35:
            i = rng.choice([i for i in range(len(LISTS)) if c.lists & (1 << i)])

            def left(bit: int = 1 << i) -> None:
                c.lists &= ~bit

            changes.append(("consent.subscription_left", {"list_id": LISTS[i].id}, left))
        elif c.bulk and r < 0.55 and c.lists != 15:
            i = rng.choice([i for i in range(len(LISTS)) if not c.lists & (1 << i)])

            def joined(bit: int = 1 << i) -> None:
                c.lists |= bit

            changes.append(("consent.subscription_joined", _joined(LISTS[i], lang), joined))
        elif c.bulk and r < 0.85:
            bulk_after = False
            changes += _bulk_email(c, False)
        elif not c.bulk and not c.child and c.allow_email and r < 0.6:
            bulk_after = True
            changes += _bulk_email(c, True)
            newsletter = _joined(LISTS[0], lang)
            changes.append(("consent.subscription_joined", newsletter, c.join_newsletter))
        else:
            value = not c.prefill

            def prefill(v: bool = value) -> None:
                c.prefill = v

            changes.append(("consent.preferences_changed", {"allow_prefill": value}, prefill))
        fields = {"email": c.email}
        web.submit(ts, subj, _FORM, fields, {"allow_bulk_email": bulk_after}, True, c)
        for k, (etype, payload, effect) in enumerate(changes):
            self.later(tc + k * 10, etype, "journeys", subj, payload, None, c, effect)


def _bulk_email(c: Contact, allowed: bool) -> list[_Change]:
    """Bulk email allowed or forbidden: the preference, the consent level and the consent of the
    contact's address change together."""
    return [
        (
            "consent.preferences_changed",
            {"allow_bulk_email": allowed},
            c.allow_bulk if allowed else c.forbid_bulk,
        ),
        ("consent.level_changed", {"level": "marketing" if allowed else "transactional"}, None),
        (
            "consent.contact_point_changed",
            contact_point("email", c.email, allowed),
            c.opt_in_address if allowed else c.opt_out_address,
        ),
    ]
