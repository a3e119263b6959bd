//! Where log lines go: standard output through a buffer. When standard output is a regular file (`chat4all serve
//! > chat4all.log`, a container runtime's log file), its written pages are pushed to the disk every
//! [`WRITEBACK_BYTES`] instead of waiting in the page cache for the kernel's writeback. At 20,000 messages a
//! second the lines are about 15 MiB a second; left to the kernel they piled up to 400 MiB and were written in one
//! burst every half minute, and for that second every fsync of the event log on the same disk waited behind it
//! (889 appends over 10 ms in one second, the open model's p99 at 5,000/s 38.9 ms). Databases pace their own
//! writeback for the same reason (PostgreSQL's `*_flush_after`, RocksDB's `bytes_per_sync`).

use std::fs::File;
use std::io::{self, BufWriter, Stdout, Write};
use std::os::fd::AsFd;

/// Bytes written between two pushes of the file's pages to the disk.
const WRITEBACK_BYTES: usize = 1 << 20;

/// An output, buffered; synced every [`WRITEBACK_BYTES`] when it is a regular file.
pub(super) struct LogOutput<W: Write> {
    buffer: BufWriter<W>,
    /// The output as a file, when it is a regular one.
    file: Option<File>,
    unsynced: usize,
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
        self.buffer.flush()
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
}
