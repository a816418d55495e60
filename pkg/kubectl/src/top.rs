//! `top node` and `top pod`: CPU and memory in use, from `metrics.k8s.io/v1beta1`.
//!
//! The numbers come as the apiserver serves them (`NodeMetrics`, `PodMetrics`: CPU in
//! nanocores such as `"123456n"`, memory in bytes such as `"1234Ki"`) and print as kubectl's
//! `top` prints them: CPU in whole millicores (`250m`), memory in whole MiB (`16Mi`), both
//! rounded as Kubernetes rounds quantities (CPU up, memory down to the MiB). A node's
//! percentages are of its `status.allocatable` (`--show-capacity`: of its `status.capacity`),
//! and a node the metrics leave out prints `<unknown>`, as kubectl does. A pod's usage is the
//! sum of its containers'; `--containers` prints one row per container.
//!
//! Rows come in the server's order, or by usage, highest first, with `--sort-by cpu|memory`.
//! An empty pod list says `No resources found in <ns> namespace.` on stderr, unless pods exist
//! (then their metrics are not available yet, an error), as kubectl says.
//!
//! Not promised: kubectl's `--use-protocol-buffers`, `--sum` (rkubectl has no totals row) and
//! `--show-swap`.

use serde_json::Value;

use crate::cli::{TopCommand, TopNodeArgs, TopPodArgs};
use crate::context::{Connection, path, with_query};
use crate::error::{Error, Result};
use crate::printer::Table;
use crate::resource;

const METRICS: &str = "/apis/metrics.k8s.io/v1beta1";

/// Runs `top node` or `top pod`.
pub async fn run(ctx: &Connection, command: &TopCommand) -> Result<()> {
    match command {
        TopCommand::Node(args) => nodes(ctx, args).await,
        TopCommand::Pod(args) => pods(ctx, args).await,
    }
}

/// Usage read from a metrics object: millicores and bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Usage {
    cpu_milli: i64,
    memory_bytes: i64,
}

impl Usage {
    /// The `usage` map of a metrics object (a node or a container); a missing or malformed
    /// quantity is an error naming `what`.
    fn of(usage: &Value, what: &str) -> Result<Usage> {
        let read = |resource: &str, parse: fn(&str) -> std::result::Result<i64, _>| {
            let text = usage[resource].as_str().unwrap_or("0");
            parse(text).map_err(|e: rkube_api::quantity::ParseQuantityError| {
                Error::msg(format!("the metrics of {what} have an unreadable {resource}: {e}"))
            })
        };
        Ok(Usage {
            cpu_milli: read("cpu", rkube_api::quantity::parse_milli)?,
            memory_bytes: read("memory", rkube_api::quantity::parse_units)?,
        })
    }

    fn add(self, other: Usage) -> Usage {
        Usage {
            cpu_milli: self.cpu_milli.saturating_add(other.cpu_milli),
            memory_bytes: self.memory_bytes.saturating_add(other.memory_bytes),
        }
    }

    fn cpu(&self) -> String {
        format!("{}m", self.cpu_milli)
    }

    fn memory(&self) -> String {
        format!("{}Mi", self.memory_bytes / (1024 * 1024))
    }
}

/// `used` as a whole percentage of `available` (`"37%"`), as kubectl computes it.
fn percent(used: i64, available: i64) -> String {
    if available <= 0 {
        return "<unknown>".into();
    }
    // Truncated, as kubectl's int64(float64(used) / float64(available) * 100).
    let value = (used as f64 / available as f64 * 100.0) as i64;
    format!("{value}%")
}

/// Orders rows by `--sort-by` (highest first), or keeps the server's order.
fn sort_rows<T>(rows: &mut [(Usage, T)], sort_by: Option<&str>) -> Result<()> {
    match sort_by {
        None | Some("") => {}
        Some("cpu") => rows.sort_by_key(|(usage, _)| std::cmp::Reverse(usage.cpu_milli)),
        Some("memory") => rows.sort_by_key(|(usage, _)| std::cmp::Reverse(usage.memory_bytes)),
        Some(other) => {
            return Err(Error::msg(format!("--sort-by accepts only cpu or memory, not {other:?}")));
        }
    }
    Ok(())
}

fn print(table: &Table, no_headers: bool) -> Result<()> {
    use std::io::Write as _;
    write!(std::io::stdout(), "{}", table.render(no_headers))?;
    Ok(())
}

/// `top node [NAME]`.
async fn nodes(ctx: &Connection, args: &TopNodeArgs) -> Result<()> {
    let selector = args.selector.clone().unwrap_or_default();
    let nodes_def = resource::resolve("nodes")?;
    let (metrics, nodes) = match &args.name {
        Some(name) => {
            let metrics = ctx.get(&format!("{METRICS}/nodes/{name}")).await?;
            let node = ctx.get(&path(nodes_def, None, Some(name))).await?;
            (vec![metrics], vec![node])
        }
        None => {
            let metrics = ctx.get(&with_query(&format!("{METRICS}/nodes"), &[("labelSelector", &selector)])).await?;
            let nodes = ctx.get(&with_query(&path(nodes_def, None, None), &[("labelSelector", &selector)])).await?;
            (items(metrics), items(nodes))
        }
    };
    if metrics.is_empty() {
        return Err(Error::msg("metrics not available yet"));
    }
    let field = if args.show_capacity { "capacity" } else { "allocatable" };
    let available = |name: &str| -> Option<Usage> {
        let node = nodes.iter().find(|node| node["metadata"]["name"] == name)?;
        Usage::of(&node["status"][field], name).ok()
    };
    let mut rows = Vec::new();
    for item in &metrics {
        let name = item["metadata"]["name"].as_str().unwrap_or_default().to_string();
        rows.push((Usage::of(&item["usage"], &format!("node {name}"))?, name));
    }
    sort_rows(&mut rows, args.sort_by.as_deref())?;
    let mut table = Table::new(&["NAME", "CPU(cores)", "CPU(%)", "MEMORY(bytes)", "MEMORY(%)"]);
    for (usage, name) in &rows {
        let (cpu_percent, memory_percent) = match available(name) {
            Some(total) => (percent(usage.cpu_milli, total.cpu_milli), percent(usage.memory_bytes, total.memory_bytes)),
            None => ("<unknown>".into(), "<unknown>".into()),
        };
        table.rows.push(vec![name.clone(), usage.cpu(), cpu_percent, usage.memory(), memory_percent]);
    }
    // Nodes without metrics (their kubelet did not answer) are listed too.
    for node in &nodes {
        let name = node["metadata"]["name"].as_str().unwrap_or_default();
        if !rows.iter().any(|(_, listed)| listed == name) {
            table.rows.push(vec![
                name.to_string(),
                "<unknown>".into(),
                "<unknown>".into(),
                "<unknown>".into(),
                "<unknown>".into(),
            ]);
        }
    }
    print(&table, args.no_headers)
}

/// `top pod [NAME]`.
async fn pods(ctx: &Connection, args: &TopPodArgs) -> Result<()> {
    let selector = args.selector.clone().unwrap_or_default();
    let field_selector = args.field_selector.clone().unwrap_or_default();
    let all = ctx.all_namespaces && args.name.is_none();
    let metrics = match &args.name {
        Some(name) => vec![ctx.get(&format!("{METRICS}/namespaces/{}/pods/{name}", ctx.namespace)).await?],
        None => {
            let base =
                if all { format!("{METRICS}/pods") } else { format!("{METRICS}/namespaces/{}/pods", ctx.namespace) };
            let query = [("labelSelector", selector.as_str()), ("fieldSelector", field_selector.as_str())];
            items(ctx.get(&with_query(&base, &query)).await?)
        }
    };
    if metrics.is_empty() {
        // Pods that exist but have no metrics yet are an error; no pods at all are not.
        let pods_def = resource::resolve("pods")?;
        let ns = if all { None } else { Some(ctx.namespace.as_str()) };
        let query = [("labelSelector", selector.as_str()), ("fieldSelector", field_selector.as_str())];
        let listed = items(ctx.get(&with_query(&path(pods_def, ns, None), &query)).await?);
        if !listed.is_empty() {
            return Err(Error::msg("metrics not available yet"));
        }
        if all {
            eprintln!("No resources found");
        } else {
            eprintln!("No resources found in {} namespace.", ctx.namespace);
        }
        return Ok(());
    }
    let mut headers = Vec::new();
    if all {
        headers.push("NAMESPACE");
    }
    if args.containers {
        headers.push("POD");
    }
    headers.extend(["NAME", "CPU(cores)", "MEMORY(bytes)"]);
    let mut rows = Vec::new();
    for item in &metrics {
        let namespace = item["metadata"]["namespace"].as_str().unwrap_or_default().to_string();
        let name = item["metadata"]["name"].as_str().unwrap_or_default().to_string();
        let mut total = Usage::default();
        let mut containers = Vec::new();
        for container in item["containers"].as_array().into_iter().flatten() {
            let container_name = container["name"].as_str().unwrap_or_default().to_string();
            let usage = Usage::of(&container["usage"], &format!("pod {namespace}/{name}"))?;
            total = total.add(usage);
            containers.push((usage, container_name));
        }
        let prefix: Vec<String> = if all { vec![namespace.clone()] } else { Vec::new() };
        if args.containers {
            for (usage, container_name) in containers {
                let mut cells = prefix.clone();
                cells.extend([name.clone(), container_name, usage.cpu(), usage.memory()]);
                rows.push((usage, cells));
            }
        } else {
            let mut cells = prefix;
            cells.extend([name, total.cpu(), total.memory()]);
            rows.push((total, cells));
        }
    }
    sort_rows(&mut rows, args.sort_by.as_deref())?;
    let mut table = Table::new(&headers);
    table.rows = rows.into_iter().map(|(_, cells)| cells).collect();
    print(&table, args.no_headers)
}

fn items(list: Value) -> Vec<Value> {
    match list {
        Value::Object(mut map) => match map.remove("items") {
            Some(Value::Array(items)) => items,
            _ => Vec::new(),
        },
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn usage_prints_as_kubectl_top_prints_it() {
        let usage = Usage::of(&json!({"cpu": "250300001n", "memory": "16412Ki"}), "x").expect("readable");
        assert_eq!((usage.cpu(), usage.memory()), ("251m".to_string(), "16Mi".to_string()));
        let none = Usage::of(&json!({}), "x").expect("missing is zero");
        assert_eq!((none.cpu(), none.memory()), ("0m".to_string(), "0Mi".to_string()));
        assert!(Usage::of(&json!({"cpu": "lots"}), "x").is_err());
    }

    #[test]
    fn percentages_are_truncated_shares_of_the_available() {
        assert_eq!(percent(251, 4000), "6%");
        assert_eq!(percent(999, 1000), "99%");
        assert_eq!(percent(5, 0), "<unknown>");
    }

    #[test]
    fn sorting_puts_the_highest_first() {
        let usage = |cpu_milli, memory_bytes| Usage { cpu_milli, memory_bytes };
        let mut rows = vec![(usage(1, 30), "a"), (usage(3, 10), "b"), (usage(2, 20), "c")];
        sort_rows(&mut rows, Some("cpu")).expect("cpu");
        assert_eq!(rows.iter().map(|(_, n)| *n).collect::<Vec<_>>(), ["b", "c", "a"]);
        sort_rows(&mut rows, Some("memory")).expect("memory");
        assert_eq!(rows.iter().map(|(_, n)| *n).collect::<Vec<_>>(), ["a", "c", "b"]);
        assert!(sort_rows(&mut rows, Some("name")).is_err());
    }
}
