"""Embedded DNS: 127.0.0.11 in every sandbox, answering names of the sandbox's networks.

- :mod:`~netfabric.dns.records`: the records view (endpoints, services), keyed by network.
- :mod:`~netfabric.dns.resolver`: the pure core, ``Resolver.answer(query, asker)``.
- :mod:`~netfabric.dns.forwarder`: upstream forwarding (asyncio adapter).
- :mod:`~netfabric.dns.server`: sockets in each sandbox netns, resolv.conf files.
- :mod:`~netfabric.dns.pump`: the recvmmsg/sendmmsg serving thread.
- :mod:`~netfabric.dns.runner`: the server as a process driven by JSON lines.
"""

from netfabric.dns.forwarder import Upstream, parse_upstream, read_resolv_conf
from netfabric.dns.records import Records, ServiceMode
from netfabric.dns.resolver import Asker, Forward, Resolver, ResolverConfig, Transport
from netfabric.dns.server import DNS_ADDRESS, DnsServer, ServerConfig, ServingMode

__all__ = [
    "DNS_ADDRESS",
    "Asker",
    "DnsServer",
    "Forward",
    "Records",
    "Resolver",
    "ResolverConfig",
    "ServerConfig",
    "ServiceMode",
    "ServingMode",
    "Transport",
    "Upstream",
    "parse_upstream",
    "read_resolv_conf",
]
