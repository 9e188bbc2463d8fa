"""Faults over the wire: the real backends against moto and the fake API server, with a `Chaos`
proxy between them and the daemon. AWS calls fail at random (throttling, 5xx, timeouts, resets),
the first BatchAddClusterNodes takes effect but its answer is lost, and the watch stream drops
every few events. The cluster still gets exactly the nodes it needs.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import moto_ext
from aws_harness import CLUSTER, REGION, Admin
from e2e_harness import WEB, Cloud, batch_adds, running, scale_up, web_pod, write_config

from hpscaler.backends.registry import BackendSet, open_backends
from hpscaler.config import LoadedConfig
from hpscaler.service.run import BackendOpener
from hpscaler.testing import FakeApiServer
from hpscaler.testing.chaos import Chaos, FaultRates


def chaotic(chaos: Chaos) -> BackendOpener:
    """Open the configured backends and put each behind `chaos`."""

    @asynccontextmanager
    async def opener(config: LoadedConfig) -> AsyncIterator[BackendSet]:
        async with open_backends(config) as real:
            yield BackendSet(
                kubernetes=chaos.wrap("kubernetes", real.kubernetes),
                hyperpod=chaos.wrap("hyperpod", real.hyperpod),
                scores=chaos.wrap("placement", real.scores),
                interruptions=chaos.wrap("interruptions", real.interruptions),
                prices=chaos.wrap("prices", real.prices),
            )

    return opener


async def test_a_lost_batch_add_answer_and_flaky_aws_still_give_exactly_the_needed_nodes(
    tmp_path: Path, admin: Admin, cloud: Cloud, kube: FakeApiServer
) -> None:
    for name in WEB:
        kube.create(web_pod(name))
    config = await write_config(tmp_path / "config", admin, cloud, kube)
    chaos = Chaos(
        3,
        rates={
            "hyperpod": FaultRates(fail=0.3),
            "placement": FaultRates(fail=0.5),
            "prices": FaultRates(fail=0.5),
        },
        lose_answers={"batch_add_nodes": 1},
        drop_watch_every=10,
    )
    async with running(config, chaotic(chaos)) as service:
        # scale_up checks the first request as it reached moto, makes its two nodes join and the
        # pods bind, then runs a round that must find nothing left to do.
        await scale_up(kube, service)
        assert chaos.counts()["lost-answer"] == 1
        assert len(moto_ext.cluster_nodes(REGION, CLUSTER)) == 2  # no second pair for the lost answer
        tokens = {r.params["ClientToken"] for r in batch_adds()}
        assert len(tokens) == 1  # any repeat was the same decision, which HyperPod replays
    assert len(moto_ext.cluster_nodes(REGION, CLUSTER)) == 2
