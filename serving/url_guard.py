"""Which hosts and addresses the image fetcher may connect to (the SSRF guard).

The policy refuses every address that is not plainly public unicast: loopback, private, shared
(CGNAT), link-local (including the cloud metadata address 169.254.169.254), unspecified, multicast,
reserved, documentation and benchmarking ranges, and IPv6 forms that embed one of those (IPv4-mapped,
IPv4-compatible, NAT64, 6to4; Teredo is refused outright). Host names such as ``localhost`` and
``*.internal`` (where cloud metadata services live) are refused by name. ``allowed_hosts`` exempts
a host name, an address or a network (CIDR) from the guard.

:class:`GuardedResolver` applies the policy inside aiohttp's connector, to the very addresses the
connector then connects to: there is no second DNS lookup, so DNS rebinding cannot slip past it.
"""

from __future__ import annotations

import ipaddress
import logging
import re
import socket
from collections.abc import Iterable
from dataclasses import dataclass, field

from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import ThreadedResolver

from prodcat.serving.exceptions import ImageFetchError

logger = logging.getLogger(__name__)

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

_V4_BLOCKED: tuple[tuple[str, str], ...] = (
    ("0.0.0.0/8", "unspecified"),
    ("10.0.0.0/8", "private"),
    ("100.64.0.0/10", "shared (CGNAT)"),
    ("127.0.0.0/8", "loopback"),
    ("169.254.0.0/16", "link-local"),
    ("172.16.0.0/12", "private"),
    ("192.0.0.0/24", "reserved (IETF protocol assignments)"),
    ("192.0.2.0/24", "reserved (documentation)"),
    ("192.88.99.0/24", "reserved (6to4 relay)"),
    ("192.168.0.0/16", "private"),
    ("198.18.0.0/15", "reserved (benchmarking)"),
    ("198.51.100.0/24", "reserved (documentation)"),
    ("203.0.113.0/24", "reserved (documentation)"),
    ("224.0.0.0/4", "multicast"),
    ("240.0.0.0/4", "reserved"),
)
_V6_BLOCKED: tuple[tuple[str, str], ...] = (
    ("::/128", "unspecified"),
    ("::1/128", "loopback"),
    ("64:ff9b:1::/48", "reserved (local-use NAT64)"),
    ("100::/64", "reserved (discard-only)"),
    ("2001:db8::/32", "reserved (documentation)"),
    ("2001::/23", "reserved (IETF protocol assignments)"),
    ("fc00::/7", "private (unique local)"),
    ("fe80::/10", "link-local"),
    ("fec0::/10", "private (site-local)"),
    ("ff00::/8", "multicast"),
)
_V4_TABLE = tuple((ipaddress.IPv4Network(net), why) for net, why in _V4_BLOCKED)
_V6_TABLE = tuple((ipaddress.IPv6Network(net), why) for net, why in _V6_BLOCKED)
_V6_GLOBAL_UNICAST = ipaddress.IPv6Network("2000::/3")
_V4_COMPATIBLE = ipaddress.IPv6Network("::/96")
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")

#: Names refused whatever they resolve to (cloud metadata services, loopback names).
BLOCKED_NAMES = frozenset(
    {"localhost", "metadata", "metadata.goog", "metadata.google.internal", "instance-data"}
)
BLOCKED_SUFFIXES = (".localhost", ".internal")

_LEGACY_V4 = re.compile(r"^[0-9a-fx.]+$")


def blocked_reason(address: IPAddress) -> str | None:
    """Why ``address`` may not be fetched from, or ``None`` when it is public unicast."""
    if isinstance(address, ipaddress.IPv6Address):
        embedded = _embedded_v4(address)
        if embedded is not None:
            reason = blocked_reason(embedded)
            return None if reason is None else f"{reason} (embedded in {address})"
        for net6, why in _V6_TABLE:
            if address in net6:
                return why
        return None if address in _V6_GLOBAL_UNICAST else "reserved (not global unicast)"
    for net4, why in _V4_TABLE:
        if address in net4:
            return why
    return None


def _embedded_v4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address stands for (mapped, compatible, NAT64, 6to4).

    Teredo (2001::/32) is not unwrapped: it lies in 2001::/23, which is refused outright.
    """
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address in _NAT64 or (address in _V4_COMPATIBLE and int(address) > 1):
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def normalize_host(host: str) -> str:
    """Lower-case a host name and drop the trailing dot(s) of a fully qualified name."""
    return host.lower().rstrip(".")


def parse_ip_host(host: str) -> tuple[IPAddress, bool] | None:
    """The address an IP-literal host denotes and whether it was spelt canonically.

    Besides ordinary literals this understands the legacy IPv4 spellings that ``inet_aton`` (and so
    the system resolver) accepts: ``2130706433``, ``0x7f.1``, ``017700000001``, ``127.1``.
    """
    literal = host.strip("[]").replace("%25", "%")
    try:
        address = ipaddress.ip_address(literal)
    except ValueError:
        pass
    else:
        return address, True
    if _LEGACY_V4.match(host.lower()):
        try:
            return ipaddress.IPv4Address(socket.inet_aton(host)), False
        except OSError:
            return None
    return None


@dataclass(frozen=True)
class AddressPolicy:
    """The guard: refuses non-public addresses unless a name, address or network is allow-listed."""

    allowed_names: frozenset[str] = frozenset()
    allowed_networks: tuple[IPNetwork, ...] = field(default=())

    @classmethod
    def from_allowed(cls, entries: Iterable[str]) -> AddressPolicy:
        """Build a policy from ``ImageSettings.allowed_hosts`` (names, addresses or CIDRs)."""
        names: set[str] = set()
        networks: list[IPNetwork] = []
        for entry in entries:
            try:
                networks.append(ipaddress.ip_network(entry.strip().strip("[]"), strict=False))
            except ValueError:
                names.add(normalize_host(entry.strip()))
        return cls(frozenset(names), tuple(networks))

    def name_allowed(self, host: str) -> bool:
        """Whether the host name itself is allow-listed (its addresses are then not checked)."""
        return normalize_host(host) in self.allowed_names

    def name_refusal(self, host: str) -> str | None:
        """Why a host name is refused before resolving it, or ``None``."""
        name = normalize_host(host)
        if name in self.allowed_names:
            return None
        if name in BLOCKED_NAMES or name.endswith(BLOCKED_SUFFIXES):
            return "blocked host name"
        return None

    def address_refusal(self, address: IPAddress) -> str | None:
        """Why an address is refused, or ``None`` when it is public or allow-listed."""
        if isinstance(address, ipaddress.IPv6Address):
            address = ipaddress.IPv6Address(int(address))  # drop any %scope
            plain: IPAddress = address.ipv4_mapped or address
        else:
            plain = address
        for net in self.allowed_networks:
            if any(a.version == net.version and a in net for a in (address, plain)):
                return None
        return blocked_reason(address)

    def check_addresses(self, host: str, addresses: Iterable[str]) -> None:
        """Raise ``address_not_allowed`` if ANY of the addresses ``host`` resolved to is refused."""
        if self.name_allowed(host):
            return
        for text in addresses:
            address = ipaddress.ip_address(text)
            reason = self.address_refusal(address)
            if reason is not None:
                logger.warning("refused image host %s: resolves to %s (%s)", host, text, reason)
                raise ImageFetchError("address_not_allowed", f"{host} resolves to {text}: {reason}")


class GuardedResolver(AbstractResolver):
    """An aiohttp resolver that returns only addresses the policy allows, or raises.

    It raises :class:`ImageFetchError` (``address_not_allowed``) rather than an ``OSError`` so that
    aiohttp passes the refusal through unchanged instead of reporting a DNS failure.
    """

    def __init__(self, policy: AddressPolicy, inner: AbstractResolver | None = None) -> None:
        self._policy = policy
        self._inner = inner

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        """Resolve ``host`` with the inner resolver and check every address it returns."""
        reason = self._policy.name_refusal(host)
        if reason is not None:
            logger.warning("refused image host %s: %s", host, reason)
            raise ImageFetchError("address_not_allowed", f"{host}: {reason}")
        if self._inner is None:
            self._inner = ThreadedResolver()
        results = await self._inner.resolve(host, port, family)
        self._policy.check_addresses(host, (result["host"] for result in results))
        return results

    async def close(self) -> None:
        """Close the inner resolver."""
        if self._inner is not None:
            await self._inner.close()
