"""The one taxonomy of router failures; jobs catch these, never a library's own errors."""

from __future__ import annotations

from ispqueue.errors import BadInput


class RouterError(Exception):
    """Something went wrong talking to one router; `.router` names it."""

    def __init__(self, text: str, router: str | None = None, command: str | None = None):
        super().__init__(text, router, command)
        self.text = text
        self.router = router
        self.command = command

    def __str__(self) -> str:
        where = ": ".join(part for part in (self.router, self.command) if part)
        return f"{where}: {self.text}" if where else self.text


class RouterUnreachable(RouterError):
    """No usable connection: refused, no route, TLS rejected, or the router hung up."""


class RouterAuthFailed(RouterError):
    """The router refused the login (wrong user or password, or no `api` policy)."""


class RouterTimeout(RouterError):
    """The router did not answer within the timeout or the job's deadline."""


class RouterProtocolError(RouterError):
    """The conversation broke: a malformed reply, `!fatal`, or a discarded connection."""


class RouterTrap(RouterError):
    """RouterOS refused a command; `.message` and `.category` are the router's own."""

    def __init__(
        self,
        message: str,
        category: int | None = None,
        router: str | None = None,
        command: str | None = None,
    ):
        super().__init__(message, router, command)
        self.args = (message, category, router, command)
        self.message = message
        self.category = category


class RouterUnsupported(RouterError):
    """The router has no such menu or command (other model or RouterOS version)."""

    def __init__(self, message: str, router: str | None = None, command: str | None = None):
        super().__init__(message, router, command)
        self.message = message


class RouterEncodingError(RouterError, BadInput):
    """A value the router's text encoding cannot hold; nothing was sent."""
