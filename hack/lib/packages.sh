# Provisioning from Debian (apt), Maven Central (Kafka) and PyPI (uv).
# Sourced by hack/provision after common.sh.

APT_PACKAGES=(redis-server postgresql prometheus docker-registry kcat openssl curl chromium)

# The command each apt package must provide, so a warm run costs one stat per tool.
declare -A APT_PROBES=(
  [redis-server]=redis-server [postgresql]=/usr/lib/postgresql [prometheus]=prometheus
  [docker-registry]=docker-registry [kcat]=kcat [openssl]=openssl [curl]=curl
  [chromium]=chromium
)

provision_apt() {
  local missing=() p
  for p in "${APT_PACKAGES[@]}"; do
    local probe="${APT_PROBES[$p]}"
    if [[ "$probe" == /* ]]; then [[ -e "$probe" ]] || missing+=("$p")
    else command -v "$probe" >/dev/null || missing+=("$p"); fi
  done
  # Kafka's broker needs a JRE and Maven to resolve it; the machine usually has both.
  command -v java >/dev/null || missing+=(openjdk-17-jre-headless)
  command -v mvn >/dev/null || missing+=(maven)
  [[ ${#missing[@]} -eq 0 ]] && return 0
  local sudo=""
  [[ $(id -u) -eq 0 ]] || sudo="sudo"
  command -v apt-get >/dev/null || die "${missing[*]}" "find apt-get" "install these Debian packages by hand: ${missing[*]}"
  log "apt: installing ${missing[*]}"
  # Debian would start each server as a system service; the stack runs its own copies on
  # loopback instead, so forbid service starts for the length of the install.
  local policy=/usr/sbin/policy-rc.d created=""
  if [[ ! -e $policy ]]; then
    printf '#!/bin/sh\nexit 101\n' | $sudo tee "$policy" >/dev/null && $sudo chmod +x "$policy" && created=1
  fi
  local rc=0
  { $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null; } || rc=$?
  [[ -n "$created" ]] && $sudo rm -f "$policy"
  [[ $rc -eq 0 ]] || die "${missing[*]}" "apt-get install" "run 'apt-get update' and retry; these packages come from Debian bookworm main"
  # A package's own service may still have been started by its maintainer script.
  $sudo pkill -x redis-server 2>/dev/null || true
  $sudo pkill -f 'docker-registry serve' 2>/dev/null || true
  $sudo pkill -x prometheus 2>/dev/null || true
}

# Kafka's broker is an ordinary Maven artifact: resolve kafka_2.13 with its runtime
# dependencies into one folder, plus log4j's slf4j 1.x binding (Kafka logs through slf4j
# 1.7 and only declares log4j-core, so without the binding the broker logs nothing).
provision_kafka() {
  local dest="$FRAUDPIPE_CACHE/kafka-$KAFKA_VERSION"
  if [[ -f "$dest/.complete" ]]; then link_kafka "$dest"; return 0; fi
  command -v java >/dev/null && command -v mvn >/dev/null || provision_apt
  command -v mvn >/dev/null || die kafka "locate Maven" "apt-get install maven"
  command -v java >/dev/null || die kafka "locate Java 17+" "apt-get install openjdk-17-jre-headless"
  log "kafka $KAFKA_VERSION: resolving jars from Maven Central"
  mkdir -p "$dest"
  cat >"$dest/pom.xml" <<POM
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>fraudpipe.local</groupId><artifactId>kafka-broker</artifactId><version>1</version>
  <dependencies>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka_${KAFKA_SCALA_VERSION}</artifactId><version>${KAFKA_VERSION}</version></dependency>
    <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-core</artifactId><version>${LOG4J_VERSION}</version></dependency>
    <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-slf4j-impl</artifactId><version>${LOG4J_VERSION}</version></dependency>
  </dependencies>
</project>
POM
  (cd "$dest" && mvn -q -B dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory=libs \
      -Dmaven.repo.local="$FRAUDPIPE_CACHE/m2") \
    || die kafka "mvn dependency:copy-dependencies org.apache.kafka:kafka_${KAFKA_SCALA_VERSION}:${KAFKA_VERSION}" "check that Maven Central serves that version (KAFKA_VERSION in hack/versions.env)"
  touch "$dest/.complete"
  link_kafka "$dest"
}

link_kafka() {
  ln -sfn "$1" "$FRAUDPIPE_CACHE/kafka"
}

# uv runs the Python workspace; pinned, installed into its own venv inside the cache.
provision_python() {
  local venv="$FRAUDPIPE_CACHE/uv-$UV_VERSION"
  if [[ ! -x "$venv/bin/uv" ]]; then
    log "uv $UV_VERSION: installing from PyPI"
    python3 -m venv "$venv" && "$venv/bin/pip" install -q "uv==$UV_VERSION" \
      || die uv "pip install uv==$UV_VERSION" "check PyPI access, or install uv yourself and put it on PATH"
  fi
  link_tool uv "$venv/bin/uv"
}
