"""Versions that every result records."""

__version__ = "0.1.0"
