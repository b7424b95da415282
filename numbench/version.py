"""Versions that every result records."""

__version__ = "0.2.0"
