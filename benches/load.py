#!/usr/bin/env python3
"""Load comparison on loopback: authgate against nginx (and HAProxy) as peer
proxies in front of the same small upstream, measured in one interleaved run.

    benches/load.py                          # DUR=5 CONC=50 ROUNDS=3
    DUR=10 ROUNDS=5 benches/load.py --out /tmp/load.json

Needs: nginx (Debian nginx-light), and oha (`cargo install oha --locked`)
and/or wrk (Debian wrk); HAProxy (Debian haproxy) is used when present.
Nothing here leaves 127.0.0.1.

What it starts, each on a free loopback port:
  * upstream: nginx answering a small 200 (the "direct" target);
  * nginx as a reverse proxy to it, no auth (plain HTTP and TLS listeners);
  * HAProxy to it, no auth and with `jwt_verify` HS256 + an exp check;
  * authgate to it (EdDSA tokens, plain-HTTP `server.http_listen` and the
    TLS listener), with real tokens from its own signin: full auth on every
    request (token, live session, activity, identity-header rewrite).

Every target is run with every load tool, A B C ... for ROUNDS rounds at a
fixed concurrency. Reported per target: median req/s, p50/p99 latency, the
proxy's CPU time per request (utime+stime of all its processes from
/proc/PID/stat, over the run, divided by the responses), ratios to direct
and to nginx on the same transport, and responses other than the expected
status. Then the flows oha cannot drive (benches/flows.rs): signin
throughput (argon2id-bound) and chained refresh throughput.
"""

import argparse
import json
import os
import re
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import base64
import hashlib
import hmac
import urllib.request
import signal
import ctypes

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TICK = os.sysconf("SC_CLK_TCK")
# Debian installs nginx and haproxy in /usr/sbin, which is not on a normal
# user's PATH.
SEARCH_PATH = os.pathsep.join([os.environ.get("PATH", ""), "/usr/local/sbin", "/usr/sbin", "/sbin"])
STOP_SIGNALS = {signal.SIGTERM, signal.SIGINT, signal.SIGHUP}
TARGET_KEYS = ("direct", "nginx", "haproxy", "haproxy_hs256", "floor", "gw_bearer", "gw_cookie", "gw_401",
               "nginx_tls", "gw_tls_bearer", "gw_tls_cookie")


def which(name):
    return shutil.which(name, path=SEARCH_PATH)


def child_setup():
    """In each child: its own process group (stop() signals the whole group,
    nginx and HAProxy workers included), and SIGKILL for the group leader
    if load.py dies without cleaning up (kill -9; its workers then notice
    their master is gone only on their next event)."""
    os.setpgid(0, 0)
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def die(msg, code=2):
    """A bad argument or a missing tool (exit 2), or with code=1 a failure
    while running."""
    print(f"load.py: {msg}", file=sys.stderr)
    sys.exit(code)


def fail(msg):
    die(msg, 1)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, what, proc=None, timeout=20):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc is not None and proc.poll() is not None:
            fail(f"{what} exited with {proc.returncode} before listening on {port}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    fail(f"{what} did not listen on 127.0.0.1:{port} within {timeout}s")


def pids_of(root_pid):
    """root_pid and its children (nginx/haproxy workers)."""
    out = [root_pid]
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
                if int(fields[1]) == root_pid:
                    out.append(int(d))
            except (OSError, IndexError, ValueError):
                pass
    return out


def cpu_seconds(pids):
    total = 0
    for p in pids:
        with open(f"/proc/{p}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / TICK


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def hs256_token(secret, ttl=3600):
    now = int(time.time())
    head = b64url(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    body = b64url(json.dumps({"sub": "bench", "iat": now, "exp": now + ttl}).encode())
    sig = hmac.new(secret, f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{b64url(sig)}"


class Bench:
    def __init__(self, args):
        self.args = args
        self.tmp = tempfile.mkdtemp(prefix="authgate-load-")
        self.procs = []
        self.bin = args.bin
        self.callgrind_out = {}  # pid -> callgrind's output file (--callgrind)

    # ---- processes -------------------------------------------------------

    def spawn(self, name, cmd, port, counted=False, **kw):
        """Starts a process; `counted` ones (authgate, the pingora floor) run
        under callgrind in --callgrind mode."""
        log = open(os.path.join(self.tmp, f"{name}.log"), "w")
        timeout = 20
        out = None
        if counted and self.args.callgrind:
            out = os.path.join(self.tmp, f"cg.{name}.out")
            cmd = [which("valgrind"), "--tool=callgrind", f"--callgrind-out-file={out}"] + cmd
            timeout = 120
        try:
            p = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, preexec_fn=child_setup, **kw)
        except OSError as e:
            fail(f"cannot start {name} ({cmd[0]}): {e}")
        self.procs.append(p)
        if out:
            self.callgrind_out[p.pid] = out
        wait_port(port, name, p, timeout)
        return p

    def instructions(self, target, n):
        """Instructions the target's process executes per request, counted
        by callgrind over `n` requests after a warm-up (exact, and the same
        on a busy or an idle machine)."""
        key, _, _, url, headers, pids, expect = target
        pid = pids[0]

        def oha(count):
            cmd = [which("oha"), "-n", str(count), "-c", "4", "--no-tui", "--output-format", "json"]
            for h in headers:
                cmd += ["-H", h]
            return subprocess.run(cmd + [url], check=True, capture_output=True, text=True)

        oha(200)  # warm-up, not counted
        subprocess.run([which("callgrind_control"), "-z", str(pid)], check=True, capture_output=True)
        out = oha(n)
        subprocess.run([which("callgrind_control"), "-d", str(pid)], check=True, capture_output=True)
        codes = json.loads(out.stdout).get("statusCodeDistribution", {})
        if int(codes.get(str(expect), 0)) != n:
            fail(f"{key}: expected {n} x {expect} under callgrind, got {codes}")
        # Each dump is OUT.1, OUT.2, ...: the newest is this target's.
        base = os.path.basename(self.callgrind_out[pid])
        dumps = [f for f in os.listdir(self.tmp) if f.startswith(f"{base}.")]
        newest = max(dumps, key=lambda f: int(f.rsplit(".", 1)[1]))
        ann = subprocess.run([which("callgrind_annotate"), os.path.join(self.tmp, newest)], capture_output=True, text=True)
        m = re.search(r"([\d,]+) \(100\.0%\)\s+PROGRAM TOTALS", ann.stdout)
        if not m:
            fail(f"could not read callgrind's totals for {key}")
        return int(m.group(1).replace(",", "")) / n

    def stop(self):
        # A second signal must not cut the cleanup short.
        signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
        # SIGINT: fast shutdown for all of them (pingora would wait out its
        # grace period on SIGTERM, nginx and HAProxy stop at once on either),
        # to each child's whole process group.
        for p in self.procs:
            try:
                os.killpg(p.pid, signal.SIGINT)
            except ProcessLookupError:
                pass
        for p in self.procs:
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
            try:
                os.killpg(p.pid, signal.SIGKILL)  # stragglers (workers) of the group
            except ProcessLookupError:
                pass
            p.wait()
        if self.args.keep:
            print(f"kept {self.tmp}")
        else:
            shutil.rmtree(self.tmp, ignore_errors=True)

    def nginx(self, name, server_block):
        prefix = os.path.join(self.tmp, name)
        os.makedirs(prefix, exist_ok=True)
        conf = os.path.join(prefix, "nginx.conf")
        temp = "\n".join(
            f"  {k}_temp_path {prefix}/{k};" for k in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
        )
        with open(conf, "w") as f:
            f.write(f"""worker_processes {self.args.threads};
daemon off;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  keepalive_requests 1000000;
  keepalive_timeout 300s;
{temp}
{server_block}
}}
""")
        return conf, prefix

    def start(self):
        a = self.args
        t = self.tmp
        self.ports = {k: free_port() for k in ("up", "ngx", "ngx_tls", "hap", "hap_jwt")}
        P = self.ports
        subprocess.run([self.bin, "gen-keys", "--dir", f"{t}/certs"], check=True, stdout=subprocess.DEVNULL)
        cert, key = f"{t}/certs/tls-cert.pem", f"{t}/certs/tls-key.pem"

        # The upstream: a small 200, the same for every target.
        conf, prefix = self.nginx("upstream", f"""  server {{
    listen 127.0.0.1:{P['up']} reuseport backlog=4096;
    location / {{ default_type text/plain; return 200 "hello from upstream\\n"; }}
  }}""")
        self.upstream = self.spawn("upstream", [self.args.nginx_bin, "-p", prefix, "-c", conf, "-e", f"{prefix}/error.log"], P["up"])

        # The peer: nginx as a plain reverse proxy, keep-alive to the upstream.
        conf, prefix = self.nginx("nginx-proxy", f"""  upstream app {{ server 127.0.0.1:{P['up']}; keepalive 256; keepalive_requests 1000000; }}
  server {{
    listen 127.0.0.1:{P['ngx']} reuseport backlog=4096;
    listen 127.0.0.1:{P['ngx_tls']} ssl reuseport backlog=4096;
    ssl_certificate {cert};
    ssl_certificate_key {key};
    ssl_protocols TLSv1.2 TLSv1.3;
    location / {{
      proxy_pass http://app;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host $host;
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
    }}
  }}""")
        self.nginx_proxy = self.spawn("nginx-proxy", [self.args.nginx_bin, "-p", prefix, "-c", conf, "-e", f"{prefix}/error.log"], P["ngx"])
        wait_port(P["ngx_tls"], "nginx-proxy TLS")

        # HAProxy, if present: no auth, and HS256 jwt_verify with an exp check.
        self.hs_secret = secrets.token_hex(32).encode()
        self.haproxy = None
        if a.haproxy_bin:
            with open(f"{t}/hs.secret", "wb") as f:
                f.write(self.hs_secret)
            hcfg = f"{t}/haproxy.cfg"
            with open(hcfg, "w") as f:
                f.write(f"""global
  nbthread {a.threads}
  maxconn 8000
defaults
  mode http
  timeout connect 5s
  timeout client 60s
  timeout server 60s
  http-reuse always
frontend plain
  bind 127.0.0.1:{P['hap']}
  default_backend app
frontend jwt
  bind 127.0.0.1:{P['hap_jwt']}
  http-request set-var(txn.bearer) http_auth_bearer
  http-request deny deny_status 401 unless {{ var(txn.bearer),jwt_header_query('$.alg') -m str HS256 }}
  http-request deny deny_status 401 unless {{ var(txn.bearer),jwt_verify("HS256","{self.hs_secret.decode()}") -m int 1 }}
  http-request set-var(txn.now) date
  http-request set-var(txn.exp) var(txn.bearer),jwt_payload_query('$.exp','int')
  http-request deny deny_status 401 unless {{ var(txn.exp) -m int ge 1 }}
  http-request deny deny_status 401 unless {{ var(txn.exp),sub(txn.now) -m int ge 0 }}
  http-request set-header X-Auth-User %[var(txn.bearer),jwt_payload_query('$.sub')]
  default_backend app
backend app
  server s1 127.0.0.1:{P['up']}
""")
            self.haproxy = self.spawn("haproxy", [a.haproxy_bin, "-db", "-f", hcfg], P["hap"])
            wait_port(P["hap_jwt"], "haproxy jwt")

        # authgate: plain-HTTP and TLS listeners, default EdDSA, full auth.
        self.password = "bench-" + secrets.token_hex(8)
        h = subprocess.run([self.bin, "hash-password"], input=self.password + "\n",
                           capture_output=True, text=True, check=True)
        with open(f"{t}/users.yaml", "w") as f:
            f.write(f'users:\n  - username: bench\n    password_hash: "{h.stdout.strip()}"\n    roles: [user]\n')
        self.gateway = self.start_gateway("authgate", self.bin, {})
        self.variants = []
        for label, binary, extra in a.variants:
            self.variants.append((label, self.start_gateway(f"authgate-{label}", binary, extra)))

        # The framework's floor: pingora with no filters at all, same version.
        self.floor = None
        if a.floor_bin:
            P["floor"] = free_port()
            self.floor = self.spawn("pingora-floor", [a.floor_bin, f"127.0.0.1:{P['floor']}", f"127.0.0.1:{P['up']}"],
                                    P["floor"], counted=True, env=dict(os.environ, FLOOR_THREADS=str(a.threads)))

    def start_gateway(self, name, binary, extra_env):
        """One authgate on its own ports, with a bearer token and a cookie
        from its own signin (sessions live in each gateway's memory)."""
        t, a = self.tmp, self.args
        g = {"plain": free_port(), "tls": free_port(), "admin": free_port()}
        with open(f"{t}/{name}.yaml", "w") as f:
            f.write(f"""server:
  listen: 127.0.0.1:{g['tls']}
  http_listen: 127.0.0.1:{g['plain']}
  admin_listen: 127.0.0.1:{g['admin']}
  public_url: https://localhost:{g['tls']}
  threads: {a.threads}
tls:
  cert: {t}/certs/tls-cert.pem
  key: {t}/certs/tls-key.pem
auth:
  users_file: {t}/users.yaml
  jwt:
    signing_key: {t}/certs/jwt-signing-key.pem
  access_token_ttl: 1h
  refresh_token_ttl: 8h
  idle_timeout: 1h
  concurrent_sessions:
    policy: allow
routes:
  - name: app
    path_prefix: /
    upstream: http://127.0.0.1:{self.ports['up']}
""")
        env = dict(os.environ)
        env["RUST_LOG"] = os.environ.get("RUST_LOG", "warn")
        env.update(extra_env)
        proc = self.spawn(name, [binary, "run", "-c", f"{t}/{name}.yaml"], g["plain"], counted=True, env=env)
        wait_port(g["tls"], f"{name} TLS")

        def signin(delivery):
            req = urllib.request.Request(
                f"http://127.0.0.1:{g['plain']}/auth/signin",
                data=json.dumps({"username": "bench", "password": self.password, "delivery": delivery}).encode(),
                headers={"content-type": "application/json"},
            )
            with urllib.request.urlopen(req) as r:
                return json.load(r), r.headers.get_all("set-cookie") or []

        body, _ = signin("body")
        _, cookies = signin("cookie")
        g["pid"] = proc.pid
        g["bearer"] = f"Authorization: Bearer {body['access_token']}"
        g["cookie"] = "Cookie: " + next(c.split(";")[0] for c in cookies if c.startswith("__Host-authgate="))
        return g

    # ---- targets ---------------------------------------------------------

    def targets(self):
        P, g = self.ports, self.gateway
        ngx = pids_of(self.nginx_proxy.pid)
        up = pids_of(self.upstream.pid)
        plain, tls = f"http://127.0.0.1:{g['plain']}/", f"https://127.0.0.1:{g['tls']}/"
        t = [
            # key, label, transport, url, headers, pids, expected status
            ("direct", "upstream directly", "http", f"http://127.0.0.1:{P['up']}/", [], up, 200),
            ("nginx", "nginx proxy, no auth", "http", f"http://127.0.0.1:{P['ngx']}/", [], ngx, 200),
        ]
        if self.haproxy:
            hap = pids_of(self.haproxy.pid)
            t += [
                ("haproxy", "HAProxy, no auth", "http", f"http://127.0.0.1:{P['hap']}/", [], hap, 200),
                ("haproxy_hs256", "HAProxy + jwt_verify HS256", "http", f"http://127.0.0.1:{P['hap_jwt']}/",
                 [f"Authorization: Bearer {hs256_token(self.hs_secret)}"], hap, 200),
            ]
        if self.floor:
            t.append(("floor", "pingora, no filters (framework floor)", "http",
                      f"http://127.0.0.1:{P['floor']}/", [], [self.floor.pid], 200))
        t += [
            ("gw_bearer", "authgate, bearer", "http", plain, [g["bearer"]], [g["pid"]], 200),
            ("gw_cookie", "authgate, cookie", "http", plain, [g["cookie"]], [g["pid"]], 200),
            ("gw_401", "authgate, no credential (401)", "http", plain, ["Accept: application/json"], [g["pid"]], 401),
        ]
        for label, v in self.variants:
            t += [
                (f"gw_bearer@{label}", f"authgate {label}, bearer", "http", f"http://127.0.0.1:{v['plain']}/",
                 [v["bearer"]], [v["pid"]], 200),
            ]
        t += [
            ("nginx_tls", "nginx proxy, no auth", "tls", f"https://127.0.0.1:{P['ngx_tls']}/", [], ngx, 200),
            ("gw_tls_bearer", "authgate, bearer", "tls", tls, [g["bearer"]], [g["pid"]], 200),
            ("gw_tls_cookie", "authgate, cookie", "tls", tls, [g["cookie"]], [g["pid"]], 200),
        ]
        for label, v in self.variants:
            t.append((f"gw_tls_bearer@{label}", f"authgate {label}, bearer", "tls", f"https://127.0.0.1:{v['tls']}/",
                      [v["bearer"]], [v["pid"]], 200))
        return t

    # ---- load tools ------------------------------------------------------

    def run_oha(self, url, headers):
        a = self.args
        cmd = [which("oha"), "-z", f"{a.dur:g}s", "-c", str(a.conc), "--no-tui", "--insecure", "--output-format", "json"]
        for h in headers:
            cmd += ["-H", h]
        out = subprocess.run(cmd + [url], capture_output=True, text=True)
        if out.returncode != 0:
            fail(f"oha failed on {url}: {out.stderr.strip()}")
        d = json.loads(out.stdout)
        codes = {int(k): int(v) for k, v in d.get("statusCodeDistribution", {}).items()}
        # Requests still in flight when the duration ends are aborted by oha
        # itself: not an answer of the target.
        errors = sum(int(v) for k, v in d.get("errorDistribution", {}).items() if "deadline" not in k)
        lat = d["latencyPercentiles"]
        return {
            "rps": d["summary"]["requestsPerSec"],
            "p50_ms": (lat.get("p50") or 0) * 1e3,
            "p99_ms": (lat.get("p99") or 0) * 1e3,
            "codes": codes,
            "errors": errors,
        }

    def run_wrk(self, url, headers):
        a = self.args
        cmd = [which("wrk"), f"-t{a.threads}", f"-c{a.conc}", f"-d{a.dur:g}s", "--latency",
               "-s", os.path.join(ROOT, "benches", "wrk_status.lua")]
        for h in headers:
            cmd += ["-H", h]
        out = subprocess.run(cmd + [url], capture_output=True, text=True)
        if out.returncode != 0:
            fail(f"wrk failed on {url}: {out.stdout.strip()} {out.stderr.strip()}")
        text = out.stdout

        def ms(label):
            m = re.search(rf"^\s+{label}\s+([\d.]+)(us|ms|s)\b", text, re.M)
            if not m:
                return 0.0
            return float(m.group(1)) * {"us": 1e-3, "ms": 1.0, "s": 1e3}[m.group(2)]

        codes = {}
        for code, n in re.findall(r"^status (\d+) (\d+)$", text, re.M):
            codes[int(code)] = codes.get(int(code), 0) + int(n)
        total = int(re.search(r"(\d+) requests in", text).group(1))
        if sum(codes.values()) < total:
            fail(f"wrk counted {total} responses but benches/wrk_status.lua reported {sum(codes.values())}")
        errs = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
        errors = sum(int(x) for x in errs.groups()) if errs else 0
        return {
            "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1)),
            "p50_ms": ms("50%"),
            "p99_ms": ms("99%"),
            "codes": codes,
            "errors": errors,
        }

    def measure(self, tool, target):
        key, _, _, url, headers, pids, expect = target
        before = cpu_seconds(pids)
        r = (self.run_oha if tool == "oha" else self.run_wrk)(url, headers)
        cpu = cpu_seconds(pids) - before
        served = sum(r["codes"].values())
        r["unexpected"] = served - r["codes"].get(expect, 0) + r["errors"]
        r["cpu_us"] = cpu / max(served, 1) * 1e6
        r["served"] = served
        return r

    def flows(self, mode, conc):
        exe = self.args.flows_bin
        env = dict(
            os.environ,
            FLOWS_URL=f"http://127.0.0.1:{self.gateway['plain']}",
            FLOWS_USER="bench",
            FLOWS_PASSWORD=self.password,
            FLOWS_MODE=mode,
            FLOWS_CONC=str(conc),
            FLOWS_SECONDS=str(self.args.dur),
        )
        before = cpu_seconds([self.gateway["pid"]])
        out = subprocess.run([exe], env=env, capture_output=True, text=True)
        cpu = cpu_seconds([self.gateway["pid"]]) - before
        if out.returncode != 0:
            fail(f"flows {mode} failed: {out.stderr.strip()}")
        d = json.loads(out.stdout.strip().splitlines()[-1])
        d["cpu_us"] = cpu / max(d["requests"], 1) * 1e6
        return d


def build(args):
    if not args.bin:
        subprocess.run(["cargo", "build", "--release", "--bin", "authgate"], cwd=ROOT, check=True)
        args.bin = os.path.join(ROOT, "target/release/authgate")
    want = []
    if not args.flows_bin and not args.no_flows:
        want.append("flows")
    if not args.floor_bin:
        want.append("pingora_floor")
    if want:
        cmd = ["cargo", "bench", "--no-run", "--message-format=json"]
        for w in want:
            cmd += ["--bench", w]
        out = subprocess.run(cmd, cwd=ROOT, check=True, capture_output=True, text=True)
        for line in out.stdout.splitlines():
            msg = json.loads(line)
            if msg.get("reason") == "compiler-artifact" and msg.get("executable"):
                if msg["target"]["name"] == "flows":
                    args.flows_bin = msg["executable"]
                elif msg["target"]["name"] == "pingora_floor":
                    args.floor_bin = msg["executable"]
        for w, got in (("flows", args.flows_bin or args.no_flows), ("pingora_floor", args.floor_bin)):
            if not got:
                die(f"could not find the {w} bench executable")
    if args.floor_bin == "none":
        args.floor_bin = None


def report(results, targets, tools, args, flows, meta):
    lines = []
    say = lines.append
    say(f"{meta}")
    say(f"c={args.conc}, {args.dur}s per run, {args.rounds} interleaved round(s), medians; "
        f"CPU = the proxy's own utime+stime per response")
    summary = {}
    for tool in tools:
        say("")
        say(f"## {tool}")
        say("| target | transport | req/s | × direct | × nginx | p50 ms | p99 ms | proxy CPU µs/req | unexpected |")
        say("|---|---|---|---|---|---|---|---|---|")
        med = {}
        for key, *_ in targets:
            runs = results[tool][key]
            med[key] = {f: statistics.median(r[f] for r in runs) for f in ("rps", "p50_ms", "p99_ms", "cpu_us")}
            med[key]["unexpected"] = sum(r["unexpected"] for r in runs)
        summary[tool] = med
        for key, label, transport, *_ in targets:
            m = med[key]
            peer = "nginx_tls" if transport == "tls" else "nginx"
            x_direct = m["rps"] / med["direct"]["rps"]
            x_nginx = "–" if key in ("direct", peer) else f"{m['rps'] / med[peer]['rps']:.2f}"
            cpu = "–" if key == "direct" else f"{m['cpu_us']:.1f}"
            say(f"| {label} | {transport} | {m['rps']:,.0f} | {x_direct:.2f} | {x_nginx} | "
                f"{m['p50_ms']:.2f} | {m['p99_ms']:.2f} | {cpu} | {m['unexpected']} |")
    if flows:
        say("")
        say("## flows (benches/flows.rs, plain-HTTP listener)")
        say("| flow | clients | ok/s | p50 ms | p99 ms | gateway CPU µs/op | non-2xx | errors |")
        say("|---|---|---|---|---|---|---|---|")
        for d in flows:
            say(f"| {d['mode']} | {d['conc']} | {d['rps']:,.1f} | {d['p50_ms']:.2f} | {d['p99_ms']:.2f} | "
                f"{d['cpu_us']:.0f} | {d['non_2xx']} | {d['errors']} |")
    print("\n".join(lines))
    return summary, "\n".join(lines)


def main():
    env = os.environ
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    def from_env(name, default, kind):
        text = env.get(name, default)
        try:
            return kind(text.rstrip("s") if name == "DUR" else text)
        except ValueError:
            die(f"{name}={text!r} is not a {'number of seconds' if name == 'DUR' else 'whole number'}")

    ap.add_argument("--dur", type=float, default=from_env("DUR", "5", float), help="seconds per run (DUR)")
    ap.add_argument("--conc", type=int, default=from_env("CONC", "50", int), help="connections (CONC)")
    ap.add_argument("--rounds", type=int, default=from_env("ROUNDS", "3", int), help="interleaved rounds (ROUNDS)")
    ap.add_argument("--threads", type=int, default=2, help="worker threads/processes of every proxy")
    ap.add_argument("--tools", default=env.get("TOOLS", "oha,wrk"), help="comma list of oha,wrk (TOOLS)")
    ap.add_argument("--only", default="", help="comma list of target keys to run (default: all)")
    ap.add_argument("--bin", default=env.get("BIN") or None, help="authgate binary (default: build target/release)")
    ap.add_argument("--flows-bin", default=None, help="the flows bench executable (default: build it)")
    ap.add_argument("--no-flows", action="store_true", help="skip signin/refresh throughput")
    ap.add_argument("--no-haproxy", action="store_true", help="leave HAProxy out even if installed")
    ap.add_argument("--compare", action="append", default=[], metavar="LABEL=BINARY[,VAR=VALUE...]",
                    help="also run another authgate build (or the same one with other env vars) in the same run")
    ap.add_argument("--floor-bin", default=None,
                    help="a bare pingora proxy (benches/pingora_floor.rs; default: build it; 'none' to skip)")
    ap.add_argument("--callgrind", type=int, default=0, metavar="N",
                    help="instead of timing: count instructions per request over N requests under valgrind")
    ap.add_argument("--out", help="also write all runs as JSON here")
    ap.add_argument("--keep", action="store_true", help="keep the temp dir (configs, logs)")
    ap.add_argument("--serve", action="store_true",
                    help="start everything, print the targets and PIDs, and wait (for profiling by hand)")
    args = ap.parse_args()
    for name in ("dur", "conc", "rounds", "threads"):
        if not getattr(args, name) > 0:
            die(f"--{name} must be positive, not {getattr(args, name)}")
    if args.callgrind < 0:
        die(f"--callgrind wants a number of requests, not {args.callgrind}")

    # SIGTERM, SIGHUP and SIGINT (Ctrl-C) end the run: every process it
    # started is stopped and its temp dir removed. The first one blocks the
    # others, so that a second signal cannot cut the cleanup short.
    def stop_run(signum, _frame):
        signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
        raise SystemExit(128 + signum)
    for sig in STOP_SIGNALS:
        signal.signal(sig, stop_run)

    args.nginx_bin = which("nginx")
    if not args.nginx_bin:
        die("nginx not found (looked in PATH and /usr/sbin): apt-get install nginx-light "
            "(the upstream and the peer proxy)")
    args.haproxy_bin = None if args.no_haproxy else which("haproxy")
    if not args.haproxy_bin and not args.no_haproxy:
        print("load.py: haproxy not found, its targets are skipped (apt-get install haproxy)", file=sys.stderr)
    args.variants = []
    for spec in args.compare:
        label, _, rest = spec.partition("=")
        binary, *envs = rest.split(",") if rest else [""]
        bad_env = [e for e in envs if "=" not in e or not e.split("=", 1)[0]]
        if not re.fullmatch(r"[A-Za-z0-9_.-]+", label) or not binary or bad_env:
            die(f"--compare wants LABEL=BINARY[,VAR=VALUE...] (label of letters, digits, _.-), not {spec!r}")
        if label in [v[0] for v in args.variants]:
            die(f"--compare: the label {label!r} is used twice")
        args.variants.append((label, binary, dict(e.split("=", 1) for e in envs)))
    for what, path in [("--bin", args.bin), ("--flows-bin", args.flows_bin), ("--floor-bin", args.floor_bin)] + \
            [(f"--compare {label}", b) for label, b, _ in args.variants]:
        if path and path != "none" and not (os.path.isfile(path) and os.access(path, os.X_OK)):
            die(f"{what}: {path} is not an executable file")
    unknown = [k for k in args.only.split(",") if k and k not in TARGET_KEYS]
    if unknown:
        die(f"--only: unknown target {', '.join(unknown)}; targets are {', '.join(TARGET_KEYS)}")
    if args.callgrind and not (which("valgrind") and which("callgrind_control") and which("oha")):
        die("--callgrind needs valgrind (apt-get install valgrind) and oha (cargo install oha --locked)")
    tools = [t for t in args.tools.split(",") if t]
    if any(t not in ("oha", "wrk") for t in tools):
        die(f"--tools: a comma list of oha and wrk, not {args.tools!r}")
    missing = [t for t in tools if not which(t)]
    for t in missing:
        print(f"load.py: {t} not found, skipped ({'cargo install oha --locked' if t == 'oha' else 'apt-get install wrk'})",
              file=sys.stderr)
    tools = [t for t in tools if t not in missing]
    if not tools:
        die("no load tool: install oha (cargo install oha --locked) or wrk (apt-get install wrk)")
    build(args)

    b = Bench(args)
    try:
        b.start()
        targets = b.targets()
        if args.only:
            keep = set(args.only.split(",")) | {"direct", "nginx", "nginx_tls", "floor"}
            targets = [t for t in targets if t[0].split("@")[0] in keep]
        if args.callgrind:
            counted = [t for t in targets if t[0] == "floor" or t[0].startswith("gw_") and t[2] == "http"]
            rows = [(t, b.instructions(t, args.callgrind)) for t in counted]
            floor = next((ir for t, ir in rows if t[0] == "floor"), None)
            print(f"instructions per request (callgrind, {args.callgrind} requests at c=4, plain HTTP)")
            print("| target | instructions/request | × pingora floor |")
            print("|---|---|---|")
            for t, ir in rows:
                ratio = f"{ir / floor:.2f}" if floor else "–"
                print(f"| {t[1]} | {ir:,.0f} | {ratio} |")
            return
        if args.serve:
            for key, label, transport, url, headers, pids, expect in targets:
                hs = " ".join(f"-H '{h}'" for h in headers)
                print(f"{key:<14} pids {','.join(map(str, pids))}: wrk -c{args.conc} -d10s {hs} {url}")
            print("serving; Ctrl-C to stop", flush=True)
            while True:
                time.sleep(3600)
        results = {tool: {t[0]: [] for t in targets} for tool in tools}
        for rnd in range(args.rounds):
            for tool in tools:
                for target in targets:
                    r = b.measure(tool, target)
                    results[tool][target[0]].append(r)
                    print(f"round {rnd + 1} {tool:<3} {target[0]:<14} {r['rps']:>10,.0f} req/s "
                          f"p99 {r['p99_ms']:6.2f} ms  cpu {r['cpu_us']:6.1f} µs/req  unexpected {r['unexpected']}",
                          file=sys.stderr, flush=True)
        flows = []
        if not args.no_flows:
            for mode, conc in (("signin", 4), ("refresh", 16)):
                d = b.flows(mode, conc)
                d["conc"] = conc
                flows.append(d)
                print(f"flows {mode}: {d['rps']:.1f}/s", file=sys.stderr, flush=True)
        versions = []
        for cmd in (["nginx", "-v"], ["haproxy", "-v"], ["oha", "--version"], ["wrk", "-v"]):
            if which(cmd[0]):
                o = subprocess.run([which(cmd[0])] + cmd[1:], capture_output=True, text=True)
                versions.append((o.stdout + o.stderr).strip().splitlines()[0])
        meta = f"{os.cpu_count()} CPUs, {time.strftime('%Y-%m-%d')}; " + "; ".join(versions)
        summary, text = report(results, targets, tools, args, flows, meta)
        problems = []
        for tool, per in results.items():
            for key, runs in per.items():
                n = sum(r["unexpected"] for r in runs)
                if n:
                    codes = {}
                    for r in runs:
                        for c, k in r["codes"].items():
                            codes[c] = codes.get(c, 0) + k
                    errors = sum(r["errors"] for r in runs)
                    problems.append(f"{key} ({tool}): {n} unexpected; statuses {codes}, transport errors {errors}")
        for d in flows:
            if d["non_2xx"] + d["errors"]:
                problems.append(f"flow {d['mode']}: {d['non_2xx']} non-2xx, {d['errors']} transport errors")
        if args.out:
            with open(args.out, "w") as f:
                json.dump({"meta": meta, "args": vars(args), "runs": results, "medians": summary,
                           "flows": flows, "table": text}, f, indent=1, default=str)
        if problems:
            # Timing is reported, never judged; a wrong answer is a failure.
            fail("answers other than the expected status:\n  " + "\n  ".join(problems))
    finally:
        b.stop()


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        sys.exit(130)
