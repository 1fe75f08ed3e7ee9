"""Services and backends to one node's load balancers and DNS records; ServiceFabric over a
fake datapath; Docker's --publish syntax."""

from __future__ import annotations

from collections.abc import Iterable

import pytest

from netfabric.errors import InvalidArgument, NotFound
from netfabric.services import (
    Backend,
    EndpointMode,
    LoadBalancer,
    NodeView,
    PortConfig,
    Proto,
    PublishMode,
    Service,
    ServiceFabric,
    Target,
    parse_publish,
    plan_node,
    service_records,
)

APP, INGRESS = "net-app", "net-ingress"


@pytest.mark.parametrize(("text", "want"), [
    ("8080:8080", PortConfig(8080, 8080)),
    ("8080:80/udp", PortConfig(80, 8080, Proto.UDP)),
    ("mode=host,target=1433", PortConfig(1433, 1433, mode=PublishMode.HOST)),
    ("published=9000,target=90,protocol=udp,mode=ingress", PortConfig(90, 9000, Proto.UDP)),
])
def test_publish_syntax(text: str, want: PortConfig) -> None:
    assert parse_publish(text) == want


@pytest.mark.parametrize("text", ["", "80", "x:80", "80:0", "8080:80/sctp", "target=80",
                                  "mode=host", "mode=bridge,target=80", "foo=1,target=2"])
def test_bad_publish_is_an_invalid_argument(text: str) -> None:
    with pytest.raises(InvalidArgument):
        parse_publish(text)


def test_service_validation() -> None:
    with pytest.raises(InvalidArgument):
        Service("web", (APP,))  # VIP mode without a VIP
    with pytest.raises(InvalidArgument):
        Service("db", (APP,), EndpointMode.DNSRR, vips=((APP, "10.0.0.2"),))
    with pytest.raises(InvalidArgument):
        Service("web", (APP,), vips=((APP, "10.0.0.2"),),
                ports=(PortConfig(80, 8080), PortConfig(81, 8080)))
    with pytest.raises(InvalidArgument):
        Service("bad name", ())
    assert str(PortConfig(80, 8080)) == "*:8080->80/tcp"


def web(*ports: PortConfig) -> Service:
    return Service("web", (APP,), vips=((APP, "10.0.0.2"),), ports=ports)


def task(i: int, node: str, *, active: bool = True, service: str = "web") -> Backend:
    return Backend(service, f"t{i}", node, ((APP, f"10.0.0.{10 + i}"),
                                            (INGRESS, f"10.255.0.{10 + i}")), active)


def test_vip_goes_to_local_sandboxes_on_the_network_over_active_backends() -> None:
    view = NodeView("n1", {"sb-client": frozenset({APP}), "sb-other": frozenset({"x"})},
                    host_netns="host", ingress_network=INGRESS)
    plan = plan_node(view, [web()], [task(1, "n1"), task(2, "n2"), task(3, "n2", active=False)])
    (lb,) = plan.tables["sb-client"]
    assert lb == LoadBalancer(f"web@{APP}", None, None,
                              (Target("10.0.0.11"), Target("10.0.0.12")), vips=("10.0.0.2",))
    assert plan.tables["sb-other"] == () and plan.tables["host"] == ()


def test_ingress_is_published_on_every_node_and_host_mode_only_where_a_task_runs() -> None:
    svc = web(PortConfig(80, 8080), PortConfig(1433, 1433, mode=PublishMode.HOST))
    backends = [task(1, "n1"), task(2, "n2")]
    for node, local in (("n1", "10.255.0.11"), ("n2", "10.255.0.12")):
        lbs = plan_node(NodeView(node, {}, "host", INGRESS), [svc], backends).tables["host"]
        ingress, host = lbs
        assert ingress.published and ingress.masquerade and ingress.port == 8080
        assert ingress.targets == (Target("10.255.0.11", 80), Target("10.255.0.12", 80))
        assert host.port == 1433 and host.targets == (Target(local, 1433),)
    lbs = plan_node(NodeView("n3", {}, "host", INGRESS), [svc], backends).tables["host"]
    assert [lb.port for lb in lbs] == [8080]
    # No ingress leg on this node: nothing can be forwarded, nothing is published.
    assert plan_node(NodeView("n3", {}, "host", None), [svc], backends).tables["host"] == ()


def test_a_port_published_twice_goes_to_the_first_service_and_is_reported() -> None:
    a = Service("a", (APP,), vips=((APP, "10.0.0.2"),), ports=(PortConfig(80, 8080),))
    b = Service("b", (APP,), vips=((APP, "10.0.0.3"),), ports=(PortConfig(81, 8080),))
    plan = plan_node(NodeView("n1", {}, None, INGRESS), [b, a], [])
    assert [lb.key for lb in plan.tables[None]] == ["a/tcp/8080"]
    assert plan.conflicts and "taken by a" in plan.conflicts[0]


def test_dns_records_vip_and_dnsrr() -> None:
    db = Service("database", (APP,), EndpointMode.DNSRR)
    recs = service_records([web(), db], [task(1, "n1"), task(2, "n2", active=False),
                                         task(3, "n1", service="database")])
    by_name = {r.name: r for r in recs}
    assert by_name["web"].vip == "10.0.0.2" and by_name["web"].tasks == ("10.0.0.11",)
    assert by_name["database"].vip is None and by_name["database"].tasks == ("10.0.0.13",)
    assert by_name["database"].mode is EndpointMode.DNSRR


class FakeDatapath:
    def __init__(self, log: list[tuple[str | None, object]], netns: str | None) -> None:
        self.log, self.netns = log, netns

    def sync(self, lbs: Iterable[LoadBalancer]) -> object:
        self.log.append((self.netns, tuple(lbs)))
        return None

    def close(self, *, remove: bool = True) -> None:
        self.log.append((self.netns, "closed"))


def test_fabric_syncs_only_the_netns_that_changed() -> None:
    log: list[tuple[str | None, object]] = []
    fabric = ServiceFabric(NodeView("n1", {}, "host", INGRESS),
                           datapath=lambda netns, table: FakeDatapath(log, netns))
    fabric.set_service(web(PortConfig(80, 8080)))
    fabric.set_sandbox("sb1", [APP])
    fabric.set_sandbox("sb2", [APP])
    fabric.apply()
    assert sorted(str(n) for n, _ in log) == ["host", "sb1", "sb2"]
    log.clear()
    fabric.apply()
    assert log == []  # nothing changed
    fabric.set_sandbox("sb3", ["other"])
    fabric.apply()
    assert log == [("sb3", ())]
    log.clear()
    fabric.set_backend(task(1, "n2"))
    fabric.apply()
    assert sorted(str(n) for n, _ in log) == ["host", "sb1", "sb2"]
    log.clear()
    fabric.remove_sandbox("sb2")
    assert log == [("sb2", "closed")]
    assert fabric.remove_node("n2") == [task(1, "n2")]
    fabric.remove_backend("web", "nope")
    with pytest.raises(NotFound):
        fabric.remove_service("nope")
    fabric.remove_service("web")
    fabric.close()
    assert sorted(str(n) for n, what in log if what == "closed") == ["host", "sb1", "sb2",
                                                                      "sb3"]
