"""ProvisioningRequests served by the daemon on the fake world: each class and each condition."""

from __future__ import annotations

import pytest
from daemon_harness import C5_2X, ON_DEMAND_AZ1, SPOT_AZ1, ZONE_A, Harness, running, wait_for

from hpscaler.catalogue import Catalogue
from hpscaler.config import LoadedConfig
from hpscaler.daemon.events import ProvisioningRequestStep
from hpscaler.model import CapacityType, Pod
from hpscaler.provisioning.provreq import (
    ACCEPTED,
    BEST_EFFORT_ATOMIC,
    BOOKING_EXPIRED,
    CAPACITY_REVOKED,
    CHECK_CAPACITY,
    CONSUME_ANNOTATION,
    FAILED,
    PROVISIONED,
    PodSet,
    ProvisioningRequest,
)

WORKER = Pod("ml", "worker", {"cpu": 7000, "memory": 1024**3})


def submit(h: Harness, name: str, count: int, cls: str = BEST_EFFORT_ATOMIC, **params: str) -> str:
    request = ProvisioningRequest("ml", name, cls, (PodSet(f"{name}-worker", count),), params, uid=name)
    h.world.kubernetes.provisioning.submit(request, {f"{name}-worker": WORKER})
    return request.key


def state(h: Harness, key: str, kind: str) -> tuple[str, str] | None:
    request = h.world.kubernetes.provisioning.get(key)
    found = request.condition(kind) if request is not None else None
    return (found.status, found.reason) if found is not None else None


def requested_groups(h: Harness) -> set[str]:
    return {e.group for request in h.world.hyperpod.add_requests for e in request.entries}


def ready_nodes(h: Harness) -> int:
    return sum(1 for n in h.world.kubernetes.nodes() if n.ready)


@pytest.mark.looptime
async def test_atomic_request_provisioned_when_all_nodes_joined_then_booking_expires(
    seed_config: LoadedConfig, catalogue: Catalogue
) -> None:
    async with running(seed_config, catalogue) as h:
        key = submit(h, "train", 3)
        await wait_for(lambda: state(h, key, PROVISIONED) == ("False", "CapacityIsBeingProvisioned"), 60)
        assert state(h, key, ACCEPTED) == ("True", "Accepted")
        assert len(h.ctx.inflight) == 3  # all three asked for at once
        await wait_for(lambda: state(h, key, PROVISIONED) == ("True", "CapacityIsProvisioned"), 1200)
        assert ready_nodes(h) == 3
        # The pods never come: consolidation leaves the booked nodes alone until the booking expires.
        await wait_for(lambda: state(h, key, BOOKING_EXPIRED) is not None, 660)
        assert state(h, key, BOOKING_EXPIRED) == ("True", "CapacityReservationTimeExpired")
        assert ready_nodes(h) == 3 and not h.world.kubernetes.node_removals
        # Released: the empty nodes are consolidated away.
        await wait_for(lambda: ready_nodes(h) == 0, 900)


@pytest.mark.looptime
async def test_consumers_run_on_the_booked_nodes_without_new_ones(
    seed_config: LoadedConfig, catalogue: Catalogue
) -> None:
    async with running(seed_config, catalogue) as h:
        key = submit(h, "train", 2)
        await wait_for(lambda: state(h, key, PROVISIONED) == ("True", "CapacityIsProvisioned"), 1200)
        before = len(h.world.hyperpod.nodes())
        for i in range(2):
            h.world.kubernetes.add_pod(
                Pod("ml", f"train-{i}", dict(WORKER.requests), annotations={CONSUME_ANNOTATION: "train"})
            )
        await wait_for(lambda: sum(1 for p in h.running_pods() if p.namespace == "ml") == 2, 120)
        await wait_for(lambda: not h.ctx.batcher.open, 60)
        assert len(h.world.hyperpod.nodes()) == before


@pytest.mark.looptime
async def test_check_capacity_answers_without_provisioning(
    seed_config: LoadedConfig, catalogue: Catalogue
) -> None:
    async with running(seed_config, catalogue, initial={SPOT_AZ1: 2}) as h:
        await wait_for(lambda: ready_nodes(h) == 2, 1200)
        fits = submit(h, "fits", 2, CHECK_CAPACITY)
        await wait_for(lambda: state(h, fits, PROVISIONED) is not None, 60)
        assert state(h, fits, PROVISIONED) == ("True", "CapacityIsFound")
        # The first check booked both nodes: the next one finds nothing, and nothing is launched.
        wait = submit(h, "wait", 1, CHECK_CAPACITY)
        once = submit(h, "once", 1, CHECK_CAPACITY, noRetry="true")
        await wait_for(
            lambda: state(h, wait, PROVISIONED) is not None and state(h, once, FAILED) is not None, 60
        )
        assert state(h, wait, PROVISIONED) == ("False", "CapacityIsNotFound")
        assert state(h, once, FAILED) == ("True", "CapacityIsNotFound")
        assert not h.world.hyperpod.add_requests and ready_nodes(h) == 2
        # A booked node's instance is reclaimed without notice: the capacity is revoked.
        instance = next(n.instance_id for n in h.world.hyperpod.nodes())
        h.world.hyperpod.interrupt(instance, notice=False)
        await wait_for(lambda: state(h, fits, CAPACITY_REVOKED) is not None, 60)
        assert state(h, fits, CAPACITY_REVOKED) == ("True", "CapacityLost")


@pytest.mark.looptime
async def test_partial_capacity_is_released_entirely(seed_config: LoadedConfig, catalogue: Catalogue) -> None:
    capacity = {(C5_2X, ZONE_A, CapacityType.SPOT): 2, (C5_2X, ZONE_A, CapacityType.ON_DEMAND): 0}
    async with running(seed_config, catalogue, capacity=capacity) as h:
        key = submit(h, "train", 3)
        await wait_for(lambda: state(h, key, PROVISIONED) == ("False", "CapacityIsNotFound"), 1800)
        request = h.world.kubernetes.provisioning.get(key)
        assert request is not None
        condition = request.condition(PROVISIONED)
        assert condition is not None and "released" in condition.message
        assert h.ctx.stats.events.count(ProvisioningRequestStep, step="released") >= 1
        # Nothing stays for it: no launch in flight, and the nodes that did come are consolidated.
        await wait_for(lambda: not h.ctx.inflight and ready_nodes(h) == 0, 1800)
        assert state(h, key, PROVISIONED) != ("True", "CapacityIsProvisioned")
        # It tried to finish in the zone (On-Demand) before giving up.
        assert requested_groups(h) == {SPOT_AZ1, ON_DEMAND_AZ1}


@pytest.mark.looptime
async def test_missing_template_fails_the_request(seed_config: LoadedConfig, catalogue: Catalogue) -> None:
    async with running(seed_config, catalogue) as h:
        request = ProvisioningRequest("ml", "broken", BEST_EFFORT_ATOMIC, (PodSet("nope", 1),), uid="b")
        h.world.kubernetes.provisioning.submit(request)
        await wait_for(lambda: state(h, request.key, FAILED) is not None, 60)
        assert state(h, request.key, FAILED) == ("True", "FailedToCreatePods")
        assert not h.ctx.inflight


@pytest.mark.looptime
async def test_partial_capacity_is_finished_in_the_same_zone(
    seed_config: LoadedConfig, catalogue: Catalogue
) -> None:
    capacity = {(C5_2X, ZONE_A, CapacityType.SPOT): 2}  # On-Demand in the zone has room
    async with running(seed_config, catalogue, capacity=capacity) as h:
        key = submit(h, "train", 3)
        await wait_for(lambda: state(h, key, PROVISIONED) == ("True", "CapacityIsProvisioned"), 1800)
        nodes = [n for n in h.world.kubernetes.nodes() if n.ready]
        assert len(nodes) == 3 and {n.zone for n in nodes} == {ZONE_A}
        assert sorted(n.instance_group for n in nodes) == [ON_DEMAND_AZ1, SPOT_AZ1, SPOT_AZ1]
        assert h.ctx.stats.events.count(ProvisioningRequestStep, step="released") == 0
