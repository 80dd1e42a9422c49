//! What a person watching a run sees: an overall bar plus one spinner per running stage on a
//! terminal, plain lines otherwise (CI logs, pipes).
use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

#[derive(Clone)]
pub struct Progress {
    multi: MultiProgress,
    overall: ProgressBar,
    live: bool,
    quiet: bool,
}

impl Progress {
    pub fn new(total: usize, quiet: bool) -> Self {
        let live = !quiet && std::io::stderr().is_terminal();
        let multi = MultiProgress::with_draw_target(if live { ProgressDrawTarget::stderr() } else { ProgressDrawTarget::hidden() });
        let overall = multi.add(ProgressBar::new(total as u64));
        overall.set_style(
            ProgressStyle::with_template("{elapsed_precise} [{bar:30.cyan/blue}] {pos}/{len} stages {msg}")
                .expect("valid template")
                .progress_chars("=> "),
        );
        Self { multi, overall, live, quiet }
    }

    /// A spinner for one running stage; finish it with [`Progress::stage_done`].
    pub fn stage_started(&self, id: &str, attempt: u32) -> ProgressBar {
        let bar = self.multi.add(ProgressBar::new_spinner());
        bar.set_style(ProgressStyle::with_template("  {spinner} {msg} {elapsed}").expect("valid template"));
        bar.set_message(if attempt > 1 { format!("{id} (attempt {attempt})") } else { id.to_string() });
        if self.live {
            bar.enable_steady_tick(Duration::from_millis(120));
        }
        bar
    }

    pub fn stage_done(&self, bar: ProgressBar, line: String) {
        bar.finish_and_clear();
        self.multi.remove(&bar);
        self.overall.inc(1);
        self.line(line);
    }

    /// A stage settled without running (reused or skipped): count it and say so.
    pub fn not_run(&self, line: String) {
        self.overall.inc(1);
        self.line(line);
    }

    pub fn line(&self, line: String) {
        if self.quiet {
            return;
        }
        if self.live {
            let _ = self.multi.println(line);
        } else {
            eprintln!("{line}");
        }
    }

    pub fn message(&self, msg: &str) {
        self.overall.set_message(msg.to_string());
    }

    pub fn finish(&self) {
        self.overall.finish_and_clear();
    }
}
