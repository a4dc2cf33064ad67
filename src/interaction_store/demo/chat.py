"""Proactive chat on the web site: an invitation after half a minute on a page, and the
conversation with an agent when it is accepted."""

from __future__ import annotations

from interaction_store.demo.clock import SEC, Doc, Part
from interaction_store.demo.content import AGENTS, CHAT_RULES, CHAT_SCRIPT, slug
from interaction_store.demo.people import Contact

_SOURCE = "omnichannel"


class Chat(Part):
    def offer(self, t: int, subj: Doc, lang: str, kind: str, url: str, c: Contact | None) -> None:
        """A proactive invitation: accepted, closed, or left to expire after one minute."""
        rng = self.rng
        rule, trigger = CHAT_RULES[(kind, lang)]
        shown: Doc = {
            "rule_name": rule,
            "page_url": url,
            "seconds_on_page": round(30 + rng.random() * 5, 1),
            "trigger_message": trigger,
        }
        self.later(t, "chat.invitation_shown", _SOURCE, subj, shown, None, c)
        r = rng.random()
        if r < 0.45:
            # The widget closes it by itself: the one-minute timer cannot be configured.
            expired = {"seconds_shown": 60.0}
            self.later(t + 60 * SEC, "chat.invitation_expired", _SOURCE, subj, expired, None, c)
            return
        if r < 0.75:
            declined = t + rng.randrange(2 * SEC, 55 * SEC)
            self.later(
                declined, "chat.invitation_declined", _SOURCE, subj, {"rule_name": rule}, None, c
            )
            return
        ta = t + rng.randrange(3 * SEC, 55 * SEC)
        self.later(ta, "chat.invitation_accepted", _SOURCE, subj, {"rule_name": rule}, None, c)
        self._converse(ta, subj, lang, c)

    def _converse(self, t: int, subj: Doc, lang: str, c: Contact | None) -> None:
        """An agent picks up the accepted invitation; a conversation may end in a case."""
        rng = self.rng
        conv = f"conv-{rng.getrandbits(64):016x}"
        agent = rng.choice(AGENTS[lang])
        ts = t + rng.randrange(5 * SEC, 40 * SEC)
        started = {"conversation_id": conv, "agent_id": f"agent-{slug(agent)}", "proactive": True}
        self.later(ts, "chat.conversation_started", _SOURCE, subj, started, None, c)
        tm = ts
        for sender, text in CHAT_SCRIPT[lang][: rng.choice((2, 3, 4, 5, 6))]:
            tm += rng.randrange(8 * SEC, 70 * SEC)
            message = {"conversation_id": conv, "sender": sender, "text": text.format(agent=agent)}
            self.later(tm, "chat.message", _SOURCE, subj, message, None, c)
        end = tm + rng.randrange(10 * SEC, 60 * SEC)
        ended = {"conversation_id": conv, "duration_seconds": (end - ts) / SEC}
        self.later(end, "chat.conversation_ended", _SOURCE, subj, ended, None, c)
        if c is not None and rng.random() < 0.15:
            self.at(end + SEC, self.sim.activities.open_case, c, "chat")
