"""Backends are found by name through the `hpscaler.backends` entry-point group.

An entry point names a factory: a callable that takes the loaded configuration and returns an async
context manager yielding a `BackendSet` with the interfaces it implements. The configuration's
`backends` section says which factory serves which role; a factory named for several roles is
opened once, so the in-memory fakes share one world. Third-party packages add backends by
declaring an entry point in the same group (see `plugins/`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points
from typing import Any, TypeVar

from hpscaler.backends.protocols import (
    HyperPodCluster,
    InterruptionSource,
    KubernetesCluster,
    PlacementScores,
    SpotPriceSource,
)
from hpscaler.config import LoadedConfig

ENTRY_POINT_GROUP = "hpscaler.backends"


@dataclass(slots=True)
class BackendSet:
    """What one factory provides; roles it does not serve stay None."""

    kubernetes: KubernetesCluster | None = None
    hyperpod: HyperPodCluster | None = None
    scores: PlacementScores | None = None
    interruptions: InterruptionSource | None = None
    prices: SpotPriceSource | None = None


BackendFactory = Callable[[LoadedConfig], AbstractAsyncContextManager[BackendSet]]


ROLES = ("kubernetes", "hyperpod", "scores", "interruptions", "prices")  # the BackendSet fields
_ROLES_ATTRIBUTE = "__hpscaler_roles__"
_F = TypeVar("_F", bound=Callable[..., Any])


def serves(*roles: str) -> Callable[[_F], _F]:
    """Declare which `BackendSet` roles a factory fills, for `hpscaler backends` (a plugin may too)."""
    unknown = [r for r in roles if r not in ROLES]
    if unknown:
        raise ValueError(f"unknown backend role(s) {unknown}; roles: {', '.join(ROLES)}")

    def mark(factory: _F) -> _F:
        setattr(factory, _ROLES_ATTRIBUTE, tuple(roles))
        return factory

    return mark


def declared_roles(factory: object) -> tuple[str, ...] | None:
    """The roles a factory declared with `serves`; None when it did not say."""
    roles = getattr(factory, _ROLES_ATTRIBUTE, None)
    return tuple(roles) if isinstance(roles, tuple) else None


class BackendNotFound(LookupError):
    """A configured backend name that no installed package provides."""


def discover() -> dict[str, EntryPoint]:
    """Installed backends by name."""
    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


def load_factory(name: str) -> BackendFactory:
    """The factory registered under `name`."""
    found = discover().get(name)
    if found is None:
        known = ", ".join(sorted(discover())) or "none"
        raise BackendNotFound(
            f"no backend named {name!r} is installed (installed: {known}); "
            f"install the package that provides it or fix spec.backends in the HpscalerConfig"
        )
    factory: BackendFactory = found.load()
    return factory


def backend_roles(config: LoadedConfig) -> dict[str, str]:
    """Which backend serves each role (a `BackendSet` field), from `spec.backends`."""
    roles = config.settings.backends
    return {
        "kubernetes": roles.kubernetes,
        "hyperpod": roles.aws,
        "interruptions": roles.aws,
        "scores": roles.scores or roles.aws,
        "prices": roles.aws,
    }


def check_backends(config: LoadedConfig) -> None:
    """Raise `BackendNotFound` (naming the installed ones) for a configured backend that is missing."""
    for name in dict.fromkeys(backend_roles(config).values()):
        load_factory(name)


@asynccontextmanager
async def open_backends(config: LoadedConfig) -> AsyncIterator[BackendSet]:
    """Open every configured backend and combine them by role."""
    roles = config.settings.backends
    wanted = backend_roles(config)
    combined = BackendSet()
    async with AsyncExitStack() as stack:
        opened: dict[str, BackendSet] = {}
        for name in dict.fromkeys(wanted.values()):
            opened[name] = await stack.enter_async_context(load_factory(name)(config))
        for role, name in wanted.items():
            setattr(combined, role, getattr(opened[name], role))
        if combined.kubernetes is None or combined.hyperpod is None:
            raise BackendNotFound(
                f"backend {roles.kubernetes!r} provides no Kubernetes cluster or {roles.aws!r} no HyperPod "
                "cluster; check spec.backends"
            )
        yield combined
