"""Sales and service activities: calls, appointments and tasks with customers, and service cases
from opening to resolution, with the emails that acknowledge and close them."""

from __future__ import annotations

from bisect import bisect_left

from interaction_store.demo.campaigns import CASE_ACK, CASE_DONE
from interaction_store.demo.clock import DAY, HOUR, MIN, SEC, Doc, Part
from interaction_store.demo.content import (
    APPOINTMENTS,
    CALL_SUBJECTS,
    CASE_ORIGIN_CUM,
    CASE_ORIGINS,
    CASES,
    TASKS,
)
from interaction_store.demo.people import Contact

_SERVICE = "customer-service"
# How long a case takes to resolve, typically, by priority.
_RESOLUTION = {"high": 4 * HOUR, "normal": DAY, "low": 3 * DAY}


class Activities(Part):
    def sales(self, t: int, c: Contact) -> None:
        """A salesperson's call, appointment or task with the contact."""
        rng = self.rng
        clock = self.clock
        r = rng.random()
        lang = c.lang
        if r < 0.6:
            direction = "outbound" if rng.random() < 0.75 else "inbound"
            subject = rng.choice(CALL_SUBJECTS[lang])
            duration = clock.delay(5 * MIN, 0.8, 20 * SEC, HOUR)
            self.phone_call(t, "sales", c.subject, direction, subject, duration, c)
        elif r < 0.75:
            day = clock.midnight(t)
            starts = day + rng.randrange(1, 15) * DAY + rng.randrange(8, 17) * HOUR
            ends = starts + rng.choice((30, 45, 60, 90)) * MIN
            appointment = {
                "subject": rng.choice(APPOINTMENTS[lang]),
                "starts_at": clock.when(starts),
                "ends_at": clock.when(ends),
            }
            self.later(t, "activity.appointment", "sales", c.subject, appointment, None, c)
        else:
            task = {
                "subject": rng.choice(TASKS[lang]),
                "due_at": clock.when(t + rng.randrange(1, 11) * DAY),
            }
            self.later(t, "activity.task", "sales", c.subject, task, None, c)

    def phone_call(
        self,
        t: int,
        source: str,
        subj: Doc,
        direction: str,
        subject: str,
        duration: int,
        c: Contact | None = None,
    ) -> None:
        payload = {
            "direction": direction,
            "subject": subject,
            "duration_seconds": float(duration // SEC),
        }
        self.later(t, "activity.phone_call", source, subj, payload, None, c)

    def service(self, t: int, c: Contact) -> None:
        """The contact asks customer service for help, through one of its channels."""
        origin = CASE_ORIGINS[bisect_left(CASE_ORIGIN_CUM, self.rng.random() * 100)]
        self.open_case(t, c, origin)

    def open_case(self, t: int, c: Contact, origin: str) -> None:
        rng = self.rng
        clock = self.clock
        if c.gone:
            return
        case_id = f"CAS-{rng.randrange(10**5):05d}-{rng.getrandbits(24):06X}"
        title, resolution = rng.choice(CASES[c.lang])
        priority = rng.choices(("low", "normal", "high"), (30, 55, 15))[0]
        if origin == "phone":
            duration = clock.delay(7 * MIN, 0.7, MIN, HOUR)
            self.phone_call(t, _SERVICE, c.subject, "inbound", title, duration, c)
        opened = {"case_id": case_id, "title": title, "priority": priority, "origin": origin}
        self.later(t + 2 * SEC, "activity.case_opened", _SERVICE, c.subject, opened, None, c)
        ctx = {"case": case_id}
        send = self.sim.emails.send
        self.at(t + rng.randrange(MIN, 10 * MIN), send, c, CASE_ACK, ctx)
        if rng.random() < 0.9:
            done = clock.daytime(t + clock.delay(_RESOLUTION[priority], 1.0, 20 * MIN, 30 * DAY))
            resolved = {"case_id": case_id, "resolution": resolution}
            self.later(done, "activity.case_resolved", _SERVICE, c.subject, resolved, None, c)
            self.at(done + 2 * MIN, send, c, CASE_DONE, ctx)
