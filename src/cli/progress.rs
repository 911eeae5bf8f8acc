//! The progress bar over denoising steps, drawn from the library's events; nothing is drawn when
//! stdout or stderr is not a terminal, or with `--quiet`.

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressStyle};
use sdxl_wgpu::pipeline::Event;

pub struct Progress {
    enabled: bool,
    bar: Option<ProgressBar>,
    label: String,
}

impl Progress {
    pub fn new(quiet: bool) -> Self {
        Progress {
            enabled: !quiet && std::io::stdout().is_terminal() && std::io::stderr().is_terminal(),
            bar: None,
            label: String::new(),
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
                let bar = self.bar.get_or_insert_with(|| {
                    let bar = ProgressBar::new(total as u64);
                    bar.set_style(
                        ProgressStyle::with_template(
                            "{prefix}{bar:30} {pos}/{len} steps  {per_sec}  eta {eta}",
                        )
                        .expect("a valid template"),
                    );
                    bar.set_prefix(self.label.clone());
                    bar
                });
                bar.set_position(done as u64);
                if done == total {
                    bar.finish_and_clear();
                    self.bar = None;
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
