#!/usr/bin/env bash
# Services the tests need, each one function: answer already? done. Otherwise install it from
# Debian (as root), start it without systemd, and wait until it really accepts clients.
# Sourced by scripts/test; usable alone: `bash scripts/services.sh rabbitmq`.
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

amqp_handshake() { # The AMQP port answers the protocol header with a Connection.Start frame.
  local reply
  reply=$( (exec 3<>/dev/tcp/127.0.0.1/5672 && printf 'AMQP\x00\x00\x09\x01' >&3 &&
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

if [[ ${BASH_SOURCE[0]} == "$0" ]]; then
  for service in "$@"; do "ensure_$service"; done
fi
