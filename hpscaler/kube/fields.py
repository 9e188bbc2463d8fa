"""Reading manifest fields with errors that point at them.

A manifest is a plain dict from YAML or API JSON. Each reader takes an `At` (which object, which
file, which path prefix for templates), the raw value and its field path, and either returns the
typed value or raises a `ManifestError` naming the object, the field path and a fix. None counts as
absent, because API JSON writes nulls for unset fields.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from hpscaler.model import Resources
from hpscaler.quantity import QuantityError, parse_resource

TAINT_EFFECTS = ("NoSchedule", "PreferNoSchedule", "NoExecute")
_QUANTITY_FIX = "write a non-negative quantity such as 500m, 2, 1.5Gi or 256M"


class ManifestError(ValueError):
    """A manifest hpscaler cannot use; names the object (kind namespace/name), the field path and the fix."""

    def __init__(self, obj: str, field: str, message: str, fix: str = "", *, source: str = "") -> None:
        self.obj = obj
        self.field = field
        self.message = message
        self.fix = fix
        self.source = source
        super().__init__(self._text())

    def _text(self) -> str:
        text = ": ".join(part for part in (self.source, self.obj, self.field, self.message) if part)
        return f"{text.rstrip('.')}. Fix: {self.fix}" if self.fix else text

    def __str__(self) -> str:
        return self._text()


@dataclass(frozen=True, slots=True)
class At:
    """Where fields are read from: the object label, the file, and a path prefix for templates."""

    obj: str
    source: str = ""
    prefix: str = ""

    def error(self, path: str, message: str, fix: str = "") -> ManifestError:
        return ManifestError(self.obj, self.prefix + path, message, fix, source=self.source)


def read_map(at: At, value: Any, path: str) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise at.error(path, f"expected a mapping, got {type(value).__name__} {value!r}")
    return value


def read_list(at: At, value: Any, path: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list | tuple):
        raise at.error(path, f"expected a list, got {type(value).__name__} {value!r}")
    return list(value)


def read_text(at: At, value: Any, path: str, default: str = "") -> str:
    if value is None:
        return default
    if not isinstance(value, str):
        raise at.error(path, f"expected a string, got {value!r}", f'quote the value: "{value}"')
    return value


def read_int(at: At, value: Any, path: str, default: int) -> int:
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int):
        raise at.error(path, f"expected an integer, got {value!r}", "write a whole number without quotes")
    return value


def read_strings(at: At, value: Any, path: str) -> dict[str, str]:
    # Label and annotation values are strings in the API; YAML turns `version: 1` into an int.
    return {key: read_text(at, item, f"{path}[{key}]") for key, item in read_map(at, value, path).items()}


def field_key(path: str, name: str) -> str:
    return f"{path}[{name}]" if "." in name or "/" in name else f"{path}.{name}"


def read_time(at: At, value: Any, path: str) -> float:
    if value is None:
        return 0.0
    moment = value
    if isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            moment = None
    if not isinstance(moment, datetime):
        raise at.error(path, f"{value!r} is not an RFC 3339 timestamp", "write it like 2024-05-01T12:00:00Z")
    if moment.tzinfo is None:  # YAML timestamps without an offset are UTC
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def object_label(kind: str, meta: Mapping[str, Any], where: str, namespaced: bool = True) -> str:
    name = meta.get("name")
    if not isinstance(name, str) or not name:
        return f"{kind} ({where})" if where else f"{kind} <unnamed>"
    if not namespaced:
        return f"{kind} {name}"
    namespace = meta.get("namespace")
    return f"{kind} {namespace if isinstance(namespace, str) and namespace else 'default'}/{name}"


def read_quantities(at: At, value: Any, path: str) -> Resources:
    amounts: Resources = {}
    for name, raw in read_map(at, value, path).items():
        try:
            amounts[name] = parse_resource(name, raw)
        except QuantityError as exc:
            raise at.error(field_key(path, name), str(exc), _QUANTITY_FIX) from None
    return amounts


def is_integer(text: str) -> bool:
    try:
        int(text)
    except ValueError:
        return False
    return True


def read_identity(at: At, meta: Mapping[str, Any]) -> tuple[str, str]:
    """(name, namespace) of an object; the name is required, the namespace defaults to `default`."""
    name = read_text(at, meta.get("name"), "metadata.name")
    if not name:
        raise at.error("metadata.name", "is required", "give the object a metadata.name")
    return name, read_text(at, meta.get("namespace"), "metadata.namespace") or "default"


def check_kind(at: At, obj: Mapping[str, Any], kind: str) -> None:
    """An object whose `kind` is given must be `kind`."""
    found = obj.get("kind")
    if found is not None and found != kind:
        raise at.error("kind", f"expected {kind}, got {found!r}", f"pass a {kind} manifest")
