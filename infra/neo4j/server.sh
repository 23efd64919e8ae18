#!/usr/bin/env bash
# Neo4j Community 5 embedded in a JVM (EmbeddedNeo4j.java), Bolt on a free loopback port.
#
#   server.sh build          compile once (Maven; jars cached in ~/.m2); quick when built
#   server.sh start DIR      start on the data folder DIR (created; data and password persist),
#                            wait until Bolt answers, print KGRAG_NEO4J_* lines for `eval`/env
#   server.sh env DIR        print the KGRAG_NEO4J_* lines of the running server
#   server.sh status DIR     exit 0 when it runs (pid in DIR/server.pid)
#   server.sh stop DIR       stop it by its pid (SIGTERM: a clean shutdown; SIGKILL after 60 s)
#
# Settings: infra/neo4j/neo4j.conf. KGRAG_NEO4J_HEAP (default 1g) caps the heap;
# KGRAG_NEO4J_PORT picks a fixed port; KGRAG_NEO4J_JAVA_OPTS replaces the default JVM options
# (serial GC and the C1 compiler only: a third quicker to start on a busy 2-core machine;
# "-XX:+UseG1GC" for long runs such as bench/graph_store_bench.py). JAVA_HOME or `java` on
# PATH must be Java 17 or 21.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
TARGET="$HERE/target"
CLASSPATH_FILE="$TARGET/classpath.txt"
MAIN_CLASS="$TARGET/classes/kgrag/neo4j/EmbeddedNeo4j.class"
START_TIMEOUT_S="${KGRAG_NEO4J_START_TIMEOUT_S:-180}"

die() { echo "server.sh: $*" >&2; exit 1; }

java_bin() {
    if [[ -n "${JAVA_HOME:-}" && -x "$JAVA_HOME/bin/java" ]]; then
        echo "$JAVA_HOME/bin/java"
    else
        command -v java || die "no java on PATH (Neo4j 5 needs Java 17 or 21)"
    fi
}

# Built = the class and the classpath exist, are newer than their sources, and every jar
# on the classpath is still in the local Maven repository.
is_built() {
    [[ -f "$MAIN_CLASS" && -f "$CLASSPATH_FILE" ]] || return 1
    [[ "$MAIN_CLASS" -nt "$HERE/pom.xml" && "$CLASSPATH_FILE" -nt "$HERE/pom.xml" ]] || return 1
    [[ "$MAIN_CLASS" -nt "$HERE/src/main/java/kgrag/neo4j/EmbeddedNeo4j.java" ]] || return 1
    local jar
    while IFS= read -r -d : jar || [[ -n "$jar" ]]; do
        [[ -z "$jar" || -f "$jar" ]] || return 1
    done < "$CLASSPATH_FILE"
}

build() {
    if is_built; then
        return 0
    fi
    command -v mvn >/dev/null || die "Maven (mvn) is needed to build the Neo4j test server"
    echo "server.sh: building the embedded Neo4j server (Maven; first time downloads ~120 MB)" >&2
    # -o first: with the jars already in ~/.m2 no network is needed; online if that fails.
    (cd "$HERE" && { mvn -B -q -o compile >/dev/null 2>&1 || mvn -B -q compile; }) >&2
    touch "$MAIN_CLASS" "$CLASSPATH_FILE"
    is_built || die "build finished but $MAIN_CLASS or a jar of the classpath is missing"
}

pid_of() {
    local pidfile="$1/server.pid" pid
    [[ -f "$pidfile" ]] || return 1
    pid="$(cat "$pidfile")"
    [[ "$pid" =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null || return 1
    # the pid is ours only while it still runs EmbeddedNeo4j on this folder
    tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null | grep -q "kgrag.neo4j.EmbeddedNeo4j $1 " \
        || return 1
    echo "$pid"
}

print_env() {
    local dir="$1"
    [[ -f "$dir/bolt.uri" && -f "$dir/password" ]] || die "no running server in $dir"
    echo "KGRAG_NEO4J_URI=$(cat "$dir/bolt.uri")"
    echo "KGRAG_NEO4J_USER=neo4j"
    echo "KGRAG_NEO4J_PASSWORD=$(cat "$dir/password")"
    echo "KGRAG_NEO4J_DATABASE=neo4j"
}

bolt_answers() {
    local uri port
    uri="$(cat "$1/bolt.uri" 2>/dev/null)" || return 1
    port="${uri##*:}"
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null
}

start() {
    local dir pid java waited=0
    mkdir -p "$1"
    dir="$(cd "$1" && pwd)"
    if pid="$(pid_of "$dir")"; then
        print_env "$dir"
        return 0
    fi
    build
    java="$(java_bin)"
    rm -f "$dir/bolt.uri" "$dir/server.pid"
    # setsid: the server outlives this script and is not hit by the caller's Ctrl-C.
    # shellcheck disable=SC2086  # the options are words
    setsid "$java" -Xms256m "-Xmx${KGRAG_NEO4J_HEAP:-1g}" \
        ${KGRAG_NEO4J_JAVA_OPTS:--XX:+UseSerialGC -XX:TieredStopAtLevel=1} \
        -XX:+ExitOnOutOfMemoryError -Dfile.encoding=UTF-8 \
        -cp "$TARGET/classes:$(cat "$CLASSPATH_FILE")" \
        kgrag.neo4j.EmbeddedNeo4j "$dir" "$HERE/neo4j.conf" "${KGRAG_NEO4J_PORT:-0}" \
        >"$dir/server.log" 2>&1 </dev/null &
    pid=$!
    echo "$pid" > "$dir/server.pid"
    until [[ -f "$dir/bolt.uri" ]] && bolt_answers "$dir"; do
        if ! kill -0 "$pid" 2>/dev/null; then
            tail -n 40 "$dir/server.log" >&2 || true
            die "Neo4j exited while starting (log: $dir/server.log)"
        fi
        if (( waited >= START_TIMEOUT_S * 5 )); then
            tail -n 40 "$dir/server.log" >&2 || true
            stop "$dir"
            die "Bolt did not answer within ${START_TIMEOUT_S}s (log: $dir/server.log)"
        fi
        sleep 0.2
        waited=$((waited + 1))
    done
    print_env "$dir"
}

stop() {
    local dir pid i
    dir="$(cd "$1" 2>/dev/null && pwd)" || return 0
    if pid="$(pid_of "$dir")"; then
        kill -TERM "$pid" 2>/dev/null || true
        for ((i = 0; i < 300; i++)); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.2
        done
        if kill -0 "$pid" 2>/dev/null; then
            echo "server.sh: Neo4j (pid $pid) ignored SIGTERM for 60 s; killing it" >&2
            kill -KILL "$pid" 2>/dev/null || true
        fi
    fi
    rm -f "$dir/server.pid" "$dir/bolt.uri"
}

case "${1:-}" in
    build) build ;;
    start) [[ $# -eq 2 ]] || die "usage: server.sh start DIR"; start "$2" ;;
    env) [[ $# -eq 2 ]] || die "usage: server.sh env DIR"; pid_of "$(cd "$2" && pwd)" >/dev/null \
        || die "not running"; print_env "$(cd "$2" && pwd)" ;;
    status) [[ $# -eq 2 ]] || die "usage: server.sh status DIR"; pid_of "$(cd "$2" && pwd)" ;;
    stop) [[ $# -eq 2 ]] || die "usage: server.sh stop DIR"; stop "$2" ;;
    *) sed -n '2,14p' "$0" >&2; exit 2 ;;
esac
