//! `api-resources` and `version`: what the server serves, and which versions talk.
//!
//! `api-resources` reads the server's discovery documents (`/api/v1`, `/apis`, then each
//! `/apis/<group>/<version>`), so it shows what this server serves rather than what this
//! client was built with.

use serde_json::Value;

use crate::cli::{ApiResourcesArgs, VersionArgs};
use crate::context::Connection;
use crate::error::Result;
use crate::printer::Table;

/// Runs `api-resources`.
pub async fn api_resources(ctx: &Connection, args: &ApiResourcesArgs) -> Result<()> {
    let mut lists: Vec<Value> = vec![ctx.get("/api/v1").await?];
    let groups = ctx.get("/apis").await?;
    for group in groups["groups"].as_array().map(Vec::as_slice).unwrap_or_default() {
        let gv = group["preferredVersion"]["groupVersion"]
            .as_str()
            .or_else(|| group["versions"][0]["groupVersion"].as_str())
            .unwrap_or("");
        if !gv.is_empty() {
            lists.push(ctx.get(&format!("/apis/{gv}")).await?);
        }
    }
    let mut table = Table::new(&["NAME", "SHORTNAMES", "APIVERSION", "NAMESPACED", "KIND"]);
    let mut names = Vec::new();
    for list in &lists {
        let gv = list["groupVersion"].as_str().unwrap_or("");
        for r in list["resources"].as_array().map(Vec::as_slice).unwrap_or_default() {
            let name = r["name"].as_str().unwrap_or("");
            if name.contains('/') {
                continue;
            }
            let namespaced = r["namespaced"].as_bool().unwrap_or(false);
            if args.namespaced.is_some_and(|want| want != namespaced) {
                continue;
            }
            let shorts: Vec<&str> =
                r["shortNames"].as_array().map(|a| a.iter().filter_map(Value::as_str).collect()).unwrap_or_default();
            let group = gv.rsplit_once('/').map(|(g, _)| g).unwrap_or("");
            names.push(if group.is_empty() { name.to_string() } else { format!("{name}.{group}") });
            table.rows.push(vec![
                name.to_string(),
                shorts.join(","),
                gv.to_string(),
                namespaced.to_string(),
                r["kind"].as_str().unwrap_or("").to_string(),
            ]);
        }
    }
    if args.output.as_deref() == Some("name") {
        for name in names {
            println!("{name}");
        }
    } else {
        print!("{}", table.render(false));
    }
    Ok(())
}

/// Runs `version`.
pub async fn version(global: &crate::cli::GlobalArgs, args: &VersionArgs) -> Result<()> {
    println!("Client Version: v{}", env!("CARGO_PKG_VERSION"));
    if args.client {
        return Ok(());
    }
    let ctx = Connection::new(global)?;
    let v = ctx.get("/version").await?;
    println!("Server Version: {}", v["gitVersion"].as_str().unwrap_or("unknown"));
    Ok(())
}
