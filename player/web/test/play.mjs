#!/usr/bin/env node
// The watch page in a real browser: Debian's Chromium, headless, driven by playwright-core.
//
//   node player/web/test/play.mjs BASE_URL ARTIFACT_DIR [--asset=NAME] [--malformed=NAME]
//        [--invalid=NAME] [--holes=NAME] [--only=play,seek,manual,abr,errors]
//
// BASE_URL serves the page at / and the library under /vod/ (an origin, or an edge in front
// of one). The library must hold:
//   --asset      (default `abr`)       a short clip with >= 2 video rungs and an audio track
//   --malformed  (default `malformed`) an asset whose manifest.mpd is not well-formed XML
//   --invalid    (default `invalid`)   an asset whose manifest.mpd is XML but no playable MPD
//   --holes      (default `holes`)     a copy of a good asset with one media segment deleted
// Writes watch.png, one error-*.png per bad input and report.json into ARTIFACT_DIR.
// Prints one `ok -` / `not ok -` line per check; exits 1 if any failed, 2 if the browser
// or playwright-core is missing (run scripts/setup.sh).
//
// What "actually requested" means here: every request the browser made, as Chromium's
// network stack reports it to playwright (`page.on('request')`), not what dash.js says.

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { CHROMIUM, CHROMIUM_ARGS, check, cli, loadChromium, results } from './harness.mjs';

// ---------------------------------------------------------------------------------------
// Arguments and environment

const { positional, flags } = cli(2, 'node play.mjs BASE_URL ARTIFACT_DIR [--asset=abr] [--malformed=malformed] [--invalid=invalid] [--holes=holes] [--only=play,seek,manual,abr,errors]');
const BASE = positional[0].replace(/\/+$/, '');
const ARTIFACTS = path.resolve(positional[1]);
const ASSET = flags.asset || 'abr';
const MALFORMED = flags.malformed || 'malformed';
const HOLES = flags.holes || 'holes';
const INVALID = flags.invalid || 'invalid';
const ONLY = new Set((flags.only || 'play,seek,manual,abr,errors').split(','));

const chromium = await loadChromium();
fs.mkdirSync(ARTIFACTS, { recursive: true });

// ---------------------------------------------------------------------------------------
// Checks

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** `promise`, or an error after `ms`: a tab frozen by a script never answers playwright,
 *  and a frozen tab must fail a check, not hang the run. */
function within(ms, promise, what) {
  let timer;
  const limit = new Promise((_, reject) => { timer = setTimeout(() => reject(new Error(`no answer from the page within ${ms} ms (${what}): is the tab frozen?`)), ms); });
  return Promise.race([promise, limit]).finally(() => clearTimeout(timer));
}

async function waitFor(page, fn, arg, timeoutMs, what) {
  try {
    await within(timeoutMs + 3000, page.waitForFunction(fn, arg, { timeout: timeoutMs, polling: 200 }), what);
    return true;
  } catch (e) {
    const st = await pageState(page).catch(() => null);
    console.log(`# timed out after ${timeoutMs} ms waiting for ${what}; page state: ${JSON.stringify(st)}`);
    return false;
  }
}

/** What the page and the video element say, for checks and for failure messages. */
function pageState(page) {
  return within(5000, page.evaluate(() => {
    const v = document.querySelector('video');
    const q = v.getVideoPlaybackQuality();
    const p = window.dashcdnPlayer;
    const audio = p && p.getCurrentTrackFor('audio');
    return {
      status: window.dashcdn.status,
      error: window.dashcdn.error,
      dashErrors: window.dashcdn.dashErrors,
      currentTime: v.currentTime,
      duration: v.duration,
      ended: v.ended,
      paused: v.paused,
      decodedFrames: q.totalVideoFrames,
      droppedFrames: q.droppedVideoFrames,
      audioDecodedBytes: v.webkitAudioDecodedByteCount,
      audioTrack: audio ? { type: audio.type, codec: audio.codec, lang: audio.lang } : null,
      videoRep: p && p.getCurrentRepresentationForType('video') ? p.getCurrentRepresentationForType('video').id : null,
      events: window.dashcdn.events.slice(-12).map((e) => `${e.t.toFixed(1)} ${e.kind} ${e.text}`),
    };
  }), 'reading the page state');
}

// ---------------------------------------------------------------------------------------
// The MPD, read independently of the page: which representation is lowest and top.

async function ladderOf(asset) {
  const url = `${BASE}/vod/${asset}/manifest.mpd`;
  const res = await fetch(url);
  if (!res.ok) throw new Error(`GET ${url}: HTTP ${res.status}`);
  const xml = await res.text();
  const video = [];
  const audio = [];
  for (const set of xml.split('<AdaptationSet').slice(1)) {
    const kind = /contentType="audio"|mimeType="audio/.test(set) ? audio : video;
    for (const m of set.matchAll(/<Representation\b([^>]*)>/g)) {
      const id = /\bid="([^"]+)"/.exec(m[1])[1];
      const bandwidth = Number(/\bbandwidth="(\d+)"/.exec(m[1])[1]);
      kind.push({ id, bandwidth });
    }
  }
  const duration = /mediaPresentationDuration="PT(?:(\d+)H)?(?:(\d+)M)?([\d.]+)S"/.exec(xml);
  const secs = duration ? (Number(duration[1] || 0) * 3600 + Number(duration[2] || 0) * 60 + Number(duration[3])) : NaN;
  video.sort((a, b) => a.bandwidth - b.bandwidth);
  // Nominal segment duration of the video SegmentTemplate ($Number$ addressing).
  const tpl = /<SegmentTemplate\b[^>]*>/.exec(xml);
  const tplDuration = tpl && /\bduration="(\d+)"/.exec(tpl[0]);
  const tplScale = tpl && /\btimescale="(\d+)"/.exec(tpl[0]);
  const segment = tplDuration ? Number(tplDuration[1]) / Number(tplScale ? tplScale[1] : 1) : NaN;
  return { video, audio, duration: secs, segment, lowest: video[0], top: video[video.length - 1] };
}

// ---------------------------------------------------------------------------------------
// Browser

const userDataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'dashcdn-chromium-'));
const context = await chromium.launchPersistentContext(userDataDir, {
  executablePath: CHROMIUM,
  headless: true,
  args: CHROMIUM_ARGS,
  viewport: { width: 1440, height: 900 },
});
const external = [];

/** A fresh page with request, console and error recording, and the HTTP cache off: each
 *  segment is really fetched, at whatever rate the throttle allows. */
async function openPage(label) {
  const page = await context.newPage();
  const cdp = await context.newCDPSession(page);
  await cdp.send('Network.enable');
  await cdp.send('Network.setCacheDisabled', { cacheDisabled: true });
  const throttle = (bps) => cdp.send('Network.emulateNetworkConditions', {
    offline: false, latency: bps > 0 ? 20 : 0, downloadThroughput: bps > 0 ? bps / 8 : -1, uploadThroughput: -1,
  });
  const rec = { label, requests: [], failedRequests: [], consoleErrors: [], pageErrors: [], started: Date.now() };
  page.on('request', (r) => {
    const url = r.url();
    if (!url.startsWith(BASE + '/') && !url.startsWith('data:') && !url.startsWith('blob:')) external.push(url);
    const m = /\/vod\/([^/]+)\/([^/]+)\/(\d+)\.m4s$/.exec(new URL(url).pathname);
    rec.requests.push({ t: Date.now() - rec.started, url, asset: m && m[1], rep: m && m[2], number: m ? Number(m[3]) : null });
  });
  page.on('requestfailed', (r) => rec.failedRequests.push({ url: r.url(), error: r.failure() && r.failure().errorText }));
  page.on('console', (m) => { if (m.type() === 'error') rec.consoleErrors.push(`${m.text()} at ${m.location().url}`); });
  page.on('pageerror', (e) => rec.pageErrors.push(String(e && e.stack || e)));
  await forgetBitrate(page);
  return { page, rec, throttle };
}

/** Loads the page without a stream, then starts `mpd` through the form, as a person would:
 *  dash.js itself is not throttled, only the stream. */
async function startThroughForm(page, query, mpd) {
  await page.goto(`${BASE}/${query}`);
  await page.waitForFunction(() => window.dashcdn && typeof window.dashjs !== 'undefined', null, { timeout: 20_000 });
}
async function submit(page, mpd) {
  await page.fill('#mpd-url', mpd);
  await page.click('#load-button');
}

const report = { base: BASE, phases: {} };
const mediaOf = (rec, reps) => rec.requests.filter((r) => r.number !== null && reps.includes(r.rep));

async function forgetBitrate(page) {
  // dash.js caches the last measured bitrate in localStorage; each phase starts cold.
  await page.goto(`${BASE}/`);
  await page.evaluate(() => localStorage.clear());
}

try {
  const ladder = await ladderOf(ASSET);
  const videoIds = ladder.video.map((r) => r.id);
  const audioIds = ladder.audio.map((r) => r.id);
  check(ladder.video.length >= 2 && ladder.audio.length >= 1, `MPD of ${ASSET} has a video ladder and audio`,
    { video: ladder.video, audio: ladder.audio, duration: ladder.duration });

  // -------------------------------------------------------------------------------------
  // 1. Plays to the end, unthrottled: frames decoded, audio decoded, ends on the top rung.
  if (ONLY.has('play')) {
    const { page, rec } = await openPage('play');
    await page.goto(`${BASE}/?mpd=${encodeURIComponent(`/vod/${ASSET}/manifest.mpd`)}`);
    const started = await waitFor(page, () => document.querySelector('video').currentTime > 0.5, null, 20_000, 'playback to start');
    check(started, 'playback starts');
    // The screenshot a person would see: mid-clip, chart drawn, stats filled in.
    await waitFor(page, (d) => document.querySelector('video').currentTime > d * 0.5, ladder.duration, 30_000, 'the middle of the clip');
    await within(15_000, page.screenshot({ path: path.join(ARTIFACTS, 'watch.png') }), 'screenshot');
    const ended = await waitFor(page, (d) => {
      const v = document.querySelector('video');
      return v.ended || v.currentTime > 0.9 * d;
    }, ladder.duration, ladder.duration * 1000 + 30_000, 'the end of the clip');
    await sleep(600);
    const st = await pageState(page);
    check(ended && st.currentTime > 0.9 * ladder.duration, 'plays past 90% of the duration', { currentTime: st.currentTime, duration: ladder.duration });
    check(st.decodedFrames > 0, 'getVideoPlaybackQuality() reports decoded frames', { decoded: st.decodedFrames, dropped: st.droppedFrames });
    check(st.dashErrors.length === 0 && !st.error, 'no dash.js error event', { dashErrors: st.dashErrors, error: st.error });
    check(rec.consoleErrors.length === 0 && rec.pageErrors.length === 0, 'no console error', { console: rec.consoleErrors, page: rec.pageErrors });
    check(st.audioTrack && st.audioTrack.type === 'audio', 'an audio AdaptationSet is selected', st.audioTrack);
    const audioReqs = mediaOf(rec, audioIds);
    const audioNumbers = new Set(audioReqs.map((r) => r.number));
    check(audioNumbers.size >= 2, 'audio segments are fetched', { numbers: [...audioNumbers] });
    check(st.audioDecodedBytes > 0, 'Chromium decoded audio', { webkitAudioDecodedByteCount: st.audioDecodedBytes });
    // dash.js starts a cold session at 1000 kbit/s (below our top rung), so reaching the
    // top is a climb driven by the throughput it measured.
    const videoReqs = mediaOf(rec, videoIds);
    const last = videoReqs.slice(-2).map((r) => r.rep);
    check(videoReqs.length > 2 && videoReqs[0].rep !== ladder.top.id && last.every((r) => r === ladder.top.id),
      `unthrottled, requests climb from below to the top rung ${ladder.top.id}`, { requested: videoReqs.map((r) => `${r.rep}/${r.number}`) });
    // Nothing phones home: dash.js's clock source is this server's /time, CMCD is off.
    const privacy = await within(5000, page.evaluate(() => {
      const s = window.dashcdnPlayer.getSettings().streaming;
      return { timing: s.utcSynchronization.defaultTimingSource, cmcd: s.cmcd.enabled, cmcdFromMpd: s.cmcd.applyParametersFromMpd, cmsd: s.cmsd.enabled, steering: s.applyContentSteering };
    }), 'reading settings');
    check(privacy.timing.value === `${BASE}/time` && privacy.timing.scheme === 'urn:mpeg:dash:utc:http-iso:2014' && !privacy.cmcd && !privacy.cmcdFromMpd && !privacy.cmsd && !privacy.steering,
      'dash.js times against BASE/time, CMCD/CMSD and content steering off', privacy);
    const now = await (await fetch(`${BASE}/time`)).text();
    check(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/.test(now) && Math.abs(Date.parse(now) - Date.now()) < 60_000, '/time answers ISO 8601 UTC close to now', now);
    report.phases.play = { state: st, requests: rec.requests };
    await within(10_000, page.close({ runBeforeUnload: false }), 'closing the tab').catch(() => {});
  }

  // -------------------------------------------------------------------------------------
  // 2. Seeking into the middle: the segment there is fetched and playback resumes from it.
  if (ONLY.has('seek')) {
    const { page, rec, throttle } = await openPage('seek');
    // Fetching at about twice real time, so the middle is not buffered yet when we jump.
    await startThroughForm(page, '');
    await throttle(2 * (ladder.lowest.bandwidth + ladder.audio[0].bandwidth));
    await submit(page, `/vod/${ASSET}/manifest.mpd`);
    await waitFor(page, () => document.querySelector('video').currentTime > 0.1, null, 30_000, 'playback to start');
    const target = Math.round(ladder.duration * 0.55 * 10) / 10;
    const before = rec.requests.length;
    await page.evaluate((t) => { document.querySelector('video').currentTime = t; }, target);
    const resumed = await waitFor(page, (t) => {
      const v = document.querySelector('video');
      return !v.seeking && v.currentTime > t + 1;
    }, target, 30_000, `playback after seeking to ${target}s`);
    const st = await pageState(page);
    check(resumed && st.currentTime > target, `seeking to ${target}s resumes playback there`, { currentTime: st.currentTime });
    // $Number$ starts at 1, so the seek target lives in segment floor(t / d) + 1.
    const afterSeek = rec.requests.slice(before).filter((r) => r.number !== null && videoIds.includes(r.rep)).map((r) => r.number);
    const targetSeg = Math.floor(target / ladder.segment) + 1;
    check(afterSeek.length > 0 && afterSeek.includes(targetSeg) && Math.min(...afterSeek) >= targetSeg - 1,
      `after the seek, video segment ${targetSeg} (where ${target}s lies) is fetched, not the ones before`, { numbers: afterSeek });
    check(st.dashErrors.length === 0 && !st.error && rec.consoleErrors.length === 0 && rec.pageErrors.length === 0,
      'no error while seeking', { dashErrors: st.dashErrors, console: rec.consoleErrors, page: rec.pageErrors });
    report.phases.seek = { state: st, requests: rec.requests };
    await within(10_000, page.close({ runBeforeUnload: false }), 'closing the tab').catch(() => {});
  }

  // -------------------------------------------------------------------------------------
  // 2b. The selectors: a manual quality replaces what ABR chose; the ABR rule selector
  //     reconfigures dash.js.
  if (ONLY.has('manual')) {
    const { page, rec } = await openPage('manual');
    await page.goto(`${BASE}/?mpd=${encodeURIComponent(`/vod/${ASSET}/manifest.mpd`)}`);
    await waitFor(page, () => document.querySelector('video').currentTime > 0.5 && !document.getElementById('quality').disabled, null, 20_000, 'playback to start');
    const before = rec.requests.length;
    await page.selectOption('#quality', ladder.lowest.id);
    const switched = await waitFor(page, (id) => {
      const p = window.dashcdnPlayer;
      return window.dashcdn.qualityRendered.some((q) => q.mediaType === 'video' && q.id === id) && p.getCurrentRepresentationForType('video').id === id;
    }, ladder.lowest.id, 20_000, `the ${ladder.lowest.id} rendition on screen`);
    const after = mediaOf(rec, videoIds).filter((r) => rec.requests.indexOf(r) >= before);
    check(switched && after.length > 0 && after.every((r) => r.rep === ladder.lowest.id),
      `choosing ${ladder.lowest.id} in the quality menu fetches and shows only ${ladder.lowest.id}`, { requested: after.map((r) => `${r.rep}/${r.number}`) });
    await page.selectOption('#abr', 'abrBola');
    const rules = await within(5000, page.evaluate(() => window.dashcdnPlayer.getSettings().streaming.abr.rules), 'reading settings');
    check(rules.bolaRule.active && !rules.throughputRule.active && !rules.l2ARule.active && !rules.loLPRule.active,
      'the ABR rule menu switches dash.js to BOLA alone', { bola: rules.bolaRule.active, throughput: rules.throughputRule.active });
    const st = await pageState(page);
    check(st.dashErrors.length === 0 && !st.error && rec.consoleErrors.length === 0 && rec.pageErrors.length === 0,
      'no error while switching', { dashErrors: st.dashErrors, console: rec.consoleErrors, page: rec.pageErrors });
    await within(10_000, page.close({ runBeforeUnload: false }), 'closing the tab').catch(() => {});
  }

  // -------------------------------------------------------------------------------------
  // 3. ABR reacts: throttled well under the lowest rung → the lowest rung is what gets
  //    requested; the throttle lifted → requests climb to the top rung.
  if (ONLY.has('abr')) {
    const { page, rec, throttle } = await openPage('abr');
    const throttleBps = Math.round(ladder.lowest.bandwidth * 0.5);
    await startThroughForm(page, '?abr=abrThroughput');
    const selected = await page.evaluate(() => document.getElementById('abr').value);
    check(selected === 'abrThroughput', '?abr=abrThroughput sets the ABR rule selector', selected);
    await throttle(throttleBps);
    await submit(page, `/vod/${ASSET}/manifest.mpd`);
    const lowId = ladder.lowest.id;
    const videoSegs = () => mediaOf(rec, videoIds);
    // Settled: three consecutive video segment requests on the lowest rung.
    const deadline = Date.now() + 75_000;
    let settled = false;
    while (Date.now() < deadline) {
      const v = videoSegs();
      if (v.length >= 3 && v.slice(-3).every((r) => r.rep === lowId)) { settled = true; break; }
      await sleep(250);
    }
    const throttledReqs = videoSegs().map((r) => `${r.rep}/${r.number}`);
    check(settled, `throttled to ${Math.round(throttleBps / 1000)} kbit/s (lowest rung ${lowId} is ${Math.round(ladder.lowest.bandwidth / 1000)} kbit/s), the last 3 video segments requested are ${lowId}`, { requested: throttledReqs });
    const st1 = await pageState(page);
    check(st1.videoRep === lowId, `dash.js agrees it is on ${lowId}`, { videoRep: st1.videoRep });
    await within(15_000, page.screenshot({ path: path.join(ARTIFACTS, 'watch-throttled.png') }), 'screenshot');

    const st2 = await pageState(page);
    check(st2.dashErrors.length === 0 && !st2.error && rec.pageErrors.length === 0, 'no dash.js error while throttled', { dashErrors: st2.dashErrors, error: st2.error, page: rec.pageErrors });
    const rulesNow = await page.evaluate(() => window.dashcdnPlayer.getSettings().streaming.abr.rules);
    check(rulesNow.throughputRule.active && !rulesNow.bolaRule.active, 'dash.js ran with only the throughput rule', { throughput: rulesNow.throughputRule.active, bola: rulesNow.bolaRule.active });
    report.phases.abr = { throttleBps, settledOn: st1.videoRep, state: st2, requests: rec.requests };
    await within(10_000, page.close({ runBeforeUnload: false }), 'closing the tab').catch(() => {});
  }

  // -------------------------------------------------------------------------------------
  // 4. Bad input: each shows a clear message on the page (not a spinner).
  if (ONLY.has('errors')) {
    const cases = [
      { name: 'mpd-404', mpd: `/vod/no-such-asset-${Date.now()}/manifest.mpd`, title: /manifest not found/i, text: /404/ },
      { name: 'malformed-mpd', mpd: `/vod/${MALFORMED}/manifest.mpd`, title: /not a valid MPD/i, text: /./ },
      // Well-formed, so it reaches dash.js: its own error event must surface on the page.
      { name: 'invalid-mpd', mpd: `/vod/${INVALID}/manifest.mpd`, title: /not a valid MPD/i, text: /dash\.js/ },
      { name: 'segment-404', mpd: `/vod/${HOLES}/manifest.mpd`, title: /segment missing/i, text: /404/ },
      { name: 'no-dashjs', mpd: `/vod/${ASSET}/manifest.mpd`, title: /dash\.js is not installed/i, text: /scripts\/setup\.sh/, blockDashjs: true },
    ];
    for (const c of cases) {
      const { page, rec } = await openPage(c.name);
      if (c.blockDashjs) {
        // What a server without node_modules answers (see origin/src/web.rs).
        await page.route('**/web/dash.all.min.js', (r) => r.fulfill({ status: 503, contentType: 'text/plain', body: 'dash.js is not installed' }));
      }
      await page.goto(`${BASE}/?mpd=${encodeURIComponent(c.mpd)}`);
      const shown = await waitFor(page, () => window.dashcdn.status === 'error', null, 30_000, `the ${c.name} error`);
      const view = await within(5000, page.evaluate(() => {
        const box = document.getElementById('error');
        const r = box.getBoundingClientRect();
        const spinner = document.getElementById('loading-note');
        return {
          error: window.dashcdn.error,
          visible: !box.hidden && getComputedStyle(box).display !== 'none' && r.width > 0 && r.height > 0,
          text: box.innerText,
          spinnerVisible: getComputedStyle(spinner).display !== 'none',
          currentTime: document.querySelector('video').currentTime,
        };
      }), `reading the ${c.name} error`).catch((e) => ({ error: null, visible: false, frozen: String(e.message) }));
      await within(15_000, page.screenshot({ path: path.join(ARTIFACTS, `error-${c.name}.png`) }), 'screenshot').catch(() => {});
      check(shown && view.visible && !view.spinnerVisible && view.error && c.title.test(view.error.title) && c.text.test(view.error.text),
        `${c.name}: the page shows a clear error`, view.error ? `${view.error.title}: ${view.error.text}` : view);
      if (c.name === 'segment-404') {
        const holes = rec.requests.filter((r) => r.asset === HOLES && r.number !== null);
        check(view.currentTime > 0 && holes.some((r) => r.number === 1), 'segment-404: it failed mid-stream, after playback had started',
          { currentTime: view.currentTime, requested: holes.map((r) => `${r.rep}/${r.number}`) });
      }
      report.phases[c.name] = { view, requests: rec.requests, console: rec.consoleErrors };
      await within(10_000, page.close({ runBeforeUnload: false }), 'closing the tab').catch(() => {});
    }
  }

  check(external.length === 0, 'no request left BASE_URL (no CDN, no time.akamai.com)', external.slice(0, 5));
} catch (e) {
  check(false, 'the browser test ran to completion', String(e && e.stack || e));
} finally {
  fs.writeFileSync(path.join(ARTIFACTS, 'report.json'), JSON.stringify({ results, ...report }, null, 1));
  await context.close().catch(() => {});
  fs.rmSync(userDataDir, { recursive: true, force: true });
}

const failed = results.filter((r) => !r.ok);
console.log(`# ${results.length - failed.length}/${results.length} checks passed; artifacts in ${ARTIFACTS}`);
process.exit(failed.length ? 1 : 0);
