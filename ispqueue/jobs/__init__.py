"""Job handlers, one module per group. Importing this package registers every type."""

from ispqueue.jobs import system  # noqa: F401
