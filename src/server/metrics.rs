//! The figures `GET /metrics` reports in Prometheus' text format (version 0.0.4): jobs by
//! outcome, queue depth, step and job latency (as summaries: sum and count), device memory,
//! model load time.

use std::fmt::Write;
use std::sync::Mutex;
use std::time::Duration;

use super::jobs::Status;
use super::state::lock;

/// Counters the worker and the handlers add to.
#[derive(Default)]
pub struct Metrics {
    inner: Mutex<Counters>,
}

#[derive(Default)]
struct Counters {
    succeeded: u64,
    failed: u64,
    cancelled: u64,
    /// Requests refused before queueing (4xx, 503).
    refused: u64,
    steps: u64,
    step_seconds: f64,
    jobs: u64,
    job_seconds: f64,
    model_loads: u64,
    model_load_seconds: f64,
}

/// What the renderer needs besides the counters.
pub struct Gauges {
    pub queue_depth: usize,
    pub running: bool,
    pub device_in_use: u64,
    pub device_reserved: u64,
    pub device_peak_reserved: u64,
}

impl Metrics {
    /// A job that ended with `status` after `took`.
    pub fn job(&self, status: Status, took: Duration) {
        let mut c = lock(&self.inner);
        match status {
            Status::Succeeded => c.succeeded += 1,
            Status::Failed => c.failed += 1,
            Status::Cancelled => c.cancelled += 1,
            Status::Queued | Status::Running => return,
        }
        c.jobs += 1;
        c.job_seconds += took.as_secs_f64();
    }

    pub fn steps(&self, steps: usize, took: Duration) {
        let mut c = lock(&self.inner);
        c.steps += steps as u64;
        c.step_seconds += took.as_secs_f64();
    }

    pub fn refused(&self) {
        lock(&self.inner).refused += 1;
    }

    pub fn model_load(&self, took: Duration) {
        let mut c = lock(&self.inner);
        c.model_loads += 1;
        c.model_load_seconds += took.as_secs_f64();
    }

    /// The exposition text.
    pub fn render(&self, g: &Gauges) -> String {
        let c = lock(&self.inner);
        let mut out = String::new();
        let jobs = [
            ("succeeded", c.succeeded),
            ("failed", c.failed),
            ("cancelled", c.cancelled),
            ("refused", c.refused),
        ]
        .map(|(o, n)| (format!("sdxl_jobs_total{{outcome=\"{o}\"}}"), n.to_string()));
        family(
            &mut out,
            ("sdxl_jobs_total", "counter"),
            "Jobs finished, by outcome; refused: requests refused before queueing.",
            &jobs,
        );
        gauge(
            &mut out,
            "sdxl_queue_depth",
            "Jobs waiting.",
            g.queue_depth as u64,
        );
        gauge(
            &mut out,
            "sdxl_job_running",
            "1 while a job runs.",
            u64::from(g.running),
        );
        let summaries = [
            (
                "sdxl_step_seconds",
                "Denoising step latency.",
                c.step_seconds,
                c.steps,
            ),
            (
                "sdxl_job_seconds",
                "Job latency, start to end.",
                c.job_seconds,
                c.jobs,
            ),
            (
                "sdxl_model_load_seconds",
                "Checkpoint load time.",
                c.model_load_seconds,
                c.model_loads,
            ),
        ];
        for (name, help, sum, count) in summaries {
            let samples = [
                (format!("{name}_sum"), format!("{sum:.6}")),
                (format!("{name}_count"), count.to_string()),
            ];
            family(&mut out, (name, "summary"), help, &samples);
        }
        let memory = [
            ("in_use", g.device_in_use),
            ("reserved", g.device_reserved),
            ("peak_reserved", g.device_peak_reserved),
        ]
        .map(|(k, n)| {
            (
                format!("sdxl_device_memory_bytes{{kind=\"{k}\"}}"),
                n.to_string(),
            )
        });
        family(
            &mut out,
            ("sdxl_device_memory_bytes", "gauge"),
            "Device memory pools after the last job or load.",
            &memory,
        );
        out
    }
}

/// One metric family: its HELP and TYPE lines and its samples (full names with labels).
fn family(out: &mut String, (name, kind): (&str, &str), help: &str, samples: &[(String, String)]) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
    for (sample, value) in samples {
        let _ = writeln!(out, "{sample} {value}");
    }
}

fn gauge(out: &mut String, name: &str, help: &str, value: u64) {
    family(
        out,
        (name, "gauge"),
        help,
        &[(name.to_string(), value.to_string())],
    );
}
