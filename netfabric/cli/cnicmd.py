"""``netfabric cni ...``: set a CNI runtime (podman, ...) up to use netfabric networks."""

from __future__ import annotations

import argparse
from typing import Any

from netfabric.cli.commands import group, verb_parser

__all__ = ["add_cni_commands"]


def _cmd_install(args: argparse.Namespace) -> int:
    from netfabric.plugin.cni.install import install

    conf, plugin = install(args.name or args.network, network=args.network,
                           conf_dir=args.conf_dir, bin_dir=args.bin_dir,
                           version=args.cni_version, socket=args.socket,
                           record_dir=args.data_dir)
    print(f"wrote {conf}")
    print(f"wrote {plugin}")
    return 0


def add_cni_commands(sub: Any) -> None:
    from netfabric.agent.flags import DEFAULT_DATA_DIR
    from netfabric.plugin.cni.install import BIN_DIR, CONF_DIR

    _, cnisub = group(sub, "cni", "the CNI plugin: podman and other CNI runtimes",
                      "cni_command")
    p = verb_parser(cnisub, "install", "write a conflist for a network and the plugin",
                    examples=["netfabric cni install myoverlay",
                              "netfabric cni install --name podnet myoverlay"],
                    description="Write CONF_DIR/NAME.conflist (type netfabric, capabilities "
                    "aliases, portMappings, ips, mac) for netfabric network NETWORK, and the "
                    "plugin executable BIN_DIR/netfabric. `podman network ls` then lists NAME "
                    "(with podman's CNI backend).")
    p.add_argument("network", metavar="NETWORK", help="the netfabric network")
    p.add_argument("--name", default=None,
                   help="the CNI network's name, as podman shows it (default: NETWORK)")
    p.add_argument("--conf-dir", default=CONF_DIR, help=f"CNI config dir (default {CONF_DIR})")
    p.add_argument("--bin-dir", default=BIN_DIR, help=f"CNI plugin dir (default {BIN_DIR})")
    p.add_argument("--cni-version", default="1.0.0",
                   help="the conflist's cniVersion (default 1.0.0, podman 4.3's newest)")
    p.add_argument("--socket", default=None, metavar="PATH",
                   help="the agent's socket, when not /run/netfabric/agent.sock")
    p.add_argument("--data-dir", default=DEFAULT_DATA_DIR, metavar="DIR",
                   help="where what was written is recorded for `netfabric reset` "
                        f"(default {DEFAULT_DATA_DIR})")
    p.set_defaults(func=_cmd_install)
