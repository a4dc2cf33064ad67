"""Each live view's position per partition and how far it lags the log: what a caller
watches to see the views catch up."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel, Field

from interaction_store.api.auth import Caller
from interaction_store.api.parameters import Svc
from interaction_store.api.problems import problems

router = APIRouter(tags=["read"])


class PartitionPosition(BaseModel):
    topic: str
    partition: int
    position: int | None = Field(description="The last offset applied; null: none yet")
    lag: int = Field(description="Events in the log the view has not applied")


class ViewPosition(BaseModel):
    view: str
    kind: str
    lag: int = Field(description="Events not applied, over every partition")
    partitions: list[PartitionPosition]


class PositionsOut(BaseModel):
    views: list[ViewPosition]


@router.get(
    "/v1/positions",
    summary="Each live view's position per partition, and how far it lags the log",
    response_model=PositionsOut,
    responses=problems(401),
)
def positions(caller: Caller, svc: Svc) -> PositionsOut:
    live = [info for info in svc.read.registry.all() if info.status == "live"]
    lags = svc.lag()
    parts = svc.event_partitions()
    views = []
    for info in live:
        lag = lags.get(info.instance)
        if lag is None:  # promoted or dropped since the registry was read
            continue
        tracked = svc.store.tracked(info.instance, parts)
        views.append(
            ViewPosition(
                view=info.instance,
                kind=info.kind,
                lag=sum(lag.values()),
                partitions=[
                    PartitionPosition(
                        topic=t, partition=p, position=tracked.get((t, p)), lag=lag.get((t, p), 0)
                    )
                    for t, p in parts
                ],
            )
        )
    return PositionsOut(views=views)
