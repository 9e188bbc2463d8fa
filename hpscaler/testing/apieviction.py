"""PodDisruptionBudgets and the Eviction subresource of the fake API server.

The status is what the disruption controller would write; eviction checks it the way the API server
does before it deletes the pod.
"""

from __future__ import annotations

import copy
import math
from typing import TYPE_CHECKING, Any

from hpscaler.testing.apiobjects import ApiError, Obj, not_found
from hpscaler.testing.apiresources import PDBS, PODS
from hpscaler.testing.selectors import SelectorError, label_selector_from_spec, labels_match

if TYPE_CHECKING:
    from hpscaler.testing.apistore import Store

_TERMINAL = ("Succeeded", "Failed")


def _selected_pods(store: Store, pdb: Obj) -> list[Obj]:
    namespace = pdb["metadata"].get("namespace", "")
    try:
        selector = label_selector_from_spec((pdb.get("spec") or {}).get("selector"))
    except SelectorError:
        return []
    return [
        pod
        for pod in store.select(PODS, namespace)
        if (pod.get("status") or {}).get("phase") not in _TERMINAL
        and labels_match(selector, pod["metadata"].get("labels") or {})
    ]


def pdb_status(store: Store, pdb: Obj) -> Obj:
    """What the disruption controller would write: healthy pods against minAvailable/maxUnavailable."""
    pods = _selected_pods(store, pdb)
    expected = len(pods)
    healthy = sum(1 for pod in pods if _healthy(pod))
    spec = pdb.get("spec") or {}
    if spec.get("maxUnavailable") is not None:
        desired = max(0, expected - _scaled(spec["maxUnavailable"], expected))
    elif spec.get("minAvailable") is not None:
        desired = _scaled(spec["minAvailable"], expected)
    else:
        desired = 0
    allowed = max(0, healthy - desired)
    return {
        "observedGeneration": pdb["metadata"].get("generation", 1),
        "currentHealthy": healthy,
        "desiredHealthy": desired,
        "expectedPods": expected,
        "disruptionsAllowed": allowed,
        "conditions": [
            {
                "type": "DisruptionAllowed",
                "status": "True" if allowed > 0 else "False",
                "reason": "SufficientPods" if allowed > 0 else "InsufficientPods",
                "message": "",
                "lastTransitionTime": pdb["metadata"].get("creationTimestamp"),
                "observedGeneration": pdb["metadata"].get("generation", 1),
            }
        ],
    }


def evict(store: Store, namespace: str, name: str, body: Obj) -> None:
    """The Eviction subresource: PDB check for pods that count, then deletion."""
    pod = store.raw(PODS, namespace, name)
    if pod is None:
        raise not_found(PODS, name)
    options = body.get("deleteOptions") or {}
    phase = (pod.get("status") or {}).get("phase", "Pending")
    if phase in (*_TERMINAL, "Pending") or pod["metadata"].get("deletionTimestamp"):
        store.delete(PODS, namespace, name, options)
        return
    labels = pod["metadata"].get("labels") or {}
    budgets = [b for b in store.select(PDBS, namespace) if _selects(b, labels)]
    if len(budgets) > 1:
        raise ApiError(
            500,
            "This pod has more than one PodDisruptionBudget, which the eviction subresource does not "
            "support.",
        )
    if budgets:
        budget = budgets[0]
        status = store.present(PDBS, budget)["status"]
        if int(status.get("disruptionsAllowed", 0)) <= 0:
            raise ApiError(
                429,
                "Cannot evict pod as it would violate the pod's disruption budget.",
                details={
                    "causes": [
                        {
                            "reason": "DisruptionBudget",
                            "message": f"The disruption budget {budget['metadata']['name']} needs "
                            f"{status.get('desiredHealthy', 0)} healthy pods and has "
                            f"{status.get('currentHealthy', 0)} currently",
                        }
                    ]
                },
            )
        if "disruptionsAllowed" in (budget.get("status") or {}):  # pinned: the apiserver decrements it
            pinned = copy.deepcopy(budget)
            pinned["status"]["disruptionsAllowed"] -= 1
            store.replace(PDBS, namespace, budget["metadata"]["name"], pinned, subresource="status")
    store.delete(PODS, namespace, name, options)


def _selects(pdb: Obj, labels: dict[str, str]) -> bool:
    try:
        return labels_match(label_selector_from_spec((pdb.get("spec") or {}).get("selector")), labels)
    except SelectorError:
        return False


def _healthy(pod: Obj) -> bool:
    status = pod.get("status") or {}
    if status.get("phase") != "Running" or pod["metadata"].get("deletionTimestamp"):
        return False
    ready = next((c for c in status.get("conditions") or [] if c.get("type") == "Ready"), None)
    return ready is None or ready.get("status") == "True"


def _scaled(value: Any, total: int) -> int:
    if isinstance(value, str) and value.endswith("%"):
        return math.ceil(total * int(value[:-1]) / 100)
    return int(value)
