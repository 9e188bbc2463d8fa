"""Adapters from Kubernetes objects (manifests and API JSON) to `hpscaler.model`."""
