//! The progress bar over denoising steps, drawn from the library's events; nothing is drawn when
//! stdout or stderr is not a terminal, or with `--quiet` (the phase lines then say each step).

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use sdxl_wgpu::pipeline::Event;

pub struct Progress {
    enabled: bool,
    bar: Option<ProgressBar>,
    label: String,
    /// When denoising started, and when its first step finished.
    started: Instant,
    first_step: Instant,
}

/// Whether progress bars are drawn: both stdout and stderr are terminals, and not `--quiet`.
pub fn bars_shown(quiet: bool) -> bool {
    !quiet && std::io::stdout().is_terminal() && std::io::stderr().is_terminal()
}

impl Progress {
    pub fn new(quiet: bool) -> Self {
        Progress {
            enabled: bars_shown(quiet),
            bar: None,
            label: String::new(),
            started: Instant::now(),
            first_step: Instant::now(),
        }
    }

    /// Labels the next run's bar (e.g. the job's line).
    pub fn start(&mut self, label: String) {
        self.label = label;
    }

    pub fn on_event(&mut self, event: Event) {
        if !self.enabled {
            return;
        }
        match event {
            Event::Step { done, total } => {
                // `done: 0` arrives as denoising starts
                let now = Instant::now();
                if done == 0 || self.bar.is_none() {
                    self.abandon();
                    let bar = ProgressBar::new(total as u64);
                    bar.set_style(
                        ProgressStyle::with_template("{prefix}{bar:30} {pos}/{len} steps  {msg}")
                            .expect("a valid template"),
                    );
                    bar.set_prefix(self.label.clone());
                    self.bar = Some(bar);
                    self.started = now;
                }
                if done <= 1 {
                    self.first_step = now;
                }
                let Some(bar) = &self.bar else { return };
                bar.set_message(rate_and_eta(
                    done,
                    total,
                    now - self.started,
                    now - self.first_step,
                ));
                bar.set_position(done as u64);
                if done == total {
                    self.abandon();
                }
            }
            Event::Encoded { .. } | Event::ImageEncoded { .. } | Event::Decoding { .. } => {}
        }
    }

    /// Clears a bar a failed run left behind.
    pub fn abandon(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }
}

/// The rate and time left as tqdm prints them (`it/s` from one step a second up, `s/it` below,
/// `eta m:ss`). From the second step on, the rate is measured after the first step, which on a
/// first run includes shader compilation and autotuning and would skew the estimate for the
/// whole run (the end-of-run summary reports the mean including it).
fn rate_and_eta(done: usize, total: usize, since_start: Duration, since_first: Duration) -> String {
    let (steps, secs) = match done {
        0 => return "-- it/s  eta --:--".into(),
        1 => (1.0, since_start.as_secs_f64()),
        _ => ((done - 1) as f64, since_first.as_secs_f64()),
    };
    if secs <= 0.0 {
        return "-- it/s  eta --:--".into();
    }
    let per_sec = steps / secs;
    let rate = if per_sec >= 1.0 {
        format!("{per_sec:.2} it/s")
    } else {
        format!("{:.2} s/it", 1.0 / per_sec)
    };
    let left = (total.saturating_sub(done) as f64 / per_sec).round() as u64;
    format!("{rate}  eta {}:{:02}", left / 60, left % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_and_time_left_read_like_tqdm() {
        let s = Duration::from_secs_f64;
        assert_eq!(rate_and_eta(0, 30, s(0.0), s(0.0)), "-- it/s  eta --:--");
        // the first step alone: 24 s for it
        assert_eq!(rate_and_eta(1, 25, s(24.0), s(0.0)), "24.00 s/it  eta 9:36");
        // later steps are timed from the end of the first: 10 steps in 4 s after it
        assert_eq!(rate_and_eta(11, 31, s(28.0), s(4.0)), "2.50 it/s  eta 0:08");
        assert_eq!(rate_and_eta(3, 30, s(30.0), s(5.0)), "2.50 s/it  eta 1:08");
        assert_eq!(rate_and_eta(30, 30, s(30.0), s(5.0)), "5.80 it/s  eta 0:00");
    }
}
