"""Marketing events: each language's calendar of summits, regional meetings and webinars, the
invitations to them, and registration, check-in and attendance of the contacts who come."""

from __future__ import annotations

from bisect import bisect_left
from dataclasses import dataclass
from typing import TYPE_CHECKING

from interaction_store.demo.campaigns import EVENT_CONFIRMATION, EVENT_INVITATION, EVENTS
from interaction_store.demo.clock import DAY, HOUR, MIN, SEC, Part
from interaction_store.demo.content import EVENT_KINDS, EVENTS_PAGE, MONTHS, PAGES, SITE, slug
from interaction_store.demo.people import Contact
from interaction_store.events import InteractionEvent

if TYPE_CHECKING:
    from interaction_store.demo.simulation import Simulation

_FORM = "form-event-registration"


@dataclass(frozen=True, slots=True)
class MarketingEvent:
    at: int  # start, in simulation milliseconds
    invite_at: int
    ref: str
    name: str
    date_text: str
    in_person: bool
    sessions: tuple[tuple[str, str], ...]  # (session id, name)

    @property
    def mail_context(self) -> dict[str, str]:
        """What the invitation and confirmation emails fill in."""
        return {"event": self.name, "date": self.date_text}


class MarketingEvents(Part):
    def __init__(self, sim: Simulation) -> None:
        super().__init__(sim)
        self.calendars = {lang: self._calendar(lang) for lang in ("fr", "es")}
        self.invite_times = {
            lang: [e.invite_at for e in evs] for lang, evs in self.calendars.items()
        }

    def _calendar(self, lang: str) -> list[MarketingEvent]:
        clock = self.clock
        rng = self.rng
        out: list[MarketingEvent] = []
        t = rng.randrange(5 * DAY, 25 * DAY)
        i = rng.randrange(len(EVENT_KINDS))
        while t < clock.end + 30 * DAY:
            kind, fr_name, es_name, sessions = EVENT_KINDS[i % len(EVENT_KINDS)]
            in_person = kind != "webinar"
            start_hour = 9 if in_person else 11
            at = clock.midnight(t) + start_hour * HOUR
            when = clock.when(at)
            name = fr_name if lang == "fr" else es_name
            if kind == "summit":
                name = f"{name} {when.year}"
            month = MONTHS[lang][when.month - 1]
            date_text = (
                f"{when.day} {month} {when.year}"
                if lang == "fr"
                else f"{when.day} de {month} de {when.year}"
            )
            ref = f"evt-{when:%Y%m%d}-{slug(name)}"
            sess = tuple(
                (f"{ref}-s{k + 1}", fr if lang == "fr" else es)
                for k, (fr, es) in enumerate(sessions)
            )
            lead = (21 if in_person else 10) * DAY
            out.append(MarketingEvent(at, at - lead, ref, name, date_text, in_person, sess))
            t += rng.randrange(35 * DAY, 60 * DAY)
            i += 1
        return out

    # ----------------------------------------------------------------- invitations

    def first_invitation(self, c: Contact, settled: int) -> None:
        self._schedule_invitation(c, bisect_left(self.invite_times[c.lang], settled))

    def _schedule_invitation(self, c: Contact, k: int) -> None:
        calendar = self.calendars[c.lang]
        if k < len(calendar):
            self.at(calendar[k].invite_at + self.rng.randrange(3 * HOUR), self.invite, c, k)

    def invite(self, t: int, c: Contact, k: int) -> InteractionEvent | None:
        rng = self.rng
        clock = self.clock
        if c.gone:
            return None
        self._schedule_invitation(c, k + 1)
        ev = self.calendars[c.lang][k]
        sent = self.sim.emails.send(t, c, EVENT_INVITATION, ev.mail_context)
        p = 0.05 + 0.06 * c.engagement if sent is not None else 0.01
        if rng.random() < p:
            reg = clock.daytime(t + clock.delay(2 * DAY, 1.0, HOUR, 15 * DAY))
            if reg < ev.at - HOUR:
                self.at(reg, self.register, c, ev)
        return sent

    # ----------------------------------------------------------------- attendance

    def register_for_next(self, t: int, c: Contact) -> None:
        """A contact met at an event's stand signs up for the next one."""
        k = bisect_left(self.invite_times[c.lang], t)
        if k < len(self.calendars[c.lang]):
            self.at(t + 5 * SEC, self.register, c, self.calendars[c.lang][k])

    def register(self, t: int, c: Contact, ev: MarketingEvent) -> None:
        rng = self.rng
        if c.gone:
            return
        web = self.sim.web
        lang = c.lang
        known = c.linked
        subj = c.web_subject(known)
        url = f"{SITE}/{lang}/{PAGES[lang][EVENTS_PAGE][0]}/{ev.ref.split('-', 2)[2]}"
        web.view_page(t, subj, url, round(20 + rng.random() * 120, 1), c)
        web.view_form(t + 3 * SEC, subj, _FORM, url, c)
        submitted = t + rng.randrange(30 * SEC, 3 * MIN)
        checkboxes = {"list-events": bool(c.lists & EVENTS)}
        web.submit_as(submitted, subj, c, known, _FORM, c.form_fields(), checkboxes)
        ref = {"event_ref": ev.ref, "event_name": ev.name}
        corr = {"campaign_id": ev.ref}
        self.later(submitted + SEC, "event.registered", "journeys", c.subject, ref, corr, c)
        self.at(submitted + MIN, self.sim.emails.send, c, EVENT_CONFIRMATION, ev.mail_context)
        if rng.random() < 0.1:
            cancel = self.clock.daytime(submitted + rng.randrange(HOUR, max(2 * HOUR, ev.at - t)))
            if cancel < ev.at:
                self.later(
                    cancel, "event.registration_cancelled", "journeys", c.subject, ref, corr, c
                )
                return
        if ev.in_person:
            if rng.random() < 0.3:
                return  # registered, never came
            arrived = ev.at - rng.randrange(5 * MIN, 45 * MIN)
            self.later(arrived, "event.checked_in", "journeys", c.subject, ref, corr, c)
        for k, (session_id, session_name) in enumerate(ev.sessions):
            if rng.random() < (0.75 if ev.in_person else 0.55):
                attended = {**ref, "session_id": session_id, "session_name": session_name}
                at = ev.at + k * 75 * MIN + rng.randrange(5 * MIN)
                self.later(at, "event.session_attended", "journeys", c.subject, attended, corr, c)
