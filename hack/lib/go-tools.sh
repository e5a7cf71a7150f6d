# Builds Kubernetes, etcd, kwok, helm and the S3 server from the Go module proxy at the pinned versions.
# Sourced by hack/provision after common.sh.

# k8s.io/kubernetes points its staging modules (k8s.io/api, k8s.io/client-go, ...) at
# ./staging with replace directives, which `go install pkg@version` refuses. A small wrapper
# module requires k8s.io/kubernetes and replaces each staging module with its published
# v0.X.Y twin, read from the real go.mod so the list is always the version's own.
KUBE_COMMANDS=(kube-apiserver kube-controller-manager kube-scheduler kubectl)

build_kube() {
  local dest="$FRAUDPIPE_CACHE/kube-$KUBERNETES_VERSION" cmds=("$@")
  [[ ${#cmds[@]} -gt 0 ]] || cmds=("${KUBE_COMMANDS[@]}")
  local missing=() c
  for c in "${cmds[@]}"; do
    local existing
    if [[ ! -x "$dest/bin/$c" ]] && existing="$(find_existing "$c" "$(minor_of "$KUBERNETES_VERSION")" --version)"; then
      log "$c: using $existing (version fits $KUBERNETES_VERSION)"; link_tool "$c" "$existing"; continue
    fi
    [[ -x "$dest/bin/$c" ]] || missing+=("$c")
  done
  if [[ ${#missing[@]} -gt 0 ]]; then
    go_env
    local src="$FRAUDPIPE_CACHE/src/kube-$KUBERNETES_VERSION"
    local staging="v0.${KUBERNETES_VERSION#v1.}"
    mkdir -p "$src" "$dest/bin"
    log "kubernetes $KUBERNETES_VERSION: building ${missing[*]} (cold: ~10-20 min on 2 cores)"
    (
      cd "$src"
      printf 'module fraudpipe.local/kube-build\n\ngo 1.24\n\nrequire k8s.io/kubernetes %s\n' "$KUBERNETES_VERSION" >go.mod
      local upstream_mod
      upstream_mod="$(go mod download -json "k8s.io/kubernetes@$KUBERNETES_VERSION" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')" \
        || die kubernetes "download k8s.io/kubernetes@$KUBERNETES_VERSION from the Go module proxy" "check GOPROXY and that $KUBERNETES_VERSION exists (go list -m -versions k8s.io/kubernetes)"
      {
        echo; echo 'replace ('
        sed -nE 's#^[[:space:]]*(k8s\.io/[A-Za-z0-9._-]+) => \./staging/src/.*#\t\1 => \1 '"$staging"'#p' "$upstream_mod"
        echo ')'
      } >>go.mod
      local pkgs=() ldflags
      for c in "${missing[@]}"; do pkgs+=("k8s.io/kubernetes/cmd/$c"); done
      ldflags="-s -w"
      for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
        ldflags+=" -X $p.gitVersion=$KUBERNETES_VERSION -X $p.gitMajor=1"
        ldflags+=" -X $p.gitMinor=$(minor_of "$KUBERNETES_VERSION" | cut -d. -f2) -X $p.gitTreeState=clean"
      done
      go build -mod=mod -ldflags "$ldflags" -o "$dest/bin/" "${pkgs[@]}"
    ) || die kubernetes "go build ${missing[*]} at $KUBERNETES_VERSION" "read the Go error above; a new Go release may need a newer KUBERNETES_VERSION in hack/versions.env"
  fi
  for c in "${cmds[@]}"; do [[ -x "$dest/bin/$c" ]] && link_tool "$c" "$dest/bin/$c"; done
  return 0
}

# etcd's main package lives in its root module, which replaces its sub-modules with local
# paths; a wrapper module calls etcdmain.Main from the published server module instead.
build_etcd() {
  local dest="$FRAUDPIPE_CACHE/etcd-$ETCD_VERSION" existing
  if [[ ! -x "$dest/bin/etcd" ]] && existing="$(find_existing etcd "$(minor_of "$ETCD_VERSION")" --version)"; then
    log "etcd: using $existing"; link_tool etcd "$existing"; return 0
  fi
  if [[ ! -x "$dest/bin/etcd" ]]; then
    go_env
    local src="$FRAUDPIPE_CACHE/src/etcd-$ETCD_VERSION"
    mkdir -p "$src" "$dest/bin"
    log "etcd $ETCD_VERSION: building"
    (
      cd "$src"
      printf 'module fraudpipe.local/etcd-build\n\ngo 1.24\n\nrequire go.etcd.io/etcd/server/v3 %s\n' "$ETCD_VERSION" >go.mod
      printf 'package main\n\nimport (\n\t"os"\n\n\t"go.etcd.io/etcd/server/v3/etcdmain"\n)\n\nfunc main() { etcdmain.Main(os.Args) }\n' >main.go
      go build -mod=mod -ldflags "-s -w" -o "$dest/bin/etcd" .
    ) || die etcd "go build go.etcd.io/etcd/server/v3/etcdmain at $ETCD_VERSION" "read the Go error above; try another ETCD_VERSION (3.5+/3.6) in hack/versions.env"
  fi
  link_tool etcd "$dest/bin/etcd"
}

# go_install_tool NAME PACKAGE VERSION LDFLAGS: for modules without replace directives.
go_install_tool() {
  local name="$1" pkg="$2" version="$3" ldflags="$4"
  local dest="$FRAUDPIPE_CACHE/$name-$version"
  if [[ ! -x "$dest/bin/$name" ]]; then
    go_env
    log "$name $version: building"
    GOBIN="$dest/bin" go install -ldflags "-s -w $ldflags" "$pkg@$version" \
      || die "$name" "go install $pkg@$version" "read the Go error above; check the version in hack/versions.env (go list -m -versions ${pkg%/cmd/*})"
  fi
  link_tool "$name" "$dest/bin/$name"
}

# kwok simulates nothing without Stage definitions (how nodes heartbeat, how pods go from
# Pending to Running and away). The kwok module ships its standard ones; we concatenate the
# fast node start, lease heartbeats and the general pod lifecycle into one config file.
KWOK_STAGE_SETS=(node/fast node/heartbeat-with-lease pod/general)

build_kwok() {
  local dest="$FRAUDPIPE_CACHE/kwok-$KWOK_VERSION" existing
  if [[ ! -x "$dest/bin/kwok" ]] && existing="$(find_existing kwok "$(minor_of "$KWOK_VERSION")" --version)"; then
    log "kwok: using $existing"; link_tool kwok "$existing"
  else
    go_install_tool kwok sigs.k8s.io/kwok/cmd/kwok "$KWOK_VERSION" \
      "-X sigs.k8s.io/kwok/pkg/consts.Version=$KWOK_VERSION"
  fi
  if [[ ! -s "$dest/stages.yaml" ]]; then
    go_env
    local module set file
    module="$(go mod download -json "sigs.k8s.io/kwok@$KWOK_VERSION" | sed -n 's/.*"Dir": "\(.*\)".*/\1/p')" \
      || die kwok "download sigs.k8s.io/kwok@$KWOK_VERSION for its stage definitions" "check GOPROXY"
    mkdir -p "$dest"
    for set in "${KWOK_STAGE_SETS[@]}"; do
      for file in $(sed -n 's/^- //p' "$module/kustomize/stage/$set/kustomization.yaml"); do
        echo "---"; cat "$module/kustomize/stage/$set/$file"
      done
    done >"$dest/stages.yaml.tmp" && mv "$dest/stages.yaml.tmp" "$dest/stages.yaml"
  fi
  ln -sfn "$dest/stages.yaml" "$FRAUDPIPE_CACHE/kwok-stages.yaml"
}

build_helm() {
  local existing
  if [[ ! -x "$FRAUDPIPE_CACHE/helm-$HELM_VERSION/bin/helm" ]] && existing="$(find_existing helm "$(minor_of "$HELM_VERSION")" version --short)"; then
    log "helm: using $existing"; link_tool helm "$existing"; return 0
  fi
  go_install_tool helm helm.sh/helm/v3/cmd/helm "$HELM_VERSION" \
    "-X helm.sh/helm/v3/internal/version.version=$HELM_VERSION"
}

# versitygw serves the S3 API over a POSIX directory: a real server (signatures, multipart,
# listing) for the archive's tests without a cluster of SeaweedFS processes or MinIO's AGPL.
build_s3server() {
  go_install_tool versitygw github.com/versity/versitygw/cmd/versitygw "$VERSITYGW_VERSION" \
    "-X main.Version=$VERSITYGW_VERSION"
}
