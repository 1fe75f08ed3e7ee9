"""Run a DNS server on its own, driven by JSON lines on stdin (tests, benchmarks, demos).

Started inside a host netns (``ip netns exec <host> python -m netfabric.dns.runner``) it
behaves as the agent's embedded DNS would there: sandbox sockets via setns helper threads,
forwarding from the host netns. Each stdin line is one command, each stdout line its reply::

    {"op": "add_sandbox", "netns": "nf1234ab-s1", "networks": ["front"]}
    {"op": "set_endpoint", "network": "front", "name": "web1", "aliases": ["www"],
     "ipv4": "10.0.1.2", "ipv6": null}
    -> {"ok": true, "result": null}  or  {"ok": false, "error": "NotFound: ..."}

Ops: add_sandbox, remove_sandbox, update_sandbox_networks, set_endpoint, remove_endpoint,
set_service, remove_service, stats. End of input removes every sandbox and exits.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import signal
import sys
import threading
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from netfabric.dns.forwarder import DEFAULT_FORWARD_TIMEOUT, parse_upstream
from netfabric.dns.records import Records, ServiceMode
from netfabric.dns.resolver import ResolverConfig
from netfabric.dns.server import DnsServer, ServerConfig, ServingMode
from netfabric.errors import InvalidArgument, NetfabricError

__all__ = ["main"]

Handler = Callable[[DnsServer, dict[str, Any]], Awaitable[object]]


async def _add_sandbox(s: DnsServer, c: dict[str, Any]) -> None:
    await s.add_sandbox(c["netns"], c.get("networks", []))


async def _remove_sandbox(s: DnsServer, c: dict[str, Any]) -> None:
    await s.remove_sandbox(c["netns"])


async def _update(s: DnsServer, c: dict[str, Any]) -> None:
    s.update_sandbox_networks(c["netns"], c.get("networks", []))


async def _set_endpoint(s: DnsServer, c: dict[str, Any]) -> None:
    s.records.set_endpoint(c["network"], c["name"], aliases=c.get("aliases", ()),
                           ipv4=c.get("ipv4"), ipv6=c.get("ipv6"))


async def _remove_endpoint(s: DnsServer, c: dict[str, Any]) -> None:
    s.records.remove_endpoint(c["network"], c["name"])


async def _set_service(s: DnsServer, c: dict[str, Any]) -> None:
    s.records.set_service(c["network"], c["name"], mode=ServiceMode(c.get("mode", "vip")),
                          vip=c.get("vip"), tasks=c.get("tasks", ()),
                          aliases=c.get("aliases", ()))


async def _remove_service(s: DnsServer, c: dict[str, Any]) -> None:
    s.records.remove_service(c["network"], c["name"])


async def _stats(s: DnsServer, c: dict[str, Any]) -> dict[str, dict[str, int]]:
    return s.counters()


OPS: dict[str, Handler] = {
    "add_sandbox": _add_sandbox,
    "remove_sandbox": _remove_sandbox,
    "update_sandbox_networks": _update,
    "set_endpoint": _set_endpoint,
    "remove_endpoint": _remove_endpoint,
    "set_service": _set_service,
    "remove_service": _remove_service,
    "stats": _stats,
}


async def handle_line(server: DnsServer, line: str) -> dict[str, object]:
    """One command line to one reply; every failure becomes ``{"ok": false}``."""
    try:
        cmd = json.loads(line)
        if not isinstance(cmd, dict):
            raise InvalidArgument("a command is a JSON object")
        op = OPS.get(cmd.get("op", ""))
        if op is None:
            raise InvalidArgument(f"unknown op {cmd.get('op')!r}")
        return {"ok": True, "result": await op(server, cmd)}
    except (NetfabricError, ValueError, KeyError, TypeError) as exc:
        return {"ok": False, "error": f"{type(exc).__name__}: {exc}"}


async def _serve(args: argparse.Namespace) -> None:
    upstreams = (tuple(parse_upstream(u) for u in args.upstream)
                 if args.upstream is not None else None)
    server = DnsServer(
        Records(), rng=random.Random(args.seed),
        resolver_config=ResolverConfig(ttl=args.ttl, cache_entries=args.cache_entries),
        config=ServerConfig(upstreams=upstreams, mode=ServingMode(args.mode),
                            forward_timeout=args.forward_timeout))
    loop = asyncio.get_running_loop()
    lines: asyncio.Queue[str] = asyncio.Queue()

    def read_stdin() -> None:  # a daemon thread: never holds up exit
        for line in sys.stdin:
            loop.call_soon_threadsafe(lines.put_nowait, line)
        loop.call_soon_threadsafe(lines.put_nowait, "")

    threading.Thread(target=read_stdin, name="stdin", daemon=True).start()
    loop.add_signal_handler(signal.SIGTERM, lines.put_nowait, "")
    print(json.dumps({"ready": True}), flush=True)
    try:
        while line := await lines.get():
            if line.strip():
                print(json.dumps(await handle_line(server, line)), flush=True)
    finally:
        await server.close()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m netfabric.dns.runner",
                                     description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--upstream", action="append", default=None,
                        help="upstream resolver ip[:port] (repeatable); default: resolv.conf")
    parser.add_argument("--no-upstream", dest="upstream", action="store_const", const=[],
                        help="forward nothing (every unknown name gets SERVFAIL)")
    parser.add_argument("--ttl", type=int, default=ResolverConfig().ttl)
    parser.add_argument("--mode", choices=[m.value for m in ServingMode],
                        default=ServingMode.THREAD.value)
    parser.add_argument("--forward-timeout", type=float, default=DEFAULT_FORWARD_TIMEOUT)
    parser.add_argument("--cache-entries", type=int, default=ResolverConfig().cache_entries,
                        help="reply cache bound per network set (0: no cache)")
    parser.add_argument("--seed", type=int, default=None)
    args = parser.parse_args(argv)
    try:
        asyncio.run(_serve(args))
    except NetfabricError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
