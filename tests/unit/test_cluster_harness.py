"""The local cluster's pure parts without a cluster: PKI, pid-file supervision, API paths."""
from __future__ import annotations

import ipaddress
import json
import sys
import time
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "cluster"))

import controlplane
import pki
import procs


def test_pki_issues_certificates_that_chain_to_the_ca(tmp_path: Path) -> None:
    material = pki.ensure(directory=tmp_path, certs=controlplane.certs())
    ca = x509.load_pem_x509_certificate(material.ca_crt.read_bytes())
    server = x509.load_pem_x509_certificate(material.crt("apiserver").read_bytes())
    server.verify_directly_issued_by(ca)
    sans = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "kubernetes.default.svc" in sans.get_values_for_type(x509.DNSName)
    assert ipaddress.ip_address("10.96.0.1") in sans.get_values_for_type(x509.IPAddress)

    admin = x509.load_pem_x509_certificate(material.crt("admin").read_bytes())
    admin.verify_directly_issued_by(ca)
    orgs = [a.value for a in admin.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)]
    assert orgs == ["system:masters"]  # RBAC reads groups from O
    assert material.key("admin").stat().st_mode & 0o777 == 0o600


def test_pki_keeps_existing_material(tmp_path: Path) -> None:
    certs = controlplane.certs()
    first = pki.ensure(directory=tmp_path, certs=certs)
    before = first.crt("apiserver").read_bytes(), first.ca_crt.read_bytes(), first.sa_key.read_bytes()
    again = pki.ensure(directory=tmp_path, certs=certs)
    after = again.crt("apiserver").read_bytes(), again.ca_crt.read_bytes(), again.sa_key.read_bytes()
    assert after == before


@pytest.fixture
def supervisor(tmp_path: Path) -> procs.Supervisor:
    return procs.Supervisor(run_dir=tmp_path / "run", log_dir=tmp_path / "logs")


def test_supervisor_starts_once_and_stops(supervisor: procs.Supervisor, tmp_path: Path) -> None:
    sleeper = procs.Proc("sleeper", [sys.executable, "-c", "import time; time.sleep(60)", str(tmp_path)])
    assert supervisor.start(sleeper) is True
    pid = supervisor.pid("sleeper")
    assert pid is not None
    assert supervisor.start(sleeper) is False  # already running: no second copy
    assert supervisor.pid("sleeper") == pid
    assert list(procs.strays(marker=str(tmp_path), programs={Path(sys.executable).name})) == [pid]

    assert supervisor.stop("sleeper", grace=5) is True
    assert supervisor.pid("sleeper") is None
    assert not Path(f"/proc/{pid}/cmdline").exists() or not Path(f"/proc/{pid}/cmdline").read_bytes()
    assert supervisor.stop("sleeper") is False


def test_supervisor_ignores_a_pid_that_now_belongs_to_another_program(
        supervisor: procs.Supervisor, tmp_path: Path) -> None:
    sleeper = procs.Proc("sleeper", [sys.executable, "-c", "import time; time.sleep(60)", str(tmp_path)])
    supervisor.start(sleeper)
    pidfile = supervisor.run_dir / "sleeper.pid"
    record = json.loads(pidfile.read_text())
    pidfile.write_text(json.dumps({"pid": record["pid"], "argv": ["etcd", "--name=other"]}))
    try:
        assert supervisor.pid("sleeper") is None
        assert supervisor.stop("sleeper") is False  # never signals what it cannot vouch for
        assert Path(f"/proc/{record['pid']}").exists()
    finally:
        procs.terminate(record["pid"], grace=5)


def test_wait_ready_reports_a_crash_with_the_log(supervisor: procs.Supervisor) -> None:
    crasher = procs.Proc("crasher", ["sh", "-c", "echo boom; exit 3"], ready=lambda: False)
    supervisor.start(crasher)
    started = time.monotonic()
    with pytest.raises(RuntimeError, match="crasher exited during start-up:\nboom"):
        supervisor.wait_ready(crasher, timeout=30)
    assert time.monotonic() - started < 10


@pytest.mark.parametrize(("obj", "path"), [
    ({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "x"}}, "/api/v1/namespaces/x"),
    ({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s", "namespace": "n"}},
     "/api/v1/namespaces/n/secrets/s"),
    ({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
      "metadata": {"name": "e", "namespace": "n"}},
     "/apis/discovery.k8s.io/v1/namespaces/n/endpointslices/e"),
    ({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": "r"}},
     "/apis/rbac.authorization.k8s.io/v1/clusterroles/r"),
])
def test_apply_paths(obj: dict[str, object], path: str) -> None:
    assert controlplane._path(obj) == path  # type: ignore[arg-type]
