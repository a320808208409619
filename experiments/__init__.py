"""Thin command-line entry points: they parse flags, build a config and call the library."""
