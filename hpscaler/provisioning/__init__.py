"""Pure provisioning decisions: API request batching, launch review, registration, capacity bookings.

Rules of this package:
- Pure, like `hpscaler.scheduling`: decisions come back as data (the BatchAddClusterNodes requests
  to send, the launches to cancel, the labels and taints to patch); the daemon makes the calls.
- No I/O, no clock, no config loading (the import-linter contract in pyproject.toml enforces it).
- HyperPod's API limits are constants here (`MAX_NODES_PER_CALL`, `MAX_GROUPS_PER_CALL`,
  `MAX_LOGICAL_IDS_PER_DELETE`), and every add request carries a `client_token` derived from the
  decision, so a restart never provisions twice.
"""

from typing import TYPE_CHECKING

from hpscaler.lazy import lazy_exports

if TYPE_CHECKING:
    from hpscaler.provisioning.batching import (
        MAX_GROUPS_PER_CALL,
        MAX_LOGICAL_IDS_PER_DELETE,
        MAX_NODES_PER_CALL,
        AddRequest,
        GroupAddition,
        batch_additions,
        batch_deletions,
        client_token,
    )
    from hpscaler.provisioning.bookings import place_bookings, review, with_holders
    from hpscaler.provisioning.capacity import Attempt, Decision, confirm, decide
    from hpscaler.provisioning.dryrun import plan_requests, requests_table, with_final_nodes
    from hpscaler.provisioning.gangs import GangLaunches, gang_launches, launch_zones, stranded_launches
    from hpscaler.provisioning.launches import InFlight, LaunchReview, review_launches
    from hpscaler.provisioning.provreq import (
        PodSet,
        ProvisioningRequest,
        RequestCondition,
        RequestSet,
        StatusChange,
        merge_conditions,
        request_pods,
    )
    from hpscaler.provisioning.registration import (
        UNREGISTERED_TAINT_KEY,
        instance_type_of,
        is_registered,
        match_nodes,
    )

__all__ = [
    "MAX_GROUPS_PER_CALL",
    "MAX_LOGICAL_IDS_PER_DELETE",
    "MAX_NODES_PER_CALL",
    "UNREGISTERED_TAINT_KEY",
    "AddRequest",
    "Attempt",
    "Decision",
    "GangLaunches",
    "GroupAddition",
    "InFlight",
    "LaunchReview",
    "PodSet",
    "ProvisioningRequest",
    "RequestCondition",
    "RequestSet",
    "StatusChange",
    "batch_additions",
    "batch_deletions",
    "client_token",
    "confirm",
    "decide",
    "gang_launches",
    "instance_type_of",
    "is_registered",
    "launch_zones",
    "match_nodes",
    "merge_conditions",
    "place_bookings",
    "plan_requests",
    "request_pods",
    "requests_table",
    "review",
    "review_launches",
    "stranded_launches",
    "with_final_nodes",
    "with_holders",
]

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "batching": (
            "MAX_GROUPS_PER_CALL",
            "MAX_LOGICAL_IDS_PER_DELETE",
            "MAX_NODES_PER_CALL",
            "AddRequest",
            "GroupAddition",
            "batch_additions",
            "batch_deletions",
            "client_token",
        ),
        "bookings": ("place_bookings", "review", "with_holders"),
        "capacity": ("Attempt", "Decision", "confirm", "decide"),
        "dryrun": ("plan_requests", "requests_table", "with_final_nodes"),
        "gangs": ("GangLaunches", "gang_launches", "launch_zones", "stranded_launches"),
        "launches": ("InFlight", "LaunchReview", "review_launches"),
        "provreq": (
            "PodSet",
            "ProvisioningRequest",
            "RequestCondition",
            "RequestSet",
            "StatusChange",
            "merge_conditions",
            "request_pods",
        ),
        # `registration()` itself is not exported: the name is its module's.
        "registration": ("UNREGISTERED_TAINT_KEY", "instance_type_of", "is_registered", "match_nodes"),
    },
)
