"""Running hpscaler as a service: leader election, health and metrics, systemd integration."""
