#!/usr/bin/env python3
"""A seeded trace in which every event is accepted when applied in file order, plus exact
resends: NEW, then AMENDs, maybe a CANCEL, per trade; trades interleaved across partitions.
Replaying it again, or a prefix of it later, only ever yields DUPLICATE, so several hosts may
replay it concurrently and the final state equals one sequential replay.

  gen_clean.py SEED PARTITIONS TRADES [--prefix P]
"""
import json
import random
import sys


def main(argv):
    seed, parts, trades = int(argv[1]), int(argv[2]), int(argv[3])
    prefix = argv[argv.index("--prefix") + 1] if "--prefix" in argv else "p"
    rng = random.Random(seed)
    streams = []
    for t in range(trades):
        p = rng.randrange(parts)
        acct, book, sec = f"{prefix}acct{p % 7}", f"book{p // 7 % 5}", f"SEC{p}"
        tid = f"{prefix}-T{t}"
        evs = []
        side = rng.choice(["BUY", "SELL"])
        evs.append({"trade_id": tid, "version": 1, "type": "NEW", "account": acct, "book": book,
                    "security": sec, "side": side, "quantity": str(rng.randint(1, 10000)),
                    "price": f"{rng.randint(1, 500)}.{rng.randint(0, 99):02d}"})
        v = 1
        for _ in range(rng.choice([0, 0, 1, 2])):
            v += 1
            evs.append({"trade_id": tid, "version": v, "type": "AMEND", "account": acct,
                        "book": book, "security": sec, "side": rng.choice(["BUY", "SELL"]),
                        "quantity": str(rng.randint(1, 10000)), "price": str(rng.randint(1, 500))})
        if rng.random() < 0.2:
            evs.append({"trade_id": tid, "version": v + 1, "type": "CANCEL", "account": acct,
                        "book": book, "security": sec})
        streams.append(evs)
    out = []
    active = [s for s in streams]
    rng.shuffle(active)
    # Interleave trades while keeping each trade's own events in order.
    pos = [0] * len(active)
    live = list(range(len(active)))
    while live:
        k = rng.randrange(len(live))
        i = live[k]
        ev = active[i][pos[i]]
        out.append(ev)
        if rng.random() < 0.03:
            out.append(ev)  # an exact resend: DUPLICATE
        pos[i] += 1
        if pos[i] == len(active[i]):
            live[k] = live[-1]
            live.pop()
    sys.stdout.write("".join(json.dumps(e, separators=(",", ":")) + "\n" for e in out))


if __name__ == "__main__":
    main(sys.argv)
