//! `edit`: the object in an editor, saved back with an update.
//!
//! The object is written as YAML (or JSON) to a temporary file, `$KUBE_EDITOR`, else
//! `$EDITOR`, else `vi` is run on it (through `sh -c`, so the variable may carry arguments),
//! and the result is sent back with `PUT`. The edited text keeps the `resourceVersion` that
//! was read, so when someone else changed the object in the meantime the server answers
//! `409 Conflict`: then nothing is written, the edited file is kept, and the error says where
//! it is. Saving the file unchanged (or empty) cancels the edit.

use std::process::Stdio;

use serde_json::Value;

use crate::cli::EditArgs;
use crate::context::{Connection, path};
use crate::error::{Error, Result};
use crate::printer;
use crate::resource;

/// Runs `edit`.
pub async fn run(ctx: &Connection, args: &EditArgs) -> Result<()> {
    let (def, name) = resource::parse_one(&args.resources)?;
    let p = path(def, ctx.ns_for(def), Some(&name));
    let live = ctx.get(&p).await?;
    let json = match args.output.as_str() {
        "yaml" => false,
        "json" => true,
        other => return Err(Error::msg(format!("--output must be yaml or json, not {other:?}"))),
    };
    let text = if json { printer::to_json(&live) } else { printer::to_yaml(&live)? };
    let stamp = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    let file = std::env::temp_dir().join(format!(
        "rkubectl-edit-{}-{stamp}.{}",
        std::process::id(),
        if json { "json" } else { "yaml" }
    ));
    let header = "# Please edit the object below. Lines beginning with a '#' will be ignored,\n\
                  # and an empty file will abort the edit.\n#\n";
    std::fs::write(&file, format!("{}{text}", if json { "" } else { header }))?;
    let editor = std::env::var("KUBE_EDITOR")
        .ok()
        .filter(|e| !e.trim().is_empty())
        .or_else(|| std::env::var("EDITOR").ok().filter(|e| !e.trim().is_empty()))
        .unwrap_or_else(|| "vi".to_string());
    let status = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(format!("{editor} \"$1\""))
        .arg("sh")
        .arg(&file)
        .stdin(Stdio::inherit())
        .stdout(Stdio::inherit())
        .stderr(Stdio::inherit())
        .status()
        .await
        .map_err(|e| Error::msg(format!("cannot start the editor {editor:?}: {e}")))?;
    if !status.success() {
        return Err(Error::msg(format!("the editor {editor:?} failed ({status}); nothing was changed")));
    }
    let edited_text = std::fs::read_to_string(&file)?;
    let body: String = edited_text.lines().filter(|l| !l.trim_start().starts_with('#')).collect::<Vec<_>>().join("\n");
    if body.trim().is_empty() {
        let _ = std::fs::remove_file(&file);
        println!("Edit cancelled, no changes made.");
        return Ok(());
    }
    let edited: Value = serde_yaml_ng::from_str(&body).map_err(|e| {
        Error::msg(format!("the edited file is not valid YAML ({e}); your edits were kept in {}", file.display()))
    })?;
    if edited == live {
        let _ = std::fs::remove_file(&file);
        println!("Edit cancelled, no changes made.");
        return Ok(());
    }
    match ctx.send(http::Method::PUT, &p, None, None, Some(&edited)).await {
        Ok(_) => {
            let _ = std::fs::remove_file(&file);
            println!("{} edited", resource::ref_name(def, &name));
            Ok(())
        }
        Err(Error::Server { reason, message, code }) => Err(Error::Server {
            message: if reason == "Conflict" {
                format!(
                    "{message} (the object changed while you edited it; your edits were kept in {}: run `rkubectl edit` \
                     again and redo them on the latest version)",
                    file.display()
                )
            } else {
                format!("{message} (your edits were kept in {})", file.display())
            },
            reason,
            code,
        }),
        Err(e) => Err(e),
    }
}
