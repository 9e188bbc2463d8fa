"""A Kueue-style queue in the simulator: jobs admitted through the ProvisioningRequest admission check.

Modelled on Kueue's Provisioning AdmissionCheck controller as its documentation describes it
(kueue.sigs.k8s.io/docs/admission-check-controllers/provisioning): for a workload holding quota it
creates a PodTemplate per pod set and a ProvisioningRequest with the configured
`provisioningClassName`; the check turns Ready when the request is `Provisioned=True`, and only then
is the job admitted and its pods created, annotated `autoscaling.x-k8s.io/consume-provisioning-request`
(and `.../provisioning-class-name`) so the autoscaler counts them against the booking. A request that
ends `Failed`, `BookingExpired` or `CapacityRevoked` before admission is retried with a new request
(`<job>-<attempt>`), as Kueue's retry strategy does.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import anyio

from hpscaler.fake import World
from hpscaler.model import Pod
from hpscaler.provisioning.provreq import (
    BOOKING_EXPIRED,
    CAPACITY_REVOKED,
    CLASS_ANNOTATION,
    CONSUME_ANNOTATION,
    FAILED,
    PROVISIONED,
    PodSet,
    ProvisioningRequest,
)

POLL_SECONDS = 5.0
NAMESPACE = "default"


@dataclass(slots=True)
class QueuedJob:
    """One job in the queue and what happened to it (times are seconds since the scenario start)."""

    name: str
    class_name: str
    pods: list[Pod]
    run_seconds: float | None
    submitted: float
    attempt: int = 1
    provisioned: float | None = None
    admitted: float | None = None
    first_running: float | None = None
    all_running: float | None = None
    finished: float | None = None
    zones: set[str] = field(default_factory=set)
    outcomes: list[str] = field(default_factory=list)  # conditions that ended earlier attempts

    @property
    def request(self) -> str:
        """The current attempt's request name."""
        return self.name if self.attempt == 1 else f"{self.name}-{self.attempt}"


class KueueQueue:
    """Creates ProvisioningRequests for queued jobs and admits each job once its request is provisioned."""

    def __init__(self, world: World, on_create: Callable[[Pod, float | None], None], start: float) -> None:
        self.world = world
        self.on_create = on_create  # creates an admitted job's pod (the driver keeps its ledger)
        self.start = start
        self.jobs: list[QueuedJob] = []

    def now(self) -> float:
        """Seconds since the scenario started."""
        return self.world.clock.now() - self.start

    def submit(self, name: str, class_name: str, pods: list[Pod], run_seconds: float | None) -> None:
        """Queue a job: its PodTemplate and ProvisioningRequest are created at once."""
        job = QueuedJob(name, class_name, pods, run_seconds, self.now())
        self.jobs.append(job)
        self._request(job)

    def _request(self, job: QueuedJob) -> None:
        template = dataclasses.replace(job.pods[0], name=f"ppt-{job.request}", gang=None)
        request = ProvisioningRequest(
            NAMESPACE, job.request, job.class_name, (PodSet(template.name, len(job.pods)),), uid=job.request
        )
        self.world.kubernetes.provisioning.submit(request, {template.name: template})

    async def run(self) -> None:
        """Follow the requests and the admitted jobs until cancelled."""
        while True:
            self.step()
            await anyio.sleep(POLL_SECONDS)

    def step(self) -> None:
        """One pass over the queue."""
        store = self.world.kubernetes.provisioning
        for job in self.jobs:
            if job.admitted is None:
                request = store.get(f"{NAMESPACE}/{job.request}")
                if request is None:
                    continue
                ended = next(
                    (k for k in (FAILED, BOOKING_EXPIRED, CAPACITY_REVOKED) if request.is_true(k)), ""
                )
                if ended:
                    job.outcomes.append(ended)
                    job.attempt += 1
                    self._request(job)
                elif request.is_true(PROVISIONED):
                    self._admit(job, request)
            elif job.finished is None:
                self._follow(job)

    def _admit(self, job: QueuedJob, request: ProvisioningRequest) -> None:
        job.provisioned = job.admitted = self.now()
        for pod in job.pods:
            annotations = {
                **pod.annotations,
                CONSUME_ANNOTATION: request.name,
                CLASS_ANNOTATION: job.class_name,
            }
            self.on_create(dataclasses.replace(pod, annotations=annotations), job.run_seconds)

    def _follow(self, job: QueuedJob) -> None:
        kube = self.world.kubernetes
        keys = {p.key for p in job.pods}
        live = [p for p in kube.pods() if p.key in keys]
        running = [p for p in live if p.phase == "Running" and p.node_name]
        for pod in running:
            node = kube.node(pod.node_name)
            if node is not None and node.zone:
                job.zones.add(node.zone)
        now = self.now()
        if running and job.first_running is None:
            job.first_running = now
        if len(running) == len(job.pods) and job.all_running is None:
            job.all_running = now
        done = sum(1 for k in keys if k in kube.finished_origins)
        if done == len(job.pods):
            job.finished = now

    def report(self, released: int) -> dict[str, Any]:
        """The queue's part of the simulation report (times in minutes since the start)."""

        def minutes(value: float | None) -> float | None:
            return None if value is None else round(value / 60.0, 1)

        jobs = [
            {
                "job": j.name,
                "class": j.class_name,
                "pods": len(j.pods),
                "attempts": j.attempt,
                "endedAttempts": list(j.outcomes),
                "submittedAt": minutes(j.submitted),
                "provisionedAt": minutes(j.provisioned),
                "allPodsRunningAt": minutes(j.all_running),
                "startedTogether": j.first_running is not None and j.first_running == j.all_running,
                "finishedAt": minutes(j.finished),
                "zones": sorted(j.zones),
            }
            for j in self.jobs
        ]
        partial = sum(
            1 for j in self.jobs if j.first_running is not None and j.first_running != j.all_running
        )
        return {"jobs": jobs, "partialScaleUps": partial + released, "launchesReleased": released}


def queue_lines(section: dict[str, Any]) -> list[str]:
    """The queue's part of the report table."""
    lines = [
        f"Kueue queue (ProvisioningRequests): {section['partialScaleUps']} partial scale-ups, "
        f"{section['launchesReleased']} launches released"
    ]
    for job in section["jobs"]:
        lines.append(
            f"  {job['job']}: {job['pods']} pods, submitted {job['submittedAt']}m, provisioned "
            f"{job['provisionedAt']}m, all running {job['allPodsRunningAt']}m, "
            f"finished {job['finishedAt']}m, zones {', '.join(job['zones']) or '-'}, "
            f"attempts {job['attempts']}"
        )
    return lines
