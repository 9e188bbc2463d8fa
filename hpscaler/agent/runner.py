"""The agent's loop: poll IMDS, report the most urgent notice on the Node once, back off when IMDS is away.

Memory stays bounded: the loop keeps only the notice it last reported. The poll interval is
bounded too (1 to 60 s; AWS recommends checking for Spot notices every 5 s).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, Protocol

import anyio
import structlog
from kubernetes_asyncio import client

from hpscaler.agent.imds import ImdsClient, ImdsUnavailable
from hpscaler.agent.notice import NOTICE_ANNOTATION, Notice

log = structlog.get_logger("hpscaler.agent")
MAX_BACKOFF_SECONDS = 60.0
MERGE_PATCH = "application/merge-patch+json"


class NodeReporter(Protocol):
    """Writes the notice annotation on the agent's own Node."""

    async def report(self, value: str) -> None:
        """Set the annotation to `value`."""
        ...


class ApiNodeReporter:
    """`NodeReporter` through the API server: one merge patch of the Node's annotations."""

    def __init__(self, api: client.ApiClient, node_name: str) -> None:
        self._core: Any = client.CoreV1Api(api)  # _content_type is not in the stubs
        self.node_name = node_name

    async def report(self, value: str) -> None:
        """Merge-patch `metadata.annotations` of the agent's own Node."""
        body = {"metadata": {"annotations": {NOTICE_ANNOTATION: value}}}
        await self._core.patch_node(self.node_name, body, _content_type=MERGE_PATCH)


def most_urgent(notices: list[Notice]) -> Notice | None:
    """The notice that matters: the most urgent kind, then the earliest deadline."""
    if not notices:
        return None
    return max(notices, key=lambda n: (n.urgency(), -(n.deadline or float("inf"))))


class Agent:
    """Polls IMDS every `poll_seconds` and reports new or more urgent notices."""

    def __init__(
        self,
        imds: ImdsClient,
        reporter: NodeReporter,
        *,
        poll_seconds: float = 5.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.imds = imds
        self.reporter = reporter
        self.poll_seconds = min(60.0, max(1.0, poll_seconds))
        self.clock = clock
        self.reported: Notice | None = None
        self.failures = 0  # IMDS or API failures in a row

    async def poll_once(self) -> Notice | None:
        """One poll; returns the notice reported this time, if any. Raises ImdsUnavailable."""
        notice = most_urgent(await self.imds.notices(self.clock()))
        if notice is None or not self._newer(notice):
            return None
        await self.reporter.report(notice.encode())
        self.reported = notice
        log.warning(
            "interruption_notice_reported",
            kind=notice.kind.value,
            deadline=notice.deadline,
            detail=notice.detail,
        )
        return notice

    def _newer(self, notice: Notice) -> bool:
        old = self.reported
        if old is None:
            return True
        if notice.urgency() != old.urgency():
            return notice.urgency() > old.urgency()  # never downgrade a Spot notice to a rebalance
        return notice.deadline is not None and (old.deadline is None or notice.deadline < old.deadline)

    async def run(self) -> None:
        """Poll until cancelled; IMDS being away is logged once and retried with backoff."""
        while True:
            try:
                await self.poll_once()
            except ImdsUnavailable as exc:
                self._failed("imds_unreachable", exc)
            except client.ApiException as exc:
                self._failed("node_report_failed", exc)
            else:
                if self.failures:
                    log.info("agent_recovered", after_failures=self.failures)
                self.failures = 0
            await anyio.sleep(self.delay())

    def _failed(self, event: str, exc: Any) -> None:
        self.failures += 1
        if self.failures == 1:  # once per outage, not once per poll
            log.warning(event, error=str(exc), hint=_HINT if event == "imds_unreachable" else None)

    def delay(self) -> float:
        """The wait before the next poll: the interval, doubled per failure in a row up to a minute."""
        if not self.failures:
            return self.poll_seconds
        return float(min(MAX_BACKOFF_SECONDS, self.poll_seconds * 2 ** min(self.failures, 6)))


_HINT = (
    "the pod must reach 169.254.169.254: with IMDSv2 the instance's HttpPutResponseHopLimit must be 2 or "
    "more, or run the agent with hostNetwork: true (see the README's node agent section)"
)
