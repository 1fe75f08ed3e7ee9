"""The pure reconcile: diff(desired, observed) -> ops, no kernel involved."""

from __future__ import annotations

import socket

from hypothesis import given
from hypothesis import strategies as st

from netfabric.dataplane.reconcile import diff
from netfabric.dataplane.resources import (
    Addr,
    Bridge,
    Create,
    Delete,
    Fdb,
    LinkState,
    Neigh,
    Netns,
    NftTable,
    Resource,
    Route,
    Update,
    Veth,
    Vxlan,
)

OV = "nfx-h1-ov42"


def network(extra: list[Resource] | None = None) -> list[Resource]:
    return [
        Netns(OV),
        Bridge(OV, "br0", 1450),
        Addr(OV, "br0", "10.0.0.1/24"),
        Vxlan(OV, "nfvx42", 42, "198.51.100.1", 4789, 1450, "br0"),
        Veth(OV, "veaaa", "br0", 1450, "nfx-c1", "eth0", "02:42:0a:00:00:02"),
        Addr("nfx-c1", "eth0", "10.0.0.2/24"),
        Route("nfx-c1", socket.AF_INET, "default", "10.0.0.1", "eth0"),
        Fdb(OV, "nfvx42", "02:42:0a:00:00:03", "198.51.100.2"),
        Neigh(OV, "nfvx42", "10.0.0.3", "02:42:0a:00:00:03"),
        *(extra or []),
    ]


def test_equal_states_need_nothing() -> None:
    assert diff(network(), network()) == ()


def test_everything_missing_is_created_outermost_first() -> None:
    ops = diff(network(), [])
    assert all(isinstance(op, Create) for op in ops)
    phases = [op.new.phase for op in ops if isinstance(op, Create)]
    assert phases == sorted(phases)
    assert isinstance(ops[0], Create) and ops[0].new == Netns(OV)


def test_a_moved_ip_is_one_replace_per_table_and_the_old_mac_goes() -> None:
    before = network()
    after = [r for r in network() if not isinstance(r, Fdb | Neigh)] + [
        Fdb(OV, "nfvx42", "02:42:0a:00:00:09", "198.51.100.3"),
        Neigh(OV, "nfvx42", "10.0.0.3", "02:42:0a:00:00:09"),
    ]
    ops = diff(after, before)
    assert Update(Neigh(OV, "nfvx42", "10.0.0.3", "02:42:0a:00:00:03"),
                  Neigh(OV, "nfvx42", "10.0.0.3", "02:42:0a:00:00:09")) in ops
    assert Create(Fdb(OV, "nfvx42", "02:42:0a:00:00:09", "198.51.100.3")) in ops
    assert Delete(Fdb(OV, "nfvx42", "02:42:0a:00:00:03", "198.51.100.2")) in ops
    assert len(ops) == 3


def test_deletes_come_first_deepest_first() -> None:
    ops = diff([Netns(OV), Bridge(OV, "br0", 1450)], network())
    deletes = [op for op in ops if isinstance(op, Delete)]
    assert ops[: len(deletes)] == tuple(deletes)
    phases = [op.old.phase for op in deletes]
    assert phases == sorted(phases, reverse=True)


def test_deleting_a_netns_subsumes_its_contents_but_not_links_reaching_out() -> None:
    ops = diff([], network())
    olds = [op.old for op in ops if isinstance(op, Delete)]
    assert Netns(OV) in olds
    assert Vxlan(OV, "nfvx42", 42, "198.51.100.1", 4789, 1450, "br0") in olds
    assert Veth(OV, "veaaa", "br0", 1450, "nfx-c1", "eth0", "02:42:0a:00:00:02") in olds
    assert not any(isinstance(r, Bridge | Fdb | Neigh) for r in olds)
    # Sandbox contents are not in the doomed netns: they are deleted explicitly.
    assert Addr("nfx-c1", "eth0", "10.0.0.2/24") in olds
    assert olds.index(Vxlan(OV, "nfvx42", 42, "198.51.100.1", 4789, 1450, "br0")) < olds.index(
        Netns(OV))


def test_attribute_drift_is_an_update() -> None:
    down = Veth(OV, "veaaa", "br0", 1450, "nfx-c1", "eth0", "02:42:0a:00:00:02",
                LinkState.DOWN)
    broken = Veth(OV, "veaaa", "br0", 1450, None, None, None)
    want = network()
    for bad in (down, broken):
        observed = [bad if r.key == bad.key else r for r in want]
        ops = diff(want, observed)
        assert len(ops) == 1 and isinstance(ops[0], Update) and ops[0].old == bad


def test_vxlan_underlay_netns_is_not_compared() -> None:
    a = Vxlan(OV, "nfvx42", 42, "198.51.100.1", 4789, 1450, "br0", underlay_netns="nfx-h1")
    b = Vxlan(OV, "nfvx42", 42, "198.51.100.1", 4789, 1450, "br0", underlay_netns=None)
    assert diff([a], [b]) == ()


def test_nft_tables_compare_by_marker_only() -> None:
    a = NftTable(None, "inet", "netfabric", "nf:abc:2", body="chain x {}")
    b = NftTable(None, "inet", "netfabric", "nf:abc:2")
    assert diff([a], [b]) == ()
    assert isinstance(diff([a], [NftTable(None, "inet", "netfabric", "nf:drift")])[0], Update)


_macs = st.integers(0, 255).map(lambda i: f"02:42:0a:00:00:{i:02x}")
_fdbs = st.lists(st.builds(lambda m, d: Fdb(OV, "nfvx42", m, f"198.51.100.{d}"),
                           _macs, st.integers(1, 9)), max_size=20)


@given(_fdbs, _fdbs)
def test_applying_the_ops_reaches_the_desired_state(want: list[Resource],
                                                    have: list[Resource]) -> None:
    state = {r.key: r for r in have}
    for op in diff(want, have):
        if isinstance(op, Delete):
            del state[op.old.key]
        else:
            state[op.new.key] = op.new
    assert state == {r.key: r for r in want}
    assert diff(want, list(state.values())) == ()
