#!/usr/bin/env bash
# Response rate limiting under a flood: queries/second of a legitimate client while one
# source floods the same name, dashcdn geodns (`[rrl]`) vs Knot DNS 3 (mod-rrl), both
# unsigned with the geoip module, same zone and MaxMind test database, same limit and
# slip, the legitimate client's network exempt (Knot: whitelisted) as a big resolver's
# would be. Each server also runs with RRL off, so the cost of turning it on shows.
#   bench/dns/rrl.sh [SECONDS] [ROUNDS]    (default 5 s per run, 3 rounds)
# Legitimate client: dnsperf from 127.1.0.2 (another /24 on loopback), ECS on every
# query, as fast as it goes. Flood: dnsperf from 127.0.0.1 at FLOOD queries/s (default
# 20000, 200× the limit) with a 0.1 s timeout, so withheld answers do not stall it.
# The four servers take turns, in alternating order, each round.
source "$(dirname "$0")/../common.sh"
SECS="${1:-5}"
ROUNDS="${2:-3}"
RPS="${RPS:-100}"
FLOOD="${FLOOD:-20000}"
CLIENTS="${CLIENTS:-4}"
LEGIT=127.1.0.2
EXEMPT=127.1.0.0/16
DB="$ROOT/geodns/tests/data/GeoIP2-City-Test.mmdb"
CONF="$ROOT/bench/dns"
for t in knotd dnsperf; do
  command -v "$t" >/dev/null || { echo "$t missing: run scripts/setup.sh --bench" >&2; exit 1; }
done
workdir dns-rrl
T="$W"
P_HEALTH=$(free_port)
mkdir -p "$T/www/_edge"; echo ok > "$T/www/_edge/healthz"
python3 -m http.server "$P_HEALTH" --bind 127.0.0.1 --directory "$T/www" >/dev/null 2>&1 &
PIDS+=($!)

declare -A PORT
for rrl in off on; do
  # dashcdn geodns
  PORT[ours-$rrl]=$(free_port); pm=$(free_port)
  sed -e "s/@PORT@/${PORT[ours-$rrl]}/; s/@METRICS_PORT@/$pm/; s/@HEALTH_PORT@/$P_HEALTH/" \
      -e "s|^maxmind = .*|maxmind = \"$DB\"|" "$CONF/geodns.toml" > "$T/geodns-$rrl.toml"
  if [[ "$rrl" == on ]]; then
    printf '\n[rrl]\nresponses_per_second = %s\nslip = 2\nexempt = ["%s"]\n' "$RPS" "$EXEMPT" >> "$T/geodns-$rrl.toml"
  fi
  "$DASHCDN" -q geodns --config "$T/geodns-$rrl.toml" &
  PIDS+=($!)
  # Knot
  PORT[knot-$rrl]=$(free_port); d="$T/knot-$rrl"; mkdir -p "$d/db"
  mark=""; [[ "$rrl" == off ]] && mark="# "
  sed -e "s/@PORT@/${PORT[knot-$rrl]}/; s|@DIR@|$d|g; s|@DB@|$DB|; s/@RPS@/$RPS/" \
      -e "s|@EXEMPT@|$EXEMPT|; s|@RRL@|$mark|" "$CONF/knot-rrl.conf" > "$d/knot.conf"
  cp "$CONF/knot-geo.conf" "$CONF/knot-kingcdn.test.zone" "$d/"
  knotd -c "$d/knot.conf" >"$d/knot.log" 2>&1 &
  PIDS+=($!)
done
for k in "${!PORT[@]}"; do wait_port "${PORT[$k]}"; done

# Same answer from all four, from the legitimate client's address.
for k in ours-off ours-on knot-off knot-on; do
  a=$(dig +short +norec +time=2 +tries=2 -b "$LEGIT" @127.0.0.1 -p "${PORT[$k]}" a1105.kingcdn.test A +subnet=81.2.69.160/27)
  [[ "$a" == 127.0.1.1 ]] || { echo "$k answers [$a] for London, want 127.0.1.1" >&2; exit 1; }
done
echo "same answer from all four: 127.0.1.1"

echo "a1105.kingcdn.test A" > "$T/queries.txt"
# legit PORT → "qps" (answers lost on the way are printed to stderr: a lost query holds
# one of dnsperf's 200 slots for the 1 s timeout)
legit() {
  dnsperf -a "$LEGIT" -s 127.0.0.1 -p "$1" -d "$T/queries.txt" -l "$SECS" -c "$CLIENTS" -T 1 \
    -q 200 -t 1 -E 8:00011b00510245a0 2>&1 |
    awk '/Queries lost:/ && $3 > 0 {print "  (legit lost " $3 " queries)" > "/dev/stderr"}
         /Queries per second/ {printf "%.0f", $4}'
}
# flood PORT → "answered/s sent/s" (answered counts truncated replies too)
flood() {
  dnsperf -a 127.0.0.1 -s 127.0.0.1 -p "$1" -d "$T/queries.txt" -l "$SECS" -c 1 -T 1 -q 2000 \
    -t 0.1 -Q "$FLOOD" -E 8:00011b00510245a0 2>&1 |
    awk -v s="$SECS" '/Queries sent:/ {n=$3} /Queries completed:/ {c=$3} END {printf "%.0f %.0f", c/s, n/s}'
}
# case SERVER → "legit_qps_alone legit_qps_under_flood flood_answered/s flood_sent/s"
measure() {
  local port="${PORT[$1]}" alone under f
  alone=$(legit "$port")
  flood "$port" > "$T/flood.out" &
  local fp=$!
  sleep 0.3
  under=$(legit "$port")
  wait "$fp"
  echo "$alone $under $(cat "$T/flood.out")"
}

echo; echo "uptime before: $(uptime)"
declare -A ALONE UNDER
printf '\n%-9s %5s %18s %22s %24s\n' server round "legit qps alone" "legit qps under flood" "flood answered/sent /s"
for r in $(seq "$ROUNDS"); do
  order="ours-off knot-off ours-on knot-on"; ((r % 2 == 0)) && order="knot-on ours-on knot-off ours-off"
  for k in $order; do
    read -r a u fa fs <<<"$(measure "$k")"
    ALONE[$k]=$(( ${ALONE[$k]:-0} + a )); UNDER[$k]=$(( ${UNDER[$k]:-0} + u ))
    printf '%-9s %5s %18s %22s %14s / %s\n' "$k" "$r" "$a" "$u" "$fa" "$fs"
  done
done
echo "uptime after: $(uptime)"

printf '\ntotals over %s rounds (legit qps summed):\n' "$ROUNDS"
printf '%-9s %14s %14s %16s\n' server alone "under flood" "under ÷ alone"
for k in ours-off ours-on knot-off knot-on; do
  printf '%-9s %14s %14s %15sx\n' "$k" "${ALONE[$k]}" "${UNDER[$k]}" "$(ratio "${UNDER[$k]}" "${ALONE[$k]}")"
done
echo
echo "RRL-on cost to legit traffic, no flood (on ÷ off): ours $(ratio "${ALONE[ours-on]}" "${ALONE[ours-off]}")x, knot $(ratio "${ALONE[knot-on]}" "${ALONE[knot-off]}")x"
echo "legit qps under flood, RRL on, ours ÷ knot: $(ratio "${UNDER[ours-on]}" "${UNDER[knot-on]}")x"
echo "legit qps under flood, RRL off, ours ÷ knot: $(ratio "${UNDER[ours-off]}" "${UNDER[knot-off]}")x"
