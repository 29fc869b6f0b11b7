#!/usr/bin/env python3
"""meshscrape-proxy against a direct scrape and the seed's nginx sidecar, side by side in one run.

For each exposition size it scrapes the same upstream three ways, alternating the order between
rounds (these machines are noisy, so only ratios within one run mean anything):
  direct   wrk -> upstream nginx (static file)
  nginx    wrk -> nginx sidecar configured as in seed/nginx-sidecar-wiki.txt -> upstream
  proxy    wrk -> meshscrape-proxy -> upstream
and reports requests/s at concurrency 1, latency p50/p99, sidecar CPU time per scrape, and the
ratios. With --hop-bin it adds a fourth way,
  hop      wrk -> bench/hop, a bare TCP relay on the same tokio runtime (no HTTP at all) -> upstream
which measures what the extra hop alone costs on this machine: the ceiling for any sidecar. With
--baseline-bin it adds another build of meshscrape-proxy,
  baseline wrk -> that build -> upstream
so that a change to the sidecar is measured against the build before it in the same rounds. Then, for each sidecar: peak RSS (VmHWM) after 8 concurrent 20 MB scrapes; for the proxy
also the peak RSS of a fresh process serving one 50 MB response, and the time from exec to the
first answered request.

Needs nginx and wrk (apt-get install -y nginx-light wrk). Usage:
  bench/sidecar.py --proxy-bin target/release/meshscrape-proxy [--seconds 5] [--rounds 2] [--json FILE]
                   [--hop-bin bench/hop/target/release/hop] [--baseline-bin OLD-BUILD] [--busy-cpu]
(build the relay with: cargo build --release --manifest-path bench/hop/Cargo.toml)
"""
import argparse, json, os, re, shutil, signal, socket, subprocess, sys, tempfile, time, urllib.request

UPSTREAM, NGINX, PROXY, HOP, BASELINE = 28080, 29090, 29092, 29095, 29097
TICK = os.sysconf("SC_CLK_TCK")


def exposition(size):
    """Dropwizard-style summaries like the seed's sample output, exactly `size` bytes."""
    out, i, n = [], 0, 0
    while n < size:
        name = f"com_example_web_rest_Endpoint{i}_handle"
        block = f"# HELP {name} Generated from Dropwizard metric import\n# TYPE {name} summary\n" + "".join(
            f'{name}{{quantile="{q}",}} {((i * 7919) % 1000) * 1e-6:.10E}\n' for q in ("0.5", "0.75", "0.95", "0.99", "0.999")
        ) + f"{name}_count {i * 31}.0\n"
        out.append(block); n += len(block); i += 1
    return "".join(out)[:size]


def wait_ready(port, timeout=10.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return True
        except OSError:
            time.sleep(0.002)
    return False


def first_answer(port, timeout=10.0):
    """Polls GET /-/ready until the proxy answers 200; True once it did."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                s.sendall(b"GET /-/ready HTTP/1.1\r\nHost: b\r\nConnection: close\r\n\r\n")
                if s.recv(64).startswith(b"HTTP/1.1 200"):
                    return True
        except OSError:
            pass
        time.sleep(0.001)
    return False


def cpu_seconds(pids):
    total = 0
    for pid in pids:
        try:
            fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime + stime
        except OSError:
            pass
    return total / TICK


def hwm_kib(pids):
    total = 0
    for pid in pids:
        try:
            total += int(re.search(r"VmHWM:\s+(\d+)", open(f"/proc/{pid}/status").read()).group(1))
        except (OSError, AttributeError):
            pass
    return total


def family(proc):
    try:
        kids = open(f"/proc/{proc.pid}/task/{proc.pid}/children").read().split()
    except OSError:
        kids = []
    return [proc.pid] + [int(k) for k in kids]


def wrk(port, path, seconds, conns=1):
    out = subprocess.run(["wrk", "-t1", f"-c{conns}", f"-d{seconds}s", "--latency", f"http://127.0.0.1:{port}{path}"],
                         capture_output=True, text=True, timeout=seconds + 60).stdout
    def lat(p):
        m = re.search(rf"\s{p}%\s+([\d.]+)(us|ms|s)\b", out)
        return float(m.group(1)) * {"us": 1e-3, "ms": 1.0, "s": 1e3}[m.group(2)] if m else float("nan")
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
            "requests": int(re.search(r"(\d+) requests in", out).group(1)),
            "p50_ms": lat(50), "p99_ms": lat(99), "errors": int(bad.group(1)) if bad else 0}


def median(xs):
    xs = sorted(xs)
    return xs[len(xs) // 2] if len(xs) % 2 else (xs[len(xs) // 2 - 1] + xs[len(xs) // 2]) / 2


def start_proxy(binary, port):
    return subprocess.Popen([binary, "--listen", f"127.0.0.1:{port}", "--upstream", f"http://127.0.0.1:{UPSTREAM}",
                             "--route", "/prometheus=/prometheus", "--route", "/huge=/huge"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--proxy-bin", required=True)
    ap.add_argument("--seconds", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--sizes", default="39000,1000000,20000000")
    ap.add_argument("--json")
    ap.add_argument("--hop-bin", help="bench/hop's relay, run as a fourth contestant (the ceiling)")
    ap.add_argument("--baseline-bin", help="another meshscrape-proxy build (e.g. the one before a change), run in the same rounds")
    ap.add_argument("--busy-cpu", action="store_true",
                    help="keep one CPU busy with a spinning process during the timed rounds, so wake-ups rarely find a halted vCPU; "
                         "on VMs where waking a halted vCPU is expensive, the ratios then show the forwarding work "
                         "rather than the wake-ups (see the README's performance section)")
    a = ap.parse_args()
    for tool in ("nginx", "wrk"):
        if not shutil.which(tool):
            sys.exit(f"bench: {tool} not found; install it with: apt-get install -y nginx-light wrk")
    work = tempfile.mkdtemp(prefix="meshscrape-bench-")
    os.chmod(work, 0o755)
    www = os.path.join(work, "www"); os.makedirs(www)
    for d in ("cb", "pt"):
        os.makedirs(os.path.join(work, d)); os.chmod(os.path.join(work, d), 0o777)
    configs = {
        "upstream": f"""worker_processes 1; pid {work}/up.pid; error_log {work}/up.err warn; daemon off;
events {{ worker_connections 1024; }}
http {{ access_log off; sendfile on; default_type text/plain; server {{ listen 127.0.0.1:{UPSTREAM}; root {www}; }} }}""",
        # The seed's nginx.conf, on loopback ports, with writable temp paths.
        "nginx": f"""worker_processes 1; pid {work}/ngx.pid; error_log {work}/ngx.err warn; daemon off;
events {{ worker_connections 1024; }}
http {{ access_log off; sendfile on; keepalive_timeout 65; client_body_temp_path {work}/cb; proxy_temp_path {work}/pt;
  server {{ listen 127.0.0.1:{NGINX};
    location / {{ proxy_bind $server_addr; proxy_pass http://127.0.0.1:{UPSTREAM}/prometheus; }}
    location /prometheus {{ proxy_bind $server_addr; proxy_pass http://127.0.0.1:{UPSTREAM}/prometheus; }}
    location /huge {{ proxy_bind $server_addr; proxy_pass http://127.0.0.1:{UPSTREAM}/huge; }} }} }}""",
    }
    procs = {}
    try:
        for name, text in configs.items():
            path = os.path.join(work, name + ".conf"); open(path, "w").write(text)
            procs[name] = subprocess.Popen(["nginx", "-c", path, "-p", work], stderr=subprocess.DEVNULL)

        # Start-up: exec to the first answered GET /-/ready, median of 5 fresh processes.
        starts = []
        for _ in range(5):
            t0 = time.monotonic(); p = start_proxy(a.proxy_bin, PROXY + 1)
            ok = first_answer(PROXY + 1); starts.append((time.monotonic() - t0) * 1000)
            p.send_signal(signal.SIGTERM); p.wait(timeout=10)
            if not ok:
                sys.exit("bench: the proxy did not start")
        procs["proxy"] = start_proxy(a.proxy_bin, PROXY)
        ports = {"direct": UPSTREAM, "nginx": NGINX, "proxy": PROXY}
        if a.hop_bin:
            procs["hop"] = subprocess.Popen([a.hop_bin, "tokio", f"127.0.0.1:{HOP}", f"127.0.0.1:{UPSTREAM}"])
            ports["hop"] = HOP
        if a.baseline_bin:
            procs["baseline"] = start_proxy(a.baseline_bin, BASELINE)
            ports["baseline"] = BASELINE
        for port in ports.values():
            if not wait_ready(port):
                sys.exit(f"bench: nothing listens on 127.0.0.1:{port}")

        if a.busy_cpu:
            procs["spinner"] = subprocess.Popen([sys.executable, "-c", "while True: pass"])
        rows = []
        for size in [int(s) for s in a.sizes.split(",")]:
            open(os.path.join(www, "prometheus"), "w").write(exposition(size))
            for t, port in ports.items():
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/prometheus", timeout=30) as r:
                    if len(r.read()) != size:
                        sys.exit(f"bench: {t} returned a body of the wrong size")
            runs = {t: [] for t in ports}
            for r in range(a.rounds):
                for t in (list(ports) if r % 2 == 0 else list(reversed(ports))):
                    pids = family(procs["upstream"] if t == "direct" else procs[t])
                    c0 = cpu_seconds(pids); res = wrk(ports[t], "/prometheus", a.seconds); c1 = cpu_seconds(pids)
                    res["cpu_us"] = (c1 - c0) / max(res["requests"], 1) * 1e6
                    runs[t].append(res)
            row = {"bytes": size}
            for t in ports:
                row[t] = {k: median([x[k] for x in runs[t]]) for k in ("rps", "p50_ms", "p99_ms", "cpu_us")}
                row[t]["errors"] = sum(x["errors"] for x in runs[t])
            row["proxy/direct"] = row["proxy"]["rps"] / row["direct"]["rps"]
            row["proxy/nginx"] = row["proxy"]["rps"] / row["nginx"]["rps"]
            row["nginx/direct"] = row["nginx"]["rps"] / row["direct"]["rps"]
            if "hop" in ports:
                row["hop/direct"] = row["hop"]["rps"] / row["direct"]["rps"]
                row["proxy/hop"] = row["proxy"]["rps"] / row["hop"]["rps"]
            if "baseline" in ports:
                row["baseline/direct"] = row["baseline"]["rps"] / row["direct"]["rps"]
                row["proxy/baseline"] = row["proxy"]["rps"] / row["baseline"]["rps"]
            rows.append(row)

        if a.busy_cpu:
            procs["spinner"].kill(); procs["spinner"].wait()
        # Memory: 8 concurrent 20 MB scrapes through each sidecar.
        open(os.path.join(www, "prometheus"), "w").write(exposition(20_000_000))
        sidecars = ("nginx", "proxy", "baseline") if a.baseline_bin else ("nginx", "proxy")
        for t in sidecars:
            wrk(ports[t], "/prometheus", a.seconds, conns=8)
        mem = {f"{t}_c8_20mb_kib": hwm_kib(family(procs[t])) for t in sidecars}
        # A fresh proxy serving one 50 MB response.
        open(os.path.join(www, "huge"), "w").write(exposition(50_000_000))
        p = start_proxy(a.proxy_bin, PROXY + 2); wait_ready(PROXY + 2)
        with urllib.request.urlopen(f"http://127.0.0.1:{PROXY + 2}/huge", timeout=60) as r:
            got = len(r.read())
        mem["proxy_single_50mb_kib"] = hwm_kib([p.pid]); p.send_signal(signal.SIGTERM); p.wait(timeout=10)
        if got != 50_000_000:
            sys.exit(f"bench: the 50 MB response came back as {got} bytes")

        if a.busy_cpu:
            print("with one CPU kept busy by a spinning process during the timed rounds (--busy-cpu)")
        print(f"{'bytes':>9} | {'rps direct/nginx/proxy':>24} | {'proxy/direct':>12} {'proxy/nginx':>11} {'nginx/direct':>12} | "
              f"{'p50 ms d/n/p':>20} | {'p99 ms d/n/p':>20} | {'cpu us/scrape n/p':>17}")
        for r in rows:
            d, n, p_ = r["direct"], r["nginx"], r["proxy"]
            print(f"{r['bytes']:>9} | {d['rps']:>8.0f}/{n['rps']:>7.0f}/{p_['rps']:>7.0f} | {r['proxy/direct']:>12.2f} "
                  f"{r['proxy/nginx']:>11.2f} {r['nginx/direct']:>12.2f} | {d['p50_ms']:>6.3f}/{n['p50_ms']:>6.3f}/{p_['p50_ms']:>6.3f} | "
                  f"{d['p99_ms']:>6.3f}/{n['p99_ms']:>6.3f}/{p_['p99_ms']:>6.3f} | {n['cpu_us']:>8.0f}/{p_['cpu_us']:>7.0f}")
        for r in rows:
            if "hop" in r:
                h = r["hop"]
                print(f"{r['bytes']:>9} | hop (bare relay) {h['rps']:>7.0f} rps, {r['hop/direct']:.2f}x direct, {r['hop']['cpu_us']:.0f} us cpu; "
                      f"proxy/hop {r['proxy/hop']:.2f}")
        for r in rows:
            if "baseline" in r:
                b = r["baseline"]
                print(f"{r['bytes']:>9} | baseline build {b['rps']:>7.0f} rps, {r['baseline/direct']:.2f}x direct, {b['cpu_us']:.0f} us cpu; "
                      f"proxy/baseline {r['proxy/baseline']:.2f}")
        print(f"peak RSS, 8 concurrent 20 MB scrapes: nginx {mem['nginx_c8_20mb_kib']} KiB, proxy {mem['proxy_c8_20mb_kib']} KiB"
              + (f", baseline {mem['baseline_c8_20mb_kib']} KiB" if a.baseline_bin else ""))
        print(f"peak RSS, one 50 MB response through a fresh proxy: {mem['proxy_single_50mb_kib']} KiB")
        print(f"start-up, exec to first answered request (median of 5): {median(starts):.1f} ms")
        errors = sum(r[t]["errors"] for r in rows for t in ports)
        if errors:
            print(f"WARNING: {errors} non-2xx responses")
        if a.json:
            json.dump({"rows": rows, "memory": mem, "startup_ms": median(starts)}, open(a.json, "w"), indent=2)
    finally:
        for p in procs.values():
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in procs.values():
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
