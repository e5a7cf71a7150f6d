"""The node's own images (the pod sandbox and a busybox for tests and volume helpers), written
as docker-archive tarballs from static binaries on this machine: no registry, no builder.

`ctr images import` reads a docker-archive and names the image after its RepoTags, so the
tarball alone carries the reference the kubelet asks for. Every timestamp is zero, so the same
binary always gives the same image digest and a tarball is rebuilt only when its input changed.
"""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
import tarfile
from dataclasses import dataclass, field
from pathlib import Path

from fraudpipe_testing import toolchain

IMAGE_REPO = "localhost/fraudpipe"


@dataclass(frozen=True)
class Layer:
    """One layer: files copied from the host, files given by content, and symlinks,
    everything owned by root."""

    files: dict[str, Path] = field(default_factory=dict)
    contents: dict[str, bytes] = field(default_factory=dict)
    symlinks: dict[str, str] = field(default_factory=dict)
    directories: tuple[str, ...] = ()

    def tar(self) -> bytes:
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
            named = (*self.files, *self.contents, *self.symlinks)
            parents = {p for path in named for p in _parents(path)}
            for directory in sorted(parents | {d.strip("/") for d in self.directories}):
                info = tarfile.TarInfo(directory)
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                tar.addfile(info)
            for name, source in sorted(self.files.items()):
                data = source.read_bytes()
                info = tarfile.TarInfo(name.strip("/"))
                info.size, info.mode = len(data), 0o755
                tar.addfile(info, io.BytesIO(data))
            for name, content in sorted(self.contents.items()):
                info = tarfile.TarInfo(name.strip("/"))
                info.size, info.mode = len(content), 0o644
                tar.addfile(info, io.BytesIO(content))
            for name, target in sorted(self.symlinks.items()):
                info = tarfile.TarInfo(name.strip("/"))
                info.type, info.linkname, info.mode = tarfile.SYMTYPE, target, 0o777
                tar.addfile(info)
        return buffer.getvalue()


def _parents(path: str) -> list[str]:
    parts = path.strip("/").split("/")[:-1]
    return ["/".join(parts[: i + 1]) for i in range(len(parts))]


def docker_archive(
    ref: str, layer: Layer, entrypoint: list[str], *, cmd: list[str] | None = None, user: str = ""
) -> bytes:
    """A single-layer image as `docker save` writes it (manifest.json, config, layer)."""
    layer_tar = layer.tar()
    diff_id = "sha256:" + hashlib.sha256(layer_tar).hexdigest()
    config = {
        "architecture": "amd64",
        "os": "linux",
        "created": "1970-01-01T00:00:00Z",
        "config": {
            "Entrypoint": entrypoint or None,
            "Cmd": cmd,
            "Env": ["PATH=/bin:/usr/bin"],
            "User": user,
        },
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        "history": [{"created": "1970-01-01T00:00:00Z", "created_by": "fraudpipe node_images"}],
    }
    config_bytes = json.dumps(config, sort_keys=True).encode()
    config_name = hashlib.sha256(config_bytes).hexdigest() + ".json"
    layer_name = diff_id.removeprefix("sha256:") + "/layer.tar"
    manifest = [{"Config": config_name, "RepoTags": [ref], "Layers": [layer_name]}]
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in (
            (config_name, config_bytes),
            (layer_name, layer_tar),
            ("manifest.json", json.dumps(manifest).encode()),
        ):
            for parent in _parents(name):
                info = tarfile.TarInfo(parent)
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                tar.addfile(info)
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def pause_ref() -> str:
    return f"{IMAGE_REPO}/pause:{toolchain.versions()['PAUSE_VERSION']}"


def busybox_ref() -> str:
    return f"{IMAGE_REPO}/busybox:{_busybox_version()}"


def _busybox_version() -> str:
    # "BusyBox v1.35.0 (Debian 1:1.35.0-4+deb12u1+b1) multi-call binary."
    banner = subprocess.run(
        [str(toolchain.find("busybox"))], capture_output=True, text=True, check=False
    ).stdout
    words = banner.split()
    return words[1].removeprefix("v") if len(words) > 1 else "local"


def busybox_applets(busybox: Path) -> list[str]:
    listed = subprocess.run(
        [str(busybox), "--list"], capture_output=True, text=True, check=True
    ).stdout
    return sorted({a for a in listed.split() if a and a != "busybox"})


def pause_image() -> bytes:
    layer = Layer(files={"pause": toolchain.find("pause")})
    return docker_archive(pause_ref(), layer, ["/pause"], user="65535:65535")


# Debian's busybox-static is linked against glibc, whose name lookups (wget's getaddrinfo, even
# for a numeric address) load the NSS modules at run time and crash without them. They come
# from the machine's libc6, the very glibc that busybox-static was built with (Built-Using).
GLIBC_RUNTIME = (
    "lib/x86_64-linux-gnu/libc.so.6",
    "lib/x86_64-linux-gnu/libnss_files.so.2",
    "lib/x86_64-linux-gnu/libnss_dns.so.2",
    "lib/x86_64-linux-gnu/libresolv.so.2",
    "lib/x86_64-linux-gnu/ld-linux-x86-64.so.2",
)


def busybox_image() -> bytes:
    """busybox-static with every applet linked in /bin: a shell, wget, nslookup, httpd."""
    busybox = toolchain.find("busybox")
    links = {f"bin/{applet}": "busybox" for applet in busybox_applets(busybox)}
    links["lib64/ld-linux-x86-64.so.2"] = "/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2"
    files = {"bin/busybox": busybox}
    files |= {lib: (Path("/") / lib).resolve() for lib in GLIBC_RUNTIME}
    layer = Layer(
        files=files,
        contents={"etc/nsswitch.conf": b"hosts: files dns\n"},
        symlinks=links,
        directories=("tmp",),
    )
    # Like the official busybox image: no entrypoint, so `command` or `args` run as given.
    return docker_archive(busybox_ref(), layer, [], cmd=["sh"])


def node_images() -> list[Path]:
    """The tarballs of the node's images, cached by content under the toolchain cache."""
    out_dir = toolchain.cache_dir() / "node-images"
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, build in (("pause", pause_image), ("busybox", busybox_image)):
        data = build()
        path = out_dir / f"{name}-{hashlib.sha256(data).hexdigest()[:16]}.tar"
        if not path.exists():
            tmp = path.with_suffix(".tmp")
            tmp.write_bytes(data)
            tmp.replace(path)
        paths.append(path)
    return paths
