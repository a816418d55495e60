//! `get`: one or many objects as a table (rendered by the server), YAML, JSON, names or a
//! JSONPath template; `-w` keeps printing changes.
//!
//! Tables are requested with the Table `Accept` header, so the columns are exactly the
//! server's (kubectl's own columns, as `rkube_api::printer` defines them). Other formats fetch
//! plain JSON. Several objects in YAML/JSON print as one `kind: List`, as kubectl does.
//!
//! Watching lists first, then watches from the list's resourceVersion, printing one row (or
//! one object) per event; it ends when the server ends the watch or the user interrupts.

use std::io::Write as _;

use serde_json::{Value, json};

use crate::cli::GetArgs;
use crate::context::{Connection, TABLE_ACCEPT, path, with_query};
use crate::error::{Error, Result};
use crate::printer::{self, Output, Table, TableOptions};
use crate::resource::{self, Target};

/// Runs `get`.
pub async fn run(ctx: &Connection, args: &GetArgs) -> Result<()> {
    let output = Output::parse(args.output.as_deref())?;
    let targets = resource::parse_targets(&args.resources)?;
    let selector = args.selector.clone().unwrap_or_default();
    let field_selector = args.field_selector.clone().unwrap_or_default();
    let multi = targets.len() > 1;
    if args.watch && multi {
        return Err(Error::msg("you may only specify a single resource type with --watch"));
    }
    let mut stdout = std::io::stdout();
    if output.is_table() {
        let mut printed_any = false;
        let mut last_rv = String::new();
        let mut widths = Vec::new();
        let mut errors = Vec::new();
        for target in &targets {
            let opts = TableOptions {
                wide: output == Output::Wide,
                with_namespace: ctx.all_namespaces && target.def.namespaced,
                show_labels: args.show_labels,
                name_prefix: multi.then(|| resource::type_name(target.def)),
            };
            let mut table = Table::default();
            if target.names.is_empty() {
                let p = with_query(
                    &path(target.def, ctx.list_ns(target.def), None),
                    &[("labelSelector", &selector), ("fieldSelector", &field_selector)],
                );
                let answer = ctx.send(http::Method::GET, &p, Some(TABLE_ACCEPT), None, None).await?;
                table.headers = printer::table_headers(&answer, &opts);
                table.rows = printer::table_rows(&answer, &opts);
                last_rv = answer["metadata"]["resourceVersion"].as_str().unwrap_or("").to_string();
            } else {
                for name in &target.names {
                    let p = path(target.def, ctx.ns_for(target.def), Some(name));
                    match ctx.send(http::Method::GET, &p, Some(TABLE_ACCEPT), None, None).await {
                        Ok(answer) => {
                            table.headers = printer::table_headers(&answer, &opts);
                            table.rows.extend(printer::table_rows(&answer, &opts));
                        }
                        Err(e) if e.is_not_found() && args.ignore_not_found => {}
                        Err(e) => errors.push(e),
                    }
                }
            }
            if table.rows.is_empty() {
                continue;
            }
            if printed_any {
                writeln!(stdout)?;
            }
            widths = table.widths();
            write!(stdout, "{}", table.render(false))?;
            printed_any = true;
        }
        if !printed_any && errors.is_empty() && !args.ignore_not_found && !args.watch {
            eprintln!("{}", no_resources(ctx, &targets));
        }
        if let Some(first) = errors.into_iter().next() {
            return Err(first);
        }
        if args.watch
            && let Some(target) = targets.first()
        {
            watch(ctx, target, &output, args, &last_rv, &widths).await?;
        }
        return Ok(());
    }

    let mut objects = Vec::new();
    let mut single = false;
    let mut last_rv = String::new();
    for target in &targets {
        if target.names.is_empty() {
            let p = with_query(
                &path(target.def, ctx.list_ns(target.def), None),
                &[("labelSelector", &selector), ("fieldSelector", &field_selector)],
            );
            let list = ctx.get(&p).await?;
            last_rv = list["metadata"]["resourceVersion"].as_str().unwrap_or("").to_string();
            for mut item in list["items"].as_array().cloned().unwrap_or_default() {
                fill_type(&mut item, target.def);
                objects.push(item);
            }
        } else {
            single = targets.len() == 1 && target.names.len() == 1;
            for name in &target.names {
                match ctx.get(&path(target.def, ctx.ns_for(target.def), Some(name))).await {
                    Ok(mut obj) => {
                        fill_type(&mut obj, target.def);
                        objects.push(obj);
                    }
                    Err(e) if e.is_not_found() && args.ignore_not_found => {}
                    Err(e) => return Err(e),
                }
            }
        }
    }
    let value = if single && objects.len() == 1 {
        objects[0].clone()
    } else {
        json!({"apiVersion": "v1", "kind": "List", "metadata": {"resourceVersion": ""}, "items": objects})
    };
    match &output {
        Output::Name => {
            for obj in &objects {
                writeln!(stdout, "{}", object_ref(obj))?;
            }
        }
        _ if objects.is_empty() && output != Output::Json && output != Output::Yaml => {}
        _ => write!(stdout, "{}", format_value(&output, &value)?)?,
    }
    if args.watch
        && let Some(target) = targets.first()
    {
        watch(ctx, target, &output, args, &last_rv, &[]).await?;
    }
    Ok(())
}

/// `No resources found in default namespace.` (or without the namespace for cluster scope).
fn no_resources(ctx: &Connection, targets: &[Target]) -> String {
    let namespaced = targets.iter().any(|t| t.def.namespaced);
    if namespaced && !ctx.all_namespaces {
        format!("No resources found in {} namespace.", ctx.namespace)
    } else {
        "No resources found".to_string()
    }
}

/// Lists do not always repeat `kind` and `apiVersion` on items; put them back.
fn fill_type(obj: &mut Value, def: &rkube_api::ResourceDef) {
    if let Some(map) = obj.as_object_mut() {
        map.entry("apiVersion").or_insert_with(|| Value::String(def.api_version()));
        map.entry("kind").or_insert_with(|| Value::String(def.kind.to_string()));
    }
}

/// `pod/web` for an object with `kind` and `apiVersion`.
pub fn object_ref(obj: &Value) -> String {
    let kind = obj["kind"].as_str().unwrap_or("");
    let group = obj["apiVersion"].as_str().and_then(|v| v.rsplit_once('/')).map(|(g, _)| g).unwrap_or("");
    let name = obj["metadata"]["name"].as_str().unwrap_or("");
    if group.is_empty() {
        format!("{}/{name}", kind.to_lowercase())
    } else {
        format!("{}.{group}/{name}", kind.to_lowercase())
    }
}

/// One value in a non-table format.
pub fn format_value(output: &Output, value: &Value) -> Result<String> {
    Ok(match output {
        Output::Yaml => printer::to_yaml(value)?,
        Output::Json => printer::to_json(value),
        Output::JsonPath(template) => printer::jsonpath(template, value)?,
        Output::Name => {
            let mut out = object_ref(value);
            out.push('\n');
            out
        }
        Output::Table | Output::Wide => printer::to_yaml(value)?,
    })
}

async fn watch(
    ctx: &Connection,
    target: &Target,
    output: &Output,
    args: &GetArgs,
    rv: &str,
    widths: &[usize],
) -> Result<()> {
    let mut params: Vec<(&str, &str)> = vec![("watch", "true"), ("resourceVersion", rv)];
    let selector = args.selector.clone().unwrap_or_default();
    let mut field_selector = args.field_selector.clone().unwrap_or_default();
    let name_selector;
    if let [name] = target.names.as_slice() {
        name_selector = format!("metadata.name={name}");
        field_selector =
            if field_selector.is_empty() { name_selector } else { format!("{field_selector},{name_selector}") };
    }
    params.push(("labelSelector", &selector));
    params.push(("fieldSelector", &field_selector));
    let p = with_query(&path(target.def, ctx.list_ns(target.def), None), &params);
    let accept = if output.is_table() { TABLE_ACCEPT } else { "application/json" };
    let mut stream = ctx.stream(&p, accept).await?;
    let mut stdout = std::io::stdout();
    let mut widths = widths.to_vec();
    let opts = TableOptions {
        wide: *output == Output::Wide,
        with_namespace: ctx.all_namespaces && target.def.namespaced,
        show_labels: args.show_labels,
        name_prefix: None,
    };
    let mut printed_header = !widths.is_empty();
    while let Some((kind, mut object)) = stream.next_event().await? {
        if kind == "BOOKMARK" {
            continue;
        }
        if output.is_table() {
            let rows = printer::table_rows(&object, &opts);
            if !printed_header {
                let mut table = Table { headers: printer::table_headers(&object, &opts), rows: rows.clone() };
                table.rows.truncate(1);
                widths = table.widths();
                write!(stdout, "{}", printer::render_row(&table.headers, &widths))?;
                printed_header = true;
            }
            for row in rows {
                write!(stdout, "{}", printer::render_row(&row, &widths))?;
            }
        } else if *output == Output::Name {
            fill_type(&mut object, target.def);
            writeln!(stdout, "{}", object_ref(&object))?;
        } else {
            fill_type(&mut object, target.def);
            let text = format_value(output, &object)?;
            if *output == Output::Yaml {
                writeln!(stdout, "---")?;
            }
            write!(stdout, "{text}")?;
        }
        stdout.flush()?;
    }
    Ok(())
}
