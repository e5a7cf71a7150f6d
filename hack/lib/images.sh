# Container images built with buildah into its local storage, from a Debian rootfs made by
# debootstrap: nothing is pulled from a container registry. Sourced by hack/images after
# common.sh.
#
# Chain:  debian (debootstrap) ─► python (Debian's python3.11) ─► operator scorer api producer e2e
#                              └► kafka (Maven jars + Debian's JRE), postgres, redis, registry,
#                                 s3 (versitygw, built from the Go module proxy)
# e2e is the in-cluster end-to-end check (k8s-tests/e2e/Dockerfile), for skaffold verify.
# Each image carries the label io.fraudpipe.content-key: a hash of everything it is built from
# (its parent's id, its files, its build arguments). A build whose key is unchanged is skipped.

IMAGE_REPO="${FRAUDPIPE_IMAGE_REPO:-localhost/fraudpipe}"
IMAGE_TAG="${FRAUDPIPE_IMAGE_TAG:-dev}"
IMAGES_CACHE="$FRAUDPIPE_CACHE/images"
IMAGE_DEFS="$HACK_DIR/containers"
CONTENT_KEY_LABEL=io.fraudpipe.content-key

SERVICE_IMAGES=(operator scorer api producer)
STATEFUL_IMAGES=(kafka postgres redis registry s3)
ALL_IMAGES=(debian python "${SERVICE_IMAGES[@]}" "${STATEFUL_IMAGES[@]}" e2e)

# What debootstrap puts in the base. Bump BASE_REVISION when the way the rootfs is trimmed
# changes, so the cached rootfs is rebuilt.
BASE_PACKAGES=ca-certificates
BASE_REVISION=1

image_ref() {
  case "$1" in
    debian) echo "$IMAGE_REPO/debian:$IMAGES_DEBIAN_SUITE" ;;
    python) echo "$IMAGE_REPO/python:3.11" ;;
    kafka) echo "$IMAGE_REPO/kafka:$KAFKA_VERSION" ;;
    postgres) echo "$IMAGE_REPO/postgres:$IMAGES_POSTGRES_MAJOR" ;;
    redis) echo "$IMAGE_REPO/redis:7.0" ;;
    registry) echo "$IMAGE_REPO/registry:2.8" ;;
    s3) echo "$IMAGE_REPO/s3:${VERSITYGW_VERSION#v}" ;;
    operator | scorer | api | producer | e2e) echo "$IMAGE_REPO/$1:$IMAGE_TAG" ;;
    *) die "image $1" "look up the image" "use one of: ${ALL_IMAGES[*]}" ;;
  esac
}

image_parent() {
  case "$1" in
    debian) echo "" ;;
    python | kafka | postgres | redis | registry | s3) echo debian ;;
    *) echo python ;;
  esac
}

# --- tools ------------------------------------------------------------------------------------
provision_image_tools() {
  local missing=()
  command -v buildah >/dev/null || missing+=(buildah)
  command -v debootstrap >/dev/null || missing+=(debootstrap)
  command -v runc >/dev/null || [[ -x /usr/sbin/runc ]] || missing+=(runc)
  [[ ${#missing[@]} -eq 0 ]] && return 0
  [[ $(id -u) -eq 0 ]] || die "${missing[*]}" "install the image tools" "run as root: buildah, debootstrap and runc need it here (or apt-get install ${missing[*]} with sudo)"
  command -v apt-get >/dev/null || die "${missing[*]}" "find apt-get" "install these Debian packages by hand: ${missing[*]}"
  log "apt: installing ${missing[*]}"
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      -o DPkg::Lock::Timeout=300 "${missing[@]}" >/dev/null; } \
    || die "${missing[*]}" "apt-get install" "run 'apt-get update' and retry; these packages come from Debian bookworm main"
}

# --- keys -------------------------------------------------------------------------------------
hash_text() { sha256sum | cut -c1-16; }

# hash_paths PATH...: one hash over the names and contents of every file under PATHs.
hash_paths() {
  (cd "$REPO_ROOT" && find "$@" -type f ! -path '*/__pycache__/*' ! -name '*.pyc' -print0 \
    | LC_ALL=C sort -z | xargs -0 sha256sum) | hash_text
}

image_id() { buildah inspect --type image --format '{{.FromImageID}}' "$1" 2>/dev/null; }

image_key() {
  buildah inspect --type image --format "{{index .OCIv1.Config.Labels \"$CONTENT_KEY_LABEL\"}}" "$1" 2>/dev/null
}

base_key() {
  printf '%s\n' "$IMAGES_DEBIAN_SUITE" "$IMAGES_DEBIAN_MIRROR" "$BASE_PACKAGES" "$BASE_REVISION" | hash_text
}

# The files each image is built from, relative to the repository root.
image_sources() {
  case "$1" in
    operator | scorer | api | producer)
      local members=(libs/common libs/testing operator scorer api producer model) m
      echo pyproject.toml uv.lock "$1/Dockerfile" libs/common/src "$1/src"
      for m in "${members[@]}"; do echo "$m/pyproject.toml"; done
      ;;
    e2e)
      local members=(libs/common libs/testing operator scorer api producer model) m
      echo pyproject.toml uv.lock k8s-tests/e2e/Dockerfile libs/common/src libs/testing/src model/src \
        examples/local-node.yaml k8s-tests/e2e/e2e_checks.py k8s-tests/e2e/kafka_verdict.py \
        k8s-tests/e2e/in_cluster.py
      for m in "${members[@]}"; do echo "$m/pyproject.toml"; done
      ;;
    *) echo "hack/containers/$1" ;;
  esac
}

content_key() {
  local name="$1" parent
  parent="$(image_parent "$name")"
  # shellcheck disable=SC2046
  {
    echo "$name"
    if [[ -n "$parent" ]]; then image_id "$(image_ref "$parent")"; fi
    build_args "$name"
    hash_paths $(image_sources "$name")
    if [[ $name == kafka ]]; then echo "$KAFKA_VERSION $KAFKA_SCALA_VERSION $LOG4J_VERSION"; fi
    if [[ $name == s3 ]]; then echo "$VERSITYGW_VERSION"; fi
  } | hash_text
}

build_args() {
  local parent
  parent="$(image_parent "$1")"
  if [[ -n "$parent" ]]; then echo "--build-arg=BASE_IMAGE=$(image_ref "$parent")"; fi
  case "$1" in
    operator | scorer | api | producer | e2e) echo "--build-arg=UV_VERSION=$UV_VERSION" ;;
    postgres) echo "--build-arg=POSTGRES_MAJOR=$IMAGES_POSTGRES_MAJOR" ;;
  esac
  return 0
}

# --- builds -----------------------------------------------------------------------------------
# The base: debootstrap's minbase variant, trimmed like the official debian:*-slim images (no
# docs, man pages or locales), with apt pointed at the same mirror for the images built on it.
build_debian() {
  local ref key
  ref="$(image_ref debian)"
  key="$(base_key)"
  if [[ "$(image_key "$ref")" == "$key" ]]; then log "debian: up to date ($ref)"; return 0; fi
  local tarball="$IMAGES_CACHE/debian-$IMAGES_DEBIAN_SUITE-$key.tar"
  mkdir -p "$IMAGES_CACHE"
  if [[ ! -s "$tarball" ]]; then
    local rootfs
    rootfs="$(mktemp -d "$IMAGES_CACHE/rootfs.XXXXXX")"
    log "debian: debootstrap $IMAGES_DEBIAN_SUITE from $IMAGES_DEBIAN_MIRROR (cold: a few minutes)"
    nice debootstrap --variant=minbase --include="$BASE_PACKAGES" "$IMAGES_DEBIAN_SUITE" "$rootfs" \
      "$IMAGES_DEBIAN_MIRROR" >"$IMAGES_CACHE/debootstrap.log" 2>&1 \
      || { rm -rf "$rootfs"; die debian "debootstrap $IMAGES_DEBIAN_SUITE" "check that $IMAGES_DEBIAN_MIRROR answers (IMAGES_DEBIAN_MIRROR in hack/versions.env); see $IMAGES_CACHE/debootstrap.log"; }
    trim_rootfs "$rootfs"
    tar --numeric-owner --xattrs -C "$rootfs" -cf "$tarball.$$.tmp" . && mv "$tarball.$$.tmp" "$tarball"
    rm -rf "$rootfs"
  fi
  local ctr
  ctr="$(buildah from --quiet scratch)"
  buildah add --quiet "$ctr" "$tarball" / >/dev/null
  buildah config --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    --env LANG=C.UTF-8 --cmd '["bash"]' --label "$CONTENT_KEY_LABEL=$key" \
    --label "org.opencontainers.image.description=Debian $IMAGES_DEBIAN_SUITE minbase (debootstrap)" "$ctr"
  buildah commit --quiet --rm "$ctr" "$ref" >/dev/null
  log "debian: built $ref"
}

trim_rootfs() {
  local rootfs="$1" suite="$IMAGES_DEBIAN_SUITE" mirror="$IMAGES_DEBIAN_MIRROR"
  cat >"$rootfs/etc/apt/sources.list" <<EOF
deb $mirror $suite main
deb $mirror $suite-updates main
deb ${mirror%/debian}/debian-security $suite-security main
EOF
  # As the official slim images do: later apt installs leave docs, man pages and locales out.
  cat >"$rootfs/etc/dpkg/dpkg.cfg.d/excludes" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
path-exclude /usr/share/lintian/*
EOF
  cat >"$rootfs/etc/apt/apt.conf.d/90fraudpipe" <<'EOF'
APT::Install-Recommends "false";
APT::Install-Suggests "false";
Acquire::Languages "none";
EOF
  find "$rootfs/usr/share/doc" -mindepth 1 ! -name copyright ! -type d -delete 2>/dev/null || true
  find "$rootfs/usr/share/doc" -mindepth 1 -type d -empty -delete 2>/dev/null || true
  rm -rf "$rootfs"/usr/share/{man,info,lintian}/* "$rootfs"/var/cache/apt/*.bin \
    "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/log/*.log \
    "$rootfs"/var/log/apt/* "$rootfs"/var/cache/debconf/*-old "$rootfs"/etc/hostname
  find "$rootfs/usr/share/locale" -mindepth 1 -maxdepth 1 ! -name locale.alias -exec rm -rf {} + 2>/dev/null || true
  : >"$rootfs/etc/resolv.conf"
}

# Everything but the base is a Dockerfile built with `buildah bud`.
build_image() {
  local name="$1" ref key parent
  ref="$(image_ref "$name")"
  parent="$(image_parent "$name")"
  if [[ -n "$parent" ]] && ! image_id "$(image_ref "$parent")" >/dev/null; then build_one "$parent"; fi
  key="$(content_key "$name")"
  if [[ "$(image_key "$ref")" == "$key" ]]; then log "$name: up to date ($ref)"; return 0; fi
  local context="$REPO_ROOT" dockerfile
  case "$name" in
    operator | scorer | api | producer) dockerfile="$REPO_ROOT/$name/Dockerfile" ;;
    e2e) dockerfile="$REPO_ROOT/k8s-tests/e2e/Dockerfile" ;;
    kafka) context="$(kafka_context)"; dockerfile="$context/Dockerfile" ;;
    s3) context="$(s3_context)"; dockerfile="$context/Dockerfile" ;;
    *) context="$IMAGE_DEFS/$name"; dockerfile="$context/Dockerfile" ;;
  esac
  local args=() a
  while read -r a; do [[ -n "$a" ]] && args+=("$a"); done < <(build_args "$name")
  # Builds trust the host's CA bundle, so a machine behind a TLS-inspecting proxy can still reach
  # PyPI; the bundle is mounted for the build only and never ends up in an image.
  local host_ca=/etc/ssl/certs/ca-certificates.crt
  [[ -s $host_ca ]] && args+=("--volume=$host_ca:$host_ca:ro")
  log "$name: building $ref"
  local started=$SECONDS previous
  previous="$(image_id "$ref" || true)"
  nice buildah bud --quiet --isolation=chroot --layers --pull=never "${args[@]}" \
    --label "$CONTENT_KEY_LABEL=$key" -f "$dockerfile" -t "$ref" "$context" >"$IMAGES_CACHE/build-$name.log" 2>&1 \
    || { tail -n 30 "$IMAGES_CACHE/build-$name.log" >&2; die "image $name" "buildah bud -f ${dockerfile#"$REPO_ROOT/"} (log: $IMAGES_CACHE/build-$name.log)" "read the build log above; a failed package download can be retried"; }
  if [[ $name == kafka || $name == s3 ]]; then rm -rf "$context"; fi
  # The image this build replaced is untagged now; drop it unless something is built on it, so
  # that an edit-build loop does not fill the disk (the cached build-stage layers stay).
  if [[ -n "$previous" && "$previous" != "$(image_id "$ref")" ]]; then
    buildah rmi "$previous" >/dev/null 2>&1 || true
  fi
  log "$name: built $ref in $((SECONDS - started))s"
}

# Kafka's jars are the ones hack/provision resolved from Maven Central; the build context is a
# scratch folder holding them (hard links) beside the image's own files.
kafka_context() {
  "$HACK_DIR/provision" kafka >&2
  local home="$FRAUDPIPE_CACHE/kafka-$KAFKA_VERSION" ctx
  ctx="$(mktemp -d "$IMAGES_CACHE/kafka-context.XXXXXX")"
  cp -a "$IMAGE_DEFS/kafka/." "$ctx/"
  cp -al "$home/libs" "$ctx/libs" 2>/dev/null || cp -a "$home/libs" "$ctx/libs"
  echo "$ctx"
}

# The S3 server is the binary hack/provision built (pinned by VERSITYGW_VERSION), copied into
# a scratch context beside the image's own files.
s3_context() {
  "$HACK_DIR/provision" s3server >&2
  local ctx
  ctx="$(mktemp -d "$IMAGES_CACHE/s3-context.XXXXXX")"
  cp -a "$IMAGE_DEFS/s3/." "$ctx/"
  cp -L "$FRAUDPIPE_BIN/versitygw" "$ctx/versitygw"
  echo "$ctx"
}

build_one() {
  case "$1" in
    debian) build_debian ;;
    *) build_image "$1" ;;
  esac
}

# docker-archive tarballs keep the full reference, so `ctr -n k8s.io images import FILE` names
# the image as the chart and the operator refer to it. Re-exported only when the image changed.
export_image() {
  local name="$1" dir="${2:-$IMAGES_CACHE/archives}" ref id
  ref="$(image_ref "$name")"
  id="$(image_id "$ref")" || die "image $name" "find $ref in buildah's storage" "hack/images build $name"
  mkdir -p "$dir"
  local tarball="$dir/$name.tar"
  # Keyed by the reference too: the same image exported under another tag (FRAUDPIPE_IMAGE_TAG)
  # must not be imported under the old name.
  if [[ -s "$tarball" && "$(cat "$tarball.id" 2>/dev/null)" == "$id $ref" ]]; then echo "$tarball"; return 0; fi
  # Written aside and renamed, so a concurrent reader never sees half an archive.
  local partial="$tarball.$$.tmp"
  rm -f "$partial"
  buildah push --quiet "$ref" "docker-archive:$partial:$ref" >/dev/null \
    || { rm -f "$partial"; die "image $name" "buildah push $ref docker-archive:$tarball" "check free disk space in $dir"; }
  mv "$partial" "$tarball"
  echo "$id $ref" >"$tarball.id"
  echo "$tarball"
}

list_images() {
  local name ref id size
  printf '%-10s %-44s %-14s %s\n' NAME REFERENCE ID SIZE
  for name in "${ALL_IMAGES[@]}"; do
    ref="$(image_ref "$name")"
    if id="$(image_id "$ref")"; then
      size="$(buildah images --noheading --format '{{.Size}}' "$ref" 2>/dev/null | sed -n 1p)"
      printf '%-10s %-44s %-14s %s\n' "$name" "$ref" "${id:0:12}" "$size"
    else
      printf '%-10s %-44s %-14s %s\n' "$name" "$ref" "-" "not built"
    fi
  done
}
