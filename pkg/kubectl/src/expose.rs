//! `expose`: a Service that selects the pods of a deployment, replicaset, replicationcontroller,
//! pod or service, as kubectl's `expose` builds it.
//!
//! The Service is named after the object (`--name` to change it) and carries its labels
//! (`-l`); it selects what the object selects: a workload's `spec.selector.matchLabels` (a
//! selector with expressions cannot be a Service's and is refused, as kubectl refuses it), a
//! pod's labels, a service's selector (`--selector` overrides). Its ports are `--port` or, without
//! it, every port the pods' containers declare (named `port-1`, `port-2`, ... when there are
//! several); each targets `--target-port` or else its own number. Prints `service/NAME
//! exposed`; `--dry-run` and `-o` work as for `create`.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1 as core;
use k8s_openapi::apimachinery::pkg::apis::meta::v1 as meta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde_json::Value;

use crate::cli::ExposeArgs;
use crate::context::{Connection, path};
use crate::error::{Error, Result};
use crate::resource;

/// Runs `expose`.
pub async fn run(ctx: &Connection, args: &ExposeArgs) -> Result<()> {
    let (def, name) = resource::parse_one(&args.resources)?;
    let object = ctx.get(&path(def, ctx.ns_for(def), Some(&name))).await?;
    let service = build(def.kind, &name, &object, args)?;
    let value = serde_json::to_value(&service).map_err(|e| Error::msg(format!("cannot build the service: {e}")))?;
    crate::create::send(ctx, value, &args.generate, "exposed").await
}

/// `k=v,k2=v2` as a map.
fn parse_map(text: &str, what: &str) -> Result<BTreeMap<String, String>> {
    let mut map = BTreeMap::new();
    for pair in text.split(',').filter(|pair| !pair.is_empty()) {
        let (key, value) = pair
            .split_once('=')
            .filter(|(key, _)| !key.is_empty())
            .ok_or_else(|| Error::msg(format!("invalid {what} {pair:?}: expected KEY=VALUE")))?;
        map.insert(key.to_string(), value.to_string());
    }
    Ok(map)
}

fn string_map(value: &Value) -> BTreeMap<String, String> {
    value
        .as_object()
        .into_iter()
        .flatten()
        .map(|(key, value)| (key.clone(), value.as_str().unwrap_or_default().to_string()))
        .collect()
}

/// What the object of `kind` selects, as a Service's map-based selector.
fn selector_of(kind: &str, name: &str, object: &Value) -> Result<BTreeMap<String, String>> {
    match kind {
        "Pod" => Ok(string_map(&object["metadata"]["labels"])),
        "Service" | "ReplicationController" => Ok(string_map(&object["spec"]["selector"])),
        "Deployment" | "ReplicaSet" => {
            let selector = &object["spec"]["selector"];
            if selector["matchExpressions"].as_array().is_some_and(|e| !e.is_empty()) {
                return Err(Error::msg(format!(
                    "couldn't convert expressions - {} to map-based selector format",
                    selector["matchExpressions"]
                )));
            }
            Ok(string_map(&selector["matchLabels"]))
        }
        other => Err(Error::msg(format!(
            "cannot expose a {other} ({name}): only deployments, replicasets, replicationcontrollers, pods and services"
        ))),
    }
}

/// The ports the object's pods declare: `(port, protocol)`.
fn declared_ports(kind: &str, object: &Value) -> Vec<(i32, String)> {
    let port_list = |ports: &Value, field: &str| -> Vec<(i32, String)> {
        ports
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|port| {
                let number = i32::try_from(port[field].as_i64()?).ok()?;
                Some((number, port["protocol"].as_str().unwrap_or("TCP").to_string()))
            })
            .collect()
    };
    let containers = match kind {
        "Service" => return port_list(&object["spec"]["ports"], "port"),
        "Pod" => &object["spec"]["containers"],
        _ => &object["spec"]["template"]["spec"]["containers"],
    };
    containers
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|container| port_list(&container["ports"], "containerPort"))
        .collect()
}

/// The Service `expose` makes for `object` (of `kind`, named `name`).
fn build(kind: &str, name: &str, object: &Value, args: &ExposeArgs) -> Result<core::Service> {
    let selector = match &args.selector {
        Some(text) => parse_map(text, "selector")?,
        None => selector_of(kind, name, object)?,
    };
    if selector.is_empty() {
        return Err(Error::msg(format!("couldn't retrieve selectors via --selector flag or introspection of {name}")));
    }
    let labels = match &args.labels {
        Some(text) => parse_map(text, "label")?,
        None => string_map(&object["metadata"]["labels"]),
    };
    let ports: Vec<(i32, String)> = match args.port {
        Some(port) => vec![(port, args.protocol.clone().unwrap_or_else(|| "TCP".into()))],
        None => declared_ports(kind, object)
            .into_iter()
            .map(|(port, protocol)| (port, args.protocol.clone().unwrap_or(protocol)))
            .collect(),
    };
    if ports.is_empty() && args.cluster_ip.as_deref() != Some("None") {
        return Err(Error::msg("couldn't find port via --port flag or introspection"));
    }
    let target = args.target_port.as_deref().map(|target| match target.parse::<i32>() {
        Ok(number) => IntOrString::Int(number),
        Err(_) => IntOrString::String(target.to_string()),
    });
    let several = ports.len() > 1;
    let service_ports = ports
        .iter()
        .enumerate()
        .map(|(i, (port, protocol))| core::ServicePort {
            name: several.then(|| format!("port-{}", i + 1)),
            port: *port,
            protocol: Some(protocol.clone()),
            target_port: Some(target.clone().unwrap_or(IntOrString::Int(*port))),
            ..Default::default()
        })
        .collect::<Vec<_>>();
    Ok(core::Service {
        metadata: meta::ObjectMeta {
            name: Some(args.name.clone().unwrap_or_else(|| name.to_string())),
            labels: (!labels.is_empty()).then_some(labels),
            ..Default::default()
        },
        spec: Some(core::ServiceSpec {
            selector: Some(selector),
            ports: (!service_ports.is_empty()).then_some(service_ports),
            type_: args.service_type.clone(),
            cluster_ip: args.cluster_ip.clone(),
            ..Default::default()
        }),
        ..Default::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser as _;
    use serde_json::json;

    fn args(extra: &[&str]) -> ExposeArgs {
        let mut line = vec!["rkubectl", "expose", "deploy", "web"];
        line.extend_from_slice(extra);
        match crate::cli::Cli::try_parse_from(line).map(|cli| cli.command) {
            Ok(crate::cli::Command::Expose(args)) => args,
            other => panic!("not expose: {other:?}"),
        }
    }

    #[test]
    fn a_deployment_is_exposed_on_its_pods_ports_or_the_given_one() {
        let deployment = json!({"metadata": {"labels": {"app": "web"}}, "spec": {
            "selector": {"matchLabels": {"app": "web"}},
            "template": {"spec": {"containers": [{"ports": [{"containerPort": 8080}, {"containerPort": 53, "protocol": "UDP"}]}]}}}});
        let service = build("Deployment", "web", &deployment, &args(&[])).expect("built");
        let value = serde_json::to_value(&service).expect("json");
        assert_eq!(value["metadata"], json!({"name": "web", "labels": {"app": "web"}}));
        assert_eq!(value["spec"]["selector"], json!({"app": "web"}));
        assert_eq!(
            value["spec"]["ports"],
            json!([{"name": "port-1", "port": 8080, "protocol": "TCP", "targetPort": 8080},
                   {"name": "port-2", "port": 53, "protocol": "UDP", "targetPort": 53}])
        );
        let given = args(&["--port", "80", "--target-port", "http", "--type", "NodePort", "--name", "front"]);
        let value =
            serde_json::to_value(build("Deployment", "web", &deployment, &given).expect("built")).expect("json");
        assert_eq!(value["metadata"]["name"], "front");
        assert_eq!(value["spec"]["ports"], json!([{"port": 80, "protocol": "TCP", "targetPort": "http"}]));
        assert_eq!(value["spec"]["type"], "NodePort");
    }

    #[test]
    fn expressions_and_missing_ports_are_refused() {
        let expressions = json!({"spec": {"selector": {"matchExpressions": [{"key": "a", "operator": "Exists"}]}}});
        assert!(build("Deployment", "web", &expressions, &args(&["--port", "80"])).is_err());
        let no_ports = json!({"spec": {"selector": {"matchLabels": {"app": "web"}}}});
        let error = build("Deployment", "web", &no_ports, &args(&[])).expect_err("no port");
        assert_eq!(error.to_string(), "error: couldn't find port via --port flag or introspection");
        assert!(build("ConfigMap", "web", &no_ports, &args(&["--port", "80"])).is_err());
    }
}
