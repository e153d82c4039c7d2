//! A progress line on stderr for the long offline commands (`import`, `backtest`): at most
//! once a second, one line updated in place on a terminal, a line each otherwise.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

/// How often the line may change.
const EVERY: Duration = Duration::from_secs(1);

/// One command's progress line.
pub struct Progress {
    last: Instant,
    terminal: bool,
    shown: bool,
}

impl Progress {
    pub fn new() -> Self {
        Self {
            last: Instant::now(),
            terminal: std::io::stderr().is_terminal(),
            shown: false,
        }
    }

    /// Shows the line `line` makes, unless a line was shown less than a second ago.
    pub fn show(&mut self, line: impl FnOnce() -> String) {
        if self.last.elapsed() < EVERY {
            return;
        }
        self.last = Instant::now();
        let end = if self.terminal { "\r" } else { "\n" };
        crate::diag_inline!("{}{end}", line());
        let _ = std::io::stderr().flush();
        self.shown = true;
    }

    /// On a terminal, ends the line updated in place: with `last` when given, else after
    /// the line last shown (if any). Elsewhere every line has ended already.
    pub fn finish(&self, last: Option<String>) {
        if !self.terminal {
            return;
        }
        match last {
            Some(line) => crate::diag!("{line}"),
            None if self.shown => crate::diag!(),
            None => {}
        }
    }
}

impl Default for Progress {
    fn default() -> Self {
        Self::new()
    }
}
