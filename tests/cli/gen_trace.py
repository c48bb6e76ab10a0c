#!/usr/bin/env python3
"""A seeded adversarial trace generator for `tradecapture replay` (spec sections 1-4).

  gen_trace.py --seed 7 --lines 3000 [--out FILE] [--bom] [--crlf RATE] [--no-final-newline]
               [--whale | --no-whale] [--bad RATE] [--partitions N]

Writes raw bytes (so it can hold invalid UTF-8, a BOM, CRLF endings and blank lines). The trace
mixes NEWs, AMENDs (side changes included), CANCELs, exact and reformatted resends (DUPLICATE),
conflicting resends (other content, other partition, the `_`-ambiguous sibling partition, other
type), stale versions, amend-before-new, cancel-after-cancel, amend-after-cancel, unknown trades,
every kind of bad line of spec section 1, unicode, and a "whale" partition that walks its
notional totals right up to 1e24 and past it. The generator only makes the trace; the expected
outcomes come from model.py.
"""

import argparse
import decimal
import json
import random
import sys


class Raw:
    """JSON text written as is (numbers, literals, deliberately broken fragments)."""

    def __init__(self, text):
        self.text = text


def jval(v, ascii_):
    if isinstance(v, Raw):
        return v.text
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=ascii_)
    if isinstance(v, list):
        return "[" + ",".join(jval(x, ascii_) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ",".join(json.dumps(k, ensure_ascii=ascii_) + ":" + jval(x, ascii_)
                              for k, x in v.items()) + "}"
    raise TypeError(type(v))


def obj_text(pairs, rng, shuffle=True):
    """Serialises (key, value) pairs as a JSON object with random but legal formatting."""
    pairs = list(pairs)
    if shuffle and rng.random() < 0.3:
        rng.shuffle(pairs)
    ascii_ = rng.random() < 0.3
    colon = rng.choice([":", ": ", " : ", ":\t"])
    comma = rng.choice([",", ", ", " ,  "])
    body = comma.join(json.dumps(k, ensure_ascii=ascii_) + colon + jval(v, ascii_)
                      for k, v in pairs)
    lead = rng.choice(["", "", "", " ", "\t", " \t "])
    trail = rng.choice(["", "", "", " ", "\t", "  \t"])
    return lead + "{" + body + "}" + trail


ACCOUNTS = ["ACC1", "ACC2", "HEDGE-7", "Zürich", "A", "A_B", "acc book", "日本口座"]
BOOKS = ["BOOK1", "EQ-FLOW", "B_C", "B", "C", "книга", "1:A3", "a/b\\c"]
SECURITIES = ["AAPL", "MSFT", "VOD.L", "7203.T", "C", "S", "€STR", "📈SPX", "B_C"]
# Partitions whose parts joined with '_' read the same: each pair must stay apart.
AMBIGUOUS = [(("A_B", "C", "S"), ("A", "B_C", "S")),
             (("A", "B_C", "S"), ("A", "B", "C_S")),
             (("acc", "book_x", "sec"), ("acc_book", "x", "sec")),
             (("1:A", "3:B", "S"), ("1", "A3:B", "S"))]


def partition_pool(rng, n):
    pool = []
    for a, b in AMBIGUOUS:
        pool += [a, b]
    pool += [("Ünï", "çødé", "\u0085C1"), ("x" * 64, "é" * 32, "€" * 21 + "x"), ('q"uote', "back\\slash", "tab-less")]
    while len(pool) < n:
        p = (rng.choice(ACCOUNTS), rng.choice(BOOKS), rng.choice(SECURITIES))
        if p not in pool:
            pool.append(p)
    return pool


def fmt_decimal(rng, text, allow_number=True):
    """A plain decimal as a JSON string or a JSON number (only when that is valid JSON)."""
    json_number_ok = not (len(text) > 1 and text[0] == "0" and text[1] != ".")
    if allow_number and json_number_ok and rng.random() < 0.4:
        return Raw(text)
    return text


def equal_variant(rng, text, max_frac):
    """Another writing of the same decimal value (trailing zeros, leading zeros) that stays
    within `max_frac` fractional digits."""
    r = rng.random()
    frac = len(text.split(".")[1]) if "." in text else 0
    if r < 0.3 and "." in text and frac < max_frac:
        return text + "0"
    if r < 0.5 and "." not in text:
        return text + ".0"
    if r < 0.7:
        return "00" + text
    return text


def rand_qty(rng):
    r = rng.random()
    if r < 0.6:
        return str(rng.randint(1, 5000) * rng.choice([1, 10, 100]))
    if r < 0.85:
        frac = "".join(rng.choice("0123456789") for _ in range(rng.randint(1, 6)))
        return "%d.%s" % (rng.randint(1, 999), frac)
    return rng.choice(["0.000001", "1000000000000", "999999999999.999999", "0.5", "1.100000"])


def rand_price(rng):
    r = rng.random()
    if r < 0.5:
        return "%d.%02d" % (rng.randint(0, 2000), rng.randint(0, 99))
    if r < 0.85:
        frac = "".join(rng.choice("0123456789") for _ in range(rng.randint(1, 8)))
        return "%d.%s" % (rng.randint(0, 99999), frac)
    return rng.choice(["0", "0.00000001", "1000000000", "999999999.99999999", "0.1", "0.3", "007"])


class Gen:
    def __init__(self, args):
        self.rng = random.Random(args.seed)
        self.args = args
        self.parts = partition_pool(self.rng, args.partitions)
        self.trades = []   # dicts: tid, part, version, cancelled, side, qty, price
        self.sent = []     # valid event field dicts already emitted (for resends)
        self.pending_amends = []  # (tid, part, fields) of AMENDs sent before their NEW
        self.n = 0
        self.lines = []

    # ---- events ---------------------------------------------------------------------------
    def fields(self, tid, version, typ, part, side=None, qty=None, price=None):
        f = {"trade_id": tid, "version": version, "type": typ,
             "account": part[0], "book": part[1], "security": part[2]}
        if typ != "CANCEL":
            f["side"], f["quantity"], f["price"] = side, qty, price
        return f

    def render(self, f, extra=True, reformat=False):
        rng = self.rng
        pairs = []
        for k, v in f.items():
            if k == "version":
                v = Raw(str(v))
            elif k in ("quantity", "price"):
                if reformat and isinstance(v, str):
                    v = equal_variant(rng, v, 6 if k == "quantity" else 8)
                v = fmt_decimal(rng, v)
            pairs.append((k, v))
        if extra and rng.random() < 0.15:
            pairs.append(rng.choice([
                ("source", "FIX"), ("ts", Raw("1700000000123")), ("note", None),
                ("meta", {"desk": "rates", "tags": ["a", "b"], "n": Raw("-1.5e-3")}),
                ("\u00fcnknown", "\u6771\u4eac"), ("", ""), ("pair", "\U0001F600"),
                ("deep", json.loads("[" * 40 + "]" * 40)), ("big", Raw("123456789012345678901234567890")),
                ("frac", Raw("0.1")), ("neg", Raw("-0")), ("bool", True)]))
        return obj_text(pairs, rng).encode("utf-8")

    def emit(self, raw):
        assert isinstance(raw, bytes), raw
        self.lines.append(raw)

    def emit_event(self, f, track=True, **kw):
        if track:  # resends and conflicting variants may pick it later
            self.sent.append(f)
        self.emit(self.render(f, **kw))

    def new_tid(self):
        self.n += 1
        r = self.rng.random()
        if r < 0.05:
            return "Tü-%d-%d" % (self.args.seed, self.n)
        if r < 0.08:
            return "T_%d_%d" % (self.args.seed, self.n)
        return "T%d-%d" % (self.args.seed, self.n)

    def live(self):
        return [t for t in self.trades if not t["cancelled"]]

    def act_new(self, part=None):
        tid = self.new_tid()
        part = part or self.rng.choice(self.parts)
        t = {"tid": tid, "part": part, "version": 1, "cancelled": False,
             "side": self.rng.choice(["BUY", "SELL"]), "qty": rand_qty(self.rng),
             "price": rand_price(self.rng)}
        self.trades.append(t)
        self.emit_event(self.fields(tid, 1, "NEW", part, t["side"], t["qty"], t["price"]))
        return t

    def act_amend(self, t=None):
        live = self.live()
        if not live and t is None:
            return self.act_new()
        t = t or self.rng.choice(live)
        t["version"] += self.rng.choice([1, 1, 1, 2, 5])
        if self.rng.random() < 0.3:
            t["side"] = "SELL" if t["side"] == "BUY" else "BUY"
        if self.rng.random() < 0.7:
            t["qty"] = rand_qty(self.rng)
        if self.rng.random() < 0.5:
            t["price"] = rand_price(self.rng)
        self.emit_event(self.fields(t["tid"], t["version"], "AMEND", t["part"], t["side"],
                                    t["qty"], t["price"]))

    def act_cancel(self, t=None):
        live = self.live()
        if not live and t is None:
            return self.act_new()
        t = t or self.rng.choice(live)
        t["version"] += self.rng.choice([1, 1, 3])
        t["cancelled"] = True
        f = self.fields(t["tid"], t["version"], "CANCEL", t["part"])
        if self.rng.random() < 0.3:  # ignored whatever it holds
            f["side"] = self.rng.choice(["BUY", "sell", Raw("null"), Raw("7")])
            f["quantity"] = self.rng.choice(["-1", "1e9", "abc", Raw("[1]"), "1.1234567"])
            f["price"] = self.rng.choice(["-0", "", Raw("{}"), "100"])
            self.sent.append(f)
            pairs = [(k, Raw(str(v)) if k == "version" else v) for k, v in f.items()]
            self.emit(obj_text(pairs, self.rng).encode("utf-8"))
            return
        self.emit_event(f)

    def act_dup(self):
        if not self.sent:
            return self.act_new()
        f = self.rng.choice(self.sent[-200:] if self.rng.random() < 0.7 else self.sent)
        if any(isinstance(v, Raw) for v in f.values()):
            f = {k: v for k, v in f.items() if k not in ("side", "quantity", "price")}
        self.emit(self.render(f, reformat=True))

    def act_conflict(self):
        if not self.sent:
            return self.act_new()
        f = dict(self.rng.choice(self.sent))
        f = {k: v for k, v in f.items() if not isinstance(v, Raw)}
        r = self.rng.random()
        part = (f["account"], f["book"], f["security"])
        if r < 0.25:
            sib = [b if a == part else a for a, b in AMBIGUOUS if part in (a, b)]
            other = sib[0] if sib else self.rng.choice(self.parts)
            f["account"], f["book"], f["security"] = other
        elif r < 0.4 and f["type"] != "NEW":
            f["type"] = "CANCEL" if f["type"] == "AMEND" else "AMEND"
            if f["type"] == "AMEND":
                f.update(side="BUY", quantity="1", price="1")
            else:
                for k in ("side", "quantity", "price"):
                    f.pop(k, None)
        elif f["type"] != "CANCEL" and "quantity" in f:
            which = self.rng.choice(["side", "quantity", "price"])
            if which == "side":
                f["side"] = "SELL" if f["side"] == "BUY" else "BUY"
            elif which == "quantity":
                f["quantity"] = str(decimal.Decimal(f["quantity"]) + self.rng.randint(1, 9))
            else:
                f["price"] = "1234.5678" if f["price"] != "1234.5678" else "1"
        else:
            f["account"], f["book"], f["security"] = self.rng.choice(self.parts)
        self.emit(self.render(f))

    def act_stale(self):
        cands = [t for t in self.trades if t["version"] >= 2]
        if not cands:
            return self.act_amend()
        t = self.rng.choice(cands)
        v = self.rng.randint(2, t["version"])
        typ = self.rng.choice(["AMEND", "CANCEL"])
        # a never-sent version below the current one is STALE; a sent one is DUPLICATE/conflict
        self.emit_event(self.fields(t["tid"], v, typ, t["part"], "BUY", "3", "4"))

    def act_amend_before_new(self):
        tid = self.new_tid()
        part = self.rng.choice(self.parts)
        f = self.fields(tid, 2, "AMEND", part, "SELL", "10", "99.5")
        self.emit_event(f)  # REJECTED unknown trade, not remembered
        self.pending_amends.append((tid, part, f))

    def act_release_pending(self):
        if not self.pending_amends:
            return self.act_new()
        tid, part, f = self.pending_amends.pop(0)
        t = {"tid": tid, "part": part, "version": 1, "cancelled": False, "side": "BUY",
             "qty": "5", "price": "1"}
        self.trades.append(t)
        self.emit_event(self.fields(tid, 1, "NEW", part, "BUY", "5", "1"))
        self.emit(self.render(f))  # now ACCEPTED
        t.update(version=2, side="SELL", qty="10", price="99.5")

    def act_after_cancel(self):
        cancelled = [t for t in self.trades if t["cancelled"]]
        if not cancelled:
            return self.act_cancel()
        t = self.rng.choice(cancelled)
        typ = self.rng.choice(["AMEND", "CANCEL"])
        self.emit_event(self.fields(t["tid"], t["version"] + self.rng.randint(1, 3), typ,
                                    t["part"], "BUY", "1", "1"))

    def act_unknown(self):
        if not self.trades:
            return self.act_new()
        t = self.rng.choice(self.trades)
        sib = [b if a == t["part"] else a for a, b in AMBIGUOUS if t["part"] in (a, b)]
        other = sib[0] if sib else self.rng.choice(self.parts)
        self.emit_event(self.fields(t["tid"], t["version"] + 100, self.rng.choice(["AMEND", "CANCEL"]),
                                    other, "BUY", "1", "1"))

    def act_blank(self):
        self.emit(self.rng.choice([b"", b" ", b"\t", b"\r", b" \t \r", b"    "]))

    # ---- bad lines ------------------------------------------------------------------------
    def good_pairs(self, **over):
        tid = over.pop("tid", "B%d-%d" % (self.args.seed, self.rng.randint(0, 10**6)))
        pairs = [("trade_id", tid), ("version", Raw("1")), ("type", "NEW"), ("account", "ACC1"),
                 ("book", "BOOK1"), ("security", "AAPL"), ("side", "BUY"), ("quantity", "10"),
                 ("price", "1.5")]
        out = []
        for k, v in pairs:
            if k in over:
                if over[k] is DROP:
                    continue
                v = over[k]
            out.append((k, v))
        for k, v in over.items():
            if k not in dict(pairs):
                out.append((k, v))
        return out

    def good_line(self, **over):
        return obj_text(self.good_pairs(**over), self.rng, shuffle=False).encode("utf-8")

    def act_bad(self):
        rng = self.rng
        g = self.good_line
        tid = "B%d-%d" % (self.args.seed, rng.randint(0, 10**6))
        base = ('{"trade_id":"%s","version":1,"type":"NEW","account":"ACC1","book":"BOOK1",'
                '"security":"AAPL","side":"BUY","quantity":"10","price":"1.5"' % tid)
        choices = [
            # not valid UTF-8
            lambda: base.encode() + b',"x":"\xff"}',
            lambda: base.replace("ACC1", "AC\xc0\xafC").encode("latin-1") + b"}",
            lambda: base.encode().replace(b"AAPL", b"AA\xed\xa0\x80PL") + b"}",
            lambda: base.encode().replace(b"BOOK1", b"BO\xe2\x82") + b"}",
            lambda: base.encode().replace(b"BOOK1", b"\xf4\x90\x80\x80") + b"}",
            # lone surrogates (escaped)
            lambda: g(trade_id=Raw('"T\\ud800"')),
            lambda: g(note=Raw('"\\udc00"')),
            lambda: g(trade_id=Raw('"\\ude00\\ud83d"')),
            lambda: g(account=Raw('"abc\\ud83d"')),
            lambda: (base + ',"k\\ud800":1}').encode(),
            # NaN / Infinity
            lambda: g(quantity=Raw("NaN")),
            lambda: g(price=Raw("Infinity")),
            lambda: g(x=Raw("-Infinity")),
            # trailing text
            lambda: (base + "} x").encode(),
            lambda: (base + "}{}").encode(),
            lambda: (base + "},").encode(),
            lambda: (base + "}]").encode(),
            lambda: (base + "}\x00").encode(),
            # repeated keys
            lambda: (base + ',"trade_id":"%s"}' % tid).encode(),
            lambda: (base + ',"meta":{"a":1,"a":1}}').encode(),
            lambda: (base + ',"arr":[{"z":1},{"z":2,"z":3}]}').encode(),
            lambda: (base + ',"x":1,"x":2}').encode(),
            # not an object / not JSON
            lambda: b"[]", lambda: b'"str"', lambda: b"42", lambda: b"null", lambda: b"true",
            lambda: ("[" + base + "}]").encode(), lambda: base.encode(), lambda: b"{",
            lambda: b"}", lambda: b"{'trade_id': 'T1'}", lambda: b"garbage",
            lambda: (base + ",}").encode(), lambda: base.encode() + b"}\x0b",
            lambda: b"\x0c" + base.encode() + b"}", lambda: "\u00a0".encode() + base.encode() + b"}",
            lambda: b"\xef\xbb\xbf" + base.encode() + b"}",  # BOM not at input start
            lambda: base.replace('"AAPL"', '"AA\tPL"').encode() + b"}",  # raw control char
            # missing fields / wrong types
            lambda: g(trade_id=DROP), lambda: g(version=DROP), lambda: g(type=DROP),
            lambda: g(account=DROP), lambda: g(book=DROP), lambda: g(security=DROP),
            lambda: g(side=DROP), lambda: g(quantity=DROP), lambda: g(price=DROP),
            lambda: g(trade_id=Raw("17")), lambda: g(version="1"), lambda: g(type="new"),
            lambda: g(type=Raw("null")), lambda: g(side="buy"), lambda: g(side=Raw("1")),
            lambda: g(account=Raw("null")), lambda: g(book=Raw("[]")), lambda: g(security=Raw("{}")),
            lambda: g(quantity=Raw("true")), lambda: g(price=Raw("[1]")), lambda: g(quantity=Raw("null")),
            # versions
            lambda: g(version=Raw("0")), lambda: g(version=Raw("-1")), lambda: g(version=Raw("1.0")),
            lambda: g(version=Raw("1e0")), lambda: g(version=Raw("9223372036854775808")),
            lambda: g(version=Raw("-9223372036854775808")), lambda: g(version=Raw("2")),
            lambda: g(version=Raw("99999999999999999999999")), lambda: g(version=Raw("-0")),
            lambda: g(type="AMEND"), lambda: g(type="CANCEL"), lambda: g(version=Raw("01")),
            # decimals
            lambda: g(quantity="-1"), lambda: g(quantity="-0"), lambda: g(quantity=Raw("-0")),
            lambda: g(quantity="+1"), lambda: g(quantity="1e3"), lambda: g(quantity=Raw("1e3")),
            lambda: g(quantity=Raw("1E3")), lambda: g(quantity=".5"), lambda: g(quantity="5."),
            lambda: g(quantity="0x10"), lambda: g(quantity=" 1"), lambda: g(quantity="1 "),
            lambda: g(quantity=""), lambda: g(quantity="1,000"), lambda: g(quantity="\u0661\u0662"),
            lambda: g(quantity="\uff11"), lambda: g(quantity="1.0000001"),
            lambda: g(quantity="1.0000000"), lambda: g(quantity=Raw("1.0000000")),
            lambda: g(price="0.000000001"), lambda: g(price="1.000000000"), lambda: g(quantity="0"),
            lambda: g(quantity="0.000000"), lambda: g(quantity=Raw("0")),
            lambda: g(quantity="1000000000000.000001"), lambda: g(quantity="1000000000001"),
            lambda: g(quantity=Raw("1000000000001")), lambda: g(price="1000000000.00000001"),
            lambda: g(price=Raw("-0")), lambda: g(price="-0.0"), lambda: g(price="NaN"),
            lambda: g(price="Infinity"), lambda: g(quantity="1" + "0" * 40),
            lambda: g(quantity=Raw("123456789012345678901234567890")), lambda: g(price=Raw("-1.5")),
            lambda: g(price=Raw("1.5e2")), lambda: g(quantity="1_000"), lambda: g(quantity="1.2.3"),
            # ids
            lambda: g(trade_id="T\u0001"), lambda: g(trade_id="T\u007f"), lambda: g(trade_id=""),
            lambda: base.replace(tid, tid + "\x7f").encode() + b"}",  # raw DEL: JSON ok, id not
            lambda: g(trade_id="x" * 65), lambda: g(trade_id="\u20ac" * 22),
            lambda: g(account="\u001f"), lambda: g(book=""), lambda: g(security="s" * 65),
            lambda: g(account="é" * 33), lambda: g(trade_id="T\n1"), lambda: g(trade_id="T\u0000"),
            # lines that are not blank (only spaces, tabs and CR are) and not JSON
            lambda: b"\x0c", lambda: b"\x0b", lambda: b" \t\x0c\r", lambda: "\u00a0".encode(),
            lambda: "\u3000".encode(), lambda: b"\x00", lambda: b"{}", lambda: b"{} ",
        ]
        self.emit(rng.choice(choices)())

    def act_edge_valid(self):
        """Lines that look odd but are valid (each a fresh trade)."""
        rng = self.rng
        tid = self.new_tid()
        choices = [
            dict(trade_id="x" * 64), dict(trade_id="é" * 32), dict(trade_id="\u20ac" * 21 + "x"),
            dict(trade_id=tid + "\u0085"), dict(trade_id=tid + " \u00a0"),
            dict(trade_id=Raw('"%s\\ud83d\\ude00"' % tid)), dict(quantity="1000000000000"),
            dict(quantity="1000000000000.000000"), dict(quantity=Raw("1000000000000")),
            dict(price="1000000000"), dict(price="0"), dict(price="0.00000000"),
            dict(price=Raw("0")), dict(quantity="007"), dict(quantity=Raw("0.1"), price=Raw("0.3")),
            dict(quantity="0.000001", price="0.00000001"), dict(price="999999999.99999999"),
            dict(quantity=Raw("999999999999.999999")), dict(extra=Raw("[" * 50 + "]" * 50)),
            dict(extra=Raw('{"a":{"b":{"c":[1,2,{"d":null}]}}}')),
            dict(**{"\u0074ype_hint": 1}), dict(tiny=Raw("-1E-400")),
            dict(nul=Raw('"\\u0000"'), **{"\u0000": 1}), dict(sep="\u2028\u2029"),
            dict(trade_id=tid + "\uffff"), dict(quantity="000.50"), dict(lead=Raw('"\\r\\n"')),
        ]
        over = dict(rng.choice(choices))
        if "trade_id" not in over:
            over["tid"] = tid
        elif over["trade_id"] == "x" * 64:
            over["trade_id"] = ("x" * 64)[:64 - len(tid)] + tid
        if rng.random() < 0.3:  # escaped key names are the same keys
            line = self.good_line(**over).replace(b'"trade_id"', b'"\\u0074rade_id"', 1)
        else:
            line = self.good_line(**over)
        self.emit(line)

    # ---- the whale: notional totals up to 1e24 and past it ------------------------------
    def whale_script(self):
        """Events of one partition that no other action touches; expected outcomes noted."""
        part = ("WHALE", "BOOK_W", "XAU")
        seed = self.args.seed
        # Odd seeds push bought_notional to the limit, even seeds sold_notional.
        w, o = ("BUY", "SELL") if seed % 2 else ("SELL", "BUY")
        f = self.fields
        s = []
        ids = ["W%d-%d" % (seed, i) for i in range(1000)]
        for i, tid in enumerate(ids):  # 1000 * 1e12 * 1e9 = a notional total of 1e24 exactly
            qty = "1000000000000" if i % 2 else "1000000000000.000000"
            s.append(f(tid, 1, "NEW", part, w, qty, "1000000000"))
        tiny = f("W%d-tiny" % seed, 1, "NEW", part, w, "0.000001", "0.00000001")  # 1e-14
        zero = "W%d-zero" % seed
        s += [s[5],                                                               # DUPLICATE
              tiny,                                                               # out of range by 1e-14
              f(zero, 1, "NEW", part, w, "5", "0"),                               # ACCEPTED (notional 0)
              f(zero, 2, "AMEND", part, w, "5", "1"),                             # out of range
              f(ids[0], 2, "AMEND", part, w, "1000000000000", "999999999.99999999"),  # 1e24-1e4
              f("W%d-fill" % seed, 1, "NEW", part, w, "10000", "1"),              # exactly 1e24 again
              tiny,                                                               # out of range
              f(ids[1], 2, "CANCEL", part),                                       # ACCEPTED
              tiny,                                                               # ACCEPTED now
              tiny,                                                               # DUPLICATE
              f(zero, 2, "AMEND", part, w, "5", "1"),                             # ACCEPTED
              f(ids[2], 3, "AMEND", part, o, "1000000000000", "1000000000"),      # side change
              f(ids[1], 3, "CANCEL", part),                                       # trade cancelled
              f(ids[3], 2, "AMEND", part, o, "1000000000000", "1000000000")]
        return s

    def build(self):
        a, rng = self.args, self.rng
        whale = self.whale_script() if a.whale else []
        wp = len(whale) / max(1, a.lines - len(whale)) if whale else 0
        acts = [(self.act_new, 24), (self.act_amend, 16), (self.act_cancel, 6), (self.act_dup, 9),
                (self.act_conflict, 5), (self.act_stale, 4), (self.act_amend_before_new, 2),
                (self.act_release_pending, 2), (self.act_after_cancel, 3), (self.act_unknown, 2),
                (self.act_blank, 3), (self.act_edge_valid, 4), (self.act_bad, 100 * a.bad)]
        fns = [f for f, _ in acts]
        weights = [w for _, w in acts]
        wi = 0
        while len(self.lines) < a.lines:
            if wi < len(whale) and rng.random() < wp / (1 + wp):
                f = whale[wi]
                wi += 1
                self.emit_event(f, track=False, reformat=True)
                continue
            rng.choices(fns, weights)[0]()
        while wi < len(whale):
            self.emit_event(whale[wi], track=False, reformat=True)
            wi += 1
        out = bytearray(b"\xef\xbb\xbf" if a.bom else b"")
        for i, line in enumerate(self.lines):
            out += line
            last = i == len(self.lines) - 1
            if last and a.no_final_newline and line.strip(b" \t\r"):
                break
            out += b"\r\n" if rng.random() < a.crlf else b"\n"
        return bytes(out)


class _Drop:
    pass


DROP = _Drop()


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--lines", type=int, default=3000)
    ap.add_argument("--out", default="-")
    ap.add_argument("--bom", action="store_true", help="start with a UTF-8 byte-order mark")
    ap.add_argument("--crlf", type=float, default=0.1, help="share of lines ending in CRLF")
    ap.add_argument("--no-final-newline", action="store_true")
    ap.add_argument("--whale", dest="whale", action="store_true", default=None)
    ap.add_argument("--no-whale", dest="whale", action="store_false")
    ap.add_argument("--bad", type=float, default=0.12, help="weight of bad lines (0..1)")
    ap.add_argument("--partitions", type=int, default=30)
    a = ap.parse_args(argv)
    if a.whale is None:
        a.whale = a.lines >= 2000
    data = Gen(a).build()
    if a.out == "-":
        sys.stdout.buffer.write(data)
    else:
        with open(a.out, "wb") as f:
            f.write(data)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
