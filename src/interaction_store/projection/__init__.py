"""Projections: fold the log into views, effectively once, in any interleaving."""

from interaction_store.projection.base import Projection, view_checksum
from interaction_store.projection.runner import ProjectionRunner, RunStats

__all__ = ["Projection", "ProjectionRunner", "RunStats", "view_checksum"]
