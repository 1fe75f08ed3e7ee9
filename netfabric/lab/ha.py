"""A cluster of several managers on etcd, in lab machines: etcd members in machines of their
own, an agent in every other machine, ``init --store`` on the first manager, then every
other node joined (managers with a manager token) in the order given. Used by the HA tests
and the store benchmark."""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from netfabric.errors import LabError
from netfabric.lab.cluster import Lab
from netfabric.lab.etcd import EtcdLab

__all__ = ["form_ha_cluster", "ha_cluster"]

_JOIN = re.compile(r"netfabric join --token (\S+) (\S+)")


def _nf(lab: Lab, host: str, *argv: str) -> str:
    proc = lab.run(host, ["netfabric", *argv], timeout=60)
    if proc.returncode != 0:
        raise LabError(f"netfabric {' '.join(argv)} on {host}: {proc.stderr.strip()}")
    return proc.stdout


def form_ha_cluster(lab: Lab, store: str, managers: Sequence[str],
                    joins: Sequence[str]) -> None:
    """``init --store STORE`` on ``managers[0]``, then each of ``joins`` joins, as a manager
    if it is one of ``managers``, else as a worker."""
    init = _nf(lab, managers[0], "init", "--advertise-addr", "eth0", "--store", store)
    worker = _JOIN.search(init)
    manager = _JOIN.search(_nf(lab, managers[0], "join-token", "manager"))
    if worker is None or manager is None:
        raise LabError("init or join-token printed no join command")
    for name in joins:
        token = manager if name in managers else worker
        _nf(lab, name, "join", "--token", token.group(1), token.group(2))


@contextmanager
def ha_cluster(state_dir: str, *, managers: Sequence[str], workers: Sequence[str],
               etcd: Sequence[str] = ("etcd1",), joins: Sequence[str] | None = None,
               name: str = "nfha") -> Iterator[tuple[Lab, EtcdLab]]:
    """The lab (machines ``managers``, ``workers``, ``etcd``) with its cluster formed (every
    node but the first manager joins in the order ``joins``, default managers then workers);
    everything is removed at exit, also on failure."""
    nodes = [*managers, *workers]
    with Lab.up(len(nodes) + len(etcd), state_dir=state_dir, names=[*nodes, *etcd],
                start=False) as lab:
        assert lab.topo is not None
        for node in nodes:
            lab.start_agent(lab.agent(node))
        topo = lab.topo
        with EtcdLab([topo.host(h) for h in etcd], name=name).start() as members:
            for node in nodes:
                lab.wait_ready(lab.agent(node))
            form_ha_cluster(lab, members.url, managers,
                            [n for n in (joins or nodes) if n != managers[0]])
            yield lab, members
