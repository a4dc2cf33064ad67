"""The timeline view: each contact's, lead's and visitor's interactions, newest first, with a
preview of what was sent and delivery reports folded into the message they report on.

``settings`` holds ``timeline.toml``; ``view`` the projection; ``query`` reading pages of it.
"""

from interaction_store.projection.timeline.query import (
    MAX_LIMIT,
    TimelineEntry,
    TimelinePage,
    decode_cursor,
    encode_cursor,
)
from interaction_store.projection.timeline.settings import (
    SENT,
    SETTINGS_FILE,
    TimelineConfigError,
    TimelineSettings,
)
from interaction_store.projection.timeline.view import Timeline

__all__ = [
    "MAX_LIMIT",
    "SENT",
    "SETTINGS_FILE",
    "Timeline",
    "TimelineConfigError",
    "TimelineEntry",
    "TimelinePage",
    "TimelineSettings",
    "decode_cursor",
    "encode_cursor",
]
