"""RouterClient against the RouterOS simulator over real TCP: taxonomy, text, writes."""

from __future__ import annotations

import dataclasses
import logging
import pickle
import threading
import time

import pytest

from ispqueue.config import RouterConfig
from ispqueue.routeros.client import RouterClient
from ispqueue.routeros.errors import (
    RouterAuthFailed,
    RouterEncodingError,
    RouterProtocolError,
    RouterTimeout,
    RouterTrap,
    RouterUnreachable,
    RouterUnsupported,
)
from ispqueue.routeros.sim import RouterSim

PASSWORD = "s3cret-Pa55"
AWKWARD = {
    "cyrillic": "Иван Петров, ул. Ленина 5",
    "greek": "Αθηνά Παπαδοπούλου",
    "cjk": "王小明 東京都 서울",
    "emoji": "fibre 🚀📶 ok",
    "number": "1001",
    "zero-padded": "0123",
    "negative": "-5",
    "yes": "yes",
    "false": "false",
    "empty": "",
    "equals": "a=b=c",
    "spaces": "  padded  ",
}


def start_sim(**options) -> RouterSim:
    options = {"host": "127.0.0.1", "port": 0, "username": "admin", "password": PASSWORD,
               "seed": 1, **options}
    sim = RouterSim(**options)
    sim.start()
    return sim


@pytest.fixture
def sim():
    sim = start_sim()
    yield sim
    sim.stop()


def config_for(sim: RouterSim, **changes) -> RouterConfig:
    config = RouterConfig(name="edge-1", host="127.0.0.1", port=sim.port, username="admin",
                          password=PASSWORD, timeout=2.0)
    return dataclasses.replace(config, **changes)


def commands(sim: RouterSim) -> list[str]:
    return [entry.command for entry in sim.journal]


# -- the error taxonomy ------------------------------------------------------------------


def test_refused_connection_is_unreachable(sim):
    sim.faults.refuse = True
    with pytest.raises(RouterUnreachable) as caught:
        RouterClient.connect(config_for(sim))
    assert caught.value.router == "edge-1"


def test_closed_port_is_unreachable(sim):
    port = sim.port
    sim.stop()
    with pytest.raises(RouterUnreachable):
        RouterClient.connect(config_for(sim, port=port))


def test_silent_router_times_out_within_the_timeout(sim):
    sim.faults.hang = True
    started = time.monotonic()
    with pytest.raises(RouterTimeout):
        RouterClient.connect(config_for(sim, timeout=0.5))
    assert time.monotonic() - started < 0.5 + 1


def test_hang_after_login_times_out(sim):
    with RouterClient.connect(config_for(sim, timeout=0.5)) as client:
        sim.faults.hang = True
        started = time.monotonic()
        with pytest.raises(RouterTimeout):
            client.print("/ppp/secret")
        assert time.monotonic() - started < 0.5 + 1


def test_a_deadline_shorter_than_the_timeout_wins(sim):
    deadline = time.monotonic() + 0.3
    with RouterClient.connect(config_for(sim, timeout=30), deadline=deadline) as client:
        sim.faults.hang = True
        with pytest.raises(RouterTimeout):
            client.identity()
    assert time.monotonic() - deadline < 0.5


def test_a_passed_deadline_fails_before_connecting(sim):
    with pytest.raises(RouterTimeout):
        RouterClient.connect(config_for(sim), deadline=time.monotonic() - 1)
    assert commands(sim) == []


def test_drop_mid_print_discards_the_connection():
    sim = start_sim(secrets=200)
    try:
        with RouterClient.connect(config_for(sim)) as client:
            sim.faults.drop_after = 20
            with pytest.raises((RouterProtocolError, RouterUnreachable)):
                client.print("/ppp/secret")
            sim.faults.clear()
            with pytest.raises(RouterProtocolError, match="connection discarded"):
                client.identity()
    finally:
        sim.stop()


def test_bad_password_is_auth_failed(sim):
    with pytest.raises(RouterAuthFailed, match=r"invalid user name or password"):
        RouterClient.connect(config_for(sim, password="wrong"))


def test_unknown_menu_is_unsupported(sim):
    with RouterClient.connect(config_for(sim)) as client:
        with pytest.raises(RouterUnsupported, match="no such command"):
            client.print("/interface/teleporter")
        assert client.identity()  # two traps and a !done: the stream is still in step


def test_fatal_ends_the_session(sim):
    with RouterClient.connect(config_for(sim)) as client:
        sim.faults.fatal = "out of sessions"
        with pytest.raises(RouterProtocolError, match="out of sessions"):
            client.identity()
        sim.faults.clear()
        with pytest.raises(RouterProtocolError, match="connection discarded"):
            client.identity()


def test_a_slow_stream_stops_at_the_deadline():
    sim = start_sim(secrets=50)
    try:
        deadline = time.monotonic() + 0.6
        with RouterClient.connect(config_for(sim, timeout=5), deadline=deadline) as client:
            sim.faults.latency = 0.1  # every sentence comes well within the timeout
            with pytest.raises(RouterTimeout, match="deadline"):
                client.print("/ppp/secret")
        assert time.monotonic() - deadline < 0.3
    finally:
        sim.stop()


def test_a_trapped_write_keeps_the_session(sim):
    with RouterClient.connect(config_for(sim)) as client:
        sim.faults.trap_on_write = (2, "failure: not enough memory")
        client.add("/ppp/secret", name="first")
        with pytest.raises(RouterTrap) as caught:
            client.add("/ppp/secret", name="second")
        assert (caught.value.message, caught.value.category) == ("failure: not enough memory",
                                                                 None)
        assert [r["name"] for r in client.print("/ppp/secret", "name")] == ["first"]


def test_on_cancel_unblocks_a_read_from_another_thread(sim):
    closers = []
    with RouterClient.connect(config_for(sim, timeout=30), on_cancel=closers.append) as client:
        sim.faults.hang = True
        assert len(closers) == 1
        timer = threading.Timer(0.2, closers[0])
        timer.start()
        started = time.monotonic()
        with pytest.raises(RouterTimeout, match="cancelled"):
            client.print("/ppp/secret")
        assert time.monotonic() - started < 1
        timer.join()


def test_cancel_before_connect_never_connects(sim):
    with pytest.raises(RouterTimeout, match="cancelled"):
        RouterClient.connect(config_for(sim), on_cancel=lambda close: close())
    assert commands(sim) == []


def test_errors_survive_pickling():
    error = RouterTrap("failure: x", 1, "edge-1", "/ppp/secret/add")
    copy = pickle.loads(pickle.dumps(error))
    assert (copy.message, copy.category, copy.router, str(copy)) == (
        "failure: x", 1, "edge-1", str(error))


# -- exact text both ways ----------------------------------------------------------------


def test_awkward_values_round_trip_as_exact_text(sim):
    with RouterClient.connect(config_for(sim)) as client:
        for label, text in AWKWARD.items():
            client.add("/ppp/secret", name=f"{label}-{text}", password=text, comment=text)
        rows = client.print("/ppp/secret", ("name", "password", "comment"))
    assert len(rows) == len(AWKWARD)
    for row, (label, text) in zip(rows, AWKWARD.items(), strict=True):
        assert row == {"name": f"{label}-{text}", "password": text, "comment": text}
        assert all(isinstance(value, str) for value in row.values())


def test_numbers_and_flags_stay_text(sim):
    with RouterClient.connect(config_for(sim)) as client:
        client.add("/ppp/secret", name="1001", password="0123", comment="yes")
        client.set_by_name("/ppp/secret", "1001", disabled="yes")
        [row] = client.print("/ppp/secret", where={"name": "1001"})
    assert row["name"] == "1001"
    assert row["password"] == "0123"
    assert row["comment"] == "yes"
    assert row["disabled"] in ("true", "yes")
    assert row[".id"].startswith("*")


def test_a_very_long_comment_round_trips(sim):
    comment = ("Комментарий 💬 " * 2000)[:20000]
    assert len(comment.encode()) > 16 * 1024
    with RouterClient.connect(config_for(sim)) as client:
        client.add("/ppp/secret", name="long", comment=comment)
        [row] = client.print("/ppp/secret", ("comment",), {"name": "long"})
    assert row["comment"] == comment


def test_cp1251_bytes_decode_through_the_fallback(sim):
    text = "Абонент Иванов, оплата 15 числа"
    with RouterClient.connect(config_for(sim, encoding="cp1251")) as winbox:
        winbox.add("/ppp/secret", name="ivanov", comment=text)
        winbox.add("/ppp/secret", name="modern", comment="ok")
    reader = config_for(sim, encoding="utf-8", fallback_encoding="cp1251")
    with RouterClient.connect(reader) as client:
        rows = {row["name"]: row for row in client.print("/ppp/secret", ("name", "comment"))}
    assert rows["ivanov"]["comment"] == text
    assert rows["modern"]["comment"] == "ok"


def test_text_the_router_encoding_cannot_hold_is_bad_input(sim):
    with RouterClient.connect(config_for(sim, encoding="cp1251")) as client:
        with pytest.raises(RouterEncodingError, match="comment"):
            client.add("/ppp/secret", name="x", comment="emoji 🚀")
        assert client.identity()  # nothing was sent, the session is intact
    assert not [e for e in sim.journal if e.command == "/ppp/secret/add"]


# -- writes ------------------------------------------------------------------------------


def test_add_returns_the_id_and_dashes_the_keywords(sim):
    with RouterClient.connect(config_for(sim)) as client:
        new_id = client.add("/ppp/secret", name="bob", password="pw",
                            local_address="10.0.0.1", remote_address="10.0.0.2")
        [row] = client.print("/ppp/secret", where={"name": "bob"})
    assert row[".id"] == new_id
    assert row["local-address"] == "10.0.0.1"
    assert row["remote-address"] == "10.0.0.2"


def test_duplicate_add_is_a_trap_with_routeros_text(sim):
    with RouterClient.connect(config_for(sim)) as client:
        client.add("/ppp/secret", name="bob", password="pw")
        with pytest.raises(RouterTrap) as caught:
            client.add("/ppp/secret", name="bob", password="pw")
        assert caught.value.message == "failure: secret with the same name already exists"
        assert caught.value.command == "/ppp/secret/add"
        assert "pw" not in str(caught.value)
        assert client.count("/ppp/secret") == 1  # a trap leaves the session usable


def test_set_and_remove_by_name_after_renumbering(sim):
    with RouterClient.connect(config_for(sim)) as client:
        client.add("/ppp/secret", name="alice", profile="default")
        old_id = client.add("/ppp/secret", name="bob", profile="default")
        sim.renumber()
        client.set_by_name("/ppp/secret", "bob", {"comment": "moved"}, name="robert")
        [row] = client.print("/ppp/secret", where={"name": "robert"})
        assert row["comment"] == "moved"
        assert row[".id"] != old_id
        sim.renumber()
        assert client.remove_by_name("/ppp/secret", "robert") == 1
        assert client.remove_by_name("/ppp/secret", "robert") == 0
        assert [r["name"] for r in client.print("/ppp/secret", ("name",))] == ["alice"]


def test_set_by_name_of_a_missing_row_is_no_such_item(sim):
    with RouterClient.connect(config_for(sim)) as client, \
            pytest.raises(RouterTrap, match="no such item"):
        client.set_by_name("/ppp/secret", "ghost", disabled="yes")


def test_kick_removes_every_session_of_the_name(sim):
    sim.insert("/ppp/secret", name="carol", password="pw")
    sim.connect_session("carol")
    with RouterClient.connect(config_for(sim)) as client:
        assert client.count("/ppp/active", where={"name": "carol"}) == 1
        assert client.kick("carol") == 1
        assert client.count("/ppp/active", where={"name": "carol"}) == 0
        assert client.kick("carol") == 0
        assert client.kick("nobody") == 0


def test_dry_run_records_exact_words_and_sends_no_write(sim):
    sim.insert("/ppp/secret", name="dave", profile="default")
    sim.connect_session("dave")
    with RouterClient.connect(config_for(sim), dry_run=True) as client:
        new_id = client.add("/ppp/secret", name="bob", profile="10M")
        client.set_by_name("/ppp/secret", "dave", disabled="yes")
        removed = client.remove_by_name("/ppp/secret", "dave")
        kicked = client.kick("dave")
        client.write("/system/identity/set", name="core")
        secret_id = sim.rows("/ppp/secret")[0][".id"]
        session_id = sim.rows("/ppp/active")[0][".id"]
        assert client.writes == [
            ["/ppp/secret/add", "=name=bob", "=profile=10M"],
            ["/ppp/secret/set", f"=.id={secret_id}", "=disabled=yes"],
            ["/ppp/secret/remove", f"=.id={secret_id}"],
            ["/ppp/active/remove", f"=.id={session_id}"],
            ["/system/identity/set", "=name=core"],
        ]
        assert (new_id, removed, kicked) == ("*dry-1", 1, 1)
    written = [c for c in commands(sim) if c.rsplit("/", 1)[-1] in ("add", "set", "remove")]
    assert written == []
    assert [r["name"] for r in sim.rows("/ppp/secret")] == ["dave"]
    assert len(sim.rows("/ppp/active")) == 1


# -- reads -------------------------------------------------------------------------------


def test_print_with_proplist_and_query_words():
    sim = start_sim(secrets=30)
    try:
        with RouterClient.connect(config_for(sim)) as client:
            everyone = client.print("/ppp/secret", ("name", "profile"))
            first = everyone[0]["name"]
            assert all(set(row) <= {"name", "profile"} for row in everyone)
            assert client.print("/ppp/secret", ("name",), [f"?name={first}"]) == [{"name": first}]
            assert client.count("/ppp/secret") == 30 == len(everyone)
            assert client.count("/ppp/secret", where={"name": first}) == 1
    finally:
        sim.stop()


def test_identity_resource_and_health():
    sim = start_sim(identity="Core Ядро", version="7.16 (stable)")
    try:
        with RouterClient.connect(config_for(sim)) as client:
            assert client.identity() == "Core Ядро"
            resource = client.resource()
            health = client.health()
    finally:
        sim.stop()
    assert resource["version"] == "7.16 (stable)"
    assert resource["free-memory"].isdigit()
    assert all(isinstance(v, str) for v in resource.values())
    sensors = {row["name"]: row for row in health}
    assert (sensors["temperature"]["value"], sensors["temperature"]["type"]) == ("41", "C")


def test_health_on_a_board_without_sensors_is_unsupported(sim):
    # The simulator has no switch for a sensorless board: drop the menu as such a board would.
    sim.menus.pop("/system/health")
    with RouterClient.connect(config_for(sim)) as client:
        with pytest.raises(RouterUnsupported):
            client.health()
        assert client.identity()


def test_export_round_trip():
    sim = start_sim(secrets=5, identity="Export Test")
    try:
        with RouterClient.connect(config_for(sim)) as client:
            client.add("/ppp/secret", name="exported-Ω", comment="in the backup")
            text = client.export()
        assert "exported-Ω" in text
        assert "in the backup" in text
        assert not [r for r in sim.rows("/file") if r.get("name", "").endswith(".rsc")]
        assert "/export" in commands(sim)
    finally:
        sim.stop()


def test_a_large_export_is_read_whole_and_exact():
    sim = start_sim(secrets=1500)
    try:
        for number in range(300):
            # Two-byte letters after an odd-length name: chunk edges split characters.
            sim.insert("/ppp/secret", name=f"u{number:03d}x", comment="Жёлтый дом " * 9)
        with RouterClient.connect(config_for(sim, timeout=10)) as client:
            text = client.export()
        expected = sim.export_text(sim.exported_menus(), show_sensitive=False)
    finally:
        sim.stop()
    assert len(text.encode()) > 64 * 1024
    assert "/file/read" in commands(sim)
    assert text.split("\r\n", 1)[1] == expected.split("\r\n", 1)[1]  # all but the clock line


# -- login -------------------------------------------------------------------------------


def test_old_router_logs_in_with_the_token_via_auto():
    sim = start_sim(legacy_login=True, version="6.40.9 (bugfix)")
    try:
        with RouterClient.connect(config_for(sim, login_method="auto")) as client:
            assert client.identity()
        with RouterClient.connect(config_for(sim, login_method="token")) as client:
            assert client.identity()
        with pytest.raises(RouterAuthFailed):
            RouterClient.connect(config_for(sim, login_method="auto", password="wrong"))
        with pytest.raises(RouterAuthFailed, match="challenge"):
            RouterClient.connect(config_for(sim, login_method="plain"))
    finally:
        sim.stop()


def test_the_password_never_reaches_a_log(sim, caplog):
    caplog.set_level(logging.DEBUG)
    with RouterClient.connect(config_for(sim)) as client:
        client.add("/ppp/secret", name="eve", password="customer-pw-123")
    assert logging.getLogger("librouteros").getEffectiveLevel() >= logging.INFO
    assert PASSWORD not in caplog.text
    assert "customer-pw-123" not in caplog.text


def test_a_closed_client_refuses_further_calls(sim):
    with RouterClient.connect(config_for(sim)) as client:
        assert client.identity()
    with pytest.raises(RouterProtocolError, match="connection discarded"):
        client.identity()
