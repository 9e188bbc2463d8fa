"""Pydantic models of the Karpenter manifests hpscaler reads, in the exact shape users already have them.

`NodePoolDocument` and `HyperpodNodeClassDocument` accept the manifests applied to a HyperPod cluster
unchanged (status and server-set metadata included). The AWS output shapes (`ClusterDocument`) are
in `hpscaler.config.aws_documents`. Shape errors come from pydantic; rules that need several fields
at once are returned by `problems()` so each can name the exact field at fault.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Annotated, Any, Literal, NamedTuple

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, ValidationError
from pydantic.alias_generators import to_camel

from hpscaler.config.durations import parse_duration, parse_optional_duration
from hpscaler.model import (
    Disruption,
    DisruptionBudget,
    NodeClass,
    NodePool,
    Operator,
    Requirement,
    Taint,
    TaintEffect,
)
from hpscaler.quantity import MAX_AMOUNT, QuantityError, parse_decimal, parse_resource

NODEPOOL_API_VERSION = "karpenter.sh/v1"
NODECLASS_API_VERSION = "karpenter.sagemaker.amazonaws.com/v1"
NODECLASS_GROUP = "karpenter.sagemaker.amazonaws.com"
NODECLASS_KIND = "HyperpodNodeClass"
ANNOTATION_CONSOLIDATE_RUNNING_JOBS = "hpscaler.io/consolidate-running-jobs"
MAX_NODECLASS_GROUPS = 10  # HyperpodNodeClass CRD: MaxItems 10

Loc = tuple[str | int, ...]


class Problem(NamedTuple):
    """A rule broken inside one document: where (relative to the document root), what, and the fix."""

    loc: Loc
    message: str
    fix: str
    severity: Literal["error", "warning"] = "error"


def _duration(value: str) -> str:
    parse_duration(value)
    return value


def _duration_or_never(value: str) -> str:
    parse_optional_duration(value)
    return value


def _number_to_text(value: Any) -> Any:
    # YAML turns `cpu: 8` into an int; Kubernetes accepts numbers for quantities, so do we.
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return value


def _quantity(value: str) -> str:
    try:
        amount = parse_decimal(value)
    except QuantityError as exc:
        raise ValueError(str(exc)) from exc
    if amount < 0:
        raise ValueError(f"{value!r} is negative")
    if amount * 1000 > MAX_AMOUNT:  # CPU counts in millicores
        raise ValueError(f"{value!r} is larger than Kubernetes allows")
    return value


_BUDGET_NODES = re.compile(r"^((100|[0-9]{1,2})%|[0-9]+)$")


def _budget_nodes(value: str) -> str:
    if not _BUDGET_NODES.match(value):
        raise ValueError(f'{value!r} is neither a node count ("5") nor a percentage ("10%")')
    return value


Duration = Annotated[str, AfterValidator(_duration)]
DurationOrNever = Annotated[str, AfterValidator(_duration_or_never)]
Quantity = Annotated[str, BeforeValidator(_number_to_text), AfterValidator(_quantity)]
Name = Annotated[str, Field(min_length=1)]


class _Manifest(BaseModel):
    """Kubernetes-style object: camelCase keys, unknown keys rejected."""

    model_config = ConfigDict(extra="forbid", alias_generator=to_camel, frozen=True)


class ObjectMeta(_Manifest):
    """`metadata`, including the fields the API server fills in (accepted so `kubectl get -o yaml` works)."""

    name: str | None = None
    generate_name: str | None = None
    namespace: str | None = None
    labels: dict[str, str] = {}
    annotations: dict[str, str] = {}
    uid: str | None = None
    resource_version: str | None = None
    generation: int | None = None
    creation_timestamp: Any = None
    deletion_timestamp: Any = None
    deletion_grace_period_seconds: int | None = None
    owner_references: list[Any] = []
    finalizers: list[str] = []
    managed_fields: list[Any] = []
    self_link: str | None = None


class NamedMeta(ObjectMeta):
    """`metadata` of an object that must have a name."""

    name: Name


class TemplateMeta(_Manifest):
    """NodePool `spec.template.metadata`: what new nodes are labelled and annotated with."""

    labels: dict[str, str] = {}
    annotations: dict[str, str] = {}


class RequirementSpec(_Manifest):
    """A NodeSelectorRequirement with Karpenter's `minValues`."""

    key: Name
    operator: Operator
    values: list[str] = []
    min_values: int | None = Field(default=None, ge=1, le=50)

    def problems(self) -> list[Problem]:
        """Operator/value rules the Kubernetes API server enforces."""
        op, count = self.operator, len(self.values)
        if op in ("In", "NotIn") and count == 0:
            return [Problem(("values",), f"operator {op} needs at least one value", "list the values")]
        if op in ("Exists", "DoesNotExist") and count:
            return [
                Problem(
                    ("values",),
                    f"operator {op} takes no values (got {count})",
                    f"remove `values`, or use operator {'In' if op == 'Exists' else 'NotIn'}",
                )
            ]
        if op in ("Gt", "Lt"):
            if count != 1:
                return [
                    Problem(
                        ("values",),
                        f"operator {op} needs exactly one value (got {count})",
                        'give one whole number, e.g. values: ["4"]',
                    )
                ]
            if not re.fullmatch(r"-?[0-9]+", self.values[0]):
                return [
                    Problem(
                        ("values", 0),
                        f"operator {op} needs an integer (got {self.values[0]!r})",
                        'write a whole number as a string, e.g. values: ["4"]',
                    )
                ]
        if self.min_values is not None and op == "In" and count < self.min_values:
            return [
                Problem(
                    ("minValues",),
                    f"minValues is {self.min_values} but only {count} values are listed",
                    "list more values or lower minValues",
                )
            ]
        if self.min_values is not None:
            return [
                Problem(
                    ("minValues",),
                    "minValues is not supported by hpscaler and is ignored",
                    "remove minValues, or keep it if the NodePool is shared with Karpenter",
                    "warning",
                )
            ]
        return []

    def to_model(self) -> Requirement:
        """The core's Requirement."""
        return Requirement(self.key, self.operator, tuple(self.values))


class TaintSpec(_Manifest):
    """A Kubernetes taint."""

    key: Name
    value: str = ""
    effect: TaintEffect
    time_added: str | None = None

    def to_model(self) -> Taint:
        """The core's Taint."""
        return Taint(self.key, self.effect, self.value)


class NodeClassRef(_Manifest):
    """`spec.template.spec.nodeClassRef`."""

    group: Name
    kind: Name
    name: Name


class NodeClaimTemplateSpec(_Manifest):
    """NodePool `spec.template.spec`."""

    node_class_ref: NodeClassRef
    requirements: list[RequirementSpec] = Field(default=[], max_length=100)
    taints: list[TaintSpec] = []
    startup_taints: list[TaintSpec] = []
    expire_after: DurationOrNever = "720h"
    termination_grace_period: Duration | None = None


class NodePoolTemplate(_Manifest):
    """NodePool `spec.template`."""

    metadata: TemplateMeta = TemplateMeta()
    spec: NodeClaimTemplateSpec


BudgetReason = Literal["Empty", "Drifted", "Underutilized"]
_CRON_MACROS = {"@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly"}
_CRON_FIELD = re.compile(r"^[0-9A-Za-z*/,?-]+$")


class BudgetSpec(_Manifest):
    """One disruption budget."""

    nodes: Annotated[str, BeforeValidator(_number_to_text), AfterValidator(_budget_nodes)] = "10%"
    reasons: list[BudgetReason] | None = None
    schedule: str | None = None
    duration: Duration | None = None

    def problems(self) -> list[Problem]:
        """Karpenter's schedule/duration pairing and cron syntax."""
        if (self.schedule is None) != (self.duration is None):
            missing = "duration" if self.duration is None else "schedule"
            return [
                Problem(
                    (missing,),
                    "schedule and duration must be set together",
                    f"add `{missing}`, or remove the other one to make the budget always active",
                )
            ]
        if self.schedule is not None:
            fields = self.schedule.split()
            macro = len(fields) == 1 and fields[0] in _CRON_MACROS
            if not macro and (len(fields) != 5 or not all(_CRON_FIELD.match(f) for f in fields)):
                return [
                    Problem(
                        ("schedule",),
                        f"{self.schedule!r} is not a cron schedule",
                        'use five fields "minute hour day-of-month month day-of-week"'
                        ' (e.g. "0 9 * * mon-fri") or a macro such as @daily',
                    )
                ]
        return []

    def to_model(self) -> DisruptionBudget:
        """The core's DisruptionBudget."""
        return DisruptionBudget(
            nodes=self.nodes,
            reasons=tuple(self.reasons or ()),
            schedule=self.schedule or "",
            duration_seconds=parse_duration(self.duration) if self.duration else None,
        )


class DisruptionSpec(_Manifest):
    """NodePool `spec.disruption`."""

    consolidation_policy: Literal["WhenEmpty", "WhenEmptyOrUnderutilized"] = "WhenEmptyOrUnderutilized"
    consolidate_after: DurationOrNever = "0s"
    budgets: list[BudgetSpec] = Field(default=[BudgetSpec()], max_length=50)


class NodePoolSpec(_Manifest):
    """NodePool `spec`."""

    template: NodePoolTemplate
    disruption: DisruptionSpec = DisruptionSpec()
    limits: dict[str, Quantity] = {}
    weight: int | None = Field(default=None, ge=1, le=100)
    replicas: int | None = Field(default=None, ge=0)


_REQUIREMENTS_LOC: Loc = ("spec", "template", "spec", "requirements")
_BUDGETS_LOC: Loc = ("spec", "disruption", "budgets")


def _part_problems(parts: Iterable[tuple[int, RequirementSpec | BudgetSpec]], base: Loc) -> list[Problem]:
    return [p._replace(loc=(*base, i, *p.loc)) for i, part in parts for p in part.problems()]


def _annotation_problems(annotations: Mapping[str, Any]) -> list[Problem]:
    flag = annotations.get(ANNOTATION_CONSOLIDATE_RUNNING_JOBS)
    if flag is None or (isinstance(flag, str) and flag.lower() in ("true", "false")):
        return []
    return [
        Problem(
            ("metadata", "annotations", ANNOTATION_CONSOLIDATE_RUNNING_JOBS),
            f'must be "true" or "false" (got {flag!r})',
            'set it to "true" or "false" (quoted)',
        )
    ]


def _valid_parts(
    data: Any, loc: Loc, model: type[RequirementSpec] | type[BudgetSpec]
) -> list[tuple[int, RequirementSpec | BudgetSpec]]:
    for key in loc:
        data = data.get(key) if isinstance(data, dict) else None
    parts: list[tuple[int, RequirementSpec | BudgetSpec]] = []
    for i, item in enumerate(data if isinstance(data, list) else []):
        try:
            parts.append((i, model.model_validate(item)))
        except ValidationError:
            continue  # pydantic has reported this one already
    return parts


class NodePoolDocument(_Manifest):
    """A Karpenter `karpenter.sh/v1` NodePool manifest."""

    api_version: Literal["karpenter.sh/v1"]
    kind: Literal["NodePool"]
    metadata: NamedMeta
    spec: NodePoolSpec
    status: Any = None

    @property
    def name(self) -> str:
        """metadata.name."""
        return self.metadata.name

    def problems(self) -> list[Problem]:
        """Rules spanning several fields, with paths relative to the document root."""
        found: list[Problem] = []
        ref = self.spec.template.spec.node_class_ref
        ref_loc: Loc = ("spec", "template", "spec", "nodeClassRef")
        if ref.group != NODECLASS_GROUP:
            found.append(
                Problem(
                    (*ref_loc, "group"),
                    f"must be {NODECLASS_GROUP} (got {ref.group!r})",
                    f"set group: {NODECLASS_GROUP}; hpscaler only provisions into HyperPod instance groups",
                )
            )
        if ref.kind != NODECLASS_KIND:
            found.append(
                Problem(
                    (*ref_loc, "kind"),
                    f"must be {NODECLASS_KIND} (got {ref.kind!r})",
                    f"set kind: {NODECLASS_KIND} and point name at a HyperpodNodeClass",
                )
            )
        found += _part_problems(enumerate(self.spec.template.spec.requirements), _REQUIREMENTS_LOC)
        found += _part_problems(enumerate(self.spec.disruption.budgets), _BUDGETS_LOC)
        found += _annotation_problems(self.metadata.annotations)
        if self.spec.replicas is not None:
            found.append(
                Problem(
                    ("spec", "replicas"),
                    "static NodePools (spec.replicas) are not supported; hpscaler treats the pool as dynamic",
                    "remove spec.replicas, or keep a fixed-size non-autoscaled instance group instead",
                    "warning",
                )
            )
        return found

    @staticmethod
    def partial_problems(data: Any) -> list[Problem]:
        """`problems()` of the parts that are valid on their own, for a document pydantic rejected.

        Reporting these too means one run shows every mistake, not just the shape errors.
        """
        found = _part_problems(_valid_parts(data, _REQUIREMENTS_LOC, RequirementSpec), _REQUIREMENTS_LOC)
        found += _part_problems(_valid_parts(data, _BUDGETS_LOC, BudgetSpec), _BUDGETS_LOC)
        metadata = data.get("metadata") if isinstance(data, dict) else None
        annotations = metadata.get("annotations") if isinstance(metadata, dict) else None
        return found + _annotation_problems(annotations if isinstance(annotations, dict) else {})

    def to_model(self) -> NodePool:
        """The core's NodePool. Call only when `problems()` has no errors."""
        template = self.spec.template.spec
        disruption = self.spec.disruption
        flag = self.metadata.annotations.get(ANNOTATION_CONSOLIDATE_RUNNING_JOBS, "false")
        return NodePool(
            name=self.name,
            node_class=template.node_class_ref.name,
            requirements=tuple(r.to_model() for r in template.requirements),
            labels=tuple(sorted(self.spec.template.metadata.labels.items())),
            taints=tuple(t.to_model() for t in template.taints),
            startup_taints=tuple(t.to_model() for t in template.startup_taints),
            limits=tuple((name, parse_resource(name, value)) for name, value in self.spec.limits.items()),
            weight=self.spec.weight or 0,
            disruption=Disruption(
                consolidation_policy=disruption.consolidation_policy,
                consolidate_after_seconds=parse_optional_duration(disruption.consolidate_after),
                budgets=tuple(b.to_model() for b in disruption.budgets),
            ),
            expire_after_seconds=parse_optional_duration(template.expire_after),
            termination_grace_seconds=(
                parse_duration(template.termination_grace_period)
                if template.termination_grace_period is not None
                else None
            ),
            consolidate_running_jobs=flag.lower() == "true",
        )


class NodeClassSpec(_Manifest):
    """HyperpodNodeClass `spec`."""

    instance_groups: list[Name] = Field(min_length=1, max_length=MAX_NODECLASS_GROUPS)


class HyperpodNodeClassDocument(_Manifest):
    """A `karpenter.sagemaker.amazonaws.com/v1` HyperpodNodeClass manifest."""

    api_version: Literal["karpenter.sagemaker.amazonaws.com/v1"]
    kind: Literal["HyperpodNodeClass"]
    metadata: NamedMeta
    spec: NodeClassSpec
    status: Any = None

    @property
    def name(self) -> str:
        """metadata.name."""
        return self.metadata.name

    def problems(self) -> list[Problem]:
        """Duplicated instance-group names (harmless, so a warning)."""
        seen: set[str] = set()
        found: list[Problem] = []
        for i, group in enumerate(self.spec.instance_groups):
            if group in seen:
                found.append(
                    Problem(
                        ("spec", "instanceGroups", i),
                        f"instance group {group} is listed twice",
                        "remove the repeated entry; only its first position counts",
                        "warning",
                    )
                )
            seen.add(group)
        return found

    def to_model(self) -> NodeClass:
        """The core's NodeClass, groups in the order written (first occurrence wins)."""
        return NodeClass(self.name, tuple(dict.fromkeys(self.spec.instance_groups)))
