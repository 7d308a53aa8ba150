#!/bin/bash
# netns_hosts.sh: runs an MPI program with one rank per emulated host on this
# machine. Each "host" is a network namespace (tpinfer-h<i>-<suffix>) whose one
# interface (tp0, 10.77.<net>.<i+1>/24) is a veth pair into a third namespace
# (tpinfer-sw-<suffix>) holding the switch: a Linux bridge, or with --delay-ms a
# user-space switch that holds every frame (delay_switch.py). Nothing is added to
# the root namespace: the addresses exist only inside the namespaces, so rank
# traffic cannot leave them. Everything is removed on exit (trap).
#
#   netns_hosts.sh [--hosts N] [--ranks-per-host R] [--rate RATE] [--burst BYTES] [--delay-ms MS] -- PROGRAM [ARGS...]
#
#   --hosts N      emulated hosts (default 2)
#   --ranks-per-host R
#                  ranks on each host (default 1): N x R ranks in all, filled
#                  host by host (ranks 0..R-1 on host 0, ...), so a tensor-
#                  parallel group of R ranks is one host and only pipeline
#                  sends cross the links; ranks of one host talk over its
#                  loopback, which is not shaped
#   --rate RATE    shape every link, both directions, with tc tbf (e.g. 1gbit, 100mbit)
#   --burst SIZE   tbf bucket (default 128kb). tbf only limits the rate: its
#                  latency/burst parameters bound a queue, they add no delay
#   --delay-ms MS  one-way delay added by the user-space switch (this kernel has
#                  no netem); costs throughput: every frame crosses user space
#
# Cores: each host gets its own share of the machine's cores (host i of N on
# cores [i*C/N, (i+1)*C/N)), set as the CPU affinity of its processes, as real
# hosts would have; with more hosts than cores they share all of them. Without
# this, Open MPI binds every host's first rank to core 0 (each daemon thinks
# it has the machine to itself), and two "hosts" time-share one core.
#
# mpirun runs inside host 0; the other hosts' daemons are started through a
# launch agent (instead of ssh) that enters the host's namespace and gives it
# its own UTS namespace and hostname. MPI is pinned to TCP (pml ob1, btl
# tcp,self) on the 10.77 interfaces: shared memory cannot bypass the links.
# After the run it prints the bytes each host interface sent and received.
#
# Exit status: the program's (mpirun's), 77 when this machine cannot make
# namespaces (not root, no ip/tc, no mpirun), 2 on bad usage.
set -u

hosts=2 per_host=1 rate="" burst=128kb delay_ms=0
while [ $# -gt 0 ]; do
  case "$1" in
    --hosts) hosts=$2; shift 2 ;;
    --ranks-per-host) per_host=$2; shift 2 ;;
    --rate) rate=$2; shift 2 ;;
    --burst) burst=$2; shift 2 ;;
    --delay-ms) delay_ms=$2; shift 2 ;;
    --) shift; break ;;
    -h|--help) sed -n '2,34p' "$0"; exit 0 ;;
    *) echo "netns_hosts: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done
if [ $# -eq 0 ]; then echo "netns_hosts: no program given (see --help)" >&2; exit 2; fi
case "$hosts" in ''|*[!0-9]*) echo "netns_hosts: --hosts needs a number" >&2; exit 2 ;; esac
if [ "$hosts" -lt 1 ] || [ "$hosts" -gt 16 ]; then echo "netns_hosts: --hosts must be 1..16" >&2; exit 2; fi
case "$per_host" in ''|*[!0-9]*) echo "netns_hosts: --ranks-per-host needs a number" >&2; exit 2 ;; esac
if [ "$per_host" -lt 1 ] || [ "$per_host" -gt 64 ]; then echo "netns_hosts: --ranks-per-host must be 1..64" >&2; exit 2; fi

skip() { echo "netns_hosts: SKIP: $*" >&2; exit 77; }
[ "$(id -u)" = 0 ] || skip "needs root to create network namespaces"
command -v ip >/dev/null || skip "no ip (iproute2)"
command -v mpirun >/dev/null || skip "no mpirun (openmpi-bin)"
command -v unshare >/dev/null || skip "no unshare (util-linux)"
[ -z "$rate" ] || command -v tc >/dev/null || skip "no tc for --rate"
[ "$delay_ms" = 0 ] || command -v python3 >/dev/null || skip "no python3 for --delay-ms"

here=$(cd "$(dirname "$0")" && pwd)
sfx="$$"
net=$(( $$ % 250 + 1 ))
sw="tpinfer-sw-$sfx"
work=$(mktemp -d /tmp/tpinfer-netns.XXXXXX)
switch_pid=""
mpirun_pid=""
made=()

cleanup() {
  # mpirun (stopped by TERM if it still runs) and its daemons finish on their
  # own once it is done; give them a moment, with the switch still forwarding
  # so that mpirun can reach them.
  if [ -n "$mpirun_pid" ]; then kill "$mpirun_pid" 2>/dev/null; fi
  for (( t = 0; t < 30; t++ )); do
    local busy=""
    for ns in "${made[@]}"; do
      [ "$ns" != "$sw" ] && [ -n "$(ip netns pids "$ns" 2>/dev/null)" ] && busy=1
    done
    [ -z "$busy" ] && break
    sleep 0.1
  done
  if [ -n "$switch_pid" ]; then kill "$switch_pid" 2>/dev/null; wait "$switch_pid" 2>/dev/null; fi
  for ns in "${made[@]}"; do
    # Anything still running in our namespaces was started by this script.
    for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -9 "$pid" 2>/dev/null; done
    ip netns del "$ns" 2>/dev/null
  done
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

ip netns add "$sw" 2>/dev/null || skip "cannot create a network namespace here"
made+=("$sw")
ip -n "$sw" link set lo up

addr() { echo "10.77.$net.$(( $1 + 1 ))"; }
ncpu=$(nproc)
cpus_of() {  # host index -> its cores, as a taskset list
  if [ "$hosts" -gt "$ncpu" ]; then echo "0-$(( ncpu - 1 ))"; return; fi
  echo "$(( $1 * ncpu / hosts ))-$(( ($1 + 1) * ncpu / hosts - 1 ))"
}
command -v taskset >/dev/null || skip "no taskset (util-linux)"
shape() {  # namespace, device
  [ -z "$rate" ] && return 0
  tc -n "$1" qdisc add dev "$2" root tbf rate "$rate" burst "$burst" latency 50ms ||
    { echo "netns_hosts: tc tbf rate $rate burst $burst failed on $2" >&2; exit 1; }
}

ports=()
for (( i = 0; i < hosts; i++ )); do
  h="tpinfer-h$i-$sfx"
  ip netns add "$h" || { echo "netns_hosts: cannot create $h" >&2; exit 1; }
  made+=("$h")
  ip -n "$h" link set lo up
  ip -n "$sw" link add "p$i" type veth peer name tp0 netns "$h" || { echo "netns_hosts: veth failed" >&2; exit 1; }
  ip -n "$h" addr add "$(addr "$i")/24" dev tp0
  ip -n "$h" link set tp0 up
  ip -n "$sw" link set "p$i" up
  shape "$h" tp0      # host -> switch
  shape "$sw" "p$i"   # switch -> host
  ports+=("p$i")
  echo "$(addr "$i") $h tpinfer-h$i $(cpus_of "$i")" >> "$work/hosts.map"
  echo "$(addr "$i") slots=$per_host" >> "$work/hostfile"
done

if [ "$delay_ms" = 0 ]; then
  ip -n "$sw" link add br0 type bridge
  for p in "${ports[@]}"; do ip -n "$sw" link set "$p" master br0; done
  ip -n "$sw" link set br0 up
else
  ip netns exec "$sw" python3 "$here/delay_switch.py" --delay-ms "$delay_ms" --ready-file "$work/switch.ready" \
    "${ports[@]}" &
  switch_pid=$!
  # Wait until it forwards (it says so with the file), not for a guess of how
  # long its start takes on a loaded machine; 60 s only end a hang.
  for (( t = 0; t < 600; t++ )); do
    [ -e "$work/switch.ready" ] && break
    kill -0 "$switch_pid" 2>/dev/null || break
    sleep 0.1
  done
  [ -e "$work/switch.ready" ] || { echo "netns_hosts: the delay switch did not start" >&2; exit 1; }
fi

# The launch agent mpirun uses instead of ssh: "agent HOST COMMAND..." runs the
# command line, like ssh's remote shell, inside HOST's namespace and hostname.
cat > "$work/agent" <<EOF
#!/bin/sh
host=\$1; shift
line=\$(grep "^\$host " "$work/hosts.map") || { echo "netns agent: unknown host \$host" >&2; exit 1; }
set -- \$line "\$@"
ns=\$2 name=\$3 cpus=\$4; shift 4
exec ip netns exec "\$ns" taskset -c "\$cpus" unshare --uts sh -c "hostname \$name && \$*"
EOF
chmod +x "$work/agent"

map_by=node
if [ "$per_host" -gt 1 ]; then map_by=slot; fi
echo "netns_hosts: $hosts hosts x $per_host ranks (namespaces tpinfer-*-$sfx) on 10.77.$net.0/24, rate ${rate:-unlimited}, delay ${delay_ms} ms" >&2
ip netns exec "tpinfer-h0-$sfx" taskset -c "$(cpus_of 0)" unshare --uts sh -c 'hostname tpinfer-h0 && exec "$@"' sh \
  mpirun --allow-run-as-root --hostfile "$work/hostfile" -np $(( hosts * per_host )) --map-by "$map_by" \
  --bind-to none \
  --mca plm_rsh_agent "$work/agent" \
  --mca pml ob1 --mca btl tcp,self \
  --mca btl_tcp_if_include "10.77.$net.0/24" --mca oob_tcp_if_include "10.77.$net.0/24" \
  -x PATH ${LD_LIBRARY_PATH:+-x LD_LIBRARY_PATH} \
  "$@" &
mpirun_pid=$!
# In the background so that a TERM from a watchdog runs the trap at once (bash
# defers traps until a foreground child returns, and mpirun may never return
# when a daemon cannot reach it).
wait "$mpirun_pid"
status=$?
mpirun_pid=""

for (( i = 0; i < hosts; i++ )); do
  stats=$(ip -n "tpinfer-h$i-$sfx" -s -o link show tp0 2>/dev/null | sed 's/\\/ /g')
  rx=$(echo "$stats" | awk '{for (k = 1; k <= NF; k++) if ($k == "RX:") {print $(k + 7); exit}}')
  tx=$(echo "$stats" | awk '{for (k = 1; k <= NF; k++) if ($k == "TX:") {print $(k + 7); exit}}')
  echo "netns_hosts: host $i ($(addr "$i")) sent ${tx:-?} bytes, received ${rx:-?} bytes on tp0" >&2
done
exit $status
