#!/usr/bin/env python3
"""A rate-limited origin for bench/stampede.sh: every GET gets the same object, sent at
RATE bytes/s per connection (user space: other processes on the machine are unaffected,
unlike tc on loopback). GET /count/PATH answers how many requests for PATH it has served
(GET /count: all of them).

usage: slow_origin.py PORT SIZE RATE
"""
import asyncio
import sys

PORT, SIZE, RATE = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
BODY = bytes((i * 31) % 251 for i in range(SIZE))
CHUNK = 32 * 1024
count = 0
by_path = {}


async def handle(reader, writer):
    global count
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            path = head.split(b" ", 2)[1].decode()
            if path == "/count" or path.startswith("/count/"):
                want = path[len("/count"):]
                body = str(count if not want else by_path.get(want, 0)).encode()
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\ncache-control: no-store\r\n\r\n" % len(body) + body)
                await writer.drain()
                continue
            count += 1
            by_path[path] = by_path.get(path, 0) + 1
            writer.write(
                b"HTTP/1.1 200 OK\r\ncontent-type: video/mp4\r\ncontent-length: %d\r\n"
                b"cache-control: public, max-age=31536000, immutable\r\netag: \"v1\"\r\n\r\n" % SIZE
            )
            for off in range(0, SIZE, CHUNK):
                writer.write(BODY[off : off + CHUNK])
                await writer.drain()
                await asyncio.sleep(CHUNK / RATE)
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


async def main():
    server = await asyncio.start_server(handle, "127.0.0.1", PORT)
    async with server:
        await server.serve_forever()


asyncio.run(main())
