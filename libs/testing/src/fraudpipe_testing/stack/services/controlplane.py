"""A real Kubernetes control plane: etcd, kube-apiserver (own CA, service-account keys, RBAC),
kube-controller-manager and kube-scheduler, with kwok playing the nodes so that pods scheduled
on them go Running and Ready without containers."""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path

import httpx

from fraudpipe_testing import toolchain
from fraudpipe_testing.stack import network
from fraudpipe_testing.stack.pki import CertificateAuthority, service_account_keys, write_kubeconfig
from fraudpipe_testing.stack.process import (
    Spawned,
    StackError,
    alive,
    free_port,
    log_tail,
    spawn,
    stop,
    wait_until,
)
from fraudpipe_testing.stack.services.base import Running

SERVICE_CIDR = "10.96.0.0/16"
POD_CIDR = "10.244.0.0/16"
FAKE_NODES = ("kwok-node-0", "kwok-node-1")
KWOK_ANNOTATION = "kwok.x-k8s.io/node"


def fake_node(name: str) -> dict[str, object]:
    """A Node that kwok keeps Ready; generous capacity so scheduling never blocks a test."""
    capacity = {"cpu": "32", "memory": "128Gi", "pods": "110", "ephemeral-storage": "200Gi"}
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "annotations": {KWOK_ANNOTATION: "fake", "node.alpha.kubernetes.io/ttl": "0"},
            "labels": {
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
                "type": "kwok",
            },
        },
        "status": {"allocatable": capacity, "capacity": capacity},
    }


def tls_context(ca: Path, cert: Path, key: Path) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(ca))
    context.load_cert_chain(str(cert), str(key))
    return context


@dataclass
class ControlPlane:
    """A started control plane: what another component needs to join it."""

    workdir: Path
    ca: CertificateAuthority
    server: str
    admin: Path
    procs: list[Spawned]
    routes_managed: bool

    def kubeconfig(self, user: str, common_name: str, organization: str | None = None) -> Path:
        """A client certificate from the cluster's CA, and a kubeconfig that presents it."""
        pair = self.ca.issue(user, common_name, organization=organization)
        return write_kubeconfig(
            self.workdir / f"{user}.kubeconfig", self.server, self.ca.pair.cert, pair, user
        )

    def extra(self) -> dict[str, object]:
        """What `Running.extra` keeps so that health checks and `down` find the cluster."""
        pki = self.ca.pair.cert.parent
        return {
            "server": self.server,
            "routes_managed": self.routes_managed,
            "workdir": str(self.workdir),
            "ca": str(self.ca.pair.cert),
            "admin_cert": str(pki / "admin.crt"),
            "admin_key": str(pki / "admin.key"),
        }

    def context(self) -> ssl.SSLContext:
        pki = self.ca.pair.cert.parent
        return tls_context(self.ca.pair.cert, pki / "admin.crt", pki / "admin.key")

    def post(self, path: str, body: dict[str, object]) -> None:
        _post(self.server, path, body, self.context())

    def exists(self, path: str) -> bool:
        response = httpx.get(f"{self.server}{path}", verify=self.context(), timeout=5)
        return response.status_code == 200


def start_control_plane(
    workdir: Path,
    procs: list[Spawned],
    *,
    kubelet_access: bool = False,
    api_address: str = "127.0.0.1",
) -> ControlPlane:
    """etcd, kube-apiserver, kube-controller-manager and kube-scheduler, each appended to
    `procs` as soon as it runs (so a caller's cleanup stops them when a later step fails).
    With `kubelet_access`, the API server gets a client certificate for kubelets (logs,
    exec) and checks their serving certificates against the cluster's CA. The API server
    listens on `api_address` only; on loopback the `kubernetes` Service gets no endpoints (it
    cannot point at 127.0.0.1), on another local address pods reach the API through it."""
    pki_dir = workdir / "pki"
    ca = CertificateAuthority(pki_dir)
    sa = service_account_keys(pki_dir)
    etcd_port, etcd_peer, api_port = free_port(), free_port(), free_port()
    server = f"https://{api_address}:{api_port}"
    serving = ca.issue(
        "apiserver",
        "kube-apiserver",
        server=True,
        dns=(
            "localhost",
            "kubernetes",
            "kubernetes.default",
            "kubernetes.default.svc",
            "kubernetes.default.svc.cluster.local",
        ),
        ips=tuple(dict.fromkeys(("127.0.0.1", api_address, "10.96.0.1"))),
    )
    plane = ControlPlane(workdir, ca, server, workdir / "admin.kubeconfig", procs, False)
    plane.kubeconfig("admin", "fraudpipe-admin", "system:masters")
    controller_manager = plane.kubeconfig("controller-manager", "system:kube-controller-manager")
    scheduler = plane.kubeconfig("scheduler", "system:kube-scheduler")
    kubelet_flags: list[str] = []
    if kubelet_access:
        # Authorised as a cluster admin by the kubelet's webhook, like kubeadm's
        # apiserver-kubelet-client.
        client = ca.issue(
            "apiserver-kubelet-client", "kube-apiserver", organization="system:masters"
        )
        kubelet_flags = [
            f"--kubelet-client-certificate={client.cert}",
            f"--kubelet-client-key={client.key}",
            f"--kubelet-certificate-authority={ca.pair.cert}",
            "--kubelet-preferred-address-types=InternalIP",
        ]
    procs.append(_etcd(workdir, etcd_port, etcd_peer))
    # Before anything could hand out a Pod or Service address; the claim lives as long as
    # this cluster's etcd.
    plane.routes_managed = network.claim_unreachable(
        workdir, [SERVICE_CIDR, POD_CIDR], procs[0].pid
    )
    procs.append(
        spawn(
            "kube-apiserver",
            [
                str(toolchain.find("kube-apiserver")),
                f"--etcd-servers=http://127.0.0.1:{etcd_port}",
                f"--bind-address={api_address}",
                f"--advertise-address={api_address}",
                f"--secure-port={api_port}",
                f"--cert-dir={pki_dir}",
                f"--tls-cert-file={serving.cert}",
                f"--tls-private-key-file={serving.key}",
                f"--client-ca-file={ca.pair.cert}",
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
                f"--service-account-key-file={sa.cert}",
                f"--service-account-signing-key-file={sa.key}",
                "--authorization-mode=Node,RBAC",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
                "--allow-privileged=true",
                "--profiling=false",
                *(["--endpoint-reconciler-type=none"] if api_address == "127.0.0.1" else []),
                *kubelet_flags,
            ],
            workdir / "kube-apiserver.log",
        )
    )
    context = plane.context()
    wait_until(
        lambda: _get(server, "/readyz", context) == "ok",
        what="kube-apiserver",
        proc=procs[-1],
        timeout=120,
        interval=0.5,
    )
    procs.append(
        spawn(
            "kube-controller-manager",
            [
                str(toolchain.find("kube-controller-manager")),
                f"--kubeconfig={controller_manager}",
                f"--authentication-kubeconfig={controller_manager}",
                f"--authorization-kubeconfig={controller_manager}",
                "--bind-address=127.0.0.1",
                f"--secure-port={free_port()}",
                f"--cert-dir={pki_dir}",
                f"--service-account-private-key-file={sa.key}",
                f"--root-ca-file={ca.pair.cert}",
                f"--cluster-signing-cert-file={ca.pair.cert}",
                f"--cluster-signing-key-file={ca.pair.key}",
                "--use-service-account-credentials=true",
                "--leader-elect=false",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
                "--profiling=false",
            ],
            workdir / "kube-controller-manager.log",
        )
    )
    procs.append(
        spawn(
            "kube-scheduler",
            [
                str(toolchain.find("kube-scheduler")),
                f"--kubeconfig={scheduler}",
                f"--authentication-kubeconfig={scheduler}",
                f"--authorization-kubeconfig={scheduler}",
                "--bind-address=127.0.0.1",
                f"--secure-port={free_port()}",
                "--leader-elect=false",
                "--profiling=false",
            ],
            workdir / "kube-scheduler.log",
        )
    )
    return plane


def _etcd(workdir: Path, port: int, peer: int) -> Spawned:
    client_url, peer_url = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{peer}"
    proc = spawn(
        "etcd",
        [
            str(toolchain.find("etcd")),
            "--name=fraudpipe",
            f"--data-dir={workdir / 'etcd'}",
            f"--listen-client-urls={client_url}",
            f"--advertise-client-urls={client_url}",
            f"--listen-peer-urls={peer_url}",
            f"--initial-advertise-peer-urls={peer_url}",
            f"--initial-cluster=fraudpipe={peer_url}",
            "--unsafe-no-fsync=true",
            "--log-level=warn",
        ],
        workdir / "etcd.log",
    )
    wait_until(
        lambda: '"health":"true"' in httpx.get(f"{client_url}/health", timeout=2).text,
        what="etcd",
        proc=proc,
        timeout=60,
    )
    return proc


def stop_all(procs: list[Spawned], workdir: Path) -> None:
    for proc in reversed(procs):
        stop(proc.pid)
    network.release_unreachable(workdir)


def ready_nodes(running: Running) -> set[str] | None:
    """Names of the Ready nodes, or None while the API server is not ready."""
    context = tls_context(
        Path(running.extra["ca"]),
        Path(running.extra["admin_cert"]),
        Path(running.extra["admin_key"]),
    )
    server = running.extra["server"]
    if _get(server, "/readyz", context) != "ok":
        return None
    nodes = httpx.get(f"{server}/api/v1/nodes", verify=context, timeout=5).json()["items"]
    return {
        n["metadata"]["name"]
        for n in nodes
        for c in n.get("status", {}).get("conditions", [])
        if c["type"] == "Ready" and c["status"] == "True"
    }


class ControlPlaneService:
    name = "controlplane"

    def start(self, workdir: Path) -> Running:
        procs: list[Spawned] = []
        try:
            plane = start_control_plane(workdir, procs)
            procs.append(
                spawn(
                    "kwok",
                    [
                        str(toolchain.find("kwok")),
                        f"--kubeconfig={plane.admin}",
                        f"--config={toolchain.kwok_stages()}",
                        f"--manage-nodes-with-annotation-selector={KWOK_ANNOTATION}=fake",
                        f"--cidr={POD_CIDR}",
                        "--node-ip=127.0.0.1",
                        "--node-lease-duration-seconds=40",
                    ],
                    workdir / "kwok.log",
                )
            )
            for node in FAKE_NODES:
                plane.post("/api/v1/nodes", fake_node(node))
            running = Running.of(
                self.name, procs, {"KUBECONFIG": str(plane.admin)}, **plane.extra()
            )
            wait_until(
                lambda: any_exited(procs) is not None or self.healthy(running),
                what="control plane (nodes Ready)",
                timeout=120,
                interval=0.5,
            )
            if dead := any_exited(procs):
                raise StackError(
                    f"control plane: {dead.name} exited. Log {dead.log}:\n{log_tail(dead.log)}"
                )
            return running
        except BaseException:
            stop_all(procs, workdir)
            raise

    def healthy(self, running: Running) -> bool:
        ready = ready_nodes(running)
        return ready is not None and set(FAKE_NODES) <= ready


def any_exited(procs: list[Spawned]) -> Spawned | None:
    return next((p for p in procs if not alive(p.pid)), None)


def _get(server: str, path: str, context: ssl.SSLContext) -> str:
    try:
        return httpx.get(f"{server}{path}", verify=context, timeout=5).text
    except httpx.HTTPError:
        return ""


def _post(server: str, path: str, body: dict[str, object], context: ssl.SSLContext) -> None:
    response = httpx.post(f"{server}{path}", json=body, verify=context, timeout=10)
    if response.status_code not in (200, 201, 409):
        raise StackError(
            f"control plane: POST {path} answered {response.status_code}: {response.text}"
        )
