#!/usr/bin/env python3
"""gen-events.py N [SEED]: N deterministic, valid weft-etl events as JSON lines on stdout.

Every event follows shared/specs/etl.md ("Event"): a unique event_id, an RFC 3339 ts, one of
2,000 user_ids, an IPv4 or (one in four) IPv6 address from a pool of 5,000, an amount and
one of 12 currencies. The same N and SEED always give the same bytes, so weft-etl and the Go
peer enrich exactly the same requests in scripts/bench-etl.sh. No user_id or ip ends in
"404", so every enrichment answers 200 and every row is `complete`.
"""
import json
import random
import sys

CURRENCIES = ["USD", "EUR", "GBP", "JPY", "CHF", "CAD", "AUD", "SEK", "NOK", "BRL", "INR", "CNY"]


def ip_pool(rng, n):
    pool = []
    for i in range(n):
        if i % 4 == 3:
            pool.append("2001:db8:%x:%x::%x" % (rng.randrange(1 << 16), rng.randrange(1 << 16),
                                                rng.randrange(1, 1 << 16)))
        else:
            pool.append("%d.%d.%d.%d" % (rng.randrange(1, 224), rng.randrange(256),
                                         rng.randrange(256), rng.randrange(1, 255)))
    return [ip for ip in pool if not ip.endswith("404")]


def main():
    if len(sys.argv) not in (2, 3):
        sys.exit("usage: gen-events.py N [SEED]")
    n = int(sys.argv[1])
    rng = random.Random(int(sys.argv[2]) if len(sys.argv) == 3 else 1)
    ips = ip_pool(rng, 5000)
    out = sys.stdout
    for i in range(n):
        ev = {
            "event_id": "ev-%08d" % i,
            "ts": "2026-11-%02dT%02d:%02d:%02dZ" % (1 + i % 28, i % 24, i % 60, (i * 7) % 60),
            "user_id": "u%d" % rng.randrange(1, 2001),
            "ip": rng.choice(ips),
            "amount_cents": rng.randrange(1, 1_000_000),
            "currency": rng.choice(CURRENCIES),
        }
        if ev["user_id"].endswith("404"):
            ev["user_id"] += "x"
        out.write(json.dumps(ev, separators=(",", ":")) + "\n")


if __name__ == "__main__":
    main()
