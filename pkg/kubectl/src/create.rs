//! `create <generator>`: objects built from flags, as kubectl's generators build them.
//!
//! Each generator builds a typed object (k8s-openapi) with kubectl's defaults, then creates it
//! and prints kubectl's line (`deployment.apps/web created`); `-o yaml|json|name` prints the
//! created object instead, and `--dry-run=client` prints or names the object without sending
//! it (`--dry-run=server` sends it with `dryRun=All`, so the server checks but keeps nothing).
//!
//! kubectl's defaults kept here (each checked against the real kubectl's objects in
//! `test/tests/rkubectl_create.rs`):
//! - `deployment NAME --image=I...`: labels, selector and template labels `app=NAME`,
//!   `replicas` 1, one container per image named after the image (`registry/busybox:1.37` →
//!   `busybox`; `.` and `_` become `-`), the arguments after `--` the first container's
//!   command, `--port` its container port;
//! - `service clusterip|nodeport|loadbalancer NAME --tcp=PORT[:TARGET]`: label and selector
//!   `app=NAME`, one TCP port per `--tcp` named `PORT-TARGET`;
//! - `job NAME --image=I [-- CMD]`: one container named NAME, `restartPolicy: Never`;
//!   `--from=cronjob/NAME` copies the CronJob's job template, marked
//!   `cronjob.kubernetes.io/instantiate: manual` and owned by the CronJob;
//! - `configmap`/`secret generic` from `--from-literal=K=V`, `--from-file=[K=]PATH` (a
//!   directory: each regular file in it) and `--from-env-file`; a duplicate key is an error;
//! - `priorityclass NAME --value=N`: `preemptionPolicy: PreemptLowerPriority`;
//! - `quota NAME --hard=cpu=1,pods=2 [--scopes=...]`, `poddisruptionbudget NAME
//!   --selector=... --min-available=N|--max-unavailable=N`, `namespace NAME`.
//!
//! Not promised: kubectl's random suffix for sanitized container names (rkubectl numbers
//! duplicates instead), `secret tls|docker-registry`, `create role|clusterrole|...` (use
//! `create -f`).

use std::collections::BTreeMap;
use std::path::Path;

use k8s_openapi::ByteString;
use k8s_openapi::api::apps::v1 as apps;
use k8s_openapi::api::batch::v1 as batch;
use k8s_openapi::api::core::v1 as core;
use k8s_openapi::api::policy::v1 as policy;
use k8s_openapi::api::scheduling::v1 as scheduling;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1 as meta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde_json::Value;

use crate::cli::{
    ConfigMapArgs, CreateCommand, DeploymentArgs, GenerateArgs, JobArgs, NamespaceArgs, PdbArgs, PriorityClassArgs,
    QuotaArgs, SecretArgs, SecretCommand, ServiceArgs, ServiceCommand, SourceArgs,
};
use crate::context::{Connection, path, with_query};
use crate::error::{Error, Result};
use crate::get::format_value;
use crate::printer::Output;
use crate::resource;

/// Runs `create <generator>`.
pub async fn run(ctx: &Connection, command: &CreateCommand) -> Result<()> {
    let (object, generate) = match command {
        CreateCommand::Namespace(args) => (namespace(args)?, &args.generate),
        CreateCommand::Deployment(args) => (deployment(ctx, args)?, &args.generate),
        CreateCommand::Configmap(args) => (config_map(ctx, args)?, &args.generate),
        CreateCommand::Secret(SecretCommand::Generic(args)) => (secret(ctx, args)?, &args.generate),
        CreateCommand::Service(service_command) => {
            let (kind, args) = match service_command {
                ServiceCommand::Clusterip(args) => ("ClusterIP", args),
                ServiceCommand::Nodeport(args) => ("NodePort", args),
                ServiceCommand::Loadbalancer(args) => ("LoadBalancer", args),
            };
            (service(ctx, kind, args)?, &args.generate)
        }
        CreateCommand::Job(args) => (job(ctx, args).await?, &args.generate),
        CreateCommand::Priorityclass(args) => (priority_class(args)?, &args.generate),
        CreateCommand::Quota(args) => (quota(ctx, args)?, &args.generate),
        CreateCommand::Poddisruptionbudget(args) => (pdb(ctx, args)?, &args.generate),
    };
    send(ctx, object, generate, "created").await
}

/// Creates `object` (or only shows it, with `--dry-run=client`) and prints the outcome as
/// kubectl does: `<type>/<name> <verb>`, with ` (dry run)` or ` (server dry run)`, or the
/// object in the `-o` format.
pub async fn send(ctx: &Connection, object: Value, generate: &GenerateArgs, verb: &str) -> Result<()> {
    let output = match generate.output.as_deref() {
        None | Some("") => None,
        Some(format) => Some(Output::parse(Some(format))?),
    };
    if output.as_ref().is_some_and(Output::is_table) {
        return Err(Error::msg("--output wide is not available here: use yaml, json, name or jsonpath=..."));
    }
    let kind = object["kind"].as_str().unwrap_or_default();
    let api_version = object["apiVersion"].as_str().unwrap_or_default();
    let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
    let def = rkube_api::registry::resources()
        .iter()
        .copied()
        .find(|def| def.group == group && def.version == version && def.kind == kind)
        .ok_or_else(|| Error::msg(format!("rkube does not serve {kind} in {api_version}")))?;
    let name = object["metadata"]["name"].as_str().unwrap_or_default().to_string();
    let (shown, suffix) = match generate.dry_run.as_str() {
        "none" => {
            let created =
                ctx.send(http::Method::POST, &path(def, ctx.ns_for(def), None), None, None, Some(&object)).await?;
            (created, "")
        }
        "server" => {
            let url = with_query(&path(def, ctx.ns_for(def), None), &[("dryRun", "All")]);
            (ctx.send(http::Method::POST, &url, None, None, Some(&object)).await?, " (server dry run)")
        }
        "client" => (object, " (dry run)"),
        other => {
            return Err(Error::msg(format!(
                "Invalid dry-run value ({other}). Must be \"none\", \"server\", or \"client\"."
            )));
        }
    };
    match output {
        Some(output) => print!("{}", format_value(&output, &shown)?),
        None => println!("{} {verb}{suffix}", resource::ref_name(def, &name)),
    }
    Ok(())
}

/// A typed object as JSON (with its `apiVersion` and `kind`).
fn to_json<T: serde::Serialize>(object: &T) -> Result<Value> {
    serde_json::to_value(object).map_err(|e| Error::msg(format!("cannot build the object: {e}")))
}

/// The object's metadata: its name, labels, and the namespace when `-n` was given (as kubectl
/// writes it only then).
fn metadata(ctx: Option<&Connection>, name: &str, labels: Option<BTreeMap<String, String>>) -> meta::ObjectMeta {
    meta::ObjectMeta {
        name: Some(name.to_string()),
        namespace: ctx.filter(|ctx| ctx.explicit_namespace).map(|ctx| ctx.namespace.clone()),
        labels,
        ..Default::default()
    }
}

fn app_label(name: &str) -> BTreeMap<String, String> {
    BTreeMap::from([("app".to_string(), name.to_string())])
}

fn namespace(args: &NamespaceArgs) -> Result<Value> {
    to_json(&core::Namespace { metadata: metadata(None, &args.name, None), ..Default::default() })
}

/// kubectl's container name for an image: the last path segment without tag or digest, with
/// `.` and `_` turned into `-`.
fn container_name(image: &str) -> String {
    let last = image.rsplit('/').next().unwrap_or(image);
    let last = last.split('@').next().unwrap_or(last);
    let last = last.split(':').next().unwrap_or(last);
    last.replace(['.', '_'], "-")
}

fn deployment(ctx: &Connection, args: &DeploymentArgs) -> Result<Value> {
    if args.replicas < 0 {
        return Err(Error::msg("--replicas must be 0 or more"));
    }
    let mut containers: Vec<core::Container> = Vec::new();
    for image in &args.image {
        let base = container_name(image);
        let mut name = base.clone();
        let mut n = 2;
        while containers.iter().any(|c| c.name == name) {
            name = format!("{base}-{n}");
            n += 1;
        }
        containers.push(core::Container { name, image: Some(image.clone()), ..Default::default() });
    }
    if let Some(first) = containers.first_mut() {
        if !args.command.is_empty() {
            first.command = Some(args.command.clone());
        }
        if let Some(port) = args.port {
            first.ports = Some(vec![core::ContainerPort { container_port: port, ..Default::default() }]);
        }
    }
    let labels = app_label(&args.name);
    to_json(&apps::Deployment {
        metadata: metadata(Some(ctx), &args.name, Some(labels.clone())),
        spec: apps::DeploymentSpec {
            replicas: Some(args.replicas),
            selector: meta::LabelSelector { match_labels: Some(labels.clone()), ..Default::default() },
            template: core::PodTemplateSpec {
                metadata: Some(meta::ObjectMeta { labels: Some(labels), ..Default::default() }),
                spec: Some(core::PodSpec { containers, ..Default::default() }),
            },
            ..Default::default()
        },
        ..Default::default()
    })
}

/// The entries of `--from-literal`, `--from-file` and `--from-env-file`, in that order, as
/// raw bytes by key. A duplicate key is an error naming `what`.
fn sources(args: &SourceArgs, what: &str) -> Result<BTreeMap<String, Vec<u8>>> {
    let mut entries = BTreeMap::new();
    let mut add = |key: String, value: Vec<u8>| -> Result<()> {
        if !valid_key(&key) {
            return Err(Error::msg(format!(
                "{key:?} is not a valid key name for a {what}: a valid key must consist of alphanumeric \
                 characters, '-', '_' or '.'"
            )));
        }
        if entries.insert(key.clone(), value).is_some() {
            return Err(Error::msg(format!(
                "cannot add key {key}, another key by that name already exists in data for {what}"
            )));
        }
        Ok(())
    };
    for literal in &args.from_literal {
        let (key, value) = literal
            .split_once('=')
            .filter(|(key, _)| !key.is_empty())
            .ok_or_else(|| Error::msg(format!("invalid literal source {literal}, expected key=value")))?;
        add(key.to_string(), value.as_bytes().to_vec())?;
    }
    for source in &args.from_file {
        let (key, file) = match source.split_once('=') {
            Some((key, file)) if !key.is_empty() && !file.is_empty() => (Some(key), file),
            Some(_) => return Err(Error::msg(format!("key names or file paths cannot be empty: {source:?}"))),
            None => (None, source.as_str()),
        };
        let file_path = Path::new(file);
        if file_path.is_dir() {
            if key.is_some() {
                return Err(Error::msg(format!("cannot give a key name for a directory path: {source:?}")));
            }
            let mut names = Vec::new();
            for entry in std::fs::read_dir(file_path).map_err(|e| Error::msg(format!("error reading {file}: {e}")))? {
                let entry = entry.map_err(|e| Error::msg(format!("error reading {file}: {e}")))?;
                if entry.file_type().is_ok_and(|t| t.is_file()) {
                    names.push(entry.path());
                }
            }
            names.sort();
            for entry in names {
                let key = entry.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
                let bytes =
                    std::fs::read(&entry).map_err(|e| Error::msg(format!("error reading {}: {e}", entry.display())))?;
                add(key, bytes)?;
            }
        } else {
            let bytes = std::fs::read(file_path).map_err(|e| Error::msg(format!("error reading {file}: {e}")))?;
            let key = key
                .map(str::to_string)
                .unwrap_or_else(|| file_path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default());
            add(key, bytes)?;
        }
    }
    for file in &args.from_env_file {
        let text = std::fs::read_to_string(file).map_err(|e| Error::msg(format!("error reading {file}: {e}")))?;
        for (number, line) in text.lines().enumerate() {
            let line = line.trim_start();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (key, value) = line
                .split_once('=')
                .ok_or_else(|| Error::msg(format!("{file}: line {}: {line:?} is not a KEY=VALUE line", number + 1)))?;
            add(key.to_string(), value.as_bytes().to_vec())?;
        }
    }
    Ok(entries)
}

/// A ConfigMap or Secret key: alphanumerics, `-`, `_` and `.`, not `.` or `..`.
fn valid_key(key: &str) -> bool {
    !key.is_empty()
        && key.len() <= 253
        && key != "."
        && key != ".."
        && key.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

fn config_map(ctx: &Connection, args: &ConfigMapArgs) -> Result<Value> {
    let mut data = BTreeMap::new();
    let mut binary_data = BTreeMap::new();
    for (key, bytes) in sources(&args.sources, "ConfigMap")? {
        match String::from_utf8(bytes) {
            Ok(text) => {
                data.insert(key, text);
            }
            Err(e) => {
                binary_data.insert(key, ByteString(e.into_bytes()));
            }
        }
    }
    to_json(&core::ConfigMap {
        metadata: metadata(Some(ctx), &args.name, None),
        data: (!data.is_empty()).then_some(data),
        binary_data: (!binary_data.is_empty()).then_some(binary_data),
        ..Default::default()
    })
}

fn secret(ctx: &Connection, args: &SecretArgs) -> Result<Value> {
    let data: BTreeMap<String, ByteString> =
        sources(&args.sources, "Secret")?.into_iter().map(|(key, bytes)| (key, ByteString(bytes))).collect();
    to_json(&core::Secret {
        metadata: metadata(Some(ctx), &args.name, None),
        data: (!data.is_empty()).then_some(data),
        type_: args.secret_type.clone(),
        ..Default::default()
    })
}

/// `PORT[:TARGET]` → the port and its target (a number, or a port name).
fn service_port(text: &str) -> Result<(i32, IntOrString)> {
    let (port, target) = text.split_once(':').unwrap_or((text, text));
    let bad = || Error::msg(format!("invalid --tcp {text:?}: expected PORT or PORT:TARGET_PORT"));
    let port: i32 = port.parse().ok().filter(|p| (1..=65535).contains(p)).ok_or_else(bad)?;
    let target = match target.parse::<i32>() {
        Ok(number) if (1..=65535).contains(&number) => IntOrString::Int(number),
        Ok(_) => return Err(bad()),
        Err(_) if !target.is_empty() => IntOrString::String(target.to_string()),
        Err(_) => return Err(bad()),
    };
    Ok((port, target))
}

fn service(ctx: &Connection, kind: &str, args: &ServiceArgs) -> Result<Value> {
    let mut ports = Vec::new();
    for tcp in args.tcp.iter().flat_map(|t| t.split(',')) {
        let (port, target) = service_port(tcp)?;
        ports.push(core::ServicePort {
            name: Some(tcp.replace(':', "-")),
            port,
            target_port: Some(target),
            protocol: Some("TCP".into()),
            node_port: args.node_port.filter(|_| kind == "NodePort"),
            ..Default::default()
        });
    }
    let headless = args.clusterip.as_deref() == Some("None");
    if ports.is_empty() && !headless {
        return Err(Error::msg("at least one --tcp=PORT[:TARGET_PORT] is required"));
    }
    to_json(&core::Service {
        metadata: metadata(Some(ctx), &args.name, Some(app_label(&args.name))),
        spec: Some(core::ServiceSpec {
            type_: Some(kind.to_string()),
            selector: Some(app_label(&args.name)),
            ports: (!ports.is_empty()).then_some(ports),
            cluster_ip: args.clusterip.clone().filter(|_| kind == "ClusterIP"),
            ..Default::default()
        }),
        ..Default::default()
    })
}

async fn job(ctx: &Connection, args: &JobArgs) -> Result<Value> {
    if let Some(from) = &args.from {
        if args.image.is_some() || !args.command.is_empty() {
            return Err(Error::msg("--from cannot be given with --image or a command"));
        }
        return job_from_cron_job(ctx, &args.name, from).await;
    }
    let Some(image) = &args.image else {
        return Err(Error::msg("--image or --from must be specified"));
    };
    to_json(&batch::Job {
        metadata: metadata(Some(ctx), &args.name, None),
        spec: Some(batch::JobSpec {
            template: core::PodTemplateSpec {
                metadata: None,
                spec: Some(core::PodSpec {
                    containers: vec![core::Container {
                        name: args.name.clone(),
                        image: Some(image.clone()),
                        command: (!args.command.is_empty()).then(|| args.command.clone()),
                        ..Default::default()
                    }],
                    restart_policy: Some("Never".into()),
                    ..Default::default()
                }),
            },
            ..Default::default()
        }),
        ..Default::default()
    })
}

/// A Job made from a CronJob's template now, as `kubectl create job --from=cronjob/NAME`.
async fn job_from_cron_job(ctx: &Connection, name: &str, from: &str) -> Result<Value> {
    let (kind, cron_name) =
        from.split_once('/').ok_or_else(|| Error::msg(format!("--from must be cronjob/NAME, not {from:?}")))?;
    let def = resource::resolve(kind)?;
    if def.kind != "CronJob" {
        return Err(Error::msg(format!("from must be an existing cronjob, not {}", def.plural)));
    }
    let live = ctx.get(&path(def, ctx.ns_for(def), Some(cron_name))).await?;
    let cron: batch::CronJob =
        serde_json::from_value(live).map_err(|e| Error::msg(format!("unreadable cronjob {cron_name}: {e}")))?;
    let template = cron.spec.job_template;
    let template_meta = template.metadata.unwrap_or_default();
    let mut annotations = template_meta.annotations.unwrap_or_default();
    annotations.insert("cronjob.kubernetes.io/instantiate".into(), "manual".into());
    let owner = meta::OwnerReference {
        api_version: "batch/v1".into(),
        kind: "CronJob".into(),
        name: cron.metadata.name.clone().unwrap_or_default(),
        uid: cron.metadata.uid.clone().unwrap_or_default(),
        controller: Some(true),
        ..Default::default()
    };
    let mut job_meta = metadata(Some(ctx), name, template_meta.labels);
    job_meta.annotations = Some(annotations);
    job_meta.owner_references = Some(vec![owner]);
    to_json(&batch::Job { metadata: job_meta, spec: template.spec, ..Default::default() })
}

fn priority_class(args: &PriorityClassArgs) -> Result<Value> {
    to_json(&scheduling::PriorityClass {
        metadata: metadata(None, &args.name, None),
        value: Some(args.value),
        global_default: args.global_default.then_some(true),
        description: args.description.clone(),
        preemption_policy: Some(args.preemption_policy.clone()),
    })
}

fn quota(ctx: &Connection, args: &QuotaArgs) -> Result<Value> {
    let mut hard = BTreeMap::new();
    for pair in args.hard.iter().flat_map(|h| h.split(',')).filter(|p| !p.is_empty()) {
        let (resource, amount) = pair
            .split_once('=')
            .filter(|(resource, amount)| !resource.is_empty() && !amount.is_empty())
            .ok_or_else(|| Error::msg(format!("invalid --hard {pair:?}: expected RESOURCE=QUANTITY")))?;
        rkube_api::quantity::parse_milli(amount).map_err(Error::msg)?;
        hard.insert(resource.to_string(), Quantity(amount.to_string()));
    }
    let scopes: Vec<String> =
        args.scopes.iter().flat_map(|s| s.split(',')).filter(|s| !s.is_empty()).map(str::to_string).collect();
    to_json(&core::ResourceQuota {
        metadata: metadata(Some(ctx), &args.name, None),
        spec: Some(core::ResourceQuotaSpec {
            hard: (!hard.is_empty()).then_some(hard),
            scopes: (!scopes.is_empty()).then_some(scopes),
            ..Default::default()
        }),
        ..Default::default()
    })
}

/// `1` → 1, `50%` → "50%", as Kubernetes' `intstr.Parse`.
fn int_or_string(text: &str) -> IntOrString {
    match text.parse::<i32>() {
        Ok(number) => IntOrString::Int(number),
        Err(_) => IntOrString::String(text.to_string()),
    }
}

/// A label selector string as a `LabelSelector` object (kubectl's `ParseToLabelSelector`):
/// `k=v` go to `matchLabels`, everything else to `matchExpressions`.
fn label_selector(text: &str) -> Result<meta::LabelSelector> {
    use rkube_api::selector::{LabelOperator, LabelSelector};
    let parsed = LabelSelector::parse(text).map_err(Error::msg)?;
    let mut labels = BTreeMap::new();
    let mut expressions = Vec::new();
    for requirement in parsed.requirements() {
        let values = requirement.values().to_vec();
        let (operator, values) = match requirement.operator() {
            LabelOperator::Equals => {
                labels.insert(requirement.key().to_string(), values.into_iter().next().unwrap_or_default());
                continue;
            }
            LabelOperator::NotEquals | LabelOperator::NotIn => ("NotIn", Some(values)),
            LabelOperator::In => ("In", Some(values)),
            LabelOperator::Exists => ("Exists", None),
            LabelOperator::DoesNotExist => ("DoesNotExist", None),
            LabelOperator::GreaterThan | LabelOperator::LessThan => {
                return Err(Error::msg(format!("{requirement} is not a valid label selector operator here")));
            }
        };
        expressions.push(meta::LabelSelectorRequirement {
            key: requirement.key().to_string(),
            operator: operator.into(),
            values,
        });
    }
    Ok(meta::LabelSelector {
        match_labels: (!labels.is_empty()).then_some(labels),
        match_expressions: (!expressions.is_empty()).then_some(expressions),
    })
}

fn pdb(ctx: &Connection, args: &PdbArgs) -> Result<Value> {
    let (min_available, max_unavailable) = match (&args.min_available, &args.max_unavailable) {
        (Some(_), Some(_)) => return Err(Error::msg("min-available and max-unavailable cannot be both specified")),
        (None, None) => return Err(Error::msg("one of min-available or max-unavailable must be specified")),
        (min, max) => (min.as_deref().map(int_or_string), max.as_deref().map(int_or_string)),
    };
    let Some(selector) = args.selector.as_deref().filter(|s| !s.is_empty()) else {
        return Err(Error::msg("a selector must be specified"));
    };
    to_json(&policy::PodDisruptionBudget {
        metadata: metadata(Some(ctx), &args.name, None),
        spec: Some(policy::PodDisruptionBudgetSpec {
            selector: Some(label_selector(selector)?),
            min_available,
            max_unavailable,
            ..Default::default()
        }),
        ..Default::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn container_names_come_from_the_image_name() {
        assert_eq!(container_name("busybox"), "busybox");
        assert_eq!(container_name("registry.k8s.io/pause:3.9"), "pause");
        assert_eq!(container_name("localhost:5000/team/web_app.v2@sha256:abc"), "web-app-v2");
        assert_eq!(container_name("busybox-local:v1"), "busybox-local");
    }

    #[test]
    fn service_ports_are_port_colon_target() {
        assert_eq!(service_port("80").ok(), Some((80, IntOrString::Int(80))));
        assert_eq!(service_port("5678:8080").ok(), Some((5678, IntOrString::Int(8080))));
        assert_eq!(service_port("80:http").ok(), Some((80, IntOrString::String("http".into()))));
        for bad in ["", "x", "0", "80:", "80:0", "70000"] {
            assert!(service_port(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn selectors_split_into_labels_and_expressions() {
        let selector = label_selector("app=web,tier in (a,b),!old,env!=prod").expect("valid");
        assert_eq!(selector.match_labels, Some(BTreeMap::from([("app".to_string(), "web".to_string())])));
        let expressions = selector.match_expressions.unwrap_or_default();
        let operators: Vec<&str> = expressions.iter().map(|e| e.operator.as_str()).collect();
        assert_eq!(operators, ["NotIn", "DoesNotExist", "In"], "sorted by key: env, old, tier");
        assert!(label_selector("a b").is_err());
    }

    #[test]
    fn sources_are_keyed_and_checked() {
        let dir = std::env::temp_dir().join(format!("rkubectl-create-test-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("sub")).expect("dir");
        std::fs::write(dir.join("a.txt"), "A").expect("file");
        std::fs::write(dir.join("sub/ignored"), "x").expect("file");
        std::fs::write(dir.join("env"), "# comment\nX=1\n\n  Y= two=2\n").expect("file");
        let file = |name: &str| dir.join(name).display().to_string();
        let args = SourceArgs {
            from_literal: vec!["k=v=w".into()],
            from_file: vec![file("a.txt"), format!("renamed={}", file("a.txt"))],
            from_env_file: vec![file("env")],
        };
        let entries = sources(&args, "ConfigMap").expect("read");
        let keys: Vec<&str> = entries.keys().map(String::as_str).collect();
        assert_eq!(keys, ["X", "Y", "a.txt", "k", "renamed"]);
        assert_eq!((entries["k"].as_slice(), entries["Y"].as_slice()), (&b"v=w"[..], &b" two=2"[..]));
        let twice = SourceArgs { from_literal: vec!["a=1".into(), "a=2".into()], ..SourceArgs::default() };
        assert!(sources(&twice, "ConfigMap").is_err());
        let bad = SourceArgs { from_literal: vec!["no-equals".into()], ..SourceArgs::default() };
        assert!(sources(&bad, "ConfigMap").is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
