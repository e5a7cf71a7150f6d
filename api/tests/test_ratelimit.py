"""Pure logic of the brute-force limit: the sliding window of failures per client, with an
injected clock, and which address a request is counted against."""

from __future__ import annotations

import ipaddress

import pytest

from fraudpipe_api.peers import client_key, parse_networks
from fraudpipe_api.ratelimit import FailureWindow


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


def fail(window: FailureWindow, clock: Clock, client: str, *at: float) -> list[bool]:
    reached = []
    for offset in at:
        clock.now = 1000.0 + offset
        reached.append(window.record(client))
    return reached


def test_a_client_is_refused_once_it_reaches_the_limit_within_the_window(clock: Clock) -> None:
    window = FailureWindow(limit=3, window_s=60, max_clients=100, clock=clock)
    assert fail(window, clock, "10.0.0.1", 0, 10) == [False, False]
    assert window.retry_after("10.0.0.1") == 0
    assert fail(window, clock, "10.0.0.1", 20) == [True]
    # Refused until the first failure (t=0) is 60 s old.
    assert window.retry_after("10.0.0.1") == pytest.approx(40)
    clock.now = 1059.5
    assert window.retry_after("10.0.0.1") == pytest.approx(0.5)


def test_the_window_expiring_restores_access_one_failure_at_a_time(clock: Clock) -> None:
    window = FailureWindow(limit=3, window_s=60, max_clients=100, clock=clock)
    fail(window, clock, "10.0.0.1", 0, 10, 20)
    clock.now = 1060.0
    assert window.retry_after("10.0.0.1") == 0  # the failure at t=0 has left the window
    # One more failure right away: three within the last 60 s again (t=10, 20, 60), so the
    # client waits for t=10 to leave: never more than the limit in any window.
    assert fail(window, clock, "10.0.0.1", 60) == [True]
    assert window.retry_after("10.0.0.1") == pytest.approx(10)
    clock.now = 1200.0
    assert window.retry_after("10.0.0.1") == 0


def test_failures_further_apart_than_the_window_never_block(clock: Clock) -> None:
    window = FailureWindow(limit=3, window_s=60, max_clients=100, clock=clock)
    reached = fail(window, clock, "10.0.0.1", *(30.0 * i for i in range(20)))
    assert not any(reached)
    assert window.retry_after("10.0.0.1") == 0


def test_one_client_s_failures_leave_another_alone(clock: Clock) -> None:
    window = FailureWindow(limit=2, window_s=60, max_clients=100, clock=clock)
    fail(window, clock, "10.0.0.1", 0, 1)
    assert window.retry_after("10.0.0.1") > 0
    assert window.retry_after("10.0.0.2") == 0
    assert fail(window, clock, "10.0.0.2", 2) == [False]


def test_memory_is_bounded_by_forgetting_the_client_whose_latest_failure_is_oldest(
    clock: Clock,
) -> None:
    window = FailureWindow(limit=3, window_s=60, max_clients=3, clock=clock)
    fail(window, clock, "a", 0, 1, 2)
    assert window.retry_after("a") > 0
    fail(window, clock, "b", 3)
    fail(window, clock, "c", 4)
    fail(window, clock, "b", 5)  # b failed again: now c's latest failure is older than b's
    fail(window, clock, "d", 6)  # full: "a" goes, blocked or not
    assert len(window) == 3
    assert window.retry_after("a") == 0
    fail(window, clock, "e", 7)  # then "c", not "b"
    assert len(window) == 3
    assert fail(window, clock, "b", 8) == [True]  # b kept its failures at t=3 and t=5


def test_clients_whose_failures_expired_are_dropped(clock: Clock) -> None:
    window = FailureWindow(limit=5, window_s=60, max_clients=1000, clock=clock)
    for i in range(500):
        fail(window, clock, f"10.0.{i // 256}.{i % 256}", i / 100)
    assert len(window) == 500
    fail(window, clock, "192.0.2.1", 100)  # every earlier one has expired
    assert len(window) == 1


def test_a_limit_of_zero_counts_nothing(clock: Clock) -> None:
    window = FailureWindow(limit=0, window_s=60, max_clients=10, clock=clock)
    assert fail(window, clock, "10.0.0.1", *range(100)) == [False] * 100
    assert window.retry_after("10.0.0.1") == 0
    assert len(window) == 0


PROXIES = parse_networks("10.0.0.0/8, 192.168.1.7")


def test_the_socket_peer_is_the_client_unless_it_is_a_trusted_proxy() -> None:
    assert client_key("203.0.113.9", ["198.51.100.1"], ()) == "203.0.113.9"
    # Forwarded-For from a peer that is no trusted proxy is whatever the client wrote.
    assert client_key("203.0.113.9", ["198.51.100.1"], PROXIES) == "203.0.113.9"


def test_behind_trusted_proxies_the_rightmost_untrusted_address_is_the_client() -> None:
    # The client wrote "6.6.6.6" itself; the proxy appended the address it saw.
    assert client_key("10.1.2.3", ["6.6.6.6, 203.0.113.9"], PROXIES) == "203.0.113.9"
    # Two trusted proxies in a row (one of them named by a single address).
    assert client_key("10.1.2.3", ["203.0.113.9, 192.168.1.7"], PROXIES) == "203.0.113.9"
    # Repeated headers are one list, in order.
    headers = ["6.6.6.6", "203.0.113.9, 10.9.9.9"]
    assert client_key("10.1.2.3", headers, PROXIES) == "203.0.113.9"
    # Ports and brackets as some proxies write them.
    assert client_key("10.1.2.3", ["203.0.113.9:5555"], PROXIES) == "203.0.113.9"
    assert client_key("10.1.2.3", ["[2001:db8::1]:443"], PROXIES) == "2001:db8::/64"


def test_a_trusted_proxy_without_a_client_address_is_itself_the_client() -> None:
    assert client_key("10.1.2.3", [], PROXIES) == "10.1.2.3"
    assert client_key("10.1.2.3", ["10.4.4.4"], PROXIES) == "10.4.4.4"  # all trusted: leftmost
    assert client_key("10.1.2.3", ["203.0.113.9, garbage"], PROXIES) == "10.1.2.3"


def test_ipv6_clients_are_counted_by_their_64_bit_prefix() -> None:
    one = client_key("2001:db8:1:2::1", [], ())
    other = client_key("2001:db8:1:2:ffff:ffff:ffff:ffff", [], ())
    assert one == other == "2001:db8:1:2::/64"
    assert client_key("2001:db8:1:3::1", [], ()) != one
    assert client_key("::ffff:203.0.113.9", [], ()) == "203.0.113.9"


def test_a_peer_that_is_no_ip_address_is_named_as_it_is() -> None:
    assert client_key(None, ["203.0.113.9"], PROXIES) == "unknown"
    assert client_key("/run/api.sock", [], PROXIES) == "/run/api.sock"


def test_trusted_proxies_parse_and_a_bad_entry_is_named() -> None:
    assert parse_networks("") == ()
    assert parse_networks(" 10.0.0.0/8 ,, fd00::/8") == (
        ipaddress.ip_network("10.0.0.0/8"),
        ipaddress.ip_network("fd00::/8"),
    )
    with pytest.raises(ValueError, match=r"'proxy\.local' is not an IP address"):
        parse_networks("10.0.0.0/8, proxy.local")
