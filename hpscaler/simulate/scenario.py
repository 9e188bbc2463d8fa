"""Scenario files for `hpscaler simulate`: a cluster, a workload over time, and things going wrong."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from hpscaler.config.durations import parse_duration


class ScenarioError(ValueError):
    """A scenario file hpscaler cannot run; the message names the file and field."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)


def _seconds(value: Any) -> float:
    if isinstance(value, int | float) and not isinstance(value, bool):
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


class Workload(_Strict):
    """Identical pods arriving together: a Deployment's replicas or a Job's parallel pods."""

    name: str
    at: float = 0.0
    kind: Literal["Deployment", "Job", "PyTorchJob"] = "Deployment"
    replicas: int = Field(ge=0)
    cpu: str = "1"
    memory: str = "1Gi"
    gpu: int = Field(0, ge=0)
    run_for: float | None = Field(None, alias="runFor")
    grace_period_seconds: int = Field(30, alias="gracePeriodSeconds", ge=0)
    checkpoint: bool = False
    do_not_disrupt: bool = Field(False, alias="doNotDisrupt")
    gang: bool = False
    labels: dict[str, str] = Field(default_factory=dict)
    node_selector: dict[str, str] = Field(default_factory=dict, alias="nodeSelector")
    min_available: int | None = Field(None, alias="minAvailable", ge=0)

    _parse_at = field_validator("at", "run_for", mode="before")(lambda v: None if v is None else _seconds(v))


class Interrupt(_Strict):
    """Spot interruptions of running instances of a group."""

    group: str
    count: int = Field(1, ge=1)
    notice: bool = True


class Scale(_Strict):
    """Change a Deployment's replica count."""

    workload: str
    replicas: int = Field(ge=0)


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


class Scenario(_Strict):
    """A scenario document (`kind: Scenario`)."""

    name: str
    description: str = ""
    config: str = "embedded"
    duration: float = 7200.0
    seed: int = 1
    sample_seconds: float = Field(300.0, alias="sampleSeconds", gt=0)
    world: WorldSpec = WorldSpec()
    workloads: tuple[Workload, ...] = ()
    events: tuple[Event, ...] = ()
    source: str = ""

    _parse_duration = field_validator("duration", "sample_seconds", mode="before")(_seconds)


def load_scenario(path: str | Path) -> Scenario:
    """Read and validate a scenario file."""
    path = Path(path)
    try:
        doc = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ScenarioError(f"{path}: cannot read scenario: {exc}") from exc
    if not isinstance(doc, dict) or doc.get("kind") != "Scenario":
        raise ScenarioError(f"{path}: expected a document with kind: Scenario")
    spec = dict(doc.get("spec") or {})
    spec.setdefault("name", (doc.get("metadata") or {}).get("name", path.stem))
    try:
        scenario = Scenario.model_validate({**spec, "source": str(path)})
    except ValidationError as exc:
        problems = "; ".join(
            f"spec.{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()
        )
        raise ScenarioError(f"{path}: Scenario {spec.get('name')}: {problems}") from exc
    names = [w.name for w in scenario.workloads]
    for event in scenario.events:
        if event.scale is not None and event.scale.workload not in names:
            raise ScenarioError(
                f"{path}: events: scale names unknown workload {event.scale.workload!r}; workloads: {names}"
            )
    return scenario


def config_path(scenario: Scenario) -> Path | None:
    """The configuration the scenario runs with; None means the embedded default."""
    if scenario.config == "embedded":
        return None
    base = Path(scenario.source).parent if scenario.source else Path.cwd()
    return (base / scenario.config).resolve()
