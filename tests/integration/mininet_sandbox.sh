#!/usr/bin/env bash
# Run a command in a sandbox of its own, with a private Open vSwitch:
#
#     mininet_sandbox.sh OUTDIR COMMAND [ARGS...]
#
# for what must never reach the machine, such as Mininet's `mn -c` (it kills every ping,
# controller and ryu-manager, deletes every OVS bridge and *-ethN link, and `rm -f /tmp/*.log`).
# The sandbox: new mount, PID and network namespaces (`unshare`), tmpfs on /tmp and /run
# (/var/run is /run), loopback up, HOME in the private /run, and ovsdb-server + ovs-vswitchd
# (userspace datapath) of its own on /run/openvswitch, which ovs-vsctl, Mininet and wlbridge
# use by default (OVS_RUNDIR, WLBRIDGE_OVSDB point there too).  OUTDIR (outside) is mounted on
# /run/out: the command's way to leave files behind.  COMMAND's exit status is the script's;
# when it ends (or the sandbox is killed) every process inside dies with the PID namespace,
# and its mounts and links go with the namespaces.
set -euo pipefail

if [ "${WLBRIDGE_SANDBOX:-}" != inside ]; then
    [ $# -ge 2 ] || { echo "usage: $0 OUTDIR COMMAND [ARGS...]" >&2; exit 2; }
    [ -d "$1" ] || { echo "$0: $1: no such directory" >&2; exit 2; }
    exec unshare --mount --propagation private --pid --fork --mount-proc --net --kill-child \
        env WLBRIDGE_SANDBOX=inside "$(readlink -f "$0")" "$(readlink -f "$1")" "${@:2}"
fi

out=$1
shift
mount -t tmpfs -o mode=0755 wlbridge-sandbox-run /run
[ -L /var/run ] || mount --bind /run /var/run        # where /var/run is not a link to /run
mkdir -p /run/out
mount --bind "$out" /run/out
mount -t tmpfs -o mode=1777 wlbridge-sandbox-tmp /tmp
ip link set lo up

ovs=/run/ovs
mkdir -p /run/openvswitch "$ovs/db" "$ovs/log" "$ovs/etc" /run/home
export HOME=/run/home TMPDIR=/tmp
export OVS_RUNDIR=/run/openvswitch OVS_DBDIR=$ovs/db OVS_LOGDIR=$ovs/log OVS_SYSCONFDIR=$ovs/etc
export WLBRIDGE_OVSDB=unix:/run/openvswitch/db.sock
ovsdb-tool create "$ovs/db/conf.db" /usr/share/openvswitch/vswitch.ovsschema
ovsdb-server "$ovs/db/conf.db" --remote=punix:/run/openvswitch/db.sock \
    --pidfile=/run/openvswitch/ovsdb-server.pid \
    --unixctl=/run/openvswitch/ovsdb-server.ctl \
    --log-file="$ovs/log/ovsdb-server.log" -vconsole:emer --no-chdir --detach
ovs-vsctl --no-wait init
ovs-vswitchd unix:/run/openvswitch/db.sock --pidfile=/run/openvswitch/ovs-vswitchd.pid \
    --log-file="$ovs/log/ovs-vswitchd.log" -vconsole:emer --no-chdir --detach
ovs-vsctl --timeout=10 wait-until Open_vSwitch . 'datapath_types{>=}netdev' >/dev/null \
    || { echo "$0: the sandbox's Open vSwitch has no userspace datapath" >&2; exit 1; }

set +e
"$@"
rc=$?
cp "$ovs/log/"*.log /run/out/ 2>/dev/null
exit $rc
