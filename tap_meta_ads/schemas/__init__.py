"""JSON schemas, one per stream (a package so that importlib.resources finds them)."""
