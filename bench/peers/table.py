#!/usr/bin/env python3
"""Puts the driver's RESULT lines side by side (make bench-peers): one table, then comet's
figures as ratios to the best peer, against the targets of issue 9."""
import sys

SYSTEMS = ["comet", "comet-socket", "comet-ring", "zeromq", "redis", "nats", "dbus", "raw"]
TITLES = {"comet": "comet (libcomet, mapped readers)", "comet-socket": "comet (libcomet, socket readers)",
          "comet-ring": "comet (libcomet, mapped readers, ring of 65536)", "zeromq": "ZeroMQ XPUB_NODROP", "redis": "Redis pub/sub (unix)",
          "nats": "NATS core", "dbus": "dbus-broker signals", "raw": "raw AF_UNIX relay"}
PEERS = ["zeromq", "redis", "nats", "dbus"]


def parse(path):
    results, header = {}, []
    for line in open(path):
        words = line.split()
        if not words:
            continue
        if words[0] in ("MACHINE", "VERSIONS"):
            header.append(line.strip())
        if words[0] != "RESULT" or len(words) < 3:
            continue
        system, workload = words[1], words[2]
        fields = dict(w.split("=", 1) for w in words[3:] if "=" in w)
        results.setdefault(system, {})[workload] = fields
    return header, results


def millions(v):
    return f"{float(v) / 1e6:.2f} M"


def cell(results, system, workload):
    r = results.get(system, {}).get(workload)
    if r is None:
        return "—"
    if workload.startswith("W1") or workload.startswith("W2"):
        text = millions(r["rate"])
        lost, ended = int(r.get("lost", 0)), int(r.get("ended", 0))
        if lost or ended:
            text += f" ({lost} lost, {ended} ended)"
        return text
    if workload == "W3":
        return f"{r['p50']} / {r['p99']} / {r['p999']}"
    if workload == "W4":
        return "—" if "bytes" not in r else f"{float(r['bytes']) / 1024:.1f} KiB"
    if workload == "probe":
        got = int(r["stalled_got"])
        how = "then ended (FULL/disconnected)" if r["stalled_ended"] == "1" else "stayed subscribed"
        others_lost = int(r.get("lost", 0)) - (500000 - got)
        return (f"stalled reader got {got:,} of 500,000, {how}; publisher's longest wait {r['max_publish_ms']} ms; "
                f"the 2 others got {'everything' if others_lost == 0 else f'all but {others_lost:,}'} "
                f"at {float(r['others_rate']) / 1e6:.2f} M msgs/s each")
    return "?"


def value(results, system, workload, key):
    r = results.get(system, {}).get(workload)
    return float(r[key]) if r and key in r else None


def main():
    header, results = parse(sys.argv[1])
    for line in header:
        print(line)
    rows = [("W1 1 → 1, msgs/s", "W1"), ("W2 1 → 10, delivered msgs/s", "W2x10"),
            ("W2 1 → 100, delivered msgs/s", "W2x100"), ("W3 latency at 10 k msgs/s, p50 / p99 / p99.9 µs", "W3"),
            ("W4 server RSS per idle subscriber", "W4")]
    shown = [s for s in SYSTEMS if s in results]
    print()
    print("| workload | " + " | ".join(TITLES[s] for s in shown) + " |")
    print("|---|" + "---|" * len(shown))
    for title, key in rows:
        print(f"| {title} | " + " | ".join(cell(results, s, key) for s in shown) + " |")
    print()
    print("Slow subscriber (one of 3 stalls 3 s while 500,000 are sent):")
    for s in shown:
        print(f"  {TITLES[s]}: {cell(results, s, 'probe')}")
    print()
    print("comet against the best peer (targets of issue 9):")

    def best(workload, key, lowest=False):
        values = [(value(results, p, workload, key), p) for p in PEERS if value(results, p, workload, key)]
        if not values:
            return None, None
        return (min if lowest else max)(values)

    checks = []
    for workload, label, target in (("W1", "W1 1 → 1", 1.0), ("W2x10", "W2 1 → 10", 1.0), ("W2x100", "W2 1 → 100", 2.0)):
        mine = value(results, "comet", workload, "rate")
        peer, who = best(workload, "rate")
        if mine and peer:
            ratio = mine / peer
            checks.append((f"{label}: {ratio:.2f} × {TITLES[who]} (target ≥ {target:g} ×)", ratio >= target))
    mine = value(results, "comet", "W3", "p99")
    peer, who = best("W3", "p99", lowest=True)
    if mine and peer:
        checks.append((f"W3 p99: {mine:.0f} µs vs best peer {peer:.0f} µs ({TITLES[who]}) (target: below every peer)", mine < peer))
    mine, raw = value(results, "comet", "W3", "p50"), value(results, "raw", "W3", "p50")
    if mine and raw:
        checks.append((f"W3 p50: {mine / raw:.2f} × the raw relay (target ≤ 2 ×)", mine <= 2 * raw))
    full = sum(int(results.get("comet", {}).get(w, {}).get("ended", 0)) + int(results.get("comet", {}).get(w, {}).get("lost", 0))
               for w in ("W1", "W2x10", "W2x100"))
    checks.append((f"FULL or lost in comet's throughput runs (default ring): {full} (target 0)", full == 0))
    mine = value(results, "comet", "W4", "bytes")
    peer, who = best("W4", "bytes", lowest=True)
    if mine:
        text = f"W4: {mine / 1024:.1f} KiB per idle subscriber connection (aim ≤ 2 KiB)"
        if peer:
            text += f"; best peer {peer / 1024:.1f} KiB ({TITLES[who]})"
        checks.append((text, mine <= 2048))
    for text, ok in checks:
        print(f"  {'✓' if ok else '✗'} {text}")
    socket = results.get("comet-socket")
    if socket:
        print()
        print("comet's mapped readers against its socket readers, same run (aims of issue 21):")
        for system in ("comet", "comet-ring"):
            for workload, label in (("W1", "W1 1 → 1"), ("W2x100", "W2 1 → 100")):
                mine, base = value(results, system, workload, "rate"), value(results, "comet-socket", workload, "rate")
                if mine and base:
                    ratio = mine / base
                    print(f"  {'✓' if ratio >= 3 else '✗'} {TITLES[system]}, {label}: {ratio:.2f} × socket readers (aim ≥ 3 ×)")
            mine, raw = value(results, system, "W3", "p50"), value(results, "raw", "W3", "p50")
            if mine and raw:
                print(f"  {'✓' if mine < raw else '✗'} {TITLES[system]}, W3 p50: {mine:.1f} µs vs the raw relay's {raw:.1f} µs (aim: below)")


if __name__ == "__main__":
    main()
