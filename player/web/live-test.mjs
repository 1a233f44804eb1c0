#!/usr/bin/env node
// dash.js in low-latency mode on a live channel, in Debian's Chromium (headless), driven by
// playwright-core:
//
//   node player/web/live-test.mjs BASE_URL MPD_PATH ARTIFACT_DIR [--seconds=60] [--max-latency=2.0]
//
// BASE_URL serves /web/dash.all.min.js, /time and MPD_PATH (an origin, or edges in
// front of one). The page is BASE_URL/time (same origin as everything dash.js fetches, so
// the MPD's relative UTCTiming `/time` resolves there) with a <video> and dash.js added.
// dash.js takes its latency target and catch-up rates from the MPD's ServiceDescription
// (low-latency mode is chosen by dash.js from availabilityTimeComplete="false").
//
// Every second: dash.js's getCurrentLiveLatency(), the buffer level, the playback rate and
// decoded frames; every `waiting` event after playback started. Prints one `ok -`/`not ok -`
// line per check and a `latency` summary line; writes live-report.json into ARTIFACT_DIR.
// Exits 1 if a check failed, 2 if the browser or playwright-core is missing.

import fs from 'node:fs';
import path from 'node:path';

const CHROMIUM = process.env.DASHCDN_CHROMIUM || '/usr/bin/chromium';
const CHROMIUM_ARGS = [
  '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
  '--no-first-run', '--disable-dev-shm-usage', '--autoplay-policy=no-user-gesture-required',
];

const positional = process.argv.slice(2).filter((a) => !a.startsWith('--'));
const flags = Object.fromEntries(process.argv.slice(2).filter((a) => a.startsWith('--'))
  .map((a) => { const [k, v] = a.slice(2).split('='); return [k, v ?? 'true']; }));
if (positional.length !== 3) {
  console.error('usage: node live-test.mjs BASE_URL MPD_PATH ARTIFACT_DIR [--seconds=60] [--max-latency=2.0]');
  process.exit(2);
}
const BASE = positional[0].replace(/\/+$/, '');
const MPD = BASE + positional[1];
const ARTIFACTS = path.resolve(positional[2]);
const SECONDS = Number(flags.seconds || 60);
const MAX_LATENCY = Number(flags['max-latency'] || 2.0);

if (!fs.existsSync(CHROMIUM)) {
  console.log(`not ok - no browser at ${CHROMIUM}: run scripts/setup.sh`);
  process.exit(2);
}
let chromium;
try {
  ({ chromium } = await import('playwright-core'));
} catch (e) {
  console.log(`not ok - playwright-core is not installed (${e.message}): run scripts/setup.sh`);
  process.exit(2);
}

let failed = 0;
function check(ok, what) {
  console.log(`${ok ? 'ok' : 'not ok'} - ${what}`);
  if (!ok) failed += 1;
}

fs.mkdirSync(ARTIFACTS, { recursive: true });
const browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });
const page = await browser.newPage();
const consoleErrors = [];
page.on('console', (m) => { if (m.type() === 'error') consoleErrors.push(m.text()); });
const failedRequests = [];
page.on('response', (r) => { if (r.status() >= 400) failedRequests.push(`${new Date().toISOString()} ${r.status()} ${r.url()}`); });
const foreign = [];
page.on('request', (r) => { if (!r.url().startsWith(BASE) && !r.url().startsWith('blob:')) foreign.push(r.url()); });

await page.goto(`${BASE}/time`);
await page.addScriptTag({ url: `${BASE}/web/dash.all.min.js` });
await page.evaluate((mpd) => {
  document.body.innerHTML = '<video id="v" muted autoplay playsinline width="640" height="360"></video>';
  const video = document.getElementById('v');
  const s = { waiting: 0, playing: false, errors: [], startedAt: null };
  window.__live = s;
  video.addEventListener('playing', () => { if (!s.playing) { s.playing = true; s.startedAt = performance.now(); } });
  s.waitingAt = [];
  video.addEventListener('waiting', () => { if (s.playing) { s.waiting += 1; s.waitingAt.push(new Date().toISOString()); } });
  const player = dashjs.MediaPlayer().create();
  player.updateSettings({ streaming: { liveCatchup: { enabled: true } } });
  player.on(dashjs.MediaPlayer.events.ERROR, (e) => s.errors.push(JSON.stringify(e.error || e).slice(0, 300)));
  player.initialize(video, mpd, true);
  window.__player = player;
}, MPD);

const samples = [];
for (let i = 0; i < SECONDS; i++) {
  await page.waitForTimeout(1000);
  const sample = await page.evaluate(() => {
    const p = window.__player; const v = document.getElementById('v');
    const q = v.getVideoPlaybackQuality ? v.getVideoPlaybackQuality() : { totalVideoFrames: 0 };
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
await page.screenshot({ path: path.join(ARTIFACTS, 'live.png') });
await browser.close();

// Latency once playback settled: skip the first 5 s (start-up and first catch-up).
const settled = samples.slice(5).map((s) => s.latency).filter((l) => Number.isFinite(l) && l > 0);
const sorted = [...settled].sort((a, b) => a - b);
const median = sorted.length ? sorted[Math.floor(sorted.length / 2)] : NaN;
const p95 = sorted.length ? sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * 0.95))] : NaN;
const rates = samples.map((s) => s.rate);
console.log(`latency median=${median.toFixed(3)} p95=${p95.toFixed(3)} min=${sorted[0]?.toFixed(3)} max=${sorted.at(-1)?.toFixed(3)} samples=${sorted.length} rate_min=${Math.min(...rates)} rate_max=${Math.max(...rates)}`);
fs.writeFileSync(path.join(ARTIFACTS, 'live-report.json'), JSON.stringify({ median, p95, samples, state, consoleErrors, failedRequests, foreign }, null, 2));

check(state.playing, 'playback started');
check(samples.at(-1).frames > samples[Math.min(5, samples.length - 1)].frames + 10 * (SECONDS - 6),
  `decoded frames keep increasing (${samples[Math.min(5, samples.length - 1)].frames} → ${samples.at(-1).frames})`);
check(sorted.length >= SECONDS - 10, `live latency measured every second (${sorted.length} samples)`);
check(median <= MAX_LATENCY, `median live latency ${median.toFixed(3)} s ≤ ${MAX_LATENCY} s`);
check(state.waiting === 0, `no waiting events after start (${state.waiting} ${state.waitingAt.join(' ')})`);
if (failedRequests.length) console.log(`# failed requests: ${failedRequests.slice(0, 5).join(' | ')}`);
check(state.errors.length === 0, `no dash.js errors ${state.errors.join(' | ')}`);
check(foreign.length === 0, `every request went to ${BASE} ${foreign.slice(0, 3).join(' ')}`);
process.exit(failed ? 1 : 0);
