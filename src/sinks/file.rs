//! `file`: JSON lines (one CloudEvent per line) appended to a file the host names, rotated
//! by size — for log shippers (Filebeat, Fluent Bit, Vector) and for the demo.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use super::{Answer, Sending, Sink, SinkProblem};
use crate::config::Endpoint;
use crate::events::outbox::Stored;

const DEFAULT_ROTATE_BYTES: u64 = 100 * 1024 * 1024;
const DEFAULT_KEEP: u32 = 3;

pub struct FileSink {
    path: PathBuf,
    rotate_bytes: u64,
    keep: u32,
}

impl FileSink {
    pub fn new(endpoint: &Endpoint) -> Result<FileSink, SinkProblem> {
        let path = endpoint
            .url
            .strip_prefix("file://")
            .map(PathBuf::from)
            .filter(|p| p.is_absolute())
            .ok_or_else(|| {
                SinkProblem(format!(
                    "`{}` is not a file URL with an absolute path, like file:///var/log/gitward/events.jsonl",
                    endpoint.url
                ))
            })?;
        Ok(FileSink {
            path,
            rotate_bytes: endpoint.rotate_bytes.unwrap_or(DEFAULT_ROTATE_BYTES).max(1),
            keep: endpoint.keep.unwrap_or(DEFAULT_KEEP),
        })
    }

    fn rotated(&self, n: u32) -> PathBuf {
        PathBuf::from(format!("{}.{n}", self.path.display()))
    }

    /// Moves `events.jsonl` to `events.jsonl.1`, `.1` to `.2`..., dropping the oldest.
    fn rotate(&self) -> std::io::Result<()> {
        if self.keep == 0 {
            return std::fs::remove_file(&self.path);
        }
        let _ = std::fs::remove_file(self.rotated(self.keep));
        for n in (1..self.keep).rev() {
            let from = self.rotated(n);
            if from.exists() {
                std::fs::rename(&from, self.rotated(n + 1))?;
            }
        }
        std::fs::rename(&self.path, self.rotated(1))
    }

    /// Appends a line per event, rotating before a line that would take the file past its
    /// size (a line longer than that goes alone into a file of its own).
    fn append(&self, events: &[Stored]) -> std::io::Result<()> {
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let open = || {
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .mode(0o640)
                .open(&self.path)
        };
        let mut size = std::fs::metadata(&self.path).map_or(0, |m| m.len());
        let mut file = open()?;
        let mut lines = Vec::new();
        for stored in events {
            let line = stored.json.len() as u64 + 1;
            if size > 0 && size + line > self.rotate_bytes {
                file.write_all(&lines)?;
                file.sync_data()?;
                lines.clear();
                self.rotate()?;
                file = open()?;
                size = 0;
            }
            lines.extend_from_slice(stored.json.as_bytes());
            lines.push(b'\n');
            size += line;
        }
        file.write_all(&lines)?;
        file.sync_data()
    }
}

fn describe(path: &Path, error: &std::io::Error) -> String {
    format!("{}: {error}", path.display())
}

impl Sink for FileSink {
    fn batch_size(&self) -> usize {
        1000
    }

    fn send<'a>(&'a mut self, events: &'a [Stored]) -> Sending<'a> {
        Box::pin(async move {
            match self.append(events) {
                Ok(()) => Answer::Delivered { duplicates: 0 },
                // A full disk or a missing permission may be fixed by the host.
                Err(error) => Answer::Retry {
                    error: describe(&self.path, &error),
                    after: None,
                },
            }
        })
    }
}
