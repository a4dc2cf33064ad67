"""Web tracking: browsing sessions of contacts and anonymous visitors, the forms they see and
submit, and the moment a browser's cookie is linked to a contact."""

from __future__ import annotations

from bisect import bisect_left

from interaction_store.demo.clock import DAY, HOUR, MIN, SEC, Doc, Part
from interaction_store.demo.content import DOWNLOADS, PAGE_CUM, PAGES, REFERRERS, SITE, language
from interaction_store.demo.people import Contact, anonymous_id
from interaction_store.events import InteractionEvent


class Web(Part):
    def anonymous_visitor(self, t: int, k: int, count: int) -> None:
        """Someone who never becomes a contact: a few anonymous sessions."""
        rng = self.rng
        clock = self.clock
        anon = anonymous_id(rng)
        lang = language(rng)
        tv = t
        for _ in range(rng.choice((1, 1, 1, 2, 2, 3, 4))):
            self.at(clock.daytime(tv), self.visit, anon, lang, None, None, None)
            tv += clock.delay(10 * DAY, 1.0, HOUR, 90 * DAY)
        if k + 1 < count:
            self.at(clock.spread(k + 1, count), self.anonymous_visitor, k + 1, count)

    def browse(self, t: int, c: Contact) -> None:
        self.visit(t, c.anon, c.lang, c, None, None)

    def visit(
        self,
        t: int,
        anon: str,
        lang: str,
        c: Contact | None,
        entry: str | None,
        referrer: str | None,
    ) -> None:
        """A browsing session: page views, a tracked link or two, maybe a form or a chat."""
        rng = self.rng
        known = c is not None and c.linked and not c.gone
        subj = c.subject if known and c is not None else {"anonymous_id": anon}
        pages = PAGES[lang]
        n = 1 + min(7, int(rng.expovariate(0.6)))
        ref = rng.choice(REFERRERS[lang]) if entry is None else referrer
        url = entry
        kind = "landing"
        tp = t
        for i in range(n):
            while url is None or (i and url == ref):  # each step shows a new page
                path, kind = pages[bisect_left(PAGE_CUM, rng.random() * PAGE_CUM[-1])]
                url = f"{SITE}/{lang}/{path}"
            secs = round(min(900.0, max(2.0, rng.lognormvariate(3.4, 0.9))), 1)
            self.view_page(tp, subj, url, secs, c, ref)
            if kind in ("pricing", "support", "product") and secs >= 30 and rng.random() < 0.22:
                self.sim.chat.offer(tp + 30 * SEC, subj, lang, kind, url, c if known else None)
            elif kind == "whitepaper":
                self._gated_form(tp + rng.randrange(3 * SEC, 20 * SEC), subj, url, c, known)
            elif rng.random() < 0.07:
                self.later(
                    tp + int(secs * 800),
                    "web.link_clicked",
                    "web-tracking",
                    subj,
                    {"url": rng.choice(DOWNLOADS[lang]), "page_url": url},
                    None,
                    c,
                )
            ref = url
            tp += int(secs * SEC) + rng.randrange(300, 4 * SEC)

    def _gated_form(self, t: int, subj: Doc, url: str, c: Contact | None, known: bool) -> None:
        rng = self.rng
        form = "form-whitepaper-ia"
        self.view_form(t, subj, form, url, c)
        if c is None or c.gone or rng.random() > 0.4:
            return
        submitted = t + rng.randrange(20 * SEC, 3 * MIN)
        checkboxes = {"allow_bulk_email": c.bulk}
        self.submit_as(submitted, subj, c, known, form, c.form_fields(), checkboxes)

    # ----------------------------------------------------------------- tracked steps

    def view_page(
        self,
        t: int,
        subj: Doc,
        url: str,
        seconds: float,
        c: Contact | None,
        referrer: str | None = None,
    ) -> None:
        page: Doc = {"url": url, "seconds_on_page": seconds}
        if referrer is not None:
            page["referrer"] = referrer
        self.later(t, "web.page_viewed", "web-tracking", subj, page, None, c)

    def view_form(self, t: int, subj: Doc, form_id: str, url: str, c: Contact | None) -> None:
        self.later(
            t, "form.viewed", "journeys", subj, {"form_id": form_id, "page_url": url}, None, c
        )

    def submit(
        self,
        t: int,
        subj: Doc,
        form_id: str,
        fields: dict[str, str],
        checkboxes: dict[str, bool],
        prefilled: bool,
        c: Contact | None,
    ) -> None:
        payload: Doc = {
            "form_id": form_id,
            "fields": fields,
            "consent_checkboxes": checkboxes,
            "prefilled": prefilled,
        }
        self.later(t, "form.submitted", "journeys", subj, payload, None, c)

    def submit_as(
        self,
        t: int,
        subj: Doc,
        c: Contact,
        known: bool,
        form_id: str,
        fields: dict[str, str],
        checkboxes: dict[str, bool],
    ) -> None:
        """A contact's form: prefilled where its browser is known and it allows prefill; an
        unknown browser becomes known by it."""
        self.submit(t, subj, form_id, fields, checkboxes, known and c.prefill, c)
        if not known:
            self.at(t + 500, self.link, c)

    def link(self, t: int, c: Contact) -> InteractionEvent | None:
        """The visitor's cookie is tied to the contact (once: later triggers find it known)."""
        if c.linked or c.gone:
            return None
        c.linked = True
        return self.event(
            t,
            "identity.linked",
            "web-tracking",
            c.subject,
            {"anonymous_id": c.anon, "contact_id": c.id},
        )
