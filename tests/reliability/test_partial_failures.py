"""BatchAddClusterNodes answering with a `Failed` entry, for every ErrorCode the API defines: the
refused group backs off and the same round falls back to the next group, with nothing doubled.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import anyio
import botocore.session
import pytest
from daemon_harness import ON_DEMAND_AZ1, SPOT_AZ1, Harness, running, wait_for, web_pod
from faulty import all_running, launched

from hpscaler.backends.types import AddFailure, AddResult
from hpscaler.catalogue import Catalogue
from hpscaler.config import LoadedConfig
from hpscaler.provisioning.batching import AddRequest


def error_codes() -> list[str]:
    """`BatchAddClusterNodesErrorCode` from botocore's SageMaker model: every code there is."""
    model = botocore.session.get_session().get_service_model("sagemaker")
    shape = model.operation_model("BatchAddClusterNodes").output_shape
    return list(shape.members["Failed"].member.members["ErrorCode"].enum)


class RefusingGroup:
    """HyperPod refusing every request for one group with `code`; other groups go through."""

    def __init__(self, inner: Any, group: str, code: str) -> None:
        self.inner = inner
        self.group = group
        self.code = code
        self.refused = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def batch_add_nodes(self, request: AddRequest) -> AddResult:
        refused = [e for e in request.entries if e.group == self.group]
        rest = tuple(e for e in request.entries if e.group != self.group)
        failed = tuple(AddFailure(self.group, self.code, e.count, f"refused: {self.code}") for e in refused)
        self.refused += len(failed)
        if not rest:
            return AddResult((), failed)
        result: AddResult = await self.inner.batch_add_nodes(replace(request, entries=rest))
        return AddResult(result.successful, result.failed + failed)


@pytest.mark.looptime
@pytest.mark.parametrize("code", error_codes())
async def test_each_failed_error_code_falls_back_in_the_same_round(
    config: LoadedConfig, catalogue: Catalogue, code: str
) -> None:
    async with running(config, catalogue, start_daemon=False) as h:
        hyperpod = RefusingGroup(h.world.hyperpod, SPOT_AZ1, code)
        daemon = h.new_daemon(hyperpod=hyperpod)
        await h.tg.start(daemon.run)
        for i in range(6):
            h.world.kubernetes.add_pod(web_pod(f"w-{i}", cpu=2000))
        await wait_for(lambda: all_running(h, 6), 600)
        assert hyperpod.refused == 1  # once: the group then backs off
        assert {groups_of(h)} == {ON_DEMAND_AZ1}
        assert daemon.ctx.unavailable.is_unavailable(SPOT_AZ1, "us-west-2a", h.world.clock.now())
        await anyio.sleep(300)
        assert launched(h) == 2


def groups_of(h: Harness) -> str:
    (group,) = {h.group_of(p) for p in h.running_pods()}
    return group
