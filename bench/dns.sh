#!/usr/bin/env bash
# Geo DNS throughput and latency: dashcdn geodns vs gdnsd (geoip plugin, auto_dc_coords)
# vs PowerDNS (geoip backend), same zone, same PoPs, same MaxMind test database, each
# checked to give the same answers first. dnsperf on loopback, geo-routed name, with an
# EDNS Client Subnet option on every query. Besides qps, each server's CPU time per answered
# query (from /proc/PID/stat around each run): steadier than qps on a shared machine.
# Ours runs with health checks (against a
# local HTTP target) and /metrics on.
#   bench/dns.sh [SECONDS] [ROUNDS]    (default 10 s per run, 1 round)
# Servers run in the foreground on loopback high ports with config dirs under /tmp;
# only the PIDs started here are stopped.
source "$(dirname "$0")/common.sh"
SECS="${1:-10}"
ROUNDS="${2:-1}"
CLIENTS="${CLIENTS:-4}"
DB="$ROOT/geodns/tests/data/GeoIP2-City-Test.mmdb"
CONF="$ROOT/bench/dns"
workdir dns-bench
T="$W"

P_OURS=$(free_port); P_METRICS=$(free_port); P_HEALTH=$(free_port)
P_GDNSD=$(free_port); P_PDNS=$(free_port)

# Health-check target for our PoPs: a static /_edge/healthz.
mkdir -p "$T/www/_edge"; echo ok > "$T/www/_edge/healthz"
python3 -m http.server "$P_HEALTH" --bind 127.0.0.1 --directory "$T/www" >/dev/null 2>&1 &
PIDS+=($!)

# dashcdn geodns
sed -e "s/@PORT@/$P_OURS/; s/@METRICS_PORT@/$P_METRICS/; s/@HEALTH_PORT@/$P_HEALTH/" \
    -e "s|^maxmind = .*|maxmind = \"$DB\"|" "$CONF/geodns.toml" > "$T/geodns.toml"
"$DASHCDN" -q geodns --config "$T/geodns.toml" &
PIDS+=($!); PID_OURS=$!

# gdnsd 3 (foreground `start`)
mkdir -p "$T/gdnsd/zones" "$T/gdnsd/geoip" "$T/run" "$T/state"
sed -e "s/@PORT@/$P_GDNSD/; s|@DIR@|$T|g" "$CONF/gdnsd.conf" > "$T/gdnsd/config"
cp "$CONF/kingcdn.test.zone" "$T/gdnsd/zones/kingcdn.test"
cp "$DB" "$T/gdnsd/geoip/"
gdnsd -c "$T/gdnsd" start >"$T/gdnsd.log" 2>&1 &
PIDS+=($!); PID_GDNSD=$!

# PowerDNS authoritative with the geoip backend (foreground, no guardian)
mkdir -p "$T/pdns"; : > "$T/pdns/pdns.conf"
pdns_server --config-dir="$T/pdns" --daemon=no --guardian=no --disable-syslog \
  --write-pid=no --socket-dir="$T/pdns" --local-address=127.0.0.1 --local-port="$P_PDNS" \
  --launch=geoip --geoip-database-files="mmdb:$DB" --geoip-zones-file="$CONF/pdns-zones.yaml" \
  --edns-subnet-processing=yes >"$T/pdns.log" 2>&1 &
PIDS+=($!); PID_PDNS=$!

wait_port "$P_OURS"; wait_port "$P_GDNSD"; wait_port "$P_PDNS"; wait_port "$P_METRICS"

# Same answers first: every client subnet used below, plus London/Seattle/Asia/unknown.
ask() { dig +short +norec +time=2 +tries=2 @127.0.0.1 -p "$1" a1105.kingcdn.test A "+subnet=$2" | sort | tr '\n' ' '; }
for subnet in 81.2.69.0/24 81.2.69.160/27 216.160.83.56/29 175.16.199.0/24 10.1.2.0/24; do
  a=$(ask "$P_OURS" "$subnet"); g=$(ask "$P_GDNSD" "$subnet"); p=$(ask "$P_PDNS" "$subnet")
  if [[ -z "$a" || "$a" != "$g" || "$a" != "$p" ]]; then
    echo "answers differ for $subnet: dashcdn=[$a] gdnsd=[$g] pdns=[$p]" >&2; exit 1
  fi
  echo "same answer for $subnet: $a"
done

echo "a1105.kingcdn.test A" > "$T/queries.txt"
# CPU time (user + system, clock ticks) a process has used so far, all threads.
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
# run PORT ECS PID → "qps avg_latency_ms server_cpu_µs_per_query"
run() {
  local t0 t1 out
  t0=$(ticks "$3")
  out=$(dnsperf -s 127.0.0.1 -p "$1" -d "$T/queries.txt" -l "$SECS" -c "$CLIENTS" -T 1 -q 200 -E "$2" 2>&1)
  t1=$(ticks "$3")
  awk -v dt=$((t1 - t0)) -v hz="$(getconf CLK_TCK)" '/Queries completed:/ {n=$3} /Queries per second/ {q=$4}
    /Average Latency/ {l=$4*1000} END {printf "%.0f %.3f %.2f", q, l, dt / hz * 1e6 / n}' <<<"$out"
}

echo; echo "uptime before: $(uptime)"
printf '\n%-34s %5s %22s %22s %22s %9s %9s %18s\n' "workload (ECS)" "round" "dashcdn qps (lat ms)" "gdnsd qps (lat ms)" "pdns qps (lat ms)" "÷gdnsd" "÷pdns" "CPU µs/q a/g/p"
declare -A SA SG SP CA CG
WORKLOADS=("8:00011800510245 81.2.69.0/24 (issue; DB miss→default)"
           "8:00011b00510245a0 81.2.69.160/27 (London)"
           "8:00011800af10c7 175.16.199.0/24 (Changchun)")
# ROUNDS rounds; in each, the servers take turns per workload in an order that rotates
# from round to round, so a burst of load from elsewhere hits all three alike.
for r in $(seq "$ROUNDS"); do
  for w in "${WORKLOADS[@]}"; do
    opt="${w%% *}"; name="${w#* }"
    case $((r % 3)) in 1) order="a g p" ;; 2) order="g p a" ;; 0) order="p a g" ;; esac
    for who in $order; do
      case $who in
        a) read -r qa la ca <<<"$(run "$P_OURS" "$opt" "$PID_OURS")" ;;
        g) read -r qg lg cg <<<"$(run "$P_GDNSD" "$opt" "$PID_GDNSD")" ;;
        p) read -r qp lp cp <<<"$(run "$P_PDNS" "$opt" "$PID_PDNS")" ;;
      esac
    done
    SA[$name]=$(( ${SA[$name]:-0} + qa )); SG[$name]=$(( ${SG[$name]:-0} + qg )); SP[$name]=$(( ${SP[$name]:-0} + qp ))
    CA[$name]=$(awk -v a="${CA[$name]:-0}" -v b="$ca" 'BEGIN {print a + b}'); CG[$name]=$(awk -v a="${CG[$name]:-0}" -v b="$cg" 'BEGIN {print a + b}')
    printf '%-34s %5s %13s (%6s) %13s (%6s) %13s (%6s) %8sx %8sx %18s\n' "$name" "$r" "$qa" "$la" "$qg" "$lg" "$qp" "$lp" \
      "$(ratio "$qa" "$qg")" "$(ratio "$qa" "$qp")" "$ca/$cg/$cp"
  done
done
echo "uptime after: $(uptime)"
printf '\n%-34s %12s %12s %12s %9s %9s %16s   (totals over %s rounds)\n' "workload" dashcdn gdnsd pdns "÷gdnsd" "÷pdns" "CPU/q gdnsd÷ours" "$ROUNDS"
for w in "${WORKLOADS[@]}"; do
  name="${w#* }"
  printf '%-34s %12s %12s %12s %8sx %8sx %15sx\n' "$name" "${SA[$name]}" "${SG[$name]}" "${SP[$name]}" \
    "$(ratio "${SA[$name]}" "${SG[$name]}")" "$(ratio "${SA[$name]}" "${SP[$name]}")" "$(ratio "${CG[$name]}" "${CA[$name]}")"
done

# Our metrics saw the load (health checks and metrics were on).
curl -s "http://127.0.0.1:$P_METRICS/metrics" 2>/dev/null | grep -E '^dashcdn_geodns_(answers_by_pop_total|pop_up)' || true
