"""Fault injection between the daemon and its backends: seeded, deterministic, backend-agnostic.

`Chaos` wraps any backend (the in-memory fakes or the real ones over the wire) in a proxy that, per
call and from one seeded random stream, can:

- fail the call before it reaches the backend (throttling, 5xx, timeout, connection reset);
- let the call take effect and then lose the answer (a timeout after the request was applied: the
  case idempotency tokens and reconciliation exist for);
- fail every call to a backend during an outage window (e.g. the API server gone for a minute);
- drop a watch stream after some events, or silently lose events (a stale cache until the re-list);
- kill the daemon at the k-th mutating call, before or after it takes effect (`ProcessKilled`, a
  BaseException nothing in the daemon catches: the in-process stand-in for SIGKILL; every later
  call by the dead daemon raises it too, so not even shielded code can act after death).

Every fault is logged in `Chaos.log` so a failing test can say what it injected.
"""

from __future__ import annotations

import inspect
import random
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import Any

from hpscaler.backends.protocols import BackendError
from hpscaler.backends.types import WatchEvent, WatchKind

# What AWS and the API server answer when they are overloaded or the network misbehaves.
TRANSIENT_CODES = (
    "ThrottlingException",
    "InternalFailure",
    "ServiceUnavailable",
    "RequestTimeout",
    "ConnectionReset",
)

# Calls that change the world: the steps at which a kill or a lost answer matters.
MUTATING = frozenset(
    {
        "batch_add_nodes",
        "batch_delete_nodes",
        "taint_node",
        "register_node",
        "annotate_node",
        "annotate_pod",
        "evict_pod",
        "delete_pod",
        "delete_node",
        "acknowledge",
    }
)


class ProcessKilled(BaseException):
    """The daemon died (SIGKILL): nothing it runs may reach the world any more."""


@dataclass
class FaultRates:
    """Probabilities per call; `lost_answer` applies to mutating calls only."""

    fail: float = 0.0
    lost_answer: float = 0.0


@dataclass
class Chaos:
    """The fault schedule shared by every proxy of one daemon incarnation."""

    seed: int = 0
    now: Callable[[], float] = lambda: 0.0
    rates: dict[str, FaultRates] = field(default_factory=dict)  # by backend name
    outages: list[tuple[str, float, float]] = field(default_factory=list)  # (backend, start, end)
    drop_watch_every: int = 0  # drop the stream after this many events past SYNCED (0: never)
    lose_event: float = 0.0  # probability a watch event past SYNCED never arrives
    lose_answers: dict[str, int] = field(default_factory=dict)  # op -> its next N answers are lost
    kill_at: tuple[int, str] | None = None  # (index of the mutating call, "before" | "after")
    log: list[tuple[float, str, str, str]] = field(default_factory=list)
    steps: list[str] = field(default_factory=list)  # mutating calls in the order they were made
    dead: bool = False

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)

    def wrap(self, name: str, backend: Any) -> Any:
        """`backend` behind a faulty proxy named `name` (for rates and outages); None stays None."""
        return None if backend is None else FaultyBackend(name, backend, self)

    def counts(self) -> Counter[str]:
        """How many faults of each kind were injected."""
        return Counter(kind for _, _, _, kind in self.log)

    # -- decisions ------------------------------------------------------------------------------

    def before(self, backend: str, op: str) -> None:
        self.check_alive()
        if op in MUTATING:
            self.steps.append(op)
            self._maybe_kill("before")
        if self._in_outage(backend):
            self._record(backend, op, "outage")
            raise BackendError(f"{backend} unavailable (injected outage)", code="ServiceUnavailable")
        rates = self.rates.get(backend)
        if rates is not None and rates.fail and self.rng.random() < rates.fail:
            code = self.rng.choice(TRANSIENT_CODES)
            self._record(backend, op, code)
            raise BackendError(f"{op}: injected {code}", code=code)

    def after(self, backend: str, op: str) -> None:
        self.check_alive()
        if op not in MUTATING:
            return
        self._maybe_kill("after")
        if self.lose_answers.get(op, 0) > 0:
            self.lose_answers[op] -= 1
            lost = True
        else:
            rates = self.rates.get(backend)
            lost = rates is not None and bool(rates.lost_answer) and self.rng.random() < rates.lost_answer
        if lost:
            self._record(backend, op, "lost-answer")
            raise BackendError(f"{op}: answer lost after the call took effect", code="RequestTimeout")

    def check_alive(self) -> None:
        if self.dead:
            raise ProcessKilled

    def _maybe_kill(self, phase: str) -> None:
        if self.kill_at == (len(self.steps) - 1, phase):
            self.dead = True
            self._record("daemon", self.steps[-1], f"killed-{phase}")
            raise ProcessKilled

    def _in_outage(self, backend: str) -> bool:
        now = self.now()
        return any(b == backend and start <= now < end for b, start, end in self.outages)

    def _record(self, backend: str, op: str, kind: str) -> None:
        self.log.append((self.now(), backend, op, kind))


class FaultyBackend:
    """A proxy with the wrapped backend's methods, each passing through `Chaos` first and after."""

    def __init__(self, name: str, inner: Any, chaos: Chaos) -> None:
        self._name = name
        self._inner = inner
        self._chaos = chaos

    def __getattr__(self, op: str) -> Any:
        target = getattr(self._inner, op)
        if not inspect.iscoroutinefunction(target):
            return target
        name, chaos = self._name, self._chaos

        async def call(*args: Any, **kwargs: Any) -> Any:
            chaos.before(name, op)
            result = await target(*args, **kwargs)
            chaos.after(name, op)
            return result

        return call

    async def watch(self) -> AsyncIterator[WatchEvent]:
        chaos = self._chaos
        chaos.before(self._name, "watch")
        delivered = 0
        synced = False  # the list part is one LIST call in reality: it cannot break half-way
        async with aclosing(self._inner.watch()) as events:
            async for event in events:
                synced = synced or event.kind is WatchKind.SYNCED
                chaos.check_alive()
                if chaos._in_outage(self._name):
                    chaos._record(self._name, "watch", "outage")
                    raise BackendError("watch stream lost: API server unavailable", code="ServiceUnavailable")
                if (
                    synced
                    and event.kind is not WatchKind.SYNCED
                    and chaos.lose_event
                    and chaos.rng.random() < chaos.lose_event
                ):
                    chaos._record(self._name, "watch", "event-lost")
                    continue
                yield event
                delivered += synced
                if synced and chaos.drop_watch_every and delivered % chaos.drop_watch_every == 0:
                    chaos._record(self._name, "watch", "stream-dropped")
                    raise BackendError("watch stream dropped (injected)", code="ConnectionReset")
