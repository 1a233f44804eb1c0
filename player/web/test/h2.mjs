#!/usr/bin/env node
// dash.js in Debian's Chromium (headless, playwright-core) playing through an HTTPS edge,
// checking from Chromium's own network events that every response came over HTTP/2.
//
//   node player/web/test/h2.mjs HTTPS_BASE_URL SPKI_HASHES ARTIFACT_DIR [--asset=NAME]
//
// HTTPS_BASE_URL serves the watch page at / and the library under /vod/ (an edge with
// --tls-listen). SPKI_HASHES: comma-separated base64 SHA-256 hashes of the test CA's and/or
// leaf's public keys; Chromium trusts that certificate through
// --ignore-certificate-errors-spki-list, without touching any system store. The asset
// (default `abr`) is a short clip with video and audio.
// The protocol of each response is CDP's `Network.responseReceived` → `response.protocol`
// ("h2" for HTTP/2), i.e. what Chromium's network stack negotiated, not what the page says.
// Prints one `ok -` / `not ok -` line per check; writes h2.png and h2-report.json into
// ARTIFACT_DIR; exits 1 if any check failed, 2 if the browser or playwright-core is missing
// (run scripts/setup.sh).

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { CHROMIUM, CHROMIUM_ARGS, check, cli, loadChromium, results } from './harness.mjs';

const { positional, flags } = cli(3, 'node h2.mjs HTTPS_BASE_URL SPKI_HASHES ARTIFACT_DIR [--asset=abr]');
const BASE = positional[0].replace(/\/+$/, '');
const SPKI = positional[1];
const ARTIFACTS = path.resolve(positional[2]);
const ASSET = flags.asset || 'abr';

const chromium = await loadChromium();
fs.mkdirSync(ARTIFACTS, { recursive: true });


const userDataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'dashcdn-chromium-h2-'));
const context = await chromium.launchPersistentContext(userDataDir, {
  executablePath: CHROMIUM,
  headless: true,
  // (CHROMIUM_ARGS has --disable-quic: HTTP/2 over TCP+TLS is what is tested.)
  args: [...CHROMIUM_ARGS, `--ignore-certificate-errors-spki-list=${SPKI}`],
  viewport: { width: 1280, height: 800 },
});

const responses = [];
const consoleErrors = [];
let code = 0;
try {
  const page = await context.newPage();
  const cdp = await context.newCDPSession(page);
  await cdp.send('Network.enable');
  await cdp.send('Network.setCacheDisabled', { cacheDisabled: true });
  cdp.on('Network.responseReceived', (e) => {
    responses.push({ url: e.response.url, status: e.response.status, protocol: e.response.protocol, type: e.type });
  });
  page.on('console', (m) => { if (m.type() === 'error') consoleErrors.push(m.text()); });
  page.on('pageerror', (e) => consoleErrors.push(String(e)));

  await page.goto(`${BASE}/?mpd=${encodeURIComponent(`/vod/${ASSET}/manifest.mpd`)}`, { timeout: 30_000 });
  let played = true;
  try {
    await page.waitForFunction(() => {
      const v = document.querySelector('video');
      return v && v.currentTime > 3 && v.getVideoPlaybackQuality().totalVideoFrames > 0;
    }, null, { timeout: 45_000, polling: 200 });
  } catch (e) {
    played = false;
  }
  const state = await page.evaluate(() => {
    const v = document.querySelector('video');
    return { currentTime: v.currentTime, frames: v.getVideoPlaybackQuality().totalVideoFrames, error: window.dashcdn && window.dashcdn.error, href: location.href };
  });
  await page.screenshot({ path: path.join(ARTIFACTS, 'h2.png') }).catch(() => {});

  check(state.href.startsWith('https://'), 'the watch page is on https://', state.href);
  check(played, 'dash.js plays through the HTTPS edge (frames decoded, past 3 s)', state);
  const ours = responses.filter((r) => r.url.startsWith(BASE + '/'));
  const segments = ours.filter((r) => /\.m4s$/.test(new URL(r.url).pathname));
  const mpds = ours.filter((r) => /\.mpd$/.test(new URL(r.url).pathname));
  check(mpds.length >= 1 && segments.length >= 3, 'the MPD and media segments came from the edge', { mpds: mpds.length, segments: segments.length });
  const notH2 = ours.filter((r) => r.protocol !== 'h2');
  check(ours.length > 0 && notH2.length === 0, 'every response from the edge was HTTP/2 (CDP response.protocol == "h2")',
    { responses: ours.length, protocols: [...new Set(ours.map((r) => r.protocol))], notH2: notH2.slice(0, 5) });
  check(segments.every((r) => r.status === 200 || r.status === 206), 'segments answered 200/206', [...new Set(segments.map((r) => r.status))]);
  check(consoleErrors.length === 0, 'no console error (no mixed content, no certificate error)', consoleErrors.slice(0, 5));
} catch (e) {
  check(false, 'the run finished', String(e && e.stack || e));
} finally {
  fs.writeFileSync(path.join(ARTIFACTS, 'h2-report.json'), JSON.stringify({ base: BASE, results, responses }, null, 2));
  await context.close().catch(() => {});
  fs.rmSync(userDataDir, { recursive: true, force: true });
  if (results.some((r) => !r.ok)) code = 1;
}
process.exit(code);
