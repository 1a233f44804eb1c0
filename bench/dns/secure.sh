#!/usr/bin/env bash
# Signed and unsigned geo answers: dashcdn geodns (online signing, RRSIG cache) vs Knot
# DNS 3 (geoip module, online signing), same zone and MaxMind test database, ECS on every
# query; with the DO bit (signed answers) and without (unsigned). dnsperf on loopback;
# qps and each server's CPU time per answered query (from /proc/PID/stat).
#   bench/dns/secure.sh [SECONDS] [ROUNDS]    (default 10 s per run, 1 round)
# Needs knot, knot-module-geoip and dnsperf (scripts/setup.sh --bench).
source "$(dirname "$0")/../common.sh"
SECS="${1:-10}"
ROUNDS="${2:-1}"
CLIENTS="${CLIENTS:-4}"
DB="$ROOT/geodns/tests/data/GeoIP2-City-Test.mmdb"
CONF="$ROOT/bench/dns"
for t in knotd keymgr dnsperf; do
  command -v "$t" >/dev/null || { echo "$t missing: apt-get install knot knot-module-geoip dnsperf" >&2; exit 1; }
done
workdir dns-secure
T="$W"
P_OURS=$(free_port); P_METRICS=$(free_port); P_HEALTH=$(free_port); P_KNOT=$(free_port)

mkdir -p "$T/www/_edge"; echo ok > "$T/www/_edge/healthz"
python3 -m http.server "$P_HEALTH" --bind 127.0.0.1 --directory "$T/www" >/dev/null 2>&1 &
PIDS+=($!)

# dashcdn geodns, signing with a fresh key
"$DASHCDN" -q geodns keygen --zone kingcdn.test --dir "$T/keys" >/dev/null
sed -e "s/@PORT@/$P_OURS/; s/@METRICS_PORT@/$P_METRICS/; s/@HEALTH_PORT@/$P_HEALTH/" \
    -e "s|^maxmind = .*|maxmind = \"$DB\"|" "$CONF/geodns.toml" > "$T/geodns.toml"
"$DASHCDN" -q geodns --config "$T/geodns.toml" --dnssec-keys "$T/keys" &
PIDS+=($!); PID_OURS=$!

# Knot: keys made before the start, so the geoip module signs from its first answer
mkdir -p "$T/db"
sed -e "s/@PORT@/$P_KNOT/; s|@DIR@|$T|g; s|@DB@|$DB|" "$CONF/knot.conf" > "$T/knot.conf"
cp "$CONF/knot-geo.conf" "$CONF/knot-kingcdn.test.zone" "$T/"
keymgr -c "$T/knot.conf" kingcdn.test generate algorithm=ecdsap256sha256 ksk=yes zsk=yes >/dev/null
knotd -c "$T/knot.conf" >"$T/knot.log" 2>&1 &
PIDS+=($!); PID_KNOT=$!
wait_port "$P_OURS"; wait_port "$P_KNOT"; wait_port "$P_METRICS"

ask() { dig +short +norec +dnssec +time=2 +tries=2 @127.0.0.1 -p "$1" a1105.kingcdn.test A "+subnet=$2" | sort | tr '\n' ' '; }
for subnet in 81.2.69.0/24 81.2.69.160/27 216.160.83.56/29 175.16.199.0/24; do
  a=$(ask "$P_OURS" "$subnet" | awk '{print $1}'); k=$(ask "$P_KNOT" "$subnet" | awk '{print $1}')
  sa=$(ask "$P_OURS" "$subnet" | grep -c "A 13 3 30" || true); sk=$(ask "$P_KNOT" "$subnet" | grep -c "A 13 3 30" || true)
  if [[ -z "$a" || "$a" != "$k" || "$sa" == 0 || "$sk" == 0 ]]; then
    echo "answers differ for $subnet: dashcdn=[$(ask "$P_OURS" "$subnet")] knot=[$(ask "$P_KNOT" "$subnet")]" >&2
    exit 1
  fi
  echo "same signed answer for $subnet: $a"
done

echo "a1105.kingcdn.test A" > "$T/queries.txt"
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
# run PORT ECS DO PID → "qps avg_latency_ms server_cpu_µs_per_query"
run() {
  local t0 t1 out
  t0=$(ticks "$4")
  out=$(dnsperf -s 127.0.0.1 -p "$1" -d "$T/queries.txt" -l "$SECS" -c "$CLIENTS" -T 1 -q 200 -E "$2" ${3:+-D} 2>&1)
  t1=$(ticks "$4")
  awk -v dt=$((t1 - t0)) -v hz="$(getconf CLK_TCK)" '/Queries completed:/ {n=$3} /Queries per second/ {q=$4}
    /Average Latency/ {l=$4*1000} END {printf "%.0f %.3f %.2f", q, l, dt / hz * 1e6 / n}' <<<"$out"
}

echo; echo "uptime before: $(uptime)"
printf '\n%-40s %5s %22s %22s %9s %14s\n' "workload (ECS)" "round" "dashcdn qps (lat ms)" "knot qps (lat ms)" "÷knot" "CPU µs/q a/k"
declare -A SA SK CA CK
WORKLOADS=("8:00011b00510245a0 81.2.69.160/27 London" "8:00011800af10c7 175.16.199.0/24 Changchun")
# ROUNDS rounds, the two servers in alternating order, so load from elsewhere hits both.
for r in $(seq "$ROUNDS"); do
  for w in "${WORKLOADS[@]}"; do
    opt="${w%% *}"; name="${w#* }"
    for mode in unsigned signed; do
      do_bit=""; [[ "$mode" == signed ]] && do_bit=1
      if ((r % 2)); then
        read -r qa la ca <<<"$(run "$P_OURS" "$opt" "$do_bit" "$PID_OURS")"; read -r qk lk ck <<<"$(run "$P_KNOT" "$opt" "$do_bit" "$PID_KNOT")"
      else
        read -r qk lk ck <<<"$(run "$P_KNOT" "$opt" "$do_bit" "$PID_KNOT")"; read -r qa la ca <<<"$(run "$P_OURS" "$opt" "$do_bit" "$PID_OURS")"
      fi
      k="$name, $mode"
      SA[$k]=$(( ${SA[$k]:-0} + qa )); SK[$k]=$(( ${SK[$k]:-0} + qk ))
      CA[$k]=$(awk -v a="${CA[$k]:-0}" -v b="$ca" 'BEGIN {print a + b}'); CK[$k]=$(awk -v a="${CK[$k]:-0}" -v b="$ck" 'BEGIN {print a + b}')
      printf '%-40s %5s %13s (%6s) %13s (%6s) %8sx %14s\n' "$k" "$r" "$qa" "$la" "$qk" "$lk" "$(ratio "$qa" "$qk")" "$ca/$ck"
    done
  done
done
echo "uptime after: $(uptime)"
printf '\n%-40s %12s %12s %9s %15s   (totals over %s rounds)\n' workload dashcdn knot "÷knot" "CPU/q knot÷ours" "$ROUNDS"
for w in "${WORKLOADS[@]}"; do
  name="${w#* }"
  for mode in unsigned signed; do
    k="$name, $mode"
    printf '%-40s %12s %12s %8sx %14sx\n' "$k" "${SA[$k]}" "${SK[$k]}" "$(ratio "${SA[$k]}" "${SK[$k]}")" "$(ratio "${CK[$k]}" "${CA[$k]}")"
  done
done
