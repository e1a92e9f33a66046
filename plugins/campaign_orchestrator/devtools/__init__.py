"""Tools for local development and the demo: a mail sink, `make demo`, `make up`.

Nothing here runs in production DAGs.
"""
