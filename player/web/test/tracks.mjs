#!/usr/bin/env node
// Audio languages and subtitles on the watch page, in Debian's Chromium (headless).
//
//   node player/web/test/tracks.mjs BASE_URL ARTIFACT_DIR [--asset=tracks]
//
// The asset must have two audio AdaptationSets (eng, fra) and two text ones (eng, fra),
// as `tests/e2e/tracks.rs` packages it; expected cue counts come from `--cues=eng:2,fra:3`.
// Prints one `ok -` / `not ok -` line per check; exits 1 if any failed, 2 if the browser
// or playwright-core is missing. Writes tracks.png and tracks.json into ARTIFACT_DIR.

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { CHROMIUM, CHROMIUM_ARGS, check, cli, loadChromium, results } from './harness.mjs';

const { positional, flags } = cli(2, 'node tracks.mjs BASE_URL ARTIFACT_DIR [--asset=tracks] [--cues=eng:2,fra:3]');
const BASE = positional[0].replace(/\/+$/, '');
const ARTIFACTS = path.resolve(positional[1]);
const ASSET = flags.asset || 'tracks';
const CUES = Object.fromEntries((flags.cues || 'eng:2,fra:3').split(',').map((p) => {
  const [lang, n] = p.split(':');
  return [lang, Number(n)];
}));

const chromium = await loadChromium();
fs.mkdirSync(ARTIFACTS, { recursive: true });

/** dash.js reports languages as BCP 47 (`en`) where the MPD says ISO 639-2 (`eng`). */
const sameLang = (got, want) => got === want || (typeof got === 'string' && got === want.slice(0, 2));


async function waitFor(page, fn, arg, timeoutMs, what) {
  try {
    await page.waitForFunction(fn, arg, { timeout: timeoutMs, polling: 200 });
    return true;
  } catch (_) {
    console.log(`# timed out after ${timeoutMs} ms waiting for ${what}; page: ${JSON.stringify(await view(page).catch(() => null))}`);
    return false;
  }
}

/** The page's track menus, dash.js's current tracks and the browser's text tracks. */
function view(page) {
  return page.evaluate(() => {
    const v = document.querySelector('video');
    const p = window.dashcdnPlayer;
    const cur = p && p.getCurrentTrackFor('audio');
    const options = (id) => [...document.getElementById(id).options].map((o) => ({ value: o.value, text: o.textContent, selected: o.selected }));
    return {
      status: window.dashcdn.status,
      error: window.dashcdn.error,
      currentTime: v.currentTime,
      audioDecodedBytes: v.webkitAudioDecodedByteCount,
      tracks: window.dashcdn.tracks,
      audioNow: cur ? cur.lang : null,
      audioMenu: options('audio-track'),
      textMenu: options('text-track'),
      textTracks: [...v.textTracks].map((t) => ({ kind: t.kind, language: t.language, label: t.label, mode: t.mode, cues: t.cues ? t.cues.length : null })),
      events: window.dashcdn.events.slice(-8).map((e) => `${e.t.toFixed(1)} ${e.kind} ${e.text}`),
    };
  });
}

const userDataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'dashcdn-chromium-'));
const context = await chromium.launchPersistentContext(userDataDir, {
  executablePath: CHROMIUM, headless: true, args: CHROMIUM_ARGS, viewport: { width: 1440, height: 900 },
});
const report = {};
try {
  const page = await context.newPage();
  const requests = [];
  const pageErrors = [];
  page.on('request', (r) => requests.push(new URL(r.url()).pathname));
  page.on('pageerror', (e) => pageErrors.push(String(e && e.stack || e)));
  await page.goto(`${BASE}/?mpd=${encodeURIComponent(`/vod/${ASSET}/manifest.mpd`)}`);
  check(await waitFor(page, () => document.querySelector('video').currentTime > 0.3, null, 20_000, 'playback to start'), 'playback starts');
  await waitFor(page, () => window.dashcdn.tracks.audio.length >= 2 && window.dashcdn.tracks.text.length >= 2, null, 10_000, 'the track menus');
  let v = await view(page);
  const audioLangs = v.tracks.audio.map((t) => t.lang);
  const hasLang = (langs, want) => langs.some((l) => sameLang(l, want));
  check(hasLang(audioLangs, 'eng') && hasLang(audioLangs, 'fra') && v.audioMenu.length === 2,
    'the audio menu lists eng and fra', v.audioMenu);
  const textLangs = v.tracks.text.map((t) => t.lang);
  check(hasLang(textLangs, 'eng') && hasLang(textLangs, 'fra') && v.textMenu.length === 3,
    'the subtitle menu lists Off, eng and fra', v.textMenu);
  const shownAudio = v.audioMenu.find((o) => o.selected);
  check(shownAudio && v.tracks.audio[Number(shownAudio.value)].lang === v.audioNow,
    'the audio menu shows the track playing', { menu: shownAudio, playing: v.audioNow });

  // Switch audio to the other language through the menu, as a person would.
  const other = sameLang(v.audioNow, 'fra') ? 'eng' : 'fra';
  const otherIndex = v.tracks.audio.findIndex((t) => sameLang(t.lang, other));
  const before = { bytes: v.audioDecodedBytes, requests: requests.length };
  await page.selectOption('#audio-track', String(otherIndex));
  const switched = await waitFor(page, (lang) => {
    const p = window.dashcdnPlayer;
    const cur = p.getCurrentTrackFor('audio');
    return cur && (cur.lang === lang || cur.lang === lang.slice(0, 2));
  }, other, 10_000, `audio ${other}`);
  check(switched, `dash.js switches audio to ${other}`);
  // The other language's segments are fetched and decoded, and the video goes on.
  const t0 = (await view(page)).currentTime;
  await waitFor(page, (t) => document.querySelector('video').currentTime > t + 1.0, t0, 10_000, 'playback after the switch');
  v = await view(page);
  const otherReps = requests.slice(before.requests).filter((p) => /\/audio[^/]*\/\d+\.m4s$/.test(p));
  check(otherReps.length > 0, `segments of the ${other} track are fetched after the switch`, otherReps.slice(0, 4));
  check(v.audioDecodedBytes > before.bytes && v.currentTime > t0 + 1.0, 'audio keeps decoding and the video keeps playing',
    { bytes: [before.bytes, v.audioDecodedBytes], time: [t0, v.currentTime] });
  check(v.audioMenu.find((o) => o.selected).value === String(otherIndex), 'the audio menu shows the new track');

  // Every subtitle track, one at a time: its cues reach the browser's TextTrack.
  report.cues = {};
  for (const [i, t] of v.tracks.text.entries()) {
    await page.selectOption('#text-track', String(i));
    const key = Object.keys(CUES).find((k) => sameLang(t.lang, k));
    const want = CUES[key];
    const ok = await waitFor(page, ({ lang, want }) => [...document.querySelector('video').textTracks]
      .some((tt) => tt.language === lang && tt.mode === 'showing' && tt.cues && tt.cues.length >= want), { lang: t.lang, want }, 10_000, `cues of ${t.lang}`);
    const now = await view(page);
    const tt = now.textTracks.find((x) => x.language === t.lang && x.mode === 'showing');
    report.cues[key] = tt ? tt.cues : null;
    check(key && ok && tt && tt.cues === want, `subtitles ${key}: ${want} cues received and showing`, now.textTracks);
    check(now.textMenu.find((o) => o.selected).value === String(i), `the subtitle menu shows ${key}`);
  }
  await page.selectOption('#text-track', '-1');
  await waitFor(page, () => [...document.querySelector('video').textTracks].every((t) => t.mode !== 'showing'), null, 5_000, 'subtitles off');
  v = await view(page);
  check(v.textTracks.every((t) => t.mode !== 'showing'), 'Off hides every subtitle track', v.textTracks);
  await page.screenshot({ path: path.join(ARTIFACTS, 'tracks.png') });
  check(pageErrors.length === 0 && !v.error, 'no page error, no player error', { pageErrors, error: v.error });
  report.view = v;
} catch (e) {
  check(false, 'the tracks test ran to completion', String(e && e.stack || e));
} finally {
  fs.writeFileSync(path.join(ARTIFACTS, 'tracks.json'), JSON.stringify({ results, ...report }, null, 1));
  await context.close().catch(() => {});
  fs.rmSync(userDataDir, { recursive: true, force: true });
}
const failed = results.filter((r) => !r.ok);
console.log(`# ${results.length - failed.length}/${results.length} checks passed; artifacts in ${ARTIFACTS}`);
process.exit(failed.length ? 1 : 0);
