"""The pure service ruleset: validation, one dispatch rule, and deltas that touch only the
load balancer that changed, whatever the number of others."""

from __future__ import annotations

import pytest

from netfabric.errors import InvalidArgument
from netfabric.services import LoadBalancer, Proto, Target, index, render_delta, render_full
from netfabric.services.nftplan import endpoint_chain, service_chain

T = "netfabric-svc"


def lb(i: int, n_targets: int = 3, **kw: object) -> LoadBalancer:
    targets = tuple(Target(f"10.0.{i // 250}.{i % 250 + 1}", 80 + j) for j in range(n_targets))
    return LoadBalancer(f"svc{i}/tcp/80", Proto.TCP, 80, targets,
                        vips=(f"10.9.{i // 250}.{i % 250 + 1}",), **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize("kw", [
    {"key": "bad key"}, {"port": 0}, {"port": 70000}, {"vips": ("10.0.0.300",)},
    {"vips": ()}, {"vips": ("10.0.0.1", "10.0.0.1")},
    {"targets": (Target("10.0.0.1", 80), Target("10.0.0.1", 80))}, {"proto": "sctp"},
])
def test_bad_load_balancers_are_invalid_arguments(kw: dict[str, object]) -> None:
    args: dict[str, object] = {"key": "a/tcp/80", "proto": Proto.TCP, "port": 80,
                               "vips": ("10.0.0.1",)}
    args.update(kw)
    with pytest.raises(InvalidArgument):
        LoadBalancer(**args)  # type: ignore[arg-type]


@pytest.mark.parametrize("target", [("10.0.0.1", 0), ("fe80::1", 80), ("x", 80)])
def test_bad_targets_are_invalid_arguments(target: tuple[str, int]) -> None:
    with pytest.raises(InvalidArgument):
        Target(*target)


def test_two_load_balancers_on_one_frontend_are_refused() -> None:
    a = lb(1)
    with pytest.raises(InvalidArgument, match="both catch"):
        index([a, LoadBalancer("other/tcp/80", Proto.TCP, 80, vips=a.vips)])
    with pytest.raises(InvalidArgument, match="two load balancers"):
        index([a, a])
    p = LoadBalancer("p/tcp/8080", Proto.TCP, 8080, published=True)
    with pytest.raises(InvalidArgument, match="both catch"):
        index([p, LoadBalancer("q/tcp/8080", Proto.TCP, 8080, published=True)])
    # Same port, other protocol: fine.
    index([p, LoadBalancer("q/udp/8080", Proto.UDP, 8080, published=True)])


def test_full_render_has_one_dispatch_rule_and_a_chain_per_service_and_target() -> None:
    text = render_full(T, index([lb(i) for i in range(10)]))
    assert text.count("vmap @service-ips") == 1
    assert text.count("numgen random mod 3 vmap") == 10
    assert text.count(f"add chain ip {T} ep-") == 30
    assert text.count(f"add element ip {T} service-ips") == 10
    with pytest.raises(InvalidArgument):
        render_full("bad name;", {})


def test_delta_touches_only_the_changed_service_at_any_scale() -> None:
    sizes = []
    for n in (10, 1000):
        old = index([lb(i) for i in range(n)])
        changed = lb(5, n_targets=4)
        new = {**old, changed.key: changed}
        delta = render_delta(T, old, new)
        assert delta.changed == (changed.key,)
        others = [service_chain(k) for k in old if k != changed.key]
        assert not any(c in delta.script for c in others)
        # The new target's chain is added; the service chain is rewritten; no element moves.
        assert f"add chain ip {T} {endpoint_chain(changed.key, Proto.TCP, changed.targets[3])}" \
            in delta.script
        assert f"flush chain ip {T} {service_chain(changed.key)}" in delta.script
        assert "element" not in delta.script and delta.removed_targets == ()
        sizes.append(len(delta.script))
    assert sizes[0] == sizes[1]
    assert render_delta(T, old, old).empty


def test_removing_targets_lists_them_and_deletes_their_chains_after_the_flush() -> None:
    before = lb(1)
    after = LoadBalancer(before.key, before.proto, before.port, before.targets[:1],
                         vips=before.vips)
    delta = render_delta(T, {before.key: before}, {after.key: after})
    assert delta.removed_targets == tuple((before, t) for t in before.targets[1:])
    lines = delta.script.splitlines()
    flush = lines.index(f"flush chain ip {T} {service_chain(before.key)}")
    for t in before.targets[1:]:
        assert lines.index(f"delete chain ip {T} {endpoint_chain(before.key, Proto.TCP, t)}") \
            > flush


def test_no_targets_moves_the_frontend_to_the_reject_maps_and_back() -> None:
    full = lb(1, published=True, masquerade=True)
    empty = LoadBalancer(full.key, full.proto, full.port, vips=full.vips, published=True,
                         masquerade=True)
    down = render_delta(T, {full.key: full}, {empty.key: empty}).script
    assert f"delete element ip {T} service-ips {{ {full.vips[0]} . tcp . 80 }}" in down
    assert f"add element ip {T} no-endpoint-ports {{ tcp . 80 : goto reject-chain }}" in down
    assert f"delete chain ip {T} {service_chain(full.key)}" in down
    assert down.index("delete element") < down.index("delete chain")
    up = render_delta(T, {empty.key: empty}, {full.key: full}).script
    assert up.index(f"add chain ip {T} {service_chain(full.key)}") < up.index("add element")
    assert "jump mark-for-masquerade" in up
    assert f"delete element ip {T} no-endpoint-services" in up


def test_a_protocol_change_gets_new_endpoint_chains() -> None:
    a = lb(1)
    b = LoadBalancer(a.key, Proto.UDP, a.port, a.targets, vips=a.vips)
    delta = render_delta(T, {a.key: a}, {b.key: b})
    for t in a.targets:
        assert f"delete chain ip {T} {endpoint_chain(a.key, Proto.TCP, t)}" in delta.script
        assert f"add chain ip {T} {endpoint_chain(a.key, Proto.UDP, t)}" in delta.script
    assert "meta l4proto udp dnat to" in delta.script


def test_a_vip_of_all_ports_uses_the_address_map_and_keeps_the_port() -> None:
    every = LoadBalancer("all", None, None, (Target("10.0.0.5"), Target("10.0.0.6")),
                         vips=("10.9.0.1",))
    text = render_full(T, index([every, lb(1)]))
    assert f"add element ip {T} service-vips {{ 10.9.0.1 : goto {service_chain('all')} }}" \
        in text
    assert "dnat to 10.0.0.5\n" in text
    with pytest.raises(InvalidArgument):
        LoadBalancer("x", None, None, (Target("10.0.0.5", 80),), vips=("10.9.0.1",))
    with pytest.raises(InvalidArgument):
        LoadBalancer("x", Proto.TCP, 80, (Target("10.0.0.5"),), vips=("10.9.0.1",))
    with pytest.raises(InvalidArgument):
        LoadBalancer("x", None, None, published=True)
    with pytest.raises(InvalidArgument, match="both catch"):
        index([every, LoadBalancer("y", None, None, vips=("10.9.0.1",))])
