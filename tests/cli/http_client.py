#!/usr/bin/env python3
"""The client side of tests/cli/http_api.sh and prometheus.sh: talks to a running
`tradecapture serve` over real sockets (standard library only: http.client, socket).

Each subcommand either writes files for the shell test to compare with model.py, or checks
something itself and prints 'ok: ...' lines; any failed check prints 'FAIL: ...' and exits 1.

  post-array PORT TRACE OUTPREFIX      JSON array of every trace line that is strict JSON
  post-ndjson PORT TRACE OUTPREFIX     the trace bytes as one application/x-ndjson body
  post-singles PORT TRACE OUTPREFIX    one application/json POST per line (400 when not JSON)
      write OUTPREFIX.input (what model.py and `replay` must see), OUTPREFIX.outcomes (the
      outcome objects, one per line, 'line' as in OUTPREFIX.input) and OUTPREFIX.bodies (each
      raw response body, for the byte-exact comparison of `expect-bodies`)
  expect-bodies MODE REPLAY_OUTCOMES OUTPREFIX
      the raw bodies must be exactly '{"outcomes": [' + the `replay --outcomes` lines joined by
      ', ' + ']}\\n' (for singles: one line each, with "line": 1)
  positions PORT OUT [QUERY]           GET /v1/positions[?QUERY], one position per line
  check-position-filters PORT MODEL_POSITIONS
  check-trades-by-id PORT MODEL_EVENTS
  check-status PORT TOKEN_OR_- [light] status codes and (unless light) hostile bodies
  check-auth PORT TOKEN
  check-connection PORT                keep-alive, pipelining, Expect: 100-continue, chunked
  check-timeouts PORT READ_TIMEOUT_MS IDLE_TIMEOUT_MS MAX_CONNECTIONS MAX_BODY
  check-overload PORT
  check-conventions PORT               HEAD on GET resources, 415 for a Content-Encoding, the
                                       trailing-slash policy (404 naming the canonical path)
  drain-race PORT PID MODE OUT         a big POST racing SIGTERM (see drain_race)
  post-load PORT N SECONDS             posts N small batches over SECONDS (for prometheus.sh)
  scrape PORT OUT                      GET /metrics into OUT
  prom-query PROM_PORT QUERY SECONDS   polls a Prometheus server until QUERY is positive
"""

import http.client
import json
import os
import select
import signal
import socket
import sys
import threading
import time
import urllib.parse

HOST = "127.0.0.1"


def fail(msg):
    print("FAIL: " + msg, file=sys.stderr)
    sys.stderr.flush()
    os._exit(1)


def ok(msg):
    print("ok: " + msg)
    sys.stdout.flush()


def check(cond, msg):
    if not cond:
        fail(msg)


# ---- HTTP ------------------------------------------------------------------------------------

def request(port, method, path, body=None, headers=None, timeout=60):
    """One request on a fresh connection: (status, {lower-case header: value}, body bytes)."""
    c = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        c.request(method, path, body=body, headers=headers or {})
        r = c.getresponse()
        data = r.read()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, data
    finally:
        c.close()


def post(port, body, ctype="application/json", headers=None, timeout=120):
    h = {"Content-Type": ctype} if ctype is not None else {}
    h.update(headers or {})
    return request(port, "POST", "/v1/trades", body, h, timeout)


def outcomes_of(body):
    """The outcome objects of a 200 body, each as a list of (key, value) pairs in order."""
    doc = json.loads(body, object_pairs_hook=lambda p: p)
    check(isinstance(doc, list) and len(doc) == 1 and doc[0][0] == "outcomes",
          "the body is not {\"outcomes\": [...]}: %r" % body[:200])
    return doc[0][1]


def dump_pairs(pairs):
    return "{" + ", ".join("%s: %s" % (json.dumps(k, ensure_ascii=False), json.dumps(v, ensure_ascii=False))
                           for k, v in pairs) + "}"


class Raw:
    """A raw socket with a minimal HTTP/1.1 response reader (Content-Length bodies)."""

    def __init__(self, port, timeout=30):
        self.s = socket.create_connection((HOST, port), timeout=timeout)
        self.buf = b""

    def send(self, data):
        self.s.sendall(data)

    def _fill(self):
        chunk = self.s.recv(1 << 16)
        if not chunk:
            raise EOFError("connection closed by the server")
        self.buf += chunk

    def read_response(self, to_head=False):
        """(status, headers, body); `to_head`: the answer to a HEAD, which has no body whatever
        its Content-Length says."""
        while b"\r\n\r\n" not in self.buf:
            self._fill()
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ", 2)
        status = int(parts[1])
        headers = {}
        for l in lines[1:]:
            k, v = l.split(":", 1)
            headers[k.strip().lower()] = v.strip()
        n = 0 if to_head else int(headers.get("content-length", "0"))
        while len(self.buf) < n:
            self._fill()
        body, self.buf = self.buf[:n], self.buf[n:]
        return status, headers, body

    def wait_closed(self, limit):
        """Seconds until the server closes the connection (EOF or reset), or None after `limit`."""
        t0 = time.monotonic()
        self.s.settimeout(0.05)
        while time.monotonic() - t0 < limit:
            try:
                chunk = self.s.recv(1 << 16)
                if not chunk:
                    return time.monotonic() - t0
                self.buf += chunk
            except socket.timeout:
                continue
            except (ConnectionResetError, BrokenPipeError):
                return time.monotonic() - t0
        return None

    def close(self):
        self.s.close()


def http_request_bytes(method, path, body=b"", ctype="application/json", extra=""):
    head = "%s %s HTTP/1.1\r\nHost: test\r\n" % (method, path)
    if ctype:
        head += "Content-Type: %s\r\n" % ctype
    if method == "POST" or body:
        head += "Content-Length: %d\r\n" % len(body)
    head += extra + "\r\n"
    return head.encode() + body


# ---- the JSON oracle --------------------------------------------------------------------------

class NotJson(Exception):
    pass


def _no_constant(name):
    raise NotJson(name)


def _has_surrogate(v):
    stack = [v]
    while stack:
        x = stack.pop()
        if isinstance(x, str):
            if any(0xD800 <= ord(c) <= 0xDFFF for c in x):
                return True
        elif isinstance(x, list):
            stack.extend(x)
        elif isinstance(x, dict):
            stack.extend(x.keys())
            stack.extend(x.values())
    return False


def strict_json(raw):
    """The value of `raw` when it is RFC 8259 JSON in valid UTF-8 (no escaped lone surrogate),
    else raises NotJson. This is the test's independent idea of 'a body that is JSON'."""
    try:
        text = raw.decode("utf-8")
        v = json.loads(text, parse_constant=_no_constant)
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        raise NotJson(str(e))
    if _has_surrogate(v):
        raise NotJson("lone surrogate")
    return v


def split_lines(data):
    """Physical lines as model.py sees them (a BOM at the start skipped)."""
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    if not data:
        return []
    parts = data.split(b"\n")
    if parts[-1] == b"":
        parts.pop()
    return parts


def is_json(raw):
    try:
        strict_json(raw)
        return True
    except NotJson:
        return False


# ---- posting traces ---------------------------------------------------------------------------

def write_lines(path, lines):
    with open(path, "wb") as f:
        for l in lines:
            f.write(l if isinstance(l, bytes) else l.encode("utf-8"))
            f.write(b"\n")


def post_array(port, trace, out):
    with open(trace, "rb") as f:
        lines = split_lines(f.read())
    elems = [l for l in lines if is_json(l)]
    check(len(elems) > 100, "too few JSON lines in %s" % trace)
    # Odd but legal separators, so the body scanner sees more than '[a,b]'.
    body = b"\xef\xbb\xbf[\n  " + b" ,\r\n\t".join(elems) + b"\n]\n"
    status, headers, data = post(port, body, "application/json; charset=utf-8")
    check(status == 200, "POST array: status %d: %r" % (status, data[:300]))
    check(headers.get("content-type") == "application/json", "POST array: content type %r" % headers)
    outs = outcomes_of(data)
    check(len(outs) == len(elems), "POST array: %d outcomes for %d elements" % (len(outs), len(elems)))
    write_lines(out + ".input", elems)
    write_lines(out + ".outcomes", [dump_pairs(o) for o in outs])
    write_lines(out + ".bodies", [data.rstrip(b"\n")])
    ok("POST %d events as one JSON array (%d bytes) -> 200" % (len(elems), len(body)))


def post_ndjson(port, trace, out):
    with open(trace, "rb") as f:
        body = f.read()
    status, headers, data = post(port, body, "application/x-ndjson")
    check(status == 200, "POST ndjson: status %d: %r" % (status, data[:300]))
    outs = outcomes_of(data)
    write_lines(out + ".outcomes", [dump_pairs(o) for o in outs])
    write_lines(out + ".bodies", [data.rstrip(b"\n")])
    with open(out + ".input", "wb") as f:
        f.write(body)
    ok("POST %d bytes of NDJSON -> 200 with %d outcomes" % (len(body), len(outs)))


def post_singles(port, trace, out):
    with open(trace, "rb") as f:
        lines = split_lines(f.read())
    sent, outs, bodies = [], [], []
    n400 = 0
    c = http.client.HTTPConnection(HOST, port, timeout=60)  # one keep-alive connection
    for raw in lines:
        if raw.startswith(b"\xef\xbb\xbf"):
            raw = raw[3:]  # a BOM at the start of a body is skipped, as at the start of a file
        if not raw.strip(b" \t\r"):
            continue
        try:
            v = strict_json(raw)
        except NotJson:
            v = NotJson
        if isinstance(v, list):
            continue  # an array is several events (tested by post-array)
        c.request("POST", "/v1/trades", body=raw, headers={"Content-Type": "application/json"})
        r = c.getresponse()
        data = r.read()
        if v is NotJson:
            check(r.status == 400, "single POST of non-JSON %r: status %d (expected 400): %r"
                  % (raw[:120], r.status, data[:200]))
            err = json.loads(data)
            check(isinstance(err.get("error"), str) and err["error"],
                  "400 without an error text: %r" % data)
            n400 += 1
            continue
        check(r.status == 200, "single POST %r: status %d: %r" % (raw[:120], r.status, data[:200]))
        o = outcomes_of(data)
        check(len(o) == 1, "single POST %r: %d outcomes" % (raw[:120], len(o)))
        check(o[0][0] == ("line", 1), "single POST: line is not 1: %r" % (o[0],))
        sent.append(raw)
        outs.append([("line", len(sent))] + o[0][1:])
        bodies.append(data.rstrip(b"\n"))
    c.close()
    check(n400 > 0 and len(sent) > 100, "the trace gave %d single events and %d non-JSON lines"
          % (len(sent), n400))
    write_lines(out + ".input", sent)
    write_lines(out + ".outcomes", [dump_pairs(o) for o in outs])
    write_lines(out + ".bodies", bodies)
    ok("%d single-event POSTs -> 200, %d non-JSON bodies -> 400 (one keep-alive connection)"
       % (len(sent), n400))


def expect_bodies(mode, replay_outcomes, out):
    with open(replay_outcomes, "rb") as f:
        rl = f.read().split(b"\n")
    check(rl[-1] == b"", "replay outcomes do not end with a newline")
    rl.pop()
    with open(out + ".bodies", "rb") as f:
        bodies = f.read().split(b"\n")
    bodies.pop()
    if mode == "singles":
        check(len(bodies) == len(rl), "%d bodies, %d replay lines" % (len(bodies), len(rl)))
        for i, (b, r) in enumerate(zip(bodies, rl), 1):
            prefix = b'{"line": %d, ' % i
            check(r.startswith(prefix), "replay line %d: %r" % (i, r))
            want = b'{"outcomes": [{"line": 1, ' + r[len(prefix):] + b"]}"
            check(b == want, "single POST %d: body\n  %r\nexpected (replay)\n  %r" % (i, b, want))
    else:
        check(len(bodies) == 1, "one body expected")
        want = b'{"outcomes": [' + b", ".join(rl) + b"]}"
        if bodies[0] != want:
            got = bodies[0]
            i = next((k for k in range(min(len(got), len(want))) if got[k] != want[k]),
                     min(len(got), len(want)))
            fail("%s body differs from the replay outcomes at byte %d:\n  got  %r\n  want %r"
                 % (mode, i, got[max(0, i - 80):i + 80], want[max(0, i - 80):i + 80]))
    ok("%s response bodies are byte-identical to `replay --outcomes` lines (%d outcomes)"
       % (mode, len(rl)))


# ---- reading ----------------------------------------------------------------------------------

def get_json(port, path, headers=None):
    status, h, data = request(port, "GET", path, headers=headers)
    return status, h, data


def positions(port, out, query=None):
    path = "/v1/positions" + ("?" + query if query else "")
    status, h, data = get_json(port, path)
    check(status == 200, "GET %s: %d %r" % (path, status, data[:200]))
    doc = json.loads(data, object_pairs_hook=lambda p: p)
    check(doc[0][0] == "positions", "GET %s: %r" % (path, data[:200]))
    write_lines(out, [dump_pairs(p) for p in doc[0][1]])
    ok("GET %s -> %d positions" % (path, len(doc[0][1])))


def read_model_lines(path):
    with open(path, "rb") as f:
        return [json.loads(l, object_pairs_hook=lambda p: p) for l in f.read().splitlines() if l]


def check_position_filters(port, model_positions):
    rows = read_model_lines(model_positions)
    check(len(rows) >= 3, "too few model positions")
    keys = [(dict(r)["account"], dict(r)["book"], dict(r)["security"]) for r in rows]
    cases = []
    for k in keys[:3] + keys[-3:]:
        cases.append({"account": k[0]})
        cases.append({"account": k[0], "book": k[1], "security": k[2]})
        cases.append({"book": k[1]})
        cases.append({"security": k[2]})
    cases.append({"account": "no such account \u00e9&="})
    for f in cases:
        q = urllib.parse.urlencode(f)
        want = [r for r, k in zip(rows, keys)
                if all({"account": k[0], "book": k[1], "security": k[2]}[n] == v for n, v in f.items())]
        status, h, data = get_json(port, "/v1/positions?" + q)
        check(status == 200, "GET /v1/positions?%s: %d %r" % (q, status, data[:200]))
        got = json.loads(data, object_pairs_hook=lambda p: p)[0][1]
        check(got == want, "GET /v1/positions?%s:\n  got  %r\n  want %r" % (q, got[:3], want[:3]))
    for bad in ["colour=red", "account=A&account=B", "account=%zz"]:
        status, h, data = get_json(port, "/v1/positions?" + bad)
        check(status == 400, "GET /v1/positions?%s: %d (expected 400)" % (bad, status))
    ok("GET /v1/positions with %d filter combinations equals the filtered model; bad queries 400"
       % len(cases))


def check_trades_by_id(port, model_events):
    rows = read_model_lines(model_events)
    by_id = {}
    for r in rows:
        by_id.setdefault(dict(r)["trade_id"], []).append(r)
    ids = sorted(by_id, key=lambda t: (-len(by_id[t]), t))[:15]
    ids += [t for t in by_id if any(ord(c) > 127 or c in "/?#%+& " for c in t)][:15]
    check(len(ids) >= 10, "too few trade ids in the model")
    for t in ids:
        path = "/v1/trades/" + urllib.parse.quote(t, safe="")
        status, h, data = get_json(port, path)
        check(status == 200, "GET %s: %d %r" % (path, status, data[:200]))
        doc = json.loads(data, object_pairs_hook=lambda p: p)
        check(doc[0] == ("trade_id", t), "GET %s: trade_id %r" % (path, doc[0]))
        check(doc[1][0] == "events" and doc[1][1] == by_id[t],
              "GET %s:\n  got  %r\n  want %r" % (path, doc[1][1], by_id[t]))
    for missing in ["no-such-trade", "T\u00e9 unknown"]:
        path = "/v1/trades/" + urllib.parse.quote(missing, safe="")
        status, h, data = get_json(port, path)
        check(status == 404, "GET %s: %d (expected 404)" % (path, status))
    status, h, data = get_json(port, "/v1/trades/%zz")
    check(status == 400, "GET /v1/trades/%%zz: %d (expected 400)" % status)
    ok("GET /v1/trades/{id} for %d trade ids (percent-encoded, unicode) equals the model's "
       "events; unknown ids 404" % len(ids))


# ---- status codes and hostile bodies ------------------------------------------------------------

def event(tid, version=1, typ="NEW", acct="HA", book="HB", sec="HS", side="BUY", qty="1", price="2"):
    e = {"trade_id": tid, "version": version, "type": typ, "account": acct, "book": book,
         "security": sec}
    if typ != "CANCEL":
        e.update(side=side, quantity=qty, price=price)
    return e


def live(port):
    status, _, _ = request(port, "GET", "/health/live")
    check(status == 200, "/health/live answered %d" % status)


def check_status(port, token, light=False):
    """Every status code, and (unless `light`) the hostile bodies."""
    auth = {"Authorization": "Bearer " + token} if token != "-" else {}

    def expect(status, method, path, body=None, headers=None, what=None, retry_after=False):
        h = dict(auth)
        h.update(headers or {})
        s, rh, data = request(port, method, path, body, h)
        check(s == status, "%s %s (%s): %d, expected %d: %r"
              % (method, path, what or "", s, status, data[:200]))
        if status >= 400:
            check(rh.get("content-type") == "application/json", "%d without a JSON body" % s)
            check(json.loads(data).get("error"), "%d without an error text: %r" % (s, data))
        if retry_after:
            check(rh.get("retry-after", "").isdigit(), "%d without Retry-After" % s)
        ok("%s %s %s-> %d" % (method, path, (what + " ") if what else "", s))
        return rh, data

    ctype = {"Content-Type": "application/json"}
    expect(200, "GET", "/health/live")
    expect(200, "GET", "/health/ready")
    # 400: bodies that are not JSON at all
    for what, body in [("truncated JSON", b'[{"trade_id": "T1", "version": 1'),
                       ("garbage", b"hello"), ("empty body", b""),
                       ("trailing text", b'{"a": 1} x'),
                       ("invalid UTF-8", b'[{"trade_id": "\xff"}]'),
                       ("escaped lone surrogate", b'[{"trade_id": "\\ud800"}]'),
                       ("unbalanced 100k '['", b"[" * 100000),
                       ("NaN", b"[NaN]")]:
        expect(400, "POST", "/v1/trades", body, ctype, what)
    # 404 / 405 / 415
    for path in ["/", "/v1", "/v1/trades/", "/v1/trades/a/b", "/v2/trades", "/metrics/x",
                 "/health", "/v1/positions/x"]:
        expect(404, "GET", path)
    _, _ = expect(405, "GET", "/v1/trades")
    rh, _ = expect(405, "PUT", "/v1/trades", b"{}", ctype)
    check(rh.get("allow") == "POST", "405 without Allow: POST: %r" % rh)
    for m, p in [("POST", "/v1/positions"), ("DELETE", "/metrics"), ("POST", "/health/live"),
                 ("POST", "/v1/trades/T1")]:
        expect(405, m, p, b"{}", ctype)
    for what, h in [("text/plain", {"Content-Type": "text/plain"}),
                    ("no content type", {}),
                    ("application/jsonx", {"Content-Type": "application/jsonx"}),
                    ("form", {"Content-Type": "application/x-www-form-urlencoded"})]:
        expect(415, "POST", "/v1/trades", json.dumps(event("X415")).encode(), h, what)
    # Content types are case-insensitive and take parameters.
    expect(200, "POST", "/v1/trades", json.dumps(event("CT1")).encode(),
           {"Content-Type": "Application/JSON ; charset=UTF-8"}, "Application/JSON; charset")
    # 413: a declared body over the limit is refused from its header
    c = Raw(port)
    c.send(("POST /v1/trades HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
            "Content-Length: %d\r\n%s\r\n" % (1 << 40, "".join("%s: %s\r\n" % kv for kv in auth.items())))
           .encode())
    s, rh, data = c.read_response()
    check(s == 413, "Content-Length 2^40: %d (expected 413)" % s)
    check(rh.get("connection", "").lower() == "close", "413 without Connection: close")
    check(c.wait_closed(5) is not None, "the connection stayed open after 413")
    c.close()
    ok("POST /v1/trades with Content-Length 2^40 -> 413 (body never sent), connection closed")
    # 431: header too large
    rh, _ = expect(431, "GET", "/health/live", None, {"X-Pad": "p" * 40000}, "40 kB header")
    live(port)

    # Hostile bodies that are JSON: each event gets its outcome, the server stays up.
    if light:
        return

    def outcomes(body, ctype="application/json"):
        s, rh, data = post(port, body, ctype, headers=auth)
        check(s == 200, "status %d: %r" % (s, data[:200]))
        return json.loads(data)["outcomes"]

    o = outcomes(b"[" * 100000 + b"]" * 100000)
    check(len(o) == 1 and o[0]["outcome"] == "REJECTED" and o[0]["reason"].startswith("invalid:"),
          "100k nested arrays: %r" % o)
    ok("100k nested arrays -> 200, one REJECTED invalid: outcome")
    o = outcomes(b'{"trade_id": "D1", "x": ' + b'{"a": ' * 100000 + b"1" + b"}" * 100000 + b"}")
    check(len(o) == 1 and o[0]["outcome"] == "REJECTED" and o[0]["trade_id"] == "D1", "%r" % o)
    ok("an event with 100k nested objects -> 200, REJECTED invalid:")
    o = outcomes(b'[' + json.dumps(event("N1")).encode() + b', [' + b"[" * 100000 + b"]" * 100000
                 + b'], ' + json.dumps(event("N2")).encode() + b']')
    check([x["outcome"] for x in o] == ["ACCEPTED", "REJECTED", "ACCEPTED"], "%r" % o)
    check([x["line"] for x in o] == [1, 2, 3], "array lines %r" % o)
    ok("an array with a 100k-deep element between two events -> 200, ACCEPTED/REJECTED/ACCEPTED")
    big = "x" * (10 << 20)
    o = outcomes(json.dumps([event(big), event("HUGE2")]).encode())
    check(len(o) == 2 and o[0]["outcome"] == "REJECTED" and o[0]["trade_id"] == big
          and o[1]["outcome"] == "ACCEPTED", "10 MB trade_id: %r" % ([x["outcome"] for x in o],))
    ok("a 10 MB trade_id -> 200, REJECTED (echoed), the next event ACCEPTED")
    o = outcomes(json.dumps(event("S1", acct="s" * (10 << 20))).encode())
    check(o[0]["outcome"] == "REJECTED" and o[0]["reason"].startswith("invalid:"), "%r" % o[0]["reason"])
    ok("a 10 MB account -> 200, REJECTED invalid:")
    # NDJSON: invalid UTF-8 and garbage are single REJECTED lines, blank lines get no outcome.
    nd = (json.dumps(event("U1")).encode() + b"\n\xff\xfe garbage\n \t\r\n{\"trade_id\": \"U\\ud800\"}\n"
          + json.dumps(event("U2")).encode())
    o = outcomes(nd, "application/x-ndjson")
    check([(x["line"], x["outcome"]) for x in o] ==
          [(1, "ACCEPTED"), (2, "REJECTED"), (4, "REJECTED"), (5, "ACCEPTED")], "NDJSON %r" % o)
    ok("NDJSON with invalid UTF-8, a blank line and a lone surrogate -> 200, per-line outcomes")
    o = outcomes(b"", "application/x-ndjson")
    check(o == [], "empty NDJSON: %r" % o)
    o = outcomes(b"[]")
    check(o == [], "empty array: %r" % o)
    o = outcomes(b"42")
    check(len(o) == 1 and o[0]["line"] == 1 and o[0]["outcome"] == "REJECTED", "%r" % o)
    ok("empty NDJSON and [] -> 200 with no outcomes; a JSON scalar -> one REJECTED")
    # 100,000 events in one body, across partitions: all ACCEPTED, in order, seqs per partition.
    n = 100000
    evs = [event("BIG-%d" % i, acct="BA%d" % (i % 97), book="BB", sec="BS%d" % (i % 3),
                 qty="%d" % (1 + i % 5), price="1.25") for i in range(n)]
    body = json.dumps(evs).encode()
    t0 = time.monotonic()
    o = outcomes(body)
    dt = time.monotonic() - t0
    check(len(o) == n, "100k events: %d outcomes" % len(o))
    seqs = {}
    for i, x in enumerate(o):
        check(x["line"] == i + 1 and x["trade_id"] == "BIG-%d" % i and x["outcome"] == "ACCEPTED",
              "100k events, outcome %d: %r" % (i, x))
        k = (i % 97, i % 3)
        seqs[k] = seqs.get(k, 0) + 1
        check(x["seq"] == seqs[k], "100k events: seq %r at %d, expected %d" % (x["seq"], i, seqs[k]))
    ok("100,000 events in one %d-byte body -> 200 in %.1f s, all ACCEPTED in order with "
       "gap-free seqs" % (len(body), dt))
    # ... and the same body again: all DUPLICATE (idempotent re-send).
    o = outcomes(body)
    check(all(x["outcome"] == "DUPLICATE" for x in o) and len(o) == n, "re-send: not all DUPLICATE")
    ok("the same 100,000 events again -> all DUPLICATE")
    live(port)


def check_conventions(port):
    """HTTP conventions (issue 11): HEAD, Content-Encoding, trailing slashes."""
    ctype = {"Content-Type": "application/json"}
    s, _, _ = post(port, json.dumps(event("HEAD1")).encode())
    check(s == 200, "POST of HEAD1 answered %d" % s)

    # HEAD = the GET's status and headers without a body, on one keep-alive connection: the
    # next response must start right after the HEAD's header (no body bytes in between).
    for path in ["/health/live", "/health/ready", "/v1/positions", "/v1/positions?account=HA",
                 "/v1/trades/HEAD1", "/v1/trades/NOPE", "/metrics"]:
        c = Raw(port)
        c.send(http_request_bytes("GET", path, ctype=None) +
               http_request_bytes("HEAD", path, ctype=None) +
               http_request_bytes("GET", "/health/live", ctype=None))
        gs, gh, gbody = c.read_response()
        hs, hh, hbody = c.read_response(to_head=True)
        ls, _, lbody = c.read_response()
        c.close()
        check(hs == gs, "HEAD %s: %d, GET: %d" % (path, hs, gs))
        check(hbody == b"", "HEAD %s sent a body" % path)
        check(ls == 200 and lbody == b'{"status": "live"}\n',
              "after HEAD %s the next response is garbled (%d %r): a body was sent" % (path, ls, lbody))
        check(hh.get("content-type") == gh.get("content-type"),
              "HEAD %s Content-Type %r, GET %r" % (path, hh.get("content-type"), gh.get("content-type")))
        if path != "/metrics":  # the scrape itself moves the counters
            check(hh.get("content-length") == gh.get("content-length") == str(len(gbody)),
                  "HEAD %s Content-Length %r, GET %r (%d bytes)"
                  % (path, hh.get("content-length"), gh.get("content-length"), len(gbody)))
        ok("HEAD %s -> %d, Content-Length %s, no body" % (path, hs, hh.get("content-length")))
    s, h, body = request(port, "HEAD", "/v1/trades")
    check(s == 405 and h.get("allow") == "POST" and body == b"",
          "HEAD /v1/trades: %d Allow %r body %r" % (s, h.get("allow"), body))
    for path in ["/v1/positions", "/metrics", "/health/live", "/v1/trades/HEAD1"]:
        s, h, _ = request(port, "DELETE", path)
        check(s == 405 and h.get("allow") == "GET, HEAD",
              "DELETE %s: %d Allow %r (expected 405, GET, HEAD)" % (path, s, h.get("allow")))
    ok("HEAD /v1/trades -> 405 (Allow: POST); GET resources say Allow: GET, HEAD")

    # Content-Encoding: nothing but identity is decoded; the rest is 415, never parsed.
    import gzip
    raw = json.dumps(event("GZ1")).encode()
    for enc, body in [("gzip", gzip.compress(raw)), ("deflate", raw), ("br", raw),
                      ("identity, gzip", gzip.compress(raw)), ("x-gzip", gzip.compress(raw))]:
        h = dict(ctype)
        h["Content-Encoding"] = enc
        s, rh, data = post(port, body, headers=h)
        check(s == 415, "Content-Encoding %r: %d, expected 415: %r" % (enc, s, data[:200]))
        err = json.loads(data).get("error", "")
        check("Content-Encoding" in err, "415 for %r does not name Content-Encoding: %r" % (enc, err))
        check(rh.get("accept-encoding") == "identity", "415 without Accept-Encoding: identity")
        ok("Content-Encoding: %s -> 415 (%s)" % (enc, err))
    for enc in ["identity", "IDENTITY"]:
        h = dict(ctype)
        h["Content-Encoding"] = enc
        s, _, data = post(port, raw, headers=h)
        check(s == 200 and (b'"ACCEPTED"' in data or b'"DUPLICATE"' in data),
              "Content-Encoding %r: %d %r" % (enc, s, data[:200]))
        ok("Content-Encoding: %s -> 200" % enc)
    s, _, _ = request(port, "GET", "/v1/trades/GZ1")
    check(s == 200, "GZ1 was not stored once its identity POST was accepted (%d)" % s)

    # Trailing slashes: 404 with the canonical path, never a redirect.
    for method, path, canonical in [("GET", "/v1/positions/", "/v1/positions"),
                                    ("GET", "/v1/positions/?account=HA", "/v1/positions"),
                                    ("POST", "/v1/trades/", "/v1/trades"),
                                    ("GET", "/v1/trades/HEAD1/", "/v1/trades/HEAD1"),
                                    ("GET", "/health/live/", "/health/live"),
                                    ("GET", "/health/ready//", "/health/ready"),
                                    ("HEAD", "/metrics/", "/metrics")]:
        s, h, data = request(port, method, path, b"{}" if method == "POST" else None,
                             ctype if method == "POST" else None)
        check(s == 404, "%s %s: %d, expected 404" % (method, path, s))
        check(h.get("content-type") == "application/json", "%s %s: not JSON" % (method, path))
        if method != "HEAD":
            doc = json.loads(data)
            check(doc.get("canonical_path") == canonical and canonical in doc.get("error", ""),
                  "%s %s: %r does not name %s" % (method, path, doc, canonical))
        ok("%s %s -> 404 naming %s" % (method, path, canonical))
    s, _, data = request(port, "GET", "/nowhere/")
    check(s == 404 and "canonical_path" not in json.loads(data), "GET /nowhere/: %d %r" % (s, data))
    ok("GET /nowhere/ -> 404 without a canonical path")


def check_auth(port, token):
    good = {"Authorization": "Bearer " + token}
    cases = [
        (401, "GET", "/v1/positions", {}), (401, "GET", "/metrics", {}),
        (401, "GET", "/v1/trades/T1", {}),
        (401, "POST", "/v1/trades", {"Content-Type": "application/json"}),
        (401, "GET", "/v1/positions", {"Authorization": "Bearer " + token + "x"}),
        (401, "GET", "/v1/positions", {"Authorization": "Bearer " + token[:-1]}),
        (401, "GET", "/v1/positions", {"Authorization": "Basic " + token}),
        (401, "GET", "/v1/positions", {"Authorization": token}),
        (401, "GET", "/v1/positions", {"Authorization": "Bearer"}),
        (200, "GET", "/health/live", {}), (200, "GET", "/health/ready", {}),
        (200, "GET", "/v1/positions", good), (200, "GET", "/metrics", good),
        (200, "GET", "/v1/positions", {"Authorization": "bearer  " + token}),
        (404, "GET", "/v1/trades/none", good),
    ]
    for status, method, path, h in cases:
        body = b"[]" if method == "POST" else None
        s, rh, data = request(port, method, path, body, h)
        check(s == status, "%s %s with %r: %d, expected %d" % (method, path, h, s, status))
        if s == 401:
            check(rh.get("www-authenticate", "").startswith("Bearer"), "401 without WWW-Authenticate")
    s, rh, data = post(port, json.dumps(event("AUTH1")).encode(), headers=good)
    check(s == 200 and json.loads(data)["outcomes"][0]["outcome"] == "ACCEPTED", "authorized POST: %d" % s)
    # An unauthorized POST is refused from its header: its event is not applied.
    s, rh, data = post(port, json.dumps(event("AUTH2")).encode())
    check(s == 401, "unauthorized POST: %d" % s)
    s, rh, data = request(port, "GET", "/v1/trades/AUTH2", headers=good)
    check(s == 404, "the unauthorized POST was applied: %d" % s)
    ok("--auth-token-file: %d cases (401 + WWW-Authenticate without a valid bearer token; "
       "/health/* open; the unauthorized event is not applied)" % (len(cases) + 2))


# ---- connections ------------------------------------------------------------------------------

def check_connection(port):
    # Keep-alive: several requests on one connection, the same socket throughout.
    c = http.client.HTTPConnection(HOST, port, timeout=30)
    c.connect()
    local = c.sock.getsockname()
    for i in range(5):
        c.request("POST", "/v1/trades", body=json.dumps(event("KA-%d" % i)).encode(),
                  headers={"Content-Type": "application/json"})
        r = c.getresponse()
        data = r.read()
        check(r.status == 200, "keep-alive request %d: %d" % (i, r.status))
        check((r.getheader("Connection") or "").lower() != "close", "the server closed keep-alive")
        c.request("GET", "/health/live")
        r = c.getresponse()
        r.read()
        check(r.status == 200, "keep-alive GET %d: %d" % (i, r.status))
    check(c.sock is not None and c.sock.getsockname() == local, "the connection was not kept alive")
    c.close()
    ok("keep-alive: 10 requests on one connection")

    # Pipelining: three requests written at once; the second depends on the first being done.
    r = Raw(port)
    r.send(http_request_bytes("POST", "/v1/trades", json.dumps(event("PIPE-1")).encode())
           + http_request_bytes("GET", "/v1/trades/PIPE-1", ctype=None)
           + http_request_bytes("POST", "/v1/trades", json.dumps(event("PIPE-1")).encode())
           + http_request_bytes("GET", "/nope", ctype=None)
           + http_request_bytes("GET", "/health/live", ctype=None))
    s1, _, b1 = r.read_response()
    s2, _, b2 = r.read_response()
    s3, _, b3 = r.read_response()
    s4, _, b4 = r.read_response()
    s5, h5, b5 = r.read_response()
    check(s1 == 200 and json.loads(b1)["outcomes"][0]["outcome"] == "ACCEPTED", "pipelined 1: %r" % b1)
    check(s2 == 200 and json.loads(b2)["trade_id"] == "PIPE-1", "pipelined 2: %d %r" % (s2, b2))
    check(s3 == 200 and json.loads(b3)["outcomes"][0]["outcome"] == "DUPLICATE", "pipelined 3: %r" % b3)
    check(s4 == 404, "pipelined 4: %d" % s4)
    check(s5 == 200 and b"live" in b5, "pipelined 5: %d %r" % (s5, b5))
    ok("pipelining: 5 requests written back to back are answered in order on one connection")
    # Connection: close is honoured.
    r.send(http_request_bytes("GET", "/health/live", ctype=None, extra="Connection: close\r\n"))
    s, h, _ = r.read_response()
    check(s == 200 and h.get("connection", "").lower() == "close", "Connection: close: %r" % h)
    check(r.wait_closed(5) is not None, "the server kept the connection after Connection: close")
    r.close()
    ok("Connection: close -> answered, then closed")

    # Expect: 100-continue: an interim 100, then the answer; a refused header gets no 100.
    body = json.dumps(event("EXP-1")).encode()
    r = Raw(port)
    r.send(("POST /v1/trades HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
            "Content-Length: %d\r\nExpect: 100-continue\r\n\r\n" % len(body)).encode())
    s, _, _ = r.read_response()
    check(s == 100, "Expect: 100-continue answered %d first" % s)
    r.send(body)
    s, _, b = r.read_response()
    check(s == 200 and json.loads(b)["outcomes"][0]["outcome"] == "ACCEPTED", "after 100: %d %r" % (s, b))
    r.send(("POST /v1/trades HTTP/1.1\r\nHost: t\r\nContent-Type: text/plain\r\n"
            "Content-Length: %d\r\nExpect: 100-continue\r\n\r\n" % len(body)).encode())
    s, _, _ = r.read_response()
    check(s == 415, "Expect: 100-continue with a wrong type answered %d" % s)
    r.close()
    ok("Expect: 100-continue -> 100 then 200; with a wrong content type -> 415 at once")

    # Chunked transfer encoding.
    c = http.client.HTTPConnection(HOST, port, timeout=30)
    lines = [json.dumps(event("CH-%d" % i)).encode() + b"\n" for i in range(50)]
    c.request("POST", "/v1/trades", body=iter(lines), encode_chunked=True,
              headers={"Content-Type": "application/x-ndjson", "Transfer-Encoding": "chunked"})
    r = c.getresponse()
    data = r.read()
    check(r.status == 200, "chunked: %d %r" % (r.status, data[:200]))
    o = json.loads(data)["outcomes"]
    check([x["line"] for x in o] == list(range(1, 51)) and all(x["outcome"] == "ACCEPTED" for x in o),
          "chunked outcomes %r" % o[:3])
    c.close()
    ok("a chunked NDJSON body of 50 events -> 200")

    # Malformed HTTP -> 400 and close.
    r = Raw(port)
    r.send(b"THIS IS NOT HTTP\r\n\r\n")
    s, h, _ = r.read_response()
    check(s == 400, "garbage request line: %d" % s)
    check(r.wait_closed(5) is not None, "connection open after a malformed request")
    r.close()
    ok("a malformed request line -> 400, connection closed")


def check_timeouts(port, read_ms, idle_ms, max_conns, max_body):
    read_s, idle_s = read_ms / 1000.0, idle_ms / 1000.0
    # A slow client: half a request, then nothing. It is cut off after the read timeout; other
    # clients are served meanwhile.
    slow = Raw(port)
    slow.send(b"POST /v1/trades HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
              b"Content-Length: 1000\r\n\r\n[{\"trade_id\": \"SLOW")
    slow_header = Raw(port)
    slow_header.send(b"GET /health/live HTTP/1.1\r\nHost: t\r\nX-Slow: ")
    t0 = time.monotonic()
    for i in range(5):
        s, _, data = post(port, json.dumps(event("FAST-%d" % i)).encode(), timeout=read_s / 2)
        check(s == 200, "a fast client was not served while a slow one stalls: %d" % s)
    fast = time.monotonic() - t0
    check(fast < read_s, "fast clients took %.2f s next to the slow ones" % fast)
    for name, c in [("half a body", slow), ("half a header", slow_header)]:
        closed = c.wait_closed(read_s + 5)
        check(closed is not None, "the slow client (%s) was not cut off" % name)
        total = time.monotonic() - t0
        check(total >= read_s * 0.8, "the slow client (%s) was cut off after %.2f s, before the "
              "read timeout" % (name, total))
        c.close()
    ok("slow clients (half a body, half a header) cut off after ~%.1f s (read timeout %.1f s); "
       "5 other requests served in %.2f s meanwhile" % (time.monotonic() - t0, read_s, fast))
    # The slow request was never applied.
    s, _, _ = request(port, "GET", "/v1/trades/SLOW")
    check(s == 404, "GET /v1/trades/SLOW: %d" % s)

    # Idle keep-alive connection: closed after the idle timeout.
    c = Raw(port)
    c.send(http_request_bytes("GET", "/health/live", ctype=None))
    s, _, _ = c.read_response()
    check(s == 200, "idle test: %d" % s)
    t0 = time.monotonic()
    closed = c.wait_closed(idle_s + 5)
    check(closed is not None and closed >= idle_s * 0.8,
          "idle connection closed after %r s (idle timeout %.1f s)" % (closed, idle_s))
    c.close()
    ok("an idle keep-alive connection is closed after %.2f s (idle timeout %.1f s)" % (closed, idle_s))

    # Connection limit: max_conns open connections, the next one gets 503 and is closed; once
    # one closes, a new connection is served.
    # Connections of the checks above may still be counted for a moment after they closed (the
    # server notices a close asynchronously): a 503 while filling up is retried for a while.
    held = []
    for i in range(max_conns):
        t0 = time.monotonic()
        while True:
            c = Raw(port)
            c.send(http_request_bytes("GET", "/health/live", ctype=None))
            s, _, _ = c.read_response()
            if s != 503 or time.monotonic() - t0 > 5:
                break
            c.close()
            time.sleep(0.05)
        check(s == 200, "connection %d: %d" % (i, s))
        held.append(c)
    extra = Raw(port)
    extra.send(http_request_bytes("GET", "/health/live", ctype=None))
    s, h, data = extra.read_response()
    check(s == 503 and h.get("retry-after"), "connection %d over --max-connections: %d %r" % (max_conns + 1, s, h))
    check(extra.wait_closed(5) is not None, "the refused connection was not closed")
    extra.close()
    held.pop().close()
    t0 = time.monotonic()
    while True:  # the server notices the close shortly
        s, _, _ = request(port, "GET", "/health/live")
        if s != 503 or time.monotonic() - t0 > 5:
            break
        time.sleep(0.05)
    check(s == 200, "after a connection closed: %d" % s)
    for c in held:
        c.close()
    # Let the server notice those closes before the next checks open connections of their own.
    t0 = time.monotonic()
    while time.monotonic() - t0 < 5:
        s, _, data = request(port, "GET", "/metrics")
        active = [l for l in data.decode("utf-8", "replace").splitlines()
                  if l.startswith("tradecapture_http_connections_active ")] if s == 200 else []
        if active and float(active[0].split()[1]) <= 1:
            break
        time.sleep(0.05)
    ok("--max-connections %d: one more connection -> 503 + Retry-After and closed; served again "
       "once one closes" % max_conns)

    # A chunked body over the limit (no Content-Length to refuse it early) -> 413.
    c = Raw(port)
    c.send(b"POST /v1/trades HTTP/1.1\r\nHost: t\r\nContent-Type: application/x-ndjson\r\n"
           b"Transfer-Encoding: chunked\r\n\r\n")
    chunk = b"x" * 65536
    sent = 0
    status = None
    try:
        while sent <= 2 * max_body:
            c.send(b"%x\r\n" % len(chunk) + chunk + b"\r\n")
            sent += len(chunk)
            r, _, _ = select.select([c.s], [], [], 0)
            if r:
                break
        status, h, _ = c.read_response()
    except (BrokenPipeError, ConnectionResetError, EOFError):
        pass
    check(status == 413, "a chunked body of %d bytes over --max-body-bytes %d: %r"
          % (sent, max_body, status))
    c.close()
    ok("a chunked body over --max-body-bytes -> 413")


def check_overload(port):
    """--max-in-flight 1: a small request that arrives while a big one is in flight is refused
    whole with 503 + Retry-After; once the big one is answered, the same request succeeds."""
    for attempt in range(4):
        n = 20000 * (attempt + 1)
        evs = [event("OV%d-%d" % (attempt, i), acct="OA%d" % (i % 50)) for i in range(n)]
        result = {}

        def big():
            result["r"] = post(port, json.dumps(evs).encode(), timeout=300)

        t = threading.Thread(target=big)
        t.start()
        seen = False
        while t.is_alive():
            s, _, m = request(port, "GET", "/metrics")
            line = [l for l in m.decode().splitlines() if l.startswith("tradecapture_gateway_admitted_events ")]
            if line and int(line[0].split()[1]) > 0:
                seen = True
                break
            time.sleep(0.002)
        if not seen:
            t.join()
            continue
        small = json.dumps([event("OVS-%d" % attempt, acct="OS"), event("OVS2-%d" % attempt, acct="OS")]).encode()
        s, h, data = post(port, small)
        t.join()
        s_big, _, d_big = result["r"]
        check(s_big == 200, "the big request: %d" % s_big)
        o = json.loads(d_big)["outcomes"]
        check(len(o) == n and all(x["outcome"] == "ACCEPTED" for x in o), "the big request's outcomes")
        if s == 200:
            continue  # the big one finished in between: try again, bigger
        check(s == 503, "the small request while the big one is in flight: %d %r" % (s, data))
        check(h.get("retry-after", "").isdigit(), "503 without Retry-After")
        check("overload" in json.loads(data)["error"], "503 reason: %r" % data)
        # Refused whole: none of its events was applied.
        for tid in ("OVS-%d" % attempt, "OVS2-%d" % attempt):
            s2, _, _ = request(port, "GET", "/v1/trades/" + tid)
            check(s2 == 404, "an event of the refused request was applied: %s" % tid)
        s, h, data = post(port, small)
        check(s == 200 and [x["outcome"] for x in json.loads(data)["outcomes"]] == ["ACCEPTED"] * 2,
              "re-sent after the 503: %d %r" % (s, data))
        ok("--max-in-flight 1: a request arriving while %d events are in flight -> 503 + "
           "Retry-After, nothing applied; re-sent afterwards -> 200" % n)
        return
    fail("could not catch the big request in flight in 4 attempts")


# ---- draining -----------------------------------------------------------------------------------

def admitted_events(port):
    _, _, m = request(port, "GET", "/metrics")
    for l in m.decode().splitlines():
        if l.startswith("tradecapture_gateway_admitted_events "):
            return int(l.split()[1])
    fail("/metrics has no tradecapture_gateway_admitted_events")


def drain_race(port, pid, mode, out):
    """A big POST racing SIGTERM. MODE 'after-body': SIGTERM right after the whole body was sent;
    'mid-body': SIGTERM while the body is half sent (then the rest); 'in-flight': SIGTERM once the
    request's events are in the pipeline. The request gets a complete 200 (every outcome; always
    in 'in-flight') or a clean 503, with Connection: close. A request that completes after SIGTERM
    on a connection that was mid-header gets 503 + Connection: close; new connections are
    refused. Writes the (trade_id, version) of every ACCEPTED outcome to OUT."""
    n = 30000 if mode != "in-flight" else 5000
    c = Raw(port, timeout=120)
    c.send(http_request_bytes("GET", "/health/live", ctype=None))  # the connection is accepted
    check(c.read_response()[0] == 200, "live")
    other = Raw(port)
    other.send(http_request_bytes("GET", "/health/live", ctype=None))
    check(other.read_response()[0] == 200, "live")

    def big(tag, n):
        evs = [event("DR-%s-%s-%d" % (mode, tag, i), acct="DA%d" % (i % 20)) for i in range(n)]
        body = json.dumps(evs).encode()
        head = ("POST /v1/trades HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
                "Content-Length: %d\r\n\r\n" % len(body)).encode()
        return head, body

    def outcomes_of_200(data, n):
        o = json.loads(data)["outcomes"]
        check(len(o) == n, "%d outcomes for %d events" % (len(o), n))
        check(all(x["outcome"] == "ACCEPTED" for x in o), "not all ACCEPTED")
        return [(x["trade_id"], x["version"]) for x in o]

    accepted = []
    # Half a request on the other connection: it is being read when SIGTERM comes.
    other.send(b"GET /health/ready HTTP/1.1\r\nHost: t\r\n")
    time.sleep(0.3)
    if mode == "after-body":
        head, body = big("0", n)
        c.send(head + body)
        os.kill(pid, signal.SIGTERM)
    elif mode == "mid-body":
        head, body = big("0", n)
        c.send(head + body[:len(body) // 2])
        time.sleep(0.3)
        os.kill(pid, signal.SIGTERM)
        time.sleep(0.3)
        c.send(body[len(body) // 2:])
    else:
        for attempt in range(6):
            head, body = big(str(attempt), n)
            c.send(head + body)
            seen = False
            while not select.select([c.s], [], [], 0)[0]:
                if admitted_events(port) > 0:
                    seen = True
                    break
                time.sleep(0.002)
            if seen:
                break
            s, h, data = c.read_response()  # done before we saw it in flight: bigger, again
            check(s == 200, "in-flight attempt %d: %d" % (attempt, s))
            accepted += outcomes_of_200(data, n)
            n *= 2
        else:
            fail("could not catch the request in flight in 6 attempts")
        os.kill(pid, signal.SIGTERM)
    time.sleep(0.3)
    # New connections are refused while the server drains (the other two keep it busy).
    try:
        x = socket.create_connection((HOST, port), timeout=5)
        x.close()
        fail("a new connection was accepted after SIGTERM")
    except ConnectionRefusedError:
        pass
    other.send(b"\r\n")
    s, h, data = other.read_response()
    check(s == 503 and h.get("connection", "").lower() == "close",
          "a request completed after SIGTERM: %d %r %r" % (s, h, data))
    other.close()
    s, h, data = c.read_response()
    if s == 200:
        accepted += outcomes_of_200(data, n)
    else:
        check(mode != "in-flight", "a request in flight at SIGTERM got %d %r" % (s, data[:200]))
        check(s == 503 and h.get("retry-after"), "the racing request: %d %r" % (s, data[:200]))
    check(h.get("connection", "").lower() == "close", "no Connection: close while draining")
    check(c.wait_closed(10) is not None, "the connection stayed open while draining")
    c.close()
    write_lines(out, ["%s %d" % a for a in accepted])
    ok("SIGTERM %s: the %d-event request got %d%s; a request finished after SIGTERM got 503; "
       "new connections refused" % (mode, n, s, " with every outcome" if s == 200 else ""))


# ---- load and scrape (prometheus.sh) ------------------------------------------------------------

def post_load(port, n, seconds):
    for i in range(n):
        evs = [event("PL-%d-%d-%d" % (os.getpid(), i, j), acct="PA%d" % j) for j in range(20)]
        s, _, data = post(port, json.dumps(evs).encode())
        check(s == 200, "load POST: %d %r" % (s, data[:200]))
        time.sleep(seconds / n)
    ok("posted %d requests of 20 events over %.1f s" % (n, seconds))


def scrape(port, out):
    s, h, data = request(port, "GET", "/metrics")
    check(s == 200, "GET /metrics: %d" % s)
    check(h.get("content-type", "").startswith("text/plain; version=0.0.4"),
          "/metrics content type %r" % h.get("content-type"))
    with open(out, "wb") as f:
        f.write(data)


def prom_query(port, query, limit):
    """Polls a Prometheus server's HTTP API until QUERY gives a positive value (or fails)."""
    import urllib.request
    url = "http://%s:%d/api/v1/query?%s" % (HOST, port, urllib.parse.urlencode({"query": query}))
    t0 = time.monotonic()
    last = None
    while time.monotonic() - t0 < limit:
        try:
            with urllib.request.urlopen(url, timeout=5) as r:
                doc = json.loads(r.read())
            last = doc
            if doc.get("status") == "success":
                for res in doc["data"]["result"]:
                    v = float(res["value"][1])
                    if v > 0:
                        ok("Prometheus: %s = %g (after %.1f s)" % (query, v, time.monotonic() - t0))
                        return
        except OSError as e:
            last = repr(e)
        time.sleep(0.5)
    fail("Prometheus never answered %s with a positive value within %d s; last answer: %r"
         % (query, limit, last))


def kafka_fail_drain(port, pid, mock_commands, log):
    """The Kafka source of `serve` (PID, log file LOG) fails while a request is half sent: the
    broker answers the member's heartbeats FENCED_INSTANCE_ID (a fatal error for a static member),
    pushed through the mock cluster's command FIFO MOCK_COMMANDS. The gateway then drains; a
    SIGTERM during that drain is the operator's first signal and must not close the connections
    the way a second one does: the request, finished after it, gets a complete answer (200 with
    every outcome, or a clean 503 with Retry-After), then Connection: close."""
    n = 50
    evs = [event("KF-%d" % i, acct="KA%d" % (i % 5)) for i in range(n)]
    body = json.dumps(evs).encode()
    head = ("POST /v1/trades HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
            "Content-Length: %d\r\n\r\n" % len(body)).encode()
    c = Raw(port, timeout=60)
    c.send(head + body[:len(body) // 2])
    time.sleep(0.3)
    with open(mock_commands, "w") as f:
        f.write("errors 12 20 82\n")  # Heartbeat, 20 times, FENCED_INSTANCE_ID
    deadline = time.monotonic() + 30
    while "the Kafka source failed" not in open(log, encoding="utf-8", errors="replace").read():
        check(time.monotonic() < deadline, "the Kafka source did not fail within 30 s")
        time.sleep(0.05)
    os.kill(pid, signal.SIGTERM)
    time.sleep(0.5)
    c.send(body[len(body) // 2:])
    try:
        s, h, data = c.read_response()
    except (EOFError, ConnectionError) as e:
        fail("the request being read when the Kafka source failed lost its answer at SIGTERM "
             "(%s): the signal was taken for a second one" % e)
    if s == 200:
        o = json.loads(data)["outcomes"]
        check(len(o) == n and all(x["outcome"] == "ACCEPTED" for x in o),
              "the request's outcomes: %r" % data[:300])
    else:
        check(s == 503 and h.get("retry-after"), "the request: %d %r" % (s, data[:200]))
    check(h.get("connection", "").lower() == "close", "no Connection: close while draining")
    c.close()
    ok("the Kafka source failed mid-request; SIGTERM then drained: the request got %d" % s)


def main(argv):
    cmd, args = argv[0], argv[1:]
    if cmd in ("post-array", "post-ndjson", "post-singles"):
        {"post-array": post_array, "post-ndjson": post_ndjson,
         "post-singles": post_singles}[cmd](int(args[0]), args[1], args[2])
    elif cmd == "expect-bodies":
        expect_bodies(args[0], args[1], args[2])
    elif cmd == "positions":
        positions(int(args[0]), args[1], args[2] if len(args) > 2 else None)
    elif cmd == "check-position-filters":
        check_position_filters(int(args[0]), args[1])
    elif cmd == "check-trades-by-id":
        check_trades_by_id(int(args[0]), args[1])
    elif cmd == "check-status":
        check_status(int(args[0]), args[1], len(args) > 2 and args[2] == "light")
    elif cmd == "check-auth":
        check_auth(int(args[0]), args[1])
    elif cmd == "check-connection":
        check_connection(int(args[0]))
    elif cmd == "check-timeouts":
        check_timeouts(int(args[0]), int(args[1]), int(args[2]), int(args[3]), int(args[4]))
    elif cmd == "check-conventions":
        check_conventions(int(args[0]))
    elif cmd == "check-overload":
        check_overload(int(args[0]))
    elif cmd == "drain-race":
        drain_race(int(args[0]), int(args[1]), args[2], args[3])
    elif cmd == "kafka-fail-drain":
        kafka_fail_drain(int(args[0]), int(args[1]), args[2], args[3])
    elif cmd == "post-load":
        post_load(int(args[0]), int(args[1]), float(args[2]))
    elif cmd == "prom-query":
        prom_query(int(args[0]), args[1], int(args[2]))
    elif cmd == "scrape":
        scrape(int(args[0]), args[1])
    else:
        fail("unknown command %r" % cmd)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
