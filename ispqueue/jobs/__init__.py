"""Job handlers, one module per group. Importing this package registers every type."""

from ispqueue.jobs import router, system  # noqa: F401
