#!/usr/bin/env python3
"""Writes a realistic JSONL trade trace for the replay benchmark (spec section 1 format).

  gen_trades.py [--lines 1000000] [--partitions 1000] [--seed 1] [--out FILE]

The trace spreads over `--partitions` partitions (account, book, security) with a mild skew (a
few hot partitions), about 83% NEW, 12% AMEND and 4.5% CANCEL of live trades, and a few odd
lines a real feed has: exact resends (DUPLICATE, ~0.4%), late amends whose version was skipped
(STALE, ~0.05%) and malformed or invalid lines (REJECTED invalid:, ~0.05%). Quantities are mostly
round lots; prices have 2-4 decimals and are written as JSON strings or plain numbers. The
output is deterministic for a seed. Throughput-oriented, not adversarial: the conformance
traces live in tests/cli/gen_trace.py.
"""

import argparse
import bisect
import itertools
import random
import sys


def partition_names(n):
    # Same shape as bench_common.hpp: 100 accounts x 2 books x 5 securities for n = 1000.
    return [("ACC-%d" % (1000 + i // 10), "BOOK-%d" % ((i // 5) % 2),
             "SEC-%d" % (100 + i % 5 + 5 * ((i // 10) % 40))) for i in range(n)]


INVALID = [
    '{"trade_id":"T-BAD-%d","version":1,"type":"NEW","account":"ACC-1","book":"B","security":"S","side":"BUY","quantity":"-5","price":"1"}',
    '{"trade_id":"T-BAD-%d","version":1,"type":"NEW","account":"ACC-1","book":"B","security":"S","side":"BUY","quantity":"1e3","price":"1"}',
    '{"trade_id":"T-BAD-%d","version":0,"type":"NEW","account":"ACC-1","book":"B","security":"S","side":"BUY","quantity":"5","price":"1"}',
    '{"trade_id":"T-BAD-%d","version":1,"type":"NEW","account":"ACC-1","book":"B","security":"S","quantity":"5","price":"1"}',
    '{"trade_id":"T-BAD-%d","version":1,"type":"NEW","account":"ACC-1","book":"B","security":"S","side":"BUY","quantity":"5","price":"1"',
    'not json at all %d',
]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lines", type=int, default=1000000)
    ap.add_argument("--partitions", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--out", default="-")
    args = ap.parse_args()

    rng = random.Random(args.seed)
    parts = partition_names(args.partitions)
    prefix = ['"account":"%s","book":"%s","security":"%s"' % p for p in parts]
    cum = list(itertools.accumulate(1.0 / (k + 10) for k in range(args.partitions)))
    total_w = cum[-1]
    base_px = [rng.randint(1000, 51000) for _ in parts]  # cents
    live = [[] for _ in parts]       # per partition: [trade_id, version]
    recent = [[] for _ in parts]     # per partition: recent lines, for exact resends
    skipped = [[] for _ in parts]    # per partition: (trade_id, version) skipped by an amend

    out = sys.stdout if args.out == "-" else open(args.out, "w", encoding="utf-8", newline="\n")
    buf = []
    next_id = 1
    bad = 0

    def economics(p):
        side = "BUY" if rng.random() < 0.5 else "SELL"
        if rng.random() < 0.8:
            qty = str(rng.randint(1, 100) * 100)
        else:
            q = rng.randint(1, 5000000)
            qty = "%d.%04d" % divmod(q, 10000)
        base = base_px[p] * 100
        px = base + rng.randint(-base // 20, base // 20)
        whole, frac = divmod(px, 10000)
        digits = rng.choice((2, 2, 3, 4))
        price = "%d.%s" % (whole, ("%04d" % frac)[:digits])
        if rng.random() < 0.5:
            price = '"%s"' % price
        return '"side":"%s","quantity":"%s","price":%s' % (side, qty, price)

    for n in range(args.lines):
        p = bisect.bisect_left(cum, rng.random() * total_w)
        if p >= args.partitions:
            p = args.partitions - 1
        lv = live[p]
        r = rng.random()
        if r < 0.0005:
            bad += 1
            line = rng.choice(INVALID) % bad
        elif r < 0.0045 and recent[p]:
            line = rng.choice(recent[p])  # exact resend: DUPLICATE
        elif r < 0.005 and skipped[p]:
            tid, v = skipped[p].pop()
            line = ('{"trade_id":"%s","version":%d,"type":"AMEND",%s,%s}'
                    % (tid, v, prefix[p], economics(p)))  # late amend: STALE
        elif r < 0.125 and lv:
            t = rng.choice(lv)
            if rng.random() < 0.05:
                skipped[p].append((t[0], t[1] + 1))
                t[1] += 2
            else:
                t[1] += 1
            line = ('{"trade_id":"%s","version":%d,"type":"AMEND",%s,%s}'
                    % (t[0], t[1], prefix[p], economics(p)))
        elif r < 0.17 and lv:
            k = rng.randrange(len(lv))
            t = lv[k]
            lv[k] = lv[-1]
            lv.pop()
            line = ('{"trade_id":"%s","version":%d,"type":"CANCEL",%s}'
                    % (t[0], t[1] + 1, prefix[p]))
        else:
            tid = "T%d" % (100000000 + next_id)
            next_id += 1
            lv.append([tid, 1])
            line = ('{"trade_id":"%s","version":1,"type":"NEW",%s,%s}'
                    % (tid, prefix[p], economics(p)))
        rc = recent[p]
        if len(rc) < 16:
            rc.append(line)
        else:
            rc[rng.randrange(16)] = line
        buf.append(line)
        if len(buf) >= 65536:
            out.write("\n".join(buf))
            out.write("\n")
            buf.clear()
    if buf:
        out.write("\n".join(buf))
        out.write("\n")
    if out is not sys.stdout:
        out.close()


if __name__ == "__main__":
    main()
