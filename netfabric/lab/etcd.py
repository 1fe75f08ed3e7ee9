"""etcd 3.4 members inside lab hosts (never in the root netns).

:class:`EtcdLab` starts one ``etcd`` per given lab host, listening on that host's underlay
address (clients on ``:2379``, peers on ``:2380``), with its data under a temp dir, and
removes everything at :meth:`EtcdLab.stop`. Used by the etcd store's tests and benchmark.
"""

from __future__ import annotations

import os
import shutil
import signal
import ssl
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from types import TracebackType

from netfabric.errors import LabError
from netfabric.lab.topology import Host
from netfabric.netns import entered
from netfabric.store.etcd import EtcdTls

__all__ = ["ETCD_BINARY", "EtcdLab", "etcd_binary"]

ETCD_BINARY = "etcd"
CLIENT_PORT = 2379
PEER_PORT = 2380


def etcd_binary() -> str:
    """The path of the etcd server (Debian's etcd-server installs /usr/bin/etcd)."""
    path = shutil.which(ETCD_BINARY) or shutil.which(ETCD_BINARY, path="/usr/sbin:/usr/bin")
    if path is None:
        raise LabError("etcd is not installed (apt-get install etcd-server; ./scripts/setup)")
    return path


@dataclass
class EtcdLab:
    """etcd members in ``hosts`` (one each), one cluster."""

    hosts: Sequence[Host]
    name: str = "nfetcd"
    tls: bool = False
    """Clients over TLS with client certificates (a CA, a server cert per member, one client
    cert: :attr:`client_tls`); peers stay plain."""
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    _dir: str = ""

    @property
    def _client_scheme(self) -> str:
        return "https" if self.tls else "http"

    @property
    def endpoints(self) -> list[str]:
        return [f"{self._client_scheme}://{h.address}:{CLIENT_PORT}" for h in self.hosts]

    @property
    def url(self) -> str:
        """``etcd://a:2379,b:2379``: the form ``netfabric init --store`` takes."""
        return "etcd://" + ",".join(f"{h.address}:{CLIENT_PORT}" for h in self.hosts)

    @property
    def client_tls(self) -> EtcdTls:
        """CA, client certificate and key for a TLS lab (made by :meth:`start`)."""
        if not self.tls:
            raise LabError("this etcd lab has no TLS")
        d = os.path.join(self._dir, "pki")
        return EtcdTls(ca=f"{d}/ca.pem", cert=f"{d}/client.pem", key=f"{d}/client.key")

    def _cluster(self) -> str:
        return ",".join(f"{h.name}=http://{h.address}:{PEER_PORT}" for h in self.hosts)

    def start(self, timeout: float = 30.0) -> EtcdLab:
        self._dir = tempfile.mkdtemp(prefix="ha-etcd-")
        try:
            if self.tls:
                _make_pki(os.path.join(self._dir, "pki"), [h.address for h in self.hosts])
            for host in self.hosts:
                self.start_member(host, new=True)
            self.wait_healthy(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def start_member(self, host: Host, *, new: bool = False) -> None:
        """Start (or restart, keeping its data) the member on ``host``."""
        data = os.path.join(self._dir, host.name)
        argv = [etcd_binary(), "--name", host.name, "--data-dir", data,
                "--listen-client-urls", f"{self._client_scheme}://{host.address}:{CLIENT_PORT}",
                "--advertise-client-urls",
                f"{self._client_scheme}://{host.address}:{CLIENT_PORT}",
                "--listen-peer-urls", f"http://{host.address}:{PEER_PORT}",
                "--initial-advertise-peer-urls", f"http://{host.address}:{PEER_PORT}",
                "--initial-cluster", self._cluster(),
                "--initial-cluster-token", self.name,
                "--initial-cluster-state", "new",
                "--heartbeat-interval", "100", "--election-timeout", "1000",
                "--log-level", "error", "--logger", "zap"]
        if self.tls:
            pki = os.path.join(self._dir, "pki")
            argv += ["--cert-file", f"{pki}/{host.address}.pem",
                     "--key-file", f"{pki}/{host.address}.key",
                     "--client-cert-auth", "--trusted-ca-file", f"{pki}/ca.pem"]
        log = open(os.path.join(self._dir, f"{host.name}.log"), "ab")  # noqa: SIM115
        try:
            self.procs[host.name] = subprocess.Popen(
                host.enter(argv), stdout=log, stderr=log,
                stdin=subprocess.DEVNULL, start_new_session=True)
        finally:
            log.close()

    def kill(self, host: Host) -> None:
        """``kill -9`` the member on ``host`` (its data stays for a restart)."""
        proc = self.procs.pop(host.name, None)
        if proc is not None and proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)

    def healthy(self, host: Host) -> bool:
        context = None
        if self.tls:
            tls = self.client_tls
            context = ssl.create_default_context(cafile=tls.ca)
            context.load_cert_chain(tls.cert or "", tls.key)

        def probe() -> bool:
            try:
                with urllib.request.urlopen(
                        f"{self._client_scheme}://{host.address}:{CLIENT_PORT}/health",
                        timeout=1, context=context) as resp:
                    return b'"true"' in resp.read()
            except (OSError, urllib.error.URLError):
                return False
        with entered(host.netns_path() if host.pid else host.netns):
            return probe()

    def wait_healthy(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        pending = list(self.hosts)
        while pending:
            pending = [h for h in pending if h.name in self.procs and not self.healthy(h)]
            for h in pending:
                proc = self.procs.get(h.name)
                if proc is not None and proc.poll() is not None:
                    raise LabError(f"etcd on {h.name} exited: {self.log(h)[-500:]}")
            if not pending:
                return
            if time.monotonic() > deadline:
                raise LabError(f"etcd not healthy after {timeout}s on "
                               f"{', '.join(h.name for h in pending)}")
            time.sleep(0.1)

    def log(self, host: Host) -> str:
        try:
            with open(os.path.join(self._dir, f"{host.name}.log"), errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def stop(self) -> None:
        for host in list(self.hosts):
            self.kill(host)
        if self._dir:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = ""

    def __enter__(self) -> EtcdLab:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


def _make_pki(directory: str, addresses: Sequence[str]) -> None:
    """A throwaway CA, one server cert per member address (IP SAN), one client cert."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    os.makedirs(directory, mode=0o700, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC)

    def name(cn: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    def write(stem: str, key: ec.EllipticCurvePrivateKey, cert: x509.Certificate) -> None:
        with open(os.path.join(directory, f"{stem}.key"), "wb") as f:
            f.write(key.private_bytes(serialization.Encoding.PEM,
                                      serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption()))
        with open(os.path.join(directory, f"{stem}.pem"), "wb") as f:
            f.write(cert.public_bytes(serialization.Encoding.PEM))

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (x509.CertificateBuilder().subject_name(name("netfabric lab etcd CA"))
          .issuer_name(name("netfabric lab etcd CA")).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number())
          .not_valid_before(now - datetime.timedelta(minutes=5))
          .not_valid_after(now + datetime.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .sign(ca_key, hashes.SHA256()))
    write("ca", ca_key, ca)

    def issue(stem: str, cn: str, sans: list[x509.GeneralName]) -> None:
        key = ec.generate_private_key(ec.SECP256R1())
        builder = (x509.CertificateBuilder().subject_name(name(cn)).issuer_name(ca.subject)
                   .public_key(key.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(now - datetime.timedelta(minutes=5))
                   .not_valid_after(now + datetime.timedelta(days=1)))
        if sans:
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        write(stem, key, builder.sign(ca_key, hashes.SHA256()))

    for address in addresses:
        issue(address, address, [x509.IPAddress(ipaddress.ip_address(address))])
    issue("client", "netfabric-manager", [])
