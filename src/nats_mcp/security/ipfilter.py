"""The address-filter boundary: IP allow and deny lists (CIDR, IPv4 and IPv6) and the parsing of peer addresses."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def parse_peer(peer: str | None) -> IpAddress | None:
    """The IP address in a peer string, whatever its form: ``1.2.3.4``, ``1.2.3.4:5678``, ``[::1]:5678``,
    ``::1``, gRPC's ``ipv4:1.2.3.4:5678`` / ``ipv6:[::1]:5678`` / ``ipv6:%5B::1%5D:5678``. None if there is none
    (a Unix socket, stdio)."""
    if not peer:
        return None
    text = peer.strip().replace("%5B", "[").replace("%5D", "]")
    for prefix in ("ipv4:", "ipv6:"):
        if text.startswith(prefix):
            text = text[len(prefix) :]
    if text.startswith("["):
        text = text[1 : text.find("]")] if "]" in text else text[1:]
    else:
        try:
            return _unmapped(ipaddress.ip_address(text.split("%", 1)[0]))
        except ValueError:
            pass
        host, sep, port = text.rpartition(":")
        if sep and port.isdigit():
            text = host
    try:
        return _unmapped(ipaddress.ip_address(text.split("%", 1)[0]))
    except ValueError:
        return None


def _unmapped(address: IpAddress) -> IpAddress:
    """An IPv4 client seen through an IPv6 socket is judged as the IPv4 address it is."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


class IpFilter:
    """Deny wins; with an allow list, only listed addresses pass. Without an address (stdio) nothing is filtered."""

    def __init__(self, allow: Iterable[str] = (), deny: Iterable[str] = ()) -> None:
        self.allow: list[IpNetwork] = [ipaddress.ip_network(c, strict=False) for c in allow]
        self.deny: list[IpNetwork] = [ipaddress.ip_network(c, strict=False) for c in deny]

    @property
    def active(self) -> bool:
        return bool(self.allow or self.deny)

    def allowed(self, peer: str | None) -> bool:
        if not self.active:
            return True
        address = parse_peer(peer)
        if address is None:
            return peer is None or not self.allow  # an unparseable network peer never passes an allow list
        if any(address in net for net in self.deny if net.version == address.version):
            return False
        return not self.allow or any(address in net for net in self.allow if net.version == address.version)
