#!/usr/bin/env python3
"""Checks the invariants of a store from `tradecapture events` and `tradecapture positions`.

  check_store.py EVENTS POSITIONS [--expect-positions FILE] [--expect-events FILE]

- every partition's sequence numbers are 1..n, without gaps or repeats;
- every (trade_id, version) is applied at most once, across all partitions;
- the positions equal a sequential fold of the stored events (NEW applies its effect, AMEND
  reverses the trade's current effect and applies its own, CANCEL reverses it);
- optionally, positions (and events) equal an expected file, line for line.
Exits 1 with a message on the first violation. Standard library only; exact decimals.
"""

import decimal
import json
import sys

from model import TOTAL_FIELDS, effect  # the spec's effect of a trade on the totals

decimal.setcontext(decimal.Context(prec=200, traps=[decimal.Inexact, decimal.Rounded]))
D = decimal.Decimal


def fail(msg):
    print("check_store: FAIL: " + msg, file=sys.stderr)
    sys.exit(1)


def lines(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(l) for l in f if l.strip()]


def canon(d):
    d = d.normalize() if d != 0 else D(0)
    s = format(d, "f")
    return s


def main(argv):
    if len(argv) < 3:
        print(__doc__, file=sys.stderr)
        return 2
    events, positions = lines(argv[1]), lines(argv[2])
    opts = dict(zip(argv[3::2], argv[4::2]))
    keys = set()
    parts = {}
    for e in events:
        p = (e["account"], e["book"], e["security"])
        st = parts.setdefault(p, {"seq": 0, "trades": {}, "live": 0,
                                  "totals": {f: D(0) for f in TOTAL_FIELDS}})
        if e["seq"] != st["seq"] + 1:
            fail(f"partition {p}: seq {e['seq']} follows {st['seq']} (gap or repeat)")
        st["seq"] = e["seq"]
        k = (e["trade_id"], e["version"])
        if k in keys:
            fail(f"(trade_id, version) {k} applied twice")
        keys.add(k)

        def apply(side, q, px, sign):
            st["totals"] = effect(st["totals"], side, q, px, sign)

        t = st["trades"].get(e["trade_id"])
        if e["type"] == "NEW":
            if t is not None:
                fail(f"NEW of an existing trade {k} in {p}")
            st["trades"][e["trade_id"]] = (e["side"], D(e["quantity"]), D(e["price"]), False)
            apply(e["side"], D(e["quantity"]), D(e["price"]), 1)
            st["live"] += 1
        else:
            if t is None or t[3]:
                fail(f"{e['type']} {k} of an unknown or cancelled trade in {p}")
            apply(t[0], t[1], t[2], -1)
            if e["type"] == "AMEND":
                st["trades"][e["trade_id"]] = (e["side"], D(e["quantity"]), D(e["price"]), False)
                apply(e["side"], D(e["quantity"]), D(e["price"]), 1)
            else:
                st["trades"][e["trade_id"]] = (t[0], t[1], t[2], True)
                st["live"] -= 1
    if len(positions) != len(parts):
        fail(f"{len(positions)} positions for {len(parts)} partitions with events")
    for row in positions:
        p = (row["account"], row["book"], row["security"])
        st = parts.get(p)
        if st is None:
            fail(f"position {p} has no events")
        for f, v in st["totals"].items():
            if D(row[f]) != v:
                fail(f"{p} {f}: stored {row[f]}, fold of events gives {canon(v)}")
        if row["live_trades"] != st["live"] or row["seq"] != st["seq"]:
            fail(f"{p}: live_trades/seq {row['live_trades']}/{row['seq']} vs fold "
                 f"{st['live']}/{st['seq']}")
    for opt, got in (("--expect-positions", positions), ("--expect-events", events)):
        if opt in opts:
            want = lines(opts[opt])
            if len(want) != len(got):
                fail(f"{opt}: {len(got)} lines, expected {len(want)}")
            for i, (a, b) in enumerate(zip(got, want)):
                a2 = {k: (canon(D(v)) if isinstance(v, str) and k in DEC else v) for k, v in a.items()}
                b2 = {k: (canon(D(v)) if isinstance(v, str) and k in DEC else v) for k, v in b.items()}
                if a2 != b2:
                    fail(f"{opt}: line {i + 1} is {json.dumps(a)}, expected {json.dumps(b)}")
    print(f"check_store: ok: {len(events)} events, {len(positions)} partitions")
    return 0


DEC = {"net_quantity", "bought_quantity", "sold_quantity", "bought_notional", "sold_notional",
       "quantity", "price"}

if __name__ == "__main__":
    sys.exit(main(sys.argv))
