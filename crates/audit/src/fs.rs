//! The seam between the segment writer and the file system.
//!
//! The writer performs every write, sync and truncation through [`AuditFs`] and
//! [`AppendFile`], so tests can make them fail (see `FaultyFs` under the `test-util` feature)
//! and check that the writer fails closed and recovers. Reading (scanning segments at open,
//! search, verify, forward) goes straight to `std::fs`: a failed read is reported, never
//! acknowledged as durable.

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::Path;

/// File operations the writer needs.
pub trait AuditFs: Send + Sync + fmt::Debug + 'static {
    /// Opens `path` for appending, creating it if needed.
    fn open_append(&self, path: &Path) -> io::Result<Box<dyn AppendFile>>;

    /// Makes the directory entries of `dir` durable (after creating a file in it).
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;

    /// Checks that `dir` can take `len` more bytes durably: writes a probe file, syncs it and
    /// removes it. Used while the writer is unhealthy and no append arrives to retry with.
    fn probe(&self, dir: &Path, len: usize) -> io::Result<()>;
}

/// A file open for appending.
pub trait AppendFile: Send + fmt::Debug {
    /// Appends all of `buf`. On error an unknown prefix of `buf` may have been written.
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()>;

    /// `fdatasync`: makes the written data durable.
    fn sync_data(&mut self) -> io::Result<()>;

    /// Truncates (or extends) the file to `len` bytes; later appends go to the new end.
    fn set_len(&mut self, len: u64) -> io::Result<()>;
}

/// The real file system.
#[derive(Debug, Clone, Copy, Default)]
pub struct StdFs;

/// The file name the probe writes; the writer ignores it when scanning.
pub(crate) const PROBE_FILE: &str = ".probe";

impl AuditFs for StdFs {
    fn open_append(&self, path: &Path) -> io::Result<Box<dyn AppendFile>> {
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        Ok(Box::new(StdFile(file)))
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        File::open(dir)?.sync_all()
    }

    fn probe(&self, dir: &Path, len: usize) -> io::Result<()> {
        let path = dir.join(PROBE_FILE);
        let result = (|| {
            let mut file = File::create(&path)?;
            file.write_all(&vec![b'\n'; len])?;
            file.sync_data()
        })();
        let removed = std::fs::remove_file(&path);
        result?;
        removed
    }
}

#[derive(Debug)]
struct StdFile(File);

impl AppendFile for StdFile {
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.0.write_all(buf)
    }

    fn sync_data(&mut self) -> io::Result<()> {
        self.0.sync_data()
    }

    fn set_len(&mut self, len: u64) -> io::Result<()> {
        self.0.set_len(len)
    }
}

#[cfg(any(test, feature = "test-util"))]
pub use faulty::{Faults, FaultyFs};

#[cfg(any(test, feature = "test-util"))]
mod faulty {
    use std::io;
    use std::path::Path;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

    use super::{AppendFile, AuditFs, StdFs};

    /// Switches shared between a test and a [`FaultyFs`].
    #[derive(Debug, Default)]
    pub struct Faults {
        /// Writes fail with `ENOSPC` after writing half of their buffer (a torn append).
        pub disk_full: AtomicBool,
        /// `fdatasync` fails with `EIO`.
        pub sync_fails: AtomicBool,
        /// Counts write attempts, failed or not.
        pub writes: AtomicU64,
    }

    /// The real file system with switchable faults (tests only).
    #[derive(Debug, Clone, Default)]
    pub struct FaultyFs {
        faults: Arc<Faults>,
    }

    impl FaultyFs {
        /// A file system without faults; flip them through [`FaultyFs::faults`].
        pub fn new() -> Self {
            FaultyFs::default()
        }

        /// The switches.
        pub fn faults(&self) -> Arc<Faults> {
            self.faults.clone()
        }
    }

    fn enospc() -> io::Error {
        io::Error::from_raw_os_error(28)
    }

    fn eio() -> io::Error {
        io::Error::from_raw_os_error(5)
    }

    impl AuditFs for FaultyFs {
        fn open_append(&self, path: &Path) -> io::Result<Box<dyn AppendFile>> {
            let inner = StdFs.open_append(path)?;
            Ok(Box::new(FaultyFile {
                inner,
                faults: self.faults.clone(),
            }))
        }

        fn sync_dir(&self, dir: &Path) -> io::Result<()> {
            StdFs.sync_dir(dir)
        }

        fn probe(&self, dir: &Path, len: usize) -> io::Result<()> {
            if self.faults.disk_full.load(Ordering::SeqCst) {
                return Err(enospc());
            }
            if self.faults.sync_fails.load(Ordering::SeqCst) {
                return Err(eio());
            }
            StdFs.probe(dir, len)
        }
    }

    #[derive(Debug)]
    struct FaultyFile {
        inner: Box<dyn AppendFile>,
        faults: Arc<Faults>,
    }

    impl AppendFile for FaultyFile {
        fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
            self.faults.writes.fetch_add(1, Ordering::SeqCst);
            if self.faults.disk_full.load(Ordering::SeqCst) {
                self.inner.write_all(&buf[..buf.len() / 2])?;
                return Err(enospc());
            }
            self.inner.write_all(buf)
        }

        fn sync_data(&mut self) -> io::Result<()> {
            if self.faults.sync_fails.load(Ordering::SeqCst) {
                return Err(eio());
            }
            self.inner.sync_data()
        }

        fn set_len(&mut self, len: u64) -> io::Result<()> {
            self.inner.set_len(len)
        }
    }
}
