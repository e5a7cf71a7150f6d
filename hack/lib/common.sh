# Shared helpers for hack/ scripts. Sourced, never executed.
set -euo pipefail

HACK_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
REPO_ROOT="$(cd "$HACK_DIR/.." && pwd)"
# Pins come from versions.env; a variable already set in the environment wins, so a
# developer can try another version without editing the file (KAFKA_VERSION=4.2.0 hack/provision).
while IFS='=' read -r key value; do
  [[ "$key" =~ ^[A-Z0-9_]+$ ]] || continue
  [[ -n "${!key:-}" ]] || export "$key=$value"
done <"$HACK_DIR/versions.env"

FRAUDPIPE_CACHE="${FRAUDPIPE_CACHE:-$HOME/.cache/fraudpipe}"
FRAUDPIPE_BIN="$FRAUDPIPE_CACHE/bin"
mkdir -p "$FRAUDPIPE_BIN"

log() { printf '\033[1m[provision]\033[0m %s\n' "$*" >&2; }

# die TOOL STEP FIX: every provisioning failure names the tool, the step and a fix.
die() {
  printf '\n[provision] ERROR: could not provision %s\n  step: %s\n  fix:  %s\n' "$1" "$2" "$3" >&2
  exit 1
}

# link_tool NAME PATH: expose a provisioned binary under $FRAUDPIPE_BIN.
link_tool() { ln -sfn "$2" "$FRAUDPIPE_BIN/$1"; }

# minor_of "v1.34.4" -> "1.34"
minor_of() { echo "$1" | sed -E 's/^v?([0-9]+)\.([0-9]+).*/\1.\2/'; }

# find_existing NAME WANT_MINOR VERSION_CMD...: print the path of a binary already on PATH or
# in KUBEBUILDER_ASSETS whose version has the wanted major.minor, so we skip building it.
find_existing() {
  local name="$1" want="$2"; shift 2
  local candidate
  for candidate in "${KUBEBUILDER_ASSETS:+$KUBEBUILDER_ASSETS/$name}" "$(command -v "$name" 2>/dev/null || true)"; do
    [[ -n "$candidate" && -x "$candidate" ]] || continue
    [[ "$candidate" == "$FRAUDPIPE_BIN/"* ]] && continue
    local out
    out="$("$candidate" "$@" 2>&1 | head -5 || true)"
    if grep -Eq "v?${want//./\\.}\.[0-9]+" <<<"$out"; then
      echo "$candidate"; return 0
    fi
  done
  return 1
}

# Go builds share one module and build cache inside ours, so one directory holds it all.
go_env() {
  command -v go >/dev/null || die go "locate the Go toolchain" "install Go 1.24+ (apt-get install golang-go, or the machine's Go)"
  export GOMODCACHE="$FRAUDPIPE_CACHE/go/mod" GOCACHE="$FRAUDPIPE_CACHE/go/build"
  export GOFLAGS="-buildvcs=false -trimpath" CGO_ENABLED=0
}
