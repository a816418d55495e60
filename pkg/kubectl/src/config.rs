//! `config view|current-context|get-contexts|use-context|set-context`: reading and changing
//! kubeconfig files without talking to a server.
//!
//! Reading merges the files as every command does (`--kubeconfig`, else the `KUBECONFIG` list,
//! else `~/.kube/config`). Writing changes one file: `--kubeconfig`, else the first existing
//! file of `KUBECONFIG`, else `~/.kube/config`. The file is edited as YAML, so fields rkube does
//! not know (extensions, exec plugins, preferences) survive.
//!
//! `view` hides secrets (tokens, passwords, keys, certificate data) unless `--raw`.

use std::path::PathBuf;

use serde_json::Value;
use serde_yaml_ng::Value as Yaml;

use crate::cli::{ConfigCommand, GlobalArgs};
use crate::context::load_kubeconfig;
use crate::error::{Error, Result};
use crate::printer::{self, Table};

/// Runs a `config` subcommand.
pub fn run(global: &GlobalArgs, cmd: &ConfigCommand) -> Result<()> {
    match cmd {
        ConfigCommand::View { raw, minify } => view(global, *raw, *minify),
        ConfigCommand::CurrentContext => {
            let kc = load_kubeconfig(global)?;
            match kc.current_context.filter(|c| !c.is_empty()) {
                Some(c) => {
                    println!("{c}");
                    Ok(())
                }
                None => Err(Error::msg("current-context is not set")),
            }
        }
        ConfigCommand::GetContexts => {
            let kc = load_kubeconfig(global)?;
            let current = global.context.clone().or(kc.current_context.clone()).unwrap_or_default();
            let mut table = Table::new(&["CURRENT", "NAME", "CLUSTER", "AUTHINFO", "NAMESPACE"]);
            for c in &kc.contexts {
                let ctx = c.context.clone().unwrap_or_default();
                table.rows.push(vec![
                    if c.name == current { "*".into() } else { String::new() },
                    c.name.clone(),
                    ctx.cluster,
                    ctx.user.unwrap_or_default(),
                    ctx.namespace.unwrap_or_default(),
                ]);
            }
            print!("{}", table.render(false));
            Ok(())
        }
        ConfigCommand::UseContext { name } => {
            let kc = load_kubeconfig(global)?;
            if !kc.contexts.iter().any(|c| &c.name == name) {
                return Err(Error::msg(format!("no context exists with the name: {name:?}")));
            }
            let (path, mut doc) = writable(global)?;
            map_of(&mut doc)?.insert(Yaml::from("current-context"), Yaml::from(name.as_str()));
            save(&path, &doc)?;
            println!("Switched to context \"{name}\".");
            Ok(())
        }
        ConfigCommand::SetContext { name, current, cluster, user } => {
            let kc = load_kubeconfig(global).ok();
            let name = match (name, current) {
                (Some(n), false) => n.clone(),
                (None, true) => kc
                    .as_ref()
                    .and_then(|k| k.current_context.clone())
                    .filter(|c| !c.is_empty())
                    .ok_or_else(|| Error::msg("no current context is set"))?,
                _ => return Err(Error::msg("give a context name or --current (not both)")),
            };
            let (path, mut doc) = writable(global)?;
            let root = map_of(&mut doc)?;
            let contexts = root.entry(Yaml::from("contexts")).or_insert_with(|| Yaml::Sequence(Vec::new()));
            if !contexts.is_sequence() {
                *contexts = Yaml::Sequence(Vec::new());
            }
            let Some(list) = contexts.as_sequence_mut() else {
                return Err(Error::msg("contexts is not a list"));
            };
            let existed = list.iter().any(|c| c.get("name").and_then(Yaml::as_str) == Some(&name));
            if !existed {
                let mut entry = serde_yaml_ng::Mapping::new();
                entry.insert(Yaml::from("name"), Yaml::from(name.as_str()));
                entry.insert(Yaml::from("context"), Yaml::Mapping(serde_yaml_ng::Mapping::new()));
                list.push(Yaml::Mapping(entry));
            }
            for entry in list.iter_mut() {
                if entry.get("name").and_then(Yaml::as_str) != Some(&name) {
                    continue;
                }
                let Some(map) = entry.as_mapping_mut() else { continue };
                let context = map.entry(Yaml::from("context")).or_insert_with(|| Yaml::Mapping(Default::default()));
                if !context.is_mapping() {
                    *context = Yaml::Mapping(Default::default());
                }
                let Some(context) = context.as_mapping_mut() else { continue };
                for (key, value) in [("cluster", cluster), ("user", user), ("namespace", &global.namespace)] {
                    if let Some(value) = value {
                        context.insert(Yaml::from(key), Yaml::from(value.as_str()));
                    }
                }
            }
            save(&path, &doc)?;
            println!("Context \"{name}\" {}.", if existed { "modified" } else { "created" });
            Ok(())
        }
    }
}

fn view(global: &GlobalArgs, raw: bool, minify: bool) -> Result<()> {
    let kc = load_kubeconfig(global)?;
    let mut value = serde_json::to_value(&kc).map_err(Error::msg)?;
    if minify {
        let resolved = kc.resolve(global.context.as_deref())?;
        let keep = |list: &mut Value, name: &str| {
            if let Some(items) = list.as_array_mut() {
                items.retain(|i| i["name"] == name);
            }
        };
        keep(&mut value["contexts"], &resolved.context_name);
        keep(&mut value["clusters"], &resolved.cluster_name);
        let user = kc
            .contexts
            .iter()
            .find(|c| c.name == resolved.context_name)
            .and_then(|c| c.context.as_ref())
            .and_then(|c| c.user.clone())
            .unwrap_or_default();
        keep(&mut value["users"], &user);
        value["current-context"] = Value::String(resolved.context_name);
    }
    if !raw {
        redact(&mut value);
    }
    print!("{}", printer::to_yaml(&value)?);
    Ok(())
}

/// Replaces secrets as kubectl does: `REDACTED` for tokens and passwords, `DATA+OMITTED`
/// for embedded certificates and keys.
fn redact(value: &mut Value) {
    match value {
        Value::Object(map) => {
            for (key, v) in map.iter_mut() {
                match key.as_str() {
                    "token" | "password" if v.is_string() => *v = Value::String("REDACTED".into()),
                    "client-key-data" | "client-certificate-data" | "certificate-authority-data" if v.is_string() => {
                        *v = Value::String("DATA+OMITTED".into());
                    }
                    _ => redact(v),
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(redact),
        _ => {}
    }
}

/// The file a change goes to, and its YAML (an empty mapping when it does not exist yet).
fn writable(global: &GlobalArgs) -> Result<(PathBuf, Yaml)> {
    let path = match &global.kubeconfig {
        Some(p) => p.clone(),
        None => {
            let from_env = std::env::var_os("KUBECONFIG")
                .filter(|v| !v.is_empty())
                .and_then(|list| std::env::split_paths(&list).find(|p| p.exists()));
            match from_env {
                Some(p) => p,
                None => PathBuf::from(std::env::var_os("HOME").ok_or_else(|| Error::msg("HOME is not set"))?)
                    .join(".kube")
                    .join("config"),
            }
        }
    };
    let doc = match std::fs::read_to_string(&path) {
        Ok(text) if !text.trim().is_empty() => serde_yaml_ng::from_str(&text)
            .map_err(|e| Error::msg(format!("kubeconfig {} is not valid YAML: {e}", path.display())))?,
        Ok(_) => Yaml::Mapping(Default::default()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Yaml::Mapping(Default::default()),
        Err(e) => return Err(Error::msg(format!("cannot read {}: {e}", path.display()))),
    };
    Ok((path, doc))
}

fn map_of(doc: &mut Yaml) -> Result<&mut serde_yaml_ng::Mapping> {
    if doc.is_null() {
        *doc = Yaml::Mapping(Default::default());
    }
    doc.as_mapping_mut().ok_or_else(|| Error::msg("the kubeconfig is not a YAML mapping"))
}

fn save(path: &std::path::Path, doc: &Yaml) -> Result<()> {
    let text = serde_yaml_ng::to_string(doc).map_err(Error::msg)?;
    if let Some(dir) = path.parent()
        && !dir.as_os_str().is_empty()
    {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(path, text).map_err(|e| Error::msg(format!("cannot write {}: {e}", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn view_hides_secrets() {
        let mut v = json!({"users": [{"name": "u", "user": {"token": "t", "client-key-data": "k"}}]});
        redact(&mut v);
        assert_eq!(v["users"][0]["user"]["token"], "REDACTED");
        assert_eq!(v["users"][0]["user"]["client-key-data"], "DATA+OMITTED");
    }
}
