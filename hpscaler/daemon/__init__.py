"""The daemon's loops: thin shells that move data between backends and the pure core."""
