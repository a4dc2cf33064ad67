"""The simulated people: accounts and contacts, with the state the simulation keeps on each to
respect its consent, and the draws that give a person a phone number and a browser cookie."""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass

from interaction_store.demo.campaigns import NEWSLETTER
from interaction_store.demo.clock import Action, Doc
from interaction_store.demo.content import slug


class Account:
    __slots__ = ("domain", "id", "lang", "name")

    def __init__(self, id_: uuid.UUID, name: str, domain: str, lang: str) -> None:
        self.id = id_
        self.name = name
        self.domain = domain
        self.lang = lang


class Contact:
    """A contact and the state the simulation needs to respect its consent."""

    __slots__ = (
        "account",
        "allow_email",
        "anon",
        "bad_email",
        "bulk",
        "child",
        "email",
        "email_out",
        "engagement",
        "first",
        "gone",
        "hard_bounced",
        "id",
        "lang",
        "last",
        "leads",
        "linked",
        "lists",
        "phone",
        "prefill",
        "push_ok",
        "rate",
        "sms_ok",
        "subject",
        "table",
    )

    def __init__(self, id_: uuid.UUID, lang: str, first: str, last: str, anon: str) -> None:
        self.id = id_
        self.lang = lang
        self.first = first
        self.last = last
        self.anon = anon
        self.email: str | None = None
        self.phone: str | None = None
        self.account: Account | None = None
        self.child = False
        self.engagement = 1.0
        self.allow_email = True
        self.bulk = False
        self.email_out = False
        self.lists = 0
        self.sms_ok = False
        self.push_ok = False
        self.bad_email = False
        self.hard_bounced = False
        self.prefill = False
        self.linked = False  # web visits are anonymous until the cookie is linked
        self.gone = False  # merged into another contact
        self.leads = 0
        self.rate = 0.0
        self.table: ActivityTable | None = None
        self.subject: Doc = {"contact_id": id_}

    def set_account(self, account: Account | None) -> None:
        self.account = account
        self.subject = (
            {"contact_id": self.id}
            if account is None
            else {"contact_id": self.id, "account_id": account.id}
        )

    def work_email(self, account: Account) -> str:
        return f"{slug(self.first)}.{slug(self.last)}@{account.domain}"

    def web_subject(self, known: bool) -> Doc:
        """Whom web tracking sees: the contact once its cookie is linked, else the cookie."""
        return self.subject if known else {"anonymous_id": self.anon}

    def form_fields(self) -> dict[str, str]:
        fields = {"firstname": self.first, "lastname": self.last}
        if self.email:
            fields["email"] = self.email
        if self.account is not None:
            fields["company"] = self.account.name
        return fields

    # Effects of consent events, applied when the event is emitted.
    def forbid_bulk(self) -> None:
        self.bulk = False

    def allow_bulk(self) -> None:
        self.bulk = True

    def opt_out_address(self) -> None:
        self.email_out = True

    def opt_in_address(self) -> None:
        self.email_out = False

    def join_newsletter(self) -> None:
        self.lists |= NEWSLETTER

    def commercial_block(self, list_bit: int) -> str | None:
        """Why a commercial email may not go out now, or None when it may."""
        if self.child:
            return "contact is a child: no marketing email"
        if not self.bulk:
            return "bulk email not allowed"
        if self.email_out:
            return "commercial email consent opted out for this address"
        if list_bit and not self.lists & list_bit:
            return "not subscribed to the list"
        return None


@dataclass(frozen=True, slots=True)
class ActivityTable:
    """What a kind of contact does between campaigns: activities and their yearly rates."""

    acts: tuple[Action, ...]
    cum: tuple[float, ...]
    total: float  # events of activity per year, before the contact's engagement factor


def phone_number(rng: random.Random, lang: str) -> str:
    """A French or Spanish mobile number."""
    return f"+{33 if lang == 'fr' else 34}{rng.choice('67')}{rng.randrange(10**8):08d}"


def anonymous_id(rng: random.Random) -> str:
    """A browser's tracking cookie."""
    return f"{rng.getrandbits(96):024x}"
