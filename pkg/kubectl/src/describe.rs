//! `describe`: a page about each object for people, with related objects and its events.
//!
//! Pods show containers (image, ports, state, ready, restarts, requests), conditions, IP and
//! node; nodes their conditions, capacity, allocatable and the pods on them with their
//! requests; replicasets their pods by phase; deployments their replicas and replicasets;
//! other kinds their metadata and fields. Every page ends with the core/v1 Events whose
//! `involvedObject` is the object (a field selector on name, namespace and uid), oldest first.

use std::fmt::Write as _;

use serde_json::Value;

use crate::cli::DescribeArgs;
use crate::context::{Connection, path, with_query};
use crate::error::Result;
use crate::printer::{self, Table};
use crate::resource;

/// Runs `describe`.
pub async fn run(ctx: &Connection, args: &DescribeArgs) -> Result<()> {
    let targets = resource::parse_targets(&args.resources)?;
    let mut first = true;
    for target in &targets {
        let objects: Vec<Value> = if target.names.is_empty() {
            let p = with_query(
                &path(target.def, ctx.list_ns(target.def), None),
                &[("labelSelector", args.selector.as_deref().unwrap_or(""))],
            );
            ctx.get(&p).await?["items"].as_array().cloned().unwrap_or_default()
        } else {
            let mut out = Vec::new();
            for name in &target.names {
                out.push(ctx.get(&path(target.def, ctx.ns_for(target.def), Some(name))).await?);
            }
            out
        };
        for obj in objects {
            if !first {
                println!();
            }
            first = false;
            let mut page = String::new();
            match target.def.plural {
                "pods" => pod(&mut page, &obj),
                "nodes" => node(ctx, &mut page, &obj).await?,
                "replicasets" => replicaset(ctx, &mut page, &obj).await?,
                "deployments" => deployment(ctx, &mut page, &obj).await?,
                _ => generic(&mut page, &obj)?,
            }
            events(ctx, &mut page, &obj).await?;
            print!("{page}");
        }
    }
    Ok(())
}

fn kv(out: &mut String, indent: usize, key: &str, value: impl std::fmt::Display) {
    let pad = " ".repeat(indent);
    let key = format!("{key}:");
    let _ = writeln!(out, "{pad}{key:<width$}{value}", width = 20usize.saturating_sub(indent).max(key.len() + 1));
}

fn s(v: &Value) -> String {
    match v {
        Value::Null => "<none>".into(),
        Value::String(s) if s.is_empty() => "<none>".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn map_lines(out: &mut String, key: &str, map: &Value) {
    match map.as_object().filter(|m| !m.is_empty()) {
        None => kv(out, 0, key, "<none>"),
        Some(m) => {
            for (i, (k, v)) in m.iter().enumerate() {
                let line = format!("{k}={}", v.as_str().unwrap_or(""));
                if i == 0 {
                    kv(out, 0, key, line);
                } else {
                    let _ = writeln!(out, "{:20}{line}", "");
                }
            }
        }
    }
}

fn header(out: &mut String, obj: &Value) {
    let meta = &obj["metadata"];
    kv(out, 0, "Name", s(&meta["name"]));
    if let Some(ns) = meta["namespace"].as_str() {
        kv(out, 0, "Namespace", ns);
    }
    map_lines(out, "Labels", &meta["labels"]);
    let mut annotations = meta["annotations"].clone();
    if let Some(a) = annotations.as_object_mut() {
        a.remove(crate::apply::LAST_APPLIED);
    }
    map_lines(out, "Annotations", &annotations);
    kv(out, 0, "CreationTimestamp", s(&meta["creationTimestamp"]));
}

fn conditions(out: &mut String, obj: &Value, with_reason: bool) {
    let conds = obj["status"]["conditions"].as_array().cloned().unwrap_or_default();
    if conds.is_empty() {
        kv(out, 0, "Conditions", "<none>");
        return;
    }
    let _ = writeln!(out, "Conditions:");
    let mut t = if with_reason {
        Table::new(&["Type", "Status", "Reason", "Message"])
    } else {
        Table::new(&["Type", "Status"])
    };
    for c in conds {
        let mut row = vec![s(&c["type"]), s(&c["status"])];
        if with_reason {
            row.push(c["reason"].as_str().unwrap_or("").to_string());
            row.push(c["message"].as_str().unwrap_or("").to_string());
        }
        t.rows.push(row);
    }
    indent(out, &t.render(false), 2);
}

fn indent(out: &mut String, text: &str, by: usize) {
    for line in text.lines() {
        let _ = writeln!(out, "{}{line}", " ".repeat(by));
    }
}

fn pod(out: &mut String, obj: &Value) {
    header(out, obj);
    let spec = &obj["spec"];
    let status = &obj["status"];
    kv(out, 0, "Node", s(&spec["nodeName"]));
    kv(out, 0, "Start Time", s(&status["startTime"]));
    kv(
        out,
        0,
        "Status",
        if obj["metadata"]["deletionTimestamp"].is_string() { "Terminating".into() } else { s(&status["phase"]) },
    );
    kv(out, 0, "IP", s(&status["podIP"]));
    if let Some(owner) =
        obj["metadata"]["ownerReferences"].as_array().and_then(|o| o.iter().find(|r| r["controller"] == true))
    {
        kv(out, 0, "Controlled By", format!("{}/{}", s(&owner["kind"]), s(&owner["name"])));
    }
    let _ = writeln!(out, "Containers:");
    let statuses = status["containerStatuses"].as_array().cloned().unwrap_or_default();
    for c in spec["containers"].as_array().map(Vec::as_slice).unwrap_or_default() {
        let name = c["name"].as_str().unwrap_or("");
        let cs = statuses.iter().find(|st| st["name"] == name).cloned().unwrap_or(Value::Null);
        let _ = writeln!(out, "  {name}:");
        kv(out, 4, "Image", s(&c["image"]));
        let ports: Vec<String> = c["ports"]
            .as_array()
            .map(|ps| {
                ps.iter()
                    .map(|p| format!("{}/{}", s(&p["containerPort"]), p["protocol"].as_str().unwrap_or("TCP")))
                    .collect()
            })
            .unwrap_or_default();
        kv(out, 4, "Port", if ports.is_empty() { "<none>".into() } else { ports.join(", ") });
        if c["command"].is_array() {
            kv(
                out,
                4,
                "Command",
                c["command"].as_array().map(|a| a.iter().map(s).collect::<Vec<_>>().join(" ")).unwrap_or_default(),
            );
        }
        let state = match cs["state"].as_object().and_then(|m| m.iter().next()) {
            Some((k, v)) => {
                let mut st = k[..1].to_uppercase() + &k[1..];
                if let Some(r) = v["reason"].as_str() {
                    st.push_str(&format!(" ({r})"));
                }
                st
            }
            None => "Waiting".into(),
        };
        kv(out, 4, "State", state);
        kv(out, 4, "Ready", if cs["ready"] == true { "True" } else { "False" });
        kv(out, 4, "Restart Count", cs["restartCount"].as_i64().unwrap_or(0));
        if let Some(req) = c["resources"]["requests"].as_object().filter(|m| !m.is_empty()) {
            let _ = writeln!(out, "    Requests:");
            for (k, v) in req {
                kv(out, 6, k, s(v));
            }
        }
        if let Some(env) = c["env"].as_array().filter(|e| !e.is_empty()) {
            let _ = writeln!(out, "    Environment:");
            for e in env {
                kv(out, 6, e["name"].as_str().unwrap_or(""), s(&e["value"]));
            }
        }
    }
    conditions(out, obj, false);
}

async fn node(ctx: &Connection, out: &mut String, obj: &Value) -> Result<()> {
    header(out, obj);
    kv(out, 0, "Unschedulable", obj["spec"]["unschedulable"].as_bool().unwrap_or(false));
    conditions(out, obj, true);
    let _ = writeln!(out, "Addresses:");
    for a in obj["status"]["addresses"].as_array().map(Vec::as_slice).unwrap_or_default() {
        kv(out, 2, a["type"].as_str().unwrap_or(""), s(&a["address"]));
    }
    for (title, field) in [("Capacity", "capacity"), ("Allocatable", "allocatable")] {
        let _ = writeln!(out, "{title}:");
        for (k, v) in obj["status"][field].as_object().into_iter().flatten() {
            kv(out, 2, k, s(v));
        }
    }
    let name = obj["metadata"]["name"].as_str().unwrap_or("");
    let pods_def = resource::resolve("pods")?;
    let selector = format!("spec.nodeName={name},status.phase!=Succeeded,status.phase!=Failed");
    let pods = ctx.get(&with_query(&path(pods_def, None, None), &[("fieldSelector", &selector)])).await?;
    let items = pods["items"].as_array().cloned().unwrap_or_default();
    let _ = writeln!(out, "Non-terminated Pods:  ({} in total)", items.len());
    let mut t = Table::new(&["Namespace", "Name", "CPU Requests", "Memory Requests", "Age"]);
    for p in &items {
        let sum = |res: &str| {
            let reqs: Vec<String> = p["spec"]["containers"]
                .as_array()
                .map(|cs| {
                    cs.iter().filter_map(|c| c["resources"]["requests"][res].as_str().map(str::to_string)).collect()
                })
                .unwrap_or_default();
            if reqs.is_empty() { "0".to_string() } else { reqs.join("+") }
        };
        t.rows.push(vec![
            s(&p["metadata"]["namespace"]),
            s(&p["metadata"]["name"]),
            sum("cpu"),
            sum("memory"),
            printer::age(&p["metadata"]["creationTimestamp"]),
        ]);
    }
    indent(out, &t.render(false), 2);
    Ok(())
}

async fn owned_by(ctx: &Connection, plural: &str, obj: &Value) -> Result<Vec<Value>> {
    let def = resource::resolve(plural)?;
    let ns = obj["metadata"]["namespace"].as_str();
    let selector = selector_text(&obj["spec"]["selector"]);
    let list = ctx.get(&with_query(&path(def, ns, None), &[("labelSelector", &selector)])).await?;
    let uid = obj["metadata"]["uid"].clone();
    Ok(list["items"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|o| {
            o["metadata"]["ownerReferences"].as_array().is_some_and(|refs| refs.iter().any(|r| r["uid"] == uid))
        })
        .collect())
}

/// `matchLabels` (and simple `matchExpressions`) as a selector string.
pub fn selector_text(selector: &Value) -> String {
    let mut parts: Vec<String> = selector["matchLabels"]
        .as_object()
        .map(|m| m.iter().map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or(""))).collect())
        .unwrap_or_default();
    for e in selector["matchExpressions"].as_array().map(Vec::as_slice).unwrap_or_default() {
        let key = e["key"].as_str().unwrap_or("");
        let values: Vec<&str> =
            e["values"].as_array().map(|v| v.iter().filter_map(Value::as_str).collect()).unwrap_or_default();
        match e["operator"].as_str().unwrap_or("") {
            "In" => parts.push(format!("{key} in ({})", values.join(","))),
            "NotIn" => parts.push(format!("{key} notin ({})", values.join(","))),
            "Exists" => parts.push(key.to_string()),
            "DoesNotExist" => parts.push(format!("!{key}")),
            _ => {}
        }
    }
    parts.join(",")
}

fn template(out: &mut String, obj: &Value) {
    let _ = writeln!(out, "Pod Template:");
    map_lines(out, "  Labels", &obj["spec"]["template"]["metadata"]["labels"]);
    let _ = writeln!(out, "  Containers:");
    for c in obj["spec"]["template"]["spec"]["containers"].as_array().map(Vec::as_slice).unwrap_or_default() {
        let _ = writeln!(out, "   {}:", c["name"].as_str().unwrap_or(""));
        kv(out, 4, "Image", s(&c["image"]));
    }
}

async fn replicaset(ctx: &Connection, out: &mut String, obj: &Value) -> Result<()> {
    header(out, obj);
    kv(out, 0, "Selector", selector_text(&obj["spec"]["selector"]));
    kv(
        out,
        0,
        "Replicas",
        format!(
            "{} current / {} desired",
            obj["status"]["replicas"].as_i64().unwrap_or(0),
            obj["spec"]["replicas"].as_i64().unwrap_or(1)
        ),
    );
    let pods = owned_by(ctx, "pods", obj).await?;
    let count = |phase: &str| pods.iter().filter(|p| p["status"]["phase"] == phase).count();
    kv(
        out,
        0,
        "Pods Status",
        format!(
            "{} Running / {} Waiting / {} Succeeded / {} Failed",
            count("Running"),
            count("Pending"),
            count("Succeeded"),
            count("Failed")
        ),
    );
    template(out, obj);
    Ok(())
}

async fn deployment(ctx: &Connection, out: &mut String, obj: &Value) -> Result<()> {
    header(out, obj);
    kv(out, 0, "Selector", selector_text(&obj["spec"]["selector"]));
    let st = &obj["status"];
    let n = |v: &Value| v.as_i64().unwrap_or(0);
    kv(
        out,
        0,
        "Replicas",
        format!(
            "{} desired | {} updated | {} total | {} available | {} unavailable",
            obj["spec"]["replicas"].as_i64().unwrap_or(1),
            n(&st["updatedReplicas"]),
            n(&st["replicas"]),
            n(&st["availableReplicas"]),
            n(&st["unavailableReplicas"])
        ),
    );
    kv(out, 0, "StrategyType", obj["spec"]["strategy"]["type"].as_str().unwrap_or("RollingUpdate"));
    template(out, obj);
    conditions(out, obj, true);
    let mut sets = owned_by(ctx, "replicasets", obj).await?;
    sets.sort_by_key(revision);
    let describe_rs = |rs: &Value| {
        format!(
            "{} ({}/{} replicas created)",
            s(&rs["metadata"]["name"]),
            n(&rs["status"]["replicas"]),
            rs["spec"]["replicas"].as_i64().unwrap_or(1)
        )
    };
    let (new, old) = match sets.split_last() {
        Some((new, old)) => (
            describe_rs(new),
            old.iter().filter(|rs| n(&rs["status"]["replicas"]) > 0).map(describe_rs).collect::<Vec<_>>(),
        ),
        None => ("<none>".to_string(), Vec::new()),
    };
    kv(out, 0, "OldReplicaSets", if old.is_empty() { "<none>".to_string() } else { old.join(", ") });
    kv(out, 0, "NewReplicaSet", new);
    Ok(())
}

/// The `deployment.kubernetes.io/revision` annotation of a replicaset (0 when absent).
pub fn revision(rs: &Value) -> i64 {
    rs["metadata"]["annotations"]["deployment.kubernetes.io/revision"]
        .as_str()
        .and_then(|r| r.parse().ok())
        .unwrap_or(0)
}

fn generic(out: &mut String, obj: &Value) -> Result<()> {
    header(out, obj);
    if let Some(map) = obj.as_object() {
        for (k, v) in map {
            if matches!(k.as_str(), "metadata" | "apiVersion" | "kind") {
                continue;
            }
            let _ = writeln!(out, "{}:", k[..1].to_uppercase() + &k[1..]);
            let text = printer::to_yaml(v)?;
            indent(out, &text, 2);
        }
    }
    Ok(())
}

async fn events(ctx: &Connection, out: &mut String, obj: &Value) -> Result<()> {
    let meta = &obj["metadata"];
    let mut selector = format!("involvedObject.name={}", meta["name"].as_str().unwrap_or(""));
    if let Some(ns) = meta["namespace"].as_str() {
        selector.push_str(&format!(",involvedObject.namespace={ns}"));
    }
    if let Some(uid) = meta["uid"].as_str() {
        selector.push_str(&format!(",involvedObject.uid={uid}"));
    }
    let def = resource::resolve("events")?;
    let ns = meta["namespace"].as_str().unwrap_or("default");
    let list = ctx.get(&with_query(&path(def, Some(ns), None), &[("fieldSelector", &selector)])).await?;
    let mut items = list["items"].as_array().cloned().unwrap_or_default();
    if items.is_empty() {
        kv(out, 0, "Events", "<none>");
        return Ok(());
    }
    items.sort_by_key(crate::events::event_time);
    let _ = writeln!(out, "Events:");
    let mut t = Table::new(&["Type", "Reason", "Age", "From", "Message"]);
    for e in &items {
        t.rows.push(vec![
            s(&e["type"]),
            s(&e["reason"]),
            printer::age(&Value::String(crate::events::event_time(e))),
            e["source"]["component"].as_str().or(e["reportingComponent"].as_str()).unwrap_or("").to_string(),
            e["message"].as_str().unwrap_or("").trim().to_string(),
        ]);
    }
    indent(out, &t.render(false), 2);
    Ok(())
}
