//! Where the repository, its built binaries and its Python virtualenv live.
//!
//! Binaries are looked up in the target directory of the running test or bench executable
//! (`target/<profile>/`, so `CARGO_TARGET_DIR` and the profile are honoured without guessing),
//! then in `$CARGO_TARGET_DIR/<profile>/` and `<repo>/target/<profile>/`.

use std::path::{Path, PathBuf};

/// The root of the rkube workspace (the directory holding the workspace `Cargo.toml`).
pub fn repo_root() -> PathBuf {
    let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let root = manifest_dir.parent().unwrap_or(manifest_dir);
    root.canonicalize().unwrap_or_else(|_| root.to_path_buf())
}

/// The profile this harness was compiled with: `debug` for tests, `release` for `make bench`.
fn profile() -> &'static str {
    if cfg!(debug_assertions) { "debug" } else { "release" }
}

/// Directories that may hold the workspace's built binaries, best first.
fn binary_dirs() -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    if let Ok(exe) = std::env::current_exe()
        && let Some(mut dir) = exe.parent().map(Path::to_path_buf)
    {
        // Test executables live in target/<profile>/deps; bins in target/<profile>.
        if dir.file_name().is_some_and(|name| name == "deps") {
            dir.pop();
        }
        dirs.push(dir);
    }
    if let Some(target) = std::env::var_os("CARGO_TARGET_DIR") {
        let target = PathBuf::from(target);
        let target = if target.is_absolute() { target } else { repo_root().join(target) };
        dirs.push(target.join(profile()));
    }
    dirs.push(repo_root().join("target").join(profile()));
    dirs
}

/// The path of a workspace binary, e.g. `binary("rkube-apiserver")`.
///
/// # Panics
/// When the binary has not been built: "build it first: cargo build --bins (make build)".
pub fn binary(name: &str) -> PathBuf {
    let dirs = binary_dirs();
    for dir in &dirs {
        let candidate = dir.join(name);
        if candidate.is_file() {
            return candidate;
        }
    }
    let looked: Vec<String> = dirs.iter().map(|dir| dir.join(name).display().to_string()).collect();
    panic!("{name} not found (looked in {}): build it first: cargo build --bins (make build)", looked.join(", "));
}

/// The path of a tool installed in the repository's Python virtualenv, `<repo>/.venv/bin/<name>`.
///
/// # Panics
/// When it is missing: "<name> not installed ...: run `make deps`".
pub fn venv_bin(name: &str) -> PathBuf {
    let path = repo_root().join(".venv").join("bin").join(name);
    if !path.is_file() {
        panic!("{name} not installed ({} is missing): run `make deps`", path.display());
    }
    path
}

/// Finds an executable on `PATH`.
pub(crate) fn find_on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|dir| dir.join(name)).find(|candidate| candidate.is_file())
}

/// A fresh temporary directory for one process's data and logs.
///
/// Prefers `$RKUBE_TEST_TMPDIR`, then `/dev/shm` (etcd's fsyncs are free on tmpfs, which keeps
/// parallel tests fast on small machines), then the system temporary directory.
pub(crate) fn temp_dir(prefix: &str) -> std::io::Result<tempfile::TempDir> {
    let mut builder = tempfile::Builder::new();
    builder.prefix(prefix);
    if let Some(dir) = std::env::var_os("RKUBE_TEST_TMPDIR") {
        return builder.tempdir_in(dir);
    }
    let shm = Path::new("/dev/shm");
    if shm.is_dir()
        && let Ok(dir) = builder.tempdir_in(shm)
    {
        return Ok(dir);
    }
    builder.tempdir()
}
