"""A RouterOS API simulator: the real binary API over TCP, stateful menus, faults on demand.

Standard library only. Tests, the demo and operators point ispqueue (or plain librouteros)
at it instead of a production router. Values are text exactly as the client sent it: words
are decoded with `surrogateescape`, so bytes that are not UTF-8 (a cp1251 comment from
WinBox) come back byte for byte.
"""

from __future__ import annotations

import contextlib
import hashlib
import ipaddress
import os
import random
import re
import select
import socket
import ssl
import threading
import time
import zlib
from collections import deque
from collections.abc import Callable, Container, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

# -- protocol: words and sentences -------------------------------------------------------

Sentence = tuple[str, list[tuple[str, str]]]  # reply word and its attributes


class ProtocolError(Exception):
    """Bytes on the wire that no RouterOS peer would send."""


def encode_length(length: int) -> bytes:
    """The length prefix of a word, in the 1-5 byte form the API manual defines."""
    if length < 0x80:
        return bytes((length,))
    if length < 0x4000:
        return (length | 0x8000).to_bytes(2, "big")
    if length < 0x200000:
        return (length | 0xC00000).to_bytes(3, "big")
    if length < 0x10000000:
        return (length | 0xE0000000).to_bytes(4, "big")
    return b"\xf0" + length.to_bytes(4, "big")


def prefix_size(first: int) -> int:
    """How many bytes a length prefix has, judged by its first byte."""
    for size, limit in ((1, 0x80), (2, 0xC0), (3, 0xE0), (4, 0xF0)):
        if first < limit:
            return size
    if first == 0xF0:
        return 5
    # 0xF8 and above are reserved control bytes: nothing after them can be parsed.
    raise ProtocolError(f"control byte 0x{first:02X}")


def decode_length(prefix: bytes) -> int:
    """The word length that a whole prefix (as sized by `prefix_size`) encodes."""
    size = prefix_size(prefix[0])
    if size == 5:
        return int.from_bytes(prefix[1:5], "big")
    mask = (1 << (8 * size - size)) - 1
    return int.from_bytes(prefix[:size], "big") & mask


def encode_word(word: str) -> bytes:
    """One word on the wire: length prefix, then the bytes the text stands for."""
    raw = word.encode("utf-8", "surrogateescape")
    return encode_length(len(raw)) + raw


def encode_sentence(words: Iterable[str]) -> bytes:
    """Words followed by the empty word that ends a sentence."""
    return b"".join(map(encode_word, words)) + b"\x00"


class SentenceReader:
    """Reads sentences from a socket; remembers bytes received past the current sentence."""

    def __init__(self, sock: socket.socket):
        self.sock = sock
        self.buffer = bytearray()
        self.position = 0

    def sentence(self) -> list[str]:
        """The next sentence's words (empty for an empty sentence); EOFError at the end."""
        words = []
        while True:
            first = self._take(1)[0]
            if first == 0:
                return words
            prefix = bytes((first,)) + self._take(prefix_size(first) - 1)
            raw = self._take(decode_length(prefix))
            words.append(raw.decode("utf-8", "surrogateescape"))

    def has_input(self) -> bool:
        """Whether a read would return without waiting for the peer."""
        if self.position < len(self.buffer):
            return True
        if isinstance(self.sock, ssl.SSLSocket) and self.sock.pending():
            return True
        return bool(select.select([self.sock], [], [], 0)[0])

    def _take(self, count: int) -> bytes:
        while len(self.buffer) - self.position < count:
            chunk = self.sock.recv(max(65536, count))
            if not chunk:
                raise EOFError
            if self.position:
                del self.buffer[: self.position]
                self.position = 0
            self.buffer += chunk
        data = bytes(self.buffer[self.position : self.position + count])
        self.position += count
        return data


# -- queries -----------------------------------------------------------------------------

BOOLEAN_WORDS = {"yes": "true", "no": "false"}


def matches(queries: list[str], row: dict[str, str]) -> bool:
    """Evaluate `?` query words against a row with the API's boolean stack."""
    # The stack starts as infinitely many `true`; popping past the bottom yields true.
    stack: list[bool] = []
    for word in queries:
        body = word[1:]
        if body.startswith("#"):
            stack_operations(stack, body[1:])
        elif body.startswith("-"):
            stack.append(body[1:] not in row)
        elif body[:1] in ("<", ">", "="):
            name, _, value = body[1:].partition("=")
            stack.append(compare(body[0], row.get(name), value))
        elif "=" in body:
            name, _, value = body.partition("=")
            stack.append(compare("=", row.get(name), value))
        else:
            stack.append(body in row)
    return all(stack)


def compare(operator: str, actual: str | None, wanted: str) -> bool:
    """One comparison of a query word; a missing property never compares true."""
    if actual is None:
        return False
    if operator == "=":
        return BOOLEAN_WORDS.get(actual, actual) == BOOLEAN_WORDS.get(wanted, wanted)
    left, right = _ordering_key(actual), _ordering_key(wanted)
    if type(left) is not type(right):
        left, right = actual, wanted
    return left < right if operator == "<" else left > right


def _ordering_key(text: str) -> int | str:
    return int(text) if re.fullmatch(r"-?\d+", text) else text


def stack_operations(stack: list[bool], operations: str) -> None:
    """Apply a `?#` word: digits index the stack (top is 0), then `! & | .`."""

    def pop() -> bool:
        return stack.pop() if stack else True

    position = 0
    while position < len(operations):
        char = operations[position]
        if char.isdigit():
            end = position
            while end < len(operations) and operations[end].isdigit():
                end += 1
            index = int(operations[position:end])
            value = stack[-1 - index] if index < len(stack) else True
            if end == len(operations):
                stack[:] = [value]
            else:
                stack.append(value)
                if operations[end] == ".":
                    end += 1  # "." right after an index does nothing
            position = end
            continue
        if char == "!":
            stack.append(not pop())
        elif char in "&|":
            right, left = pop(), pop()
            stack.append(left and right if char == "&" else left or right)
        elif char == ".":
            stack.append(stack[-1] if stack else True)
        position += 1


# -- menus -------------------------------------------------------------------------------


class Trap(Exception):
    """A command failed: one `!trap` per message, then `!done`."""

    def __init__(self, *messages: str, category: int | None = None):
        super().__init__(*messages)
        self.messages = messages
        self.category = category


NO_SUCH_ITEM = "no such item (4)"
UNKNOWN_PARAMETER = "unknown parameter"
DYNAMIC_IDS = 0x80000000  # dynamic items (sessions, their interfaces) get ids from here
PRINT_ARGS = frozenset({".proplist", "count-only", "detail", "stats", "without-paging",
                        "terse", "brief"})
EXPORT_ARGS = frozenset({"file", "show-sensitive", "compact", "verbose", "terse"})
WRITES = frozenset({"add", "set", "remove", "enable", "disable"})
ALIASES = {"getall": "print"}
FILE_INLINE_LIMIT = 60 * 1024
FILE_READ_CHUNK = 32768


def format_id(number: int) -> str:
    """An item number as RouterOS writes ids: `*1A`."""
    return f"*{number:X}"


class Menu:
    """A table of items with `.id`s and the commands every table shares.

    `fields` are the writable properties with their defaults (None: absent until set),
    `readonly` the properties only the router writes.
    """

    commands = frozenset({"print", "getall", "add", "set", "remove", "enable", "disable",
                          "export"})

    def __init__(self, sim: RouterSim, path: str, fields: dict[str, str | None],
                 readonly: dict[str, str] | None = None, *, unique: str | None = None,
                 duplicate: str = "", sensitive: Iterable[str] = (), exported: bool = False):
        self.sim = sim
        self.path = path
        self.fields = fields
        self.readonly = readonly or {}
        self.unique = unique
        self.duplicate = duplicate
        self.sensitive = frozenset(sensitive)
        self.exported = exported
        self.order = dict.fromkeys([*fields, *self.readonly])  # every property, in print order
        self.defaults = {k: v for k, v in {**fields, **self.readonly}.items() if v is not None}
        self.booleans = {k for k, v in self.defaults.items() if v in ("true", "false")}
        self.items: dict[int, dict[str, str]] = {}
        self.index: dict[str, int] = {}  # value of the unique property -> item number
        self.next_id = 1
        self.next_dynamic = DYNAMIC_IDS + 1

    # What clients see.

    def view(self, number: int, row: dict[str, str]) -> dict[str, str]:
        """An item as `print` shows it (subclasses add live values such as counters)."""
        return {".id": format_id(number), **row}

    def snapshot(self) -> list[dict[str, str]]:
        """Every item as `print` would show it now."""
        return [self.view(number, row) for number, row in self.items.items()]

    def lookup(self, key: str) -> dict[str, str] | None:
        """The item whose unique property (its name) is `key`."""
        number = self.index.get(key)
        return None if number is None else self.items[number]

    # Changes, shared by the API commands and the simulator's own calls.

    def create(self, values: dict[str, str], *, checked: bool = True, dynamic: bool = False
               ) -> int:
        """Store a new item; `checked=False` skips references to other menus."""
        self._known(values, self.fields if checked else self.order)
        row = self._ordered({**self.defaults, **self._normalised(values)})
        if checked:
            self.validate(row)
        number = self._new_number(dynamic)
        self._store(number, row)
        return number

    def change(self, number: int, values: dict[str, str]) -> None:
        """Apply a `set` to one item."""
        self._known(values, self.fields)
        row = self._ordered({**self.items[number], **self._normalised(values)})
        self.validate(row)
        self._store(number, row)

    def delete(self, number: int) -> None:
        """Remove one item."""
        row = self.items.pop(number)
        if self.unique and self.index.get(row.get(self.unique, "")) == number:
            del self.index[row[self.unique]]

    def validate(self, row: dict[str, str]) -> None:
        """Checks a real router makes before it stores an item (subclasses add theirs)."""

    def renumber(self) -> None:
        """New ids for every item, all above the old ones."""
        items, self.items = self.items, {}
        for number, row in items.items():
            self.items[self._new_number(number >= DYNAMIC_IDS)] = row
        self._reindex()

    # The API commands.

    def print(self, args: dict[str, str], queries: list[str]) -> Iterable[Sentence]:
        self._known(args, PRINT_ARGS)
        rows = self.snapshot()
        if queries:
            rows = [row for row in rows if matches(queries, row)]
        if "count-only" in args:
            return [("!done", [("ret", str(len(rows)))])]
        proplist = [p for p in args[".proplist"].split(",") if p] if ".proplist" in args else None
        return self._stream(rows, proplist)

    def add(self, args: dict[str, str], queries: list[str]) -> Iterable[Sentence]:
        return [("!done", [("ret", format_id(self.create(args)))])]

    def set(self, args: dict[str, str], queries: list[str]) -> Iterable[Sentence]:
        numbers = self.resolve(args)
        changes = {k: v for k, v in args.items() if k not in (".id", "numbers")}
        for number in numbers:
            self.change(number, changes)
        return [("!done", [])]

    def remove(self, args: dict[str, str], queries: list[str]) -> Iterable[Sentence]:
        self._known(args, {".id": None, "numbers": None})
        numbers = self.resolve(args)
        for number in numbers:
            self.check_remove(self.items[number])
        for number in numbers:
            self.delete(number)
        return [("!done", [])]

    def enable(self, args: dict[str, str], queries: list[str]) -> Iterable[Sentence]:
        return self.set({".id": self._reference(args), "disabled": "false"}, [])

    def disable(self, args: dict[str, str], queries: list[str]) -> Iterable[Sentence]:
        return self.set({".id": self._reference(args), "disabled": "true"}, [])

    def export(self, args: dict[str, str], queries: list[str]) -> Iterable[Sentence]:
        self._known(args, EXPORT_ARGS)
        if "file" in args:
            self.sim.export_file(args["file"], [self], "show-sensitive" in args)
        # Without a file the export goes to the console, never to the API.
        return [("!done", [])]

    def check_remove(self, row: dict[str, str]) -> None:
        """Refuse to remove an item the router protects (subclasses say which)."""

    def resolve(self, args: dict[str, str]) -> list[int]:
        """The item numbers named by `.id` / `numbers`: `*1A`, a name, or a comma list."""
        numbers = []
        for reference in self._reference(args).split(","):
            number = self.index.get(reference) if self.unique else None
            if reference.startswith("*"):
                try:
                    number = int(reference[1:], 16)
                except ValueError:
                    number = None
            if number is None or number not in self.items:
                raise Trap(NO_SUCH_ITEM)
            numbers.append(number)
        return numbers

    def export_lines(self, show_sensitive: bool) -> list[str]:
        """This menu's part of `/export`: one `add` per configured item, defaults left out."""
        lines = []
        for row in self.exported_rows():
            words = [f"{key}={export_value(row[key], key in self.booleans)}"
                     for key in sorted(row)
                     if key in self.fields and row[key] != self.fields[key]
                     and (show_sensitive or key not in self.sensitive)]
            lines.append(" ".join(["add", *words]))
        return lines

    def exported_rows(self) -> list[dict[str, str]]:
        if not self.exported:
            return []
        return [row for row in self.items.values() if row.get("dynamic") != "true"]

    # Helpers.

    def _stream(self, rows: list[dict[str, str]], proplist: list[str] | None
                ) -> Iterator[Sentence]:
        for row in rows:
            if proplist is None:
                yield "!re", list(row.items())
            else:
                yield "!re", [(key, row[key]) for key in proplist if key in row]
        if not rows and self.sim.empty_replies:
            yield "!empty", []
        yield "!done", []

    def _reference(self, args: dict[str, str]) -> str:
        reference = args.get(".id", args.get("numbers"))
        if not reference:
            raise Trap(NO_SUCH_ITEM)
        return reference

    def _known(self, values: dict[str, str], allowed: Container[str]) -> None:
        if not all(key in allowed for key in values):
            raise Trap(UNKNOWN_PARAMETER)

    def _normalised(self, values: dict[str, str]) -> dict[str, str]:
        # The router types its booleans: `yes` goes in, `true` comes out.
        flags = self.booleans & values.keys()
        return values | {k: BOOLEAN_WORDS.get(values[k], values[k]) for k in flags}

    def _ordered(self, values: dict[str, str]) -> dict[str, str]:
        # Properties come out in the router's order, whatever order the client used.
        row = {k: values[k] for k in self.order if k in values}
        if len(row) < len(values):
            row |= {k: v for k, v in values.items() if k not in row}
        return row

    def _new_number(self, dynamic: bool) -> int:
        if dynamic:
            self.next_dynamic += 1
            return self.next_dynamic - 1
        self.next_id += 1
        return self.next_id - 1

    def _store(self, number: int, row: dict[str, str]) -> None:
        if self.unique:
            key = row.get(self.unique, "")
            holder = self.index.get(key)
            if holder is not None and holder != number:
                raise Trap(self.duplicate)
            old = self.items.get(number)
            if old is not None and self.index.get(old.get(self.unique, "")) == number:
                del self.index[old[self.unique]]
            self.index[key] = number
        # Rows are replaced, never edited in place, so a print in flight keeps its snapshot.
        self.items[number] = row

    def _reindex(self) -> None:
        if self.unique:
            self.index = {row.get(self.unique, ""): n for n, row in self.items.items()}


class ReadOnlyMenu(Menu):
    """Items only the router creates (`/ppp/active`, `/ip/pool/used`, `/system/health`)."""

    commands = frozenset({"print", "getall", "export"})


class SingletonMenu(Menu):
    """One row without `.id` (`/system/identity`, `/system/resource`); `set` needs no id."""

    def __init__(self, sim: RouterSim, path: str, fields: dict[str, str | None],
                 readonly: dict[str, str] | None = None, *, writable: bool = False,
                 exported: bool = False):
        super().__init__(sim, path, fields, readonly, exported=exported)
        self.commands = frozenset({"print", "getall", "export", *(["set"] if writable else [])})
        self.items[0] = self._ordered({k: v for k, v in {**fields, **self.readonly}.items()
                                      if v is not None})

    def view(self, number: int, row: dict[str, str]) -> dict[str, str]:
        return dict(row)

    def create(self, values: dict[str, str], *, checked: bool = True, dynamic: bool = False
               ) -> int:
        self._known(values, self.fields if checked else self.order)
        self.items[0] = self._ordered({**self.items[0], **values})
        return 0

    def set(self, args: dict[str, str], queries: list[str]) -> Iterable[Sentence]:
        self.change(0, args)
        return [("!done", [])]

    def renumber(self) -> None:
        pass

    def export_lines(self, show_sensitive: bool) -> list[str]:
        row = self.items[0]
        words = [f"{k}={export_value(row[k], k in self.booleans)}" for k in self.fields if k in row]
        return [" ".join(["set", *words])] if words and self.exported else []


class ResourceMenu(SingletonMenu):
    """`/system/resource`: uptime runs, memory and load move a little, all raw integers."""

    def view(self, number: int, row: dict[str, str]) -> dict[str, str]:
        seconds = int(time.monotonic() - self.sim.booted)
        shown = dict(row, uptime=duration(seconds))
        # Values a test has pinned with `insert` stay; the rest move like a live router's.
        shown["cpu-load"] = row["cpu-load"] or str(3 + seconds % 7)
        shown["free-memory"] = row["free-memory"] or str(781234176 - seconds % 4096 * 512)
        return shown


class SecretMenu(Menu):
    def validate(self, row: dict[str, str]) -> None:
        if self.sim.menus["/ppp/profile"].lookup(row.get("profile", "")) is None:
            raise Trap("input does not match any value of profile", category=1)


class ProfileMenu(Menu):
    def check_remove(self, row: dict[str, str]) -> None:
        if row.get("default") == "true":
            raise Trap("failure: can not remove default profile")

    def exported_rows(self) -> list[dict[str, str]]:
        # The built-in profiles exist on every router, so an export leaves them out.
        return [row for row in super().exported_rows() if row.get("default") != "true"]


class ActiveMenu(ReadOnlyMenu):
    """`/ppp/active`: removing a row kicks the session (and its dynamic interface)."""

    commands = frozenset({"print", "getall", "remove", "export"})

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.started: dict[str, float] = {}  # session name -> when it connected

    def view(self, number: int, row: dict[str, str]) -> dict[str, str]:
        started = self.started.get(row.get("name", ""), self.sim.booted)
        return {".id": format_id(number), **row | {"uptime": duration(time.monotonic() - started)}}

    def delete(self, number: int) -> None:
        row = self.items[number]
        super().delete(number)
        self.sim.session_ended(row)


class InterfaceMenu(Menu):
    """`/interface`: byte counters grow with time since the interface came up."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.traffic: dict[str, tuple[float, int, int]] = {}  # name -> since, rx/s, tx/s

    def view(self, number: int, row: dict[str, str]) -> dict[str, str]:
        since, rx_rate, tx_rate = self.traffic.get(row.get("name", ""), (time.monotonic(), 0, 0))
        seconds = max(time.monotonic() - since, 0.0)
        rx, tx = int(rx_rate * seconds), int(tx_rate * seconds)
        counters = {"rx-byte": str(rx), "tx-byte": str(tx), "rx-packet": str(rx // 700),
                    "tx-packet": str(tx // 1200)}
        return {".id": format_id(number), **row, **counters}


class AddressMenu(Menu):
    def validate(self, row: dict[str, str]) -> None:
        if self.sim.menus["/interface"].lookup(row.get("interface", "")) is None:
            raise Trap("input does not match any value of interface", category=1)
        if "network" not in row and "address" in row:
            try:
                row["network"] = str(ipaddress.ip_interface(row["address"]).network
                                     .network_address)
            except ValueError:
                pass
        row["actual-interface"] = row["interface"]


class FileMenu(Menu):
    """`/file`: contents inline up to 60 KB, bigger files only through `/file/read`."""

    commands = Menu.commands | {"read"}

    def validate(self, row: dict[str, str]) -> None:
        row["last-modified"] = self.sim.clock()

    def view(self, number: int, row: dict[str, str]) -> dict[str, str]:
        contents = row.get("contents", "")
        size = len(contents.encode("utf-8", "surrogateescape"))
        name = row.get("name", "")
        kind = {"rsc": "script", "backup": "backup"}.get(name.rpartition(".")[2], "file")
        shown = {"name": name, "type": kind, "size": str(size),
                 "last-modified": row.get("last-modified", "")}
        if size <= FILE_INLINE_LIMIT:
            shown["contents"] = contents
        return {".id": format_id(number), **shown}

    def write(self, name: str, contents: str) -> None:
        values = {"name": name, "contents": contents, "last-modified": self.sim.clock()}
        number = self.index.get(name)
        if number is None:
            self.create(values, checked=False)
        else:
            self._store(number, self._ordered(values))

    def read(self, args: dict[str, str], queries: list[str]) -> Iterable[Sentence]:
        self._known(args, {"file": None, "offset": None, "chunk-size": None})
        row = self.lookup(args.get("file", ""))
        if row is None:
            raise Trap(NO_SUCH_ITEM)
        try:
            offset = int(args.get("offset", "0"))
            size = min(int(args.get("chunk-size", str(FILE_READ_CHUNK))), FILE_READ_CHUNK)
        except ValueError as exc:
            raise Trap("invalid value for argument offset or chunk-size") from exc
        data = row.get("contents", "").encode("utf-8", "surrogateescape")[offset:offset + size]
        return [("!re", [("data", data.decode("utf-8", "surrogateescape"))]), ("!done", [])]


class BackupMenu(Menu):
    commands = frozenset({"save"})

    def save(self, args: dict[str, str], queries: list[str]) -> Iterable[Sentence]:
        self._known(args, {"name": None, "password": None, "dont-encrypt": None,
                           "encryption": None})
        name = args.get("name") or f"{self.sim.identity_name()}-{time.strftime('%Y%m%d-%H%M')}"
        if not name.endswith(".backup"):
            name += ".backup"
        # Not a real backup format: a recognisable header and the compressed configuration.
        text = self.sim.export_text(self.sim.exported_menus(), show_sensitive=True)
        body = zlib.compress(text.encode("utf-8", "surrogateescape"))
        magic = b"\xef\xa8\x91\x72" if args.get("password") else b"\x88\xac\xa1\xb1"
        self.sim.files.write(name, (magic + body).decode("utf-8", "surrogateescape"))
        return [("!done", [])]


class RootMenu(Menu):
    """The commands at the top of the tree (`/export`)."""

    commands = frozenset({"export"})

    def export(self, args: dict[str, str], queries: list[str]) -> Iterable[Sentence]:
        self._known(args, EXPORT_ARGS)
        if "file" in args:
            self.sim.export_file(args["file"], self.sim.exported_menus(),
                                 "show-sensitive" in args)
        return [("!done", [])]


def export_value(value: str, boolean: bool) -> str:
    """A value as `/export` writes it: bare when safe, otherwise quoted and escaped."""
    if boolean:
        return {"true": "yes", "false": "no"}.get(value, value)
    if re.fullmatch(r"[A-Za-z0-9_.:/,*+@%<>-]+", value):
        return value
    escaped = []
    for char in value:
        if char in '"\\$?':
            escaped.append("\\" + char)
        elif ord(char) < 0x20 or "\udc80" <= char <= "\udcff":
            escaped.append(f"\\{ord(char) & 0xFF:02X}")
        else:
            escaped.append(char)
    return '"' + "".join(escaped) + '"'


def duration(seconds: float) -> str:
    """RouterOS's `1w2d3h4m5s` form, zero units left out."""
    left, parts = int(seconds), []
    for unit, size in (("w", 604800), ("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        count, left = divmod(left, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts) or "0s"


def parse_version(version: str) -> tuple[int, ...]:
    """`7.18.2 (stable)` -> (7, 18)."""
    return tuple(int(part) for part in re.findall(r"\d+", version.split()[0])[:2])


def address_ranges(ranges: str) -> list[tuple[int, int]]:
    """`/ip/pool` ranges (`a-b,c`) as inclusive integer bounds."""
    bounds = []
    for part in filter(None, (p.strip() for p in ranges.split(","))):
        first, _, last = part.partition("-")
        try:
            bounds.append((int(ipaddress.IPv4Address(first)),
                           int(ipaddress.IPv4Address(last or first))))
        except ValueError:
            continue
    return bounds


def pool_addresses(ranges: str, after: int) -> Iterator[int]:
    """A pool's addresses from the one after `after`, wrapping round to the start."""
    bounds = address_ranges(ranges)
    for first, last in bounds:
        yield from range(max(first, after + 1), last + 1)
    for first, last in bounds:
        yield from range(first, min(last, after) + 1)


def ip_text(number: int) -> str:
    """An IPv4 address from its integer."""
    return socket.inet_ntoa(number.to_bytes(4, "big"))


# -- menu definitions --------------------------------------------------------------------

SECRET_FIELDS: dict[str, str | None] = {
    "name": None, "service": "any", "caller-id": "", "password": "", "profile": "default",
    "local-address": None, "remote-address": None, "routes": "", "limit-bytes-in": "0",
    "limit-bytes-out": "0", "comment": None, "disabled": "false",
}
PROFILE_FIELDS: dict[str, str | None] = {
    "name": None, "local-address": None, "remote-address": None, "rate-limit": None,
    "bridge": None, "address-list": None, "interface-list": None, "dns-server": None,
    "wins-server": None, "idle-timeout": None, "session-timeout": None,
    "insert-queue-before": None, "parent-queue": None, "queue-type": None,
    "incoming-filter": None, "outgoing-filter": None, "on-up": "", "on-down": "",
    "only-one": "default", "change-tcp-mss": "default", "use-compression": "default",
    "use-encryption": "default", "use-ipv6": "yes", "use-mpls": "default",
    "use-upnp": "default", "comment": None,
}
POOL_FIELDS: dict[str, str | None] = {"name": None, "ranges": None, "next-pool": None,
                                      "comment": None}
INTERFACE_FIELDS: dict[str, str | None] = {"name": None, "mtu": None, "l2mtu": None,
                                           "comment": None, "disabled": "false"}
INTERFACE_READONLY = {"default-name": "", "type": "ether", "actual-mtu": "1500",
                      "mac-address": "", "last-link-up-time": "", "link-downs": "0",
                      "rx-drop": "0", "tx-drop": "0", "tx-queue-drop": "0", "rx-error": "0",
                      "tx-error": "0", "running": "true", "dynamic": "false"}
QUEUE_FIELDS: dict[str, str | None] = {
    "name": None, "target": None, "dst": None, "parent": "none", "packet-marks": "",
    "priority": "8/8", "queue": "default-small/default-small", "limit-at": "0/0",
    "max-limit": "0/0", "burst-limit": "0/0", "burst-threshold": "0/0",
    "burst-time": "0s/0s", "bucket-size": "0.1/0.1", "comment": None, "disabled": "false",
}
QUEUE_READONLY = {"invalid": "false", "dynamic": "false", "bytes": "0/0", "packets": "0/0",
                  "dropped": "0/0", "rate": "0/0", "packet-rate": "0/0",
                  "queued-bytes": "0/0", "queued-packets": "0/0"}
ACTIVE_READONLY = {"name": "", "service": "pppoe", "caller-id": "", "address": "",
                   "uptime": "", "encoding": "", "session-id": "", "limit-bytes-in": "0",
                   "limit-bytes-out": "0", "radius": "false"}
ADDRESS_FIELDS: dict[str, str | None] = {"address": None, "network": None, "interface": None,
                                         "comment": None, "disabled": "false"}
RESOURCE = {
    "uptime": "", "version": "", "build-time": "2024-09-20 13:00:27", "factory-software": "7.1",
    "free-memory": "",
    "total-memory": "1073741824", "cpu": "ARM64", "cpu-count": "4", "cpu-frequency": "1700",
    "cpu-load": "", "free-hdd-space": "97411072", "total-hdd-space": "134217728",
    "write-sect-since-reboot": "5231", "write-sect-total": "1860329", "bad-blocks": "0",
    "architecture-name": "arm64", "board-name": "CCR2004-1G-12S+2XS", "platform": "MikroTik",
}
HEALTH = (("voltage", "24.1", "V"), ("temperature", "41", "C"),
          ("cpu-temperature", "53", "C"), ("fan1-speed", "4320", "RPM"),
          ("psu1-state", "ok", ""))
ETHERS = ("ether1", "ether2", "ether3", "ether4", "ether5")
FIRST_NAMES = ("rahim", "karim", "nusrat", "farhana", "tanvir", "sadia", "arif", "mitu",
               "jamal", "rupa", "sohel", "liza", "imran", "tania", "habib", "shirin")
PLANS = (("5M", "2M/5M"), ("10M", "5M/10M"), ("20M", "10M/20M"), ("50M", "25M/50M"),
         ("100M", "50M/100M"))


# -- faults ------------------------------------------------------------------------------


class Faults:
    """Faults injected into a running simulator; every attribute may be set from any thread.

    refuse: the port is closed (connections refused) until cleared.
    hang: commands are read and journaled but never answered.
    latency: seconds of delay before every reply sentence.
    drop_after: a connection closes after sending that many reply sentences (login included).
    trap_on_write: (n, message): the n-th add/set/remove/enable/disable from now is refused.
    fatal: every command is answered `!fatal <reason>` and the connection closed.
    """

    def __init__(self, on_refuse: Callable[[bool], None] = lambda refuse: None):
        self._lock = threading.Lock()
        self._on_refuse = on_refuse
        self._refuse = False
        self._trap_on_write: tuple[int, str] | None = None
        self._writes = 0
        self.clear()

    def clear(self) -> None:
        """Back to a healthy router."""
        self.refuse = False
        self.hang = False
        self.latency = 0.0
        self.drop_after: int | None = None
        self.trap_on_write = None
        self.fatal: str | None = None

    @property
    def refuse(self) -> bool:
        return self._refuse

    @refuse.setter
    def refuse(self, value: bool) -> None:
        self._refuse = value
        self._on_refuse(value)

    @property
    def trap_on_write(self) -> tuple[int, str] | None:
        return self._trap_on_write

    @trap_on_write.setter
    def trap_on_write(self, value: tuple[int, str] | None) -> None:
        with self._lock:
            self._trap_on_write, self._writes = value, 0

    def write_trap(self) -> str | None:
        """Count one write; the trap message if this is the write that must fail."""
        with self._lock:
            if self._trap_on_write is None:
                return None
            self._writes += 1
            count, message = self._trap_on_write
            return message if self._writes == count else None


# -- the connection ----------------------------------------------------------------------


@dataclass(frozen=True)
class Command:
    """One sentence the simulator received, as the journal keeps it."""

    connection: int
    command: str
    words: list[str]


class Closed(Exception):
    """The connection ends here (fatal, drop, quit)."""


class Interrupted(Exception):
    """A `/cancel` arrived while the command was still replying."""


class Session:
    """One API connection: its login, its reply stream, and the faults acting on it."""

    def __init__(self, sim: RouterSim, sock: socket.socket, number: int):
        self.sim = sim
        self.sock = sock
        self.number = number
        self.reader = SentenceReader(sock)
        self.pending: deque[list[str]] = deque()
        self.logged_in = False
        self.challenge: bytes | None = None
        self.sent = 0
        self.out = bytearray()
        self.tag: str | None = None
        self.cancellable = False

    def run(self) -> None:
        try:
            if self.sim.tls_context is not None:
                self.sock.settimeout(5)
                self.sock = self.sim.tls_context.wrap_socket(self.sock, server_side=True)
                self.sock.settimeout(None)
                self.reader.sock = self.sock
            while True:
                sentence = self.pending.popleft() if self.pending else self.reader.sentence()
                if sentence:  # the manual: empty sentences are ignored
                    self.handle(sentence)
                self.flush()
        except (Closed, EOFError, ProtocolError, OSError):
            pass
        finally:
            self.close()
            self.sim.forget(self)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()

    def handle(self, sentence: list[str]) -> None:
        command, args, queries, tag = parse_request(sentence)
        self.sim.journal.append(Command(self.number, command, journal_words(command, sentence)))
        faults = self.sim.faults
        if faults.hang:
            return
        if faults.fatal is not None:
            self.fatal(faults.fatal)
        if not self.logged_in and command not in ("/login", "/quit"):
            self.fatal("not logged in")
        self.tag = tag
        try:
            for word, attributes in self.execute(command, args, queries):
                self.send(word, attributes)
        except Trap as trap:
            self.cancellable = False
            for message in trap.messages:
                category = [] if trap.category is None else [("category", str(trap.category))]
                self.send("!trap", [*category, ("message", message)])
            self.send("!done")
        except Interrupted:
            self.cancellable = False
            self.send("!trap", [("category", "2"), ("message", "interrupted")])
            self.send("!done")
        finally:
            self.tag, self.cancellable = None, False

    def execute(self, command: str, args: dict[str, str], queries: list[str]
                ) -> Iterable[Sentence]:
        if command == "/login":
            return self.login(args)
        if command == "/quit":
            self.fatal("session terminated on request")
        if command == "/cancel":
            # Commands here finish before the next sentence is read, unless they are
            # streaming; `send` watches for a /cancel then. Nothing else can be running.
            return [("!done", [])]
        self.cancellable = command.rpartition("/")[2] in ("print", "getall")
        return self.sim.execute(command, args, queries)

    def login(self, args: dict[str, str]) -> Iterable[Sentence]:
        sim = self.sim
        if sim.legacy_login:
            if "response" not in args:
                # Before 6.43 every /login without a response gets a challenge, even one
                # carrying a plaintext password.
                self.challenge = os.urandom(16)
                return [("!done", [("ret", self.challenge.hex())])]
            password = sim.password.encode("utf-8", "surrogateescape")
            expected = "00" + hashlib.md5(b"\x00" + password + (self.challenge or b""),
                                          usedforsecurity=False).hexdigest()
            if self.challenge is None or args.get("name") != sim.username or \
                    args["response"] != expected:
                raise Trap("cannot log in")
        elif args.get("name") != sim.username or args.get("password") != sim.password:
            raise Trap("invalid user name or password (6)")
        self.logged_in = True
        return [("!done", [])]

    def fatal(self, reason: str) -> None:
        # The reason is a bare word, and nothing follows it but the close.
        self.out += encode_sentence(["!fatal", reason])
        self.flush()
        raise Closed

    def send(self, word: str, attributes: Iterable[tuple[str, str]] = ()) -> None:
        words = [word, *(f"={key}={value}" for key, value in attributes)]
        if self.tag is not None:
            words.append(f".tag={self.tag}")
        faults = self.sim.faults
        latency, drop_after = faults.latency, faults.drop_after
        if self.cancellable and (latency or self.sent % 256 == 0):
            self.watch_for_cancel()
        if latency:
            self.flush()
            if self.sim.stopping.wait(latency):
                raise Closed
        if drop_after is not None and self.sent >= drop_after:
            self.flush()
            raise Closed
        self.out += encode_sentence(words)
        self.sent += 1
        if latency or len(self.out) >= 65536:
            self.flush()

    def flush(self) -> None:
        if self.out:
            self.sock.sendall(self.out)
            self.out.clear()

    def watch_for_cancel(self) -> None:
        while self.reader.has_input():
            sentence = self.reader.sentence()
            self.pending.append(sentence)
            if sentence and sentence[0] == "/cancel":
                target = parse_request(sentence)[1].get("tag")
                if target is None or target == self.tag:
                    raise Interrupted


def parse_request(sentence: list[str]) -> tuple[str, dict[str, str], list[str], str | None]:
    """Command word, attributes, query words and `.tag` of a received sentence."""
    args: dict[str, str] = {}
    queries: list[str] = []
    tag = None
    for word in sentence[1:]:
        if word.startswith("="):
            key, _, value = word[1:].partition("=")
            args[key] = value
        elif word.startswith("?"):
            queries.append(word)
        elif word.startswith(".tag="):
            tag = word[5:]
        else:
            args[word] = ""  # not an attribute at all: rejected as an unknown parameter
    return sentence[0], args, queries, tag


def journal_words(command: str, sentence: list[str]) -> list[str]:
    """The words the journal keeps: all but the command, the login password masked."""
    if command != "/login":
        return sentence[1:]
    return ["=password=***" if w.startswith("=password=") else w for w in sentence[1:]]


# -- the simulator -----------------------------------------------------------------------


class RouterSim:
    """A simulated RouterOS router serving the binary API on a loopback port."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, username: str = "admin",
                 password: str = "secret", *, secrets: int = 0, active: int = 0, pools: int = 0,
                 identity: str = "MikroTik", version: str = "7.16 (stable)",
                 legacy_login: bool = False, tls_context: ssl.SSLContext | None = None,
                 seed: int = 1):
        self.host = host
        self.port = port
        self.username = username
        self.password = password
        self.version = version
        self.legacy_login = legacy_login
        self.tls_context = tls_context
        # RouterOS 7.18 added `!empty` for commands with nothing to reply.
        self.empty_replies = parse_version(version) >= (7, 18)
        self.lock = threading.RLock()
        self.journal: list[Command] = []
        self.stopping = threading.Event()
        self.booted = time.monotonic()
        self._listener: socket.socket | None = None
        self._accepting: threading.Thread | None = None
        self._sessions: dict[Session, threading.Thread] = {}
        self._connections = 0
        self._session_ids = 0x81000000
        self._last_lease: dict[str, int] = {}
        self._fallback_addresses = int(ipaddress.IPv4Address("172.16.0.1"))
        self.faults = Faults(self._refuse)
        self.menus = self._build_menus(identity, random.Random(seed))
        self.directories = {path[: i] for path in self.menus
                            for i in range(1, len(path) + 1) if path[i:i + 1] in ("/", "")}
        Generator(self, random.Random(seed)).populate(secrets, active, pools)

    # -- life cycle

    def start(self) -> RouterSim:
        """Bind (port 0 picks a free port) and serve on background threads."""
        self.stopping.clear()
        self._listen()
        if self.faults.refuse:
            self._close_listener()
        self._accepting = threading.Thread(target=self._accept_loop, daemon=True,
                                           name=f"routersim-{self.port}")
        self._accepting.start()
        return self

    def stop(self) -> None:
        """Close the listener and every connection."""
        self.stopping.set()
        with self.lock:
            self._close_listener()
            sessions = dict(self._sessions)
        for session in sessions:
            session.close()
        for thread in [self._accepting, *sessions.values()]:
            if thread is not None:
                thread.join(timeout=2)
        self._accepting = None

    def __enter__(self) -> RouterSim:
        return self if self._accepting else self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- what tests call

    def rows(self, path: str) -> list[dict[str, str]]:
        """A snapshot of a menu as a client would print it."""
        with self.lock:
            return self.menus[path].snapshot()

    def insert(self, path: str, **values: object) -> str:
        """Seed an item directly (`local_address=` means `local-address`); returns its .id.

        Unknown properties and duplicate names raise ValueError; references to other
        menus (profile, interface) are not checked, so drift can be staged.
        """
        text = {key.replace("_", "-"): as_text(value) for key, value in values.items()}
        with self.lock:
            menu = self.menus[path]
            try:
                number = menu.create(text, checked=False)
            except Trap as trap:
                raise ValueError(f"{path}: {trap.messages[0]}") from None
            return "" if isinstance(menu, SingletonMenu) else format_id(number)

    def renumber(self) -> None:
        """Give every item a new .id, as a reboot does; old ids become `no such item`."""
        with self.lock:
            for menu in self.menus.values():
                menu.renumber()

    def connect_session(self, name: str) -> str:
        """A PPPoE user (re)connects: fresh session, interface and counters; returns .id."""
        with self.lock:
            self.disconnect_session(name)
            return format_id(self.open_session(name, time.monotonic()))

    def disconnect_session(self, name: str) -> bool:
        """A PPPoE user hangs up; False if it was not connected."""
        with self.lock:
            active = self.menus["/ppp/active"]
            numbers = [n for n, row in active.items.items() if row.get("name") == name]
            for number in numbers:
                active.delete(number)
            return bool(numbers)

    # -- sessions

    def open_session(self, name: str, started: float) -> int:
        """Start a PPPoE session: `/ppp/active` row, `<pppoe-NAME>` interface, pool lease."""
        secret = self.menus["/ppp/secret"].lookup(name)
        profile = self.menus["/ppp/profile"].lookup(
            secret.get("profile", "default") if secret else "default") or {}
        address = (secret or {}).get("remote-address") or self._lease(
            profile.get("remote-address", ""), name)
        self._session_ids += 1
        active = self.menus["/ppp/active"]
        number = active.create({
            "name": name, "service": "pppoe",
            "caller-id": (secret or {}).get("caller-id") or mac_address(name),
            "address": address, "session-id": f"0x{self._session_ids:08X}",
            # Without an enabled local secret only RADIUS can have let the user in.
            "radius": "false" if secret and secret.get("disabled") != "true" else "true",
        }, checked=False, dynamic=True)
        active.started[name] = started
        interfaces = self.menus["/interface"]
        interface = f"<pppoe-{name}>"
        interfaces.create({"name": interface, "type": "pppoe-in", "actual-mtu": "1480",
                           "dynamic": "true"}, checked=False, dynamic=True)
        # Downloads (tx from the router's side) outweigh uploads, as on a real access port.
        rx_rate = 2000 + zlib.crc32(name.encode("utf-8", "surrogateescape")) % 60000
        interfaces.traffic[interface] = (started, rx_rate, rx_rate * 8)
        return number

    def session_ended(self, row: dict[str, str]) -> None:
        """Tidy up after a `/ppp/active` row went: its interface and its pool lease."""
        name = row.get("name", "")
        self.menus["/ppp/active"].started.pop(name, None)
        interfaces = self.menus["/interface"]
        interface = interfaces.index.get(f"<pppoe-{name}>")
        if interface is not None:
            interfaces.delete(interface)
            interfaces.traffic.pop(f"<pppoe-{name}>", None)
        used = self.menus["/ip/pool/used"]
        lease = used.index.get(row.get("address", ""))
        if lease is not None and used.items[lease].get("info") == name:
            used.delete(lease)

    def _lease(self, pool: str, owner: str) -> str:
        used = self.menus["/ip/pool/used"]
        row = self.menus["/ip/pool"].lookup(pool)
        for number in pool_addresses(row.get("ranges", ""), self._last_lease.get(pool, 0)) \
                if row else ():
            address = ip_text(number)
            if address not in used.index:
                used.create({"pool": pool, "address": address, "owner": "ppp",
                             "info": owner}, checked=False)
                self._last_lease[pool] = number
                return address
        # No pool (or a full one): RouterOS would refuse the session; keep tests going.
        self._fallback_addresses += 1
        return ip_text(self._fallback_addresses)

    # -- commands

    def execute(self, command: str, args: dict[str, str], queries: list[str]
                ) -> Iterable[Sentence]:
        """Run one command; the reply's sentences (a print streams them from a snapshot)."""
        path, _, name = command.rpartition("/")
        menu = self.menus.get(path)
        if menu is None or name not in menu.commands:
            raise self._no_such_command(command)
        if name in WRITES and (message := self.faults.write_trap()) is not None:
            raise Trap(message)
        with self.lock:
            return getattr(menu, ALIASES.get(name, name))(args, queries)

    def _no_such_command(self, command: str) -> Trap:
        prefix = ""
        for segment in command.strip("/").split("/")[:-1]:
            prefix += "/" + segment
            if prefix not in self.directories:
                return Trap(f"no such command or directory ({segment})", "no such command prefix")
        return Trap("no such command")

    def exported_menus(self) -> list[Menu]:
        """The menus a full `/export` writes, in the router's order."""
        return [menu for menu in self.menus.values() if menu.exported]

    def export_file(self, name: str, menus: list[Menu], show_sensitive: bool) -> None:
        """Write `NAME.rsc` as `/export =file=NAME` does."""
        if not name.endswith(".rsc"):
            name += ".rsc"
        self.files.write(name, self.export_text(menus, show_sensitive))

    def export_text(self, menus: list[Menu], show_sensitive: bool) -> str:
        """The configuration as `/export` writes it (sensitive values hidden, as on v7)."""
        board = self.menus["/system/routerboard"].items[0]
        lines = [f"# {self.clock()} by RouterOS {self.version.split()[0]}",
                 f"# software id = {self.software_id}", "#",
                 f"# model = {board['model']}", f"# serial number = {board['serial-number']}"]
        for menu in menus:
            body = menu.export_lines(show_sensitive)
            if body:
                lines.append("/" + menu.path[1:].replace("/", " "))
                lines.extend(body)
        return "\r\n".join(lines) + "\r\n"

    @property
    def files(self) -> FileMenu:
        """The `/file` menu."""
        return self.menus["/file"]  # type: ignore[return-value]

    def identity_name(self) -> str:
        """The router's `/system/identity` name."""
        return self.menus["/system/identity"].items[0].get("name", "")

    def clock(self) -> str:
        """The router's wall clock, as exports and file times show it."""
        return time.strftime("%Y-%m-%d %H:%M:%S")

    # -- the server

    def _listen(self) -> None:
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        self._listener = socket.create_server((self.host, self.port), family=family,
                                              backlog=128)
        self.port = self._listener.getsockname()[1]

    def _close_listener(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            # Close alone would leave the port listening while the accept loop's select
            # still holds it; shutdown stops it at once, so connects are refused, not reset.
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)
            listener.close()

    def _refuse(self, refuse: bool) -> None:
        # Closing the port is what a router with the API service off looks like.
        with self.lock:
            if self._accepting is None or self.stopping.is_set():
                return
            if refuse:
                self._close_listener()
            elif self._listener is None:
                self._listen()

    def _accept_loop(self) -> None:
        while not self.stopping.is_set():
            listener = self._listener
            if listener is None:
                self.stopping.wait(0.02)
                continue
            try:
                if not select.select([listener], [], [], 0.05)[0]:
                    continue
                sock, _ = listener.accept()
            except (OSError, ValueError):
                continue
            self._serve(sock)

    def _serve(self, sock: socket.socket) -> None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self.lock:
            self._connections += 1
            session = Session(self, sock, self._connections)
            thread = threading.Thread(target=session.run, daemon=True,
                                      name=f"routersim-{self.port}-{session.number}")
            self._sessions[session] = thread
        thread.start()

    def forget(self, session: Session) -> None:
        """Drop a finished connection from the ones `stop` must close."""
        with self.lock:
            self._sessions.pop(session, None)

    # -- menus

    def _build_menus(self, identity: str, rng: random.Random) -> dict[str, Menu]:
        serial = "".join(rng.choice("0123456789ABCDEFGHJKLMNPQRSTUVWXYZ") for _ in range(11))
        self.software_id = f"{serial[:4]}-{serial[4:8]}"
        version = self.version.split()[0]
        menus: list[Menu] = [
            RootMenu(self, "", {}),
            InterfaceMenu(self, "/interface", INTERFACE_FIELDS, INTERFACE_READONLY,
                          unique="name",
                          duplicate="failure: already have interface with such name"),
            Menu(self, "/ip/pool", POOL_FIELDS, unique="name",
                 duplicate="failure: pool with such name exists", exported=True),
            ReadOnlyMenu(self, "/ip/pool/used", {}, {"pool": "", "address": "", "owner": "",
                                                     "info": ""}, unique="address"),
            ProfileMenu(self, "/ppp/profile", PROFILE_FIELDS, {"default": "false"},
                        unique="name", exported=True,
                        duplicate="failure: profile with the same name already exists"),
            Menu(self, "/queue/simple", QUEUE_FIELDS, QUEUE_READONLY, unique="name",
                 duplicate="failure: queue with such name already exists", exported=True),
            AddressMenu(self, "/ip/address", ADDRESS_FIELDS,
                        {"actual-interface": "", "invalid": "false", "dynamic": "false"},
                        exported=True),
            SecretMenu(self, "/ppp/secret", SECRET_FIELDS, unique="name", sensitive={"password"},
                       duplicate="failure: secret with the same name already exists",
                       exported=True),
            ActiveMenu(self, "/ppp/active", {}, ACTIVE_READONLY),
            SingletonMenu(self, "/system/identity", {"name": identity}, writable=True,
                          exported=True),
            ResourceMenu(self, "/system/resource", {}, {**RESOURCE, "version": self.version}),
            SingletonMenu(self, "/system/routerboard", {}, {
                "routerboard": "true", "board-name": RESOURCE["board-name"],
                "model": RESOURCE["board-name"], "serial-number": serial,
                "firmware-type": "al64v8", "factory-firmware": "7.1",
                "current-firmware": version, "upgrade-firmware": version}),
            ReadOnlyMenu(self, "/system/health", {}, {"name": "", "value": "", "type": ""}),
            FileMenu(self, "/file", {"name": None, "contents": ""}, {"last-modified": ""},
                     unique="name"),
            BackupMenu(self, "/system/backup", {}),
        ]
        return {menu.path: menu for menu in menus}


def as_text(value: object) -> str:
    """A Python value as the text RouterOS would store (booleans as true/false)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def mac_address(name: str) -> str:
    """A stable MAC address derived from a name."""
    digest = hashlib.md5(name.encode("utf-8", "surrogateescape"), usedforsecurity=False).digest()
    return ":".join(f"{b:02X}" for b in (b"\x4c\x5e" + digest[:4]))


# -- generated data ----------------------------------------------------------------------


class Generator:
    """Deterministic, realistic router contents: pools, plans, secrets, live sessions."""

    def __init__(self, sim: RouterSim, rng: random.Random):
        self.sim = sim
        self.rng = rng

    def populate(self, secrets: int, active: int, pools: int) -> None:
        """Fill the router; `active` enabled secrets get a live session with some uptime."""
        menus = self.sim.menus
        self.defaults()
        pool_names = [self.pool(i) for i in range(pools)]
        plans = [self.plan(i, plan, pool_names) for i, plan in enumerate(PLANS)] \
            if secrets or pools else []
        names = [self.secret(i, plans) for i in range(1, secrets + 1)]
        enabled = [n for n in names if menus["/ppp/secret"].lookup(n)["disabled"] == "false"]
        online = sorted(self.rng.sample(range(len(enabled)), min(active, len(enabled))))
        now = time.monotonic()
        for i in online:
            self.sim.open_session(enabled[i], now - self.rng.randint(60, 30 * 86400))

    def defaults(self) -> None:
        """What every router has: built-in profiles, ports, addresses, sensors."""
        menus, now = self.sim.menus, time.monotonic()
        for name in ("default", "default-encryption"):
            menus["/ppp/profile"].create({"name": name, "default": "true", **(
                {"use-encryption": "yes"} if name == "default-encryption" else {})},
                checked=False)
        interfaces = menus["/interface"]
        for i, name in enumerate(ETHERS):
            interfaces.create({"name": name, "default-name": name, "mtu": "1500",
                               "l2mtu": "1598", "mac-address": mac_address(name),
                               "running": "true" if i < 2 else "false"}, checked=False)
            if i < 2:
                interfaces.traffic[name] = (now - 86400, 5_000_000 // (i + 1), 40_000_000)
        menus["/ip/address"].create({"address": "203.0.113.2/30", "network": "203.0.113.0",
                                     "interface": "ether1", "actual-interface": "ether1"},
                                    checked=False)
        menus["/ip/address"].create({"address": "10.255.255.1/24", "network": "10.255.255.0",
                                     "interface": "ether2", "actual-interface": "ether2"},
                                    checked=False)
        for name, value, unit in HEALTH:
            menus["/system/health"].create({"name": name, "value": value, "type": unit},
                                           checked=False)

    def pool(self, i: int) -> str:
        base = int(ipaddress.IPv4Address("100.64.0.0")) + i * 4096
        name = f"pool-{i + 1}"
        self.sim.menus["/ip/pool"].create(
            {"name": name, "ranges": f"{ip_text(base + 1)}-{ip_text(base + 4094)}"},
            checked=False)
        return name

    def plan(self, i: int, plan: tuple[str, str], pools: list[str]) -> str:
        speed, rate = plan
        values = {"name": f"plan-{speed}", "rate-limit": rate, "only-one": "yes",
                  "dns-server": "1.1.1.1,8.8.8.8"}
        if pools:
            values |= {"local-address": "10.255.255.1", "remote-address": pools[i % len(pools)]}
        self.sim.menus["/ppp/profile"].create(values, checked=False)
        return values["name"]

    def secret(self, i: int, plans: list[str]) -> str:
        rng = self.rng
        if i % 10 == 0:
            name = str(100000 + i)  # numeric logins: clients must not turn them into ints
        elif i % 10 == 5:
            name = f"0171{i:07d}"  # phone numbers as logins keep their leading zero
        else:
            name = f"{FIRST_NAMES[i % len(FIRST_NAMES)]}{'.' if i % 3 else ''}{i}"
        values = {"name": name, "service": "pppoe", "password": f"{rng.getrandbits(40):010x}",
                  "profile": plans[rng.randrange(len(plans))],
                  "disabled": "true" if rng.random() < 0.03 else "false"}
        if rng.random() < 0.2:
            values["caller-id"] = mac_address(name)
        if i % 7 == 0:
            values["comment"] = f"+88017{rng.randrange(10**8):08d}"
        if i % 97 == 0:
            values["comment"] = f"José Ñandú, flat {i}"
        if i % 997 == 0:
            # WinBox on a Cyrillic Windows writes cp1251 bytes, which are not UTF-8.
            values["comment"] = f"Абонент {i}".encode("cp1251").decode("utf-8", "surrogateescape")
        self.sim.menus["/ppp/secret"].create(values, checked=False)
        return name


# -- command line ------------------------------------------------------------------------


def serve_forever(port: int = 8728, secrets: int = 0, active: int = 0, pools: int = 0,
                  username: str = "admin", password: str = "", *, host: str = "127.0.0.1",
                  latency: float = 0.0, hang: bool = False, refuse: bool = False,
                  tls_cert: str | None = None, tls_key: str | None = None,
                  identity: str = "MikroTik", version: str = "7.16 (stable)",
                  legacy_login: bool = False, seed: int = 1,
                  on_ready: Callable[[RouterSim], None] | None = None,
                  stop: threading.Event | None = None) -> None:
    """Run a simulator until `stop` is set or Ctrl-C; `on_ready` gets it once it listens."""
    context = None
    if tls_cert:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(tls_cert, tls_key)
    sim = RouterSim(host, port, username, password, secrets=secrets, active=active,
                    pools=pools, identity=identity, version=version,
                    legacy_login=legacy_login, tls_context=context, seed=seed)
    sim.faults.latency, sim.faults.hang, sim.faults.refuse = latency, hang, refuse
    with sim:
        if on_ready is not None:
            on_ready(sim)
        try:
            (stop or threading.Event()).wait()
        except KeyboardInterrupt:
            pass
