//! The spool: an append-only JSON-lines file of records that could not be written to the
//! database yet (database unreachable, queue full, shutdown). Records in it are already
//! redacted. The writer replays it, oldest first, before anything newer; the writer skips
//! records the database already has (same tenant, time and id), so a record spooled after a write whose answer was lost is
//! still stored exactly once.
//!
//! Replay first renames the file to `<path>.replaying`, so appends during the replay go to a
//! fresh file; the renamed one is deleted only once every record in it is in the database.
//! A crash mid-replay leaves it in place, and the next replay starts with it.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use super::{AuditError, AuditRecord};
use crate::config::SpoolFsync;

pub struct Spool {
    path: PathBuf,
    replaying: PathBuf,
    fsync: SpoolFsync,
    /// The open file, shared by the writer and request threads that found the queue full.
    file: Mutex<Option<File>>,
}

impl Spool {
    pub fn new(path: &Path, fsync: SpoolFsync) -> Spool {
        let mut replaying = path.as_os_str().to_owned();
        replaying.push(".replaying");
        Spool {
            path: path.to_path_buf(),
            replaying: PathBuf::from(replaying),
            fsync,
            file: Mutex::new(None),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn error(&self, source: std::io::Error) -> AuditError {
        AuditError::Spool {
            path: self.path.display().to_string(),
            source,
        }
    }

    /// Appends records as one write (and one fsync under `spool_fsync = "always"`).
    pub fn append(&self, records: &[AuditRecord]) -> Result<(), AuditError> {
        if records.is_empty() {
            return Ok(());
        }
        let mut buf = Vec::with_capacity(records.len() * 512);
        for r in records {
            serde_json::to_writer(&mut buf, r)?;
            buf.push(b'\n');
        }
        let mut guard = self
            .file
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if guard.is_none() {
            *guard = Some(self.open().map_err(|e| self.error(e))?);
        }
        let Some(file) = guard.as_mut() else {
            return Ok(());
        };
        let written = file.write_all(&buf).and_then(|()| match self.fsync {
            SpoolFsync::Always => file.sync_data(),
            SpoolFsync::Never => Ok(()),
        });
        if let Err(e) = written {
            // Reopen next time: the handle may be unusable.
            *guard = None;
            return Err(self.error(e));
        }
        Ok(())
    }

    /// Opens for appending. A last line torn by a crash is ended first, so the next record
    /// starts on a line of its own.
    fn open(&self) -> std::io::Result<File> {
        use std::io::{Read, Seek, SeekFrom};
        let mut file = OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .open(&self.path)?;
        let len = file.metadata()?.len();
        if len > 0 {
            let mut last = [0u8; 1];
            file.seek(SeekFrom::Start(len - 1))?;
            file.read_exact(&mut last)?;
            if last[0] != b'\n' {
                file.write_all(b"\n")?;
            }
        }
        Ok(file)
    }

    /// Whether anything waits to be replayed.
    pub fn has_records(&self) -> bool {
        let size = |p: &Path| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
        size(&self.replaying) > 0 || size(&self.path) > 0
    }

    /// Bytes waiting, for the metric.
    pub fn bytes(&self) -> u64 {
        let size = |p: &Path| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
        size(&self.replaying) + size(&self.path)
    }

    /// The records to replay next, oldest first: those of an interrupted replay, else the
    /// spool's (moved aside so that appends continue in a fresh file). Call [`Spool::done`]
    /// once they are all in the database.
    pub fn take(&self) -> Result<Vec<AuditRecord>, AuditError> {
        if !self.replaying.exists() {
            let mut guard = self
                .file
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            *guard = None;
            match std::fs::rename(&self.path, &self.replaying) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
                Err(e) => return Err(self.error(e)),
            }
        }
        self.read(&self.replaying)
    }

    /// The records taken last are in the database: forget them.
    pub fn done(&self) -> Result<(), AuditError> {
        match std::fs::remove_file(&self.replaying) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(self.error(e)),
        }
    }

    fn read(&self, path: &Path) -> Result<Vec<AuditRecord>, AuditError> {
        let file = match File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(self.error(e)),
        };
        let mut records = Vec::new();
        for (n, line) in BufReader::new(file).lines().enumerate() {
            let line = line.map_err(|e| self.error(e))?;
            if line.trim().is_empty() {
                continue;
            }
            match serde_json::from_str(&line) {
                Ok(r) => records.push(r),
                // A line torn by a crash mid-append: the rest of the file is still good.
                Err(e) => tracing::error!(
                    spool = %path.display(), line = n + 1, error = %e,
                    "skipping an unreadable audit spool line"
                ),
            }
        }
        Ok(records)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::Kind;

    fn record(id: &str) -> AuditRecord {
        AuditRecord {
            id: id.into(),
            time: 1,
            kind: Kind::Request,
            tenant: "acme".into(),
            action: "request".into(),
            actor: String::new(),
            status: 200,
            subject: None,
            detail: "{}".into(),
            content: None,
        }
    }

    #[test]
    fn replay_takes_the_oldest_first_and_appends_continue_meanwhile() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::new(&dir.path().join("audit.spool"), SpoolFsync::Always);
        assert!(!spool.has_records());
        spool.append(&[record("a"), record("b")]).unwrap();
        assert!(spool.has_records());
        let first = spool.take().unwrap();
        assert_eq!(
            first.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(),
            ["a", "b"]
        );
        spool.append(&[record("c")]).unwrap();
        // Not done yet (say the database failed again): the same records come back first.
        assert_eq!(spool.take().unwrap(), first);
        spool.done().unwrap();
        let second = spool.take().unwrap();
        assert_eq!(second, vec![record("c")]);
        spool.done().unwrap();
        assert!(!spool.has_records());
    }

    #[test]
    fn a_torn_line_does_not_lose_the_others() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.spool");
        let spool = Spool::new(&path, SpoolFsync::Never);
        spool.append(&[record("a")]).unwrap();
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(b"{\"id\":\"torn")
            .unwrap();
        let spool = Spool::new(&path, SpoolFsync::Never);
        spool.append(&[record("b")]).unwrap();
        let ids: Vec<String> = spool.take().unwrap().into_iter().map(|r| r.id).collect();
        assert_eq!(ids, ["a", "b"]);
    }
}
