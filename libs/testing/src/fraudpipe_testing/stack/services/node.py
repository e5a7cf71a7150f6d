"""A real single-node Kubernetes cluster on this machine (`hack/cluster`).

The control plane is the stack's own (`start_control_plane`); instead of kwok it gets a real
node: containerd + runc with the CNI bridge plugin, kubelet, kube-proxy in iptables mode,
CoreDNS serving cluster.local, and the local-path provisioner behind a default StorageClass.
CoreDNS and the provisioner run as host processes with the admin kubeconfig, so nothing needs
a container image but the sandbox (pause) and busybox (volume helpers, tests), which are built
here from static binaries (`node_images`).

Networking stays on the machine: pods live on the bridge `fraudpipe0` (10.244.0.0/24, the host
is 10.244.0.1 and is the node's address), the rest of the Pod and Service ranges is
`unreachable` (the control plane's route claim), and a mangle rule drops anything that would
be forwarded from the bridge to another interface. No masquerade to the outside, no change to
the default route. `stop` undoes every host change: processes, mounts, the bridge, iptables
chains, the forwarding sysctl the CNI plugin turned on, the kubelet's cgroups.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import signal
import subprocess
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import yaml

from fraudpipe_testing import toolchain
from fraudpipe_testing.stack import network
from fraudpipe_testing.stack.node_images import busybox_ref, node_images, pause_ref
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
from fraudpipe_testing.stack.services.controlplane import (
    POD_CIDR,
    ControlPlane,
    any_exited,
    ready_nodes,
    start_control_plane,
    stop_all,
    tls_context,
)

NODE_NAME = "fraudpipe-node"
BRIDGE = "fraudpipe0"
NODE_SUBNET = "10.244.0.0/24"
NODE_IP = "10.244.0.1"
DNS_SERVICE_IP = "10.96.0.10"
CLUSTER_DOMAIN = "cluster.local"
STORAGE_CLASS = "local-path"
LOCAL_PATH_NAMESPACE = "local-path-storage"
CNI_BIN_DIR = Path("/usr/lib/cni")
# Chains the kubelet and kube-proxy create; all of them go on `down`.
KUBE_CHAIN_PREFIX = "KUBE-"
EGRESS_COMMENT = "fraudpipe-node: pods never leave the machine"
IP_FORWARD = Path("/proc/sys/net/ipv4/ip_forward")


def containerd_root(workdir: Path) -> Path:
    """Beside the service folder, which `up` wipes: imported images survive a restart."""
    return workdir.parent / "containerd"


# -- configuration (pure) -----------------------------------------------------------------------
def containerd_config(workdir: Path) -> str:
    root = containerd_root(workdir)
    cri = 'plugins."io.containerd.grpc.v1.cri"'
    return f"""version = 2
root = "{root / "root"}"
state = "{root / "state"}"
disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs",
  "io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]

[grpc]
  address = "{root / "containerd.sock"}"

[plugins."io.containerd.internal.v1.opt"]
  path = "{root / "opt"}"

[{cri}]
  sandbox_image = "{pause_ref()}"
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  enable_selinux = false
  disable_apparmor = true
  # Processes here may not lower their OOM score (no CAP_SYS_RESOURCE on some machines):
  # containers get at least containerd's own score instead of a failed start.
  restrict_oom_score_adj = true

[{cri}.containerd]
  snapshotter = "overlayfs"
  default_runtime_name = "runc"

[{cri}.containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"

[{cri}.containerd.runtimes.runc.options]
  SystemdCgroup = false
  BinaryName = "{toolchain.find("runc")}"

[{cri}.cni]
  bin_dir = "{CNI_BIN_DIR}"
  conf_dir = "{workdir / "cni"}"
  max_conf_num = 1
"""


def cni_config(workdir: Path) -> dict[str, Any]:
    return {
        "cniVersion": "1.0.0",
        "name": "fraudpipe",
        "plugins": [
            {
                "type": "bridge",
                "bridge": BRIDGE,
                "isGateway": True,
                # Pod traffic is never rewritten to the host's address: it has nowhere to go.
                "ipMasq": False,
                # A pod reaches itself through its own Service.
                "hairpinMode": True,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": NODE_SUBNET, "gateway": NODE_IP}]],
                    "routes": [{"dst": "0.0.0.0/0"}],
                    "dataDir": str(workdir / "cni-ipam"),
                },
            }
        ],
    }


def kubelet_config(
    workdir: Path, ca: Path, serving: tuple[Path, Path], healthz: int
) -> dict[str, Any]:
    return {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "address": NODE_IP,
        "port": 10250,
        "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1",
        "healthzPort": healthz,
        "tlsCertFile": str(serving[0]),
        "tlsPrivateKeyFile": str(serving[1]),
        "authentication": {
            "anonymous": {"enabled": False},
            "webhook": {"enabled": True},
            "x509": {"clientCAFile": str(ca)},
        },
        "authorization": {"mode": "Webhook"},
        "cgroupDriver": "cgroupfs",
        "containerRuntimeEndpoint": f"unix://{containerd_root(workdir) / 'containerd.sock'}",
        "clusterDNS": [DNS_SERVICE_IP],
        "clusterDomain": CLUSTER_DOMAIN,
        # Pods get the cluster's DNS only, never the host's resolvers.
        "resolvConf": "",
        "podLogsDir": str(workdir / "pod-logs"),
        "failSwapOn": False,
        "failCgroupV1": False,
        # A shared development machine: never evict or garbage-collect images because the
        # disk is fuller than a production node's would be.
        "evictionHard": {
            "memory.available": "100Mi",
            "nodefs.available": "1%",
            "imagefs.available": "1%",
            "nodefs.inodesFree": "1%",
        },
        "imageGCHighThresholdPercent": 100,
        "imageGCLowThresholdPercent": 99,
        "maxPods": 110,
        "serializeImagePulls": False,
    }


def kube_proxy_config(kubeconfig: Path, healthz: int, metrics: int) -> dict[str, Any]:
    return {
        "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
        "kind": "KubeProxyConfiguration",
        "clientConnection": {"kubeconfig": str(kubeconfig)},
        "mode": "iptables",
        "clusterCIDR": POD_CIDR,
        "hostnameOverride": NODE_NAME,
        "bindAddress": NODE_IP,
        "healthzBindAddress": f"127.0.0.1:{healthz}",
        "metricsBindAddress": f"127.0.0.1:{metrics}",
        "nodePortAddresses": [f"{NODE_IP}/32"],
        # Leave the host's conntrack table sizes and timeouts alone, and don't open
        # route_localnet for NodePorts on 127.0.0.1.
        "conntrack": {
            "maxPerCore": 0,
            "min": 0,
            "tcpEstablishedTimeout": "0s",
            "tcpCloseWaitTimeout": "0s",
        },
        "iptables": {"localhostNodePorts": False, "masqueradeAll": False},
    }


def corefile(kubeconfig: Path, health: int, ready: int) -> str:
    # No `forward`: names outside the cluster get no answer, as pods get no internet.
    return f""".:53 {{
    bind {NODE_IP}
    errors
    health 127.0.0.1:{health}
    ready 127.0.0.1:{ready}
    kubernetes {CLUSTER_DOMAIN} in-addr.arpa ip6.arpa {{
        kubeconfig {kubeconfig} fraudpipe-local
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
        ttl 30
    }}
    cache 30
}}
"""


def local_path_config(volumes: Path) -> dict[str, Any]:
    return {"nodePathMap": [{"node": "DEFAULT_PATH_FOR_NON_LISTED_NODES", "paths": [str(volumes)]}]}


def helper_pod(image: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "helper-pod"},
        "spec": {
            "priorityClassName": "system-node-critical",
            "containers": [{"name": "helper-pod", "image": image, "imagePullPolicy": "Never"}],
        },
    }


SETUP_SCRIPT = '#!/bin/sh\nset -eu\nmkdir -m 0777 -p "$VOL_DIR"\n'
TEARDOWN_SCRIPT = '#!/bin/sh\nset -eu\nrm -rf "$VOL_DIR"\n'


def cluster_objects(volumes: Path, helper_image: str) -> list[tuple[str, dict[str, Any]]]:
    """(API path, object) to create once the API answers: the DNS Service and its endpoint
    on the host, the provisioner's namespace and scripts, the default StorageClass."""
    dns_ports = [
        {"name": "dns", "protocol": "UDP", "port": 53},
        {"name": "dns-tcp", "protocol": "TCP", "port": 53},
    ]
    return [
        (
            "/api/v1/namespaces/kube-system/services",
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": "kube-dns", "labels": {"k8s-app": "kube-dns"}},
                "spec": {
                    "clusterIP": DNS_SERVICE_IP,
                    "ports": [{**p, "targetPort": 53} for p in dns_ports],
                },
            },
        ),
        (
            "/apis/discovery.k8s.io/v1/namespaces/kube-system/endpointslices",
            {
                "apiVersion": "discovery.k8s.io/v1",
                "kind": "EndpointSlice",
                "metadata": {
                    "name": "kube-dns-host",
                    "labels": {
                        "kubernetes.io/service-name": "kube-dns",
                        "endpointslice.kubernetes.io/managed-by": "fraudpipe-cluster",
                    },
                },
                "addressType": "IPv4",
                "ports": dns_ports,
                "endpoints": [
                    {
                        "addresses": [NODE_IP],
                        "conditions": {"ready": True},
                        "nodeName": NODE_NAME,
                    }
                ],
            },
        ),
        (
            "/api/v1/namespaces",
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": LOCAL_PATH_NAMESPACE}},
        ),
        (
            f"/api/v1/namespaces/{LOCAL_PATH_NAMESPACE}/configmaps",
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": "local-path-config"},
                "data": {
                    "config.json": json.dumps(local_path_config(volumes)),
                    "setup": SETUP_SCRIPT,
                    "teardown": TEARDOWN_SCRIPT,
                    "helperPod.yaml": yaml.safe_dump(helper_pod(helper_image)),
                },
            },
        ),
        (
            "/apis/storage.k8s.io/v1/storageclasses",
            {
                "apiVersion": "storage.k8s.io/v1",
                "kind": "StorageClass",
                "metadata": {
                    "name": STORAGE_CLASS,
                    "annotations": {"storageclass.kubernetes.io/is-default-class": "true"},
                },
                "provisioner": "rancher.io/local-path",
                "reclaimPolicy": "Delete",
                "volumeBindingMode": "WaitForFirstConsumer",
            },
        ),
    ]


# -- host commands ------------------------------------------------------------------------------
def _run(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(list(argv), capture_output=True, text=True, check=False)
    if check and result.returncode != 0:
        raise StackError(f"node: `{shlex.join(argv)}` failed: {result.stderr.strip()}")
    return result


def _ctr(workdir: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    sock = containerd_root(workdir) / "containerd.sock"
    return _run(
        str(toolchain.find("ctr")), "--address", str(sock), "-n", "k8s.io", *args, check=check
    )


def import_images(workdir: Path, tarballs: list[Path]) -> None:
    """docker-archive or OCI tarballs into the namespace the kubelet's CRI reads."""
    for tarball in tarballs:
        if not tarball.is_file():
            raise StackError(f"node: no image tarball at {tarball}")
        _ctr(workdir, "images", "import", str(tarball))


# The machine holds one node cluster (one bridge, one set of KUBE-* chains). Its owner is
# recorded with a live pid and that process's start time (a pid alone may be reused by then),
# so that no other `up`, `down` or crash cleanup touches the host-wide pieces of a cluster that
# runs from another folder.
OWNER_FILE = network.CLAIMS_DIR.parent / "node-cluster.json"


def _start_time(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (/proc/PID/stat field 22)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def _owner_record() -> dict[str, Any] | None:
    try:
        record = json.loads(OWNER_FILE.read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) and "workdir" in record else None


def _record_alive(record: dict[str, Any]) -> bool:
    pid = int(record.get("pid", 0))
    if pid <= 0 or not alive(pid):
        return False
    return record.get("started") in (None, _start_time(pid))


def machine_owner() -> Path | None:
    """The folder of the node cluster that runs on this machine, if one does."""
    record = _owner_record()
    return Path(record["workdir"]) if record and _record_alive(record) else None


def _claim_machine(workdir: Path, pid: int) -> None:
    OWNER_FILE.parent.mkdir(parents=True, exist_ok=True)
    tmp = OWNER_FILE.with_suffix(".tmp")
    tmp.write_text(json.dumps({"workdir": str(workdir), "pid": pid, "started": _start_time(pid)}))
    tmp.replace(OWNER_FILE)


def _release_machine(workdir: Path) -> None:
    owner = machine_owner()
    if owner is None or owner == workdir:
        OWNER_FILE.unlink(missing_ok=True)


def clear_dead_cluster() -> Path | None:
    """Undo what a node cluster whose processes were killed (a session or CI job ended under
    it) left on the host: its bridge, iptables chains, mounts and shims. Nothing is touched
    while a live cluster owns the machine. Returns the dead cluster's folder when one was
    recorded, so callers can say what they cleared."""
    record = _owner_record()  # read once: a claim written meanwhile is never taken for dead
    if record is not None and _record_alive(record):
        return None
    if record is None and not bridge_exists():
        return None
    # A claim is written before the bridge exists, so a bridge with no live claim is always
    # a dead cluster's; its folder is known only when its claim file survived. Read once more
    # right before anything is torn down: a cluster that claimed the machine meanwhile lives.
    latest = _owner_record()
    if latest is not None and latest != record and _record_alive(latest):
        return None
    dead = Path(record["workdir"]) if record else Path("/nonexistent/fraudpipe-node")
    _kill_processes_under(dead)
    _kill_shims(dead)
    host_cleanup(dead, ip_forward_before=None)
    OWNER_FILE.unlink(missing_ok=True)
    return dead


def _kill_processes_under(workdir: Path) -> None:
    """SIGKILL whatever still runs from a dead cluster's folders (a kubelet or containerd
    that outlived its parent); their files go with the folder's owner, not here."""
    # A whole path component of an argument (`/x/node/...`, `--root=/x/node`), so that
    # `/x/node2` or a mention inside a longer word does not count.
    under = re.compile(
        "(^|[=:,])("
        + "|".join(re.escape(str(r)) for r in (workdir, containerd_root(workdir)))
        + ")(/|$)"
    )
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().decode(errors="replace").split("\0")
        except OSError:
            continue
        if any(under.search(arg) for arg in argv):
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(entry.name), 9)


def preflight(workdir: Path) -> None:
    if os.geteuid() != 0:
        raise StackError(
            "node: a real node needs root (containerd, network devices, iptables, mounts); "
            "run hack/cluster as root"
        )
    if not (CNI_BIN_DIR / "bridge").exists():
        raise StackError(f"node: no CNI plugins in {CNI_BIN_DIR}; run: hack/provision node")
    owner = machine_owner()
    if owner is not None and owner != workdir:
        raise StackError(
            f"node: another node cluster runs on this machine, from {owner.parent}; stop it "
            f"first: FRAUDPIPE_CLUSTER_DIR={owner.parent} hack/cluster down"
        )
    if owner is None and bridge_exists():
        clear_dead_cluster()
    if bridge_exists():
        raise StackError(
            f"node: the bridge {BRIDGE} exists and could not be removed; "
            f"delete it with: ip link del {BRIDGE}"
        )


def bridge_exists() -> bool:
    return _run("ip", "-o", "link", "show", BRIDGE, check=False).returncode == 0


def _bridge_up() -> None:
    _run("ip", "link", "add", BRIDGE, "type", "bridge")
    _run("ip", "addr", "add", f"{NODE_IP}/24", "dev", BRIDGE)
    _run("ip", "link", "set", BRIDGE, "up")


def egress_rule(action: str) -> list[str]:
    # mangle/FORWARD runs before the filter chains kube-proxy manages, so nothing they
    # accept can get past it.
    return [
        *("-t", "mangle", action, "FORWARD", "-i", BRIDGE, "!", "-o", BRIDGE),
        *("-m", "comment", "--comment", EGRESS_COMMENT, "-j", "DROP"),
    ]


def _iptables_rules_left() -> list[str]:
    """Rules and chains of this cluster still on the host (empty after `down`)."""
    left = []
    for save in ("iptables-save", "ip6tables-save"):
        out = _run(save, check=False).stdout
        left += [
            line
            for line in out.splitlines()
            if KUBE_CHAIN_PREFIX in line or EGRESS_COMMENT in line or BRIDGE in line
        ]
    return left


def leftovers(workdir: Path) -> dict[str, list[str]]:
    """What a node cluster leaves on the host; `down` must leave every list empty."""
    roots = (str(workdir), str(containerd_root(workdir)))
    mounts = [m for m in _mountpoints() if m.startswith(roots)]
    links = [
        line.split(":")[1].strip().split("@")[0]
        for line in _run("ip", "-o", "link", "show", check=False).stdout.splitlines()
        if BRIDGE in line
    ]
    routes = [
        line
        for line in _run("ip", "route", "show", check=False).stdout.splitlines()
        if BRIDGE in line
    ]
    procs = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if any(r in cmdline for r in roots):
            procs.append(f"{entry.name} {cmdline.strip()}")
    claim = network.claim_file(workdir)
    if OWNER_FILE.exists() and str(workdir) in OWNER_FILE.read_text():
        claims = [str(OWNER_FILE)]
    else:
        claims = []
    if claim.exists():
        claims.append(str(claim))
    return {
        "processes": procs,
        "mounts": mounts,
        "links": links,
        "routes": routes,
        "claims": claims,
        "iptables": _iptables_rules_left(),
    }


def _mountpoints() -> list[str]:
    return [line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()]


def _clean_iptables() -> None:
    for binary in ("iptables", "ip6tables"):
        saved = _run(f"{binary}-save", check=False).stdout
        table = ""
        jumps: list[tuple[str, list[str]]] = []
        chains: list[tuple[str, str]] = []
        for line in saved.splitlines():
            if line.startswith("*"):
                table = line[1:]
            elif line.startswith(":" + KUBE_CHAIN_PREFIX):
                chains.append((table, line[1:].split()[0]))
            elif line.startswith("-A ") and (
                f"-j {KUBE_CHAIN_PREFIX}" in line or EGRESS_COMMENT in line
            ):
                rule = shlex.split(line)
                if not rule[1].startswith(KUBE_CHAIN_PREFIX):
                    jumps.append((table, ["-D", *rule[1:]]))
        for table, rule in jumps:
            _run(binary, "-t", table, *rule, check=False)
        for table, chain in chains:
            _run(binary, "-t", table, "-F", chain, check=False)
        for table, chain in chains:
            _run(binary, "-t", table, "-X", chain, check=False)


def _remove_kubelet_cgroups() -> None:
    for hierarchy in Path("/sys/fs/cgroup").iterdir():
        top = hierarchy / "kubepods"
        if not top.is_dir():
            continue
        for directory in sorted(
            (p for p in top.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True
        ):
            with contextlib.suppress(OSError):
                directory.rmdir()
        with contextlib.suppress(OSError):
            top.rmdir()


def _kill_shims(workdir: Path) -> None:
    sock = str(containerd_root(workdir) / "containerd.sock")
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if cmdline and b"containerd-shim" in cmdline[0] and sock.encode() in cmdline:
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(entry.name), 9)


def _sandbox_netns(workdir: Path) -> list[str]:
    """The network namespaces of this containerd's sandboxes (bind mounts in /run/netns)."""
    paths = []
    for cid in _ctr(workdir, "containers", "list", "-q", check=False).stdout.split():
        info = _ctr(workdir, "containers", "info", cid, check=False).stdout
        try:
            spec = json.loads(info).get("Spec") or {}
        except ValueError:
            continue
        for ns in spec.get("linux", {}).get("namespaces", []):
            if ns.get("type") == "network" and ns.get("path", "").startswith("/"):
                paths.append(ns["path"])
    return paths


def unmount_under(workdir: Path) -> None:
    """Detach every mount in the cluster's folders (before anything deletes them)."""
    roots = (str(workdir), str(containerd_root(workdir)))
    for mountpoint in sorted(_mountpoints(), key=len, reverse=True):
        if mountpoint.startswith(roots):
            _run("umount", "-l", mountpoint, check=False)


def host_cleanup(workdir: Path, ip_forward_before: str | None) -> None:
    """Undo every host change of the node cluster of `workdir`; safe to run twice or after a
    crash. The host-wide pieces (bridge, iptables, sysctl, cgroups) are left alone while
    another folder's node cluster owns the machine."""
    unmount_under(workdir)
    owner = machine_owner()
    if owner is not None and owner != workdir:
        return
    _clean_iptables()
    for line in _run("ip", "-o", "link", "show", "master", BRIDGE, check=False).stdout.splitlines():
        _run("ip", "link", "del", line.split(":")[1].strip().split("@")[0], check=False)
    _run("ip", "link", "del", BRIDGE, check=False)
    if ip_forward_before is not None and IP_FORWARD.exists():
        IP_FORWARD.write_text(ip_forward_before)
    _remove_kubelet_cgroups()
    _release_machine(workdir)


# -- the service --------------------------------------------------------------------------------
class NodeClusterService:
    name = "node"

    def start(self, workdir: Path) -> Running:
        preflight(workdir)
        ip_forward_before = IP_FORWARD.read_text().strip()
        procs: list[Spawned] = []
        try:
            _claim_machine(workdir, os.getpid())
            _bridge_up()
            _run("iptables", *egress_rule("-I"))
            # On the bridge's address, so pods reach the API through the `kubernetes` Service
            # (operators run in the cluster); the host reaches it there too.
            plane = start_control_plane(workdir, procs, kubelet_access=True, api_address=NODE_IP)
            # The claim lives as long as the cluster's etcd, like the route claim.
            _claim_machine(workdir, procs[0].pid)
            procs.append(self._containerd(workdir))
            import_images(workdir, node_images())
            procs.append(self._kubelet(workdir, plane))
            procs.append(self._kube_proxy(workdir, plane))
            # The API server creates kube-system shortly after it reports ready.
            wait_until(
                lambda: plane.exists("/api/v1/namespaces/kube-system"),
                what="namespace kube-system",
                timeout=60,
                interval=0.5,
            )
            for path, body in cluster_objects(workdir / "volumes", busybox_ref()):
                plane.post(path, body)
            coredns, coredns_ready = self._coredns(workdir, plane)
            procs.append(coredns)
            procs.append(self._local_path(workdir, plane))
            running = Running.of(
                self.name,
                procs,
                {"KUBECONFIG": str(plane.admin), "FRAUDPIPE_NODE_KUBECONFIG": str(plane.admin)},
                **plane.extra(),
                ip_forward_before=ip_forward_before,
                names=[p.name for p in procs],
                coredns_ready=coredns_ready,
            )
            wait_until(
                lambda: any_exited(procs) is not None or self.healthy(running),
                what=f"node {NODE_NAME} Ready with cluster DNS",
                timeout=180,
                interval=1,
            )
            if dead := any_exited(procs):
                raise StackError(f"node: {dead.name} exited. Log {dead.log}:\n{log_tail(dead.log)}")
            return running
        except BaseException:
            self._teardown(workdir, procs, ip_forward_before, api=None)
            raise

    def healthy(self, running: Running) -> bool:
        ready = ready_nodes(running)
        if ready is None or NODE_NAME not in ready:
            return False
        return httpx.get(running.extra["coredns_ready"], timeout=2).status_code == 200

    def stop(self, running: Running) -> None:
        workdir = Path(running.extra["workdir"])
        procs = [
            Spawned(name, pid, Path(log))
            for name, pid, log in zip(
                running.extra["names"], running.pids, running.logs, strict=True
            )
        ]
        self._teardown(workdir, procs, running.extra.get("ip_forward_before"), api=running)

    # -- teardown ---------------------------------------------------------------------------
    def _teardown(
        self,
        workdir: Path,
        procs: list[Spawned],
        ip_forward_before: str | None,
        api: Running | None,
    ) -> None:
        by_name = {p.name: p for p in procs}
        for name in ("local-path-provisioner", "coredns"):
            if name in by_name:
                stop(by_name[name].pid)
        # Nothing may recreate or place pods while they are being removed.
        for name in ("kube-controller-manager", "kube-scheduler"):
            if name in by_name:
                stop(by_name[name].pid)
        kubelet = by_name.get("kubelet")
        if api is not None and kubelet is not None and alive(kubelet.pid):
            # The kubelet stops each pod's sandbox through the CRI, which tears its network
            # down through the CNI plugin: the clean way out for every pod.
            _delete_all_pods(api)
            # A pod already terminating keeps its own grace period; after a few seconds, what
            # is left is killed below instead.
            with contextlib.suppress(StackError):
                wait_until(
                    lambda: not _running_tasks(workdir),
                    what="pods stopped by the kubelet",
                    timeout=8,
                    interval=0.5,
                )
        for name in ("kube-proxy", "kubelet"):
            if name in by_name:
                stop(by_name[name].pid)
        if "containerd" in by_name and alive(by_name["containerd"].pid):
            netns = _sandbox_netns(workdir)
            for task in _running_tasks(workdir):
                _ctr(workdir, "tasks", "kill", "-s", "SIGKILL", task, check=False)
            deadline = time.monotonic() + 10
            while _running_tasks(workdir) and time.monotonic() < deadline:
                time.sleep(0.2)
            for task in _ctr(workdir, "tasks", "list", "-q", check=False).stdout.split():
                _ctr(workdir, "tasks", "delete", "-f", task, check=False)
            for cid in _ctr(workdir, "containers", "list", "-q", check=False).stdout.split():
                _ctr(workdir, "containers", "delete", cid, check=False)
            for path in netns:
                _run("umount", "-l", path, check=False)
                Path(path).unlink(missing_ok=True)
            stop(by_name["containerd"].pid)
        _kill_shims(workdir)
        stop_all([p for p in procs if p.name in CONTROL_PLANE], workdir)
        host_cleanup(workdir, ip_forward_before)

    # -- faults -----------------------------------------------------------------------------
    def restart_containerd(self, running: Running) -> Running:
        """Stop containerd (SIGTERM to it alone: the shims, in process groups of their own,
        keep every container running) and start it again on the same state, as a node's
        `systemctl restart containerd` does; returns the record with the new pid."""
        workdir = Path(running.extra["workdir"])
        at = running.extra["names"].index("containerd")
        old = running.pids[at]
        with contextlib.suppress(ProcessLookupError):
            os.kill(old, signal.SIGTERM)
        wait_until(lambda: not alive(old), what="containerd stopped", timeout=30, interval=0.2)
        proc = self._spawn_containerd(workdir)
        pids = list(running.pids)
        pids[at] = proc.pid
        return replace(running, pids=pids)

    # -- components -------------------------------------------------------------------------
    def _containerd(self, workdir: Path) -> Spawned:
        root = containerd_root(workdir)
        root.mkdir(parents=True, exist_ok=True)
        (workdir / "cni").mkdir()
        (workdir / "cni" / "10-fraudpipe.conflist").write_text(json.dumps(cni_config(workdir)))
        (workdir / "containerd.toml").write_text(containerd_config(workdir))
        return self._spawn_containerd(workdir)

    def _spawn_containerd(self, workdir: Path) -> Spawned:
        config = workdir / "containerd.toml"
        proc = spawn(
            "containerd",
            [str(toolchain.find("containerd")), f"--config={config}", "--log-level=warn"],
            workdir / "containerd.log",
            env={"PATH": _node_path()},
        )
        wait_until(
            lambda: _ctr(workdir, "version", check=False).returncode == 0,
            what="containerd",
            proc=proc,
            timeout=60,
            interval=0.3,
        )
        return proc

    def _kubelet(self, workdir: Path, plane: ControlPlane) -> Spawned:
        kubeconfig = plane.kubeconfig("kubelet", f"system:node:{NODE_NAME}", "system:nodes")
        serving = plane.ca.issue(
            "kubelet-serving", NODE_NAME, server=True, dns=(NODE_NAME,), ips=(NODE_IP,)
        )
        healthz = free_port()
        config = workdir / "kubelet.yaml"
        config.write_text(
            yaml.safe_dump(
                kubelet_config(workdir, plane.ca.pair.cert, (serving.cert, serving.key), healthz)
            )
        )
        proc = spawn(
            "kubelet",
            [
                str(toolchain.find("kubelet")),
                f"--config={config}",
                f"--kubeconfig={kubeconfig}",
                f"--root-dir={workdir / 'kubelet'}",
                f"--hostname-override={NODE_NAME}",
                f"--node-ip={NODE_IP}",
                "--v=1",
            ],
            workdir / "kubelet.log",
            env={"PATH": _node_path()},
        )
        wait_until(
            lambda: httpx.get(f"http://127.0.0.1:{healthz}/healthz", timeout=2).text == "ok",
            what="kubelet",
            proc=proc,
            timeout=120,
            interval=0.5,
        )
        return proc

    def _kube_proxy(self, workdir: Path, plane: ControlPlane) -> Spawned:
        kubeconfig = plane.kubeconfig("kube-proxy", "system:kube-proxy")
        config = workdir / "kube-proxy.yaml"
        config.write_text(yaml.safe_dump(kube_proxy_config(kubeconfig, free_port(), free_port())))
        return spawn(
            "kube-proxy",
            [str(toolchain.find("kube-proxy")), f"--config={config}", "--v=1"],
            workdir / "kube-proxy.log",
            env={"PATH": _node_path()},
        )

    def _coredns(self, workdir: Path, plane: ControlPlane) -> tuple[Spawned, str]:
        """CoreDNS and the URL that answers 200 once its kubernetes plugin has synced."""
        health, ready = free_port(), free_port()
        config = workdir / "Corefile"
        config.write_text(corefile(plane.admin, health, ready))
        proc = spawn(
            "coredns",
            [str(toolchain.find("coredns")), "-conf", str(config)],
            workdir / "coredns.log",
            cwd=workdir,
        )
        return proc, f"http://127.0.0.1:{ready}/ready"

    def _local_path(self, workdir: Path, plane: ControlPlane) -> Spawned:
        volumes = workdir / "volumes"
        volumes.mkdir()
        config = workdir / "local-path-config.json"
        config.write_text(json.dumps(local_path_config(volumes)))
        helper = workdir / "local-path-helper-pod.yaml"
        helper.write_text(yaml.safe_dump(helper_pod(busybox_ref())))
        return spawn(
            "local-path-provisioner",
            [
                str(toolchain.find("local-path-provisioner")),
                "start",
                f"--kubeconfig={plane.admin}",
                f"--config={config}",
                f"--helper-pod-file={helper}",
                f"--namespace={LOCAL_PATH_NAMESPACE}",
                "--configmap-name=local-path-config",
                "--service-account-name=default",
                f"--helper-image={busybox_ref()}",
            ],
            workdir / "local-path-provisioner.log",
        )


CONTROL_PLANE = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler")


def _node_path() -> str:
    # The kubelet and containerd find runc, the shim, iptables and mount helpers on PATH.
    return ":".join(
        [
            str(toolchain.bin_dir()),
            "/usr/local/sbin",
            "/usr/local/bin",
            "/usr/sbin",
            "/usr/bin",
            "/sbin",
            "/bin",
        ]
    )


def _running_tasks(workdir: Path) -> list[str]:
    out = _ctr(workdir, "tasks", "list", check=False).stdout.splitlines()[1:]
    return [line.split()[0] for line in out if line.split() and line.split()[-1] == "RUNNING"]


def _delete_all_pods(api: Running) -> None:
    context = tls_context(
        Path(api.extra["ca"]), Path(api.extra["admin_cert"]), Path(api.extra["admin_key"])
    )
    server = api.extra["server"]
    try:
        namespaces = httpx.get(f"{server}/api/v1/namespaces", verify=context, timeout=10).json()
        for ns in namespaces.get("items", []):
            httpx.request(
                "DELETE",
                f"{server}/api/v1/namespaces/{ns['metadata']['name']}/pods",
                params={"gracePeriodSeconds": "0"},
                verify=context,
                timeout=30,
            )
    except httpx.HTTPError:
        pass  # the forced cleanup after it still removes everything
