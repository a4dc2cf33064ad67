"""Leads: a contact asking sales to call back, account-based leads on a whole company, and
business cards from trade shows; then sales' call and decision on each, and the opportunity a
qualified one becomes."""

from __future__ import annotations

from interaction_store.demo.clock import DAY, HOUR, MIN, SEC, Doc, Part
from interaction_store.demo.content import (
    CALL_SUBJECTS,
    CONTACT_PAGE,
    DISQUALIFY,
    LEAD_TOPICS,
    LOST,
    PAGES,
    PRICING,
    RETURN,
    SITE,
    STAGES,
    language,
)
from interaction_store.demo.people import Account, Contact

_FORM = "form-contact-sales"


class Leads(Part):
    def interest(self, t: int, c: Contact) -> None:
        """The contact asks sales to call back: a contact-us form becomes a lead."""
        rng = self.rng
        if c.leads >= 2:
            return
        c.leads += 1
        web = self.sim.web
        pages = PAGES[c.lang]
        known = c.linked
        subj = c.web_subject(known)
        pricing = f"{SITE}/{c.lang}/{pages[PRICING][0]}"
        contact_url = f"{SITE}/{c.lang}/{pages[CONTACT_PAGE][0]}"
        secs = round(40 + rng.random() * 200, 1)
        web.view_page(t, subj, pricing, secs, c)
        tc = t + int(secs * SEC) + 2 * SEC
        web.view_page(tc, subj, contact_url, 95.0, c, referrer=pricing)
        web.view_form(tc + SEC, subj, _FORM, contact_url, c)
        topic = rng.choice(LEAD_TOPICS[c.lang])
        fields = c.form_fields() | {"topic": topic}
        if c.phone:
            fields["phone"] = c.phone
        submitted = tc + rng.randrange(40 * SEC, 3 * MIN)
        web.submit_as(submitted, subj, c, known, _FORM, fields, {"allow_bulk_email": c.bulk})
        lead_subj = {"lead_id": self.clock.uid(), **c.subject}
        created = submitted + 2 * SEC
        lead = {"topic": topic, "parent_contact_id": c.id}
        self.later(created, "lead.created", "journeys", lead_subj, lead, None, c)
        self._follow_up(created, lead_subj, c.lang, topic)

    def account_lead(self, t: int, account: Account) -> None:
        # Account-based marketing: a lead on the whole company, scored from all its contacts.
        topic = self.rng.choice(LEAD_TOPICS[account.lang])
        lead_subj = {"lead_id": self.clock.uid(), "account_id": account.id}
        lead = {"topic": topic, "parent_account_id": account.id}
        self.later(t, "lead.created", "sales", lead_subj, lead)
        self._follow_up(t, lead_subj, account.lang, topic)

    def orphan(self, t: int, k: int, count: int) -> None:
        """A business card from a trade show: a lead with no parent contact or account."""
        clock = self.clock
        lang = language(self.rng)
        t = clock.daytime(t)
        lead_subj = {"lead_id": clock.uid()}
        self.later(
            t, "lead.created", "sales", lead_subj, {"topic": self.rng.choice(LEAD_TOPICS[lang])}
        )
        self._follow_up(t, lead_subj, lang)
        if k + 1 < count:
            self.at(clock.spread(k + 1, count), self.orphan, k + 1, count)

    def _follow_up(self, t: int, lead_subj: Doc, lang: str, topic: str = "") -> None:
        """Sales calls to qualify the lead, then qualifies, disqualifies or returns it (or has
        not decided yet)."""
        rng = self.rng
        clock = self.clock
        call = clock.daytime(t + rng.randrange(2 * HOUR, 3 * DAY))
        duration = clock.delay(6 * MIN, 0.7, 30 * SEC, HOUR)
        self.sim.activities.phone_call(
            call, "sales", lead_subj, "outbound", CALL_SUBJECTS[lang][2], duration
        )
        decided = clock.daytime(call + rng.randrange(5 * DAY, 45 * DAY))
        r = rng.random()
        decision: Doc
        if r < 0.35:
            etype, decision = (
                "lead.qualified",
                {"opportunity_id": f"OPP-{rng.randrange(10**5):05d}"},
            )
        elif r < 0.65:
            etype, decision = "lead.disqualified", {"reason": rng.choice(DISQUALIFY[lang])}
        elif r < 0.85:
            etype, decision = "lead.returned_to_marketing", {"reason": rng.choice(RETURN[lang])}
        else:
            return
        self.later(decided, etype, "sales", lead_subj, decision)
        if etype == "lead.qualified":
            self._opportunity(decided, lead_subj, lang, decision["opportunity_id"], topic)

    def _opportunity(self, t: int, lead_subj: Doc, lang: str, deal_id: str, topic: str) -> None:
        """The deal a qualified lead became: opened, moved through the stages, then won, lost
        or still open. Drawn from its id alone (no draw of the shared generator shifts the
        rest of the simulation)."""
        n = int(deal_id.removeprefix("OPP-"))
        value, money = float(1000 * (n % 90 + 10)), {"currency": "EUR"}
        deal = {"opportunity_id": deal_id}
        opened = {"lead_id": lead_subj["lead_id"], "name": topic, "value": value, **money}
        self.later(t + HOUR, "opportunity.created", "sales", lead_subj, deal | opened)
        for i, stage in enumerate(STAGES[: n % 4]):
            at = t + (i + 1) * 7 * DAY
            self.later(at, "opportunity.stage_changed", "sales", lead_subj, deal | {"stage": stage})
        closed = t + 30 * DAY
        if n % 3 == 0:
            self.later(
                closed, "opportunity.won", "sales", lead_subj, deal | {"value": value, **money}
            )
        elif n % 3 == 1:
            lost = {"value": value, "reason": LOST[lang][n % len(LOST[lang])], **money}
            self.later(closed, "opportunity.lost", "sales", lead_subj, deal | lost)
