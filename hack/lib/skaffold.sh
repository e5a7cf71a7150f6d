# skaffold (built from the Go module proxy) and what its local-node profile needs.
# Sourced by hack/provision after common.sh and go-tools.sh.

# skaffold's go.mod replaces a few of its dependencies with other published versions (docker,
# viper, ...) and excludes one, which `go install pkg@version` refuses. As for Kubernetes, a
# small wrapper module requires skaffold and repeats those directives, copied from the
# version's own go.mod so the list is always that version's.
build_skaffold() {
  local dest="$FRAUDPIPE_CACHE/skaffold-$SKAFFOLD_VERSION" existing
  if [[ ! -x "$dest/bin/skaffold" ]] && existing="$(find_existing skaffold "$(minor_of "$SKAFFOLD_VERSION")" version)"; then
    log "skaffold: using $existing"; link_tool skaffold "$existing"; return 0
  fi
  if [[ ! -x "$dest/bin/skaffold" ]]; then
    go_env
    local src="$FRAUDPIPE_CACHE/src/skaffold-$SKAFFOLD_VERSION" module=github.com/GoogleContainerTools/skaffold/v2
    mkdir -p "$src" "$dest/bin"
    log "skaffold $SKAFFOLD_VERSION: building (cold: ~5 min on 2 idle cores, 16 measured under heavy load)"
    (
      cd "$src"
      local upstream_mod
      upstream_mod="$(go mod download -json "$module@$SKAFFOLD_VERSION" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')"
      [[ -s "$upstream_mod" ]] || exit 2
      printf 'module fraudpipe.local/skaffold-build\n\ngo 1.24.1\n\nrequire %s %s\n\n' "$module" "$SKAFFOLD_VERSION" >go.mod
      grep -E '^(replace|exclude) ' "$upstream_mod" >>go.mod || true
    ) || die skaffold "download $module@$SKAFFOLD_VERSION from the Go module proxy" \
      "check GOPROXY; the proxy refuses some versions (v2.17.0 here): pick one it serves in SKAFFOLD_VERSION (go mod download -json $module@vX.Y.Z)"
    (
      cd "$src"
      nice -n 10 go build -mod=mod -ldflags "-s -w -X $module/pkg/skaffold/version.version=$SKAFFOLD_VERSION" \
        -o "$dest/bin/skaffold" "$module/cmd/skaffold"
    ) || die skaffold "go build $module/cmd/skaffold at $SKAFFOLD_VERSION" \
      "read the Go error above; a new Go release may need a newer SKAFFOLD_VERSION in hack/versions.env"
  fi
  link_tool skaffold "$dest/bin/skaffold"
}

# skaffold asks (on a terminal) to upload usage metrics and checks for updates over the
# network; nothing here may reach out, so both are switched off in its global config.
quiet_skaffold() {
  local config="$HOME/.skaffold/config"
  grep -q 'collect-metrics: false' "$config" 2>/dev/null && grep -q 'update-check: false' "$config" && return 0
  { skaffold_bin config set --global collect-metrics false && skaffold_bin config set --global update-check false; } >/dev/null \
    || die skaffold "switch off metrics and update checks in $config" "run: skaffold config set --global collect-metrics false"
}

skaffold_bin() { "$FRAUDPIPE_BIN/skaffold" "$@"; }

# skaffold's local builder insists on a Docker Engine API when it does not push (it asks the
# daemon for the built image's id and tags it with that id). Podman serves that API over the
# same image storage buildah builds into, so hack/skaffold starts `podman system service` on
# a private socket for the length of one skaffold command. No container is run through it.
provision_skaffold() {
  build_skaffold
  quiet_skaffold
  build_helm
  command -v podman >/dev/null && return 0
  local sudo=""
  [[ $(id -u) -eq 0 ]] || sudo="sudo"
  command -v apt-get >/dev/null || die podman "find apt-get" "install Debian's podman by hand"
  log "apt: installing podman"
  { $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq \
      --no-install-recommends -o DPkg::Lock::Timeout=300 podman >/dev/null; } \
    || die podman "apt-get install podman" "run 'apt-get update' and retry; podman comes from Debian bookworm main"
}
