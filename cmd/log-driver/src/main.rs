//! `rkube-log-driver`: one container's log writer, spawned by containerd's shim. Thin main:
//! arguments → `rkube_kubelet::crilog::driver::run`.

use std::process::ExitCode;

use clap::Parser;
use rkube_kubelet::crilog::driver;

/// Writes one container's stdout and stderr to its log file in the CRI log format
/// (`<time> <stream> <F|P> <text>`), rotating the file by size.
///
/// You do not run this yourself: rkubelet starts every container with the stdio URI
/// `binary:///path/to/rkube-log-driver?path=<log file>&max-size=<bytes>&max-files=<n>`, and
/// containerd's shim runs this program with the query as `key value` pairs (in any order) and
/// the container's stdout, stderr and a ready pipe as file descriptors 3, 4 and 5. It keeps
/// writing while rkubelet restarts, ignores SIGTERM to drain the pipes, and exits when the
/// shim closes them (the task was deleted).
///
/// Example: rkube-log-driver path /var/lib/rkubelet/pods/default_web_<uid>/web/0.log
/// max-size 10485760 max-files 5   3<stdout-pipe 4<stderr-pipe 5>ready-pipe
#[derive(Debug, Parser)]
#[command(name = "rkube-log-driver", version, about, long_about)]
struct Args {
    /// `path <log file>`, `max-size <bytes>` (0: no rotation), `max-files <n>` (current
    /// file included; default 5).
    #[arg(value_name = "KEY VALUE", num_args = 0..)]
    pairs: Vec<String>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let options = match driver::parse_args(&args.pairs) {
        Ok(options) => options,
        Err(message) => {
            eprintln!("rkube-log-driver: {message}");
            return ExitCode::from(2);
        }
    };
    // SIGTERM comes right after the task is deleted: keep draining to EOF instead of dying
    // mid-write. A registered tokio handler replaces the default action for the process.
    let signals = tokio::runtime::Builder::new_current_thread().enable_io().build().and_then(|runtime| {
        runtime.block_on(async { tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) })
    });
    if let Err(error) = signals {
        eprintln!("rkube-log-driver: cannot handle SIGTERM: {error}");
    }
    match driver::run(&options) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("rkube-log-driver: {}: {error}", options.path.display());
            ExitCode::FAILURE
        }
    }
}
