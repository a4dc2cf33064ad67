"""Who the contacts are and when they arrive: a CRM import at go-live, then steady growth of
single people, accounts' staff, children with a guardian and duplicates that sales merges later;
and the changes to their profiles afterwards."""

from __future__ import annotations

import math
from collections import deque
from typing import TYPE_CHECKING

from interaction_store.demo.campaigns import NEWSLETTER
from interaction_store.demo.clock import DAY, HOUR, MIN, SEC, Doc, Part
from interaction_store.demo.consent import contact_point
from interaction_store.demo.content import (
    COMPANY_PREFIX,
    COMPANY_SUFFIX,
    COUNTRY,
    FICTIONAL,
    FIRST,
    HOME,
    LAST,
    PAGES,
    PERSONAL_DOMAINS,
    SITE,
    WHITEPAPER,
    language,
    slug,
)
from interaction_store.demo.people import Account, Contact, anonymous_id, phone_number
from interaction_store.events import InteractionEvent

if TYPE_CHECKING:
    from interaction_store.demo.simulation import Simulation

# Where a contact first came from decides the source of its profile events.
_SOURCES = {
    "import": "sales",
    "sales": "sales",
    "service": "customer-service",
    "web": "journeys",
    "event": "journeys",
    "child": "journeys",
}


class Population(Part):
    """Spawns contacts group by group, and creates each with its profile and consent."""

    def __init__(self, sim: Simulation, contacts: int) -> None:
        super().__init__(sim)
        end = self.clock.end
        self.n = contacts
        # Contacts: 40 % exist at go-live (a CRM import over the first week), the rest arrive
        # evenly over the window, so the log reads like a system's first year.
        self.n_import = max(1, math.ceil(contacts * 0.4))
        self.n_growth = contacts - self.n_import
        self.import_span = max(HOUR, min(7 * DAY, end // 10))
        self.growth_span = max(1, int(end * 0.97) - self.import_span)
        self.merges_left = contacts // 500
        # Spread over the growth phase: about 4x the merges wanted are eligible, the cap holds.
        self.merge_p = 8.0 * self.merges_left / max(1, self.n_growth)
        self.pool: deque[Contact] = deque(maxlen=64)  # recent adults: guardians, duplicates
        self.accounts: deque[Account] = deque(maxlen=32)  # recent accounts for job changes

    # ----------------------------------------------------------------- arrivals

    def spawn(self, t: int, j: int) -> None:
        """Create the next group of contacts (an account's people, or one person)."""
        rng = self.rng
        remaining = self.n - j
        r = rng.random()
        lang = language(rng)
        importing = j < self.n_import
        size = 1
        if r < 0.3 and remaining >= 2:
            size = min(remaining, rng.choice((2, 2, 3, 3, 4, 5, 6, 8)))
            account = self._new_account(lang)
            members = [self._new_contact(lang, account) for _ in range(size)]
            # The contract needs a contact or lead in every subject: an account is created with
            # its primary contact (the first one), whose contact.created follows.
            self.later(t, "account.created", "sales", members[0].subject, {"name": account.name})
            if rng.random() < 0.18:
                lead_at = t + rng.randrange(5 * DAY, 150 * DAY)
                self.at(self.clock.daytime(lead_at), self.sim.leads.account_lead, account)
            tm = t + rng.randrange(10 * SEC, 2 * MIN)
            origin = "import" if importing else "sales"
            for c in members:
                self.at(min(tm, self.clock.end - 1), self.create, c, origin)
                tm += rng.randrange(20 * SEC, 10 * MIN)
                self.pool.append(c)
        elif r < 0.34 and self.pool:
            self._spawn_child(t)
        elif (
            self.merges_left
            and self.pool
            and not importing
            and t < self.clock.end * 0.75
            and rng.random() < self.merge_p
        ):
            self._spawn_duplicate(t)
        else:
            c = self._new_contact(lang, None)
            self.pool.append(c)
            if importing:
                self.at(t, self.create, c, "import")
            else:
                origin = rng.choices(("web", "sales", "service", "event"), (50, 25, 15, 10))[0]
                if origin == "web":
                    self._web_prehistory(t, c)
                else:
                    self.at(t, self.create, c, origin)
        if j + size < self.n:
            self.at(max(t, self._slot(j + size)), self.spawn, j + size)

    def _slot(self, j: int) -> int:
        """When the j-th contact arrives at the earliest."""
        if j < self.n_import:
            return self.clock.stratified(j, self.n_import, self.import_span)
        k = j - self.n_import
        return self.import_span + self.clock.stratified(k, self.n_growth, self.growth_span)

    def _new_contact(self, lang: str, account: Account | None) -> Contact:
        rng = self.rng
        c = Contact(
            self.clock.uid(),
            lang,
            rng.choice(FIRST[lang]),
            rng.choice(LAST[lang]),
            anonymous_id(rng),
        )
        if account is not None:
            c.email = c.work_email(account)
        elif rng.random() < 0.95:
            c.email = (
                f"{slug(c.first)}.{slug(c.last)}{rng.randrange(1, 100)}"
                f"@{rng.choice(PERSONAL_DOMAINS[lang])}"
            )
        if rng.random() < 0.7:
            c.phone = phone_number(rng, lang)
        c.engagement = min(3.0, max(0.15, rng.lognormvariate(0, 0.55)))
        c.bad_email = rng.random() < 0.03  # an address that no longer exists: it hard-bounces
        c.set_account(account)
        return c

    def _new_account(self, lang: str) -> Account:
        rng = self.rng
        if rng.random() < 0.25:
            name = f"{rng.choice(FICTIONAL)} {COUNTRY[lang]}"
        else:
            suffix = rng.choice(COMPANY_SUFFIX[lang])
            name = f"{rng.choice(COMPANY_PREFIX[lang])} {rng.choice(LAST[lang])} {suffix}"
            name = name.strip()
        account = Account(self.clock.uid(), name, f"{slug(name)}.{lang}", lang)
        self.accounts.append(account)
        return account

    def _spawn_child(self, t: int) -> None:
        guardian = self.rng.choice(self.pool)
        c = self._new_contact(guardian.lang, None)
        c.child = True
        c.last = guardian.last
        if self.rng.random() < 0.6:
            c.email = None  # many children have no address of their own
        self.at(t, self.create, c, "child", guardian)

    def _spawn_duplicate(self, t: int) -> None:
        # The same person signs up again with a personal address; sales merges them weeks later.
        rng = self.rng
        original = rng.choice(self.pool)
        dup = self._new_contact(original.lang, None)
        dup.first, dup.last = original.first, original.last
        dup.email = (
            f"{slug(dup.first)}{slug(dup.last)}{rng.randrange(100)}"
            f"@{rng.choice(PERSONAL_DOMAINS[dup.lang])}"
        )
        self.merges_left -= 1
        self._web_prehistory(t, dup)
        merge_at = self.clock.daytime(t + rng.randrange(14 * DAY, 60 * DAY))
        self.at(merge_at, self.merge, original, dup)

    def _web_prehistory(self, t: int, c: Contact) -> None:
        """A visitor browses anonymously, then submits a form: the contact is born from it."""
        rng = self.rng
        room = self.clock.end - 1 - t
        visits = rng.randrange(1, 4)
        lead_in = min(int(room * 0.8), rng.randrange(HOUR, 20 * DAY))
        for k in range(visits):
            self.at(t + lead_in * k // visits, self.sim.web.visit, c.anon, c.lang, None, None, None)
        self.at(t + lead_in, self._web_signup, c)

    def _web_signup(self, t: int, c: Contact) -> None:
        rng = self.rng
        web = self.sim.web
        path, _ = PAGES[c.lang][WHITEPAPER] if rng.random() < 0.5 else PAGES[c.lang][HOME]
        form = "form-whitepaper-ia" if path else "form-newsletter"
        anon = c.web_subject(known=False)
        url = f"{SITE}/{c.lang}/{path}"
        submit = t + rng.randrange(40 * SEC, 4 * MIN)
        web.view_page(t, anon, url, round((submit - t) / SEC + rng.random() * 20, 1), None)
        web.view_form(t + 2 * SEC, anon, form, url, None)
        self.sim.consent.draw(c, 0.65)
        checkboxes = {"allow_bulk_email": c.bulk, "list-newsletter": bool(c.lists & NEWSLETTER)}
        web.submit(submit, anon, form, c.form_fields(), checkboxes, False, None)
        self.at(submit + SEC, self.create, c, "web")

    def create(
        self, t: int, c: Contact, origin: str, guardian: Contact | None = None
    ) -> InteractionEvent:
        """The contact's profile and consent, then the campaigns and activity of its life."""
        rng = self.rng
        sim = self.sim
        source = _SOURCES[origin]
        if origin != "web":  # web signups took their consent from the form's checkboxes
            sim.consent.draw(c, 0.8 if origin in ("import", "event") else 0.55)
        created = self.event(t, "contact.created", source, c.subject, _details(c, guardian))
        s = t + SEC
        if c.account is not None:
            self.later(s, "contact.joined_account", source, c.subject, {"account_id": c.account.id})
            s += SEC
        if origin == "web":
            self.at(s, sim.web.link, c)
        sim.consent.announce(s + SEC, c, source)
        # Nothing is sent before the consent events above are out (a minute later at the least).
        settled = t + MIN
        sim.start_activity(c, settled)
        sim.emails.first_newsletter(c, settled)
        sim.marketing_events.first_invitation(c, settled)
        if c.bulk and c.email:
            sim.emails.welcome(t, c)
        if origin == "service":
            self.at(t + rng.randrange(MIN, 15 * MIN), sim.activities.service, c)
        elif origin == "sales":
            self.at(self.clock.daytime(t + rng.randrange(HOUR, 3 * DAY)), sim.activities.sales, c)
        elif origin == "event":
            sim.marketing_events.register_for_next(t, c)
        return created

    # ----------------------------------------------------------------- profile changes

    def update(self, t: int, c: Contact) -> None:
        rng = self.rng
        changes: Doc = {}
        if c.phone is None or rng.random() < 0.4:
            c.phone = phone_number(rng, c.lang)
            changes["phone"] = c.phone
        if rng.random() < 0.2:
            c.last = rng.choice(LAST[c.lang])
            changes["last_name"] = c.last
        if not changes:
            changes["phone"] = c.phone
        source = rng.choice(("sales", "customer-service"))
        self.later(t, "contact.updated", source, c.subject, changes, None, c)

    def leave_account(self, t: int, c: Contact) -> None:
        """A job change: the contact leaves the company, maybe joins another customer."""
        rng = self.rng
        old = c.account
        if old is None:
            return
        self.later(t, "contact.left_account", "sales", c.subject, {"account_id": old.id}, None, c)
        new = rng.choice(self.accounts)
        if new is not old and new.lang == c.lang and rng.random() < 0.5:
            moved = c.subject | {"account_id": new.id}
            c.set_account(new)
            self.later(
                t + MIN, "contact.joined_account", "sales", moved, {"account_id": new.id}, None, c
            )
            if not c.hard_bounced and not c.email_out:
                c.email = c.work_email(new)
                c.bad_email = False
                self.later(
                    t + 2 * MIN, "contact.updated", "sales", moved, {"email": c.email}, None, c
                )
                if c.bulk:
                    consent = contact_point("email", c.email, True)
                    cp = "consent.contact_point_changed"
                    self.later(t + 2 * MIN + 10, cp, "sales", moved, consent, None, c)
        else:
            c.set_account(None)
        # A contact that left keeps a standalone profile: refresh what it does from now on.
        c.table = self.sim.activity_table(c)

    def merge(self, t: int, original: Contact, dup: Contact) -> InteractionEvent | None:
        if original.gone or dup.gone:
            return None
        dup.gone = True
        return self.event(
            t, "contact.merged", "sales", original.subject, {"merged_contact_id": dup.id}
        )


def _details(c: Contact, guardian: Contact | None) -> Doc:
    """The payload of contact.created."""
    details: Doc = {"first_name": c.first, "last_name": c.last}
    if c.email:
        details["email"] = c.email
    if c.phone and not c.child:
        details["phone"] = c.phone
    if c.child:
        details["is_child"] = True
    if guardian is not None:
        details["guardian_contact_id"] = guardian.id
    return details
