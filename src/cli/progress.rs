//! The progress bar on standard error: ARNs decided / total, rate and ETA.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::ports::Progress;

/// A bar the engine advances once per decided ARN.
#[derive(Debug)]
pub struct Bar {
    bar: ProgressBar,
}

impl Bar {
    /// A hidden bar until the engine says how many ARNs there are. `NO_COLOR` (any
    /// non-empty value) draws it without colour.
    pub fn on_stderr() -> Bar {
        let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
        let bar_part = if no_color {
            "[{bar:30}]"
        } else {
            "[{bar:30.cyan/blue}]"
        };
        let template =
            format!("{bar_part} {{pos}}/{{len}} ARNs  {{per_sec}}  ETA {{eta}}  {{msg}}");
        let style = ProgressStyle::with_template(&template)
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> ");
        let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr());
        bar.set_style(style);
        Bar { bar }
    }

    /// Leaves the last state on screen.
    pub fn finish(&self) {
        self.bar.finish();
    }
}

impl Progress for Bar {
    fn start(&self, total: usize) {
        self.bar.set_length(total as u64);
        self.bar.reset();
    }

    fn decided(&self) {
        self.bar.inc(1);
    }
}
