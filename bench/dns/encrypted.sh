#!/usr/bin/env bash
# DNS over TLS and DNS over HTTPS queries/second: dashcdn geodns (its own DoT and DoH
# listeners) vs dnsdist (Debian's, the usual way to put DoT/DoH in front of an
# authoritative server) terminating DoT/DoH in front of gdnsd 3 — same zone, same MaxMind
# test database, same certificate (a test CA and a leaf for 127.0.0.1 made here), ECS on
# every query, answers checked equal first (kdig +tls / +https). Load on loopback:
# dnsperf 2.10 `-m dot` for DoT, h2load (nghttp2) for DoH over HTTP/2, GET and POST.
#   bench/dns/encrypted.sh [SECONDS] [ROUNDS]   (default 5 s per run, 3 rounds)
# The two servers take turns, in alternating order, each round, so load from elsewhere on
# the machine hits both alike; every run is printed, then the total per workload. Beside
# qps, each side's CPU time per answered query (/proc/PID/stat around the run; for the
# peer, dnsdist's and gdnsd's together): steadier than qps on a shared machine.
source "$(dirname "$0")/../common.sh"
SECS="${1:-5}"
ROUNDS="${2:-3}"
CLIENTS="${CLIENTS:-4}"
DB="$ROOT/geodns/tests/data/GeoIP2-City-Test.mmdb"
CONF="$ROOT/bench/dns"
for t in dnsdist gdnsd dnsperf h2load kdig openssl; do
  command -v "$t" >/dev/null || { echo "$t missing: run scripts/setup.sh --bench" >&2; exit 1; }
done
workdir dns-encrypted
T="$W"
P_OURS=$(free_port); P_OURS_DOT=$(free_port); P_OURS_DOH=$(free_port); P_METRICS=$(free_port)
P_HEALTH=$(free_port); P_GDNSD=$(free_port)
P_DD=$(free_port); P_DD_DOT=$(free_port); P_DD_DOH=$(free_port)

# One test CA and one ECDSA P-256 leaf for 127.0.0.1, used by both servers.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
  -subj "/CN=dashcdn bench CA" -keyout "$T/ca.key" -out "$T/ca.pem" 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=127.0.0.1" \
  -keyout "$T/key.pem" -out "$T/leaf.csr" 2>/dev/null
printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n' > "$T/ext"
openssl x509 -req -in "$T/leaf.csr" -CA "$T/ca.pem" -CAkey "$T/ca.key" -CAcreateserial \
  -days 2 -extfile "$T/ext" -out "$T/cert.pem" 2>/dev/null

mkdir -p "$T/www/_edge"; echo ok > "$T/www/_edge/healthz"
python3 -m http.server "$P_HEALTH" --bind 127.0.0.1 --directory "$T/www" >/dev/null 2>&1 &
PIDS+=($!)

# dashcdn geodns with its DoT and DoH listeners
sed -e "s/@PORT@/$P_OURS/; s/@METRICS_PORT@/$P_METRICS/; s/@HEALTH_PORT@/$P_HEALTH/" \
    -e "s|^maxmind = .*|maxmind = \"$DB\"|" "$CONF/geodns.toml" > "$T/geodns.toml"
"$DASHCDN" -q geodns --config "$T/geodns.toml" --dot-listen "127.0.0.1:$P_OURS_DOT" \
  --doh-listen "127.0.0.1:$P_OURS_DOH" --tls-cert "$T/cert.pem" --tls-key "$T/key.pem" &
PIDS+=($!); PID_OURS=$!

# gdnsd on UDP/TCP, dnsdist's DoT and DoH frontends forwarding to it
mkdir -p "$T/gdnsd/zones" "$T/gdnsd/geoip" "$T/run" "$T/state"
sed -e "s/@PORT@/$P_GDNSD/; s|@DIR@|$T|g" "$CONF/gdnsd.conf" > "$T/gdnsd/config"
cp "$CONF/kingcdn.test.zone" "$T/gdnsd/zones/kingcdn.test"
cp "$DB" "$T/gdnsd/geoip/"
gdnsd -c "$T/gdnsd" start >"$T/gdnsd.log" 2>&1 &
PIDS+=($!); PID_GDNSD=$!
sed -e "s/@PORT@/$P_DD/; s/@DOT_PORT@/$P_DD_DOT/; s/@DOH_PORT@/$P_DD_DOH/; s/@BACKEND@/$P_GDNSD/" \
    -e "s|@DIR@|$T|g" "$CONF/dnsdist.conf" > "$T/dnsdist.conf"
wait_port "$P_GDNSD"
dnsdist --supervised --disable-syslog -C "$T/dnsdist.conf" >"$T/dnsdist.log" 2>&1 &
PIDS+=($!); PID_DD=$!
for p in "$P_OURS" "$P_OURS_DOT" "$P_OURS_DOH" "$P_METRICS" "$P_DD_DOT" "$P_DD_DOH"; do wait_port "$p"; done

# Same answers first, over both transports.
ask() { kdig "+$1" +tls-ca="$T/ca.pem" +tls-hostname=127.0.0.1 +short +norec +time=2 +retry=1 \
          @127.0.0.1 -p "$2" a1105.kingcdn.test A "+subnet=$3" 2>&1 | sort | tr '\n' ' '; }
for subnet in 81.2.69.160/27 216.160.83.56/29 175.16.199.0/24; do
  for tr in "tls $P_OURS_DOT $P_DD_DOT" "https $P_OURS_DOH $P_DD_DOH"; do
    read -r how po pd <<<"$tr"
    a=$(ask "$how" "$po" "$subnet"); d=$(ask "$how" "$pd" "$subnet")
    if [[ -z "$a" || "$a" != "$d" || ! "$a" =~ ^127\. ]]; then
      echo "answers differ for $subnet over $how: dashcdn=[$a] dnsdist+gdnsd=[$d]" >&2; exit 1
    fi
    echo "same answer over $how for $subnet: $a"
  done
done

echo "a1105.kingcdn.test A" > "$T/queries.txt"
# The DoH query (ID 0, RFC 8484 §4.1), with the same ECS option as the DoT queries.
python3 - "$T" <<'PY'
import base64, struct, sys
q = b"".join(bytes([len(l)]) + l.encode() for l in "a1105.kingcdn.test".split(".")) + b"\0"
ecs = struct.pack("!HBB", 1, 27, 0) + bytes([81, 2, 69, 0xA0])
opt = b"\0" + struct.pack("!HHIH", 41, 1232, 0, 4 + len(ecs)) + struct.pack("!HH", 8, len(ecs)) + ecs
msg = struct.pack("!HHHHHH", 0, 0, 1, 0, 0, 1) + q + struct.pack("!HH", 1, 1) + opt
open(sys.argv[1] + "/query.bin", "wb").write(msg)
open(sys.argv[1] + "/query.b64", "w").write(base64.urlsafe_b64encode(msg).decode().rstrip("="))
PY
# run MODE PORT → "qps avg_latency_ms answered". DoT: dnsperf -m dot, ECS 81.2.69.160/27 (London)
# on every query. DoH: h2load (HTTP/2, CLIENTS connections × 32 streams; dnsperf 2.10's
# DoH client sends one query at a time and stalls), every response must be a 2xx;
# h2load gives no mean latency, so its column shows the mean time per request.
run() {
  local m="$1" port="$2" url="https://127.0.0.1:$2/dns-query" out
  if [[ "$m" == dot ]]; then
    dnsperf -m dot -s 127.0.0.1 -p "$port" -d "$T/queries.txt" -l "$SECS" -c "$CLIENTS" \
      -T 1 -q 200 -E 8:00011b00510245a0 2>&1 |
      awk '/Queries completed:/ {n=$3} /Queries per second/ {q=$4} /Average Latency/ {l=$4*1000} END {printf "%.0f %.3f %d", q, l, n}'
    return
  fi
  if [[ "$m" == doh-get ]]; then
    out=$(h2load -D "$SECS" -c "$CLIENTS" -m 32 -t 1 "$url?dns=$(cat "$T/query.b64")" 2>&1)
  else
    out=$(h2load -D "$SECS" -c "$CLIENTS" -m 32 -t 1 -d "$T/query.bin" \
            -H 'content-type: application/dns-message' "$url" 2>&1)
  fi
  if ! grep -qE 'requests: .* 0 failed, 0 errored' <<<"$out" || ! grep -qE 'status codes: [0-9]+ 2xx, 0 3xx, 0 4xx, 0 5xx' <<<"$out"; then
    echo "h2load against $url ($m) had failures:" >&2; grep -E 'requests:|status codes' <<<"$out" >&2; exit 1
  fi
  awk '/finished in/ {q=$4} /^requests:/ {n=$8} /time for request:/ {l=$7} END {printf "%.0f %s %d", q, l, n}' <<<"$out"
}
# CPU time (user + system, clock ticks) the processes have used so far, all threads.
ticks() { local p t=0; for p in "$@"; do t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat"))); done; echo "$t"; }
# µs of CPU per answered query: cpu_us TICKS ANSWERED
cpu_us() { awk -v d="$1" -v n="$2" -v hz="$(getconf CLK_TCK)" 'BEGIN {printf "%.1f", d / hz * 1e6 / n}'; }
port_of() { case "$1:$2" in ours:dot) echo "$P_OURS_DOT" ;; ours:*) echo "$P_OURS_DOH" ;;
                            dd:dot) echo "$P_DD_DOT" ;; dd:*) echo "$P_DD_DOH" ;; esac; }

echo; echo "uptime before: $(uptime)"
declare -A SUM_O SUM_D CPU_O CPU_D
printf '\n%-9s %5s %22s %26s %8s %20s\n' "transport" "round" "dashcdn qps (lat ms)" "dnsdist+gdnsd qps (lat ms)" "ratio" "CPU µs/q ours/peer"
for r in $(seq "$ROUNDS"); do
  for m in dot doh-get doh-post; do
    order="ours dd"; ((r % 2 == 0)) && order="dd ours"
    for who in $order; do
      if [[ "$who" == ours ]]; then pids=("$PID_OURS"); else pids=("$PID_DD" "$PID_GDNSD"); fi
      t0=$(ticks "${pids[@]}")
      read -r q l n <<<"$(run "$m" "$(port_of "$who" "$m")")"
      t1=$(ticks "${pids[@]}")
      if [[ "$who" == ours ]]; then qo=$q lo=$l co=$(cpu_us $((t1 - t0)) "$n")
      else qd=$q ld=$l cd=$(cpu_us $((t1 - t0)) "$n"); fi
    done
    SUM_O[$m]=$(( ${SUM_O[$m]:-0} + qo )); SUM_D[$m]=$(( ${SUM_D[$m]:-0} + qd ))
    CPU_O[$m]=$(awk -v a="${CPU_O[$m]:-0}" -v b="$co" 'BEGIN {print a + b}')
    CPU_D[$m]=$(awk -v a="${CPU_D[$m]:-0}" -v b="$cd" 'BEGIN {print a + b}')
    printf '%-9s %5s %13s (%6s) %17s (%6s) %7sx %20s\n' "$m" "$r" "$qo" "$lo" "$qd" "$ld" "$(ratio "$qo" "$qd")" "$co/$cd"
  done
done
echo "uptime after: $(uptime)"
printf '\n%-9s %12s %16s %8s %18s   (total over %s rounds)\n' "transport" "dashcdn" "dnsdist+gdnsd" "ratio" "CPU/q peer÷ours" "$ROUNDS"
for m in dot doh-get doh-post; do
  printf '%-9s %12s %16s %7sx %17sx\n' "$m" "${SUM_O[$m]}" "${SUM_D[$m]}" "$(ratio "${SUM_O[$m]}" "${SUM_D[$m]}")" \
    "$(ratio "${CPU_D[$m]}" "${CPU_O[$m]}")"
done
