"""Pure provisioning decisions: API request batching and launch review."""
