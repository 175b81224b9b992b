//! Progress bars on stderr when it is a terminal; nothing otherwise (indicatif hides itself).

use std::sync::Mutex;

use bkcache_core::transfer::{Event, Progress};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

pub struct Bars {
    quiet: bool,
    bar: Mutex<Option<ProgressBar>>,
}

impl Bars {
    pub fn new(quiet: bool) -> Self {
        Bars {
            quiet,
            bar: Mutex::new(None),
        }
    }

    fn with_bar(&self, f: impl FnOnce(&ProgressBar)) {
        if let Ok(guard) = self.bar.lock() {
            if let Some(b) = guard.as_ref() {
                f(b);
            }
        }
    }

    pub fn finish(&self) {
        if let Ok(mut guard) = self.bar.lock() {
            if let Some(b) = guard.take() {
                b.finish_and_clear();
            }
        }
    }
}

impl Progress for Bars {
    fn event(&self, event: Event) {
        if self.quiet {
            return;
        }
        match event {
            Event::Warning(w) => {
                let mut printed = false;
                self.with_bar(|b| {
                    b.suspend(|| eprintln!("warning: {w}"));
                    printed = true;
                });
                if !printed {
                    eprintln!("warning: {w}");
                }
            }
            Event::TargetPlanned {
                target, bytes, blobs, ..
            } => {
                self.finish();
                let bar = ProgressBar::with_draw_target(Some(bytes), ProgressDrawTarget::stderr());
                if let Ok(style) =
                    ProgressStyle::with_template("{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}")
                {
                    bar.set_style(style.progress_chars("=> "));
                }
                bar.set_message(format!("{target} ({blobs} blobs)"));
                if let Ok(mut guard) = self.bar.lock() {
                    *guard = Some(bar);
                }
            }
            Event::Bytes(n) => self.with_bar(|b| b.inc(n)),
            Event::BlobRestarted {
                target,
                digest,
                bytes_sent,
                reason,
                attempt,
            } => {
                self.with_bar(|b| b.dec(bytes_sent));
                self.event(Event::Warning(format!(
                    "{target}: blob {digest}: {reason}; sending it again (attempt {attempt} of {})",
                    bkcache_core::transfer::BLOB_ATTEMPTS
                )));
            }
            Event::Committed { .. } => self.finish(),
            _ => {}
        }
    }
}
