#!/usr/bin/env node
// dash.js in low-latency mode on a live channel, in Debian's Chromium (headless), driven by
// playwright-core:
//
//   node player/web/live-test.mjs BASE_URL MPD_PATH ARTIFACT_DIR [--seconds=60] [--max-latency=2.0] [--target=1.5]
//
// BASE_URL serves the watch page (/, /web/…), /vod/, /time and MPD_PATH (an origin, or
// edges in front of one). The page is the watch page, BASE_URL/?mpd=MPD_PATH: the one a
// person opens. It lists the channel under the library's live channels, and dash.js takes
// its latency target and catch-up rates from the MPD's ServiceDescription (low-latency
// mode is chosen by dash.js from availabilityTimeComplete="false").
//
// Every second: dash.js's getCurrentLiveLatency(), the buffer level, the playback rate and
// decoded frames; every `waiting` event after playback started. Then "Go to live" is
// pressed and playback must go on. Prints one `ok -`/`not ok -` line per check and a
// `latency` summary line; writes live-report.json and live.png into ARTIFACT_DIR.
// Exits 1 if a check failed, 2 if the browser or playwright-core is missing.

import fs from 'node:fs';
import path from 'node:path';

import { CHROMIUM, CHROMIUM_ARGS, check, cli, failures, loadChromium } from './test/harness.mjs';

const { positional, flags } = cli(3, 'node live-test.mjs BASE_URL MPD_PATH ARTIFACT_DIR [--seconds=60] [--max-latency=2.0] [--target=1.5]');
const BASE = positional[0].replace(/\/+$/, '');
const MPD = BASE + positional[1];
const ARTIFACTS = path.resolve(positional[2]);
const SECONDS = Number(flags.seconds || 60);
const MAX_LATENCY = Number(flags['max-latency'] || 2.0);
const TARGET = Number(flags.target || 1.5);

const chromium = await loadChromium();


fs.mkdirSync(ARTIFACTS, { recursive: true });
const browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });
const page = await browser.newPage();
const consoleErrors = [];
page.on('console', (m) => { if (m.type() === 'error') consoleErrors.push(m.text()); });
const failedRequests = [];
page.on('response', (r) => { if (r.status() >= 400) failedRequests.push(`${new Date().toISOString()} ${r.status()} ${r.url()}`); });
const foreign = [];
page.on('request', (r) => { if (!r.url().startsWith(BASE) && !r.url().startsWith('blob:')) foreign.push(r.url()); });

// Counters on the page's <video> from its first moment, before dash.js starts playing.
await page.addInitScript(() => {
  const s = { waiting: 0, waitingAt: [], playing: false, startedAt: null };
  window.__live = s;
  document.addEventListener('DOMContentLoaded', () => {
    const video = document.getElementById('video');
    video.addEventListener('playing', () => { if (!s.playing) { s.playing = true; s.startedAt = performance.now(); } });
    video.addEventListener('waiting', () => { if (s.playing) { s.waiting += 1; s.waitingAt.push(new Date().toISOString()); } });
  });
});
await page.goto(`${BASE}/?mpd=${encodeURIComponent(positional[1])}`);
const CHANNEL = (/\/live\/([^/]+)\//.exec(positional[1]) || [])[1];

const samples = [];
for (let i = 0; i < SECONDS; i++) {
  await page.waitForTimeout(1000);
  const sample = await page.evaluate(() => {
    const p = window.dashcdnPlayer; const v = document.getElementById('video');
    const q = v.getVideoPlaybackQuality ? v.getVideoPlaybackQuality() : { totalVideoFrames: 0 };
    if (!p) return { t: performance.now(), latency: NaN, buffer: NaN, rate: v.playbackRate, frames: 0, playing: false, waiting: 0 };
    return {
      t: performance.now(),
      latency: p.getCurrentLiveLatency(),
      buffer: p.getDashMetrics().getCurrentBufferLevel('video'),
      rate: v.playbackRate,
      frames: q.totalVideoFrames,
      playing: window.__live.playing,
      waiting: window.__live.waiting,
    };
  });
  samples.push(sample);
}
const state = await page.evaluate(() => window.__live);
// What the watch page shows a person: the channel in the library, the live panel.
const shown = await page.evaluate(() => ({
  channels: [...document.querySelectorAll('#live-channels [data-live]')].map((b) => b.dataset.live),
  panelHidden: document.getElementById('live-panel').hidden,
  latencyText: document.getElementById('stat-latency').textContent,
  rateText: document.getElementById('stat-rate').textContent,
  bufferText: document.getElementById('stat-live-buffer').textContent,
  target: window.dashcdn.live && window.dashcdn.live.target,
  pageErrors: window.dashcdn.dashErrors.map((e) => `${e.code} ${e.message}`),
  pageError: window.dashcdn.error,
}));
await page.screenshot({ path: path.join(ARTIFACTS, 'live.png') });
// "Go to live": playback jumps to the live edge and goes on.
const before = await page.evaluate(() => document.getElementById('video').getVideoPlaybackQuality().totalVideoFrames);
await page.click('#go-live');
await page.waitForTimeout(6000);
const after = await page.evaluate(() => ({
  frames: document.getElementById('video').getVideoPlaybackQuality().totalVideoFrames,
  latency: window.dashcdnPlayer.getCurrentLiveLatency(),
  goToLive: window.dashcdn.live.goToLive,
  error: window.dashcdn.error,
}));
await browser.close();

// Latency once playback settled: skip the first 5 s (start-up and first catch-up).
const settled = samples.slice(5).map((s) => s.latency).filter((l) => Number.isFinite(l) && l > 0);
const sorted = [...settled].sort((a, b) => a - b);
const median = sorted.length ? sorted[Math.floor(sorted.length / 2)] : NaN;
const p95 = sorted.length ? sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * 0.95))] : NaN;
const rates = samples.map((s) => s.rate);
console.log(`latency median=${median.toFixed(3)} p95=${p95.toFixed(3)} min=${sorted[0]?.toFixed(3)} max=${sorted.at(-1)?.toFixed(3)} samples=${sorted.length} rate_min=${Math.min(...rates)} rate_max=${Math.max(...rates)}`);
fs.writeFileSync(path.join(ARTIFACTS, 'live-report.json'), JSON.stringify({ median, p95, samples, state, shown, after, consoleErrors, failedRequests, foreign }, null, 2));

check(state.playing, 'playback started');
check(samples.at(-1).frames > samples[Math.min(5, samples.length - 1)].frames + 10 * (SECONDS - 6),
  `decoded frames keep increasing (${samples[Math.min(5, samples.length - 1)].frames} → ${samples.at(-1).frames})`);
check(sorted.length >= SECONDS - 10, `live latency measured every second (${sorted.length} samples)`);
check(median <= MAX_LATENCY, `median live latency ${median.toFixed(3)} s ≤ ${MAX_LATENCY} s`);
check(state.waiting === 0, `no waiting events after start (${state.waiting} ${state.waitingAt.join(' ')})`);
if (failedRequests.length) console.log(`# failed requests: ${failedRequests.slice(0, 5).join(' | ')}`);
check(!CHANNEL || shown.channels.includes(CHANNEL), `the library lists live channel ${CHANNEL} (${shown.channels.join(', ')})`);
check(!shown.panelHidden && / s$/.test(shown.latencyText) && /×/.test(shown.rateText) && / s$/.test(shown.bufferText),
  `the live panel shows latency "${shown.latencyText}", rate "${shown.rateText}", buffer "${shown.bufferText}"`);
check(Math.abs(shown.target - TARGET) < 0.01, `target latency ${shown.target} s taken from the MPD's ServiceDescription (${TARGET} s)`);
check(shown.pageErrors.length === 0 && !shown.pageError, `no dash.js errors, none shown by the page ${shown.pageErrors.join(' | ')}`);
check(after.goToLive === 1 && after.frames > before + 50 && !after.error && after.latency <= MAX_LATENCY + 1,
  `after "Go to live" playback goes on (frames ${before} → ${after.frames}, latency ${Number(after.latency).toFixed(3)} s)`);
check(foreign.length === 0, `every request went to ${BASE} ${foreign.slice(0, 3).join(' ')}`);
process.exit(failures() ? 1 : 0);
