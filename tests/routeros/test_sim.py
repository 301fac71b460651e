"""The RouterOS simulator against the API manual (raw sockets) and against librouteros itself."""

from __future__ import annotations

import datetime
import hashlib
import ipaddress
import re
import socket
import ssl
import threading
import time

import librouteros
import pytest
from librouteros.exceptions import ConnectionClosed, FatalError, MultiTrapError, TrapError
from librouteros.login import token
from librouteros.query import Key

from ispqueue.routeros.sim import (
    RouterSim,
    decode_length,
    encode_length,
    prefix_size,
    serve_forever,
)

# Lengths at every boundary of the manual's table, and the bytes it says they encode to.
BOUNDARIES = [
    (0x00, "00"), (0x7F, "7f"), (0x80, "8080"), (0x100, "8100"), (0x3FFF, "bfff"),
    (0x4000, "c04000"), (0x1FFFFF, "dfffff"), (0x200000, "e0200000"),
    (0xFFFFFFF, "efffffff"), (0x10000000, "f010000000"),
]


# -- a raw client written from the manual, independent of the simulator's own code -------


def manual_length(length: int) -> bytes:
    if length <= 0x7F:
        return bytes([length])
    if length <= 0x3FFF:
        return (length | 0x8000).to_bytes(2, "big")
    if length <= 0x1FFFFF:
        return (length | 0xC00000).to_bytes(3, "big")
    return (length | 0xE0000000).to_bytes(4, "big")


class Raw:
    """Speaks the wire protocol byte by byte; words are bytes so nothing is decoded."""

    def __init__(self, port: int, timeout: float = 5):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.stream = self.sock.makefile("rb")

    def send(self, *words: str | bytes) -> None:
        data = b""
        for word in words:
            raw = word.encode() if isinstance(word, str) else word
            data += manual_length(len(raw)) + raw
        self.sock.sendall(data + b"\x00")

    def sentence(self) -> list[bytes]:
        words = []
        while True:
            first = self.stream.read(1)
            if not first:
                raise EOFError
            if first == b"\x00":
                return words
            extra = next(i for i, limit in enumerate((0x80, 0xC0, 0xE0, 0xF0)) if first[0] < limit)
            prefix = first + self.stream.read(extra)
            length = int.from_bytes(prefix, "big") & ((1 << (7 * len(prefix))) - 1)
            words.append(self.stream.read(length))

    def reply(self) -> list[list[bytes]]:
        """Sentences up to and including `!done` (or `!fatal`)."""
        sentences = []
        while not sentences or sentences[-1][0] not in (b"!done", b"!fatal"):
            sentences.append(self.sentence())
        return sentences

    def call(self, *words: str | bytes) -> list[list[bytes]]:
        self.send(*words)
        return self.reply()

    def login(self, user: str = "admin", password: str = "secret") -> Raw:
        assert self.call("/login", f"=name={user}", f"=password={password}") == [[b"!done"]]
        return self

    def closed(self) -> bool:
        return self.stream.read(1) == b""

    def close(self) -> None:
        self.stream.close()
        self.sock.close()


@pytest.fixture
def raw(router_sim):
    client = Raw(router_sim.port).login()
    yield client
    client.close()


@pytest.fixture
def api(router_sim):
    connection = librouteros.connect("127.0.0.1", "admin", "secret", port=router_sim.port,
                                     timeout=2, encoding="utf-8")
    yield connection
    connection.close()


def connect(sim: RouterSim, **options) -> librouteros.api.Api:
    options = {"port": sim.port, "timeout": 2, "encoding": "utf-8", **options}
    return librouteros.connect("127.0.0.1", "admin", "secret", **options)


def names(sentences: list[list[bytes]]) -> list[bytes]:
    return [word[len(b"=name="):] for sentence in sentences for word in sentence
            if word.startswith(b"=name=")]


def traps(sentences: list[list[bytes]]) -> list[bytes]:
    return [word for sentence in sentences if sentence[0] == b"!trap" for word in sentence
            if word.startswith(b"=message=")]


# -- words and sentences -----------------------------------------------------------------


@pytest.mark.parametrize(("length", "wire"), BOUNDARIES)
def test_length_encoding_follows_the_manual(length, wire):
    assert encode_length(length).hex() == wire
    prefix = bytes.fromhex(wire)
    assert prefix_size(prefix[0]) == len(prefix)
    assert decode_length(prefix) == length


def test_control_bytes_are_not_lengths():
    with pytest.raises(Exception, match="control byte"):
        prefix_size(0xF8)


@pytest.mark.parametrize("length", [0x7F, 0x80, 0x100, 0x3FFF, 0x4000, 0x1FFFFF, 0x200000])
def test_a_word_of_each_boundary_length_round_trips(raw, length):
    comment = b"=comment=" + b"x" * (length - len(b"=comment="))
    assert raw.call("/ppp/secret/add", "=name=long", comment)[0][0] == b"!done"
    raw.send("/ppp/secret/print", "=.proplist=comment")
    assert raw.stream.read(4) == b"\x03!re"
    assert raw.stream.read(len(manual_length(length))) == manual_length(length)
    assert raw.stream.read(length) == comment
    assert raw.stream.read(1) == b"\x00"
    assert raw.reply() == [[b"!done"]]


def test_librouteros_reads_and_writes_a_two_megabyte_word(router_sim, api):
    comment = "y" * 0x200000
    api.path("ppp", "secret").add(name="big", comment=comment)
    [row] = api.path("ppp", "secret").select(Key("comment")).where(Key("name") == "big")
    assert row["comment"] == comment


def test_bytes_that_are_not_utf8_come_back_exactly(router_sim, raw):
    cp1251 = "Абонент Иванов".encode("cp1251")
    raw.call("/ppp/secret/add", "=name=ivanov", b"=comment=" + cp1251)
    reply = raw.call("/ppp/secret/print", "?name=ivanov", "=.proplist=comment")
    assert reply == [[b"!re", b"=comment=" + cp1251], [b"!done"]]
    stored = router_sim.rows("/ppp/secret")[0]["comment"]
    assert stored.encode("utf-8", "surrogateescape") == cp1251


def test_empty_sentences_are_ignored(raw):
    raw.sock.sendall(b"\x00")
    assert raw.call("/system/identity/print") == [[b"!re", b"=name=MikroTik"], [b"!done"]]


def test_every_reply_sentence_carries_the_tag(router_sim, raw):
    for name in ("a", "b", "c"):
        router_sim.insert("/ppp/secret", name=name)
    reply = raw.call("/ppp/secret/print", "=.proplist=name", ".tag=7")
    assert [s[0] for s in reply] == [b"!re", b"!re", b"!re", b"!done"]
    assert all(s[-1] == b".tag=7" for s in reply)
    reply = raw.call("/ppp/secret/add", "=name=a", ".tag=x")
    assert [s[0] for s in reply] == [b"!trap", b"!done"]
    assert all(b".tag=x" in s for s in reply)
    assert all(b".tag" not in w for s in raw.call("/ppp/secret/print") for w in s)


def test_cancel_interrupts_a_streaming_print(router_sim, raw):
    for i in range(20):
        router_sim.insert("/ppp/secret", name=f"user{i}")
    router_sim.faults.latency = 0.02
    raw.send("/ppp/secret/print", ".tag=p")
    assert raw.sentence()[0] == b"!re"
    raw.send("/cancel", "=tag=p", ".tag=c")
    rest = raw.reply()
    assert rest[-2:] == [[b"!trap", b"=category=2", b"=message=interrupted", b".tag=p"],
                         [b"!done", b".tag=p"]]
    assert len(rest) < 20
    assert raw.reply() == [[b"!done", b".tag=c"]]


def test_empty_reply_only_from_7_18(router_sim):
    with RouterSim(password="secret", version="7.18.2 (stable)").start() as new:
        client = Raw(new.port).login()
        assert client.call("/ppp/secret/print") == [[b"!empty"], [b"!done"]]
        client.close()
    client = Raw(router_sim.port).login()
    assert client.call("/ppp/secret/print") == [[b"!done"]]
    client.close()


# -- print: count, proplist, queries -----------------------------------------------------


def test_count_only_returns_the_number_in_done(router_sim, raw):
    for name in ("a", "b", "c"):
        router_sim.insert("/ppp/secret", name=name, profile="p1" if name != "b" else "p2")
    assert raw.call("/ppp/secret/print", "=count-only=") == [[b"!done", b"=ret=3"]]
    assert raw.call("/ppp/secret/print", "=count-only=", "?profile=p1") == [[b"!done", b"=ret=2"]]


def test_proplist_limits_the_properties(router_sim, raw, api):
    router_sim.insert("/ppp/secret", name="a", password="pw")
    reply = raw.call("/ppp/secret/print", "=.proplist=.id,name")
    assert [w.split(b"=")[1] for w in reply[0][1:]] == [b".id", b"name"]
    # A property the item lacks gives a bare `!re`, which the manual allows.
    assert raw.call("/ppp/secret/print", "=.proplist=nonexistent") == [[b"!re"], [b"!done"]]
    assert list(api.path("ppp", "secret").select(Key("password"))) == [{"password": "pw"}]


@pytest.fixture
def four_secrets(router_sim):
    router_sim.insert("/ppp/secret", name="a", profile="p1", comment="x")
    router_sim.insert("/ppp/secret", name="b", profile="p2")
    router_sim.insert("/ppp/secret", name="c", profile="p1", disabled="yes")
    router_sim.insert("/ppp/secret", name="d", profile="p3", comment="")


@pytest.mark.parametrize(("queries", "expected"), [
    (["?profile=p1"], "ac"),
    (["?=profile=p1"], "ac"),
    (["?comment"], "ad"),
    (["?-comment"], "bc"),
    (["?>comment="], "a"),
    (["?<name=c"], "ab"),
    (["?>name=b"], "cd"),
    (["?profile=p1", "?profile=p2", "?#|"], "abc"),
    (["?profile=p1", "?#!"], "bd"),
    (["?profile=p1", "?disabled=false", "?#&"], "a"),
    (["?profile=p1", "?disabled=false"], "a"),
    (["?profile=p1", "?disabled=no"], "a"),
    (["?profile=p1", "?profile=p2", "?profile=p3", "?#||!"], ""),
    (["?profile=p1", "?#|"], "abcd"),  # or with the infinite `true` under the stack
    (["?#!"], ""),
    (["?profile=p1", "?#.!|"], "abcd"),  # `.` copies the top: p1 or not p1
    (["?profile=p1", "?disabled=true", "?#1"], "ac"),  # index at the end replaces the stack
    (["?disabled=true", "?profile=p1", "?#1|"], "c"),  # index before a char pushes a copy
    (["?disabled=true", "?profile=p1", "?#1.|"], "c"),  # `.` after an index does nothing
    (["?profile=p2", "?profile=p3", "?#|", "?comment", "?#&"], "d"),
])
def test_query_words_follow_the_stack_rules(raw, four_secrets, queries, expected):
    reply = raw.call("/ppp/secret/print", "=.proplist=name", *queries)
    assert b"".join(names(reply)).decode() == expected


def test_librouteros_queries(api, four_secrets):
    secrets = api.path("ppp", "secret")
    name, profile = Key("name"), Key("profile")
    assert [r["name"] for r in secrets.select(name).where(profile.In("p2", "p3"))] == ["b", "d"]
    assert [r["name"] for r in secrets.select(name).where(profile != "p1")] == ["b", "d"]


# -- login -------------------------------------------------------------------------------


def test_plain_login_and_a_bad_password(router_sim):
    client = Raw(router_sim.port)
    assert client.call("/login", "=name=admin", "=password=wrong") == [
        [b"!trap", b"=message=invalid user name or password (6)"], [b"!done"]]
    client.login()
    assert client.call("/system/identity/print")[0] == [b"!re", b"=name=MikroTik"]
    client.close()
    with pytest.raises(TrapError, match=re.escape("invalid user name or password (6)")):
        librouteros.connect("127.0.0.1", "admin", "nope", port=router_sim.port, timeout=2)


@pytest.mark.parametrize("router_sim", [{"legacy_login": True, "version": "6.40.9 (bugfix)"}],
                         indirect=True)
def test_legacy_challenge_login(router_sim):
    client = Raw(router_sim.port)
    [[done, ret]] = client.call("/login")
    challenge = bytes.fromhex(ret.decode().removeprefix("=ret="))
    assert (done, len(challenge)) == (b"!done", 16)
    wrong = hashlib.md5(b"\x00wrong" + challenge).hexdigest()
    assert traps(client.call("/login", "=name=admin", f"=response=00{wrong}")) == [
        b"=message=cannot log in"]
    [[_, ret]] = client.call("/login")
    challenge = bytes.fromhex(ret.decode().removeprefix("=ret="))
    right = hashlib.md5(b"\x00secret" + challenge).hexdigest()
    assert client.call("/login", "=name=admin", f"=response=00{right}") == [[b"!done"]]
    client.close()
    api = connect(router_sim, login_method=token)
    assert list(api("/system/identity/print")) == [{"name": "MikroTik"}]
    api.close()


@pytest.mark.parametrize("router_sim", [{"legacy_login": True}], indirect=True)
def test_old_router_answers_a_plaintext_login_with_a_challenge(router_sim):
    client = Raw(router_sim.port)
    [[done, ret]] = client.call("/login", "=name=admin", "=password=secret")
    assert done == b"!done" and re.fullmatch(rb"=ret=[0-9a-f]{32}", ret)
    assert client.call("/system/identity/print") == [[b"!fatal", b"not logged in"]]
    assert client.closed()


def test_commands_before_login_are_fatal(router_sim):
    client = Raw(router_sim.port)
    assert client.call("/ppp/secret/print") == [[b"!fatal", b"not logged in"]]
    assert client.closed()


def test_quit_ends_the_session(raw):
    assert raw.call("/quit") == [[b"!fatal", b"session terminated on request"]]
    assert raw.closed()


def test_the_journal_hides_the_login_password(router_sim, raw):
    raw.call("/ppp/secret/add", "=name=bob", "=password=customer", ".tag=1")
    login, add = router_sim.journal
    assert (login.command, login.words) == ("/login", ["=name=admin", "=password=***"])
    assert (add.command, add.words) == ("/ppp/secret/add",
                                        ["=name=bob", "=password=customer", ".tag=1"])
    assert login.connection == add.connection


# -- errors with RouterOS's own texts ----------------------------------------------------


def test_an_unknown_menu_gives_two_traps_then_done(raw, api):
    assert raw.call("/interface/teleporter/print") == [
        [b"!trap", b"=message=no such command or directory (teleporter)"],
        [b"!trap", b"=message=no such command prefix"],
        [b"!done"]]
    with pytest.raises(MultiTrapError):
        list(api("/system/routerboardx/print"))
    assert list(api("/system/identity/print")) == [{"name": "MikroTik"}]


@pytest.mark.parametrize(("words", "message"), [
    (["/ppp/secret/teleport"], b"no such command"),
    (["/ppp/active/add", "=name=x"], b"no such command"),
    (["/ppp/secret/add", "=name=x", "=colour=red"], b"unknown parameter"),
    (["/ppp/secret/print", "=colour=red"], b"unknown parameter"),
    (["/ppp/secret/set", "=.id=*99", "=comment=x"], b"no such item (4)"),
    (["/ppp/secret/remove", "=numbers=*1,*99"], b"no such item (4)"),
    (["/ppp/secret/remove", "=.id=ghost"], b"no such item (4)"),
    (["/ppp/secret/add", "=name=x", "=profile=gold"], b"input does not match any value of profile"),
    (["/ip/address/add", "=address=10.0.0.1/24", "=interface=asdf"],
     b"input does not match any value of interface"),
])
def test_errors_use_routeros_messages(router_sim, raw, words, message):
    router_sim.insert("/ppp/secret", name="first")
    assert traps(raw.call(*words)) == [b"=message=" + message]
    assert len(router_sim.rows("/ppp/secret")) == 1


def test_reference_errors_are_category_one(api):
    with pytest.raises(TrapError) as caught:
        api.path("ppp", "secret").add(name="x", profile="gold")
    assert caught.value.category == 1


def test_duplicates_are_refused(api):
    secrets, pools = api.path("ppp", "secret"), api.path("ip", "pool")
    secrets.add(name="bob", password="a")
    with pytest.raises(TrapError, match=r"^failure: secret with the same name already exists$"):
        secrets.add(name="bob", password="b")
    carol = secrets.add(name="carol")
    with pytest.raises(TrapError, match="secret with the same name"):
        secrets.update(**{".id": carol, "name": "bob"})
    pools.add(name="pool1", ranges="10.0.0.2-10.0.0.254")
    with pytest.raises(TrapError, match=r"^failure: pool with such name exists$"):
        pools.add(name="pool1", ranges="10.1.0.2-10.1.0.254")
    assert [r["password"] for r in secrets.select(Key("password"))] == ["a", ""]


def test_built_in_profiles_cannot_be_removed(router_sim, api):
    profiles = api.path("ppp", "profile")
    assert [r["name"] for r in profiles] == ["default", "default-encryption"]
    with pytest.raises(TrapError):
        profiles.remove(router_sim.rows("/ppp/profile")[0][".id"])
    gold = profiles.add(name="gold", **{"rate-limit": "10M/10M"})
    profiles.remove(gold)
    assert len(list(profiles)) == 2


# -- writes ------------------------------------------------------------------------------


def test_add_set_remove_and_monotonic_ids(router_sim, api):
    secrets = api.path("ppp", "secret")
    first, second = secrets.add(name="a"), secrets.add(name="b", disabled=True)
    assert re.fullmatch(r"\*[0-9A-F]+", first)
    assert int(second[1:], 16) > int(first[1:], 16)
    secrets.update(**{".id": first, "comment": "Ok = yes"})
    secrets.remove(second)
    third = secrets.add(name="c")
    assert int(third[1:], 16) > int(second[1:], 16)
    rows = {r["name"]: r for r in router_sim.rows("/ppp/secret")}
    assert rows["a"]["comment"] == "Ok = yes"
    assert set(rows) == {"a", "c"}
    tuple(api("/ppp/secret/disable", numbers="a"))  # `numbers` may be a name
    assert router_sim.rows("/ppp/secret")[0]["disabled"] == "true"


def test_remove_by_name_after_a_renumber(router_sim, api):
    secrets = api.path("ppp", "secret")
    for name in ("alice", "bob", "carol"):
        secrets.add(name=name)
    stale = [r[".id"] for r in secrets.select(Key(".id")).where(Key("name") == "bob")]
    router_sim.renumber()
    with pytest.raises(TrapError, match="no such item"):
        secrets.remove(*stale)
    fresh = [r[".id"] for r in secrets.select(Key(".id")).where(Key("name").In("bob", "carol"))]
    assert set(fresh).isdisjoint(stale)
    secrets.remove(*fresh)  # one comma-joined `.id`, as librouteros sends it
    assert [r["name"] for r in router_sim.rows("/ppp/secret")] == ["alice"]


def test_singletons_have_one_row_without_an_id(api):
    [resource] = api("/system/resource/print")
    assert ".id" not in resource
    assert resource["version"] == "7.16 (stable)"
    assert isinstance(resource["free-memory"], int)
    assert re.fullmatch(r"(\d+[wdhms])+", resource["uptime"])
    tuple(api("/system/identity/set", name="core-1"))
    assert list(api("/system/identity/getall")) == [{"name": "core-1"}]
    health = list(api("/system/health/print"))
    assert {"name": "temperature", "value": 41, "type": "C"} in [
        {k: v for k, v in row.items() if k != ".id"} for row in health]
    [board] = api("/system/routerboard/print")
    assert board["routerboard"] is True


# -- sessions and counters ---------------------------------------------------------------


def test_interface_counters_grow_and_reset_on_reconnect(router_sim, api):
    router_sim.insert("/ppp/secret", name="alice", password="pw")
    router_sim.connect_session("alice")

    def counters() -> tuple[int, int]:
        [row] = api.path("interface").select(Key("rx-byte"), Key("tx-byte"), Key("type")).where(
            Key("name") == "<pppoe-alice>")
        assert row["type"] == "pppoe-in"
        return row["rx-byte"], row["tx-byte"]

    time.sleep(0.05)
    before = counters()
    time.sleep(0.2)
    grown = counters()
    assert grown[0] > before[0] and grown[1] > before[1]
    router_sim.connect_session("alice")
    after = counters()
    assert after[0] < grown[0] and after[1] < grown[1]


def test_kicking_a_session_removes_it_and_its_interface():
    with RouterSim(password="secret", secrets=20, active=5, pools=2).start() as sim:
        client = connect(sim)
        sessions = list(client.path("ppp", "active"))
        assert len(sessions) == 5
        assert all(ipaddress.ip_address(s["address"]) in ipaddress.ip_network("100.64.0.0/10")
                   for s in sessions)
        assert len(sim.rows("/ip/pool/used")) == 5
        kicked = sessions[0]
        client.path("ppp", "active").remove(kicked[".id"])
        interfaces = [r["name"] for r in client.path("interface")]
        assert f"<pppoe-{kicked['name']}>" not in interfaces
        assert f"<pppoe-{sessions[1]['name']}>" in interfaces
        assert len(sim.rows("/ip/pool/used")) == 4
        assert sim.disconnect_session(str(sessions[1]["name"]))
        assert len(list(client.path("ppp", "active"))) == 3
        client.close()


def test_a_user_without_an_enabled_secret_came_in_through_radius(router_sim):
    router_sim.insert("/ppp/secret", name="local")
    router_sim.insert("/ppp/secret", name="standby", disabled=True)
    for name in ("local", "standby", "roaming"):
        router_sim.connect_session(name)
    radius = {r["name"]: r["radius"] for r in router_sim.rows("/ppp/active")}
    assert radius == {"local": "false", "standby": "true", "roaming": "true"}


def test_insert_rejects_typos_and_duplicates(router_sim):
    router_sim.insert("/ppp/secret", name="a", remote_address="10.0.0.9")
    assert router_sim.rows("/ppp/secret")[0]["remote-address"] == "10.0.0.9"
    with pytest.raises(ValueError, match="unknown parameter"):
        router_sim.insert("/ppp/secret", name="b", pasword="x")
    with pytest.raises(ValueError, match="already exists"):
        router_sim.insert("/ppp/secret", name="a")
    router_sim.insert("/system/resource", **{"cpu-load": "97"})
    assert router_sim.rows("/system/resource")[0]["cpu-load"] == "97"


# -- export, files, backup ---------------------------------------------------------------


def test_plain_export_returns_nothing(raw):
    assert raw.call("/export") == [[b"!done"]]


def test_export_to_a_file_reads_back_inline_and_in_chunks(router_sim, api):
    router_sim.insert("/ppp/secret", name="exported", password="hidden", comment="a b")
    tuple(api("/export", file="config"))
    [row] = api.path("file").select(Key("size"), Key("contents"), Key("type")).where(
        Key("name") == "config.rsc")
    text = row["contents"]
    assert re.match(r"# \d{4}-\d\d-\d\d \d\d:\d\d:\d\d by RouterOS 7\.16\r\n", text)
    assert '/ppp secret\r\nadd comment="a b" name=exported\r\n' in text
    assert "hidden" not in text  # v7 hides sensitive values unless asked
    assert row["size"] == len(text.encode()) and row["type"] == "script"
    chunks, offset = [], 0
    while offset < row["size"]:
        [chunk] = api("/file/read", file="config.rsc", offset=offset, **{"chunk-size": 100})
        chunks.append(str(chunk["data"]))
        offset += 100
    assert "".join(chunks) == text
    tuple(api("/export", file="config", **{"show-sensitive": True}))
    [row] = api.path("file").select(Key("contents")).where(Key("name") == "config.rsc")
    assert "password=hidden" in row["contents"]
    tuple(api("/ppp/secret/export", file="secrets"))
    [row] = api.path("file").select(Key("contents")).where(Key("name") == "secrets.rsc")
    assert "/ppp secret\r\n" in row["contents"] and "/system identity" not in row["contents"]


def test_a_large_export_has_no_inline_contents():
    with RouterSim(password="secret", secrets=2000, pools=2).start() as sim:
        api = connect(sim)
        tuple(api("/export", file="big"))
        [row] = api.path("file").select(Key("size"), Key("contents")).where(
            Key("name") == "big.rsc")
        assert "contents" not in row and row["size"] > 60 * 1024
        data, offset = b"", 0
        while offset < row["size"]:
            words = raw_chunk(sim.port, offset)
            data += words
            offset += 32768
        assert len(data) == row["size"]
        assert b"/ppp secret\r\n" in data and b"/ip pool\r\n" in data
        [file_id] = [r[".id"] for r in api.path("file")]
        api.path("file").remove(file_id)
        assert list(api.path("file")) == []
        api.close()


def raw_chunk(port: int, offset: int) -> bytes:
    client = Raw(port).login()
    [[re_word, data], done] = client.call("/file/read", "=file=big.rsc", f"=offset={offset}",
                                          "=chunk-size=32768")
    client.close()
    assert (re_word, done) == (b"!re", [b"!done"])
    return data.removeprefix(b"=data=")


def test_backup_save_writes_a_backup_file(router_sim, api):
    tuple(api("/system/backup/save", name="nightly", **{"dont-encrypt": True}))
    [row] = api.path("file").select(Key("name"), Key("type"), Key("size"))
    assert (row["name"], row["type"]) == ("nightly.backup", "backup")
    assert row["size"] > 0


# -- faults ------------------------------------------------------------------------------


def test_refuse_closes_the_port_until_cleared(router_sim):
    router_sim.faults.refuse = True
    with pytest.raises(ConnectionRefusedError):
        connect(router_sim)
    router_sim.faults.refuse = False
    connect(router_sim).close()


def test_hang_accepts_and_never_answers(router_sim):
    router_sim.faults.hang = True
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        connect(router_sim, timeout=0.5)
    assert time.monotonic() - started < 1.5
    assert [entry.command for entry in router_sim.journal] == ["/login"]


def test_latency_delays_every_reply_sentence(router_sim, api):
    for name in ("a", "b", "c"):
        router_sim.insert("/ppp/secret", name=name)
    router_sim.faults.latency = 0.05
    started = time.monotonic()
    assert len(list(api.path("ppp", "secret"))) == 3
    assert 0.2 <= time.monotonic() - started < 1


def test_drop_after_cuts_a_print_midway(router_sim, raw):
    for i in range(20):
        router_sim.insert("/ppp/secret", name=f"user{i}")
    router_sim.faults.drop_after = 5  # the login's !done was the first
    raw.send("/ppp/secret/print")
    received = [raw.sentence() for _ in range(4)]
    assert [s[0] for s in received] == [b"!re"] * 4
    with pytest.raises(EOFError):
        raw.sentence()
    router_sim.faults.clear()
    api = connect(router_sim)
    router_sim.faults.drop_after = 3
    with pytest.raises(ConnectionClosed):
        list(api.path("ppp", "secret"))


def test_trap_on_write_refuses_only_the_nth_write(router_sim, api):
    router_sim.faults.trap_on_write = (2, "failure: router busy")
    secrets = api.path("ppp", "secret")
    secrets.add(name="one")
    with pytest.raises(TrapError, match=r"^failure: router busy$"):
        secrets.add(name="two")
    secrets.add(name="three")
    assert [r["name"] for r in router_sim.rows("/ppp/secret")] == ["one", "three"]


def test_fatal_closes_the_session_with_the_reason(router_sim, api):
    router_sim.faults.fatal = "out of sessions"
    with pytest.raises(FatalError, match="out of sessions"):
        list(api("/system/identity/print"))
    router_sim.faults.clear()
    connect(router_sim).close()


# -- generated data, TLS, serving --------------------------------------------------------


def test_fifty_thousand_secrets_generate_in_under_two_seconds():
    started = time.perf_counter()
    sim = RouterSim(secrets=50_000, active=1000, pools=4)
    assert time.perf_counter() - started < 2
    rows = sim.rows("/ppp/secret")
    assert len(rows) == 50_000 and len({r["name"] for r in rows}) == 50_000
    assert len(sim.rows("/ppp/active")) == 1000
    assert sum(r["type"] == "pppoe-in" for r in sim.rows("/interface")) == 1000
    assert len(sim.rows("/ip/pool")) == 4


def test_generation_is_deterministic_and_varied():
    first, second = RouterSim(secrets=300, active=20, seed=5), RouterSim(secrets=300, active=20,
                                                                         seed=5)
    assert first.rows("/ppp/secret") == second.rows("/ppp/secret")
    assert [r["name"] for r in first.rows("/ppp/active")] == [
        r["name"] for r in second.rows("/ppp/active")]
    names = {r["name"] for r in first.rows("/ppp/secret")}
    assert "100010" in names and "01710000005" in names
    comments = [r.get("comment", "") for r in first.rows("/ppp/secret")]
    assert any(not c.isascii() for c in comments)
    assert RouterSim(secrets=300, seed=6).rows("/ppp/secret") != first.rows("/ppp/secret")


def test_a_big_print_streams_fast():
    with RouterSim(password="secret", secrets=50_000).start() as sim:
        client = Raw(sim.port).login()
        started = time.perf_counter()
        client.send("/ppp/secret/print")
        data = b""
        while not data.endswith(b"\x05!done\x00"):
            data += client.sock.recv(1 << 20)
        assert data.count(b"\x03!re") == 50_000
        assert time.perf_counter() - started < 5  # librouteros itself needs longer to parse
        client.close()


@pytest.fixture(scope="module")
def certificate(tmp_path_factory):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "router.test")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .sign(key, hashes.SHA256()))
    folder = tmp_path_factory.mktemp("tls")
    (folder / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (folder / "key.pem").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    return str(folder / "cert.pem"), str(folder / "key.pem")


def test_api_ssl(certificate):
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(*certificate)
    client = ssl.create_default_context(cafile=certificate[0])
    with RouterSim(password="secret", tls_context=server).start() as sim:
        api = connect(sim, ssl_wrapper=lambda sock: client.wrap_socket(
            sock, server_hostname="127.0.0.1"))
        assert list(api("/system/identity/print")) == [{"name": "MikroTik"}]
        api.close()


def test_serve_forever_runs_until_stopped(certificate):
    ready: list[RouterSim] = []
    stop = threading.Event()
    thread = threading.Thread(target=serve_forever, kwargs={
        "port": 0, "secrets": 3, "password": "pw", "latency": 0.01, "on_ready": ready.append,
        "stop": stop, "tls_cert": certificate[0], "tls_key": certificate[1]})
    thread.start()
    deadline = time.monotonic() + 2
    while not ready and time.monotonic() < deadline:
        time.sleep(0.01)
    [sim] = ready
    context = ssl.create_default_context(cafile=certificate[0])
    api = librouteros.connect("127.0.0.1", "admin", "pw", port=sim.port, timeout=2,
                              ssl_wrapper=lambda s: context.wrap_socket(
                                  s, server_hostname="127.0.0.1"))
    assert len(list(api.path("ppp", "secret"))) == 3
    api.close()
    stop.set()
    thread.join(2)
    assert not thread.is_alive()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", sim.port), timeout=1)
