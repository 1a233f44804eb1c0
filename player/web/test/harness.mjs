// What every browser test script shares: its arguments, Debian's Chromium driven by
// playwright-core (both checked, exit 2 naming scripts/setup.sh when missing), and the
// `ok -` / `not ok -` check lines the Rust tests read.

import fs from 'node:fs';

export const CHROMIUM = process.env.DASHCDN_CHROMIUM || '/usr/bin/chromium';
export const CHROMIUM_ARGS = [
  '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
  '--no-first-run',
  // Containers give /dev/shm 64 MB; Chromium's renderer can run out of it mid-video.
  '--disable-dev-shm-usage',
  // A test cannot click: let the page start playback with sound.
  '--autoplay-policy=no-user-gesture-required',
];

/** `{ positional, flags }` of this process (`--k=v`, bare `--k` is `'true'`); prints
 * `usage` and exits 2 unless there are exactly `count` positional arguments. */
export function cli(count, usage) {
  const argv = process.argv.slice(2);
  const positional = argv.filter((a) => !a.startsWith('--'));
  const flags = Object.fromEntries(argv.filter((a) => a.startsWith('--'))
    .map((a) => { const [k, v] = a.slice(2).split('='); return [k, v ?? 'true']; }));
  if (positional.length !== count) {
    console.error(`usage: ${usage}`);
    process.exit(2);
  }
  return { positional, flags };
}

/** playwright-core's `chromium`, after checking the browser and the package are there. */
export async function loadChromium() {
  if (!fs.existsSync(CHROMIUM)) {
    console.log(`not ok - no browser at ${CHROMIUM}: run scripts/setup.sh (installs Debian's chromium)`);
    process.exit(2);
  }
  try {
    return (await import('playwright-core')).chromium;
  } catch (e) {
    console.log(`not ok - cannot load playwright-core (${e.message}): run scripts/setup.sh (npm ci in player/web)`);
    process.exit(2);
  }
}

/** Every check made so far, for the scripts' reports. */
export const results = [];

/** Records and prints one check; returns whether it held. */
export function check(ok, name, detail) {
  results.push({ ok: !!ok, name, detail: detail ?? null });
  const d = detail === undefined ? '' : ` (${typeof detail === 'string' ? detail : JSON.stringify(detail)})`;
  console.log(`${ok ? 'ok' : 'not ok'} - ${name}${d}`);
  return !!ok;
}

/** How many checks failed. */
export const failures = () => results.filter((r) => !r.ok).length;
