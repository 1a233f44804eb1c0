// dashcdn watch page: dash.js 5 with live stats, a bitrate/buffer chart, ABR rule and
// quality selection, audio-language and subtitle menus, and plain-language errors.
//
// State for tests and curious people lives on `window.dashcdn` (status, error, events,
// samples, fragments, failures) and the dash.js player is `window.dashcdnPlayer`.
//
// dash.js never reaches outside this server on its own: its default timing source
// (time.akamai.com) is replaced by this server's /time, CMCD/CMSD reporting is off, and
// content steering is ignored. The page's CSP (sent by the server) allows scripts and
// styles from this origin only.
'use strict';

(() => {
  const $ = (id) => document.getElementById(id);
  const video = $('video');
  const screen = $('screen');

  /** Everything a test or a person may want to inspect. */
  const state = {
    status: 'idle',
    mpd: null,
    abr: 'abrDynamic',
    error: null,
    events: [],
    dashErrors: [],
    failures: [],
    fragments: [],
    qualityRendered: [],
    samples: [],
    // The menus' view: {audio: [{index, lang, label, channels, roles}], text: [...],
    // audioCurrent, textCurrent (-1: off)}.
    tracks: { audio: [], text: [], audioCurrent: null, textCurrent: -1 },
    // A dynamic MPD: {target, latency, rate, buffer, goToLive} (seconds; rate = the
    // video's playbackRate, which dash.js moves within the ServiceDescription's bounds
    // to catch up). null for VOD.
    live: null,
    // What /vod/ listed: {assets: [...], live: [...]}.
    listing: null,
    startedAt: performance.now(),
  };
  window.dashcdn = state;

  // ---------------------------------------------------------------------------
  // ABR rules. dash.js 5 has no "strategy" setting any more: the rules are switched on
  // and off one by one, and "dynamic" is throughput and BOLA both active (dash.js then
  // hands over between them by buffer level, `abr.hybridSwitchBufferTime`).

  const ABR_RULES = {
    abrDynamic: ['throughputRule', 'bolaRule'],
    abrThroughput: ['throughputRule'],
    abrBola: ['bolaRule'],
    abrL2A: ['l2ARule'],
    abrLoLP: ['loLPRule'],
  };
  const MAIN_RULES = ['throughputRule', 'bolaRule', 'l2ARule', 'loLPRule'];

  function abrSettings(name) {
    const on = ABR_RULES[name] || ABR_RULES.abrDynamic;
    const rules = {};
    for (const rule of MAIN_RULES) rules[rule] = { active: on.includes(rule) };
    return { streaming: { abr: { rules } } };
  }

  /** Settings that keep dash.js on our own servers. */
  function privateSettings() {
    return {
      debug: { logLevel: dashjs.Debug.LOG_LEVEL_WARNING },
      streaming: {
        utcSynchronization: {
          // urn:mpeg:dash:utc:http-iso:2014 — GET returns an ISO 8601 time (ISO/IEC
          // 23009-1 Annex H). Used only when an MPD carries no UTCTiming of its own.
          defaultTimingSource: {
            scheme: 'urn:mpeg:dash:utc:http-iso:2014',
            value: new URL('/time', location.href).href,
          },
        },
        cmcd: { enabled: false, applyParametersFromMpd: false },
        // Live: dash.js takes the latency target and catch-up playback rates from the
        // MPD's ServiceDescription (applyServiceDescription is on by default) and goes into
        // low-latency mode for availabilityTimeComplete="false"; catch-up must be on.
        liveCatchup: { enabled: true },
        cmsd: { enabled: false },
        applyContentSteering: false,
      },
    };
  }

  // ---------------------------------------------------------------------------
  // Event log

  function log(kind, text) {
    const t = (performance.now() - state.startedAt) / 1000;
    state.events.push({ t, kind, text });
    const li = document.createElement('li');
    if (kind === 'error' || kind === 'warn') li.className = kind;
    const time = document.createElement('time');
    time.textContent = t.toFixed(1).padStart(6, ' ') + 's';
    li.append(time, text);
    const list = $('log');
    list.prepend(li);
    while (list.childElementCount > 200) list.lastElementChild.remove();
  }

  function setStatus(status, text) {
    state.status = status;
    const badge = $('status-badge');
    badge.dataset.state = status;
    badge.textContent = status;
    if (status === 'error') {
      screen.dataset.state = 'error';
    } else if (status === 'loading' || status === 'buffering') {
      screen.dataset.state = 'loading';
      $('loading-text').textContent = text || (status === 'loading' ? 'Loading manifest…' : 'Buffering…');
    } else {
      screen.dataset.state = status === 'idle' ? 'idle' : 'playing';
    }
  }

  /** Shows the error card over the video. The first error of a session wins: later ones
   *  are usually consequences of it and go to the log only. */
  function showError(title, text, url) {
    log('error', `${title}: ${text}${url ? ' — ' + url : ''}`);
    if (state.error) return;
    state.error = { title, text, url: url || null };
    $('error-title').textContent = title;
    $('error-text').textContent = text;
    $('error-url').textContent = url || '';
    $('error').hidden = false;
    setStatus('error');
    if (!video.paused) video.pause();
  }

  function clearError() {
    state.error = null;
    $('error').hidden = true;
  }

  // ---------------------------------------------------------------------------
  // Explaining failures

  const HTTP_REASONS = {
    0: 'no response (server unreachable, connection refused, or blocked by CORS)',
    400: '400 Bad Request', 403: '403 Forbidden', 404: '404 Not Found', 410: '410 Gone',
    416: '416 Range Not Satisfiable', 429: '429 Too Many Requests',
    500: '500 Internal Server Error', 502: '502 Bad Gateway', 503: '503 Service Unavailable',
    504: '504 Gateway Timeout',
  };
  const httpReason = (status) => HTTP_REASONS[status] || `HTTP ${status}`;

  /** The last failed response whose URL ends with `suffix` (or the last of `type`). */
  function lastFailure(match) {
    for (let i = state.failures.length - 1; i >= 0; i--) {
      if (match(state.failures[i])) return state.failures[i];
    }
    return null;
  }

  function describeSegment(url) {
    const m = /\/([^/]+)\/(\d+|init)\.(m4s|mp4)(?:\?|$)/.exec(url || '');
    if (!m) return 'A media segment';
    return m[2] === 'init' ? `The init segment of representation ${m[1]}`
      : `Segment ${m[2]} of representation ${m[1]}`;
  }

  function onDashError(e) {
    const err = e.error || {};
    const code = err.code;
    const message = err.message || String(err);
    state.dashErrors.push({ code, message });
    const E = dashjs.MediaPlayer.errors || {};
    const manifestLoad = [E.MANIFEST_LOADER_LOADING_FAILURE_ERROR_CODE, E.DOWNLOAD_ERROR_ID_MANIFEST_CODE];
    const manifestParse = [E.MANIFEST_LOADER_PARSING_FAILURE_ERROR_CODE, E.MANIFEST_ERROR_ID_PARSE_CODE,
      E.MANIFEST_ERROR_ID_NOSTREAMS_CODE, E.MANIFEST_ERROR_ID_MULTIPLEXED_CODE];
    const content = [E.DOWNLOAD_ERROR_ID_CONTENT_CODE, E.DOWNLOAD_ERROR_ID_INITIALIZATION_CODE,
      E.FRAGMENT_LOADER_LOADING_FAILURE_ERROR_CODE];
    if (manifestLoad.includes(code)) {
      const f = lastFailure((x) => x.type === 'MPD') || lastFailure((x) => x.url === state.mpd);
      const why = f ? httpReason(f.status) : 'the request failed';
      showError('Manifest not found', `The MPD could not be loaded: ${why}. Check the URL, or pick an asset from the library.`, f ? f.url : state.mpd);
    } else if (manifestParse.includes(code)) {
      showError('Manifest is not a valid MPD', `dash.js could not read it (${message.replace(/\s+$/, '')}). Re-package the asset or check the origin.`, state.mpd);
    } else if (content.includes(code)) {
      const f = lastFailure((x) => x.type !== 'MPD');
      showError('Segment missing', `${describeSegment(f && f.url)} could not be loaded: ${f ? httpReason(f.status) : message}. The asset on the server is incomplete.`, f ? f.url : null);
    } else if (code === E.MEDIASOURCE_TYPE_UNSUPPORTED_CODE || code === E.CAPABILITY_MEDIASOURCE_ERROR_CODE) {
      showError('This browser cannot play the stream', message);
    } else {
      showError('Playback failed', `${message}${code !== undefined ? ` (dash.js error ${code})` : ''}`);
    }
  }

  // ---------------------------------------------------------------------------
  // Player

  let player = null;

  function ensurePlayer() {
    if (player) return player;
    player = dashjs.MediaPlayer().create();
    window.dashcdnPlayer = player;
    player.updateSettings(privateSettings());
    player.updateSettings(abrSettings(state.abr));
    const ev = dashjs.MediaPlayer.events;

    // Every HTTP response dash.js receives, failed ones kept for error messages. This sees
    // each retry too, so a flaky segment shows in the log before it becomes an error.
    player.addResponseInterceptor((response) => {
      const status = response.status;
      if (!(status >= 200 && status < 300)) {
        const req = response.request && response.request.customData && response.request.customData.request;
        const f = { url: response.url || (response.request && response.request.url), status: status || 0, type: req ? req.type : null, mediaType: req ? req.mediaType : null };
        state.failures.push(f);
        log('warn', f.status ? `HTTP ${f.status} for ${f.url}` : `no response for ${f.url} (aborted or network error)`);
      }
      return Promise.resolve(response);
    });

    player.on(ev.ERROR, onDashError);
    player.on(ev.PLAYBACK_ERROR, (e) => log('warn', `playback error: ${e.error && (e.error.message || e.error)}`));
    player.on(ev.MANIFEST_LOADED, () => log('info', 'manifest loaded'));
    player.on(ev.STREAM_INITIALIZED, onStreamInitialized);
    player.on(ev.QUALITY_CHANGE_RENDERED, (e) => {
      if (!e.newRepresentation) return;
      const r = e.newRepresentation;
      state.qualityRendered.push({ t: video.currentTime, mediaType: e.mediaType, id: r.id, bandwidth: r.bandwidth });
      if (e.mediaType === 'video') {
        log('info', `now showing ${r.id} (${r.width}×${r.height}, ${kbps(r.bandwidth)})`);
        renderLadder();
      }
    });
    player.on(ev.QUALITY_CHANGE_REQUESTED, (e) => {
      if (e.mediaType === 'video' && e.newRepresentation) {
        const reason = e.reason && (e.reason.rule || e.reason.name);
        log('info', `ABR → ${e.newRepresentation.id}${reason ? ' by ' + reason : ''}`);
      }
    });
    player.on(ev.FRAGMENT_LOADING_COMPLETED, (e) => {
      const req = e.request || {};
      if (req.type !== 'MediaSegment') return;
      state.fragments.push({
        mediaType: req.mediaType, rep: req.representation ? req.representation.id : req.representationId,
        index: req.index, url: req.url, ok: !e.error,
      });
    });
    player.on(ev.FRAGMENT_LOADING_ABANDONED, (e) => log('warn', `abandoned a ${e.mediaType} segment download (too slow)`));
    player.on(ev.PLAYBACK_NOT_ALLOWED, () => {
      // Autoplay with sound was refused: play muted rather than sit there.
      log('warn', 'autoplay with sound blocked by the browser: playing muted');
      video.muted = true;
      video.play().catch(() => {});
    });
    player.on(ev.PLAYBACK_ENDED, () => { log('info', 'playback ended'); setStatus('ended'); });
    player.on(ev.TRACK_CHANGE_RENDERED, (e) => {
      if (e.mediaType !== 'audio' && e.mediaType !== 'text') return;
      const t = e.newMediaInfo;
      if (t) log('info', `${e.mediaType} track: ${trackName(t)}`);
      renderTrackMenus();
    });
    player.on(ev.TEXT_TRACKS_ADDED, renderTrackMenus);

    player.initialize(video, null, true);
    return player;
  }

  function onStreamInitialized() {
    const dynamic = player.isDynamic();
    $('live-panel').hidden = !dynamic;
    if (dynamic && !state.live) {
      state.live = { target: player.getTargetLiveDelay(), latency: NaN, rate: 1, buffer: NaN, goToLive: 0 };
      $('stat-target').textContent = `${state.live.target.toFixed(2)} s`;
      log('info', `live stream: low-latency mode, target latency ${state.live.target.toFixed(2)} s (from the MPD)`);
    }
    const reps = player.getRepresentationsByType('video') || [];
    const select = $('quality');
    select.replaceChildren(new Option('Auto (ABR)', 'auto'));
    for (const r of [...reps].sort((a, b) => b.bandwidth - a.bandwidth)) {
      select.add(new Option(`${r.id} · ${r.width}×${r.height} · ${kbps(r.bandwidth)}`, r.id));
    }
    select.value = player.getSettings().streaming.abr.autoSwitchBitrate.video ? 'auto' : (current('video') || {}).id || 'auto';
    select.disabled = reps.length === 0;
    const audio = player.getCurrentTrackFor('audio');
    log('info', `stream ready: ${reps.length} video representation(s)${audio ? ', audio ' + (audio.codec || '') : ', no audio'}`);
    renderLadder();
    renderTrackMenus();
  }

  // ---------------------------------------------------------------------------
  // Audio languages and subtitles. Each audio AdaptationSet is a track (dash.js
  // getTracksFor / setCurrentTrack); text tracks are switched by index (setTextTrack),
  // -1 being off.

  function labelOf(t) {
    const l = (t.labels || [])[0];
    return (l && (l.text || (typeof l === 'string' ? l : ''))) || '';
  }

  function trackName(t) {
    const lang = t.lang || 'und';
    const label = labelOf(t);
    const roles = (t.roles || []).map((r) => (r && r.value) || r)
      .filter((r) => typeof r === 'string' && !['main', 'alternate', 'subtitle'].includes(r));
    const parts = [label || lang];
    if (label && lang !== 'und' && !label.includes(lang)) parts.push(`(${lang})`);
    if (roles.length) parts.push(`· ${roles.join(', ')}`);
    return parts.join(' ');
  }

  function describeTrack(t, i) {
    const ch = (t.audioChannelConfiguration || []).map((c) => (c && c.value) || c);
    return {
      index: i, lang: t.lang || 'und', label: labelOf(t), name: trackName(t),
      roles: (t.roles || []).map((r) => (r && r.value) || r), channels: ch,
    };
  }

  function renderTrackMenus() {
    if (!player) return;
    let audio = [];
    let text = [];
    try { audio = player.getTracksFor('audio') || []; } catch (_) { /* not ready */ }
    try { text = player.getTracksFor('text') || []; } catch (_) { /* not ready */ }
    const cur = player.getCurrentTrackFor('audio');
    const audioCurrent = cur ? audio.findIndex((t) => t === cur || (t.id === cur.id && t.index === cur.index)) : -1;
    let textCurrent = -1;
    try { textCurrent = player.getCurrentTextTrackIndex(); } catch (_) { /* no text */ }
    if (!(textCurrent >= 0 && textCurrent < text.length)) textCurrent = -1;
    state.tracks = {
      audio: audio.map(describeTrack),
      text: text.map(describeTrack),
      audioCurrent: audioCurrent >= 0 ? audioCurrent : null,
      textCurrent,
    };
    const a = $('audio-track');
    a.replaceChildren(...(audio.length ? audio.map((t, i) => new Option(trackName(t), String(i))) : [new Option('—', '')]));
    a.value = audioCurrent >= 0 ? String(audioCurrent) : (audio.length ? '0' : '');
    a.disabled = audio.length < 2;
    const s = $('text-track');
    s.replaceChildren(new Option('Off', '-1'), ...text.map((t, i) => new Option(trackName(t), String(i))));
    s.value = String(textCurrent);
    s.disabled = text.length === 0;
  }

  let loadToken = 0;

  async function load(url) {
    if (!url) return;
    if (typeof dashjs === 'undefined') return dashjsMissing();
    const token = ++loadToken;
    let absolute;
    try {
      absolute = new URL(url, location.href).href;
    } catch (_) {
      return showError('Not a URL', `"${url}" is not an MPD address. Paste something like http://host/vod/asset/manifest.mpd.`);
    }
    clearError();
    Object.assign(state, { mpd: absolute, failures: [], fragments: [], qualityRendered: [], samples: [], dashErrors: [], live: null });
    $('live-panel').hidden = true;
    chartStart = performance.now();
    $('mpd-url').value = url;
    const params = new URLSearchParams(location.search);
    params.set('mpd', url);
    history.replaceState(null, '', `${location.pathname}?${params}`);
    markCurrentAsset();
    setStatus('loading');
    video.controls = true;
    log('info', `loading ${absolute}`);
    const problem = await checkManifest(absolute);
    if (token !== loadToken) return; // another load started meanwhile
    if (problem) return showError(problem.title, problem.text, absolute);
    ensurePlayer().attachSource(absolute);
  }

  /** Fetches the MPD once before dash.js does, to explain a failure in plain words and to
   *  keep non-XML away from dash.js: dash.js 5.2's parser spins forever on some truncated
   *  MPDs, freezing the tab, while the browser's DOMParser reports them in milliseconds.
   *  The MPD's short max-age lets dash.js's own request reuse this response. */
  async function checkManifest(url) {
    let response;
    try {
      response = await fetch(url);
    } catch (e) {
      return { title: 'Manifest unreachable', text: `The MPD could not be fetched (${e.message}): the server is down, the address is wrong, or it does not allow cross-origin requests (CORS).` };
    }
    if (!response.ok) {
      state.failures.push({ url, status: response.status, type: 'MPD', mediaType: null });
      return { title: 'Manifest not found', text: `The MPD could not be loaded: ${httpReason(response.status)}. Check the URL, or pick an asset from the library.` };
    }
    const text = await response.text();
    const doc = new DOMParser().parseFromString(text, 'application/xml');
    const parseError = doc.getElementsByTagName('parsererror')[0];
    if (parseError) {
      const why = parseError.textContent.replace(/^.*?errors?:/s, '').split(/Below is/)[0].trim();
      return { title: 'Manifest is not a valid MPD', text: `It is not well-formed XML (${why || 'parse error'}). Re-package the asset or check the origin.` };
    }
    const root = doc.documentElement.localName;
    if (root !== 'MPD') {
      return { title: 'Manifest is not a valid MPD', text: `Its root element is <${root}>, not <MPD>: this is not a DASH manifest.` };
    }
    return null;
  }

  function dashjsMissing() {
    showError('dash.js is not installed on this server',
      'The page could not load /web/dash.all.min.js. On the server, run scripts/setup.sh (it runs `npm ci` in player/web), then reload.');
  }

  // ---------------------------------------------------------------------------
  // Stats, ladder and chart

  const kbps = (bps) => (bps >= 1e6 ? `${(bps / 1e6).toFixed(2)} Mbit/s` : `${Math.round(bps / 1e3)} kbit/s`);

  function current(type) {
    try { return player && player.getCurrentRepresentationForType(type); } catch (_) { return null; }
  }

  /** The representation on screen: the last rendered video quality, else the scheduled one. */
  function shown() {
    const rendered = state.qualityRendered.filter((q) => q.mediaType === 'video').pop();
    const reps = (player && player.getRepresentationsByType('video')) || [];
    return (rendered && reps.find((r) => r.id === rendered.id)) || current('video');
  }

  function renderLadder() {
    const reps = ((player && player.getRepresentationsByType('video')) || []).slice().sort((a, b) => b.bandwidth - a.bandwidth);
    const top = reps.length ? reps[0].bandwidth : 1;
    const on = shown();
    const rows = reps.map((r) => {
      const row = document.createElement('div');
      row.className = 'rung' + (on && on.id === r.id ? ' active' : '');
      const name = document.createElement('span');
      name.textContent = r.id;
      const track = document.createElement('span');
      track.className = 'bar-track';
      const fill = document.createElement('span');
      fill.className = 'bar-fill';
      fill.style.display = 'block';
      fill.style.width = `${Math.max(3, (100 * r.bandwidth) / top)}%`;
      track.append(fill);
      const rate = document.createElement('span');
      rate.className = 'kbps';
      rate.textContent = kbps(r.bandwidth);
      row.append(name, track, rate);
      return row;
    });
    $('ladder').replaceChildren(...rows);
  }

  function tick() {
    if (!player || !state.mpd) return;
    const rep = shown();
    let buffer = NaN;
    let throughput = NaN;
    try { buffer = player.getBufferLength('video'); } catch (_) { /* not ready */ }
    try { throughput = player.getAverageThroughput('video'); } catch (_) { /* not ready */ }
    const q = video.getVideoPlaybackQuality ? video.getVideoPlaybackQuality() : null;
    const audioRep = current('audio');
    const audioTrack = player.getCurrentTrackFor && player.getCurrentTrackFor('audio');

    $('stat-rep').textContent = rep ? rep.id : '—';
    $('stat-res').textContent = rep ? `${rep.width}×${rep.height}` : '—';
    $('stat-bitrate').textContent = rep ? kbps(rep.bandwidth) : '—';
    $('stat-buffer').textContent = Number.isFinite(buffer) ? `${buffer.toFixed(1)} s` : '—';
    $('stat-throughput').textContent = Number.isFinite(throughput) && throughput > 0 ? kbps(throughput * 1000) : '—';
    $('stat-dropped').textContent = q ? `${q.droppedVideoFrames} / ${q.totalVideoFrames}` : '—';
    $('stat-audio').textContent = audioRep
      ? `${audioTrack && audioTrack.lang && audioTrack.lang !== 'und' ? audioTrack.lang + ' · ' : ''}${kbps(audioRep.bandwidth)}${video.muted ? ' (muted)' : ''}`
      : '—';
    const duration = Number.isFinite(video.duration) ? video.duration : 0;
    let latency = NaN;
    if (state.live) {
      try { latency = player.getCurrentLiveLatency(); } catch (_) { /* not ready */ }
      Object.assign(state.live, { latency, rate: video.playbackRate, buffer });
      const behind = Number.isFinite(latency) && latency > 2 * state.live.target;
      $('live-panel').dataset.behind = String(behind);
      $('stat-latency').textContent = Number.isFinite(latency) && latency > 0 ? `${latency.toFixed(2)} s` : '—';
      $('stat-rate').textContent = `${video.playbackRate.toFixed(2)}×${video.playbackRate > 1.005 ? ' catching up' : video.playbackRate < 0.995 ? ' slowing' : ''}`;
      $('stat-live-buffer').textContent = Number.isFinite(buffer) ? `${buffer.toFixed(2)} s` : '—';
      $('stat-position').textContent = Number.isFinite(latency) && latency > 0 ? `live −${latency.toFixed(1)} s` : 'live';
    } else {
      $('stat-position').textContent = duration ? `${video.currentTime.toFixed(1)} / ${duration.toFixed(1)} s` : '—';
    }

    state.samples.push({
      t: (performance.now() - chartStart) / 1000,
      position: video.currentTime,
      bitrate: rep ? rep.bandwidth : NaN,
      buffer,
      throughput: throughput * 1000,
      dropped: q ? q.droppedVideoFrames : 0,
      decoded: q ? q.totalVideoFrames : 0,
      latency,
      rate: video.playbackRate,
    });
    if (state.samples.length > 2400) state.samples.shift();
    renderLadder();
    drawChart();
  }

  let chartStart = performance.now();
  const CHART_WINDOW = 120; // seconds of history on screen

  function drawChart() {
    const canvas = $('chart');
    const dpr = window.devicePixelRatio || 1;
    const w = canvas.clientWidth;
    const h = canvas.clientHeight;
    if (canvas.width !== Math.round(w * dpr) || canvas.height !== Math.round(h * dpr)) {
      canvas.width = Math.round(w * dpr);
      canvas.height = Math.round(h * dpr);
    }
    const ctx = canvas.getContext('2d');
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, w, h);
    const pad = { l: 64, r: 44, t: 10, b: 22 };
    const pw = w - pad.l - pad.r;
    const ph = h - pad.t - pad.b;
    const css = getComputedStyle(document.documentElement);
    const color = (name) => css.getPropertyValue(name).trim();

    const samples = state.samples;
    const now = samples.length ? samples[samples.length - 1].t : 0;
    const t0 = Math.max(0, now - CHART_WINDOW);
    const t1 = Math.max(t0 + 20, now);
    const visible = samples.filter((s) => s.t >= t0);
    const reps = (player && player.getRepresentationsByType('video')) || [];
    const topRung = Math.max(0, ...reps.map((r) => r.bandwidth));
    // Four grid steps of round values on each axis.
    const maxRate = 4 * niceCeil(Math.max(topRung * 1.1, 1e5, ...visible.map((s) => (Number.isFinite(s.bitrate) ? s.bitrate : 0))) / 4);
    const maxBuf = 4 * Math.ceil(Math.max(8, 1.1 * Math.max(...visible.map((s) => (Number.isFinite(s.buffer) ? s.buffer : 0)))) / 4);
    const x = (t) => pad.l + ((t - t0) / (t1 - t0)) * pw;
    const yRate = (v) => pad.t + ph - (Math.min(v, maxRate) / maxRate) * ph;
    const yBuf = (v) => pad.t + ph - (Math.min(v, maxBuf) / maxBuf) * ph;

    // Grid and axes.
    ctx.font = '11px ui-monospace, "DejaVu Sans Mono", monospace';
    ctx.lineWidth = 1;
    for (let i = 0; i <= 4; i++) {
      const y = pad.t + (ph * i) / 4;
      ctx.strokeStyle = 'rgba(138,151,179,0.15)';
      ctx.beginPath(); ctx.moveTo(pad.l, y + 0.5); ctx.lineTo(pad.l + pw, y + 0.5); ctx.stroke();
      ctx.fillStyle = color('--bitrate');
      ctx.textAlign = 'right';
      ctx.fillText(kbpsShort(maxRate * (1 - i / 4)), pad.l - 8, y + 4);
      ctx.fillStyle = color('--buffer');
      ctx.textAlign = 'left';
      const secs = maxBuf * (1 - i / 4);
      ctx.fillText(`${Number.isInteger(secs) ? secs : secs.toFixed(1)}s`, pad.l + pw + 8, y + 4);
    }
    ctx.fillStyle = color('--muted');
    ctx.textAlign = 'center';
    const step = (t1 - t0) > 60 ? 20 : 5;
    for (let t = Math.ceil(t0 / step) * step; t <= t1; t += step) {
      ctx.fillText(`${t}s`, x(t), h - 6);
    }
    // Rungs as faint dashed lines, so a step in the bitrate line reads as a switch.
    ctx.setLineDash([3, 5]);
    ctx.strokeStyle = 'rgba(34,211,238,0.22)';
    for (const r of reps) {
      const y = yRate(r.bandwidth);
      ctx.beginPath(); ctx.moveTo(pad.l, y); ctx.lineTo(pad.l + pw, y); ctx.stroke();
    }
    ctx.setLineDash([]);

    const line = (key, yOf, stroke, width, stepped) => {
      ctx.strokeStyle = stroke;
      ctx.lineWidth = width;
      ctx.beginPath();
      let started = false;
      let lastY = 0;
      for (const s of visible) {
        const v = s[key];
        if (!Number.isFinite(v) || v <= 0 && key !== 'buffer') { started = false; continue; }
        const px = x(s.t);
        const py = yOf(v);
        if (!started) { ctx.moveTo(px, py); started = true; } else if (stepped) { ctx.lineTo(px, lastY); ctx.lineTo(px, py); } else { ctx.lineTo(px, py); }
        lastY = py;
      }
      ctx.stroke();
    };
    line('throughput', yRate, color('--throughput'), 1.5, false);
    // Throughput on loopback is far above any rung: say so instead of a misleading flat line.
    const lastThroughput = visible.length ? visible[visible.length - 1].throughput : NaN;
    if (Number.isFinite(lastThroughput) && lastThroughput > maxRate) {
      ctx.fillStyle = color('--throughput');
      ctx.textAlign = 'right';
      ctx.fillText(`throughput ${kbps(lastThroughput)} ↑`, pad.l + pw - 4, pad.t + 14);
    }
    line('buffer', yBuf, color('--buffer'), 2, false);
    line('bitrate', yRate, color('--bitrate'), 2.5, true);
  }

  function niceCeil(v) {
    const p = Math.pow(10, Math.floor(Math.log10(v)));
    for (const m of [1, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10]) if (m * p >= v) return m * p;
    return 10 * p;
  }
  const kbpsShort = (bps) => (bps >= 1e6 ? `${+(bps / 1e6).toFixed(2)}M` : `${Math.round(bps / 1e3)}k`);

  // ---------------------------------------------------------------------------
  // Library (/vod/ on this server)

  async function loadAssets() {
    const list = $('assets');
    try {
      const response = await fetch('/vod/', { cache: 'no-cache' });
      if (!response.ok) throw new Error(httpReason(response.status));
      const listing = await response.json();
      state.listing = listing;
      const { assets } = listing;
      renderLive(listing.live || []);
      if (!assets.length) {
        list.innerHTML = '<li class="muted">No assets yet: <code>dashcdn origin package VIDEO --asset NAME</code></li>';
        return;
      }
      list.replaceChildren(...assets.map((a) => {
        const li = document.createElement('li');
        const b = document.createElement('button');
        b.type = 'button';
        b.className = 'asset';
        b.dataset.manifest = a.manifest;
        const video = (a.representations || []).filter((r) => r.kind === 'video');
        const top = video.reduce((m, r) => (r.height > (m ? m.height : 0) ? r : m), null);
        const name = document.createElement('span');
        name.textContent = a.name;
        const info = document.createElement('small');
        info.textContent = [
          a.duration_secs ? `${a.duration_secs.toFixed(0)} s` : null,
          top ? `up to ${top.height}p` : null,
          video.length ? `${video.length} rungs` : null,
          tracksText(a.tracks || []),
        ].filter(Boolean).join(' · ');
        b.append(name, info);
        b.addEventListener('click', () => load(a.manifest));
        li.append(b);
        return li;
      }));
      markCurrentAsset();
    } catch (e) {
      list.innerHTML = '';
      const li = document.createElement('li');
      li.className = 'muted';
      li.textContent = `No asset listing at /vod/ (${e.message}). Paste an MPD URL above.`;
      list.append(li);
    }
  }

  /** "audio eng, fra (5.1) · subtitles eng, fra" from the listing's tracks. */
  function tracksText(tracks) {
    const langs = (kind) => tracks.filter((t) => t.kind === kind).map((t) =>
      t.lang + ((t.channels || []).includes(6) ? ' (5.1)' : ''));
    const audio = langs('audio');
    const text = langs('text');
    return [
      audio.length > 1 || (audio.length === 1 && audio[0] !== 'und') ? `audio ${audio.join(', ')}` : null,
      text.length ? `subtitles ${text.join(', ')}` : null,
    ].filter(Boolean).join(' · ');
  }

  function renderLive(channels) {
    $('live-channels').replaceChildren(...channels.map((c) => {
      const li = document.createElement('li');
      const b = document.createElement('button');
      b.type = 'button';
      b.className = 'asset';
      b.dataset.manifest = c.manifest;
      b.dataset.live = c.name;
      const tag = document.createElement('span');
      tag.className = 'live-tag';
      tag.textContent = 'LIVE';
      const name = document.createElement('span');
      name.textContent = c.name;
      const info = document.createElement('small');
      info.textContent = 'low-latency DASH';
      b.append(tag, name, info);
      b.addEventListener('click', () => load(c.manifest));
      li.append(b);
      return li;
    }));
  }

  function markCurrentAsset() {
    for (const b of document.querySelectorAll('.asset')) {
      b.classList.toggle('current', !!state.mpd && new URL(b.dataset.manifest, location.href).href === state.mpd);
    }
  }

  // ---------------------------------------------------------------------------
  // Wiring

  $('load-form').addEventListener('submit', (e) => {
    e.preventDefault();
    load($('mpd-url').value.trim());
  });
  $('error-retry').addEventListener('click', () => state.mpd && load(state.mpd));
  $('assets-refresh').addEventListener('click', loadAssets);
  $('go-live').addEventListener('click', () => {
    if (!player || !state.live) return;
    state.live.goToLive += 1;
    log('info', `go to live (latency was ${Number.isFinite(state.live.latency) ? state.live.latency.toFixed(2) + ' s' : 'unknown'})`);
    player.seekToOriginalLive();
    if (video.paused) video.play().catch(() => {});
  });

  $('abr').addEventListener('change', (e) => {
    state.abr = e.target.value;
    log('info', `ABR rule: ${e.target.selectedOptions[0].textContent}`);
    if (player) player.updateSettings(abrSettings(state.abr));
  });

  $('quality').addEventListener('change', (e) => {
    if (!player) return;
    const id = e.target.value;
    if (id === 'auto') {
      player.updateSettings({ streaming: { abr: { autoSwitchBitrate: { video: true } } } });
      log('info', 'quality: automatic');
    } else {
      player.updateSettings({ streaming: { abr: { autoSwitchBitrate: { video: false } } } });
      player.setRepresentationForTypeById('video', id, true);
      log('info', `quality: fixed at ${id}`);
    }
  });

  $('audio-track').addEventListener('change', (e) => {
    if (!player || e.target.value === '') return;
    const track = (player.getTracksFor('audio') || [])[Number(e.target.value)];
    if (!track) return;
    log('info', `audio: switching to ${trackName(track)}`);
    player.setCurrentTrack(track);
  });

  $('text-track').addEventListener('change', (e) => {
    if (!player) return;
    const i = Number(e.target.value);
    if (i < 0) {
      player.enableText(false);
      log('info', 'subtitles: off');
    } else {
      player.enableText(true);
      player.setTextTrack(i);
      const t = (player.getTracksFor('text') || [])[i];
      log('info', `subtitles: ${t ? trackName(t) : i}`);
    }
    renderTrackMenus();
  });

  video.addEventListener('playing', () => state.status !== 'error' && setStatus('playing'));
  video.addEventListener('waiting', () => state.status !== 'error' && state.mpd && setStatus('buffering'));
  video.addEventListener('pause', () => !['error', 'ended'].includes(state.status) && state.mpd && setStatus('paused'));
  video.addEventListener('seeking', () => log('info', `seeking to ${video.currentTime.toFixed(1)} s`));
  video.addEventListener('error', () => {
    const err = video.error;
    if (err) showError('The browser could not play the media', `${err.message || 'media error'} (MediaError ${err.code}).`);
  });

  if (typeof dashjs === 'undefined') {
    dashjsMissing();
  } else {
    $('dashjs-version').textContent = typeof dashjs.Version === 'function' ? dashjs.Version() : String(dashjs.Version || '5');
  }

  const params = new URLSearchParams(location.search);
  const abr = params.get('abr');
  if (abr && ABR_RULES[abr]) {
    state.abr = abr;
    $('abr').value = abr;
  }
  loadAssets();
  setInterval(tick, 500);
  window.addEventListener('resize', drawChart);
  drawChart();
  if (params.get('mpd')) load(params.get('mpd'));
})();
