"""Consent state: each contact's preferences, subscription lists, contact-point consent, consent
level, child and guardian, with the audit trail of every change and a ``may_send`` decision.

Every consent-relevant event is kept as one audit row per contact. A contact's rows are folded
again in (occurred_at, event_id) order whenever one arrives: the fold resolves what each event
changed (an SMS "STOP" opts out the number the contact had at that moment) into the row's
``changes``, and writes the current state tables. ``as_of`` reads fold the ``changes`` of the rows
up to an instant, so the past is answered from the same record as the present.

``rules`` holds ``consent.toml``; ``state`` what a reader gets; ``ledger`` the fold; ``view`` the
projection and its tables; ``decision`` the readers and ``may_send``.
"""

from interaction_store.events import ConsentLevel
from interaction_store.projection.consent.decision import (
    audit_trail,
    consent_state,
    decide,
    may_send,
)
from interaction_store.projection.consent.ledger import CONSENT_TYPES, facts_of
from interaction_store.projection.consent.rules import (
    CHANNELS,
    PURPOSES,
    RULES_FILE,
    Channel,
    ChannelEnforcement,
    ChildRules,
    ConsentRules,
    ConsentRulesError,
    ContactPointRules,
    Defaults,
    Enforcement,
    MinimumLevels,
    OptOuts,
    OptOutType,
    Purpose,
)
from interaction_store.projection.consent.state import (
    ANY_POINT,
    CONTACT_FIELDS,
    LEVELS,
    PREFERENCES,
    AuditEntry,
    Check,
    ConsentState,
    Decision,
    ListMembership,
    PointConsent,
    Recorded,
    Source,
    UnknownContact,
    summary,
    when,
)
from interaction_store.projection.consent.view import Consent

__all__ = [
    "ANY_POINT",
    "CHANNELS",
    "CONSENT_TYPES",
    "CONTACT_FIELDS",
    "LEVELS",
    "PREFERENCES",
    "PURPOSES",
    "RULES_FILE",
    "AuditEntry",
    "Channel",
    "ChannelEnforcement",
    "Check",
    "ChildRules",
    "Consent",
    "ConsentLevel",
    "ConsentRules",
    "ConsentRulesError",
    "ConsentState",
    "ContactPointRules",
    "Decision",
    "Defaults",
    "Enforcement",
    "ListMembership",
    "MinimumLevels",
    "OptOutType",
    "OptOuts",
    "PointConsent",
    "Purpose",
    "Recorded",
    "Source",
    "UnknownContact",
    "audit_trail",
    "consent_state",
    "decide",
    "facts_of",
    "may_send",
    "summary",
    "when",
]
