"""Interfaces to outside systems, and the data that crosses them."""
