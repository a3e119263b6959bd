//! Where log lines go: standard output through a buffer. When standard output is a regular file (`chat4all serve
//! > chat4all.log`, a container runtime's log file), its written pages are pushed to the disk every
//! [`WRITEBACK_BYTES`] instead of waiting in the page cache for the kernel's writeback. At 20,000 messages a
//! second the lines are about 15 MiB a second; left to the kernel they piled up to 400 MiB and were written in one
//! burst every half minute, and for that second every fsync of the event log on the same disk waited behind it
//! (889 appends over 10 ms in one second, the open model's p99 at 5,000/s 38.9 ms). Databases pace their own
//! writeback for the same reason (PostgreSQL's `*_flush_after`, RocksDB's `bytes_per_sync`).
//!
//! The thread that writes the lines flushes them whenever it has taken every line waiting, and then waits for
//! the next one. Each wait ended with a wake-up by the thread logging the next line: at 10,000 messages a second
//! (20,000 lines) that was about 2,400 wake-ups a second, each a system call on both sides and a context switch. So
//! a flush that comes within [`FLUSH_INTERVAL`] of the one before waits out the rest of it first, while the lines
//! logged meanwhile gather in the channel without waking anyone; a line reaches the output at most that much
//! later, and a line after a quiet spell at once.

use std::fs::File;
use std::io::{self, BufWriter, Stdout, Write};
use std::os::fd::AsFd;
use std::thread;
use std::time::{Duration, Instant};

/// Bytes written between two pushes of the file's pages to the disk.
const WRITEBACK_BYTES: usize = 1 << 20;

/// Shortest time between two flushes; the writing thread sleeps out the rest of it after a flush.
const FLUSH_INTERVAL: Duration = Duration::from_millis(10);

/// An output, buffered and flushed at most every [`FLUSH_INTERVAL`]; synced every [`WRITEBACK_BYTES`] when it is a
/// regular file.
pub(super) struct LogOutput<W: Write> {
    buffer: BufWriter<W>,
    /// The output as a file, when it is a regular one.
    file: Option<File>,
    unsynced: usize,
    /// When the last flush, with its wait, ended.
    flushed: Option<Instant>,
}

impl LogOutput<Stdout> {
    pub(super) fn stdout() -> Self {
        let stdout = io::stdout();
        let file = stdout
            .as_fd()
            .try_clone_to_owned()
            .map(File::from)
            .ok()
            .filter(|file| file.metadata().is_ok_and(|m| m.file_type().is_file()));
        Self::new(stdout, file)
    }
}

impl<W: Write> LogOutput<W> {
    fn new(output: W, file: Option<File>) -> Self {
        Self {
            buffer: BufWriter::with_capacity(64 * 1024, output),
            file,
            unsynced: 0,
            flushed: None,
        }
    }
}

impl<W: Write> Write for LogOutput<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        // Synced before taking more, so that a failed flush leaves `buf` for the caller to write again.
        if let Some(file) = &self.file
            && self.unsynced >= WRITEBACK_BYTES
        {
            self.buffer.flush()?;
            self.unsynced = 0;
            // A file system that cannot sync is written to as before, without syncs.
            if file.sync_data().is_err() {
                self.file = None;
            }
        }
        let written = self.buffer.write(buf)?;
        if self.file.is_some() {
            self.unsynced += written;
        }
        Ok(written)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.buffer.flush()?;
        if let Some(rest) = self
            .flushed
            .and_then(|at| FLUSH_INTERVAL.checked_sub(at.elapsed()))
        {
            thread::sleep(rest);
        }
        self.flushed = Some(Instant::now());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_reach_the_file_whole_and_in_order_across_syncs() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("chat4all.log");
        let file = File::create(&path).unwrap();
        let mut output = LogOutput::new(file.try_clone().unwrap(), Some(file));
        let lines: Vec<String> = (0..3_000).map(|n| format!("{n:>1000}\n")).collect();
        for line in &lines {
            output.write_all(line.as_bytes()).unwrap();
        }
        output.flush().unwrap();
        assert!(output.file.is_some(), "a regular file can be synced");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), lines.concat());
    }

    #[test]
    fn a_flush_soon_after_another_waits_out_the_interval() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("chat4all.log");
        let mut output = LogOutput::new(File::create(&path).unwrap(), None);
        let started = Instant::now();
        output.write_all(b"first\n").unwrap();
        output.flush().unwrap();
        output.write_all(b"second\n").unwrap();
        output.flush().unwrap();
        assert!(
            started.elapsed() >= FLUSH_INTERVAL,
            "the second flush did not wait"
        );
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "first\nsecond\n");
    }
}
