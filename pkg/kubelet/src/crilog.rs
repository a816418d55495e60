//! Container log files in the CRI log format: written by the log driver, read by the log server.
//!
//! Every record is one line of the file:
//!
//! ```text
//! 2026-11-23T16:31:03.326654159Z stdout F line 5
//! 2026-11-23T16:31:03.728911184Z stdout P first 16 KiB of a long line…
//! 2026-11-23T16:31:03.729102339Z stdout F …its rest
//! ```
//!
//! that is `<RFC 3339 time> <stream> <tag> <content>`, the tag `F` for a full line (the
//! newline is not stored) and `P` for a part of one: lines longer than [`MAX_RECORD`] and
//! output that ends without a newline are split, as containerd's CRI plugin does. That is the
//! format the Kubernetes kubelet reads (`pkg/kubelet/kuberuntime/logs`), and what `kubectl
//! logs --timestamps` and `--since` are answered from.
//!
//! Files rotate by size ([`LogWriter`]): when `<n>.log` would grow past the limit, it is renamed
//! to `<n>.log.<UTC time>` and a new `<n>.log` is started; only the newest `max_files` files
//! (current one included) are kept. The Kubernetes kubelet's `containerLogMaxSize` and
//! `containerLogMaxFiles` mean the same.
//!
//! The writer runs in the log driver (`rkube-log-driver`, spawned by containerd's shim for each
//! container: see [`driver`]), so logging goes on while the kubelet restarts.

use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

use jiff::Timestamp;

/// The longest content of one record; longer lines are split into `P` records.
pub const MAX_RECORD: usize = 16 * 1024;

/// Which output stream a record came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stream {
    /// The process's standard output.
    Stdout,
    /// The process's standard error.
    Stderr,
}

impl Stream {
    /// The name written in the file.
    pub fn as_str(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}

/// One parsed line of a log file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record<'a> {
    /// When the driver read it; `None` for a line that is not in the CRI format (a file
    /// written raw by an older kubelet), which is then all content.
    pub time: Option<Timestamp>,
    /// The time as written (for `timestamps=true`, printed as it is in the file).
    pub time_text: &'a str,
    /// The stream it came from; `None` for a line not in the CRI format.
    pub stream: Option<Stream>,
    /// `F`: this record ends a line; `P`: the line goes on in the next record of the stream.
    pub partial: bool,
    /// The output, without the newline.
    pub content: &'a [u8],
}

/// Parses one line of a log file (without its newline). Lines not in the CRI format come back
/// as full records without a time, so nothing a container wrote is ever dropped.
pub fn parse(line: &[u8]) -> Record<'_> {
    let raw = Record { time: None, time_text: "", stream: None, partial: false, content: line };
    let mut fields = line.splitn(4, |byte| *byte == b' ');
    let (Some(time), Some(stream), Some(tag)) = (fields.next(), fields.next(), fields.next()) else {
        return raw;
    };
    let content = fields.next().unwrap_or_default();
    let Ok(time_text) = std::str::from_utf8(time) else { return raw };
    let Ok(parsed) = time_text.parse::<Timestamp>() else { return raw };
    let stream = match stream {
        b"stdout" => Stream::Stdout,
        b"stderr" => Stream::Stderr,
        _ => return raw,
    };
    if !(tag == b"F" || tag == b"P") {
        return raw;
    }
    Record { time: Some(parsed), time_text, stream: Some(stream), partial: tag == b"P", content }
}

/// Appends records to `<n>.log` and rotates it by size (see the module docs).
#[derive(Debug)]
pub struct LogWriter {
    path: PathBuf,
    max_size: u64,
    max_files: usize,
    file: File,
    size: u64,
}

impl LogWriter {
    /// Opens (appends to) `path`. `max_size` 0 turns rotation off; `max_files` counts the
    /// current file and is at least 2 (a rotation keeps the file before it).
    ///
    /// # Errors
    /// When the file cannot be opened.
    pub fn open(path: &Path, max_size: u64, max_files: usize) -> std::io::Result<LogWriter> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let file = std::fs::OpenOptions::new().create(true).append(true).open(path)?;
        let size = file.metadata()?.len();
        Ok(LogWriter { path: path.to_path_buf(), max_size, max_files: max_files.max(2), file, size })
    }

    /// Writes one record with the time now.
    ///
    /// # Errors
    /// When the file cannot be written or rotated.
    pub fn write_record(&mut self, stream: Stream, partial: bool, content: &[u8]) -> std::io::Result<()> {
        let mut line = Vec::with_capacity(content.len() + 48);
        line.extend_from_slice(format!("{} {} {} ", Timestamp::now(), stream.as_str(), tag(partial)).as_bytes());
        line.extend_from_slice(content);
        line.push(b'\n');
        if self.max_size > 0 && self.size > 0 && self.size + line.len() as u64 > self.max_size {
            self.rotate()?;
        }
        self.file.write_all(&line)?;
        self.size += line.len() as u64;
        Ok(())
    }

    /// Renames the current file to `<n>.log.<time>`, starts a new one and removes the oldest
    /// rotated files beyond `max_files`.
    fn rotate(&mut self) -> std::io::Result<()> {
        let stamp = Timestamp::now().strftime("%Y%m%d-%H%M%S.%f").to_string();
        let mut rotated = self.path.as_os_str().to_owned();
        rotated.push(format!(".{stamp}"));
        std::fs::rename(&self.path, &rotated)?;
        self.file = std::fs::OpenOptions::new().create(true).append(true).open(&self.path)?;
        self.size = 0;
        let old = rotated_files(&self.path);
        let excess = (old.len() + 1).saturating_sub(self.max_files);
        for file in old.iter().take(excess) {
            std::fs::remove_file(file)?;
        }
        Ok(())
    }
}

fn tag(partial: bool) -> &'static str {
    if partial { "P" } else { "F" }
}

/// The rotated files of the log `path` (`<path>.<time>`), oldest first.
pub fn rotated_files(path: &Path) -> Vec<PathBuf> {
    let (Some(dir), Some(name)) = (path.parent(), path.file_name().and_then(|name| name.to_str())) else {
        return Vec::new();
    };
    let prefix = format!("{name}.");
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter(|entry| entry.file_name().to_str().is_some_and(|file| file.starts_with(&prefix)))
                .map(|entry| entry.path())
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
}

/// Copies `reader` (one output stream of a container) into `writer` as records until EOF:
/// a record per line, lines longer than [`MAX_RECORD`] split into `P` records, and what is
/// left without a newline when the stream pauses or ends written as `P`.
///
/// # Errors
/// When reading the stream or writing the file fails.
pub fn copy_stream(mut reader: impl Read, stream: Stream, writer: &Mutex<LogWriter>) -> std::io::Result<()> {
    let mut buffer = vec![0u8; 64 * 1024];
    let mut pending: Vec<u8> = Vec::new();
    loop {
        let read = match reader.read(&mut buffer) {
            Ok(0) => break,
            Ok(read) => read,
            Err(error) if error.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(error) => return Err(error),
        };
        pending.extend_from_slice(&buffer[..read]);
        let mut writer = writer.lock().unwrap_or_else(PoisonError::into_inner);
        let mut start = 0;
        while let Some(newline) = pending[start..].iter().position(|byte| *byte == b'\n') {
            write_line(&mut writer, stream, &pending[start..start + newline])?;
            start += newline + 1;
        }
        // What is left has no newline yet: split off whole records; keep a short rest for the
        // next read (a line written in two writes stays one record), as containerd does.
        while pending.len() - start >= MAX_RECORD {
            writer.write_record(stream, true, &pending[start..start + MAX_RECORD])?;
            start += MAX_RECORD;
        }
        pending.drain(..start);
    }
    if !pending.is_empty() {
        writer.lock().unwrap_or_else(PoisonError::into_inner).write_record(stream, true, &pending)?;
    }
    Ok(())
}

/// Writes one line (without newline) as records of at most [`MAX_RECORD`] bytes.
fn write_line(writer: &mut LogWriter, stream: Stream, line: &[u8]) -> std::io::Result<()> {
    let mut chunks = line.chunks(MAX_RECORD).peekable();
    if chunks.peek().is_none() {
        return writer.write_record(stream, false, b"");
    }
    while let Some(chunk) = chunks.next() {
        writer.write_record(stream, chunks.peek().is_some(), chunk)?;
    }
    Ok(())
}

/// The log driver: what `rkube-log-driver` does when containerd's shim spawns it for a
/// container (stdio URI `binary:///path/to/rkube-log-driver?path=<log file>&max-size=<bytes>&max-files=<n>`).
pub mod driver {
    use super::{LogWriter, Stream, copy_stream};
    use std::path::PathBuf;
    use std::sync::{Arc, Mutex};

    /// What the shim passes (as `key value` argument pairs, in any order).
    #[derive(Debug, PartialEq, Eq)]
    pub struct Options {
        /// The log file, `<root-dir>/pods/<ns>_<pod>_<uid>/<container>/<n>.log`.
        pub path: PathBuf,
        /// Rotate when the file would exceed this many bytes (0: never).
        pub max_size: u64,
        /// How many files to keep, the current one included.
        pub max_files: usize,
    }

    /// Parses the shim's arguments: pairs `path <file>`, `max-size <bytes>`, `max-files <n>`
    /// in any order (containerd passes the URI's query as a Go map, so the order is random).
    ///
    /// # Errors
    /// A one-line message for an unknown key, a missing value or a missing `path`.
    pub fn parse_args(args: &[String]) -> Result<Options, String> {
        let mut path = None;
        let (mut max_size, mut max_files) = (0u64, 5usize);
        let mut pairs = args.iter();
        while let Some(key) = pairs.next() {
            let value = pairs.next().ok_or_else(|| format!("{key} needs a value"))?;
            match key.trim_start_matches('-') {
                "path" => path = Some(PathBuf::from(value)),
                "max-size" => max_size = value.parse().map_err(|_| format!("max-size {value:?} is not a number"))?,
                "max-files" => max_files = value.parse().map_err(|_| format!("max-files {value:?} is not a number"))?,
                other => return Err(format!("unknown option {other:?} (expected path, max-size, max-files)")),
            }
        }
        let path = path.ok_or("no log file given (path <file>)")?;
        Ok(Options { path, max_size, max_files })
    }

    /// The `binary://` URI that makes containerd's shim run the driver at `driver` for a
    /// container logging to `options.path`.
    pub fn uri(driver: &std::path::Path, options: &Options) -> String {
        format!(
            "binary://{}?path={}&max-size={}&max-files={}",
            percent_encoding::utf8_percent_encode(&driver.display().to_string(), PATH),
            percent_encoding::utf8_percent_encode(&options.path.display().to_string(), PATH),
            options.max_size,
            options.max_files
        )
    }

    /// The characters percent-encoded in the URI's path and `path` value: all but unreserved
    /// ones and `/` (containerd decodes both with Go's `url` package).
    const PATH: &percent_encoding::AsciiSet =
        &percent_encoding::NON_ALPHANUMERIC.remove(b'/').remove(b'-').remove(b'.').remove(b'_').remove(b'~');

    /// Runs the driver: copies the container's stdout (fd 3) and stderr (fd 4) into the log
    /// file until both end (the shim closes them when the task is deleted), after telling the
    /// shim it is ready (a byte on fd 5). The fds are reopened through `/proc/self/fd`, which
    /// for pipes gives the same pipe without unsafe code.
    ///
    /// # Errors
    /// When a pipe or the log file cannot be opened.
    pub fn run(options: &Options) -> std::io::Result<()> {
        let writer = Arc::new(Mutex::new(LogWriter::open(&options.path, options.max_size, options.max_files)?));
        let stdout = std::fs::File::open("/proc/self/fd/3")?;
        let stderr = std::fs::File::open("/proc/self/fd/4")?;
        {
            use std::io::Write;
            let mut ready = std::fs::OpenOptions::new().write(true).open("/proc/self/fd/5")?;
            ready.write_all(b"1")?;
        }
        let copies = [(stdout, Stream::Stdout), (stderr, Stream::Stderr)].map(|(pipe, stream)| {
            let writer = Arc::clone(&writer);
            std::thread::spawn(move || copy_stream(pipe, stream, &writer))
        });
        let mut result = Ok(());
        for copy in copies {
            match copy.join() {
                Ok(Ok(())) => {}
                Ok(Err(error)) => result = Err(error),
                Err(_) => result = Err(std::io::Error::other("a log copy thread panicked")),
            }
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(path: &Path) -> Vec<String> {
        std::fs::read_to_string(path).expect("read").lines().map(String::from).collect()
    }

    #[test]
    fn records_parse_back() {
        let record = parse(b"2026-11-23T16:31:03.326654159Z stdout F hello world");
        assert_eq!(record.content, b"hello world");
        assert!(!record.partial);
        assert_eq!(record.time_text, "2026-11-23T16:31:03.326654159Z");
        assert!(record.time.is_some());
        let partial = parse(b"2026-11-23T16:31:03Z stderr P ");
        assert!(partial.partial);
        assert_eq!(partial.content, b"");
        let raw = parse(b"just some output");
        assert_eq!((raw.time, raw.content), (None, b"just some output".as_slice()));
        assert_eq!(parse(b"notatime stdout F x").time, None);
    }

    #[test]
    fn lines_become_full_records_and_long_or_unfinished_ones_partial() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("0.log");
        let writer = Mutex::new(LogWriter::open(&path, 0, 5).expect("open"));
        let long = "x".repeat(MAX_RECORD + 10);
        let input = format!("one\n\n{long}\nno newline");
        copy_stream(input.as_bytes(), Stream::Stdout, &writer).expect("copy");
        let records: Vec<String> = lines(&path)
            .iter()
            .map(|line| {
                let record = parse(line.as_bytes());
                format!("{}:{}", tag(record.partial), record.content.len())
            })
            .collect();
        assert_eq!(records, ["F:3", "F:0", format!("P:{MAX_RECORD}").as_str(), "F:10", "P:10"]);
        assert!(lines(&path)[0].contains(" stdout F one"));
    }

    #[test]
    fn files_rotate_by_size_and_keep_max_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("0.log");
        let mut writer = LogWriter::open(&path, 200, 3).expect("open");
        for n in 0..40 {
            writer.write_record(Stream::Stderr, false, format!("line {n}").as_bytes()).expect("write");
        }
        let rotated = rotated_files(&path);
        assert_eq!(rotated.len(), 2, "{rotated:?}");
        assert!(std::fs::metadata(&path).expect("current").len() <= 200);
        for file in &rotated {
            assert!(std::fs::metadata(file).expect("rotated").len() <= 200);
        }
        let last = lines(&path);
        assert!(last.last().expect("a line").ends_with("stderr F line 39"), "{last:?}");
    }

    #[test]
    fn driver_arguments_come_in_any_order() {
        let args = |list: &[&str]| list.iter().map(|arg| (*arg).to_string()).collect::<Vec<_>>();
        let expected = driver::Options { path: "/x/0.log".into(), max_size: 10, max_files: 3 };
        assert_eq!(driver::parse_args(&args(&["max-files", "3", "path", "/x/0.log", "max-size", "10"])), Ok(expected));
        assert!(driver::parse_args(&args(&["max-size", "10"])).is_err());
        assert!(driver::parse_args(&args(&["path"])).is_err());
        assert!(driver::parse_args(&args(&["colour", "red", "path", "/x"])).is_err());
        let uri = driver::uri(
            Path::new("/opt/rkube/rkube-log-driver"),
            &driver::Options { path: "/var/lib/a b/0.log".into(), max_size: 1, max_files: 2 },
        );
        assert_eq!(uri, "binary:///opt/rkube/rkube-log-driver?path=/var/lib/a%20b/0.log&max-size=1&max-files=2");
    }
}
