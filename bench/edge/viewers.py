#!/usr/bin/env python3
"""100 viewers (or N) requesting one URL at the same instant; prints p50/p99 time to
first byte and to last byte in ms, and how many completed. With ABORT_MS > 0 the first
viewer starts alone and hangs up after that many ms of receiving; the rest start 10 ms
after it.

usage: viewers.py HOST PORT PATH N ABORT_MS
"""
import asyncio
import sys
import time

HOST, PORT, PATH, N, ABORT_MS = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4]), int(sys.argv[5])


async def viewer(abort_after=None):
    t0 = time.perf_counter()
    reader, writer = await asyncio.open_connection(HOST, PORT)
    writer.write(f"GET {PATH} HTTP/1.1\r\nhost: bench\r\nconnection: close\r\n\r\n".encode())
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    ttfb = None
    length = None
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":")[1])
    got = 0
    buffered = len(head)
    while True:
        if abort_after is not None and time.perf_counter() - t0 > abort_after:
            writer.transport.abort()
            return None
        chunk = await reader.read(65536)
        if not chunk:
            break
        if ttfb is None:
            ttfb = time.perf_counter() - t0
        got += len(chunk)
        if length is not None and got >= length:
            break
    ttlb = time.perf_counter() - t0
    writer.close()
    if length is not None and got != length:
        return ("short", ttfb, ttlb)
    return ("ok", ttfb if ttfb is not None else ttlb, ttlb)


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))] * 1000


async def main():
    tasks = []
    if ABORT_MS > 0:
        tasks.append(asyncio.create_task(viewer(abort_after=ABORT_MS / 1000)))
        await asyncio.sleep(0.01)
        n = N - 1
    else:
        n = N
    results = await asyncio.gather(*[viewer() for _ in range(n)], *tasks, return_exceptions=True)
    ok = [r for r in results if isinstance(r, tuple) and r[0] == "ok"]
    bad = len(results) - len(ok) - (1 if ABORT_MS > 0 else 0)
    ttfb = [r[1] for r in ok]
    ttlb = [r[2] for r in ok]
    if not ok:
        print("0 completed")
        return
    print(f"{len(ok)} {bad} {pct(ttfb, 50):.1f} {pct(ttfb, 99):.1f} {pct(ttlb, 50):.1f} {pct(ttlb, 99):.1f}")


asyncio.run(main())
