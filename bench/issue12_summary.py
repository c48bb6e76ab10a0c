#!/usr/bin/env python3
"""The figures of a bench/issue12_table.sh result folder as Markdown tables (for BENCHMARKS.md).

  bench/issue12_summary.py RESULT_DIR

Every figure is read from the programs' own output (Google Benchmark JSON, the gateway CSV, the
replay logs, the latency CSV); a step that did not run is left out.
"""
import csv
import json
import os
import re
import sys


def load_json(path):
    if not os.path.exists(path):
        return []
    return json.load(open(path))["benchmarks"]


def k(x):
    return f"{x:,.0f}"


def main(d):
    env = open(os.path.join(d, "env.txt")).read() if os.path.exists(os.path.join(d, "env.txt")) else ""
    print("```")
    print(env.strip())
    print("```\n")

    mem = load_json(os.path.join(d, "memory.json"))
    if mem:
        print("In-memory pipeline (`bench_pipeline`), 1,000 partitions, pre-parsed events:\n")
        print("| benchmark | trades/s | p50 | p99 | p99.9 | allocs/event |")
        print("| --- | ---: | ---: | ---: | ---: | ---: |")
        for b in mem:
            name = b["name"].replace("/iterations:3/manual_time", "").replace("/iterations:1/manual_time", "")
            if "warm_up_trades_per_s" in b:  # BM_MemoryWarmThroughput: no allocation count
                print(f"| {name} (warm; its fresh first half: {k(b['warm_up_trades_per_s'])}) | "
                      f"{k(b['trades_per_s'])} | | | | |")
            elif "trades_per_s" in b:
                allocs = f"{b['allocs_per_trade']:.3f}" if "allocs_per_trade" in b else ""
                print(f"| {name} | {k(b['trades_per_s'])} | | | | {allocs} |")
            elif "p50_us" in b:
                print(f"| {name} (offered {k(b['target_per_s'])}/s of {k(b['saturation_per_s'])}) | "
                      f"{k(b['achieved_per_s'])} | {b['p50_us']:,.0f} us | {b['p99_us'] / 1000:,.1f} ms | "
                      f"{b['p999_us'] / 1000:,.1f} ms | |")
            elif "steady_allocs_per_trade" in b:
                print(f"| {name} | | | | | {b['steady_allocs_per_trade']:.3f} (steady state) |")
            elif "us_per_page" in b:
                print(f"| {name} | | | | | {b['us_per_page']:.1f} us per 4 KiB page |")
        print()

    pg = load_json(os.path.join(d, "pg_redis.json"))
    if pg:
        print("PostgreSQL + Redis (`bench_pg_redis`):\n")
        print("| benchmark | trades/s | p50 | p99 | ours / this |")
        print("| --- | ---: | ---: | ---: | ---: |")
        for b in pg:
            name = re.sub(r"/iterations:\d+/manual_time", "", b["name"])
            if "p50_us" in b:
                print(f"| {name} (offered {k(b['target_per_s'])}/s of {k(b['saturation_per_s'])}) | "
                      f"{k(b['achieved_per_s'])} | {b['p50_us'] / 1000:,.1f} ms | {b['p99_us'] / 1000:,.1f} ms | |")
            else:
                ratio = f"{b['ours_over_this']:.1f}x" if "ours_over_this" in b else ""
                print(f"| {name} | {k(b['trades_per_s'])} | | | {ratio} |")
        print()

    batch = [b for b in load_json(os.path.join(d, "pg_batch.json")) if "events_per_batch" in b]
    if batch:
        print("PostgreSQL store, one batch by size (`bench_pg_batch`):\n")
        print("| events per batch | wall per batch | host CPU per batch | server CPU per batch | "
              "host CPU per event | server CPU per event |")
        print("| ---: | ---: | ---: | ---: | ---: | ---: |")
        for b in batch:
            print(f"| {k(b['events_per_batch'])} | {b['wall_us_per_batch'] / 1000:,.2f} ms | "
                  f"{k(b['host_cpu_us_per_batch'])} us | {k(b['server_cpu_us_per_batch'])} us | "
                  f"{b['host_cpu_us_per_event']:,.1f} us | {b['server_cpu_us_per_event']:,.1f} us |")
        print()

    replays = sorted(f for f in os.listdir(d) if re.fullmatch(r"replay-\d+\.log", f))
    if replays:
        print("`bench/replay_1m.sh` (1,000,000 lines into SQLite):\n")
        print("| run | lines/s | wall | user + sys CPU | peak RSS |")
        print("| --- | ---: | ---: | ---: | ---: |")
        for f in replays:
            t = open(os.path.join(d, f)).read()
            g = lambda key: (re.search(key + r"\s+(\S+)", t) or [None, "?"])[1]
            print(f"| {f[:-4]} | {k(float(g('lines/s')))} | {g('wall seconds')} s | "
                  f"{g('user seconds')} + {g('system seconds')} s | {g('peak RSS MB')} MB |")
        print()

    parts = os.path.join(d, "partitions.csv")
    if os.path.exists(parts):
        rows = list(csv.DictReader(open(parts)))
        print("`tradecapture replay` of 500,000 NEW events into SQLite:\n")
        print("| partitions | run | lines/s | wall | user + sys CPU | peak RSS |")
        print("| --- | --- | ---: | ---: | ---: | ---: |")
        for r in rows:
            print(f"| {r['partitions']} | {r['run']} | {k(float(r['lines_per_s']))} | {r['wall_s']} s | "
                  f"{r['user_s']} + {r['sys_s']} s | {int(r['max_rss_kb']) // 1024} MB |")
        by = {}
        for r in rows:
            by.setdefault(r["run"], {})[r["partitions"]] = float(r["lines_per_s"])
        ratios = [v["250k"] / v["1k"] for v in by.values() if "1k" in v and "250k" in v]
        if ratios:
            print("\nratio 250,000 / 1,000 partitions: " + ", ".join(f"{x:.2f}x" for x in ratios))
        print()

    gw = os.path.join(d, "gateway", "gateway.csv")
    if os.path.exists(gw):
        print("`tradecapture serve` on PostgreSQL + Redis (`bench/gateway.sh`, closed loop):\n")
        print("| config | mode | connections | events/s | p50 | p99 | CPU per event (serve + PostgreSQL + Redis + nginx + client) |")
        print("| --- | --- | ---: | ---: | ---: | ---: | --- |")
        for r in csv.DictReader(open(gw)):
            ev = max(1, int(r["events_ok"]))
            part = lambda c: float(r[c]) / ev * 1e6
            print(f"| {r['config']} | {r['mode']} | {r['connections']} | {k(float(r['events_per_s']))} | "
                  f"{r['p50_ms']} ms | {r['p99_ms']} ms | {float(r['cpu_us_per_event']):,.0f} us "
                  f"({part('cpu_servers_s'):,.0f} + {part('cpu_postgres_s'):,.0f} + {part('cpu_redis_s'):,.0f} + "
                  f"{part('cpu_nginx_s'):,.0f} + {part('cpu_client_s'):,.0f}) |")
        print()

    lat = os.path.join(d, "latency", "latency-load.csv")
    if os.path.exists(lat):
        print("Latency against offered load (`bench/latency_load.sh`), p50 / p99:\n")
        rows = list(csv.DictReader(open(lat)))
        stores = list(dict.fromkeys(r["store"] for r in rows))
        fractions = list(dict.fromkeys(r["fraction"] for r in rows))
        print("| fraction of saturation | " + " | ".join(stores) + " |")
        print("| ---: | " + " | ".join("---:" for _ in stores) + " |")
        for f in fractions:
            cells = []
            for s in stores:
                r = next((r for r in rows if r["store"] == s and r["fraction"] == f), None)
                cells.append("" if r is None else
                             f"{float(r['p50_us']) / 1000:,.2f} / {float(r['p99_us']) / 1000:,.1f} ms "
                             f"({k(float(r['achieved_per_s']))}/s)")
            print(f"| {f} | " + " | ".join(cells) + " |")
        print()


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else sys.exit(__doc__))
