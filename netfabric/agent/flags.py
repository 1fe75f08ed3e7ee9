"""The agent's command-line flags and their defaults. Light to import: the CLI builds its
whole parser (``netfabric agent``, ``docker setup``, ``cni install``...) on every call, and
importing the daemon for these would load the dataplane and pyroute2 each time (~0.2 s of
every ``netfabric`` command)."""

from __future__ import annotations

import argparse

from netfabric.client import DEFAULT_SOCKET

__all__ = ["DEFAULT_DATA_DIR", "DEFAULT_NETNS_PREFIX", "DOCKER_PLUGIN_SOCKET",
           "add_argument_flags"]

DEFAULT_DATA_DIR = "/var/lib/netfabric"
DEFAULT_NETNS_PREFIX = "nf"
DOCKER_PLUGIN_SOCKET = "/run/docker/plugins/netfabric.sock"


def add_argument_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-dir", default=DEFAULT_DATA_DIR, metavar="DIR",
                   help=f"state directory: agent state, IPAM store (default {DEFAULT_DATA_DIR}, "
                        "created if missing)")
    p.add_argument("--socket", metavar="PATH", default=None,
                   help=f"local API socket (default {DEFAULT_SOCKET})")
    p.add_argument("--advertise-addr", metavar="IP|IFACE", default=None,
                   help="underlay address peers reach this host at (VTEP, gossip, 2377): an IP "
                        "address or an interface name with one IPv4 address, e.g. eth0")
    p.add_argument("--gossip-port", type=int, default=7946, metavar="PORT",
                   help="gossip UDP+TCP port (default 7946)")
    p.add_argument("--vxlan-port", type=int, default=4789, metavar="PORT",
                   help="VXLAN UDP port (default 4789)")
    p.add_argument("--hostname", default=None, metavar="NAME",
                   help="node name shown in `node ls` (default: the system hostname)")
    p.add_argument("--netns-prefix", default=DEFAULT_NETNS_PREFIX, metavar="PREFIX",
                   help="name of this host's netns under /run/netns and start of the names "
                        "of the netns the agent makes ('nf' + up to 8 of [a-z0-9]; default "
                        f"{DEFAULT_NETNS_PREFIX!r})")
    p.add_argument("--dns-upstream", action="append", default=None, metavar="IP[:PORT]",
                   help="resolver for names netfabric does not own (repeatable; default: the "
                        "host's resolv.conf; 'none' forwards nothing)")
    p.add_argument("--gossip-profile", choices=["lan", "local", "wan"], default="lan",
                   help="gossip timers: lan (default), local (one machine, fast failure "
                        "detection), wan")
    p.add_argument("--docker-plugin", default=DOCKER_PLUGIN_SOCKET, metavar="PATH|none",
                   help="serve the Docker network and IPAM plugin 'netfabric' on this unix "
                        f"socket (default {DOCKER_PLUGIN_SOCKET}, where dockerd finds it; "
                        "'none': no plugin)")
    p.add_argument("--metrics-addr", default=None, metavar="HOST:PORT",
                   help="serve Prometheus metrics on http://HOST:PORT/metrics (off by default)")
    p.add_argument("--ui-addr", default=None, metavar="HOST:PORT",
                   help="serve the live topology page on http://HOST:PORT/ (off by default)")
    p.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING (default INFO)")
