"""The simulation: one clock, the population and every channel's journeys wired together, and
what each kind of contact does by itself between campaigns."""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterator
from datetime import datetime
from itertools import accumulate

from interaction_store.demo.activities import Activities
from interaction_store.demo.chat import Chat
from interaction_store.demo.clock import MIN, YEAR, Action, Clock
from interaction_store.demo.consent import Consent
from interaction_store.demo.emails import Emails
from interaction_store.demo.leads import Leads
from interaction_store.demo.marketing_events import MarketingEvents
from interaction_store.demo.mobile import Mobile
from interaction_store.demo.people import ActivityTable, Contact
from interaction_store.demo.population import Population
from interaction_store.demo.web import Web
from interaction_store.events import InteractionEvent


class Simulation:
    """The parts of the simulation, each reaching the others through this object."""

    def __init__(self, contacts: int, seed: int, end: datetime, days: int) -> None:
        self.clock = Clock(seed, end, days)
        self.population = Population(self, contacts)
        self.consent = Consent(self)
        self.emails = Emails(self)
        self.mobile = Mobile(self)
        self.web = Web(self)
        self.chat = Chat(self)
        self.leads = Leads(self)
        self.activities = Activities(self)
        # The seed's first draws: each language's calendar of marketing events.
        self.marketing_events = MarketingEvents(self)
        self.tables: dict[tuple[bool, bool, bool, bool], ActivityTable] = {}

    def run(self) -> Iterator[InteractionEvent]:
        """Schedule the first contact, anonymous visitor and parentless lead (each schedules the
        next), and stream the events as the clock runs."""
        clock = self.clock
        contacts = self.population.n
        clock.at(0, self.population.spawn, 0)
        visitors = max(1, round(contacts * 0.3))
        clock.at(clock.spread(0, visitors), self.web.anonymous_visitor, 0, visitors)
        orphans = max(1, round(contacts * 0.04))
        clock.at(clock.spread(0, orphans), self.leads.orphan, 0, orphans)
        return clock.run()

    def activity_table(self, c: Contact) -> ActivityTable:
        """What a contact of this kind does between campaigns (shared by all of its kind)."""
        key = (c.child, c.account is not None, c.sms_ok, c.push_ok)
        table = self.tables.get(key)
        if table is None:
            rates: list[tuple[Action, float]] = [(self.web.browse, 13.0)]
            if c.child:
                rates.append((self.emails.transactional, 0.5))
            else:
                rates += [
                    (self.emails.promo, 16.0),
                    (self.emails.transactional, 3.0),
                    (self.activities.sales, 3.0 if c.account else 0.6),
                    (self.activities.service, 0.8),
                    (self.consent.preferences, 0.35),
                    (self.population.update, 0.06),
                    (self.leads.interest, 0.25),
                ]
                if c.account:
                    rates.append((self.population.leave_account, 0.05))
            if c.sms_ok:
                rates.append((self.mobile.sms, 6.0))
            if c.push_ok:
                rates.append((self.mobile.push, 10.0))
            cum = tuple(accumulate(rate for _, rate in rates))
            table = ActivityTable(tuple(act for act, _ in rates), cum, cum[-1])
            self.tables[key] = table
        return table

    def start_activity(self, c: Contact, settled: int) -> None:
        """Give a new contact its activity table and rate, and its first activity after
        ``settled``."""
        c.table = self.activity_table(c)
        c.rate = c.table.total * (0.4 + 0.6 * c.engagement) / YEAR
        clock = self.clock
        clock.at(clock.daytime(settled + int(clock.rng.expovariate(c.rate))), self.tick, c)

    def tick(self, t: int, c: Contact) -> InteractionEvent | None:
        """The contact's next spontaneous activity (Poisson, one pending tick per contact)."""
        if c.gone or c.table is None:
            return None
        clock = self.clock
        table = c.table
        act = table.acts[bisect_left(table.cum, clock.rng.random() * table.total)]
        clock.at(clock.daytime(t + int(clock.rng.expovariate(c.rate)) + MIN), self.tick, c)
        result: InteractionEvent | None = act(t, c)
        return result
