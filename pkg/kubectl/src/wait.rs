//! Waiting: `wait --for=condition=X|delete`, and the waits of `delete --wait`, `rollout status`
//! and `drain`.
//!
//! [`watch_until`] reads the object once and, while the predicate does not hold, watches it
//! (a watch on its collection with `fieldSelector=metadata.name=<name>`, from the
//! resourceVersion just read) and tests every new state; a watch that ends is started again
//! from a fresh read. So no change between the read and the watch is missed, and nothing polls.
//! On a terminal, a spinner shows it is still waiting.

use std::io::{IsTerminal as _, Write as _};
use std::time::Duration;

use rkube_api::ResourceDef;
use serde_json::Value;

use crate::cli::WaitArgs;
use crate::context::{Connection, path, with_query};
use crate::error::{Error, Result};
use crate::resource;

/// Parses `30s`, `5m`, `1h`, `1m30s`, `500ms` or a bare number of seconds; `0` means no limit
/// (`None`).
pub fn parse_duration(text: &str) -> Result<Option<Duration>> {
    let bad = || Error::msg(format!("invalid duration {text:?} (use e.g. 30s, 5m, 1h)"));
    let text = text.trim();
    if let Ok(secs) = text.parse::<u64>() {
        return Ok((secs > 0).then(|| Duration::from_secs(secs)));
    }
    let mut total = Duration::ZERO;
    let mut number = String::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c.is_ascii_digit() || c == '.' {
            number.push(c);
            continue;
        }
        let value: f64 = number.parse().map_err(|_| bad())?;
        number.clear();
        let unit = match c {
            'h' => 3600.0,
            'm' if chars.peek() == Some(&'s') => {
                chars.next();
                0.001
            }
            'm' => 60.0,
            's' => 1.0,
            _ => return Err(bad()),
        };
        total += Duration::from_secs_f64(value * unit);
    }
    if !number.is_empty() {
        return Err(bad());
    }
    Ok((!total.is_zero()).then_some(total))
}

/// Waits until `done(state)` holds for the object (`None` = it does not exist), or `timeout`
/// passes (an error naming `what`). Returns the last state seen.
pub async fn watch_until<F>(
    ctx: &Connection,
    def: &ResourceDef,
    ns: Option<&str>,
    name: &str,
    timeout: Option<Duration>,
    what: &str,
    mut done: F,
) -> Result<Option<Value>>
where
    F: FnMut(Option<&Value>) -> bool,
{
    let work = async {
        let spinner = Spinner::new(what);
        loop {
            let current = ctx.get_opt(&path(def, ns, Some(name))).await?;
            if done(current.as_ref()) {
                spinner.finish();
                return Ok(current);
            }
            let rv = match &current {
                Some(obj) => obj["metadata"]["resourceVersion"].as_str().unwrap_or("").to_string(),
                None => String::new(),
            };
            let selector = format!("metadata.name={name}");
            let p = with_query(
                &path(def, ns, None),
                &[("watch", "true"), ("resourceVersion", &rv), ("fieldSelector", &selector), ("timeoutSeconds", "60")],
            );
            let mut stream = match ctx.stream(&p, "application/json").await {
                Ok(s) => s,
                // A refusal (bad selector, no such resource) will not change by retrying.
                Err(e @ Error::Server { code: 400..=409 | 411..=499, .. }) => return Err(e),
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    continue;
                }
            };
            loop {
                spinner.tick();
                match stream.next_event().await {
                    Ok(Some((kind, object))) => {
                        if kind == "BOOKMARK" {
                            continue;
                        }
                        let state = (kind != "DELETED").then_some(object);
                        if done(state.as_ref()) {
                            spinner.finish();
                            return Ok(state);
                        }
                    }
                    // The watch ended or broke (or its resourceVersion expired): read again.
                    Ok(None) | Err(_) => break,
                }
            }
        }
    };
    match timeout {
        Some(limit) => tokio::time::timeout(limit, work)
            .await
            .unwrap_or_else(|_| Err(Error::msg(format!("timed out waiting for the condition on {what}")))),
        None => work.await,
    }
}

/// A `.status.conditions` entry's status (`True`, `False`, `Unknown`), if present.
pub fn condition_status<'a>(obj: &'a Value, condition: &str) -> Option<&'a str> {
    obj["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"].as_str().is_some_and(|t| t.eq_ignore_ascii_case(condition)))
        .and_then(|c| c["status"].as_str())
}

/// Runs `wait`.
pub async fn run(ctx: &Connection, args: &WaitArgs) -> Result<()> {
    let timeout = parse_duration(&args.timeout)?;
    let targets = resource::parse_targets(&args.resources)?;
    enum For {
        Delete,
        Condition(String, String),
    }
    let wanted = if args.for_ == "delete" {
        For::Delete
    } else if let Some(spec) = args.for_.strip_prefix("condition=") {
        let (name, value) = spec.split_once('=').unwrap_or((spec, "True"));
        For::Condition(name.to_string(), value.to_string())
    } else {
        return Err(Error::msg(format!(
            "unrecognized condition: {:?} (use --for=condition=NAME[=VALUE] or --for=delete)",
            args.for_
        )));
    };
    for target in &targets {
        if target.names.is_empty() {
            return Err(Error::msg("resource name may not be empty (use TYPE/NAME or TYPE NAME)"));
        }
        for name in &target.names {
            let what = resource::ref_name(target.def, name);
            let ns = ctx.ns_for(target.def);
            match &wanted {
                For::Delete => {
                    watch_until(ctx, target.def, ns, name, timeout, &what, |s| s.is_none()).await?;
                }
                For::Condition(cond, value) => {
                    let mut missing = false;
                    watch_until(ctx, target.def, ns, name, timeout, &what, |s| match s {
                        None => {
                            missing = true;
                            true
                        }
                        Some(obj) => condition_status(obj, cond).is_some_and(|v| v.eq_ignore_ascii_case(value)),
                    })
                    .await?;
                    if missing {
                        return Err(resource::not_found(target.def, name));
                    }
                }
            }
            println!("{what} condition met");
        }
    }
    Ok(())
}

/// A one-character spinner on stderr while waiting, only when stderr is a terminal.
pub struct Spinner {
    enabled: bool,
    what: String,
    frame: std::cell::Cell<usize>,
}

impl Spinner {
    /// A spinner for waiting on `what`.
    pub fn new(what: &str) -> Spinner {
        Spinner { enabled: std::io::stderr().is_terminal(), what: what.to_string(), frame: std::cell::Cell::new(0) }
    }

    /// Shows the next frame.
    pub fn tick(&self) {
        if self.enabled {
            const FRAMES: [char; 4] = ['|', '/', '-', '\\'];
            let i = self.frame.get();
            self.frame.set(i.wrapping_add(1));
            eprint!("\r{} waiting for {}", FRAMES[i % 4], self.what);
            let _ = std::io::stderr().flush();
        }
    }

    /// Clears the line.
    pub fn finish(&self) {
        if self.enabled && self.frame.get() > 0 {
            eprint!("\r\x1b[2K");
            let _ = std::io::stderr().flush();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_like_kubectl() {
        assert_eq!(parse_duration("30s").unwrap(), Some(Duration::from_secs(30)));
        assert_eq!(parse_duration("1m30s").unwrap(), Some(Duration::from_secs(90)));
        assert_eq!(parse_duration("500ms").unwrap(), Some(Duration::from_millis(500)));
        assert_eq!(parse_duration("0").unwrap(), None);
        assert_eq!(parse_duration("0s").unwrap(), None);
        assert_eq!(parse_duration("12").unwrap(), Some(Duration::from_secs(12)));
        assert!(parse_duration("soon").is_err());
    }
}
