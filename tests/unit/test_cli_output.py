"""CLI output formats, filters, exit codes and error handling, without an agent.

The expected strings are Docker's: the column layout of its tabwriter (min width 10,
padding 3), its field names and headers per listing, its JSON keys."""

from __future__ import annotations

import io
import json
import os
import re
import time
from pathlib import Path
from typing import Any

import pytest

from netfabric.api.types import (
    Availability,
    ContainerInfo,
    EndpointInfo,
    NetworkInfo,
    NodeInfo,
    NodeStatus,
    Role,
)
from netfabric.cli import commands
from netfabric.cli.filters import NETWORK_KEYS, parse_filters, select
from netfabric.cli.main import main
from netfabric.cli.output import (
    CONTAINERS,
    NETWORKS,
    NODES,
    docker_container,
    docker_network,
    format_inspect,
    format_list,
    human_duration,
    rfc3339,
    tabwriter,
)
from netfabric.errors import InvalidArgument

NETS = [NetworkInfo(id="92ecd0048124" + "a" * 20, name="bridge", driver="bridge",
                    scope="local", created=1795787240.80),
        NetworkInfo(id="c0995f24f604" + "b" * 20, name="my-overlay-net", driver="overlay",
                    scope="swarm", subnets=("10.0.9.0/24",), gateways=("10.0.9.1",),
                    attachable=True, created=1795787241.5)]
NODE_LIST = [
    NodeInfo(id="uqqgsvc1ykkgaaaaaaaaaaaaa", hostname="node1", address="198.51.100.1",
             role=Role.MANAGER, status=NodeStatus.READY, availability=Availability.ACTIVE,
             leader=True, is_self=True),
    NodeInfo(id="g4demzyr7sd2bbbbbbbbbbbbb", hostname="node2", address="198.51.100.2",
             role=Role.WORKER, status=NodeStatus.DOWN, availability=Availability.DRAIN)]


def _con(name: str = "alpine_host", created: float | None = None) -> ContainerInfo:
    ep = EndpointInfo(network="mybridge", network_id="n" * 32, endpoint_id="e" * 32,
                      container=name, node="node1", mac="02:42:ac:14:00:02", ipv4="172.20.0.2",
                      gateway="172.20.0.1", prefixlen=16)
    return ContainerInfo(id="c" * 64, name=name, netns="nfx", netns_path="/run/netns/nfx",
                         node="node1", networks=(ep,),
                         created=time.time() - 120 if created is None else created)


def test_tabwriter_is_dockers() -> None:
    # min width 10, padding 3, the last cell of a line unpadded
    assert tabwriter("A\tLONGER\tX\nxxxxxxxxxxxx\t1\t2").splitlines() == [
        "A              LONGER    X", "xxxxxxxxxxxx   1         2"]


def test_network_ls_default_table_is_dockers() -> None:
    assert format_list(NETWORKS, NETS, None).splitlines() == [
        "NETWORK ID     NAME             DRIVER    SCOPE",
        "92ecd0048124   bridge           bridge    local",
        "c0995f24f604   my-overlay-net   overlay   swarm"]


def test_network_ls_templates_json_quiet_no_trunc() -> None:
    assert format_list(NETWORKS, NETS, "{{.Name}}") == "bridge\nmy-overlay-net"
    assert format_list(NETWORKS, NETS, "{{.Name}}\\t{{.Scope}}") == \
        "bridge\tlocal\nmy-overlay-net\tswarm"
    assert format_list(NETWORKS, NETS, "table {{.Name}}\\t{{upper .Driver}}").splitlines() == [
        "NAME             DRIVER", "bridge           BRIDGE", "my-overlay-net   OVERLAY"]
    rows = [json.loads(line) for line in format_list(NETWORKS, NETS, "json").splitlines()]
    assert rows[1] == {"CreatedAt": "2026-11-27 13:47:21.5 +0000 UTC", "Driver": "overlay",
                       "ID": "c0995f24f604", "IPv4": "true", "IPv6": "false", "Internal": "false",
                       "Labels": "", "Name": "my-overlay-net", "Scope": "swarm"}
    assert format_list(NETWORKS, NETS, "json", quiet=True) == "92ecd0048124\nc0995f24f604"
    assert format_list(NETWORKS, NETS, None, quiet=True, trunc=False).splitlines() == \
        [n.id for n in NETS]
    with pytest.raises(InvalidArgument, match="can't evaluate field Nope"):
        format_list(NETWORKS, NETS, "{{.Nope}}")


def test_ps_fields_and_ids() -> None:
    con = _con()
    out = format_list(CONTAINERS, [con], None).splitlines()
    assert re.split(r"\s{2,}", out[0]) == ["CONTAINER ID", "NAMES", "NETWORKS", "IP ADDRESSES",
                                   "CREATED"]
    assert out[1].startswith("cccccccccccc   alpine_host   mybridge   172.20.0.2")
    assert out[1].endswith("2 minutes ago")
    assert format_list(CONTAINERS, [con], "{{.Names}} {{.Networks}} {{.State}} {{.Status}}") \
        == "alpine_host mybridge running Up 2 minutes"
    assert format_list(CONTAINERS, [con], "", quiet=True) == "c" * 12
    keys = set(json.loads(format_list(CONTAINERS, [con], "json")))
    assert {"ID", "Names", "Image", "Command", "CreatedAt", "RunningFor", "Ports", "State",
            "Status", "Size", "Labels", "Mounts", "Networks", "LocalVolumes"} <= keys


def test_node_ls_marks_self_and_leader() -> None:
    lines = format_list(NODES, NODE_LIST, None).splitlines()
    assert lines[0].split() == ["ID", "HOSTNAME", "STATUS", "AVAILABILITY", "MANAGER", "STATUS"]
    assert lines[1].split() == ["uqqgsvc1ykkgaaaaaaaaaaaaa", "*", "node1", "Ready", "Active",
                                "Leader"]
    assert lines[2].split() == ["g4demzyr7sd2bbbbbbbbbbbbb", "node2", "Down", "Drain"]
    assert json.loads(format_list(NODES, NODE_LIST[:1], "json"))["Self"] is True
    assert format_list(NODES, NODE_LIST, "{{if .Self}}{{.Hostname}}{{end}}") == "node1\n"


def test_human_duration_is_go_units() -> None:
    assert [human_duration(s) for s in (0.5, 1, 59, 60, 119, 120, 3599, 3600, 5400, 7200,
                                        86400 * 3)] == [
        "Less than a second", "1 second", "59 seconds", "About a minute", "About a minute",
        "2 minutes", "59 minutes", "About an hour", "2 hours", "2 hours", "3 days"]


def test_inspect_objects_have_dockers_shape() -> None:
    obj = docker_container(_con())
    assert format_inspect([obj], "{{.NetworkSettings.Networks}}").startswith(
        "map[mybridge:{")
    assert format_inspect([obj], "{{range .NetworkSettings.Networks}}{{.IPAddress}}/"
                                 "{{.IPPrefixLen}}{{end}}") == "172.20.0.2/16"
    assert format_inspect([obj], "{{.Name}} {{.State.Status}}") == "/alpine_host running"
    net = docker_network(NETS[1])
    assert format_inspect([net], "{{range .IPAM.Config}}{{.Subnet}} {{.Gateway}}{{end}}") == \
        "10.0.9.0/24 10.0.9.1"
    assert net["Created"] == rfc3339(1795787241.5) == "2026-11-27T13:47:21.5Z"
    lines = format_inspect([net, obj], "json").splitlines()
    assert [json.loads(line)["Created"] for line in lines] == [net["Created"], obj["Created"]]
    assert json.loads(format_inspect([net], None))[0]["Name"] == "my-overlay-net"
    # structs print and encode as Go's: fields in order, empty omitempty ones left out
    assert format_inspect([net], "{{.IPAM}}|{{.ConfigFrom}}|{{.Options}}") == \
        "{default map[] [{10.0.9.0/24  10.0.9.1 <nil>}]}|{}|map[]"
    assert format_inspect([net], "{{json .IPAM.Config}}") == \
        '[{"Subnet":"10.0.9.0/24","Gateway":"10.0.9.1"}]'
    assert format_inspect([net], "{{.Created}}") == "2026-11-27 13:47:21.5 +0000 UTC"
    assert list(json.loads(format_inspect([net], "json")))[:3] == ["Name", "Id", "Created"]


def test_filters() -> None:
    assert [n.name for n in select(NETS, parse_filters(["driver=overlay"], NETWORK_KEYS),
                                   NETWORK_KEYS)] == ["my-overlay-net"]
    assert [n.name for n in select(NETS, parse_filters(["name=overlay", "name=bridge"],
                                                       NETWORK_KEYS), NETWORK_KEYS)] == \
        ["bridge", "my-overlay-net"]
    assert select(NETS, parse_filters(["scope=swarm", "type=builtin"], NETWORK_KEYS),
                  NETWORK_KEYS) == []
    with pytest.raises(InvalidArgument, match="invalid filter 'color'"):
        parse_filters(["color=red"], NETWORK_KEYS)
    with pytest.raises(InvalidArgument, match="expected name=value"):
        parse_filters(["driver"], NETWORK_KEYS)


class _FakeClient:
    """Hands the CLI fixed objects: for what the CLI itself does with them (formats, exit
    codes, pipes). The same verbs run against real agents in tests/cluster and tests/docker."""

    def __init__(self, host: str | None = None) -> None:
        pass

    def networks(self) -> list[NetworkInfo]:
        return [NetworkInfo(id=f"{i:032x}", name=f"net{i}", driver="bridge", scope="local")
                for i in range(5000)]

    def inspect_network(self, name: str) -> NetworkInfo:
        from netfabric.errors import NotFound
        if name != "net1":
            raise NotFound(f"network {name} not found")
        return self.networks()[1]

    def inspect_container(self, name: str) -> ContainerInfo:
        from netfabric.errors import NotFound
        raise NotFound(f"No such container: {name}")

    def nodes(self) -> list[NodeInfo]:
        from netfabric.errors import NotInCluster
        raise NotInCluster("This node is not part of a swarm")


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(commands, "Client", _FakeClient)


def test_closed_pipe_ends_quietly(fake: None, monkeypatch: pytest.MonkeyPatch,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    """issue 19 item 5: `network ls --format json | head -3` is no internal error."""
    read_fd, write_fd = os.pipe()
    os.close(read_fd)
    saved = os.dup(1)
    try:
        os.dup2(write_fd, 1)
        monkeypatch.setattr("sys.stdout", io.TextIOWrapper(io.FileIO(1, "w", closefd=False)))
        rc = main(["network", "ls", "--format", "json"])
    finally:
        os.dup2(saved, 1)
        os.close(saved)
        os.close(write_fd)
    assert rc == 141
    assert capsys.readouterr().err == ""


def test_inspect_prints_what_it_finds_and_exits_1(fake: None,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["inspect", "-f", "{{.Name}}", "nope", "net1"]) == 1
    out, err = capsys.readouterr()
    assert out == "net1\n" and err == "Error: No such object: nope\n"
    assert main(["network", "inspect", "nope"]) == 1
    assert capsys.readouterr() == ("[]\n", "Error: No such network: nope\n")
    assert main(["inspect", "--type", "container", "net1"]) == 1
    assert capsys.readouterr().err == "Error: No such container: net1\n"


def test_unreachable_agent_is_one_line_exit_1(tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["-H", f"unix://{tmp_path}/x.sock", "network", "ls"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("Error: cannot reach the netfabric agent")


@pytest.mark.parametrize(("argv", "code", "first_line"), [
    (["network", "ls", "--bogus"], 125, "unknown flag: --bogus"),
    (["network", "create"], 1, "netfabric: 'netfabric network create' requires NAME"),
    (["run", "-d", "--ip"], 125, "argument --ip: expected one argument"),
    (["network", "create", "-o", "mtu", "x"], 1, "Error: invalid option 'mtu'"),
    (["run", "--name", "web1"], 125, "Error: sandboxes have no process"),
    (["network", "create", "--subnet", "10.61.0.0/24", "--subnet", "10.62.0.0/24", "multi"],
     1, "Error: several subnets refused (10.61.0.0/24, 10.62.0.0/24)"),
    (["network", "create", "--subnet", "fd00::/64", "v6b"], 1, "Error: IPv6 subnet fd00::/64"),
    (["run", "-d", "--network", "a", "--network", "b", "--ip", "10.0.0.5"], 125,
     "Error: --ip applies to one network"),
    (["network", "ls", "--filter", "color=red"], 1, "Error: invalid filter 'color'"),
    (["-H", "tcp://1.2.3.4:1", "network", "ls"], 1, "Error: unsupported host"),
])
def test_exit_codes_and_one_line_errors(argv: list[str], code: int, first_line: str,
                                        tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    if argv[0] != "-H":
        argv = ["-H", f"unix://{tmp_path}/x.sock", *argv]
    assert main(argv) == code
    err = capsys.readouterr().err
    assert err.startswith(first_line) and "Traceback" not in err, err
    if not first_line.startswith("Error"):  # Docker's usage errors
        assert err.splitlines()[2].startswith("Usage:  netfabric ")
        assert err.endswith("--help' for more information\n")


@pytest.mark.parametrize("argv", [[], ["network"], ["node"], ["container"], ["lab"]])
def test_a_verb_alone_prints_its_help(argv: list[str],
                                      capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 0
    assert capsys.readouterr().out.startswith("usage: netfabric")


def test_version_flag(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0 and capsys.readouterr().out.startswith("netfabric version ")


def _verbs(parser: Any, path: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], Any]]:
    import argparse
    out = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                out.append(((*path, name), sub))
                out.extend(_verbs(sub, (*path, name)))
    return out


def test_every_flag_is_described_and_every_verb_has_examples() -> None:
    import argparse

    from netfabric.cli.main import build_parser
    for path, sub in _verbs(build_parser()):
        for action in sub._actions:
            if isinstance(action, argparse._SubParsersAction):
                continue
            assert action.help, f"netfabric {' '.join(path)}: {action.dest}"
        if not any(isinstance(a, argparse._SubParsersAction) for a in sub._actions):
            assert sub.epilog and "Examples:" in sub.epilog, f"netfabric {' '.join(path)}"
    inspect = dict(_verbs(build_parser()))[("network", "inspect")]
    assert "IPAM.Config" in inspect.epilog


def test_help_teaches(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    for word in ("lab walkthrough", "network", "container", "join-token", "NETFABRIC_HOST"):
        assert word in out
