//! `rkubectl`: the kubectl-like command line for rkube. All logic lives in `rkube-kubectl`.

use clap::Parser as _;

#[tokio::main(flavor = "current_thread")]
async fn main() {
    rkube_kubectl::install_panic_hook();
    let cli = rkube_kubectl::cli::Cli::parse();
    std::process::exit(rkube_kubectl::run(cli).await);
}
