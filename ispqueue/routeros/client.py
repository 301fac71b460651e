"""The RouterOS API client jobs use: the only module that imports librouteros.

One connection per job, every wait bounded by the job's deadline, every value the exact text
the router holds (`dict[str, str]` rows), one error taxonomy (`ispqueue.routeros.errors`),
and one write path (`_write`) that a dry run records instead of sending.
"""

from __future__ import annotations

import contextlib
import logging
import re
import secrets
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from hashlib import md5

from librouteros.connections import SocketTransport
from librouteros.exceptions import (
    ConnectionClosed,
    FatalError,
    MultiTrapError,
    ProtocolError,
    TrapError,
)
from librouteros.protocol import decode_length, determine_length, encode_length

from ispqueue.config import RouterConfig
from ispqueue.routeros.errors import (
    RouterAuthFailed,
    RouterEncodingError,
    RouterError,
    RouterProtocolError,
    RouterTimeout,
    RouterTrap,
    RouterUnreachable,
    RouterUnsupported,
)

# librouteros logs every word at DEBUG, the login password included.
logging.getLogger("librouteros").setLevel(logging.INFO)

AUTH_FAILURES = ("invalid user name or password", "cannot log in")
UNKNOWN_MENU = ("no such command prefix", "no such command or directory", "no such command")
Props = Mapping[str, str | int]
Where = Mapping[str, str | int] | Sequence[str]

_CHALLENGE = re.compile(r"[0-9a-fA-F]{32}")
_RECV_SIZE = 65536
_FILE_CHUNK = 32768
_FILE_RETRIES = 10
_FILE_RETRY_DELAY = 0.2


@dataclass
class _Reply:
    """One command's answer: the `!re` rows and the attributes of its `!done`."""

    rows: list[dict[str, str]]
    done: dict[str, str]


class RouterClient:
    """A logged-in API session with one router; not thread-safe except for `abort()`."""

    def __init__(self, config: RouterConfig, *, deadline: float | None = None,
                 dry_run: bool = False):
        self.config = config
        self.name = config.name
        self.deadline = deadline
        self.dry_run = dry_run
        self.writes: list[list[str]] = []
        self._wire: _Wire | None = None
        self._lock = threading.Lock()
        self._cancelled = False
        self._discarded: str | None = None
        self._decode = _decoder(config.encoding, config.fallback_encoding)

    @classmethod
    def connect(
        cls,
        config: RouterConfig,
        *,
        deadline: float | None = None,
        dry_run: bool = False,
        on_cancel: Callable[[Callable[[], None]], None] | None = None,
    ) -> RouterClient:
        """Open and log in; `on_cancel` receives `abort` so the job runtime can cut us off."""
        client = cls(config, deadline=deadline, dry_run=dry_run)
        if on_cancel is not None:
            on_cancel(client.abort)
        try:
            client._open()
        except BaseException:
            client.close()
            raise
        return client

    def __enter__(self) -> RouterClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the socket; safe to call twice and from error paths."""
        with self._lock:
            wire, self._wire = self._wire, None
            if self._discarded is None:
                self._discarded = "connection closed"
            if wire is not None:
                wire.close()

    def abort(self) -> None:
        """Force the socket shut from any thread; the blocked call raises RouterTimeout."""
        with self._lock:
            self._cancelled = True
            if self._wire is not None:
                self._wire.shutdown()

    # -- reads ---------------------------------------------------------------------------

    def print(self, menu: str, proplist: Iterable[str] | str = (),
              where: Where | None = None) -> list[dict[str, str]]:
        """Rows of `menu` (e.g. "/ppp/secret"), only the `proplist` fields if given."""
        words = [_menu(menu) + "/print", *_proplist(proplist), *_query(where)]
        return self._call(words).rows

    def count(self, menu: str, where: Where | None = None) -> int:
        """How many rows of `menu` match, counted by the router (`=count-only=`)."""
        done = self._call([_menu(menu) + "/print", "=count-only=", *_query(where)]).done
        return self._number(done.get("ret"), "count-only")

    def read(self, command: str, props: Props | None = None, /, **kwprops: str | int
             ) -> list[dict[str, str]]:
        """Rows of any command that changes nothing (e.g. `/interface/monitor-traffic`)."""
        return self._call([command, *_attributes(props, kwprops)]).rows

    def resource(self) -> dict[str, str]:
        """The `/system/resource` row: version, uptime, memory, cpu-load, ..."""
        return self._single("/system/resource")

    def identity(self) -> str:
        """The router's `/system/identity` name."""
        row = self._single("/system/identity")
        if "name" not in row:
            raise RouterProtocolError("no name in /system/identity", self.name)
        return row["name"]

    def health(self) -> list[dict[str, str]]:
        """`/system/health` rows; RouterUnsupported on devices without the menu."""
        return self.print("/system/health")

    def export(self, *, show_sensitive: bool = False) -> str:
        """The configuration as `/export` text, exactly as the router wrote it.

        Exports into a temporary file and reads it back, because `/export` over the API
        returns nothing. The file is removed again, so a dry run exports too.
        """
        name = f"ispqueue-export-{secrets.token_hex(4)}"
        words = ["/export", f"=file={name}"]
        self._call([*words, "=show-sensitive=yes"] if show_sensitive else words)
        try:
            text = self._read_file(f"{name}.rsc")
        except BaseException:
            with contextlib.suppress(RouterError):  # the first failure is the one to report
                self._remove_file(f"{name}.rsc")
            raise
        self._remove_file(f"{name}.rsc")
        return text

    # -- writes --------------------------------------------------------------------------

    def write(self, command: str, props: Props | None = None, /, **kwprops: str | int
              ) -> dict[str, str]:
        """Any state-changing command; returns the `!done` attributes (e.g. `ret`)."""
        return self._write([command, *_attributes(props, kwprops)])

    def add(self, menu: str, props: Props | None = None, /, **kwprops: str | int) -> str:
        """Add a row; returns its `.id` (`*dry-N` in a dry run)."""
        return self._write([_menu(menu) + "/add", *_attributes(props, kwprops)]).get("ret", "")

    def set_by_name(self, menu: str, name: str, props: Props | None = None, /,
                    **kwprops: str | int) -> None:
        """Change the row called `name`; RouterTrap("no such item") when there is none."""
        ids = self._ids(menu, name)
        if not ids:
            raise RouterTrap("no such item", 0, self.name, f"{_menu(menu)}/set name={name}")
        self._write([_menu(menu) + "/set", f"=.id={','.join(ids)}",
                     *_attributes(props, kwprops)])

    def remove_by_name(self, menu: str, name: str) -> int:
        """Remove the rows called `name`; returns how many there were (0 is fine)."""
        ids = self._ids(menu, name)
        if ids:
            self._write([_menu(menu) + "/remove", f"=.id={','.join(ids)}"])
        return len(ids)

    def kick(self, name: str) -> int:
        """Drop every live PPP session of `name` so it re-authenticates; returns the count."""
        kicked = 0
        for id_ in self._ids("/ppp/active", name):
            try:
                self._write(["/ppp/active/remove", f"=.id={id_}"])
            except RouterTrap as exc:
                # The session may end on its own between the lookup and the remove.
                if not exc.message.startswith("no such item"):
                    raise
                continue
            kicked += 1
        return kicked

    def _write(self, words: list[str]) -> dict[str, str]:
        """The only way a write reaches a router, and the one dry-run switch."""
        if not self.dry_run:
            return self._call(words).done
        self._usable()
        self._encode(words)
        self.writes.append(list(words))
        return {"ret": f"*dry-{len(self.writes)}"}

    # -- helpers built on reads ----------------------------------------------------------

    def _ids(self, menu: str, name: str) -> list[str]:
        # Ids change on reboot and on every reconnect of a dynamic row: look them up late.
        rows = self.print(menu, (".id",), {"name": name})
        return [row[".id"] for row in rows if ".id" in row]

    def _single(self, menu: str) -> dict[str, str]:
        rows = self.print(menu)
        if not rows:
            raise RouterProtocolError(f"{menu} answered without a row", self.name)
        return rows[0]

    def _number(self, text: str | None, what: str) -> int:
        if text is None or not text.isdigit():
            raise RouterProtocolError(f"{what}: expected a number, got {text!r}", self.name)
        return int(text)

    def _read_file(self, name: str) -> str:
        row = self._file_row(name)
        if "contents" in row:
            return row["contents"]
        # Larger files carry no inline contents; /file/read (7.13+) serves them in chunks.
        data = self._read_chunks(name, self._number(row.get("size"), f"{name} size"))
        return _decoder(self.config.encoding, self.config.fallback_encoding)(data)

    def _file_row(self, name: str) -> dict[str, str]:
        for _ in range(_FILE_RETRIES):
            rows = self.print("/file", ("size", "contents"), {"name": name})
            if rows:
                return rows[0]
            self._pause(_FILE_RETRY_DELAY)
        raise RouterProtocolError(f"{name} did not appear after /export", self.name)

    def _read_chunks(self, name: str, size: int) -> bytes:
        data = bytearray()
        while len(data) < size:
            chunk = self._read_chunk(name, len(data))
            if not chunk:
                # A short backup must never pass for a whole one.
                raise RouterProtocolError(f"{name}: read {len(data)} of {size} bytes", self.name)
            data += chunk
        return bytes(data)

    def _read_chunk(self, name: str, offset: int) -> bytes:
        words = ["/file/read", f"=file={name}", f"=offset={offset}", f"=chunk-size={_FILE_CHUNK}"]
        for attempt in range(_FILE_RETRIES):
            try:
                reply = self._call(words, raw=True)
            except RouterTrap:
                # A file fresh from /export is briefly unreadable although /file/print lists it.
                if attempt == _FILE_RETRIES - 1:
                    raise
                self._pause(_FILE_RETRY_DELAY)
                continue
            rows = reply.rows or [reply.done]
            return rows[0].get("data", "").encode("latin-1")
        return b""

    def _remove_file(self, name: str) -> None:
        if self._discarded is not None:
            return
        ids = self._ids("/file", name)
        if ids:
            self._call(["/file/remove", f"=.id={','.join(ids)}"])

    def _pause(self, seconds: float) -> None:
        if self.deadline is not None and time.monotonic() + seconds >= self.deadline:
            raise RouterTimeout("the job's deadline passed while waiting for a file", self.name)
        time.sleep(seconds)

    # -- the connection ------------------------------------------------------------------

    def _open(self) -> None:
        method = self.config.login_method
        self._dial()
        if method == "token":
            self._login_token()
            return
        challenge = self._login_plain()
        if challenge is None:
            return
        if method == "plain":
            raise RouterAuthFailed("the router wants the pre-6.43 challenge login "
                                   "(set login_method to token or auto)", self.name, "/login")
        # A pre-6.43 router answers a plain login with a challenge; it wants a fresh start.
        self._drop_wire()
        self._dial()
        self._login_token()

    def _login_plain(self) -> str | None:
        config = self.config
        done = self._call(["/login", f"=name={config.username}",
                           f"=password={config.password}"]).done
        ret = done.get("ret")
        return ret if ret is not None and _CHALLENGE.fullmatch(ret) else None

    def _login_token(self) -> None:
        challenge = self._call(["/login"]).done.get("ret", "")
        if not _CHALLENGE.fullmatch(challenge):
            raise RouterProtocolError("no login challenge from the router", self.name, "/login")
        password = self._encode_text(self.config.password, "=password=")
        digest = md5(b"\x00" + password + bytes.fromhex(challenge), usedforsecurity=False)
        self._call(["/login", f"=name={self.config.username}",
                    f"=response=00{digest.hexdigest()}"])

    def _dial(self) -> None:
        config = self.config
        if self._cancelled:
            raise RouterTimeout("cancelled by the job runtime", self.name, "connect")
        try:
            sock = socket.create_connection((config.host, config.port), timeout=self._bound())
        except (OSError, RouterError) as exc:
            raise self._failure(exc, "connect") from exc
        wire = _Wire(sock, config.timeout, self.deadline)
        with self._lock:
            self._wire = wire
            self._discarded = None
            if self._cancelled:
                wire.shutdown()
        if config.tls:
            self._start_tls(wire)

    def _start_tls(self, wire: _Wire) -> None:
        try:
            tls = _tls_context(self.config).wrap_socket(
                wire.sock, server_hostname=self.config.host, do_handshake_on_connect=False)
            with self._lock:
                wire.sock = tls
                if self._cancelled:
                    wire.shutdown()
            tls.settimeout(self._bound())
            tls.do_handshake()
        except (OSError, ValueError, RouterError) as exc:
            raise self._discard(exc, "TLS handshake") from exc

    def _bound(self) -> float:
        if self.deadline is None:
            return self.config.timeout
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            raise RouterTimeout("the job's deadline has passed", self.name)
        return min(self.config.timeout, remaining)

    def _usable(self) -> _Wire:
        wire = self._wire
        if wire is None or self._discarded is not None:
            reason = self._discarded or "not connected"
            raise RouterProtocolError(f"connection discarded ({reason})", self.name)
        return wire

    def _call(self, words: list[str], raw: bool = False) -> _Reply:
        """Send one command and read its whole answer; traps keep the connection usable."""
        wire = self._usable()
        data = self._encode(words)
        try:
            wire.write(data)
            return self._read_reply(wire, raw)
        except (TrapError, MultiTrapError) as exc:
            raise as_router_error(exc, self.name, words[0]) from None
        except Exception as exc:
            raise self._discard(exc, words[0]) from exc
        except BaseException:
            self._drop_wire()
            self._discarded = f"{words[0]}: interrupted"
            raise

    def _read_reply(self, wire: _Wire, raw: bool) -> _Reply:
        decode = _latin1 if raw else self._decode
        rows: list[dict[str, str]] = []
        traps: list[dict[str, str]] = []
        while True:
            words = wire.read_sentence()
            kind = words[0] if words else b""
            if kind == b"!re":
                rows.append(_row(words, decode))
            elif kind == b"!done":
                done = _row(words, decode)
                break
            elif kind == b"!trap":
                traps.append(_row(words, self._decode))
            elif kind == b"!fatal":
                raise FatalError(_fatal_reason(words, self._decode))
            elif kind != b"!empty":
                raise ProtocolError(f"unexpected reply word {kind[:40]!r}")
        if traps:
            raise _trap_error(traps)
        return _Reply(rows, done)

    def _discard(self, exc: BaseException, command: str) -> RouterError:
        """Close a connection whose stream state is unknown; map `exc` for the job."""
        error = self._failure(exc, command)
        self._drop_wire()
        self._discarded = f"{command}: {error.text}"
        return error

    def _failure(self, exc: BaseException, command: str) -> RouterError:
        if self._cancelled and not isinstance(exc, RouterError):
            return RouterTimeout("cancelled by the job runtime", self.name, command)
        return as_router_error(exc, self.name, command, self._timeout_text())

    def _timeout_text(self) -> str:
        bound = self.config.timeout
        if self.deadline is not None and self.deadline - time.monotonic() < 0.05:
            return "no answer before the job's deadline"
        return f"no answer within {bound:g} s"

    def _drop_wire(self) -> None:
        with self._lock:
            wire, self._wire = self._wire, None
            if wire is not None:
                wire.close()

    def _encode(self, words: list[str]) -> bytes:
        parts = []
        for word in words:
            what = word.split("=", 2)[1] if word[:1] == "=" else word.split("=", 1)[0]
            data = self._encode_text(word, what)
            parts.append(encode_length(len(data)))
            parts.append(data)
        parts.append(b"\x00")
        return b"".join(parts)

    def _encode_text(self, text: str, what: str) -> bytes:
        try:
            return text.encode(self.config.encoding)
        except UnicodeEncodeError:
            # Name the property, never the value: it may be a password.
            raise RouterEncodingError(f"value of {what!r} cannot be written in "
                                      f"{self.config.encoding}", self.name) from None


def as_router_error(exc: BaseException, router: str | None, command: str | None = None,
                    timeout_text: str = "no answer in time") -> RouterError:
    """Map anything librouteros, the socket or TLS raised to the ispqueue taxonomy."""
    if isinstance(exc, RouterError):
        return exc
    if isinstance(exc, FatalError):
        return RouterProtocolError(f"the router ended the session: {exc}", router, command)
    if isinstance(exc, MultiTrapError | TrapError):
        return _trap_to_error(exc, router, command)
    if isinstance(exc, ConnectionClosed):
        return RouterUnreachable("the router closed the connection", router, command)
    if isinstance(exc, ProtocolError):
        return RouterProtocolError(f"malformed reply: {exc}", router, command)
    if isinstance(exc, TimeoutError):
        return RouterTimeout(timeout_text, router, command)
    if isinstance(exc, ssl.SSLCertVerificationError):
        return RouterUnreachable(f"TLS certificate rejected: {exc.verify_message}", router, command)
    if isinstance(exc, ssl.SSLZeroReturnError | ssl.SSLEOFError):
        return RouterUnreachable("the router closed the TLS connection", router, command)
    if isinstance(exc, ssl.SSLError):
        return RouterUnreachable(f"TLS failed: {exc.reason or exc}", router, command)
    if isinstance(exc, OSError):
        return RouterUnreachable(exc.strerror or str(exc) or type(exc).__name__, router, command)
    return RouterProtocolError(f"unexpected reply ({type(exc).__name__}: {exc})", router, command)


def _trap_to_error(exc: TrapError | MultiTrapError, router: str | None,
                   command: str | None) -> RouterError:
    traps = exc.traps if isinstance(exc, MultiTrapError) else (exc,)
    message = ", ".join(trap.message for trap in traps)
    if command == "/login" or any(trap.message.startswith(AUTH_FAILURES) for trap in traps):
        return RouterAuthFailed(message, router, command)
    if any(_unknown_menu(trap.message) for trap in traps):
        return RouterUnsupported(message, router, command)
    return RouterTrap(message, traps[0].category, router, command)


def _unknown_menu(message: str) -> bool:
    return message in UNKNOWN_MENU or message.startswith("no such command or directory (")


def _trap_error(traps: list[dict[str, str]]) -> TrapError | MultiTrapError:
    errors = [TrapError(t.get("message", ""), _category(t.get("category"))) for t in traps]
    return errors[0] if len(errors) == 1 else MultiTrapError(*errors)


def _category(text: str | None) -> int | None:
    return int(text) if text is not None and text.isdigit() else None


def _fatal_reason(words: list[bytes], decode: Callable[[bytes], str]) -> str:
    reason = decode(words[1]) if len(words) > 1 else ""
    return reason.removeprefix("=message=")


def _row(words: list[bytes], decode: Callable[[bytes], str]) -> dict[str, str]:
    row = {}
    for word in words[1:]:
        text = decode(word)
        if text[:1] == "=":
            key, _, value = text[1:].partition("=")
        elif text[:1] == ".":
            key, _, value = text.partition("=")  # API attributes such as .tag
        else:
            raise ProtocolError(f"unexpected word in a reply: {text[:40]!r}")
        row[key] = value
    return row


def _decoder(encoding: str, fallback: str) -> Callable[[bytes], str]:
    """Decode a word with the router's encoding, or the fallback where its bytes are invalid."""

    def decode(data: bytes) -> str:
        try:
            return data.decode(encoding)
        except UnicodeDecodeError:
            return data.decode(fallback, "replace")

    return decode


def _latin1(data: bytes) -> str:
    # Byte-exact: the caller turns it back into bytes with .encode("latin-1").
    return data.decode("latin-1")


def _tls_context(config: RouterConfig) -> ssl.SSLContext:
    if config.tls_verify:
        return ssl.create_default_context(cafile=config.ca_file)
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with contextlib.suppress(ssl.SSLError):
        # API-SSL without a certificate on the router only offers anonymous DH.
        context.set_ciphers("DEFAULT:ADH:@SECLEVEL=0")
    return context


def _menu(menu: str) -> str:
    return "/" + menu.strip().strip("/").replace(" ", "/")


def _proplist(names: Iterable[str] | str) -> list[str]:
    names = [names] if isinstance(names, str) else list(names)
    return [f"=.proplist={','.join(names)}"] if names else []


def _query(where: Where | None) -> list[str]:
    if where is None:
        return []
    if isinstance(where, Mapping):
        return [f"?{key}={_text(value)}" for key, value in where.items()]
    if isinstance(where, str) or not all(word.startswith("?") for word in where):
        raise ValueError(f"query words must start with '?': {where!r}")
    return list(where)


def _attributes(props: Props | None, kwprops: Mapping[str, str | int]) -> list[str]:
    words = [f"={key}={_text(value)}" for key, value in (props or {}).items()]
    words += [f"={key.replace('_', '-')}={_text(value)}" for key, value in kwprops.items()]
    return words


def _text(value: str | int) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    raise TypeError(f"router values are text (give 'yes'/'no' for flags), got {value!r}")


class _Wire(SocketTransport):
    """librouteros's socket transport, buffered and bounded by the job's deadline.

    librouteros reads each word with three recv() calls; one 64 KB read serves hundreds.
    """

    def __init__(self, sock: socket.socket, timeout: float, deadline: float | None):
        super().__init__(sock)
        self.timeout = timeout
        self.deadline = deadline
        self._buf = b""
        self._pos = 0

    def write(self, data: bytes) -> None:
        self._arm()
        self.sock.sendall(data)

    def read(self, length: int) -> bytes:
        start, end = self._pos, self._pos + length
        if end <= len(self._buf):
            self._pos = end
            return self._buf[start:end]
        parts, have = [self._buf[start:]], len(self._buf) - start
        while have < length:
            parts.append(self._recv())
            have += len(parts[-1])
        data = b"".join(parts)
        self._buf, self._pos = data, length
        return data[:length]

    def read_sentence(self) -> list[bytes]:
        words = []
        while True:
            buf, pos = self._buf, self._pos
            head = buf[pos] if pos < len(buf) else 0x80
            if head < 0x80 and pos + 1 + head <= len(buf):
                self._pos = end = pos + 1 + head
                if head == 0:
                    return words
                words.append(buf[pos + 1:end])
                continue
            first = self.read(1)
            if first == b"\x00":
                return words
            length = decode_length(first + self.read(determine_length(first)))
            words.append(self.read(length))

    def _recv(self) -> bytes:
        self._arm()
        data = self.sock.recv(_RECV_SIZE)
        if not data:
            raise ConnectionClosed("connection closed by the router")
        return data

    def _arm(self) -> None:
        # Recomputed before every socket wait so no wait outlives the job's deadline.
        if self.deadline is None:
            if self.sock.gettimeout() != self.timeout:
                self.sock.settimeout(self.timeout)
            return
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("the job's deadline has passed")
        self.sock.settimeout(min(self.timeout, remaining))

    def shutdown(self) -> None:
        with contextlib.suppress(OSError):
            # The plain-socket shutdown: SSLSocket.shutdown would also drop its TLS state.
            socket.socket.shutdown(self.sock, socket.SHUT_RDWR)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()
