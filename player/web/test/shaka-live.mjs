#!/usr/bin/env node
// Shaka Player (the second DASH player) on a live channel, in Debian's Chromium (headless),
// driven by playwright-core:
//
//   node player/web/test/shaka-live.mjs BASE_URL MPD_PATH ARTIFACT_DIR [--seconds=20]
//
// BASE_URL serves /web/shaka-player.compiled.js (from player/web/node_modules, installed by
// scripts/setup.sh's `npm ci`), /time and MPD_PATH. The page is BASE_URL/time, so the MPD's
// relative UTCTiming `/time` resolves to the same server, with a <video> and Shaka added;
// Shaka runs in its low-latency mode (`streaming.lowLatencyMode`).
//
// Every second: the playhead, decoded frames and Shaka's own live latency estimate (wall
// clock − presentation start − playhead). Checks: Shaka sees a live stream, playback
// advances at about real time, frames keep being decoded, no Shaka error, no request
// leaves BASE_URL. Prints one `ok -`/`not ok -` line per check and a `latency` line;
// writes shaka-live.json and shaka-live.png into ARTIFACT_DIR. Exits 1 if a check failed,
// 2 if the browser or playwright-core is missing.

import fs from 'node:fs';
import path from 'node:path';

import { CHROMIUM, CHROMIUM_ARGS, check, cli, failures, loadChromium } from './harness.mjs';

const { positional, flags } = cli(3, 'node shaka-live.mjs BASE_URL MPD_PATH ARTIFACT_DIR [--seconds=20]');
const BASE = positional[0].replace(/\/+$/, '');
const MPD = BASE + positional[1];
const ARTIFACTS = path.resolve(positional[2]);
const SECONDS = Number(flags.seconds || 20);

const chromium = await loadChromium();


fs.mkdirSync(ARTIFACTS, { recursive: true });
const browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });
const page = await browser.newPage();
const consoleErrors = [];
page.on('console', (m) => { if (m.type() === 'error') consoleErrors.push(m.text()); });
const foreign = [];
page.on('request', (r) => { if (!r.url().startsWith(BASE) && !r.url().startsWith('blob:') && !r.url().startsWith('data:')) foreign.push(r.url()); });

await page.goto(`${BASE}/time`);
const script = await page.request.get(`${BASE}/web/shaka-player.compiled.js`);
if (!script.ok()) {
  console.log(`not ok - ${BASE}/web/shaka-player.compiled.js: HTTP ${script.status()} ${(await script.text()).trim()}`);
  await browser.close();
  process.exit(1);
}
await page.addScriptTag({ url: `${BASE}/web/shaka-player.compiled.js` });
const loaded = await page.evaluate(async (mpd) => {
  document.body.innerHTML = '<video id="v" muted autoplay playsinline width="640" height="360"></video>';
  const video = document.getElementById('v');
  const s = { errors: [], waiting: 0, playing: false };
  window.__shaka = s;
  video.addEventListener('playing', () => { s.playing = true; });
  video.addEventListener('waiting', () => { if (s.playing) s.waiting += 1; });
  shaka.polyfill.installAll();
  if (!shaka.Player.isBrowserSupported()) return 'browser not supported by Shaka';
  const player = new shaka.Player();
  window.__player = player;
  player.addEventListener('error', (e) => s.errors.push(`${e.detail && e.detail.code} ${JSON.stringify(e.detail && e.detail.data || []).slice(0, 200)}`));
  player.configure({ streaming: { lowLatencyMode: true } });
  await player.attach(video);
  try {
    await player.load(mpd);
  } catch (e) {
    return `load failed: ${e.code} ${JSON.stringify(e.data || []).slice(0, 300)}`;
  }
  video.play().catch(() => {});
  return null;
}, MPD);
check(loaded === null, `Shaka ${await page.evaluate(() => shaka.Player.version)} loaded ${MPD} ${loaded || ''}`);

const samples = [];
for (let i = 0; loaded === null && i < SECONDS; i++) {
  await page.waitForTimeout(1000);
  samples.push(await page.evaluate(() => {
    const p = window.__player; const v = document.getElementById('v');
    const start = p.getPresentationStartTimeAsDate();
    const stats = p.getStats();
    return {
      wall: Date.now() / 1000,
      position: v.currentTime,
      frames: stats.decodedFrames,
      latency: start ? Date.now() / 1000 - start.getTime() / 1000 - v.currentTime : NaN,
      live: p.isLive(),
      lowLatency: p.getConfiguration().streaming.lowLatencyMode,
    };
  }));
}
const state = await page.evaluate(() => window.__shaka);
await page.screenshot({ path: path.join(ARTIFACTS, 'shaka-live.png') });
await browser.close();

const settled = samples.slice(3);
const latencies = settled.map((s) => s.latency).filter(Number.isFinite).sort((a, b) => a - b);
const median = latencies.length ? latencies[Math.floor(latencies.length / 2)] : NaN;
console.log(`latency median=${median.toFixed(3)} min=${latencies[0]?.toFixed(3)} max=${latencies.at(-1)?.toFixed(3)} samples=${latencies.length}`);
fs.writeFileSync(path.join(ARTIFACTS, 'shaka-live.json'), JSON.stringify({ median, samples, state, consoleErrors, foreign }, null, 2));

if (loaded === null && settled.length >= 2) {
  const first = settled[0];
  const last = settled.at(-1);
  const wall = last.wall - first.wall;
  const advanced = last.position - first.position;
  check(samples.every((s) => s.live) && last.lowLatency, 'Shaka sees a live stream, in low-latency mode');
  check(state.playing, 'playback started');
  check(advanced >= 0.8 * wall, `playback advances with the clock (${advanced.toFixed(2)} s in ${wall.toFixed(2)} s)`);
  check(last.frames > first.frames + 10 * wall, `decoded frames keep increasing (${first.frames} → ${last.frames})`);
} else {
  check(false, `not enough samples (${samples.length})`);
}
check(state.errors.length === 0, `no Shaka errors ${state.errors.join(' | ')}`);
check(foreign.length === 0, `every request went to ${BASE} ${foreign.slice(0, 3).join(' ')}`);
process.exit(failures() ? 1 : 0);
