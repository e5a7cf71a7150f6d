# The parts of a real single-node cluster (hack/cluster): containerd, runc, the CNI plugins and
# iptables from Debian; kubelet and kube-proxy from the same Kubernetes build as the control
# plane; CoreDNS and the local-path provisioner from the Go module proxy; the sandbox (pause)
# program compiled from the C source that ships in the k8s.io/kubernetes module.
# Sourced by hack/provision after common.sh and go-tools.sh.

NODE_APT_PACKAGES=(containerd runc containernetworking-plugins iptables conntrack busybox-static)

# The file each package must provide, so a warm run costs one stat per package.
declare -A NODE_APT_PROBES=(
  [containerd]=/usr/bin/containerd [runc]=/usr/sbin/runc
  [containernetworking-plugins]=/usr/lib/cni/bridge [iptables]=/usr/sbin/iptables
  [conntrack]=/usr/sbin/conntrack [busybox-static]=/bin/busybox
)

provision_node() {
  provision_node_apt
  build_kube kubelet kube-proxy
  build_coredns
  build_local_path_provisioner
  build_pause
}

provision_node_apt() {
  local missing=() p
  for p in "${NODE_APT_PACKAGES[@]}"; do
    [[ -e "${NODE_APT_PROBES[$p]}" ]] || missing+=("$p")
  done
  [[ ${#missing[@]} -eq 0 ]] && return 0
  local sudo=""
  [[ $(id -u) -eq 0 ]] || sudo="sudo"
  command -v apt-get >/dev/null || die "${missing[*]}" "find apt-get" "install these Debian packages by hand: ${missing[*]}"
  log "apt: installing ${missing[*]}"
  # hack/cluster runs its own containerd with its own socket and state; the package's system
  # service must not start (and would not find systemd here anyway).
  local policy=/usr/sbin/policy-rc.d created=""
  if [[ ! -e $policy ]]; then
    printf '#!/bin/sh\nexit 101\n' | $sudo tee "$policy" >/dev/null && $sudo chmod +x "$policy" && created=1
  fi
  local rc=0
  { $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null; } || rc=$?
  [[ -n "$created" ]] && $sudo rm -f "$policy"
  [[ $rc -eq 0 ]] || die "${missing[*]}" "apt-get install" "run 'apt-get update' and retry; these packages come from Debian bookworm main"
}

# CoreDNS with only the plugins the node's Corefile uses (CoreDNS's documented way to choose
# plugins: a main package of one's own that imports them and sets the directive order, as
# plugin.cfg orders them). The full build compiles every cloud provider's SDK, about twice
# the time for nothing the node needs.
COREDNS_PLUGINS=(bind ready health errors log cache kubernetes)

build_coredns() {
  local dest="$FRAUDPIPE_CACHE/coredns-$COREDNS_VERSION-node"
  if [[ ! -x "$dest/bin/coredns" ]]; then
    go_env
    local src="$FRAUDPIPE_CACHE/src/coredns-$COREDNS_VERSION-node" p
    mkdir -p "$src" "$dest/bin"
    log "coredns $COREDNS_VERSION: building with plugins ${COREDNS_PLUGINS[*]}"
    (
      cd "$src"
      printf 'module fraudpipe.local/coredns-build\n\ngo 1.24\n\nrequire github.com/coredns/coredns %s\n' "$COREDNS_VERSION" >go.mod
      {
        printf 'package main\n\nimport (\n\t"github.com/coredns/coredns/core/dnsserver"\n\t"github.com/coredns/coredns/coremain"\n'
        for p in "${COREDNS_PLUGINS[@]}"; do printf '\t_ "github.com/coredns/coredns/plugin/%s"\n' "$p"; done
        printf ')\n\nfunc init() {\n\tdnsserver.Directives = []string{'
        for p in "${COREDNS_PLUGINS[@]}"; do printf '"%s", ' "$p"; done
        printf '}\n}\n\nfunc main() { coremain.Run() }\n'
      } >main.go
      go build -mod=mod -ldflags "-s -w -X github.com/coredns/coredns/coremain.GitCommit=$COREDNS_VERSION" -o "$dest/bin/coredns" .
    ) || die coredns "go build github.com/coredns/coredns/coremain at $COREDNS_VERSION with plugins ${COREDNS_PLUGINS[*]}" \
      "read the Go error above; check COREDNS_VERSION in hack/versions.env (go list -m -versions github.com/coredns/coredns)"
  fi
  link_tool coredns "$dest/bin/coredns"
}

build_local_path_provisioner() {
  go_install_tool local-path-provisioner github.com/rancher/local-path-provisioner \
    "$LOCAL_PATH_PROVISIONER_VERSION" "-X main.VERSION=$LOCAL_PATH_PROVISIONER_VERSION"
}

# The sandbox image's only program: build/pause/linux/pause.c of the pinned Kubernetes module,
# compiled as upstream does (static, -Os) with the machine's gcc and glibc's libc.a.
build_pause() {
  local dest="$FRAUDPIPE_CACHE/pause-$PAUSE_VERSION"
  if [[ ! -x "$dest/pause" ]]; then
    go_env
    command -v gcc >/dev/null || die pause "locate gcc" "apt-get install gcc libc6-dev"
    local module
    module="$(go mod download -json "k8s.io/kubernetes@$KUBERNETES_VERSION" | sed -n 's/.*"Dir": "\(.*\)".*/\1/p')" \
      || die pause "download k8s.io/kubernetes@$KUBERNETES_VERSION for build/pause/linux/pause.c" "check GOPROXY"
    mkdir -p "$dest"
    log "pause $PAUSE_VERSION: compiling $module/build/pause/linux/pause.c"
    gcc -Os -Wall -Werror -static -DVERSION="v$PAUSE_VERSION-fraudpipe" \
      -o "$dest/pause.tmp" "$module/build/pause/linux/pause.c" \
      || die pause "gcc -static build/pause/linux/pause.c" "install libc6-dev (for libc.a) and gcc"
    strip "$dest/pause.tmp" && mv "$dest/pause.tmp" "$dest/pause"
  fi
  link_tool pause "$dest/pause"
}
