//! `exec`: a command in a container of a running pod, over the apiserver's `pods/exec`.
//!
//! Opens the WebSocket kubectl opens (`GET …/pods/<name>/exec?command=…&container=…&stdout=true
//! &stderr=true[&stdin=true]`, subprotocol `v5.channel.k8s.io`): binary messages whose first
//! byte is a channel (0 stdin, 1 stdout, 2 stderr, 3 the final `Status`, 255 close). Output is
//! written as it arrives; with `-i`, this process's stdin is sent and its end is signalled with
//! `[255, 0]`. A `Status` with reason `NonZeroExitCode` makes rkubectl exit with the command's
//! code (as kubectl does). No terminal (`-t`) yet.

use futures::{SinkExt, StreamExt};
use tokio::io::AsyncReadExt;
use tokio_tungstenite::tungstenite::Message;

use crate::cli::ExecArgs;
use crate::context::{Connection, escape, path};
use crate::error::{Error, Result};
use crate::resource;

const PROTOCOL: &str = "v5.channel.k8s.io";

/// Runs `exec`.
pub async fn run(ctx: &Connection, args: &ExecArgs) -> Result<()> {
    if args.tty {
        return Err(Error::msg("-t/--tty is not supported by rkube yet; run exec without it"));
    }
    let def = resource::resolve("pods")?;
    let name = match args.pod.split_once('/') {
        Some((ty, name)) if resource::resolve(ty)?.plural == "pods" => name.to_string(),
        Some((ty, _)) => return Err(Error::msg(format!("exec runs in pods, not {ty}"))),
        None => args.pod.clone(),
    };
    let p = path(def, ctx.ns_for(def), Some(&name));
    // The pod first: a clear NotFound, and the default container.
    let pod = ctx.get(&p).await?;
    let container = match &args.container {
        Some(container) => container.clone(),
        None => pod["spec"]["containers"][0]["name"].as_str().unwrap_or_default().to_string(),
    };
    let mut query: Vec<String> = args.command.iter().map(|word| format!("command={}", escape(word))).collect();
    query.push(format!("container={}", escape(&container)));
    query.push("stdout=true&stderr=true".into());
    if args.stdin {
        query.push("stdin=true".into());
    }
    let socket = ctx.websocket(&format!("{p}/exec?{}", query.join("&")), PROTOCOL, &format!("exec {name}")).await?;
    let (mut sink, mut incoming) = socket.split();
    let input = args.stdin.then(|| {
        tokio::spawn(async move {
            let mut stdin = tokio::io::stdin();
            let mut buffer = vec![0u8; 32 * 1024];
            loop {
                let read = stdin.read(&mut buffer).await.unwrap_or(0);
                if read == 0 {
                    let _ = sink.send(Message::Binary(vec![255, 0].into())).await; // stdin ends
                    return sink;
                }
                let mut frame = vec![0u8];
                frame.extend_from_slice(&buffer[..read]);
                if sink.send(Message::Binary(frame.into())).await.is_err() {
                    return sink;
                }
            }
        })
    });
    let mut outcome = Err(Error::msg("the connection ended before the command's status arrived"));
    while let Some(message) = incoming.next().await {
        let data = match message {
            Ok(Message::Binary(data)) => data,
            Ok(Message::Close(_)) => break,
            Ok(_) => continue,
            Err(e) => return Err(Error::msg(format!("exec: {e}"))),
        };
        match data.split_first() {
            Some((1, bytes)) => write(&mut std::io::stdout(), bytes)?,
            Some((2, bytes)) => write(&mut std::io::stderr(), bytes)?,
            Some((3, bytes)) => outcome = status(bytes),
            _ => {}
        }
    }
    if let Some(input) = input {
        input.abort();
    }
    outcome
}

fn write(to: &mut impl std::io::Write, bytes: &[u8]) -> Result<()> {
    to.write_all(bytes)?;
    to.flush()?;
    Ok(())
}

/// What the final `Status` of an exec means for rkubectl.
fn status(bytes: &[u8]) -> Result<()> {
    let status: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| Error::msg(format!("exec: unreadable status: {e}")))?;
    if status["status"] == "Success" {
        return Ok(());
    }
    if status["reason"] == "NonZeroExitCode" {
        let code = status["details"]["causes"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|cause| cause["reason"] == "ExitCode")
            .and_then(|cause| cause["message"].as_str()?.parse().ok())
            .unwrap_or(1);
        return Err(Error::Exit(code));
    }
    Err(Error::Server {
        reason: status["reason"].as_str().unwrap_or("Unknown").to_string(),
        message: status["message"].as_str().unwrap_or_default().to_string(),
        code: u16::try_from(status["code"].as_u64().unwrap_or(500)).unwrap_or(500),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_status_decides_the_exit_code() {
        assert!(status(br#"{"metadata":{},"status":"Success"}"#).is_ok());
        let failed = br#"{"status":"Failure","reason":"NonZeroExitCode","details":{"causes":[{"reason":"ExitCode","message":"3"}]}}"#;
        assert_eq!(status(failed).map_err(|e| e.exit_code()), Err(3));
        let broken = br#"{"status":"Failure","reason":"InternalError","message":"container main of pod x is not running","code":500}"#;
        let error = status(broken).expect_err("a failure");
        assert_eq!((error.exit_code(), error.to_string().contains("is not running")), (1, true));
        assert!(status(b"nonsense").is_err());
    }
}
