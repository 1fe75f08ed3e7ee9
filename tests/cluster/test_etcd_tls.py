"""A manager on an etcd that requires TLS with client certificates (issue 16): ``init
--store ... --store-cacert --store-cert --store-key`` works and survives a kill -9 of the
agent; without the certificates, with a missing, unreadable or malformed file, or with the
wrong CA, init refuses with one line naming etcd and leaves no cluster. etcd runs in its own
machine (node2) with --client-cert-auth; the certificates are copied into the manager's own
/etc/netfabric, as an operator would. A second manager (node3) keeps its copies at other
paths: its ``join`` names them with the same flags, and without them it is refused in one
line saying so."""

from __future__ import annotations

import os
import re
import shutil
import signal
import tempfile
from collections.abc import Iterator

import pytest

from netfabric import Client
from netfabric.lab.cluster import Lab
from netfabric.lab.etcd import EtcdLab, _make_pki
from netfabric.lab.topology import wait_for
from netfabric.netns import entered
from netfabric.store.etcd import EtcdStore, cluster_prefix

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

PKI = "/etc/netfabric/etcd"


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Lab, EtcdLab]]:
    with Lab.up(3, state_dir=str(tmp_path_factory.mktemp("fo")), start=False) as lab:
        assert lab.topo is not None
        for name in ("node1", "node3"):
            lab.start_agent(lab.agent(name))
        for name in ("node1", "node3"):
            lab.wait_ready(lab.agent(name))
        with EtcdLab([lab.topo.hosts[1]], tls=True).start() as etcd:
            inside = os.path.join(lab.machine("node1").private_dir("/etc/netfabric"), "etcd")
            os.makedirs(inside, mode=0o700)
            tls = etcd.client_tls
            # node3 keeps its copies elsewhere: its join names them
            elsewhere = os.path.join(lab.machine("node3").private_dir("/etc/netfabric"),
                                     "pki")
            os.makedirs(elsewhere, mode=0o700)
            for src in (tls.ca, tls.cert, tls.key):
                assert src is not None
                shutil.copy(src, inside)
                shutil.copy(src, elsewhere)
            other = tempfile.mkdtemp(prefix="fo-pki-")
            try:   # a CA that did not sign the etcd member's certificate
                _make_pki(other, [])
                shutil.copy(os.path.join(other, "ca.pem"), os.path.join(inside, "other-ca.pem"))
            finally:
                shutil.rmtree(other)
            with open(os.path.join(inside, "garbage.pem"), "w") as f:
                f.write("not a certificate\n")
            yield lab, etcd


def _init(lab: Lab, etcd: EtcdLab, *flags: str) -> tuple[int, str]:
    proc = lab.run("node1", ["netfabric", "init", "--advertise-addr", "eth0",
                             "--store", etcd.url, *flags], timeout=60)
    return proc.returncode, proc.stderr


def _refused(lab: Lab, etcd: EtcdLab, *flags: str) -> str:
    code, err = _init(lab, etcd, *flags)
    assert code == 1, (flags, code, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and "etcd" in lines[0], err
    assert Client(lab.agent("node1").url).info().cluster_id in ("", None), \
        "a refused init left a cluster behind"
    return lines[0]


def test_init_without_certificates_is_refused_naming_etcd(lab: tuple[Lab, EtcdLab]) -> None:
    lab_, etcd = lab
    line = _refused(lab_, etcd)
    assert "serves TLS" in line and "--store-cacert" in line, line
    line = _refused(lab_, etcd, "--store-cacert", f"{PKI}/ca.pem")
    # etcd asks for a client certificate; under TLS 1.3 its alert races the request and
    # the connection is often just reset: either way the line says what to give
    assert "TLS handshake failed" in line and "--store-cert" in line, line
    line = _refused(lab_, etcd, "--store-cacert", f"{PKI}/other-ca.pem", "--store-cert",
                    f"{PKI}/client.pem", "--store-key", f"{PKI}/client.key")
    assert "TLS handshake failed: certificate verify failed" in line, line


def test_bad_files_are_named(lab: tuple[Lab, EtcdLab]) -> None:
    lab_, etcd = lab
    line = _refused(lab_, etcd, "--store-cacert", f"{PKI}/nope.pem")
    assert line == f"Error: etcd CA certificate {PKI}/nope.pem: No such file or directory", line
    line = _refused(lab_, etcd, "--store-cacert", f"{PKI}/garbage.pem")
    assert line.startswith(f"Error: etcd CA certificate {PKI}/garbage.pem: not a PEM "
                           "certificate"), line
    line = _refused(lab_, etcd, "--store-cacert", f"{PKI}/ca.pem", "--store-cert",
                    f"{PKI}/garbage.pem", "--store-key", f"{PKI}/client.key")
    assert line.startswith(f"Error: etcd client certificate {PKI}/garbage.pem"), line
    code, err = _init(lab_, etcd, "--store-cert", f"{PKI}/client.pem")
    assert code == 1 and "need --store-cacert" in err, err


def test_init_with_client_certificates(lab: tuple[Lab, EtcdLab]) -> None:
    lab_, etcd = lab
    code, err = _init(lab_, etcd, "--store-cacert", f"{PKI}/ca.pem", "--store-cert",
                      f"{PKI}/client.pem", "--store-key", f"{PKI}/client.key")
    assert code == 0, err
    n1 = Client(lab_.agent("node1").url)
    cid = n1.info().cluster_id
    assert cid
    n1.create_network("fo-tls", driver="overlay")
    agent = lab_.agent("node1")
    lab_.stop_agent(agent, sig=signal.SIGKILL)
    lab_.start_agent(agent)
    lab_.wait_ready(agent)   # reads its rows back from etcd, over TLS
    n1.create_network("fo-tls2", driver="overlay")
    assert {"fo-tls", "fo-tls2"} <= {n.name for n in n1.networks()}
    with entered(etcd.hosts[0].netns_path()), \
            EtcdStore(etcd.url, prefix=cluster_prefix(cid), tls=etcd.client_tls) as store:
        assert {"fo-tls", "fo-tls2"} <= {n.name for n in store.list_networks()}


def test_a_second_manager_joins_with_its_own_certificate_paths(
        lab: tuple[Lab, EtcdLab]) -> None:
    lab_, _ = lab
    tok = lab_.run("node1", ["netfabric", "join-token", "manager"])
    m = re.search(r"netfabric join --token (\S+) (\S+)", tok.stdout)
    assert m is not None, tok.stdout + tok.stderr
    join = ["netfabric", "join", "--token", m.group(1), m.group(2)]
    proc = lab_.run("node3", join)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert proc.stderr.strip() == (
        f"Error: etcd CA certificate {PKI}/ca.pem: No such file or directory (the cluster's "
        "etcd needs TLS: give this host's files with --store-cacert, --store-cert, "
        "--store-key)"), proc.stderr
    # refused after the handshake: the manager's registry row for node3 was taken back
    n1 = Client(lab_.agent("node1").url)
    assert "node3" not in {n.hostname for n in n1.nodes()}
    own = "/etc/netfabric/pki"
    proc = lab_.run("node3", [*join, "--store-cacert", f"{own}/ca.pem", "--store-cert",
                              f"{own}/client.pem", "--store-key", f"{own}/client.key"])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "joined a swarm as a manager" in proc.stdout
    n3 = Client(lab_.agent("node3").url)
    n3.create_network("fo-tls3", driver="overlay")
    assert wait_for(lambda: "fo-tls3" in {n.name for n in n1.networks()}, 5)
    agent = lab_.agent("node3")   # restarted, it reopens etcd with its own files
    lab_.stop_agent(agent, sig=signal.SIGKILL)
    lab_.start_agent(agent)
    lab_.wait_ready(agent)
    assert {"fo-tls", "fo-tls3"} <= {n.name for n in n3.networks()}
