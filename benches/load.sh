#!/usr/bin/env bash
# Load comparison on loopback: the upstream directly vs. authgate in front of
# it (full auth on every request: bearer token + live session + activity +
# header rewrite), and authgate's 401 path. Uses oha
# (`cargo install oha --locked`). Targets are interleaved A B C, A B C, ...
# for ROUNDS rounds; medians are reported with ratios to direct.
#
#   benches/load.sh                 # DUR=10s CONC=50 ROUNDS=3
#   DUR=5s CONC=20 ROUNDS=1 benches/load.sh
#
# Reports req/s, p50/p99 latency, and the gateway's CPU time per request
# (utime+stime from /proc over the run / requests served). Loopback only.
set -euo pipefail
cd "$(dirname "$0")/.."

DUR=${DUR:-10s}
CONC=${CONC:-50}
ROUNDS=${ROUNDS:-3}
BIN=${BIN:-target/release/authgate}
command -v oha >/dev/null || { echo "oha not found: cargo install oha --locked" >&2; exit 1; }
[ -x "$BIN" ] || cargo build --release --bin authgate

tmp=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$tmp"; }
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }
UP=$(free_port); GW=$(free_port); ADMIN=$(free_port)

"$BIN" gen-keys --dir "$tmp/certs" >/dev/null
HASH=$(echo 'bench-password' | "$BIN" hash-password)
printf 'users:\n  - username: bench\n    password_hash: "%s"\n    roles: [user]\n' "$HASH" > "$tmp/users.yaml"
cat > "$tmp/authgate.yaml" <<EOF
server:
  listen: 127.0.0.1:$GW
  admin_listen: 127.0.0.1:$ADMIN
  public_url: https://localhost:$GW
  threads: 2
tls:
  cert: $tmp/certs/tls-cert.pem
  key: $tmp/certs/tls-key.pem
auth:
  users_file: $tmp/users.yaml
  jwt:
    signing_key: $tmp/certs/jwt-signing-key.pem
  access_token_ttl: 1h
  idle_timeout: 1h
  concurrent_sessions:
    policy: allow
routes:
  - name: app
    path_prefix: /
    upstream: http://127.0.0.1:$UP
EOF

"$BIN" whoami --listen "127.0.0.1:$UP" 2>/dev/null & pids+=($!)
"$BIN" run -c "$tmp/authgate.yaml" 2>"$tmp/gw.log" & GWPID=$!; pids+=($GWPID)
for _ in $(seq 100); do
  curl -sk -o /dev/null "https://localhost:$GW/" && curl -s -o /dev/null "http://127.0.0.1:$UP/" && break
  sleep 0.1
done
TOKEN=$(curl -sk "https://localhost:$GW/auth/signin" -H 'content-type: application/json' \
  -d '{"username":"bench","password":"bench-password","delivery":"body"}' | python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])')

cpu_ticks() { awk '{print $14+$15}' "/proc/$1/stat"; }
TICK=$(getconf CLK_TCK)

# run NAME URL [extra oha args...] -> appends "name rps p50 p99 cpu_us_per_req" to $tmp/results
run() {
  local name=$1 url=$2; shift 2
  local before after
  before=$(cpu_ticks "$GWPID")
  oha -z "$DUR" -c "$CONC" --no-tui --insecure --output-format json "$@" "$url" > "$tmp/$name.json"
  after=$(cpu_ticks "$GWPID")
  python3 - "$tmp/$name.json" "$name" "$before" "$after" "$TICK" >> "$tmp/results" <<'PY'
import json, sys
path, name, before, after, tick = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
d = json.load(open(path))
s = d["summary"]
codes = d.get("statusCodeDistribution", {})
total = sum(int(v) for v in codes.values())
ok = sum(int(v) for k, v in codes.items() if k.startswith("2") or (name == "gw_401" and k == "401"))
p = d["latencyPercentiles"]
cpu_us = (int(after) - int(before)) / tick * 1e6 / max(total, 1) if name != "direct" else 0.0
print(name, s["requestsPerSec"], p["p50"] * 1e3, p["p99"] * 1e3, cpu_us, total - ok)
PY
}

for r in $(seq "$ROUNDS"); do
  run direct "http://127.0.0.1:$UP/x"
  run gw_bearer "https://localhost:$GW/x" -H "Authorization: Bearer $TOKEN"
  run gw_401 "https://localhost:$GW/x" -H "Accept: application/json"
done

python3 - "$tmp/results" "$DUR" "$CONC" "$ROUNDS" <<'PY'
import sys, statistics
rows = {}
for line in open(sys.argv[1]):
    name, *vals = line.split()
    rows.setdefault(name, []).append([float(v) for v in vals])
med = {n: [statistics.median(col) for col in zip(*v)] for n, v in rows.items()}
direct = med["direct"][0]
print(f"oha -z {sys.argv[2]} -c {sys.argv[3]}, {sys.argv[4]} interleaved round(s), medians")
print(f"{'target':<28}{'req/s':>10}{'x direct':>10}{'p50 ms':>9}{'p99 ms':>9}{'gw CPU us/req':>15}{'unexpected':>12}")
labels = {"direct": "upstream direct (HTTP)", "gw_bearer": "authgate, bearer (HTTPS)", "gw_401": "authgate, 401 path (HTTPS)"}
for n in ("direct", "gw_bearer", "gw_401"):
    rps, p50, p99, cpu, bad = med[n]
    cpu_s = "-" if n == "direct" else f"{cpu:.1f}"
    print(f"{labels[n]:<28}{rps:>10.0f}{rps / direct:>10.2f}{p50:>9.2f}{p99:>9.2f}{cpu_s:>15}{int(bad):>12}")
PY
