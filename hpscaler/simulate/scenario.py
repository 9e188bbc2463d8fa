"""Scenario files for `hpscaler simulate`: a cluster, a workload over time, and things going wrong.

Besides fixed workloads and timed events, a scenario can describe a long run compactly: a
Deployment's replicas can follow a daily curve (`diurnal`), a Job can be submitted again and again
(`repeat`), and a `chaos` section draws Spot interruptions, rebalance recommendations and capacity
losses at random from the scenario's `seed`, so that a 24-hour soak is reproducible.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from hpscaler.config import ConfigError, LoadedConfig, default_config_path, load_config
from hpscaler.config.durations import parse_duration
from hpscaler.kube.objects import MAX_PODS
from hpscaler.model import CapacityType, InstanceGroup
from hpscaler.quantity import QuantityError, parse_resource
from hpscaler.yamlio import YamlInputError, read_documents

DAY_SECONDS = 86400.0
# Limits that keep a typo from running forever or filling memory (`checkSeconds: 0.000001`,
# `replicas: 1000000000`); each is stated in the error that enforces it.
MAX_DURATION_SECONDS = 31 * DAY_SECONDS
MIN_STEP_SECONDS = 1.0  # checkSeconds, sampleSeconds, diurnal.step, repeat.every
MAX_SUBMISSIONS = 100_000  # of one repeated Job
MAX_FAULTS_PER_HOUR = 3600.0


class ScenarioError(ValueError):
    """A scenario file hpscaler cannot run; the message names the file and field."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True, allow_inf_nan=False)


def _seconds(value: Any) -> float:
    if isinstance(value, int | float) and not isinstance(value, bool):
        if not math.isfinite(value):
            raise ValueError(f"{value!r} is not a duration (it must be a finite number of seconds)")
        return float(value)
    if isinstance(value, str):
        return parse_duration(value)
    raise ValueError(f"{value!r} is not a duration (examples: 90s, 30m, 2h)")


class Capacity(_Strict):
    """How many instances of a group's offering can run at once (None: unlimited)."""

    group: str
    count: int | None = Field(ge=0)


class WorldSpec(_Strict):
    """The simulated HyperPod cluster's behaviour."""

    launch_seconds: float = Field(90.0, alias="launchSeconds", ge=0)
    join_seconds: float = Field(30.0, alias="joinSeconds", ge=0)
    retry_seconds: float = Field(60.0, alias="retrySeconds", gt=0)
    shutdown_seconds: float = Field(30.0, alias="shutdownSeconds", ge=0)
    capacity: tuple[Capacity, ...] = ()
    placement_scores: dict[str, float] = Field(default_factory=dict, alias="placementScores")


def _duration(*names: str) -> Any:
    """A before-validator reading durations ("90s", "2h", or seconds) in the named fields."""
    return field_validator(*names, mode="before")(lambda v: None if v is None else _seconds(v))


class Diurnal(_Strict):
    """Replicas that follow a day: `maxReplicas` at `peakAt`, `minReplicas` half a period away.

    In between they follow a cosine, `min + (max - min) * (1 + cos(2 pi (t - peakAt) / period)) / 2`
    rounded, with `t` the time since the scenario started (its start is midnight). A Deployment is
    scaled to the curve every `step`; a repeated Job takes the curve's value at each submission.
    """

    min_replicas: int = Field(alias="minReplicas", ge=0, le=MAX_PODS)
    max_replicas: int = Field(alias="maxReplicas", ge=0, le=MAX_PODS)
    period: float = Field(DAY_SECONDS, gt=0)
    peak_at: float = Field(14 * 3600.0, alias="peakAt", ge=0)
    step: float = Field(1800.0, ge=MIN_STEP_SECONDS)

    _parse = _duration("period", "peak_at", "step")

    @model_validator(mode="after")
    def _ordered(self) -> Diurnal:
        if self.max_replicas < self.min_replicas:
            raise ValueError(f"maxReplicas ({self.max_replicas}) is below minReplicas ({self.min_replicas})")
        if self.step > self.period:
            raise ValueError("step must not be longer than period")
        return self

    def replicas(self, t: float) -> int:
        """The curve's replica count at `t` seconds after the scenario's start."""
        wave = (1.0 + math.cos(2.0 * math.pi * (t - self.peak_at) / self.period)) / 2.0
        return round(self.min_replicas + (self.max_replicas - self.min_replicas) * wave)


class Repeat(_Strict):
    """Submit a Job again every `every`, from its `at` until `until` (inclusive; default: the end)."""

    every: float = Field(ge=MIN_STEP_SECONDS)
    until: float | None = Field(None, ge=0)

    _parse = _duration("every", "until")


class Workload(_Strict):
    """Identical pods arriving together: a Deployment's replicas or a Job's parallel pods.

    Exactly one of `replicas` and `diurnal` gives the pod count. `repeat` (Jobs only) submits a
    fresh Job each time; each submission is its own gang when `gang` is set.
    """

    name: str
    at: float = 0.0
    kind: Literal["Deployment", "Job", "PyTorchJob"] = "Deployment"
    replicas: int | None = Field(None, ge=0, le=MAX_PODS)
    diurnal: Diurnal | None = None
    repeat: Repeat | None = None
    cpu: str = "1"
    memory: str = "1Gi"

    @field_validator("cpu", "memory", mode="before")
    @classmethod
    def _quantity(cls, value: Any, info: ValidationInfo) -> str:
        try:
            parse_resource(str(info.field_name), value)
        except QuantityError as exc:
            raise ValueError(str(exc)) from None
        return str(value)

    gpu: int = Field(0, ge=0)
    run_for: float | None = Field(None, alias="runFor")
    grace_period_seconds: int = Field(30, alias="gracePeriodSeconds", ge=0)
    checkpoint: bool = False
    do_not_disrupt: bool = Field(False, alias="doNotDisrupt")
    gang: bool = False
    labels: dict[str, str] = Field(default_factory=dict)
    node_selector: dict[str, str] = Field(default_factory=dict, alias="nodeSelector")
    min_available: int | None = Field(None, alias="minAvailable", ge=0)

    _parse_at = _duration("at", "run_for")

    @model_validator(mode="after")
    def _shape(self) -> Workload:
        if (self.replicas is None) == (self.diurnal is None):
            raise ValueError("set exactly one of replicas and diurnal")
        if self.repeat is not None:
            if self.kind == "Deployment":
                raise ValueError("repeat is for Jobs; a Deployment follows a load curve with diurnal")
            if self.run_for is None:
                raise ValueError("repeat needs runFor: Jobs that never finish would pile up")
            if self.repeat.until is not None and self.repeat.until < self.at:
                raise ValueError("repeat.until is before the workload's first submission (at)")
            end = self.repeat.until if self.repeat.until is not None else MAX_DURATION_SECONDS
            if (end - self.at) / self.repeat.every > MAX_SUBMISSIONS:
                raise ValueError(
                    f"repeat submits the Job more than {MAX_SUBMISSIONS} times: raise repeat.every"
                )
        elif self.diurnal is not None and self.kind != "Deployment":
            raise ValueError("a Job with diurnal needs repeat: each submission takes the curve's value")
        return self

    def replicas_at(self, t: float) -> int:
        """The pod count this workload asks for at `t` seconds after the start."""
        if self.diurnal is not None:
            return self.diurnal.replicas(t)
        assert self.replicas is not None
        return self.replicas

    def submissions(self, duration: float) -> list[float]:
        """When the workload's pods are created: once at `at`, or at every repetition within the run."""
        if self.repeat is None:
            return [self.at]
        until = min(duration, self.repeat.until if self.repeat.until is not None else duration)
        count = math.floor((until - self.at) / self.repeat.every + 1e-9) + 1
        return [self.at + i * self.repeat.every for i in range(max(0, count))]


Via = Literal["sqs", "agent", "hyperpod-event", "taint"]


class Interrupt(_Strict):
    """Spot interruptions of running instances of a group.

    `via` names the sources the notice reaches hpscaler through, `delay` how late it arrives:
    `sqs` (EC2's EventBridge warning on the queue), `agent` (the node agent's IMDS report on the
    Node), `taint` (HyperPod's taint on the node). `hyperpod-event` carries no notice: HyperPod's
    cluster events report the instance once it is gone, as they always do.
    """

    group: str
    count: int = Field(1, ge=1)
    notice: bool = True
    via: tuple[Via, ...] = ("sqs",)
    delay: float = Field(0.0, ge=0)

    _parse_delay = field_validator("delay", mode="before")(_seconds)


class Scale(_Strict):
    """Change a Deployment's replica count."""

    workload: str
    replicas: int = Field(ge=0, le=MAX_PODS)


class Event(_Strict):
    """One thing that happens at a point in time; exactly one action is set."""

    at: float
    interrupt: Interrupt | None = None
    rebalance: Interrupt | None = None
    capacity: Capacity | None = None
    scale: Scale | None = None

    _parse_at = field_validator("at", mode="before")(_seconds)

    @model_validator(mode="after")
    def _one_action(self) -> Event:
        actions = [a for a in (self.interrupt, self.rebalance, self.capacity, self.scale) if a is not None]
        if len(actions) != 1:
            raise ValueError("set exactly one of interrupt, rebalance, capacity, scale")
        return self


class RandomInterruptions(_Strict):
    """Spot instances reclaimed at random: `perHour` across the cluster, a share without any notice.

    Each one picks its victim when it happens, uniformly among the running Spot instances of
    `groups` (default: every Spot group) that have not been reclaimed yet.
    """

    per_hour: float = Field(alias="perHour", gt=0, le=MAX_FAULTS_PER_HOUR)
    without_notice: float = Field(0.0, alias="withoutNotice", ge=0, le=1)
    groups: tuple[str, ...] = ()


class RandomRebalances(_Strict):
    """EC2 rebalance recommendations at random: `perHour`, each for a running Spot instance of `groups`."""

    per_hour: float = Field(alias="perHour", gt=0, le=MAX_FAULTS_PER_HOUR)
    groups: tuple[str, ...] = ()


class RandomCapacityLoss(_Strict):
    """An instance group's offerings run out (capacity 0) for a random time, then come back.

    Losses start `perHour` on average; each takes one of `groups` (default: every Spot group) that
    is not already out, for a duration drawn uniformly between `minDuration` and `maxDuration`.
    Instances already running keep running; only launches find no room.
    """

    per_hour: float = Field(alias="perHour", gt=0, le=MAX_FAULTS_PER_HOUR)
    min_duration: float = Field(900.0, alias="minDuration", gt=0)
    max_duration: float = Field(7200.0, alias="maxDuration", gt=0)
    groups: tuple[str, ...] = ()

    _parse = _duration("min_duration", "max_duration")

    @model_validator(mode="after")
    def _ordered(self) -> RandomCapacityLoss:
        if self.max_duration < self.min_duration:
            raise ValueError("maxDuration is shorter than minDuration")
        return self


class Chaos(_Strict):
    """Seeded random faults between `start` and `end` (default: the scenario's end).

    Everything is drawn from the scenario's `seed` (one stream per kind of fault), so the same file
    produces the same faults at the same times on every run; `hpscaler.simulate.chaos.plan_chaos`
    gives the plan without running anything.
    """

    start: float = Field(0.0, ge=0)
    end: float | None = Field(None, gt=0)
    interruptions: RandomInterruptions | None = None
    rebalances: RandomRebalances | None = None
    capacity_loss: RandomCapacityLoss | None = Field(None, alias="capacityLoss")

    _parse = _duration("start", "end")

    @model_validator(mode="after")
    def _window(self) -> Chaos:
        if self.end is not None and self.end <= self.start:
            raise ValueError("end must be after start")
        return self


class Scenario(_Strict):
    """A scenario document (`kind: Scenario`).

    `checkSeconds` is how often the invariants are checked while the scenario runs;
    `maxPendingSeconds` bounds how long a pod may stay pending while there is capacity for it.
    """

    name: str
    description: str = ""
    config: str = "embedded"
    duration: float = Field(7200.0, gt=0, le=MAX_DURATION_SECONDS)
    seed: int = 1
    sample_seconds: float = Field(300.0, alias="sampleSeconds", ge=MIN_STEP_SECONDS)
    check_seconds: float = Field(60.0, alias="checkSeconds", ge=MIN_STEP_SECONDS)
    max_pending_seconds: float = Field(900.0, alias="maxPendingSeconds", gt=0)
    world: WorldSpec = WorldSpec()
    workloads: tuple[Workload, ...] = ()
    events: tuple[Event, ...] = ()
    chaos: Chaos | None = None
    source: str = ""

    _parse_duration = field_validator(
        "duration", "sample_seconds", "check_seconds", "max_pending_seconds", mode="before"
    )(_seconds)

    @model_validator(mode="after")
    def _consistent(self) -> Scenario:
        names = [w.name for w in self.workloads]
        if duplicates := sorted({n for n in names if names.count(n) > 1}):
            raise ValueError(f"workload names must be unique: {duplicates}")
        if self.chaos is not None and self.chaos.start >= self.duration:
            raise ValueError(f"chaos.start is not before the scenario's end ({self.duration:.0f}s)")
        return self

    @property
    def chaos_end(self) -> float:
        """When random faults stop: the chaos section's `end`, never after the scenario's end."""
        end = self.chaos.end if self.chaos is not None else None
        return min(self.duration, end if end is not None else self.duration)


def load_scenario(path: str | Path) -> Scenario:
    """Read and validate a scenario file."""
    path = Path(path)
    try:
        documents = read_documents(path.read_text(encoding="utf-8"), keep_nodes=False)
    except (OSError, UnicodeDecodeError, YamlInputError) as exc:
        raise ScenarioError(f"{path}: cannot read scenario: {exc}") from exc
    doc = documents[0].data if len(documents) == 1 else None
    if not isinstance(doc, dict) or doc.get("kind") != "Scenario":
        raise ScenarioError(f"{path}: expected one document with kind: Scenario")
    raw_spec, metadata = doc.get("spec") or {}, doc.get("metadata") or {}
    if not isinstance(raw_spec, dict) or not isinstance(metadata, dict):
        raise ScenarioError(f"{path}: spec and metadata must be mappings")
    spec = dict(raw_spec)
    spec.setdefault("name", metadata.get("name", path.stem))
    try:
        scenario = Scenario.model_validate({**spec, "source": str(path)})
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(['spec', *(str(p) for p in err['loc'])])}: {err['msg'].removeprefix('Value error, ')}"
            for err in exc.errors()
        )
        raise ScenarioError(f"{path}: Scenario {spec.get('name')}: {problems}") from exc
    names = [w.name for w in scenario.workloads]
    for index, event in enumerate(scenario.events):
        if event.scale is None:
            continue
        if event.scale.workload not in names:
            raise ScenarioError(
                f"{path}: events: scale names unknown workload {event.scale.workload!r}; workloads: {names}"
            )
        workload = scenario.workloads[names.index(event.scale.workload)]
        if workload.diurnal is not None or workload.kind != "Deployment":
            raise ScenarioError(
                f"{path}: spec.events.{index}.scale: workload {workload.name!r} cannot be scaled "
                "(only Deployments with a fixed replicas count can)"
            )
    try:
        config = scenario_config(scenario)
    except ConfigError:
        return scenario  # `simulate` reports the configuration's own errors
    check_groups(scenario, config.instance_groups)
    return scenario


def scenario_config(scenario: Scenario) -> LoadedConfig:
    """The configuration the scenario runs with (its own directory, or the embedded default)."""
    path = config_path(scenario)
    if path is None:
        return load_config(default_config_path())
    if not path.exists():
        # Scenario configs shipped next to the scenarios may be named without their folder.
        path = path.parent / scenario.config
    return load_config(path)


def check_groups(scenario: Scenario, groups: Sequence[InstanceGroup]) -> None:
    """Every instance group the scenario names exists, and the ones it reclaims are Spot groups."""
    by_name = {g.name: g for g in groups}
    known = sorted(by_name)

    def check(field: str, name: str, spot: bool) -> None:
        where = f"{scenario.source or 'scenario'}: Scenario {scenario.name}: spec.{field}"
        if name not in by_name:
            raise ScenarioError(f"{where}: unknown instance group {name!r}; groups: {known}")
        if spot and by_name[name].capacity_type is not CapacityType.SPOT:
            raise ScenarioError(f"{where}: {name!r} is an On-Demand group; only Spot instances are reclaimed")

    for i, item in enumerate(scenario.world.capacity):
        check(f"world.capacity.{i}.group", item.group, False)
    for i, event in enumerate(scenario.events):
        if event.capacity is not None:
            check(f"events.{i}.capacity.group", event.capacity.group, False)
        for kind, action in (("interrupt", event.interrupt), ("rebalance", event.rebalance)):
            if action is not None:
                check(f"events.{i}.{kind}.group", action.group, True)
    chaos = scenario.chaos
    if chaos is None:
        return
    for field, random_fault, spot in (
        ("interruptions", chaos.interruptions, True),
        ("rebalances", chaos.rebalances, True),
        ("capacityLoss", chaos.capacity_loss, False),
    ):
        if random_fault is None:
            continue
        for i, name in enumerate(random_fault.groups):
            check(f"chaos.{field}.groups.{i}", name, spot)
        if not random_fault.groups and not any(g.capacity_type is CapacityType.SPOT for g in groups):
            raise ScenarioError(
                f"{scenario.source or 'scenario'}: Scenario {scenario.name}: spec.chaos.{field}: "
                "the configuration has no Spot group to pick from; name the groups"
            )


def config_path(scenario: Scenario) -> Path | None:
    """The configuration the scenario runs with; None means the embedded default."""
    if scenario.config == "embedded":
        return None
    base = Path(scenario.source).parent if scenario.source else Path.cwd()
    return (base / scenario.config).resolve()
