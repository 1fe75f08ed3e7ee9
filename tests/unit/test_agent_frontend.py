"""The agent's one public interface: the Docker plugin's fabric over an agent on fakes,
and no front end reaching past :mod:`netfabric.agent.frontend`."""

import ast
import asyncio
import logging
from pathlib import Path

import pytest

import netfabric
from netfabric.agent.fakes import FakeLayers
from netfabric.model import Driver
from netfabric.plugin.docker.agent_fabric import AgentFabric, docker_ifname

FRONT_ENDS = ("plugin", "cli", "api", "cni", "services")
ALLOWED = {"netfabric.agent.frontend", "netfabric.agent.ports", "netfabric.agent.daemon",
           "netfabric.agent.flags",   # the daemon's flags and defaults, light for the CLI
           "netfabric.agent.rpc"}


def test_front_ends_import_only_the_public_agent_interface() -> None:
    root = Path(netfabric.__file__).parent
    bad = []
    for part in FRONT_ENDS:
        for path in (root / part).rglob("*.py") if (root / part).exists() else ():
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.ImportFrom) and node.module and \
                        node.module.startswith("netfabric.agent") and \
                        node.module not in ALLOWED | {"netfabric.agent"}:
                    bad.append(f"{path.relative_to(root)}: {node.module}")
                if isinstance(node, ast.Attribute) and node.attr.startswith("_") and \
                        not node.attr.startswith("__") and \
                        isinstance(node.value, ast.Attribute) and \
                        node.value.attr in ("agent", "core"):
                    bad.append(f"{path.relative_to(root)}:{node.lineno}: .{node.attr}")
    assert bad == []


def test_a_docker_endpoint_goes_through_the_agent(tmp_path: Path) -> None:
    layers = FakeLayers()
    core = layers.core(str(tmp_path))
    fabric = AgentFabric(core)
    eid = "e" * 64

    async def go() -> None:
        await core.start()
        net = await fabric.ensure_network("dnet", driver=Driver.BRIDGE, subnet="10.4.0.0/24",
                                          gateway=None, ip_range=None, options={})
        proposed = await fabric.propose_subnet(exclude=frozenset({"10.0.0.0/24"}))
        assert proposed == "10.0.1.0/24"
        addr = await fabric.allocate_address("dnet", address=None)
        att = await fabric.attach("dnet", endpoint_id=eid, address=addr, mac="02:00:00:00:00:09")
        assert (att.ifname, att.gateway) == (docker_ifname(eid), net.gateway)
        assert layers.kernel.attached[eid] == ("/run/netns/nfst-h1", docker_ifname(eid))
        net_id = next(n.id for n in await core.networks() if n.name == "dnet")
        assert layers.names.records[(net_id, eid[:12])] == (addr, eid)
        assert layers.names.served["nfst-h1"] == frozenset({net_id})
        await fabric.set_names("dnet", endpoint_id=eid, names=("web", "www"))
        assert set(layers.names.records) == {(net_id, "web")}
        assert layers.names.aliases[(net_id, "web")] == ("www",)
        await fabric.leave("dnet", endpoint_id=eid)
        assert layers.names.records == {}
        await fabric.detach("dnet", endpoint_id=eid)
        await fabric.release_address("dnet", addr)
        assert layers.kernel.attached == {} and "nfst-h1" not in layers.names.served
        await fabric.release_network("dnet")
        assert [n.name for n in await core.networks()] == ["bridge"]
        await fabric.close()
        await core.close()
    asyncio.run(go())
    assert layers.kernel.closed and layers.book.closed and layers.mesh.closed


def test_an_agent_over_fakes_touches_no_real_datapath(tmp_path: Path,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    # Every layer is a fake, the services' datapath too: a run and an rm log no failed
    # attempt at a real netns.
    layers = FakeLayers()
    core = layers.core(str(tmp_path))

    async def go() -> None:
        await core.start()
        await core.run("web")
        await core.remove_container("web")
        await core.close()
    with caplog.at_level(logging.WARNING):
        asyncio.run(go())
    assert [r.getMessage() for r in caplog.records] == []
