"""Which public coroutine methods of an object a test exercised.

The permission contracts (deploy/iam-policy.json, deploy/kubernetes/rbac.yaml) are checked against
the requests a tour of a backend makes; `spy` lets that tour prove it called every operation the
backend class defines, so a method added later cannot escape the check.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any


def public_coroutines(cls: type, *, exclude: frozenset[str] = frozenset()) -> set[str]:
    """Names of the public `async def` methods (coroutines and async generators) `cls` defines or inherits."""
    names = set()
    for klass in cls.__mro__:
        for name, member in vars(klass).items():
            if name.startswith("_") or name in exclude:
                continue
            if inspect.iscoroutinefunction(member) or inspect.isasyncgenfunction(member):
                names.add(name)
    return names


def spy(obj: object, called: set[str], *, exclude: frozenset[str] = frozenset()) -> object:
    """Replace `obj`'s public coroutine methods by wrappers that add their name to `called`; `obj`."""
    for name in public_coroutines(type(obj), exclude=exclude):
        method = getattr(obj, name)
        if inspect.isasyncgenfunction(method):
            setattr(obj, name, _spy_generator(method, name, called))
        else:
            setattr(obj, name, _spy_coroutine(method, name, called))
    return obj


def _spy_coroutine(
    method: Callable[..., Coroutine[Any, Any, Any]], name: str, called: set[str]
) -> Callable[..., Coroutine[Any, Any, Any]]:
    @functools.wraps(method)
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        called.add(name)
        return await method(*args, **kwargs)

    return wrapper


def _spy_generator(
    method: Callable[..., AsyncIterator[Any]], name: str, called: set[str]
) -> Callable[..., AsyncIterator[Any]]:
    @functools.wraps(method)
    def wrapper(*args: Any, **kwargs: Any) -> AsyncIterator[Any]:
        called.add(name)
        return method(*args, **kwargs)

    return wrapper
