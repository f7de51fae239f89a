"""Offline helper tools (weight converters and the like)."""
