//! Standard output of the offline commands (`openapi`, `simulate --output -`, `backtest`),
//! which is often piped into a reader that stops early (`| head`), and how a command that
//! failed says why on standard error.

use std::io;

/// `eprintln!` for what a command tells its user on standard error (progress, warnings,
/// summaries), but a line that cannot be written is dropped: `eprintln!` panics when
/// standard error is a closed pipe (a log shipper gone, a killed `tee`), and the command
/// stopped part-way with exit code 101, leaving half a file or half an import behind.
#[macro_export]
macro_rules! diag {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

/// [`diag!`] without the line end (a progress line redrawn in place), flushed.
#[macro_export]
macro_rules! diag_inline {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let mut stderr = std::io::stderr();
        let _ = write!(stderr, $($arg)*);
        let _ = stderr.flush();
    }};
}

/// `written`, the outcome of writing to standard output, with a reader that closed the pipe
/// before the end taken as the normal end of the output: `Ok(None)`. Such a reader wanted no
/// more, and failing the command for it would report an error where nobody made one.
pub fn closed_pipe_is_end<T>(written: io::Result<T>) -> io::Result<Option<T>> {
    match written {
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(None),
        written => written.map(Some),
    }
}

/// What a command that failed with `error` prints on standard error: the error and its
/// causes, as `anyhow` prints them, but never a stack backtrace. `anyhow` adds one whenever
/// `RUST_BACKTRACE` or `RUST_LIB_BACKTRACE` is set, as it often is on a developer's machine,
/// and a missing file or a refused Redis is the user's to mend, not a crash to debug.
pub fn error_report(error: &anyhow::Error) -> String {
    let mut report = format!("Error: {error}");
    let causes: Vec<String> = error.chain().skip(1).map(ToString::to_string).collect();
    if !causes.is_empty() {
        report.push_str("\n\nCaused by:");
        for (i, cause) in causes.iter().enumerate() {
            if causes.len() == 1 {
                report.push_str(&format!("\n    {cause}"));
            } else {
                report.push_str(&format!("\n    {i}: {cause}"));
            }
        }
    }
    report
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::Context;

    #[test]
    fn an_error_report_gives_the_causes_as_anyhow_does_and_no_backtrace() {
        let io = || std::io::Error::new(std::io::ErrorKind::NotFound, "No such file");
        let one: anyhow::Error = Err::<(), _>(io())
            .context("a.csv: cannot open")
            .unwrap_err();
        assert_eq!(
            error_report(&one),
            "Error: a.csv: cannot open\n\nCaused by:\n    No such file"
        );
        let two = Err::<(), _>(io())
            .context("cannot open")
            .context("a.csv")
            .unwrap_err();
        assert_eq!(
            error_report(&two),
            "Error: a.csv\n\nCaused by:\n    0: cannot open\n    1: No such file"
        );
        // anyhow's own rendering, which `main` used to print (after "Error: "), is the same but for the
        // backtrace it adds when one was captured.
        let plain = anyhow::anyhow!("no catalog");
        assert_eq!(error_report(&plain), "Error: no catalog");
        assert!(format!("Error: {two:?}").starts_with(&error_report(&two)));
    }
}
