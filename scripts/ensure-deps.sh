#!/usr/bin/env bash
# Installs the C libraries Tandem builds against when they are missing (a fresh machine has Swift but not
# libevent-dev). Safe to run repeatedly: it does nothing when everything is present.
set -euo pipefail

missing=()
for module in libevent libevent_openssl libevent_pthreads openssl; do
  pkg-config --exists "$module" 2>/dev/null || missing+=("$module")
done
command -v curl >/dev/null 2>&1 || missing+=("curl")
# With --test (scripts/test.sh), also haproxy and nginx, the reference proxies of scripts/http-differential.py
# (Debian puts both in /usr/sbin); the demo and the benchmarks do not need them.
if [ "${1:-}" = "--test" ]; then
  [ -x /usr/sbin/haproxy ] && [ -x /usr/sbin/nginx ] || $([ "$(id -u)" -eq 0 ] || echo sudo) sh -c "apt-get update -qq \
    && DEBIAN_FRONTEND=noninteractive apt-get install -qq -y --no-install-recommends haproxy nginx >/dev/null"
fi

if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi

echo "ensure-deps: missing ${missing[*]}; installing libevent-dev libssl-dev pkg-config curl" >&2
sudo_cmd=""
if [ "$(id -u)" -ne 0 ]; then sudo_cmd="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
if ! $sudo_cmd apt-get install -y --no-install-recommends libevent-dev libssl-dev pkg-config curl >/dev/null; then
  $sudo_cmd apt-get update >/dev/null
  $sudo_cmd apt-get install -y --no-install-recommends libevent-dev libssl-dev pkg-config curl >/dev/null
fi
for module in libevent libevent_openssl libevent_pthreads openssl; do
  pkg-config --exists "$module" || { echo "ensure-deps: $module still missing after install" >&2; exit 1; }
done
