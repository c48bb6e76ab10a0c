#!/usr/bin/env python3
"""An independent, sequential model of /work/shared/spec/trade-events.md sections 1-4.

It shares no code with the C++ library: it reads a trace the way `tradecapture replay` must and
prints the expected `--outcomes`, `positions` and `events` lines in the spec's formats.

  model.py run [--outcomes OUT]... [--positions OUT] [--events OUT] INPUT...
      Each INPUT (a path or '-') is one replay into the same store, in order; give one
      --outcomes per INPUT (or none). Outputs are written in the spec's exact text format.
  model.py normalize FILE
      Re-prints JSON lines canonically (key order kept, ASCII escapes, ', ' and ': ') with every
      `reason` reduced to what the spec fixes: 'invalid:', 'conflict:', 'out of range' prefixes
      ('unknown trade' and 'trade cancelled' stay exact). A line that is not a JSON object is
      printed as 'UNPARSEABLE: <repr>'. Both sides of a comparison go through it, then `diff`.

Standard library only. Numbers are never floats: decimals are decimal.Decimal values built from
their text, under a context that traps any rounding.
"""

import argparse
import decimal
import json
import re
import sys

CTX = decimal.Context(prec=400, traps=[decimal.Inexact, decimal.Rounded, decimal.InvalidOperation,
                                        decimal.Overflow, decimal.DivisionByZero])
decimal.setcontext(CTX)
D = decimal.Decimal

INT64_MAX = 2**63 - 1
INT64_MIN = -(2**63)
TOTAL_MAX = D("1e24")  # totals are kept exactly within |x| <= 1e24 (Decimal::max())
QTY_MAX = D("1e12")
PRICE_MAX = D("1e9")
BOM = b"\xef\xbb\xbf"
PLAIN_DECIMAL = re.compile(r"[0-9]+(?:\.([0-9]+))?")  # ASCII digits only (not \d)
TOTAL_FIELDS = ("net_quantity", "bought_quantity", "sold_quantity", "bought_notional",
                "sold_notional")


class Invalid(Exception):
    """The line breaks spec section 1; the message is the part after 'invalid: '."""


class IntText:
    """A JSON number written without fraction or exponent, kept as its text."""
    __slots__ = ("text",)

    def __init__(self, text):
        self.text = text


class FloatText:
    """A JSON number written with a fraction and/or an exponent, kept as its text."""
    __slots__ = ("text",)

    def __init__(self, text):
        self.text = text


def _pairs_no_duplicates(pairs):
    seen = set()
    for k, _ in pairs:
        if k in seen:
            raise Invalid("duplicate key %r" % k)
        seen.add(k)
    return dict(pairs)


def _no_constants(name):
    raise Invalid("%s is not JSON" % name)


def _has_surrogate(s):
    # Strict UTF-8 decoding never yields surrogates, so any surrogate code point left in a parsed
    # string came from an escape that did not form a valid pair (Python joins valid pairs).
    return any(0xD800 <= ord(c) <= 0xDFFF for c in s)


def _check_surrogates(v):
    stack = [v]
    while stack:
        x = stack.pop()
        if isinstance(x, str):
            if _has_surrogate(x):
                raise Invalid("lone surrogate escape")
        elif isinstance(x, dict):
            for k, y in x.items():
                if _has_surrogate(k):
                    raise Invalid("lone surrogate escape in a key")
                stack.append(y)
        elif isinstance(x, list):
            stack.extend(x)


def strict_json(raw):
    """Parses bytes as one strict RFC 8259 JSON text in valid UTF-8, or raises Invalid."""
    try:
        text = raw.decode("utf-8", errors="strict")
    except UnicodeDecodeError:
        raise Invalid("not valid UTF-8")
    if text.startswith("\ufeff"):
        raise Invalid("byte-order mark inside the input")
    try:
        value = json.loads(text, object_pairs_hook=_pairs_no_duplicates, parse_int=IntText,
                           parse_float=FloatText, parse_constant=_no_constants)
    except Invalid:
        raise
    except (ValueError, RecursionError) as e:  # JSONDecodeError is a ValueError
        raise Invalid("not JSON: %s" % e)
    _check_surrogates(value)
    return value


def _int_value(x):
    """The value of a JSON integer (IntText) if it is within int64, else None."""
    if not isinstance(x, IntText):
        return None
    t = x.text
    digits = t[1:] if t.startswith("-") else t
    if len(digits) > 19:  # JSON integers have no leading zeros: 20+ digits are >= 1e19
        return None
    v = int(t)
    return v if INT64_MIN <= v <= INT64_MAX else None


def _text_field(obj, name):
    if name not in obj:
        raise Invalid("%s is missing" % name)
    v = obj[name]
    if type(v) is not str:
        raise Invalid("%s is not a string" % name)
    n = len(v.encode("utf-8"))
    if n < 1 or n > 64:
        raise Invalid("%s must be 1..64 bytes, has %d" % (name, n))
    for c in v:
        o = ord(c)
        if o <= 0x1F or o == 0x7F:
            raise Invalid("%s has a control character" % name)
    return v


def _decimal_field(obj, name, max_frac):
    if name not in obj:
        raise Invalid("%s is missing" % name)
    v = obj[name]
    if type(v) is str:
        text = v
    elif isinstance(v, (IntText, FloatText)):
        text = v.text
    else:
        raise Invalid("%s is not a decimal" % name)
    m = PLAIN_DECIMAL.fullmatch(text)
    if not m:
        raise Invalid("%s is not a plain decimal" % name)
    frac = m.group(1)
    if frac is not None and len(frac) > max_frac:
        raise Invalid("%s has more than %d fractional digits" % (name, max_frac))
    return D(text)  # exact: the constructor never rounds


class Event:
    __slots__ = ("trade_id", "version", "type", "partition", "side", "quantity", "price")

    def same_content(self, o):
        if self.type != o.type or self.partition != o.partition:
            return False
        if self.type == "CANCEL":
            return True
        return self.side == o.side and self.quantity == o.quantity and self.price == o.price


def parse_event(raw):
    """(event or None, reason, echo_trade_id, echo_version) for one line without its '\\n'."""
    try:
        obj = strict_json(raw)
    except Invalid as e:
        return None, "invalid: %s" % e, None, None
    if not isinstance(obj, dict):
        return None, "invalid: the line is not a JSON object", None, None
    echo_tid = obj.get("trade_id")
    echo_tid = echo_tid if type(echo_tid) is str else None
    echo_ver = _int_value(obj.get("version"))
    try:
        e = Event()
        e.trade_id = _text_field(obj, "trade_id")
        if "version" not in obj:
            raise Invalid("version is missing")
        if not isinstance(obj["version"], IntText):
            raise Invalid("version is not an integer")
        if echo_ver is None or echo_ver < 1:
            raise Invalid("version out of range")
        e.version = echo_ver
        if "type" not in obj:
            raise Invalid("type is missing")
        if type(obj["type"]) is not str or obj["type"] not in ("NEW", "AMEND", "CANCEL"):
            raise Invalid("bad type")
        e.type = obj["type"]
        if e.type == "NEW" and e.version != 1:
            raise Invalid("NEW must have version 1")
        if e.type != "NEW" and e.version < 2:
            raise Invalid("%s must have version >= 2" % e.type)
        e.partition = (_text_field(obj, "account"), _text_field(obj, "book"),
                       _text_field(obj, "security"))
        e.side = e.quantity = e.price = None
        if e.type != "CANCEL":
            if "side" not in obj:
                raise Invalid("side is missing")
            if type(obj["side"]) is not str or obj["side"] not in ("BUY", "SELL"):
                raise Invalid("bad side")
            e.side = obj["side"]
            e.quantity = _decimal_field(obj, "quantity", 6)
            if not (e.quantity > 0):
                raise Invalid("quantity must be > 0")
            if e.quantity > QTY_MAX:
                raise Invalid("quantity above 1e12")
            e.price = _decimal_field(obj, "price", 8)
            if e.price > PRICE_MAX:
                raise Invalid("price above 1e9")
    except Invalid as err:
        return None, "invalid: %s" % err, echo_tid, echo_ver
    return e, "", echo_tid, echo_ver


class Partition:
    def __init__(self):
        self.seq = 0
        self.totals = {f: D(0) for f in TOTAL_FIELDS}
        self.live = 0
        self.trades = {}  # trade_id -> [version, side, quantity, price, cancelled]
        self.events = []  # (seq, Event)


def effect(totals, side, q, p, sign):
    """The totals after a trade of `side` `q` at `p` is applied (sign 1) or reversed (sign -1)."""
    t = dict(totals)
    notional = q * p
    if side == "BUY":
        t["bought_quantity"] += sign * q
        t["net_quantity"] += sign * q
        t["bought_notional"] += sign * notional
    else:
        t["sold_quantity"] += sign * q
        t["net_quantity"] -= sign * q
        t["sold_notional"] += sign * notional
    return t


def _out_of_range(totals):
    for f in TOTAL_FIELDS:
        if abs(totals[f]) > TOTAL_MAX:
            return f
    return None


class Model:
    def __init__(self):
        self.keys = {}        # (trade_id, version) -> accepted Event
        self.partitions = {}  # (account, book, security) -> Partition

    def apply(self, e):
        """(outcome, reason, seq) for a valid event, applying it when ACCEPTED."""
        key = (e.trade_id, e.version)
        prior = self.keys.get(key)
        if prior is not None:
            if prior.same_content(e):
                return "DUPLICATE", "", None
            return "REJECTED", "conflict: (trade_id, version) accepted before with other content", None
        part = self.partitions.get(e.partition) or Partition()
        trade = part.trades.get(e.trade_id)
        if e.type == "NEW":
            assert trade is None, "a known trade implies its NEW key was accepted"
            totals = effect(part.totals, e.side, e.quantity, e.price, 1)
        else:
            if trade is None:
                return "REJECTED", "unknown trade", None
            if e.version <= trade[0]:
                return "STALE", "", None
            if trade[4]:
                return "REJECTED", "trade cancelled", None
            totals = effect(part.totals, trade[1], trade[2], trade[3], -1)
            if e.type == "AMEND":
                totals = effect(totals, e.side, e.quantity, e.price, 1)
        bad = _out_of_range(totals)
        if bad:
            return "REJECTED", "out of range: %s would pass 1e24" % bad, None
        # ACCEPTED
        part.totals = totals
        if e.type == "NEW":
            part.live += 1
            part.trades[e.trade_id] = [1, e.side, e.quantity, e.price, False]
        elif e.type == "AMEND":
            part.trades[e.trade_id] = [e.version, e.side, e.quantity, e.price, False]
        else:
            part.live -= 1
            trade[0] = e.version
            trade[4] = True
        part.seq += 1
        part.events.append((part.seq, e))
        self.partitions[e.partition] = part
        self.keys[key] = e
        return "ACCEPTED", "", part.seq

    def positions(self):
        rows = []
        for k in sorted(self.partitions, key=lambda k: tuple(x.encode("utf-8") for x in k)):
            rows.append((k, self.partitions[k]))
        return rows


def split_lines(data):
    """Yields (line_number, bytes) for every physical line; the BOM is skipped at the start."""
    if data.startswith(BOM):
        data = data[len(BOM):]
    if not data:
        return
    parts = data.split(b"\n")
    if parts[-1] == b"":  # the input ended with '\n': no further line
        parts.pop()
    for i, p in enumerate(parts, 1):
        yield i, p


def is_blank(line):
    return all(c in b" \t\r" for c in line)


def jstr(s):
    return "null" if s is None else json.dumps(s, ensure_ascii=False)


def jint(v):
    return "null" if v is None else str(int(v))


def canon(d):
    """Plain notation without exponent or trailing zeros ('0', '12.5', '-0.00000001')."""
    if d == 0:
        return "0"
    s = format(d, "f")
    if "." in s:
        s = s.rstrip("0").rstrip(".")
    return s


def outcome_line(line, tid, ver, outcome, reason, seq):
    return '{"line": %d, "trade_id": %s, "version": %s, "outcome": "%s", "reason": %s, "seq": %s}' % (
        line, jstr(tid), jint(ver), outcome, jstr(reason), jint(seq))


def position_line(k, p):
    t = p.totals
    return ('{"account": %s, "book": %s, "security": %s, "net_quantity": "%s", '
            '"bought_quantity": "%s", "sold_quantity": "%s", "bought_notional": "%s", '
            '"sold_notional": "%s", "live_trades": %d, "seq": %d}') % (
        jstr(k[0]), jstr(k[1]), jstr(k[2]), canon(t["net_quantity"]), canon(t["bought_quantity"]),
        canon(t["sold_quantity"]), canon(t["bought_notional"]), canon(t["sold_notional"]), p.live,
        p.seq)


def event_line(seq, e):
    cancel = e.type == "CANCEL"
    return ('{"account": %s, "book": %s, "security": %s, "seq": %d, "trade_id": %s, "version": %d, '
            '"type": "%s", "side": %s, "quantity": %s, "price": %s}') % (
        jstr(e.partition[0]), jstr(e.partition[1]), jstr(e.partition[2]), seq, jstr(e.trade_id),
        e.version, e.type, "null" if cancel else jstr(e.side),
        "null" if cancel else jstr(canon(e.quantity)), "null" if cancel else jstr(canon(e.price)))


def replay(model, data):
    out = []
    for n, raw in split_lines(data):
        if is_blank(raw):
            continue
        e, reason, tid, ver = parse_event(raw)
        if e is None:
            out.append(outcome_line(n, tid, ver, "REJECTED", reason, None))
        else:
            outcome, reason, seq = model.apply(e)
            out.append(outcome_line(n, tid, ver, outcome, reason, seq))
    return out


def _read(path):
    if path == "-":
        return sys.stdin.buffer.read()
    with open(path, "rb") as f:
        return f.read()


def _write(path, lines):
    text = "".join(l + "\n" for l in lines)
    if path == "-":
        sys.stdout.buffer.write(text.encode("utf-8"))
        sys.stdout.flush()
    else:
        with open(path, "wb") as f:
            f.write(text.encode("utf-8"))


def reason_class(r):
    for prefix in ("invalid:", "conflict:", "out of range"):
        if r.startswith(prefix):
            return prefix
    return r


def normalize_line(text):
    try:
        pairs = json.loads(text, object_pairs_hook=lambda p: p, parse_constant=_no_constants)
        if not isinstance(pairs, list) or not all(isinstance(p, tuple) for p in pairs):
            raise ValueError("not an object")
        # floats would be a format error in every output of the spec: keep their text visible
        out = []
        for k, v in pairs:
            if k == "reason" and isinstance(v, str):
                v = reason_class(v)
            if isinstance(v, float):
                v = "FLOAT(%r)" % v
            out.append((k, v))
        return "{" + ", ".join("%s: %s" % (json.dumps(k), json.dumps(v)) for k, v in out) + "}"
    except Exception:
        return "UNPARSEABLE: %r" % text


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("--outcomes", action="append", default=[])
    r.add_argument("--positions")
    r.add_argument("--events")
    r.add_argument("inputs", nargs="+")
    n = sub.add_parser("normalize")
    n.add_argument("file")
    a = ap.parse_args(argv)
    if a.cmd == "normalize":
        data = _read(a.file)
        lines = data.decode("utf-8", errors="surrogateescape").split("\n")
        last = lines.pop()  # '' when the file ends with '\n' (or is empty)
        out = [normalize_line(l) for l in lines]
        if last:
            out.append("NO FINAL NEWLINE: %r" % last)
        _write("-", out)
        return 0
    if a.outcomes and len(a.outcomes) != len(a.inputs):
        ap.error("give one --outcomes per INPUT")
    model = Model()
    for i, path in enumerate(a.inputs):
        lines = replay(model, _read(path))
        if a.outcomes:
            _write(a.outcomes[i], lines)
    if a.positions:
        _write(a.positions, [position_line(k, p) for k, p in model.positions()])
    if a.events:
        _write(a.events, [event_line(s, e) for k, p in model.positions() for s, e in p.events])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
