"""The lead-scores view: each lead scored by each scoring model from its contacts' interactions,
explainable, with a ``lead.sales_ready`` outbox written in the same transaction.

``model``, ``attributes`` and ``files`` hold the scoring-model format and its loading; ``points``
the scoring arithmetic; ``leads`` which contacts score a lead; ``scores`` a lead's score and
outbox rows; ``view`` the projection; ``read`` the readers; ``queue`` a seller's queue of
sales-ready leads; ``outbox`` publishing the outbox.
"""

from interaction_store.projection.merges import MAX_MERGE_HOPS, merged_groups
from interaction_store.projection.scoring.files import (
    load_models,
    model_files,
    models_folder,
    read_models,
)
from interaction_store.projection.scoring.leads import (
    ANONYMOUS,
    KIND,
    NO_PARENT,
    NOT_CREATED,
    PROFILES_SUFFIX,
    LeadContext,
    lead_contexts,
    leads_of,
    load_matches,
    subject_key,
)
from interaction_store.projection.scoring.model import UNSCORED_TYPES, CompiledRule, ScoringModel
from interaction_store.projection.scoring.outbox import publish_outbox
from interaction_store.projection.scoring.points import LeadMatches, Match, micros
from interaction_store.projection.scoring.queue import (
    QueuedLead,
    SalesReadyPage,
    sales_ready_leads,
)
from interaction_store.projection.scoring.read import (
    WITHHELD,
    ExplainedEvent,
    Explanation,
    LeadScore,
    RuleSummary,
    SetAsideEvent,
    Shown,
    UnknownLead,
    UnknownModel,
    Withheld,
    explain,
    lead_scores,
    stored_models,
)
from interaction_store.projection.scoring.scores import (
    SALES_READY_NAMESPACE,
    SALES_READY_SOURCE,
    sales_ready_event_id,
)
from interaction_store.projection.scoring.view import LeadScores, ModelsChanged

__all__ = [
    "ANONYMOUS",
    "KIND",
    "MAX_MERGE_HOPS",
    "NOT_CREATED",
    "NO_PARENT",
    "PROFILES_SUFFIX",
    "SALES_READY_NAMESPACE",
    "SALES_READY_SOURCE",
    "UNSCORED_TYPES",
    "WITHHELD",
    "CompiledRule",
    "ExplainedEvent",
    "Explanation",
    "LeadContext",
    "LeadMatches",
    "LeadScore",
    "LeadScores",
    "Match",
    "ModelsChanged",
    "QueuedLead",
    "RuleSummary",
    "SalesReadyPage",
    "ScoringModel",
    "SetAsideEvent",
    "Shown",
    "UnknownLead",
    "UnknownModel",
    "Withheld",
    "explain",
    "lead_contexts",
    "lead_scores",
    "leads_of",
    "load_matches",
    "load_models",
    "merged_groups",
    "micros",
    "model_files",
    "models_folder",
    "publish_outbox",
    "read_models",
    "sales_ready_event_id",
    "sales_ready_leads",
    "stored_models",
    "subject_key",
]
