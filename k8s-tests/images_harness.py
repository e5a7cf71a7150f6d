"""Running the images hack/images builds, as a kubelet would run them, without a cluster.

An image's root filesystem is mounted by buildah and started with runc: read-only, as the
image's own user, every capability dropped, no new privileges, and only the writable mounts a
pod would give it. The container shares the host's network namespace, so its servers are told
to listen on 127.0.0.1 only.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
HACK_IMAGES = REPO / "hack" / "images"
RUNC = shutil.which("runc") or "/usr/sbin/runc"


def image_ref(name: str) -> str:
    return subprocess.run(
        [str(HACK_IMAGES), "ref", name], check=True, capture_output=True, text=True
    ).stdout.strip()


def image_config(ref: str) -> dict[str, Any]:
    out = subprocess.run(
        ["buildah", "inspect", "--type", "image", ref], check=True, capture_output=True, text=True
    ).stdout
    config: dict[str, Any] = json.loads(out)["OCIv1"]["config"]
    return config


def image_user(config: dict[str, Any]) -> tuple[int, int]:
    """The image's USER as numbers (a kubelet needs a numeric USER for runAsNonRoot)."""
    user = config.get("User") or "0"
    uid, _, gid = user.partition(":")
    return int(uid), int(gid or uid)


@dataclass
class Volume:
    """A writable mount: a host folder (data that must outlive the container) or a tmpfs."""

    destination: str
    host_path: Path | None = None
    owner: tuple[int, int] | None = None


@dataclass
class Container:
    id: str
    bundle: Path
    log: Path
    proc: subprocess.Popen[bytes]
    cleanups: list[Callable[[], None]] = field(default_factory=list)

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def running(self) -> bool:
        return self.proc.poll() is None

    def wait(self, timeout: float) -> int:
        return self.proc.wait(timeout=timeout)

    def stop(self) -> None:
        if self.running():
            subprocess.run([RUNC, "kill", self.id, "TERM"], capture_output=True, check=False)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                subprocess.run([RUNC, "kill", self.id, "KILL"], capture_output=True, check=False)
                self.proc.wait(timeout=10)
        subprocess.run([RUNC, "delete", "--force", self.id], capture_output=True, check=False)
        for cleanup in reversed(self.cleanups):
            cleanup()


def _quietly(*command: str) -> None:
    subprocess.run(command, capture_output=True, check=False)


def _mounts(volumes: Sequence[Volume], uid: int, gid: int) -> list[dict[str, Any]]:
    mounts: list[dict[str, Any]] = [
        {"destination": "/proc", "type": "proc", "source": "proc"},
        {
            "destination": "/dev",
            "type": "tmpfs",
            "source": "tmpfs",
            "options": ["nosuid", "strictatime", "mode=755", "size=65536k"],
        },
        {
            "destination": "/dev/pts",
            "type": "devpts",
            "source": "devpts",
            "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"],
        },
        {
            "destination": "/dev/shm",
            "type": "tmpfs",
            "source": "shm",
            "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"],
        },
        {
            "destination": "/sys",
            "type": "sysfs",
            "source": "sysfs",
            "options": ["nosuid", "noexec", "nodev", "ro"],
        },
    ]
    for volume in volumes:
        if volume.host_path is None:
            owner_uid, owner_gid = volume.owner or (uid, gid)
            mounts.append(
                {
                    "destination": volume.destination,
                    "type": "tmpfs",
                    "source": "tmpfs",
                    "options": [
                        "nosuid",
                        "nodev",
                        "mode=0770",
                        f"uid={owner_uid}",
                        f"gid={owner_gid}",
                        "size=262144k",
                    ],
                }
            )
        else:
            mounts.append(
                {
                    "destination": volume.destination,
                    "type": "bind",
                    "source": str(volume.host_path),
                    "options": ["rbind", "rw"],
                }
            )
    return mounts


@contextmanager
def run_image(
    ref: str,
    workdir: Path,
    *,
    args: Sequence[str] | None = None,
    command: Sequence[str] | None = None,
    env: dict[str, str] | None = None,
    volumes: Sequence[Volume] = (),
) -> Iterator[Container]:
    """Start `ref` as a kubelet would: `command` replaces the ENTRYPOINT, `args` the CMD."""
    config = image_config(ref)
    uid, gid = image_user(config)
    entrypoint = list(command if command is not None else config.get("Entrypoint") or [])
    process_args = entrypoint + list(args if args is not None else config.get("Cmd") or [])
    environment = dict(e.split("=", 1) for e in config.get("Env") or [])
    environment.update(env or {})
    for volume in volumes:
        if volume.host_path is not None:
            volume.host_path.mkdir(parents=True, exist_ok=True)
            os.chown(volume.host_path, *(volume.owner or (uid, gid)))

    name = f"fraudpipe-test-{uuid.uuid4().hex[:10]}"
    cleanups: list[Callable[[], None]] = []
    working = subprocess.run(
        ["buildah", "from", "--quiet", "--pull=never", "--name", name, ref],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    cleanups.append(lambda: _quietly("buildah", "rm", working))
    try:
        rootfs = subprocess.run(
            ["buildah", "mount", working], check=True, capture_output=True, text=True
        ).stdout.strip()
        cleanups.append(lambda: _quietly("buildah", "umount", working))
        bundle = workdir / name
        bundle.mkdir(parents=True)
        spec = {
            "ociVersion": "1.0.2",
            "process": {
                "terminal": False,
                "user": {"uid": uid, "gid": gid},
                "args": process_args,
                "env": [f"{k}={v}" for k, v in environment.items()],
                "cwd": config.get("WorkingDir") or "/",
                "capabilities": {k: [] for k in ("bounding", "effective", "permitted")},
                "noNewPrivileges": True,
            },
            "root": {"path": rootfs, "readonly": True},
            "hostname": "fraudpipe-test",
            "mounts": _mounts(volumes, uid, gid),
            "linux": {
                # No network namespace: servers listen on the host's loopback.
                "namespaces": [{"type": t} for t in ("pid", "ipc", "uts", "mount")],
                "maskedPaths": ["/proc/kcore", "/proc/keys", "/sys/firmware"],
                "readonlyPaths": ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys"],
            },
        }
        (bundle / "config.json").write_text(json.dumps(spec, indent=2))
        log = bundle / "output.log"
        # Append mode: the container's stdout and stderr may be reopened as separate files.
        with log.open("ab") as out:
            proc = subprocess.Popen(
                [RUNC, "run", "--bundle", str(bundle), name],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        container = Container(name, bundle, log, proc, cleanups)
    except BaseException:
        for cleanup in reversed(cleanups):
            cleanup()
        raise
    try:
        yield container
    finally:
        container.stop()


def run_to_completion(
    ref: str, workdir: Path, timeout: float = 120, **kwargs: Any
) -> tuple[int, str]:
    with run_image(ref, workdir, **kwargs) as container:
        code = container.wait(timeout)
        return code, container.output()


def wait_for(check: Callable[[], Any], what: str, container: Container, within_s: float) -> Any:
    deadline = time.monotonic() + within_s
    last_error: BaseException | None = None
    while time.monotonic() < deadline:
        if not container.running():
            raise AssertionError(f"{what}: the container exited:\n{container.output()[-3000:]}")
        try:
            result = check()
            if result:
                return result
        except Exception as exc:  # the server is not up yet
            last_error = exc
        time.sleep(0.5)
    raise AssertionError(
        f"{what}: not reached within {within_s}s ({last_error!r}):\n{container.output()[-3000:]}"
    )
