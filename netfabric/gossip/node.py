"""A standalone gossip node, driven by JSON lines on stdin (tests, demos, debugging).

    python -m netfabric.gossip.node --bind 198.51.100.1 --seeds 198.51.100.2:7946 \\
        --secret s3cret --network net1

It prints ``{"ready": ...}`` once bound, then answers one JSON line per command line:
``{"op": "members"}``, ``{"op": "entries", "table": T, "network": N}``,
``{"op": "set", "table": T, "network": N, "key": K, "value": V}``,
``{"op": "delete", ...}``, ``{"op": "join", "network": N}``,
``{"op": "leave_network", "network": N}``, ``{"op": "counters"}``, ``{"op": "leave"}``.
End of input stops the node.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import Any

from netfabric.errors import InvalidArgument, NetfabricError
from netfabric.gossip.config import GossipConfig
from netfabric.gossip.messages import Addr
from netfabric.gossip.runtime import GossipNode

__all__ = ["main"]

_PROFILES = {"lan": GossipConfig.lan, "local": GossipConfig.local, "wan": GossipConfig.wan}


def _addr(text: str) -> Addr:
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit():
        raise InvalidArgument(f"expected HOST:PORT, got {text!r}")
    return (host, int(port))


def _answer(node: GossipNode, cmd: dict[str, Any]) -> dict[str, Any]:
    op = cmd.get("op")
    if op == "members":
        return {"members": [{"node": m.node, "addr": list(m.addr), "state": m.state.name,
                             "incarnation": m.incarnation} for m in node.members()]}
    if op == "entries":
        got = node.entries(cmd["table"], cmd["network"])
        return {"entries": {k: v.decode(errors="replace") for k, v in got.items()}}
    if op == "set":
        node.set_entry(cmd["table"], cmd["network"], cmd["key"], cmd["value"].encode())
    elif op == "delete":
        node.delete_entry(cmd["table"], cmd["network"], cmd["key"])
    elif op == "join":
        node.join_network(cmd["network"])
    elif op == "leave_network":
        node.leave_network(cmd["network"])
    elif op == "counters":
        return {"counters": node.counters.as_dict()}
    else:
        raise InvalidArgument(f"unknown op {op!r}")
    return {"ok": True}


async def _serve(args: argparse.Namespace) -> int:
    node = await GossipNode.start(args.bind, args.port, [_addr(s) for s in args.seeds],
                                  secret=args.secret, node_id=args.node_id,
                                  config=_PROFILES[args.profile]())
    try:
        for network in args.network:
            node.join_network(network)
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader()
        transport, _ = await loop.connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
        try:
            _print({"ready": True, "node": node.node_id, "addr": list(node.addr)})
            while line := await reader.readline():
                try:
                    cmd = json.loads(line)
                    if cmd.get("op") == "leave":
                        await node.leave()
                        _print({"ok": True})
                        break
                    _print(_answer(node, cmd))
                except (NetfabricError, KeyError, ValueError, AttributeError) as exc:
                    _print({"error": f"{type(exc).__name__}: {exc}"})
        finally:
            transport.close()
    finally:
        await node.stop()
    return 0


def _print(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m netfabric.gossip.node", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bind", required=True, help="address to bind UDP and TCP on")
    p.add_argument("--port", type=int, default=7946)
    p.add_argument("--seeds", default="", help="comma-separated HOST:PORT to join through")
    p.add_argument("--secret", required=True, help="cluster secret (keys derive from it)")
    p.add_argument("--node-id", default=None)
    p.add_argument("--profile", choices=sorted(_PROFILES), default="lan")
    p.add_argument("--network", action="append", default=[], help="network to join")
    args = p.parse_args(argv)
    args.seeds = [s for s in args.seeds.split(",") if s]
    try:
        return asyncio.run(_serve(args))
    except NetfabricError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
