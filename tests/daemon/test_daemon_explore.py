import anyio
import pytest

from daemon_harness import running, web_pod, wait_for


@pytest.mark.looptime
async def test_explore(seed_config, catalogue) -> None:
    async with running(seed_config, catalogue) as h:
        for i in range(10):
            h.world.kubernetes.add_pod(web_pod(f"w{i}", cpu=2000))
        t = await wait_for(lambda: len(h.running_pods()) == 10, 600)
        print("running after", t)
        print(h.world.hyperpod.calls, h.world.hyperpod.add_bodies)
        print(dict(h.ctx.stats.counters))
        print([(n.name, n.instance_group) for n in h.world.kubernetes.nodes()])
        await anyio.sleep(300)
        print(dict(h.ctx.stats.counters))
        print([(n.name, n.instance_group, len(n.pods)) for n in h.world.kubernetes.nodes()])
