"""Test doubles that run for real: an HTTP fake of the Kubernetes API server.

`FakeApiServer` (in `hpscaler.testing.fakeapiserver`) lets the Kubernetes backend, the daemon and
the high-availability tests talk to a Kubernetes API over HTTP without a cluster.
"""

from hpscaler.testing.apiobjects import ApiError
from hpscaler.testing.apiresources import CUSTOM_RESOURCES, DEFAULT_RESOURCES, ResourceType
from hpscaler.testing.fakeapiserver import FakeApiServer, RecordedRequest

__all__ = [
    "CUSTOM_RESOURCES",
    "DEFAULT_RESOURCES",
    "ApiError",
    "FakeApiServer",
    "RecordedRequest",
    "ResourceType",
]
