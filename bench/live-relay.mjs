#!/usr/bin/env node
// The peer's HTTP server in bench/live.sh's latency run, written for that benchmark only.
//
//   node bench/live-relay.mjs PORT FALLBACK_URL
//
// ffmpeg's dash muxer (`-f dash -ldash 1 -streaming 1 -method PUT`) uploads its MPD, init
// segments and media segments to this server, each segment as one chunked PUT that grows
// while the encoder produces it. Viewers GET the same paths:
// - a finished file: 200 with Content-Length;
// - a file still being uploaded: 200 at once, then each uploaded piece as it arrives, with
//   chunked transfer encoding, until the upload ends (low-latency delivery);
// - a media segment not started yet: held up to 2.5 s (one segment + one chunk) for its
//   upload to begin, as dashcdn's origin holds the next segment; else 404 no-store;
// - any other path (the watch page, dash.js, /time, /vod/): proxied to FALLBACK_URL (a
//   dashcdn origin with no channels), so both runs use the same page and timing source.
// Finished segments are kept for 60 s, MPDs are served with max-age=1 like ours.
//
// Why not a stock server: nginx (even with the dav module) and Apache write a PUT to a
// temporary file and show it only once complete, and serve a growing file at the size it
// had when the request came, so neither streams a segment in progress chunk by chunk;
// what ffmpeg's LL-DASH output needs is an ingest server like this one (DASH-IF calls it
// the "packager → origin" interface). Kept tiny and in memory, so the peer pays nothing
// for disk or locks: if anything, the comparison favours it.

import http from 'node:http';

const [port, fallback] = process.argv.slice(2);
if (!port || !fallback) {
  console.error('usage: node bench/live-relay.mjs PORT FALLBACK_URL');
  process.exit(2);
}
const upstream = new URL(fallback);

/** path → { pieces: Buffer[], done: boolean, waiters: Set<() => void>, at: number } */
const files = new Map();
/** path → Set of resolvers waiting for the upload to start */
const starting = new Map();
const HOLD_MS = 2500;
const KEEP_MS = 60_000;

function notify(f) {
  for (const w of f.waiters) w();
  f.waiters.clear();
}

function ingest(req, res) {
  const f = { pieces: [], done: false, waiters: new Set(), at: Date.now() };
  files.set(req.url, f);
  for (const w of starting.get(req.url) || []) w();
  starting.delete(req.url);
  req.on('data', (b) => { f.pieces.push(b); notify(f); });
  req.on('end', () => { f.done = true; notify(f); res.writeHead(201).end(); });
  req.on('error', () => { f.done = true; notify(f); });
}

function contentType(path) {
  if (path.endsWith('.mpd')) return 'application/dash+xml';
  return 'video/mp4';
}

const CORS = { 'access-control-allow-origin': '*', 'access-control-expose-headers': 'Content-Length, Date', 'timing-allow-origin': '*' };

async function serve(req, res, f) {
  const path = req.url.split('?')[0];
  const cache = path.endsWith('.mpd') ? 'public, max-age=1' : 'public, max-age=60';
  const headers = { 'content-type': contentType(path), 'cache-control': cache, ...CORS };
  if (f.done) {
    const body = Buffer.concat(f.pieces);
    res.writeHead(200, { ...headers, 'content-length': body.length });
    res.end(req.method === 'HEAD' ? undefined : body);
    return;
  }
  res.writeHead(200, headers); // no length: chunked transfer encoding
  if (req.method === 'HEAD') return res.end();
  let sent = 0;
  while (true) {
    while (sent < f.pieces.length) res.write(f.pieces[sent++]);
    if (f.done) return res.end();
    await new Promise((resolve) => f.waiters.add(resolve));
  }
}

function proxy(req, res) {
  const p = http.request({ host: upstream.hostname, port: upstream.port, path: req.url, method: req.method, headers: { ...req.headers, host: upstream.host } }, (r) => {
    res.writeHead(r.statusCode, r.headers);
    r.pipe(res);
  });
  p.on('error', () => { res.writeHead(502).end(); });
  req.pipe(p);
}

const server = http.createServer(async (req, res) => {
  const path = req.url.split('?')[0];
  if (req.method === 'PUT' || req.method === 'POST') return ingest(req, res);
  if (req.method === 'DELETE') { files.delete(path); return res.writeHead(204).end(); }
  if (req.method === 'OPTIONS') return res.writeHead(204, { ...CORS, 'access-control-allow-methods': 'GET, HEAD, OPTIONS', 'access-control-allow-headers': '*' }).end();
  let f = files.get(path);
  if (!f && path.startsWith('/ff/') && path.endsWith('.m4s')) {
    await new Promise((resolve) => {
      const set = starting.get(path) || new Set();
      starting.set(path, set);
      set.add(resolve);
      setTimeout(resolve, HOLD_MS);
    });
    f = files.get(path);
  }
  if (f) return serve(req, res, f);
  if (path.startsWith('/ff/')) return res.writeHead(404, { 'cache-control': 'no-store', ...CORS }).end('not found\n');
  return proxy(req, res);
});
server.keepAliveTimeout = 60_000;
server.requestTimeout = 0;
server.listen(Number(port), '127.0.0.1', () => console.error(`live-relay listening on 127.0.0.1:${port}`));

setInterval(() => {
  const old = Date.now() - KEEP_MS;
  for (const [p, f] of files) if (f.done && f.at < old && !p.endsWith('.mpd') && !p.includes('init')) files.delete(p);
}, 5000).unref();
