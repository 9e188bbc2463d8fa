"""A pod the daemon cannot use is skipped with a reason the user sees: one FailedScaling Event."""

from __future__ import annotations

from contextlib import aclosing

from kube_harness import eventually, next_event, pod_manifest, until_synced

from hpscaler.kube.backend import KubernetesBackend
from hpscaler.testing import FakeApiServer


def failed_scaling(server: FakeApiServer) -> list[dict[str, object]]:
    return [e for e in server.list("events", "default") if e["reason"] == "FailedScaling"]


async def test_an_unusable_pod_gets_one_failed_scaling_event_and_the_stream_goes_on(
    server: FakeApiServer, backend: KubernetesBackend
) -> None:
    # 1e30 cores is a well-formed quantity, but larger than Kubernetes' int64 amounts.
    server.create(pod_manifest("huge", cpu="1e30"))
    server.create(pod_manifest("good"))
    async with aclosing(backend.watch()) as events:
        synced = await until_synced(events)
        assert [e.pod.key for e in synced if e.pod] == ["default/good"]
        await eventually(lambda: len(failed_scaling(server)) == 1)
        (event,) = failed_scaling(server)
        assert event["type"] == "Warning"
        assert event["involvedObject"]["name"] == "huge"  # type: ignore[index]
        assert "cpu" in str(event["message"]) and "larger than Kubernetes allows" in str(event["message"])
        # The same pod changing, with the same fault, is not reported again; other pods still flow.
        server.patch("pods", "huge", {"metadata": {"labels": {"touched": "yes"}}}, "default")
        server.create(pod_manifest("fine"))
        assert (await next_event(events)).pod.key == "default/fine"  # type: ignore[union-attr]
    assert len(failed_scaling(server)) == 1
