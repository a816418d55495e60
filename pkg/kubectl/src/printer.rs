//! Output: aligned tables (from the server's `meta.k8s.io/v1` Table answers), YAML, JSON,
//! `-o name` and `-o jsonpath=...`.
//!
//! Tables are printed as kubectl's tabwriter prints them: columns left-aligned, separated by
//! three spaces, headers upper-case, priority-1 columns only with `-o wide`. Cells come as the
//! server rendered them; this module does not recompute any column.

use std::fmt::Write as _;

use serde_json::Value;

use crate::error::{Error, Result};

/// How `get` (and others) print objects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// The default table.
    Table,
    /// The table with priority-1 columns.
    Wide,
    /// YAML.
    Yaml,
    /// JSON, indented.
    Json,
    /// `type/name` lines.
    Name,
    /// A JSONPath template.
    JsonPath(String),
}

impl Output {
    /// Parses `-o`; `None` is the table.
    pub fn parse(flag: Option<&str>) -> Result<Output> {
        Ok(match flag {
            None | Some("") => Output::Table,
            Some("wide") => Output::Wide,
            Some("yaml") => Output::Yaml,
            Some("json") => Output::Json,
            Some("name") => Output::Name,
            Some(other) => match other.split_once('=') {
                Some(("jsonpath", template)) => Output::JsonPath(template.to_string()),
                _ => {
                    return Err(Error::msg(format!(
                        "unable to match a printer suitable for the output format {other:?}, allowed formats are: \
                         json,jsonpath,name,wide,yaml"
                    )));
                }
            },
        })
    }

    /// Whether this output is a table.
    pub fn is_table(&self) -> bool {
        matches!(self, Output::Table | Output::Wide)
    }
}

/// Rows of text under headers, printed aligned.
#[derive(Debug, Default, Clone)]
pub struct Table {
    /// Column headers (printed as given).
    pub headers: Vec<String>,
    /// Rows; each as long as `headers`.
    pub rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with these headers and no rows.
    pub fn new(headers: &[&str]) -> Table {
        Table { headers: headers.iter().map(|h| h.to_string()).collect(), rows: Vec::new() }
    }

    /// The column widths of headers and rows.
    pub fn widths(&self) -> Vec<usize> {
        let mut widths: Vec<usize> = self.headers.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (i, cell) in row.iter().enumerate() {
                if i < widths.len() {
                    widths[i] = widths[i].max(cell.chars().count());
                }
            }
        }
        widths
    }

    /// The table as text, with the header line unless `no_headers`.
    pub fn render(&self, no_headers: bool) -> String {
        let widths = self.widths();
        let mut out = String::new();
        if !no_headers {
            out.push_str(&render_row(&self.headers, &widths));
        }
        for row in &self.rows {
            out.push_str(&render_row(row, &widths));
        }
        out
    }
}

/// One line of an aligned table (three spaces between columns, none after the last).
pub fn render_row(cells: &[String], widths: &[usize]) -> String {
    let mut line = String::new();
    for (i, cell) in cells.iter().enumerate() {
        if i + 1 < cells.len() {
            let width = widths.get(i).copied().unwrap_or(0);
            let _ = write!(line, "{cell:<width$}   ");
        } else {
            line.push_str(cell);
        }
    }
    line.truncate(line.trim_end().len());
    line.push('\n');
    line
}

/// Options for turning a server Table into text.
#[derive(Debug, Clone, Default)]
pub struct TableOptions {
    /// Show priority-1 columns.
    pub wide: bool,
    /// Add a NAMESPACE column first.
    pub with_namespace: bool,
    /// Add a LABELS column last.
    pub show_labels: bool,
    /// Prefix names with `type/` (when several types are printed together).
    pub name_prefix: Option<String>,
}

/// The columns a server Table shows under `opts`: `(index, header)`.
fn visible_columns(table: &Value, opts: &TableOptions) -> Vec<(usize, String)> {
    table["columnDefinitions"]
        .as_array()
        .map(|defs| {
            defs.iter()
                .enumerate()
                .filter(|(_, d)| opts.wide || d["priority"].as_i64().unwrap_or(0) == 0)
                .map(|(i, d)| (i, d["name"].as_str().unwrap_or("").to_uppercase()))
                .collect()
        })
        .unwrap_or_default()
}

/// The headers of a server Table under `opts`.
pub fn table_headers(table: &Value, opts: &TableOptions) -> Vec<String> {
    let mut headers = Vec::new();
    if opts.with_namespace {
        headers.push("NAMESPACE".to_string());
    }
    headers.extend(visible_columns(table, opts).into_iter().map(|(_, h)| h));
    if opts.show_labels {
        headers.push("LABELS".to_string());
    }
    headers
}

/// The rows of a server Table under `opts`, as text.
pub fn table_rows(table: &Value, opts: &TableOptions) -> Vec<Vec<String>> {
    let columns = visible_columns(table, opts);
    let name_index = table["columnDefinitions"]
        .as_array()
        .and_then(|defs| defs.iter().position(|d| d["format"] == "name"))
        .unwrap_or(0);
    let mut rows = Vec::new();
    for row in table["rows"].as_array().map(Vec::as_slice).unwrap_or_default() {
        let meta = &row["object"]["metadata"];
        let mut cells = Vec::new();
        if opts.with_namespace {
            cells.push(meta["namespace"].as_str().unwrap_or("").to_string());
        }
        for (i, _) in &columns {
            let mut text = cell_text(&row["cells"][*i]);
            if *i == name_index
                && let Some(prefix) = &opts.name_prefix
            {
                text = format!("{prefix}/{text}");
            }
            cells.push(text);
        }
        if opts.show_labels {
            cells.push(labels_text(&meta["labels"]));
        }
        rows.push(cells);
    }
    rows
}

/// A cell as kubectl prints it.
pub fn cell_text(cell: &Value) -> String {
    match cell {
        Value::Null => "<none>".into(),
        Value::String(s) => s.clone(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        other => other.to_string(),
    }
}

/// `k=v,k2=v2`, or `<none>`.
pub fn labels_text(labels: &Value) -> String {
    match labels.as_object() {
        Some(map) if !map.is_empty() => {
            map.iter().map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or(""))).collect::<Vec<_>>().join(",")
        }
        _ => "<none>".into(),
    }
}

/// YAML text of a value.
pub fn to_yaml(value: &Value) -> Result<String> {
    serde_yaml_ng::to_string(value).map_err(|e| Error::msg(format!("cannot print YAML: {e}")))
}

/// Indented JSON text of a value, with a final newline.
pub fn to_json(value: &Value) -> String {
    let mut text = serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string());
    text.push('\n');
    text
}

/// A human age like kubectl's (`45s`, `5m12s`, `3h`, `12d`) since an RFC 3339 timestamp;
/// `<unknown>` when there is none.
pub fn age(timestamp: &Value) -> String {
    let Some(ts) = timestamp.as_str().and_then(|s| s.parse::<jiff::Timestamp>().ok()) else {
        return "<unknown>".into();
    };
    let secs = jiff::Timestamp::now().as_second().saturating_sub(ts.as_second()).max(0);
    rkube_api::columns::human_age(std::time::Duration::from_secs(secs.unsigned_abs()))
}

/// Applies a kubectl JSONPath template (`{.metadata.name}`, `{.items[*].metadata.name}`,
/// `{range .items[*]}{.metadata.name}{"\n"}{end}`, literal text between braces) to `root`.
pub fn jsonpath(template: &str, root: &Value) -> Result<String> {
    let tokens = tokenize(template)?;
    let mut out = String::new();
    let mut pos = 0;
    render_tokens(&tokens, &mut pos, root, root, &mut out, false)?;
    Ok(out)
}

#[derive(Debug, Clone)]
enum Token {
    Text(String),
    Expr(String),
    Range(String),
    End,
}

fn tokenize(template: &str) -> Result<Vec<Token>> {
    let mut tokens = Vec::new();
    let mut rest = template;
    while !rest.is_empty() {
        match rest.find('{') {
            Some(0) => {
                let close = rest
                    .find('}')
                    .ok_or_else(|| Error::msg(format!("error parsing jsonpath {template}: unclosed action")))?;
                let inner = rest[1..close].trim();
                rest = &rest[close + 1..];
                if inner == "end" {
                    tokens.push(Token::End);
                } else if let Some(expr) = inner.strip_prefix("range ") {
                    tokens.push(Token::Range(expr.trim().to_string()));
                } else if inner.starts_with('"') && inner.ends_with('"') && inner.len() >= 2 {
                    let text = serde_json::from_str::<String>(inner).unwrap_or_else(|_| inner.trim_matches('"').into());
                    tokens.push(Token::Text(text));
                } else if inner.starts_with('\'') && inner.ends_with('\'') && inner.len() >= 2 {
                    tokens.push(Token::Text(inner[1..inner.len() - 1].to_string()));
                } else {
                    tokens.push(Token::Expr(inner.to_string()));
                }
            }
            Some(i) => {
                tokens.push(Token::Text(rest[..i].to_string()));
                rest = &rest[i..];
            }
            None => {
                tokens.push(Token::Text(rest.to_string()));
                rest = "";
            }
        }
    }
    Ok(tokens)
}

fn render_tokens(
    tokens: &[Token],
    pos: &mut usize,
    root: &Value,
    current: &Value,
    out: &mut String,
    in_range: bool,
) -> Result<()> {
    while *pos < tokens.len() {
        let token = tokens[*pos].clone();
        *pos += 1;
        match token {
            Token::Text(t) => out.push_str(&t),
            Token::Expr(e) => {
                let values = eval_path(&e, root, current)?;
                let texts: Vec<String> = values.iter().map(scalar_text).collect();
                out.push_str(&texts.join(" "));
            }
            Token::Range(e) => {
                let items = eval_path(&e, root, current)?;
                let start = *pos;
                if items.is_empty() {
                    // Skip to the matching end.
                    let mut sink = String::new();
                    render_tokens(tokens, pos, root, &Value::Null, &mut sink, true)?;
                }
                for item in &items {
                    *pos = start;
                    render_tokens(tokens, pos, root, item, out, true)?;
                }
            }
            Token::End => {
                if in_range {
                    return Ok(());
                }
                return Err(Error::msg("error parsing jsonpath: {end} without {range}"));
            }
        }
    }
    Ok(())
}

fn scalar_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// Evaluates `.a.b[0].c`, `.items[*].x`, `['k.with.dots']`, `$` and `@` against `current`.
fn eval_path(expr: &str, root: &Value, current: &Value) -> Result<Vec<Value>> {
    let mut rest = expr.trim();
    let mut values: Vec<Value> = if let Some(r) = rest.strip_prefix('$') {
        rest = r;
        vec![root.clone()]
    } else {
        rest = rest.strip_prefix('@').unwrap_or(rest);
        vec![current.clone()]
    };
    let bad = || Error::msg(format!("error parsing jsonpath {{{expr}}}: unsupported or malformed expression"));
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix('.') {
            let end = r.find(['.', '[']).unwrap_or(r.len());
            let key = &r[..end];
            rest = &r[end..];
            if key.is_empty() {
                continue;
            }
            values = values.iter().filter_map(|v| v.get(key).cloned()).collect();
        } else if let Some(r) = rest.strip_prefix('[') {
            let close = r.find(']').ok_or_else(bad)?;
            let index = r[..close].trim();
            rest = &r[close + 1..];
            if index == "*" {
                values = values
                    .iter()
                    .flat_map(|v| match v {
                        Value::Array(items) => items.clone(),
                        Value::Object(map) => map.values().cloned().collect(),
                        _ => Vec::new(),
                    })
                    .collect();
            } else if (index.starts_with('\'') && index.ends_with('\''))
                || (index.starts_with('"') && index.ends_with('"'))
            {
                let key = &index[1..index.len() - 1];
                values = values.iter().filter_map(|v| v.get(key).cloned()).collect();
            } else {
                let i: i64 = index.parse().map_err(|_| bad())?;
                values = values
                    .iter()
                    .filter_map(|v| {
                        let items = v.as_array()?;
                        let len = i64::try_from(items.len()).ok()?;
                        let at = if i < 0 { len + i } else { i };
                        usize::try_from(at).ok().and_then(|at| items.get(at)).cloned()
                    })
                    .collect();
            }
        } else {
            return Err(bad());
        }
    }
    Ok(values)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn jsonpath_reads_fields_lists_and_ranges() {
        let list =
            json!({"items": [{"metadata": {"name": "a", "labels": {"app.k/x": "1"}}}, {"metadata": {"name": "b"}}]});
        assert_eq!(jsonpath("{.items[*].metadata.name}", &list).unwrap(), "a b");
        assert_eq!(jsonpath("{.items[0].metadata.name}", &list).unwrap(), "a");
        assert_eq!(jsonpath("{.items[-1].metadata.name}", &list).unwrap(), "b");
        assert_eq!(jsonpath("{range .items[*]}{.metadata.name}{\"\\n\"}{end}", &list).unwrap(), "a\nb\n");
        assert_eq!(jsonpath("n={.items[0].metadata.labels['app.k/x']}", &list).unwrap(), "n=1");
        assert!(jsonpath("{.items[", &list).is_err());
    }

    #[test]
    fn tables_align_with_three_spaces() {
        let mut t = Table::new(&["NAME", "READY"]);
        t.rows.push(vec!["a-long-name".into(), "1/1".into()]);
        t.rows.push(vec!["b".into(), "0/1".into()]);
        assert_eq!(t.render(false), "NAME          READY\na-long-name   1/1\nb             0/1\n");
    }

    #[test]
    fn server_tables_hide_wide_columns_unless_asked() {
        let table = json!({
            "columnDefinitions": [{"name": "Name", "format": "name", "priority": 0}, {"name": "IP", "priority": 1}],
            "rows": [{"cells": ["web", "10.0.0.1"], "object": {"metadata": {"namespace": "default", "labels": {"app": "web"}}}}]
        });
        let opts = TableOptions::default();
        assert_eq!(table_headers(&table, &opts), vec!["NAME"]);
        let wide =
            TableOptions { wide: true, with_namespace: true, show_labels: true, name_prefix: Some("pod".into()) };
        assert_eq!(table_headers(&table, &wide), vec!["NAMESPACE", "NAME", "IP", "LABELS"]);
        assert_eq!(table_rows(&table, &wide), vec![vec!["default", "pod/web", "10.0.0.1", "app=web"]]);
    }
}
