"""Errors a person can cause: the CLI maps every one of them to exit code 2."""


class BadInput(Exception):
    """Input that is wrong as given: a config key, a CLI argument, job arguments."""


class ConfigError(BadInput):
    """A config file that cannot be used; the message names the file and the key."""


class UnknownJobType(BadInput):
    """A job type name (or legacy name) that nobody registered."""


class BadJobArgs(BadInput):
    """Job arguments that do not fit the type's parameters."""


class NotFound(BadInput):
    """A job, router or other record named on the command line does not exist."""
