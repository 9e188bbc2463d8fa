"""`hpscaler simulate`: the real daemon loops on the in-memory world, in virtual time."""
