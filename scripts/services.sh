#!/usr/bin/env bash
# Services the tests need, each one function: answer already? done. Otherwise install it from
# Debian (as root), start it without systemd, and wait until it really accepts clients.
# Sourced by scripts/test; usable alone: `bash scripts/services.sh rabbitmq postgres`.
set -euo pipefail

log() { printf '[services] %s\n' "$*" >&2; }

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_for() { # wait_for SECONDS DESCRIPTION COMMAND...
  local secs=$1 what=$2; shift 2
  local deadline=$((SECONDS + secs))
  until "$@"; do
    if ((SECONDS >= deadline)); then
      log "$what did not come up within ${secs}s"
      return 1
    fi
    sleep 1
  done
}

apt_install() { # apt_install PACKAGE...: update the index once per run, then install quietly.
  if [[ $(id -u) -ne 0 ]]; then
    log "need root to apt-get install $*; install it yourself or run as root"
    return 1
  fi
  if [[ -z ${services_apt_updated:-} ]]; then
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    export services_apt_updated=1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

amqp_handshake() { # amqp_handshake [PORT]: it answers the protocol header with Connection.Start.
  local reply port=${1:-5672}
  reply=$( (exec 3<>"/dev/tcp/127.0.0.1/$port" && printf 'AMQP\x00\x00\x09\x01' >&3 &&
    timeout 3 head -c 8 <&3 | od -An -tx1) 2>/dev/null) || return 1
  [[ $reply == *"01 00 00"* ]]
}

ensure_rabbitmq() {
  if amqp_handshake; then
    log "rabbitmq: already answering on 127.0.0.1:5672"
    return 0
  fi
  if ! command -v rabbitmq-server >/dev/null 2>&1; then
    log "rabbitmq: installing Debian's rabbitmq-server"
    apt_install rabbitmq-server
  fi
  if ! port_open 5672; then
    log "rabbitmq: starting"
    # Debian's policy-rc.d often forbids services in containers; start the node directly.
    service rabbitmq-server start >/dev/null 2>&1 || rabbitmq-server -detached >/dev/null 2>&1 || true
  fi
  wait_for 120 "rabbitmq (AMQP handshake on 5672)" amqp_handshake
  log "rabbitmq: ready"
}

# A 3-node RabbitMQ cluster on this machine, for the cluster tests only (everything else uses the
# single node on 5672): nodes herald-c1..3@localhost, AMQP on 5681..5683, Erlang distribution on
# 25681..25683, data and logs under /var/lib/rabbitmq/herald-cluster, no plugins, joined to
# herald-c1. Debian's rabbitmq-server, started as the rabbitmq user (its Erlang cookie is the
# one rabbitmqctl uses), so `rabbitmqctl -n herald-c2@localhost stop_app` works from a test.
CLUSTER_BASE=/var/lib/rabbitmq/herald-cluster

cluster_env() { # cluster_env N: the environment of node N
  local n=$1
  printf '%s\n' \
    "RABBITMQ_NODENAME=herald-c$n@localhost" \
    "RABBITMQ_NODE_IP_ADDRESS=127.0.0.1" \
    "RABBITMQ_NODE_PORT=$((5680 + n))" \
    "RABBITMQ_DIST_PORT=$((25680 + n))" \
    "RABBITMQ_MNESIA_BASE=$CLUSTER_BASE/mnesia" \
    "RABBITMQ_LOG_BASE=$CLUSTER_BASE/log" \
    "RABBITMQ_PID_FILE=$CLUSTER_BASE/herald-c$n.pid" \
    "RABBITMQ_ENABLED_PLUGINS_FILE=$CLUSTER_BASE/enabled_plugins" \
    "RABBITMQ_CONFIG_FILE=$CLUSTER_BASE/rabbitmq" \
    "RABBITMQ_ADVANCED_CONFIG_FILE=$CLUSTER_BASE/advanced.config"
}

start_cluster_node() { # start_cluster_node N: start node N unless its port answers
  local n=$1
  amqp_handshake $((5680 + n)) && return 0
  log "rabbitmq cluster: starting herald-c$n@localhost on $((5680 + n))"
  # From its own directory: a node keeps the working directory it was started in, and one
  # started inside a checkout that is later deleted can no longer stop or start its app.
  # shellcheck disable=SC2046 # one word per line of cluster_env
  (cd "$CLUSTER_BASE" && runuser -u rabbitmq -- env HOME=/var/lib/rabbitmq $(cluster_env "$n") \
    /usr/lib/rabbitmq/bin/rabbitmq-server -detached >/dev/null 2>&1)
}

cluster_sound() { # every node's working directory still exists (see start_cluster_node)
  local n
  for n in 1 2 3; do
    [[ $(cluster_ctl "$n" eval 'element(1, file:get_cwd()).' 2>/dev/null) == ok ]] || return 1
  done
}

stop_cluster() { # stops every node by its pid file (rabbitmqctl stop needs a sound node)
  local n pid
  for n in 1 2 3; do
    pid=$(cat "$CLUSTER_BASE/herald-c$n.pid" 2>/dev/null) || continue
    kill "$pid" 2>/dev/null || continue
    # SIGTERM stops the VM gracefully; a node that cannot is killed.
    wait_for 30 "rabbitmq cluster node $n stopping on SIGTERM" pid_gone "$pid" ||
      kill -KILL "$pid" 2>/dev/null || true
    wait_for 10 "rabbitmq cluster node $n exiting on SIGKILL" pid_gone "$pid" || true
  done
}

pid_gone() { ! kill -0 "$1" 2>/dev/null; }

cluster_ctl() { rabbitmqctl -q -n "herald-c$1@localhost" "${@:2}"; }

cluster_joined() { # every node sees three running nodes
  local n
  for n in 1 2 3; do
    [[ $(cluster_ctl "$n" eval 'length(rabbit_mnesia:cluster_nodes(running)).' 2>/dev/null) == 3 ]] || return 1
  done
}

ensure_rabbitmq_cluster() {
  ensure_rabbitmq
  if [[ $(id -u) -ne 0 ]]; then
    log "rabbitmq cluster: need root to start nodes as the rabbitmq user"
    return 1
  fi
  if cluster_joined 2>/dev/null; then
    if cluster_sound; then
      log "rabbitmq cluster: already running on 5681..5683"
      return 0
    fi
    log "rabbitmq cluster: a node was started in a directory since deleted; restarting the nodes"
    stop_cluster
  fi
  mkdir -p "$CLUSTER_BASE/mnesia" "$CLUSTER_BASE/log"
  [[ -f $CLUSTER_BASE/enabled_plugins ]] || echo '[].' >"$CLUSTER_BASE/enabled_plugins"
  [[ -f $CLUSTER_BASE/rabbitmq.conf ]] || echo '# herald test cluster: defaults' >"$CLUSTER_BASE/rabbitmq.conf"
  [[ -f $CLUSTER_BASE/advanced.config ]] || echo '[].' >"$CLUSTER_BASE/advanced.config"
  chown -R rabbitmq:rabbitmq "$CLUSTER_BASE"
  local n
  for n in 1 2 3; do start_cluster_node "$n"; done
  for n in 1 2 3; do
    wait_for 120 "rabbitmq cluster node $n (AMQP on $((5680 + n)))" amqp_handshake $((5680 + n))
  done
  for n in 2 3; do
    if [[ $(cluster_ctl "$n" eval 'length(rabbit_mnesia:cluster_nodes(running)).' 2>/dev/null) != 3 ]]; then
      log "rabbitmq cluster: joining herald-c$n to herald-c1"
      cluster_ctl "$n" stop_app
      cluster_ctl "$n" reset
      cluster_ctl "$n" join_cluster herald-c1@localhost
      cluster_ctl "$n" start_app
    fi
  done
  wait_for 60 "rabbitmq cluster (three running nodes)" cluster_joined
  log "rabbitmq cluster: ready on 5681..5683"
}

# PostgreSQL for the store tests: role `herald` (password `herald`, CREATEDB) owning database
# `herald_test`, reached as postgres://herald:herald@127.0.0.1:5432/herald_test (TEST_POSTGRES_URL).
postgres_ready() { # A real login as herald over TCP, not just an open port.
  PGPASSWORD=herald PGCONNECT_TIMEOUT=3 psql -h 127.0.0.1 -p 5432 -U herald -d herald_test \
    -Atqc 'select 1' >/dev/null 2>&1
}

postgres_answers() { # The server accepts connections (whatever the roles).
  command -v pg_isready >/dev/null 2>&1 && pg_isready -q -h 127.0.0.1 -p 5432 -t 3
}

as_postgres() { # Run a command as the postgres OS user (root: runuser; that user: directly).
  if [[ $(id -un) == postgres ]]; then "$@"; else runuser -u postgres -- "$@"; fi
}

ensure_postgres() {
  if postgres_ready; then
    log "postgres: already answering on 127.0.0.1:5432"
    # TLS can be switched on only as root (or as postgres); others keep what they have.
    if [[ $(id -u) -eq 0 || $(id -un) == postgres ]]; then
      ensure_postgres_tls
    fi
    return 0
  fi
  if ! command -v pg_ctlcluster >/dev/null 2>&1 || ! command -v psql >/dev/null 2>&1; then
    log "postgres: installing Debian's postgresql"
    apt_install postgresql postgresql-client
  fi
  if ! postgres_answers; then
    # Debian's postgresql-common: the newest installed major version and its `main` cluster.
    # The package creates the cluster on install; create it if an image removed it. With no
    # systemd running, pg_ctlcluster starts the server with pg_ctl itself, so policy-rc.d (which
    # forbids `service` starts in containers) does not apply.
    local version
    version=$(find /usr/lib/postgresql -mindepth 1 -maxdepth 1 -printf '%f\n' | sort -n | tail -1)
    if [[ -z $version ]]; then
      log "postgres: no server under /usr/lib/postgresql after installing"
      return 1
    fi
    if ! pg_lsclusters -h 2>/dev/null | awk '{print $1, $2}' | grep -qx "$version main"; then
      log "postgres: creating cluster $version/main"
      pg_createcluster "$version" main >/dev/null
    fi
    log "postgres: starting cluster $version/main"
    pg_ctlcluster "$version" main start
  fi
  wait_for 60 "postgres (pg_isready on 5432)" postgres_answers
  # Debian's default pg_hba.conf allows md5/scram password logins over 127.0.0.1 for any role,
  # so creating the role is enough. Both statements are idempotent.
  as_postgres psql -q -v ON_ERROR_STOP=1 -d postgres >/dev/null <<'SQL'
DO $$ BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'herald') THEN
    CREATE ROLE herald LOGIN PASSWORD 'herald' CREATEDB;
  ELSE
    ALTER ROLE herald LOGIN PASSWORD 'herald' CREATEDB;
  END IF;
END $$;
SELECT 'CREATE DATABASE herald_test OWNER herald'
  WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = 'herald_test')\gexec
SQL
  wait_for 30 "postgres (login as herald to herald_test)" postgres_ready
  ensure_postgres_tls
  log "postgres: ready"
}

# TLS on the local server, for the tests of `sslmode=require` / `verify-ca`. Debian turns it on
# with the ssl-cert package's snakeoil pair; without that package (a minimal install), make a
# self-signed pair in the data directory and turn TLS on.
ensure_postgres_tls() {
  if [[ $(as_postgres psql -Atqc 'show ssl' 2>/dev/null) == on ]]; then
    return 0
  fi
  local datadir
  datadir=$(as_postgres psql -Atqc 'show data_directory')
  command -v openssl >/dev/null 2>&1 || apt_install openssl
  log "postgres: turning TLS on with a self-signed certificate"
  as_postgres openssl req -new -x509 -days 3650 -nodes -subj /CN=localhost \
    -keyout "$datadir/herald-test.key" -out "$datadir/herald-test.crt" >/dev/null 2>&1
  chmod 600 "$datadir/herald-test.key"
  as_postgres psql -q -v ON_ERROR_STOP=1 -d postgres >/dev/null <<'SQL'
ALTER SYSTEM SET ssl_cert_file = 'herald-test.crt';
ALTER SYSTEM SET ssl_key_file = 'herald-test.key';
ALTER SYSTEM SET ssl = on;
SELECT pg_reload_conf();
SQL
  wait_for 15 "postgres (TLS on)" bash -c '[[ $(runuser -u postgres -- psql -Atqc "show ssl") == on ]]'
}

# Offline validators for docker-compose.yml and deploy/ (tests/src/tests/deploy.rs): promtool,
# docker-compose (parses the file without an engine), and kubernetes-validate from PyPI. Debian's
# prometheus package also brings the server that tests/src/tests/prometheus.rs starts itself, on
# a free port with its own config, so the packaged service is never left running.
ensure_deploy_tools() {
  local packages=()
  if ! command -v promtool >/dev/null 2>&1 || ! command -v prometheus >/dev/null 2>&1; then
    packages+=(prometheus)
  fi
  command -v docker-compose >/dev/null 2>&1 || packages+=(docker-compose)
  if ((${#packages[@]})); then
    log "deploy tools: installing ${packages[*]}"
    apt_install "${packages[@]}"
    # The tests start their own server; never leave the packaged one on :9090 if postinst did.
    service prometheus stop >/dev/null 2>&1 || true
  fi
  if ! python3 -c 'import kubernetes_validate, jsonschema, yaml' >/dev/null 2>&1; then
    log "deploy tools: installing kubernetes-validate from PyPI"
    python3 -m pip install --quiet --disable-pip-version-check 'kubernetes-validate==1.37.0'
  fi
}

if [[ ${BASH_SOURCE[0]} == "$0" ]]; then
  for service in "$@"; do "ensure_$service"; done
fi
