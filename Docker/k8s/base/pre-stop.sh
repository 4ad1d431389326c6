#!/bin/sh
# The tandem sidecar's preStop hook: tells a scale-down from a restart.
#
# A pod whose ordinal is at or above the StatefulSet's spec.replicas is going away for good (`kubectl scale` took it
# away), so it leaves the cluster while it still answers: a member that vanishes without leaving still counts towards
# the quorum, and the next failure then costs the cluster its writes. Every other stop (a restart, a rolling update,
# a node drain) keeps the member, because the pod comes back under the same name with the same volume.
#
# When in doubt it keeps the member and exits 0: a wrong removal takes a healthy voter out of the cluster, a missed
# one leaves a stale member that `tandem members remove` clears later (README.md, Runbook). Kubernetes runs this at
# the start of the pod's termination, while Tandem still serves; Tandem's SIGTERM waits until it has returned.
#
# Tests point it elsewhere with SA_DIR (the service account's token, ca.crt and namespace) and PRE_STOP_LOG.

sa_dir=${SA_DIR:-/var/run/secrets/kubernetes.io/serviceaccount}
api=https://kubernetes.default.svc

# A hook's own output is not kept by Kubernetes (only a failed hook's, as an event), so the reasons go to the
# container's log: the stderr of PID 1, which is tandem.
log_file=${PRE_STOP_LOG:-/proc/1/fd/2}
if [ -w "$log_file" ]; then exec 3>>"$log_file"; else exec 3>&2; fi
log() { echo "tandem pre-stop: $*" >&3; }

# POD_NAME is <StatefulSet name>-<ordinal> (downward API).
pod=${POD_NAME:-}
set_name=${pod%-*}
ordinal=${pod##*-}
case $ordinal in
'' | *[!0-9]*)
    log "\"$pod\" is not a StatefulSet pod name; keeping the member"
    exit 0
    ;;
esac

token=$(cat "$sa_dir/token" 2>/dev/null) || {
    log "no service account token in $sa_dir; keeping the member"
    exit 0
}
namespace=${POD_NAMESPACE:-$(cat "$sa_dir/namespace" 2>/dev/null)}

# The scale subresource is small and its spec holds nothing but replicas. The token goes in on stdin, not on the
# command line where any process in the container could read it.
url="$api/apis/apps/v1/namespaces/$namespace/statefulsets/$set_name/scale"
scale=$(printf 'Authorization: Bearer %s\n' "$token" |
    curl -fsS --max-time 3 --cacert "$sa_dir/ca.crt" -H @- "$url" 2>&1) || {
    log "cannot read $url ($scale); keeping the member"
    exit 0
}

# The API server writes compact JSON, `"spec":{"replicas":3}`. Zero replicas is written as `"spec":{}` (the field is
# omitted when 0) and matches nothing, so no member is removed (scaling below the founders is not supported).
replicas=$(printf '%s' "$scale" | tr -d ' \t\r\n' | sed -n 's/.*"spec":{"replicas":\([0-9][0-9]*\)}.*/\1/p')
if [ -z "$replicas" ]; then
    log "no spec.replicas in the answer from $url; keeping the member"
    exit 0
fi
if [ "$ordinal" -lt "$replicas" ]; then
    log "$pod is within spec.replicas=$replicas (a restart or an update); keeping the member"
    exit 0
fi

# Scaled away. The founders (TANDEM_PEERS) are still never removed: one that came back after a removal would start
# over as a founder with an empty volume (the claim of a scaled-away pod is deleted) that the cluster no longer
# counts. Kept, it comes back as a member that lost its volume and is rebuilt from the leader's snapshot. Scaling
# below the founders is not supported.
case ",${TANDEM_PEERS:-}," in
*",$pod="*)
    log "spec.replicas=$replicas, but $pod is a founding member (TANDEM_PEERS); keeping the member"
    exit 0
    ;;
esac

# A leader being removed hands leadership off itself. A scale-down by two stops two pods at once and the cluster may
# take one membership change at a time, so a refused removal is retried for up to 10 s in all (the grace period's
# budget counts them). --if-absent-ok: a member already gone is success.
log "spec.replicas=$replicas: $pod is scaled away; leaving the cluster"
deadline=$(($(date +%s) + 10))
while :; do
    left=$((deadline - $(date +%s)))
    if [ "$left" -le 0 ]; then
        log "could not leave within 10 s; remove it by hand: tandem members remove $pod"
        exit 0
    fi
    if timeout "$left" tandem members remove "$pod" --if-absent-ok >&3 2>&1; then
        log "$pod left the cluster"
        exit 0
    fi
    sleep 1
done
