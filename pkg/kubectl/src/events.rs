//! `events`: core/v1 Events, oldest first; `-w` keeps printing new ones.
//!
//! Sorted by the event's last time (`lastTimestamp`, else `eventTime`, else
//! `firstTimestamp`, else `creationTimestamp`), as `kubectl events` sorts them.

use std::io::Write as _;

use serde_json::Value;

use crate::cli::EventsArgs;
use crate::context::{Connection, path, with_query};
use crate::error::Result;
use crate::printer::{self, Table};
use crate::resource;

/// The time an event is sorted by (RFC 3339 text sorts in time order).
pub fn event_time(e: &Value) -> String {
    ["lastTimestamp", "eventTime", "firstTimestamp"]
        .iter()
        .find_map(|f| e[*f].as_str().filter(|t| !t.is_empty()))
        .or_else(|| e["metadata"]["creationTimestamp"].as_str())
        .unwrap_or("")
        .to_string()
}

fn row(e: &Value, with_ns: bool) -> Vec<String> {
    let mut row = Vec::new();
    if with_ns {
        row.push(e["metadata"]["namespace"].as_str().unwrap_or("").to_string());
    }
    let involved = &e["involvedObject"];
    row.extend([
        printer::age(&Value::String(event_time(e))),
        e["type"].as_str().unwrap_or("").to_string(),
        e["reason"].as_str().unwrap_or("").to_string(),
        format!(
            "{}/{}",
            involved["kind"].as_str().unwrap_or("").to_lowercase(),
            involved["name"].as_str().unwrap_or("")
        ),
        e["message"].as_str().unwrap_or("").trim().to_string(),
    ]);
    row
}

/// Runs `events`.
pub async fn run(ctx: &Connection, args: &EventsArgs) -> Result<()> {
    let def = resource::resolve("events")?;
    let mut selector = String::new();
    if let Some(target) = &args.for_ {
        let (obj_def, name) = resource::parse_one(std::slice::from_ref(target))?;
        selector = format!("involvedObject.kind={},involvedObject.name={name}", obj_def.kind);
    }
    let collection = path(def, ctx.list_ns(def), None);
    let list = ctx.get(&with_query(&collection, &[("fieldSelector", &selector)])).await?;
    let mut items = list["items"].as_array().cloned().unwrap_or_default();
    items.sort_by_key(event_time);
    let with_ns = ctx.all_namespaces;
    let mut headers = vec!["LAST SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"];
    if with_ns {
        headers.insert(0, "NAMESPACE");
    }
    let mut table = Table::new(&headers);
    table.rows = items.iter().map(|e| row(e, with_ns)).collect();
    if items.is_empty() && !args.watch {
        eprintln!("No events found in {} namespace.", ctx.namespace);
        return Ok(());
    }
    print!("{}", table.render(false));
    if args.watch {
        let mut widths = table.widths();
        let rv = list["metadata"]["resourceVersion"].as_str().unwrap_or("").to_string();
        let p = with_query(&collection, &[("watch", "true"), ("resourceVersion", &rv), ("fieldSelector", &selector)]);
        let mut stream = ctx.stream(&p, "application/json").await?;
        let mut stdout = std::io::stdout();
        if items.is_empty() {
            write!(stdout, "{}", printer::render_row(&table.headers, &widths))?;
        }
        while let Some((kind, e)) = stream.next_event().await? {
            if kind == "ADDED" || kind == "MODIFIED" {
                let r = row(&e, with_ns);
                for (w, c) in widths.iter_mut().zip(&r) {
                    *w = (*w).max(c.chars().count());
                }
                write!(stdout, "{}", printer::render_row(&r, &widths))?;
                stdout.flush()?;
            }
        }
    }
    Ok(())
}
