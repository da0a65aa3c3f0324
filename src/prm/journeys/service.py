"""The journeys domain's published interface: what routers, jobs, subscribers and other modules call.

The rules live in capability modules: `definitions` (drafts, publishing, versions), `instances`
(enrolment, stages, exits, timeline, reacting to events) and `execution` (step runs and their jobs).
Every function acting for a caller takes `who: Principal` right after the session.
"""

from __future__ import annotations

from prm.journeys.definitions import (
    JourneyFilters,
    add_stage,
    create,
    definition_of,
    draft_of,
    get,
    list_journeys,
    publication_problems,
    publish,
    retire,
    status_of,
    update,
    version,
    versions,
)
from prm.journeys.execution import RUN_STEP_JOB, run_step
from prm.journeys.instances import (
    InstanceFilters,
    advance,
    allowed_transitions,
    enrol_by_hand,
    execute_stage,
    exit_instance,
    list_instances,
    react,
    timeline,
)
from prm.journeys.instances import get as get_instance

__all__ = [
    "RUN_STEP_JOB",
    "InstanceFilters",
    "JourneyFilters",
    "add_stage",
    "advance",
    "allowed_transitions",
    "create",
    "definition_of",
    "draft_of",
    "enrol_by_hand",
    "execute_stage",
    "exit_instance",
    "get",
    "get_instance",
    "list_instances",
    "list_journeys",
    "publication_problems",
    "publish",
    "react",
    "retire",
    "run_step",
    "status_of",
    "timeline",
    "update",
    "version",
    "versions",
]
