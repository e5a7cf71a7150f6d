"""Which client a request comes from, as a key for per-client limits.

By default the socket peer: uvicorn runs without proxy headers (`cli.py`), and a header is
whatever the client chose to write. Only when the peer is one of the configured trusted proxies
is `X-Forwarded-For` read, from the right: each trusted proxy appends the address it received
the request from, so the rightmost address that is not a trusted proxy is the first hop nobody
trusted vouched for — the client. Anything left of it was written by that client.

An IPv6 client is keyed by its /64: one host usually holds the whole prefix and could otherwise
take a new address per attempt. An IPv4-mapped IPv6 address is the IPv4 address.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

IPV6_CLIENT_PREFIX = 64
UNKNOWN = "unknown"


def parse_networks(text: str) -> tuple[IPNetwork, ...]:
    """`10.0.0.0/8, 192.168.1.7, fd00::/8` → networks; ValueError naming a bad entry."""
    networks = []
    for entry in (part.strip() for part in text.split(",")):
        if not entry:
            continue
        try:
            networks.append(ipaddress.ip_network(entry, strict=False))
        except ValueError:
            raise ValueError(
                f"{entry!r} is not an IP address or network (e.g. 10.0.0.0/8)"
            ) from None
    return tuple(networks)


def _address(text: str) -> IPAddress | None:
    """An address as a peer or proxy writes it: bare, `[v6]`, `[v6]:port` or `v4:port`."""
    text = text.strip()
    if text.startswith("["):
        text = text[1:].partition("]")[0]
    elif text.count(":") == 1:
        text = text.partition(":")[0]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _key(address: IPAddress) -> str:
    if isinstance(address, ipaddress.IPv6Address):
        return str(ipaddress.IPv6Network((address, IPV6_CLIENT_PREFIX), strict=False))
    return str(address)


def _trusted(address: IPAddress, proxies: Sequence[IPNetwork]) -> bool:
    return any(address in network for network in proxies)


def client_key(peer: str | None, forwarded_for: Iterable[str], proxies: Sequence[IPNetwork]) -> str:
    """The client of a request whose socket peer is `peer` and whose X-Forwarded-For headers
    are `forwarded_for` (in the order received)."""
    if peer is None:
        return UNKNOWN
    hop = _address(peer)
    if hop is None:
        return peer  # not an IP connection (a Unix socket): the peer's name
    if not proxies or not _trusted(hop, proxies):
        return _key(hop)
    chain = [entry for header in forwarded_for for entry in header.split(",")]
    for entry in reversed(chain):
        address = _address(entry)
        if address is None:
            # A trusted proxy passed on something that is not an address: nothing beyond
            # that proxy can be named, so the proxy is the client.
            return _key(hop)
        if not _trusted(address, proxies):
            return _key(address)
        hop = address
    return _key(hop)


def is_trusted(peer: str | None, proxies: Sequence[IPNetwork]) -> bool:
    """Whether the socket peer is one of the trusted proxies (whose forwarded headers count)."""
    address = _address(peer) if peer else None
    return address is not None and _trusted(address, proxies)
