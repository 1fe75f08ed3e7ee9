"""Port mappings of CNI attachments (``runtimeConfig.portMappings``) as nftables DNAT.

conmon (podman) binds each host port itself, to hold it; the traffic to it is rewritten
here, in this host's netns, to the container's address: one table ``ip netfabric-cni`` of
our own, rendered whole from the attachments (:func:`render`, pure) and replaced in one
transaction (:class:`PortTable`). Packets from other hosts (prerouting) and from this host
(output) to a local address are caught; an empty set of mappings removes the table.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Protocol

from netfabric.dataplane.nft import delete_table, replace_table

__all__ = ["TABLE", "Mapped", "PortTable", "render"]

TABLE = "netfabric-cni"


class Mapped(Protocol):
    """What a rule needs of an attachment."""

    @property
    def ipv4(self) -> str: ...

    @property
    def ports(self) -> tuple[tuple[str, int, int, str], ...]: ...


def render(attachments: Iterable[Mapped]) -> str:
    """The table body for these attachments ('' when none maps a port)."""
    rules: list[str] = []
    for att in sorted(attachments, key=lambda a: a.ipv4):
        for proto, host, cont, host_ip in sorted(att.ports):
            match = f"ip daddr {host_ip} " if host_ip and host_ip != "0.0.0.0" else ""
            rules.append(f"\t\t{match}{proto} dport {host} dnat to {att.ipv4}:{cont}")
    if not rules:
        return ""
    hook = ("\t\tfib daddr type local jump ports\n")
    return ("\tchain ports {\n" + "\n".join(rules) + "\n\t}\n"
            "\tchain prerouting {\n\t\ttype nat hook prerouting priority dstnat; policy accept;\n"
            + hook + "\t}\n"
            "\tchain output {\n\t\ttype nat hook output priority -100; policy accept;\n"
            + hook + "\t}")


class PortTable:
    """The DNAT table in the agent's host netns."""

    def __init__(self, host_netns: str | None) -> None:
        self.host_netns = host_netns
        self._body: str | None = None

    async def apply(self, attachments: Iterable[Mapped]) -> None:
        body = render(attachments)
        if body == self._body:
            return
        if body:
            await asyncio.to_thread(replace_table, self.host_netns, "ip", TABLE, body)
        else:
            await asyncio.to_thread(delete_table, self.host_netns, "ip", TABLE)
        self._body = body
