#!/usr/bin/env python3
"""delayd: a user-space WAN delay line on a TUN device (the idea of Mahimahi's mm-delay).

This machine's kernel has no `netem` qdisc, so the multi-region simulation gets its
inter-region latency here instead: the router namespace routes every forwarded packet into
a TUN device (policy routing), delayd reads it, holds it for the one-way delay of its
(source region, destination region) pair and writes it back into the same TUN device, where
the kernel routes it on to its destination (`ip rule iif <tun> lookup main`).

Packets of one pair keep their order: each distinct delay has its own FIFO, and since every
packet in a FIFO waits the same time, release times in it are monotonic.

Config (JSON): {"tun": "dly0", "regions": {"10.77.1.0/24": "eu-west", ...},
                "delay_ms": {"eu-west>us-west": 70, ...}, "default_ms": 2}
A pair missing from delay_ms (both directions are tried) gets default_ms.
Runs until SIGTERM/SIGINT; exits non-zero with a clear message when the TUN cannot be opened.
"""
import collections
import fcntl
import ipaddress
import json
import os
import select
import signal
import struct
import sys
import time

TUNSETIFF = 0x400454CA
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000


def open_tun(name):
    try:
        fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK)
    except OSError as e:
        sys.exit(f"delayd: cannot open /dev/net/tun ({e}); run as root with the tun module loaded")
    fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", name.encode(), IFF_TUN | IFF_NO_PI))
    return fd


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: delayd.py CONFIG.json")
    with open(sys.argv[1]) as f:
        cfg = json.load(f)
    nets = [(ipaddress.ip_network(n), r) for n, r in cfg["regions"].items()]
    default = float(cfg.get("default_ms", 0)) / 1000.0
    pairs = {}
    for k, v in cfg.get("delay_ms", {}).items():
        a, b = k.split(">")
        pairs[(a, b)] = float(v) / 1000.0
        pairs.setdefault((b, a), float(v) / 1000.0)

    def region(addr):
        ip = ipaddress.IPv4Address(addr)
        for net, r in nets:
            if ip in net:
                return r
        return None

    cache = {}

    def delay_of(src, dst):
        key = (src, dst)
        d = cache.get(key)
        if d is None:
            a, b = region(src), region(dst)
            d = pairs.get((a, b), default) if a and b else default
            cache[key] = d
        return d

    fd = open_tun(cfg["tun"])
    queues = collections.defaultdict(collections.deque)  # delay -> deque[(release, packet)]
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    signal.signal(signal.SIGINT, lambda *_: stop.append(1))
    forwarded = 0
    print(f"delayd: {cfg['tun']} up, {len(pairs)} delayed pairs, default {default*1000:.0f} ms",
          flush=True)
    while not stop:
        now = time.monotonic()
        # Release everything that is due.
        for q in queues.values():
            while q and q[0][0] <= now:
                try:
                    os.write(fd, q.popleft()[1])
                    forwarded += 1
                except BlockingIOError:
                    break
                except OSError:
                    pass  # a packet the kernel refuses (e.g. no route) is dropped, as a router would
        heads = [q[0][0] for q in queues.values() if q]
        timeout = max(0.0, min(heads) - time.monotonic()) if heads else 0.5
        try:
            ready, _, _ = select.select([fd], [], [], timeout)
        except InterruptedError:
            continue
        if not ready:
            continue
        now = time.monotonic()
        while True:
            try:
                pkt = os.read(fd, 65536)
            except BlockingIOError:
                break
            if len(pkt) >= 20 and pkt[0] >> 4 == 4:
                d = delay_of(pkt[12:16], pkt[16:20])
            else:
                d = default
            queues[d].append((now + d, pkt))
    print(f"delayd: stopped after {forwarded} packets", flush=True)


if __name__ == "__main__":
    main()
