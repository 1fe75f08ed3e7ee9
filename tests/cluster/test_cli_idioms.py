"""Docker's idioms against real agents on a 2-host lab (issue 20 and issue 19 item 8): labels
and filters, --hostname, several --network, generated names, --ip on the default bridge,
errors that name things by name, `leave --force` on a worker."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator

import pytest

from netfabric import Client
from netfabric.errors import InvalidArgument
from netfabric.lab.cluster import Lab
from netfabric.lab.topology import wait_for

pytestmark = [pytest.mark.timeout(240)]


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    with Lab.up(2, state_dir=str(tmp_path_factory.mktemp("lab"))) as lab:
        token = Client(lab.agent("node1").url).init(lab.agent("node1").address).token
        Client(lab.agent("node2").url).join(token, lab.agent("node1").address)
        yield lab


def nf(lab: Lab, host: str, *argv: str, code: int = 0) -> str:
    proc = lab.run(host, ["netfabric", *argv])
    assert proc.returncode == code, (argv, proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr
    return proc.stdout if code == 0 else proc.stderr


def test_labels_filters_hostname_and_several_networks(lab: Lab) -> None:
    nf(lab, "node1", "network", "create", "--label", "env=test", "--label", "team",
       "--subnet", "10.71.0.0/24", "lbl1")
    nf(lab, "node1", "network", "create", "--subnet", "10.72.0.0/24", "lbl2")
    assert nf(lab, "node1", "network", "ls", "--filter", "label=env", "--format",
              '{{.Name}} {{.Labels}} {{.Label "env"}}') == "lbl1 env=test,team= test\n"
    assert nf(lab, "node1", "network", "ls", "--filter", "label=env=prod", "-q") == ""
    assert nf(lab, "node1", "network", "inspect", "-f", "{{json .Labels}}", "lbl1") == \
        '{"env":"test","team":""}\n'
    # issue 19 item 8: every --network is honoured, in order
    nf(lab, "node1", "run", "-d", "--network", "lbl1", "--network", "lbl2", "--name", "two",
       "-h", "myhost", "-l", "app=web", "--network-alias", "tw")
    assert nf(lab, "node1", "ps", "--filter", "label=app=web", "--format",
              '{{.Names}} {{.Networks}} {{.IPAddresses}} {{.Label "app"}}') == \
        "two lbl1,lbl2 10.71.0.2,10.72.0.2 web\n"
    assert nf(lab, "node1", "inspect", "-f", "{{.Config.Hostname}} {{json .Config.Labels}} "
              "{{range .NetworkSettings.Networks}}{{json .Aliases}}{{end}}", "two") == \
        'myhost {"app":"web"} ["tw"]["tw"]\n'
    assert nf(lab, "node1", "exec", "two", "hostname") == "myhost\n"
    # exec: 127 for a program not found, 126 for one that cannot run (Docker's codes)
    assert "executable file not found" in nf(lab, "node1", "exec", "two", "nosuchprog",
                                             code=127)
    assert "permission denied" in nf(lab, "node1", "exec", "two", "/etc/passwd", code=126)
    assert nf(lab, "node1", "exec", "two", "getent", "hosts", "tw").split()[0] in \
        ("10.71.0.2", "10.72.0.2")
    # a network the second --network names does not exist: nothing is left half-made
    err = nf(lab, "node1", "run", "-d", "--network", "lbl1", "--network", "nope", "--name",
             "half", code=125)
    assert "nope" in err
    assert "half" not in nf(lab, "node1", "ps", "--format", "{{.Names}}").split()
    # labels and hostname survive an agent restart
    lab.restart_agent(lab.agent("node1"))
    assert nf(lab, "node1", "network", "ls", "--filter", "label=team", "--format",
              "{{.Name}}") == "lbl1\n"
    assert nf(lab, "node1", "inspect", "-f", "{{.Config.Hostname}}", "two") == "myhost\n"
    nf(lab, "node1", "rm", "two")


def test_generated_name_and_short_ids(lab: Lab) -> None:
    full = nf(lab, "node1", "run", "-d").strip()
    name = nf(lab, "node1", "ps", "--filter", f"id={full[:12]}", "--format", "{{.Names}}")
    assert re.fullmatch(r"[a-z]+_[a-z]+\n", name), name
    assert nf(lab, "node1", "ps", "-q", "--filter", f"name={name.strip()}") == full[:12] + "\n"
    assert nf(lab, "node1", "ps", "-q", "--no-trunc", "--filter",
              f"name={name.strip()}") == full + "\n"
    nf(lab, "node1", "rm", name.strip())
    # inspect finds nodes too (on a manager), as Docker's does
    assert nf(lab, "node1", "inspect", "-f", "{{.Description.Hostname}} {{.Spec.Role}}",
              "node2") == "node2 worker\n"
    assert nf(lab, "node1", "inspect", "--type", "node", "-f", "{{.ManagerStatus.Leader}}",
              "self") == "true\n"
    assert "No such object: node9" in nf(lab, "node2", "inspect", "node9", code=1)


def test_addresses_as_docker_25_decides_them(lab: Lab) -> None:
    err = nf(lab, "node1", "run", "-d", "--ip", "172.17.0.50", "--name", "ipb", code=125)
    assert err.strip() == \
        "Error: User specified IP address is supported on user defined networks only"
    # Docker 25+ (moby#47120): --ip inside the subnet but outside --ip-range is accepted,
    # on the manager's own bridge and on a worker's overlay (whose addresses come in blocks)
    nf(lab, "node1", "network", "create", "--subnet", "10.76.0.0/24", "--ip-range",
       "10.76.0.128/25", "rng")
    nf(lab, "node1", "run", "-d", "--network", "rng", "--ip", "10.76.0.20", "--name", "inr")
    nf(lab, "node1", "network", "create", "-d", "overlay", "--attachable", "--subnet",
       "10.77.0.0/24", "--ip-range", "10.77.0.128/25", "ovr")
    nf(lab, "node2", "run", "-d", "--network", "ovr", "--ip", "10.77.0.20", "--name", "inw")
    nf(lab, "node2", "run", "-d", "--network", "ovr", "--name", "dyn")
    assert nf(lab, "node2", "ps", "--filter", "network=ovr", "--format",
              "{{.Names}} {{.IPAddresses}}").splitlines() == ["dyn 10.77.0.128",
                                                              "inw 10.77.0.20"]
    assert "already allocated" in nf(lab, "node1", "run", "-d", "--network", "ovr", "--ip",
                                     "10.77.0.20", "--name", "dup", code=125)
    nf(lab, "node2", "rm", "inw", "dyn")
    nf(lab, "node1", "rm", "inr")
    nf(lab, "node1", "network", "rm", "rng", "ovr")
    nf(lab, "node1", "network", "create", "--subnet", "10.73.0.0/24", "ovl-a")
    err = nf(lab, "node1", "network", "create", "--subnet", "10.73.0.0/25", "ovl-b", code=1)
    ident = nf(lab, "node1", "network", "inspect", "-f", "{{.Id}}", "ovl-a").strip()
    assert "ovl-a" in err and ident not in err, err
    # issue 19 item 8: nothing dropped in silence
    err = nf(lab, "node1", "network", "create", "--subnet", "10.74.0.0/24", "--subnet",
             "10.75.0.0/24", "multi", code=1)
    assert err.startswith("Error: several subnets refused (10.74.0.0/24, 10.75.0.0/24)")
    err = nf(lab, "node1", "network", "create", "--subnet", "fd00::/64", "v6b", code=1)
    assert err.startswith("Error: IPv6 subnet fd00::/64 refused")
    with pytest.raises(InvalidArgument, match="IPv6 subnet fd00::/64 refused"):
        Client(lab.agent("node1").url).create_network("v6api", subnet="fd00::/64")
    names = nf(lab, "node1", "network", "ls", "--format", "{{.Name}}").split()
    assert "multi" not in names and "v6b" not in names and "v6api" not in names


def test_overlay_labels_on_a_worker_and_leave_force(lab: Lab) -> None:
    nf(lab, "node1", "network", "create", "-d", "overlay", "--attachable", "--label",
       "tier=back", "ovl")
    nf(lab, "node2", "run", "-d", "--network", "ovl", "--network", "bridge", "--name", "w1")
    assert nf(lab, "node2", "network", "inspect", "-f", "{{.Labels}}", "ovl") == \
        "map[tier:back]\n"
    out = nf(lab, "node2", "leave", "--force")
    assert out.splitlines() == [
        "Node left the swarm.",
        "Disconnected from cluster networks: w1 (ovl) (the containers stay, with their "
        "local networks)"]
    assert nf(lab, "node2", "ps", "--format", "{{.Names}}:{{.Networks}}") == "w1:bridge\n"
    links = nf(lab, "node2", "exec", "w1", "ip", "-o", "-4", "addr", "show")
    assert "10.0." not in links and "172.17." in links, links
    assert wait_for(lambda: json.loads(nf(lab, "node1", "network", "inspect", "-f",
                                          "{{json .Containers}}", "ovl")) == {},
                    timeout=20), "node1 still lists w1's endpoint on ovl"
    # a manager that does not answer is named by address and reason, never a Python tuple
    token = nf(lab, "node1", "join-token", "-q", "worker").strip()
    err = nf(lab, "node2", "join", "--token", token, "198.51.100.1:2399", code=1)
    assert err.strip() == "Error: cannot reach a manager at 198.51.100.1:2399: Connection " \
        "refused", err
