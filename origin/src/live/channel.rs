//! One channel's encoder: the ffmpeg process, a segmenter thread per rung reading its
//! FIFO, and the supervisor that restarts ffmpeg with backoff when it dies (each run is
//! a new `Period`, so an input that goes away and comes back resumes in players).

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::{self, BufReader};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, SystemTime};

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncBufReadExt, BufReader as AsyncBufReader};
use tokio::process::{Child, Command};
use tokio::task::JoinHandle;
use tokio::time::{sleep, Instant};
use tracing::{debug, info, warn};

use super::fmp4::{self, InitInfo};
use super::input::ffmpeg_args;
use super::store::{RecordState, Store, Timing, Track};
use super::{LiveConfig, Rung};

/// Why a live channel did not start.
#[derive(Debug, thiserror::Error)]
pub enum LiveError {
    #[error("--live {0:?}: expected NAME=INPUT, NAME of letters, digits, '-' and '_'")]
    Flag(String),
    #[error("live channel {name:?}: {why}")]
    Config { name: String, why: &'static str },
    #[error("live channel {name:?}: ffmpeg cannot use input {input:?}: {reason}")]
    Input {
        name: String,
        input: String,
        reason: String,
    },
    #[error("live channel {name:?}: cannot record into the library {}", library.display())]
    Record {
        name: String,
        library: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("live channel {name:?}: starting ffmpeg")]
    Spawn {
        name: String,
        #[source]
        source: io::Error,
    },
}

/// Why an admin call could not start or stop a recording.
#[derive(Debug, thiserror::Error)]
pub(crate) enum RecordError {
    #[error("already recording (since segment {0})")]
    Recording(u64),
    #[error("not recording")]
    NotRecording,
    #[error("this origin has no library to record into")]
    NoLibrary,
    #[error("cannot create the recording in the library")]
    Io(#[source] io::Error),
    #[error("the recording writer did not answer")]
    Lost,
}

/// A stopped recording.
pub(crate) struct Stopped {
    /// The published asset's folder; `None`: nothing was recorded.
    pub(crate) asset: Option<PathBuf>,
    /// With `split`: the first segment of the recording that goes on.
    pub(crate) next_from: Option<u64>,
}

/// How long the first run may take to produce its first chunk of every rung.
const FIRST_MEDIA_TIMEOUT: Duration = Duration::from_secs(30);
const BACKOFF_MIN: Duration = Duration::from_secs(1);
const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// A run that lasted this long was healthy: the next failure starts backing off afresh.
const HEALTHY_RUN: Duration = Duration::from_secs(60);

pub(crate) struct Channel {
    pub(crate) config: LiveConfig,
    pub(crate) store: Arc<Store>,
    /// The origin's library, where recordings are published (`None`: no recording).
    library: Option<PathBuf>,
    /// The supervisor; aborting it drops the ffmpeg child, which kills it.
    supervisor: JoinHandle<()>,
    /// `record_split`: publishes the recording every so many segments.
    splitter: Option<JoinHandle<()>>,
}

impl Drop for Channel {
    fn drop(&mut self) {
        self.supervisor.abort();
        if let Some(s) = &self.splitter {
            s.abort();
        }
    }
}

impl Channel {
    /// Starts the encoder; with `config.record`, records into `library`.
    pub(crate) async fn start(
        config: LiveConfig,
        library: Option<&Path>,
    ) -> Result<Channel, LiveError> {
        let store = Arc::new(Store::new(Timing {
            segment: config.segment_duration,
            chunk: config.chunk_duration,
            window: config.window,
        }));
        if config.record {
            let Some(library) = library else {
                return Err(LiveError::Config {
                    name: config.name.clone(),
                    why: "record = true needs a library to record into",
                });
            };
            let recorder =
                super::record::start(&config, library).map_err(|source| LiveError::Record {
                    name: config.name.clone(),
                    library: library.to_owned(),
                    source,
                })?;
            // Nothing is running yet: this cannot find a recording in progress.
            let _ = store.start_recording(recorder);
        }
        let mut run = Run::spawn(&config, &store)?;
        let waited = if config.input.waits_for_publisher() {
            // A listener waits for its publisher: only an immediate failure is an error.
            tokio::select! {
                status = run.child.wait() => Some(status),
                _ = sleep(Duration::from_secs(1)) => None,
            }
        } else {
            run.first_media(&config, &store).await
        };
        if let Some(status) = waited {
            let reason = run.reason(status).await;
            return Err(LiveError::Input {
                name: config.name.clone(),
                input: config.input.to_string(),
                reason,
            });
        }
        info!(channel = %config.name, input = %config.input, "live channel started");
        let supervisor = tokio::spawn(supervise(config.clone(), Arc::clone(&store), run));
        let library = library.map(Path::to_owned);
        let splitter = match (config.record_split, &library) {
            (Some(every), Some(lib)) => Some(tokio::spawn(split_every(
                config.clone(),
                Arc::clone(&store),
                lib.clone(),
                every,
            ))),
            _ => None,
        };
        Ok(Channel {
            config,
            store,
            library,
            supervisor,
            splitter,
        })
    }

    /// Starts recording with the next segment (the admin call); returns its number.
    pub(crate) fn start_recording(&self) -> Result<u64, RecordError> {
        if let Some(from) = self.store.recording() {
            return Err(RecordError::Recording(from));
        }
        let library = self.library.as_deref().ok_or(RecordError::NoLibrary)?;
        let recorder = super::record::start(&self.config, library).map_err(RecordError::Io)?;
        let from = self
            .store
            .start_recording(recorder)
            .map_err(|state| match state {
                RecordState::Recording(from) => RecordError::Recording(from),
                RecordState::NotRecording => RecordError::NotRecording,
            })?;
        info!(channel = %self.config.name, from_segment = from, "live recording started");
        Ok(from)
    }

    /// Stops the recording where the segment in progress ends and publishes it (the same
    /// writer as at shutdown); returns the asset's folder (`None`: nothing was recorded).
    /// With `split`, a new recording starts with the next segment in the same step, so
    /// the two assets meet without a gap or an overlap.
    pub(crate) async fn stop_recording(&self, split: bool) -> Result<Stopped, RecordError> {
        stop_recording(&self.config, &self.store, self.library.as_deref(), split).await
    }

    /// Stops the encoder and, when recording, publishes the recording; returns the
    /// assets' folders.
    pub(crate) async fn stop(&self) -> Vec<PathBuf> {
        self.supervisor.abort();
        if let Some(s) = &self.splitter {
            s.abort();
        }
        // The abort drops the run, which kills ffmpeg; what its segmenters already read
        // is in the recording, and the segment in progress ends where the encoder stopped.
        for _ in 0..200 {
            if self.supervisor.is_finished() {
                break;
            }
            sleep(Duration::from_millis(10)).await;
        }
        self.store.end_run();
        let answers = self.store.finish_recording();
        tokio::task::spawn_blocking(move || {
            answers
                .into_iter()
                .filter_map(|a| a.recv().ok().flatten())
                .collect()
        })
        .await
        .unwrap_or_default()
    }
}

/// [`Channel::stop_recording`], for the channel and its `record_split` task.
async fn stop_recording(
    config: &LiveConfig,
    store: &Arc<Store>,
    library: Option<&Path>,
    split: bool,
) -> Result<Stopped, RecordError> {
    let next = if split {
        let library = library.ok_or(RecordError::NoLibrary)?;
        Some(super::record::start(config, library).map_err(RecordError::Io)?)
    } else {
        None
    };
    let (id, published, next_from) = store
        .stop_recording(next)
        .map_err(|_| RecordError::NotRecording)?;
    // Whole segments only: the stop waits for the segment in progress to end, at most
    // a segment (and a margin for a slow encoder, after which it ends where it is).
    let wait = config.segment_duration * 2 + Duration::from_secs(1);
    let store = Arc::clone(store);
    let asset = tokio::task::spawn_blocking(move || match published.recv_timeout(wait) {
        Ok(asset) => Ok(asset),
        Err(mpsc::RecvTimeoutError::Timeout) => {
            store.finish_now(id);
            published.recv_timeout(Duration::from_secs(30))
        }
        Err(e) => Err(e),
    })
    .await
    .ok()
    .and_then(Result::ok)
    .ok_or(RecordError::Lost)?;
    match &asset {
        Some(dir) => {
            info!(channel = %config.name, asset = %dir.display(), "live recording saved")
        }
        None => info!(channel = %config.name, "live recording stopped with nothing recorded"),
    }
    Ok(Stopped { asset, next_from })
}

/// `record_split`: whenever a recording reaches `every` (whole segments), it is split —
/// published, and the next one goes on from the very next segment.
async fn split_every(config: LiveConfig, store: Arc<Store>, library: PathBuf, every: Duration) {
    let segments = (every.as_secs_f64() / config.segment_duration.as_secs_f64())
        .round()
        .max(1.0) as u64;
    let mut changes = store.subscribe();
    while changes.changed().await.is_ok() {
        let (Some(from), Some(latest)) = (store.recording(), store.latest()) else {
            continue;
        };
        // The recording's last segment has begun: split where it ends.
        if latest + 1 >= from + segments {
            if let Err(e) = stop_recording(&config, &store, Some(&library), true).await {
                warn!(channel = %config.name, error = %dashcdn_config::chain(&e),
                    "record_split: could not split the recording");
                sleep(config.segment_duration).await;
            }
        }
    }
}

/// Waits for each run to end and starts the next, backing off while it keeps failing.
async fn supervise(config: LiveConfig, store: Arc<Store>, mut run: Run) {
    let mut backoff = BACKOFF_MIN;
    loop {
        let status = run.child.wait().await;
        let lasted = run.started.elapsed();
        store.end_run();
        let reason = run.reason(status).await;
        drop(run);
        if lasted >= HEALTHY_RUN {
            backoff = BACKOFF_MIN;
        }
        warn!(channel = %config.name, input = %config.input, %reason, restart_in = ?backoff,
            "live encoder stopped; restarting");
        sleep(backoff).await;
        backoff = (backoff * 2).min(BACKOFF_MAX);
        run = loop {
            match Run::spawn(&config, &store) {
                Ok(run) => break run,
                Err(e) => {
                    warn!(channel = %config.name, error = %dashcdn_config::chain(&e), "restart failed");
                    sleep(backoff).await;
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                }
            }
        };
    }
}

/// One ffmpeg run and its FIFOs.
struct Run {
    child: Child,
    started: Instant,
    fifos: Vec<PathBuf>,
    /// The last lines ffmpeg wrote to stderr (errors only: `-loglevel error`).
    stderr: Arc<Mutex<VecDeque<String>>>,
    stderr_task: JoinHandle<()>,
    /// Holds the FIFOs; removed when the run is dropped.
    _dir: tempfile::TempDir,
}

impl Run {
    fn spawn(config: &LiveConfig, store: &Arc<Store>) -> Result<Run, LiveError> {
        let spawn_err = |source| LiveError::Spawn {
            name: config.name.clone(),
            source,
        };
        let dir = tempfile::Builder::new()
            .prefix(&format!("dashcdn-live-{}-", config.name))
            .tempdir()
            .map_err(spawn_err)?;
        let fifos: Vec<PathBuf> = config
            .ladder
            .iter()
            .map(|r| dir.path().join(format!("{}.mp4", r.id)))
            .collect();
        for fifo in &fifos {
            let status = std::process::Command::new("mkfifo")
                .arg(fifo)
                .status()
                .map_err(spawn_err)?;
            if !status.success() {
                return Err(spawn_err(io::Error::other("mkfifo failed")));
            }
        }
        let mut child = Command::new("ffmpeg")
            .args(ffmpeg_args(config, &fifos))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(spawn_err)?;
        let stderr = Arc::new(Mutex::new(VecDeque::new()));
        let lines = child.stderr.take().map(AsyncBufReader::new);
        let sink = Arc::clone(&stderr);
        let name = config.name.clone();
        let stderr_task = tokio::spawn(async move {
            let Some(mut lines) = lines.map(|r| r.lines()) else {
                return;
            };
            while let Ok(Some(line)) = lines.next_line().await {
                debug!(channel = %name, "ffmpeg: {line}");
                let mut q = sink.lock().unwrap_or_else(|e| e.into_inner());
                if q.len() == 5 {
                    q.pop_front();
                }
                q.push_back(line);
            }
        });
        let period = Arc::new(Mutex::new(None));
        for (rung, fifo) in config.ladder.iter().zip(&fifos) {
            let (rung, fifo, store, period) = (
                rung.clone(),
                fifo.clone(),
                Arc::clone(store),
                Arc::clone(&period),
            );
            let name = config.name.clone();
            std::thread::Builder::new()
                .name(format!("live-{}-{}", config.name, rung.id))
                .spawn(move || {
                    if let Err(e) = segment_track(&fifo, &rung, &store, &period) {
                        debug!(channel = %name, rung = %rung.id, error = %e, "segmenter stopped");
                    }
                })
                .map_err(spawn_err)?;
        }
        Ok(Run {
            child,
            started: Instant::now(),
            fifos,
            stderr,
            stderr_task,
            _dir: dir,
        })
    }

    /// Waits until every rung has its init segment and a first chunk; `Some(status)` if
    /// ffmpeg exited first (or took too long: then it is killed).
    async fn first_media(
        &mut self,
        config: &LiveConfig,
        store: &Store,
    ) -> Option<io::Result<std::process::ExitStatus>> {
        let deadline = Instant::now() + FIRST_MEDIA_TIMEOUT;
        loop {
            let ready = config
                .ladder
                .iter()
                .all(|r| store.init(&r.id, None).is_some())
                && store.latest().is_some();
            if ready {
                return None;
            }
            if Instant::now() > deadline {
                let _ = self.child.start_kill();
                let _ = self.child.wait().await;
                return Some(Err(io::Error::other(format!(
                    "no media within {FIRST_MEDIA_TIMEOUT:?}"
                ))));
            }
            tokio::select! {
                status = self.child.wait() => return Some(status),
                _ = sleep(Duration::from_millis(50)) => {}
            }
        }
    }

    /// A one-line reason for ffmpeg's exit: its last error line, or the exit status.
    async fn reason(&mut self, status: io::Result<std::process::ExitStatus>) -> String {
        // Let the stderr reader drain what ffmpeg wrote before it exited.
        let _ = tokio::time::timeout(Duration::from_secs(1), &mut self.stderr_task).await;
        self.unblock_fifos();
        let last = self
            .stderr
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .back()
            .cloned();
        match (last, status) {
            (Some(line), _) => line,
            (None, Ok(s)) => format!("ffmpeg exited with {s}"),
            (None, Err(e)) => e.to_string(),
        }
    }

    /// A segmenter still blocked opening its FIFO (ffmpeg died before opening it) is
    /// released by opening the write end once: it then reads end-of-file.
    fn unblock_fifos(&self) {
        for fifo in &self.fifos {
            let _ = OpenOptions::new()
                .write(true)
                .custom_flags(nix::libc::O_NONBLOCK)
                .open(fifo);
        }
    }
}

/// The segmenter of one rung: `ftyp`+`moov` become the init segment, each `moof`+`mdat`
/// a chunk, filed into segments by its decode time. The run's first chunk (of any rung)
/// starts the run's period.
fn segment_track(
    fifo: &PathBuf,
    rung: &Rung,
    store: &Store,
    period: &Mutex<Option<u32>>,
) -> io::Result<()> {
    let mut r = BufReader::with_capacity(256 << 10, File::open(fifo)?);
    let mut init = BytesMut::new();
    let mut info: Option<InitInfo> = None;
    let mut moof: Option<Bytes> = None;
    let mut mine: Option<u32> = None;
    while let Some(b) = fmp4::read_box(&mut r)? {
        match &b.kind {
            b"ftyp" => init.extend_from_slice(&b.bytes),
            b"moov" => {
                info = fmp4::init_info(&b.bytes);
                init.extend_from_slice(&b.bytes);
            }
            b"moof" => moof = Some(b.bytes),
            b"mdat" => {
                let (Some(m), Some(info)) = (moof.take(), info.as_ref()) else {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "mdat without moof or init",
                    ));
                };
                let now = SystemTime::now();
                let p = match mine {
                    Some(p) => p,
                    None => {
                        let p = *period
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .get_or_insert_with(|| store.begin_period(now));
                        store.set_init(
                            p,
                            Track {
                                rung: rung.clone(),
                                info: info.clone(),
                                init: init.clone().freeze(),
                            },
                        );
                        mine = Some(p);
                        p
                    }
                };
                let t = fmp4::moof_decode_time(&m).unwrap_or(0);
                let mut chunk = BytesMut::with_capacity(m.len() + b.bytes.len());
                chunk.extend_from_slice(&m);
                chunk.extend_from_slice(&b.bytes);
                store.push_chunk(p, &rung.id, info, t, chunk.freeze(), now);
            }
            _ => {}
        }
    }
    Ok(())
}
