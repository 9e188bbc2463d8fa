"""Which pod classes topology closes a node to, kept current as placements change the counts.

Checking each class once per node is cheaper than finding out shape by shape, and a node closed to
everything left (common once only constrained pods remain) is done at once. The verdicts for a fresh
host of a node's signature are kept per signature and brought up to date from the classes whose counts
changed (`Packing.changed`); only classes whose checks read a hostname count the node holds are checked
against the node itself. So a node costs its own pods, not every class.

Topology can close a node to a class for a while: a zone spread closes a zone until the others catch
up, a pod affinity until a matching pod arrives. A node with room that was closed that way is
remembered (parked) for the class and tried again before a new node is opened for it.
"""

from __future__ import annotations

from hpscaler.model import LABEL_HOSTNAME
from hpscaler.scheduling import topology as topo
from hpscaler.scheduling.index import RoundIndex
from hpscaler.scheduling.packing import Bin, Candidates, PodClass
from hpscaler.scheduling.placement import Packing


class TopologyVerdicts:
    """Topology verdicts of the round's classes on its nodes (see the module docstring)."""

    def __init__(self, index: RoundIndex, packing: Packing) -> None:
        self.index = index
        self.packing = packing
        # (class, bin signature) -> (topology stamp, closed?) for classes whose checks ignore the hostname.
        self.verdicts: dict[tuple[int, int], tuple[int, bool]] = {}
        # Per bin signature: the classes topology closes a fresh host of it to, and how far into
        # `Packing.changed` they are current.
        self.closed_by_signature: dict[int, tuple[set[int], int]] = {}
        self.seeded_hosts: dict[str, list[topo.TopologyGroup]] | None = None
        # Bins and the classes closed to them, not parked yet: most never need to be (see `flush`).
        self.pending: list[tuple[Bin, set[int]]] = []
        self.host_keyed: set[int] | None = None
        packing.on_rollback.append(self.flush)

    def probe(self, b: Bin) -> dict[str, str]:
        """Labels of a fresh host in `b`'s domains."""
        return self.index.signature_probe(b.signature, b.labels)

    def closed_classes(self, b: Bin, candidates: Candidates) -> set[int] | None:
        """The classes with pods left that topology closes `b` to now (None: all of them)."""
        classes = self.index.classes
        live = candidates.live
        spent = self.packing.spent
        if candidates.spent_seen != len(spent):
            for index in spent[candidates.spent_seen :]:
                if classes[index].left <= 0:
                    live.discard(index)
            candidates.spent_seen = len(spent)
        closed = self.signature_closed(b).intersection(live)
        for index in self.host_affected(b):
            cls = classes[index]
            if cls.left > 0 and cls.topology.host_keyed:
                if topo.allowed(cls.topology, b.labels):
                    closed.discard(index)
                else:
                    closed.add(index)
        closed.intersection_update(live)
        if self.host_keyed is None:
            self.host_keyed = {c.index for c in classes if c.topology.host_keyed}
        for index in closed & self.host_keyed:
            self.park(b, classes[index])
        self.pending.append((b, closed))  # the fill adds the classes it finds closed to this set
        return closed if len(closed) < len(live) else None

    def signature_closed(self, b: Bin) -> set[int]:
        """The constrained classes topology closes a fresh host of `b`'s signature to now."""
        classes = self.index.classes
        changed = self.packing.changed
        entry = self.closed_by_signature.get(b.signature)
        probe = self.probe(b)
        if entry is None:
            closed = {
                c.index for c in classes if c.topology.constrained and not topo.allowed(c.topology, probe)
            }
        else:
            closed, seen = entry
            for index in set(changed[seen:]):
                if topo.allowed(classes[index].topology, probe):
                    closed.discard(index)
                else:
                    closed.add(index)
        self.closed_by_signature[b.signature] = (closed, len(changed))
        return set(closed)

    def host_affected(self, b: Bin) -> set[int]:
        """Classes whose checks read a hostname count that `b`'s host holds (their verdict on `b` may
        differ from a fresh host's)."""
        classes = self.index.classes
        if self.seeded_hosts is None:
            self.seeded_hosts = {}
            for group in {id(g): g for c in classes for g in c.topology.watched}.values():
                if group.key == LABEL_HOSTNAME:
                    for host in (*group.counts, *group.owners):
                        self.seeded_hosts.setdefault(host, []).append(group)
        groups = list(self.seeded_hosts.get(b.name, ()))
        for index in b.classes:
            checks = classes[index].topology
            groups.extend(g for g in (*checks.increments, *checks.owns) if g.key == LABEL_HOSTNAME)
        if not groups:
            return set()
        watchers = self.index.watchers()
        return {c for g in groups for c in watchers.get(id(g), ())}

    def closed_to(self, cls: PodClass, b: Bin) -> bool:
        """Whether topology forbids one more pod of `cls` on `b` now."""
        checks = cls.topology
        if checks.host_keyed:
            return not topo.allowed(checks, b.labels)
        # Without hostname checks every bin of a signature gets the same verdict until a count changes.
        key = (cls.index, b.signature)
        stamp = checks.stamp()
        found = self.verdicts.get(key)
        if found is None or found[0] != stamp:
            found = self.verdicts[key] = (stamp, not topo.allowed(checks, b.labels))
        return found[1]

    def park(self, b: Bin, cls: PodClass) -> None:
        """Remember a bin topology closed to `cls`, unless only its host is closed.

        `cls` must be in the set `closed_classes` returned for `b`: classes whose checks ignore the
        hostname are parked from there when `flush` runs.
        """
        if not cls.topology.host_keyed:
            return
        if topo.allowed(cls.topology, self.probe(b)):
            return  # a fresh node in the same domain would do: this host stays closed for good
        cls.parked.setdefault(b.signature, {})[b.name] = b

    def flush(self) -> None:
        """Park the bins closed to classes whose checks ignore the hostname (their verdict does not
        depend on when they are parked). Parked bins are read only by `Filler.place_on_parked` and
        rollbacks, which flush first: with every pod placed on existing nodes, none is ever parked."""
        classes = self.index.classes
        for b, closed in self.pending:
            for index in closed:
                cls = classes[index]
                if not cls.topology.host_keyed:
                    cls.parked.setdefault(b.signature, {})[b.name] = b
        self.pending.clear()
