//! Long phases as lines a user can watch: each says when it starts and, when it ends, how long
//! it took and how many kernels were compiled and shapes autotuned meanwhile (the first run of a
//! shape pays for both). The library only emits lines; the application chooses where they go
//! ([`set_sink`]; without one, nowhere), so `generate`, `bench`, `doctor`, `serve` and `worker`
//! show the same timeline, on a terminal or in a log file.
//!
//! Kernel counts come from cubecl's own loggers, which `device` routes to the `log` crate
//! (`cubecl::compilation` once per kernel compiled, `cubecl::autotune` once per shape tuned):
//! [`KernelLog`] counts them and, with [`set_verbose`], shows them.

use std::fmt::Display;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{OnceLock, RwLock};
use std::time::{Duration, Instant};

/// What a line reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LineKind {
    /// A phase started or finished.
    Phase,
    /// A denoising step was submitted (a terminal shows these as a progress bar instead).
    Step,
    /// cubecl's account of a kernel compiled or a shape tuned (`--verbose`), or its warning.
    Kernel,
}

/// Where lines go: the application's printer.
pub type Sink = Box<dyn Fn(LineKind, &str) + Send + Sync>;

static SINK: RwLock<Option<Sink>> = RwLock::new(None);
static VERBOSE: AtomicBool = AtomicBool::new(false);
static COMPILED: AtomicU64 = AtomicU64::new(0);
static TUNED: AtomicU64 = AtomicU64::new(0);
static COUNTING: AtomicBool = AtomicBool::new(false);

/// Sends every line to `sink` from now on (`None`: nowhere).
pub fn set_sink(sink: Option<Sink>) {
    clock();
    *SINK.write().unwrap_or_else(|e| e.into_inner()) = sink;
}

/// Also show which kernels compile and which autotune candidate wins each shape.
pub fn set_verbose(verbose: bool) {
    VERBOSE.store(verbose, Ordering::Relaxed);
}

/// Whether kernel lines are shown ([`set_verbose`]).
pub fn verbose() -> bool {
    VERBOSE.load(Ordering::Relaxed)
}

/// Seconds since the process first used this module.
fn clock() -> Duration {
    static START: OnceLock<Instant> = OnceLock::new();
    START.get_or_init(Instant::now).elapsed()
}

fn emit(kind: LineKind, text: &str) {
    let sink = SINK.read().unwrap_or_else(|e| e.into_inner());
    if let Some(sink) = sink.as_ref() {
        sink(kind, &format!("[{:>7.1} s] {text}", clock().as_secs_f64()));
    }
}

/// Kernels compiled and shapes autotuned so far in this process; `None` when they are not
/// counted (another `log` logger was installed first).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KernelCounts {
    pub compiled: u64,
    pub tuned: u64,
}

impl KernelCounts {
    /// The counts now, if kernels are counted.
    pub fn now() -> Option<KernelCounts> {
        COUNTING.load(Ordering::Relaxed).then(|| KernelCounts {
            compiled: COMPILED.load(Ordering::Relaxed),
            tuned: TUNED.load(Ordering::Relaxed),
        })
    }

    /// What was counted since `earlier`.
    pub fn since(self, earlier: KernelCounts) -> KernelCounts {
        KernelCounts {
            compiled: self.compiled.saturating_sub(earlier.compiled),
            tuned: self.tuned.saturating_sub(earlier.tuned),
        }
    }
}

/// A phase under way: [`start`] printed its first line, [`Phase::done`] prints its last.
/// Dropped without `done` (the phase failed: its error is reported elsewhere), it prints nothing.
pub struct Phase {
    name: String,
    started: Instant,
    kernels: Option<KernelCounts>,
}

/// Starts the phase `name` (`upload UNet`, `VAE decode`, ...) and says so.
pub fn start(name: impl Into<String>) -> Phase {
    let name = name.into();
    emit(LineKind::Phase, &format!("{name}..."));
    Phase {
        name,
        started: Instant::now(),
        kernels: KernelCounts::now(),
    }
}

impl Phase {
    /// Time since the phase started.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// Ends the phase: its duration, `detail` (empty: none) and the kernels compiled and shapes
    /// tuned while it ran.
    pub fn done(self, detail: impl Display) {
        let detail = detail.to_string();
        let mut text = format!("{}: {:.2} s", self.name, self.elapsed().as_secs_f64());
        if !detail.is_empty() {
            text += &format!(", {detail}");
        }
        if let (Some(before), Some(now)) = (self.kernels, KernelCounts::now()) {
            let new = now.since(before);
            if new != KernelCounts::default() {
                text += &format!(
                    " ({} kernels compiled, {} shapes tuned)",
                    new.compiled, new.tuned
                );
            }
        }
        emit(LineKind::Phase, &text);
    }
}

/// The denoising steps of one run, reported as each is submitted.
pub struct Steps {
    started: Instant,
    kernels: Option<KernelCounts>,
}

/// Starts reporting steps (as the sampling loop starts).
pub fn steps() -> Steps {
    Steps {
        started: Instant::now(),
        kernels: KernelCounts::now(),
    }
}

impl Steps {
    /// `done` of `total` steps submitted: the time since the loop started, and the kernels
    /// compiled and shapes tuned since the previous step (a cold first step's are most).
    pub fn step(&mut self, done: usize, total: usize) {
        let mut text = format!(
            "step {done}/{total}: {:.2} s",
            self.started.elapsed().as_secs_f64()
        );
        let now = KernelCounts::now();
        if let (Some(before), Some(now)) = (self.kernels, now) {
            let new = now.since(before);
            if new != KernelCounts::default() {
                text += &format!(
                    " ({} kernels compiled, {} shapes tuned)",
                    new.compiled, new.tuned
                );
            }
        }
        self.kernels = now;
        emit(LineKind::Step, &text);
    }
}

/// The `log` logger that counts cubecl's compilation and autotune lines (and shows them with
/// [`set_verbose`]; cubecl's warnings always). Every other crate's records are dropped.
pub struct KernelLog;

impl KernelLog {
    /// Installs it as the process's `log` logger, unless the application installed one first
    /// (then kernels are not counted). Returns whether it is installed.
    pub fn install() -> bool {
        static INSTALLED: OnceLock<bool> = OnceLock::new();
        *INSTALLED.get_or_init(|| {
            static LOGGER: KernelLog = KernelLog;
            let installed = log::set_logger(&LOGGER).is_ok();
            if installed {
                log::set_max_level(log::LevelFilter::Info);
                COUNTING.store(true, Ordering::Relaxed);
            }
            installed
        })
    }
}

impl log::Log for KernelLog {
    fn enabled(&self, metadata: &log::Metadata) -> bool {
        metadata.target().starts_with("cubecl") && metadata.level() <= log::Level::Info
    }

    fn log(&self, record: &log::Record) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let message = record.args().to_string();
        match record.target() {
            "cubecl::compilation" => {
                COMPILED.fetch_add(1, Ordering::Relaxed);
            }
            "cubecl::autotune" if message.starts_with("Fastest result") => {
                TUNED.fetch_add(1, Ordering::Relaxed);
            }
            _ => {}
        }
        if verbose() || record.level() <= log::Level::Warn {
            emit(LineKind::Kernel, &format!("{}: {message}", record.target()));
        }
    }

    fn flush(&self) {}
}
