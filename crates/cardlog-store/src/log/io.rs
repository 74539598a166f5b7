//! The log file's I/O: the calls the store makes on it ([`LogIo`]), the real file
//! ([`FileLog`]) and a fault-injecting wrapper for tests ([`FaultyLog`]), and their error.

use std::fs::File;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// A failed call on the log file, or damage found in what it holds.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LogError {
    /// A call on the file failed (`kind` is the OS's: a full disk is
    /// [`std::io::ErrorKind::StorageFull`]).
    #[error("op log: {call}: {message}")]
    Io {
        /// The call, with its offset or path ("fsync", "write at 4096").
        call: String,
        /// What kind of failure the OS reported.
        kind: std::io::ErrorKind,
        /// The OS's words.
        message: String,
    },
    /// A failure [`FaultyLog`] injected.
    #[error("op log: injected write failure")]
    Injected,
    /// A write to a log opened read-only ([`FileLog::open_read_only`]).
    #[error("op log: opened read-only")]
    ReadOnly,
    /// The log's bytes are damaged at `offset`: a record that does not parse or decode, or
    /// one the store expected and did not find.
    #[error("store damaged: {what}")]
    Damaged {
        /// What is wrong, naming the log and the record.
        what: String,
        /// Where the damaged record starts.
        offset: u64,
    },
}

impl LogError {
    /// The call and the OS's words, without the "op log" prefix (the poisoned store's reason).
    pub fn reason(&self) -> String {
        match self {
            LogError::Io { call, message, .. } => format!("{call}: {message}"),
            LogError::Damaged { what, .. } => what.clone(),
            LogError::Injected => "injected write failure".into(),
            LogError::ReadOnly => "opened read-only".into(),
        }
    }
}

fn io_err(call: &str, e: std::io::Error) -> LogError {
    LogError::Io {
        call: call.to_owned(),
        kind: e.kind(),
        message: e.to_string(),
    }
}

/// The calls the store makes on its log file.
pub trait LogIo: Send + Sync {
    /// The file's length in bytes.
    fn file_len(&self) -> Result<u64, LogError>;
    /// Fills `buf` from `offset` (an error if the file ends first).
    fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<(), LogError>;
    /// Writes all of `buf` at `offset`.
    fn write_at(&self, buf: &[u8], offset: u64) -> Result<(), LogError>;
    /// Makes every write durable (data and the file's length).
    fn sync(&self) -> Result<(), LogError>;
    /// Cuts the file to `len` bytes and makes that durable.
    fn truncate(&self, len: u64) -> Result<(), LogError>;
}

/// The log in a real file.
pub struct FileLog {
    file: File,
    /// Opened for reading only: every write is refused, and `sync` has nothing to do.
    read_only: bool,
}

impl FileLog {
    /// Opens the log file at `path`; `create` makes a new, empty one (it must not exist).
    pub fn open(path: &Path, create: bool) -> Result<Self, LogError> {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(create)
            .open(path)
            .map_err(|e| io_err(&path.display().to_string(), e))?;
        Ok(Self {
            file,
            read_only: false,
        })
    }

    /// Opens the log file at `path` for reading only: nothing is ever written to it (it may be
    /// on a read-only mount or a full disk).
    pub fn open_read_only(path: &Path) -> Result<Self, LogError> {
        let file = File::open(path).map_err(|e| io_err(&path.display().to_string(), e))?;
        Ok(Self {
            file,
            read_only: true,
        })
    }
}

impl LogIo for FileLog {
    fn file_len(&self) -> Result<u64, LogError> {
        Ok(self.file.metadata().map_err(|e| io_err("stat", e))?.len())
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<(), LogError> {
        #[cfg(unix)]
        {
            use std::os::unix::fs::FileExt;
            self.file
                .read_exact_at(buf, offset)
                .map_err(|e| io_err(&format!("read at {offset}"), e))
        }
        #[cfg(not(unix))]
        {
            use std::io::{Read, Seek, SeekFrom};
            let mut f = &self.file;
            f.seek(SeekFrom::Start(offset))
                .and_then(|_| f.read_exact(buf))
                .map_err(|e| io_err(&format!("read at {offset}"), e))
        }
    }

    fn write_at(&self, buf: &[u8], offset: u64) -> Result<(), LogError> {
        if self.read_only {
            return Err(LogError::ReadOnly);
        }
        #[cfg(unix)]
        {
            use std::os::unix::fs::FileExt;
            self.file
                .write_all_at(buf, offset)
                .map_err(|e| io_err(&format!("write at {offset}"), e))
        }
        #[cfg(not(unix))]
        {
            use std::io::{Seek, SeekFrom, Write};
            let mut f = &self.file;
            f.seek(SeekFrom::Start(offset))
                .and_then(|_| f.write_all(buf))
                .map_err(|e| io_err(&format!("write at {offset}"), e))
        }
    }

    fn sync(&self) -> Result<(), LogError> {
        if self.read_only {
            return Ok(());
        }
        self.file.sync_data().map_err(|e| io_err("fsync", e))
    }

    fn truncate(&self, len: u64) -> Result<(), LogError> {
        if self.read_only {
            return Err(LogError::ReadOnly);
        }
        self.file
            .set_len(len)
            .and_then(|()| self.file.sync_all())
            .map_err(|e| io_err(&format!("truncate to {len}"), e))
    }
}

/// Wraps a [`LogIo`] and fails every write (`write_at`, `sync`, `truncate`) after a given
/// number of successful ones: the fault-injection point for tests.
pub struct FaultyLog<L> {
    inner: L,
    writes_left: Arc<AtomicU64>,
}

impl<L: LogIo> FaultyLog<L> {
    /// Lets `writes_ok` writes through, then fails every write.
    pub fn new(inner: L, writes_ok: u64) -> Self {
        Self::sharing(inner, Arc::new(AtomicU64::new(writes_ok)))
    }

    /// Lets writes through while `budget` (shared with other faulty parts of one store) lasts.
    pub fn sharing(inner: L, budget: Arc<AtomicU64>) -> Self {
        Self {
            inner,
            writes_left: budget,
        }
    }

    fn take(&self) -> Result<(), LogError> {
        self.writes_left
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .map(|_| ())
            .map_err(|_| LogError::Injected)
    }
}

impl<L: LogIo> LogIo for FaultyLog<L> {
    fn file_len(&self) -> Result<u64, LogError> {
        self.inner.file_len()
    }
    fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<(), LogError> {
        self.inner.read_at(buf, offset)
    }
    fn write_at(&self, buf: &[u8], offset: u64) -> Result<(), LogError> {
        self.take()?;
        self.inner.write_at(buf, offset)
    }
    fn sync(&self) -> Result<(), LogError> {
        self.take()?;
        self.inner.sync()
    }
    fn truncate(&self, len: u64) -> Result<(), LogError> {
        self.take()?;
        self.inner.truncate(len)
    }
}
