//! Standard output of the offline commands (`openapi`, `simulate --output -`, `backtest`),
//! which is often piped into a reader that stops early (`| head`).

use std::io;

/// `written`, the outcome of writing to standard output, with a reader that closed the pipe
/// before the end taken as the normal end of the output: `Ok(None)`. Such a reader wanted no
/// more, and failing the command for it would report an error where nobody made one.
pub fn closed_pipe_is_end<T>(written: io::Result<T>) -> io::Result<Option<T>> {
    match written {
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(None),
        written => written.map(Some),
    }
}
