//! rkubectl's commands: the kubectl-like client as a library.
//!
//! `rkubectl` is a thin `main` over [`run`]: it parses [`cli::Cli`] (clap) and calls [`run`],
//! which builds a [`context::Connection`] (kubeconfig, namespace, client) and dispatches to one
//! module per verb family:
//!
//! - [`resource`]: type names as typed (`po`, `deploy/web`, `pods,svc`) → the registry;
//! - [`printer`]: tables from the server's Table answers; YAML, JSON, names, JSONPath;
//! - [`manifest`]: `-f` files, directories and stdin, multi-document YAML;
//! - [`get`], [`apply`] (create -f and apply), [`create`] (generators), [`expose`], [`set`]
//!   (set env), [`delete`], [`describe`], [`edit`],
//!   [`mutate`] (patch, label, annotate, scale, cordon, uncordon), [`run`], [`wait`], [`events`],
//!   [`rollout`], [`drain`], [`logs`], [`top`], [`explain`], [`info`] (api-resources, version),
//!   [`config`];
//! - [`stream`]: the remote-command protocol of [`exec`], [`attach`], [`cp`], [`debug`] and
//!   `run -i`.
//!
//! What this keeps true: every failure ends as one line on stderr (`Error from server
//! (Reason): message` for the server's refusals, `error: ...` otherwise) and exit code 1; no
//! panic or backtrace for anything the server, a file or the user sends. Output that is meant
//! for people (tables, progress) is the same whether or not stdout is a terminal, except that
//! colour and the waiting spinner appear only on a terminal.
//!
//! Not promised: every kubectl flag; the ones listed in `rkubectl <verb> --help` are the ones
//! that work.

pub mod apply;
pub mod attach;
pub mod cli;
pub mod config;
pub mod context;
pub mod cp;
pub mod create;
pub mod debug;
pub mod delete;
pub mod describe;
pub mod drain;
pub mod edit;
pub mod error;
pub mod events;
pub mod exec;
pub mod explain;
pub mod expose;
pub mod get;
pub mod info;
pub mod logs;
pub mod manifest;
pub mod mutate;
pub mod portforward;
pub mod printer;
pub mod resource;
pub mod rollout;
pub mod run;
pub mod set;
pub mod stream;
pub mod top;
pub mod wait;

use std::io::IsTerminal as _;

use clap::CommandFactory as _;

use crate::cli::{Cli, Command, CreateArgs, FileArgs};
use crate::context::Connection;
pub use crate::error::{Error, Result};

/// Makes a closed stdout (`rkubectl get pods | head -1`) end the process quietly, as SIGPIPE
/// ends kubectl, and any other panic print one line instead of a backtrace. Call once at the
/// start of `main`.
pub fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        let message = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or("unknown panic");
        if message.contains("Broken pipe") {
            std::process::exit(141);
        }
        let location = info.location().map(|l| format!(" at {}:{}", l.file(), l.line())).unwrap_or_default();
        eprintln!("error: rkubectl bug: {message}{location}");
        std::process::exit(1);
    }));
}

/// Runs one command line and returns the process exit code (0 on success). Errors are
/// printed here, one line on stderr.
pub async fn run(cli: Cli) -> i32 {
    match dispatch(cli).await {
        Ok(()) => 0,
        Err(Error::Other(text)) if text.contains("Broken pipe") => 141,
        Err(e) => {
            let text = e.to_string();
            if std::io::stderr().is_terminal() {
                eprintln!("\x1b[31m{text}\x1b[0m");
            } else {
                eprintln!("{text}");
            }
            e.exit_code()
        }
    }
}

async fn dispatch(cli: Cli) -> Result<()> {
    let global = &cli.global;
    match &cli.command {
        Command::Version(args) => return info::version(global, args).await,
        Command::Config(cmd) => return config::run(global, cmd),
        Command::Completion { shell } => {
            let mut script = Vec::new();
            clap_complete::generate(*shell, &mut Cli::command(), "rkubectl", &mut script);
            return std::io::Write::write_all(&mut std::io::stdout(), &script).map_err(Error::from);
        }
        _ => {}
    }
    let ctx = Connection::new(global)?;
    // Names a built-in kind does not explain may be the server's custom resources: learn them
    // (one discovery request), as kubectl does.
    let names: Option<&[String]> = match &cli.command {
        Command::Get(a) => Some(&a.resources),
        Command::Delete(a) => Some(&a.resources),
        Command::Describe(a) => Some(&a.resources),
        Command::Edit(a) => Some(&a.resources),
        Command::Patch(a) => Some(&a.resources),
        Command::Scale(a) => Some(&a.resources),
        Command::Wait(a) => Some(&a.resources),
        Command::Label(a) | Command::Annotate(a) => Some(&a.args),
        Command::Expose(a) => Some(&a.resources),
        _ => None,
    };
    let files = matches!(&cli.command, Command::Apply(_) | Command::Create(CreateArgs { generator: None, .. }))
        || matches!(&cli.command, Command::Delete(a) if !a.filenames.is_empty());
    if files || names.and_then(|n| n.first()).is_some_and(|first| !resource::is_built_in(first)) {
        resource::discover(&ctx.client).await;
    }
    match &cli.command {
        Command::Get(args) => get::run(&ctx, args).await,
        Command::Create(CreateArgs { generator: Some(generator), .. }) => create::run(&ctx, generator).await,
        Command::Create(args) => {
            let files =
                FileArgs { filenames: args.filenames.clone(), recursive: args.recursive, output: args.output.clone() };
            apply::create(&ctx, &files).await
        }
        Command::Expose(args) => expose::run(&ctx, args).await,
        Command::Set(cmd) => set::run(&ctx, cmd).await,
        Command::Apply(args) => apply::apply(&ctx, args).await,
        Command::Delete(args) => delete::run(&ctx, args).await,
        Command::Describe(args) => describe::run(&ctx, args).await,
        Command::Edit(args) => edit::run(&ctx, args).await,
        Command::Patch(args) => mutate::patch(&ctx, args).await,
        Command::Label(args) => mutate::label(&ctx, args, "labels").await,
        Command::Annotate(args) => mutate::label(&ctx, args, "annotations").await,
        Command::Scale(args) => mutate::scale(&ctx, args).await,
        Command::Run(args) => run::run(&ctx, args).await,
        Command::Cordon(args) => mutate::cordon(&ctx, &args.node, true).await,
        Command::Uncordon(args) => mutate::cordon(&ctx, &args.node, false).await,
        Command::Drain(args) => drain::run(&ctx, args).await,
        Command::Wait(args) => wait::run(&ctx, args).await,
        Command::Events(args) => events::run(&ctx, args).await,
        Command::Rollout(cmd) => rollout::run(&ctx, cmd).await,
        Command::Logs(args) => logs::run(&ctx, args).await,
        Command::Exec(args) => exec::run(&ctx, args).await,
        Command::Attach(args) => attach::run(&ctx, args).await,
        Command::Cp(args) => cp::run(&ctx, args).await,
        Command::Debug(args) => debug::run(&ctx, args).await,
        Command::PortForward(args) => portforward::run(&ctx, args).await,
        Command::Top(cmd) => top::run(&ctx, cmd).await,
        Command::Explain(args) => explain::run(&ctx, args).await,
        Command::ApiResources(args) => info::api_resources(&ctx, args).await,
        Command::Version(_) | Command::Config(_) | Command::Completion { .. } => Ok(()),
    }
}
