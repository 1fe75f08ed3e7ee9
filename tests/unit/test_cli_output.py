"""CLI output formats and error handling, without an agent."""

from __future__ import annotations

from pathlib import Path

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
from netfabric.cli.main import main
from netfabric.cli.output import (
    docker_container,
    network_rows,
    node_rows,
    render_template,
    table,
)
from netfabric.errors import InvalidArgument


def test_table_aligns_like_docker() -> None:
    out = table(["A", "LONGER"], [["x", "1"], ["yyyy", "22"]])
    assert out.splitlines() == ["A      LONGER", "x      1", "yyyy   22"]


def test_network_ls_columns_and_short_ids() -> None:
    nets = [NetworkInfo(id="edf9dc771fc4aaaaaaaa", name="bridge", driver="bridge",
                        scope="local")]
    lines = network_rows(nets).splitlines()
    assert lines[0].split() == ["NETWORK", "ID", "NAME", "DRIVER", "SCOPE"]
    assert lines[1].split() == ["edf9dc771fc4", "bridge", "bridge", "local"]


def test_node_ls_marks_self_and_leader() -> None:
    nodes = [NodeInfo(id="uqqgsvc1ykkg", hostname="node1", address="", role=Role.MANAGER,
                      status=NodeStatus.READY, availability=Availability.ACTIVE, leader=True,
                      is_self=True),
             NodeInfo(id="g4demzyr7sd2", hostname="node2", address="", role=Role.WORKER,
                      status=NodeStatus.DOWN, availability=Availability.DRAIN)]
    lines = node_rows(nodes).splitlines()
    assert lines[0].split() == ["ID", "HOSTNAME", "STATUS", "AVAILABILITY", "MANAGER", "STATUS"]
    assert lines[1].split() == ["uqqgsvc1ykkg", "*", "node1", "Ready", "Active", "Leader"]
    assert lines[2].split() == ["g4demzyr7sd2", "node2", "Down", "Drain"]


def test_inspect_template_like_the_lab() -> None:
    ep = EndpointInfo(network="mybridge", network_id="n", endpoint_id="e", container="c",
                      node="node1", mac="02:42:ac:14:00:02", ipv4="172.20.0.2")
    con = ContainerInfo(id="c" * 64, name="alpine_host", netns="nfx", netns_path="/run/netns/nfx",
                        node="node1", networks=(ep,))
    obj = docker_container(con)
    assert render_template("{{.NetworkSettings.Networks}}", obj).startswith("map[mybridge:map[")
    assert render_template("{{.Name}}", obj) == "/alpine_host"
    assert render_template("{{json .NetworkSettings.Networks.mybridge.IPAddress}}", obj) == \
        '"172.20.0.2"'
    with pytest.raises(InvalidArgument, match="can't evaluate field Nope"):
        render_template("{{.Nope}}", obj)
    with pytest.raises(InvalidArgument, match="unsupported action"):
        render_template("{{range .Name}}", obj)


def test_unreachable_agent_is_one_line_exit_1(tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["-H", f"unix://{tmp_path}/x.sock", "network", "ls"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("Error: cannot reach the netfabric agent")


@pytest.mark.parametrize("argv", [
    ["network", "create", "-o", "mtu", "x"],
    ["run", "--name", "web1"],
    ["-H", "tcp://1.2.3.4:1", "network", "ls"],
])
def test_bad_input_is_exit_2_without_traceback(argv: list[str], tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    if argv[0] != "-H":
        argv = ["-H", f"unix://{tmp_path}/x.sock", *argv]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("Error:") and "Traceback" not in err


def test_help_teaches(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    for word in ("lab walkthrough", "network", "container", "join-token", "NETFABRIC_HOST"):
        assert word in out
