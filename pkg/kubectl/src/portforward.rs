//! `port-forward`: local ports forwarded to ports of a pod, over the apiserver's
//! `pods/portforward`.
//!
//! Like kubectl, rkubectl first finds the pod (a Service or a workload stands for one of its
//! running pods, and a Service's port for the pod's `targetPort`), listens on the local ports
//! and prints `Forwarding from 127.0.0.1:<local> -> <remote>`. Unlike kubectl, which runs SPDY
//! inside one WebSocket for all connections, rkubectl opens one WebSocket per accepted
//! connection with the channel protocol `v4.channel.k8s.io` and the port in the query: channel
//! 0 carries the data both ways, channel 1 the server's error; each first says its port (2
//! bytes). The connection ends when the pod's side closes (the server closes the WebSocket) or
//! the local side does.

use futures::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::Message;

use crate::cli::PortForwardArgs;
use crate::context::{Connection, path, with_query};
use crate::error::{Error, Result};
use crate::resource;

const PROTOCOL: &str = "v4.channel.k8s.io";

/// A local port and the pod's port it forwards to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Mapping {
    local: u16,
    remote: u16,
}

/// Runs `port-forward` until interrupted.
pub async fn run(ctx: &Connection, args: &PortForwardArgs) -> Result<()> {
    let requested = args.ports.iter().map(|port| parse_port(port)).collect::<Result<Vec<_>>>()?;
    let (pod, remote_ports) = target(ctx, &args.target, &requested).await?;
    let name = pod["metadata"]["name"].as_str().unwrap_or_default().to_string();
    let phase = pod["status"]["phase"].as_str().unwrap_or("Unknown");
    if phase != "Running" {
        return Err(Error::msg(format!("unable to forward port because pod is not running. Current status={phase}")));
    }
    let pods = resource::resolve("pods")?;
    let pod_path = path(pods, ctx.ns_for(pods), Some(&name));
    let mut listeners = Vec::new();
    for ((local, _), remote) in requested.iter().zip(remote_ports) {
        let listener = TcpListener::bind((args.address.as_str(), *local))
            .await
            .map_err(|e| Error::msg(format!("unable to listen on port {local}: {e}")))?;
        let bound = listener.local_addr()?;
        println!("Forwarding from {bound} -> {remote}");
        listeners.push((listener, Mapping { local: bound.port(), remote }));
    }
    let mut accepting = tokio::task::JoinSet::new();
    for (listener, mapping) in listeners {
        let (ctx, pod_path) = (ctx.clone(), pod_path.clone());
        accepting.spawn(async move {
            loop {
                let Ok((connection, _)) = listener.accept().await else { continue };
                println!("Handling connection for {}", mapping.local);
                let (ctx, pod_path) = (ctx.clone(), pod_path.clone());
                tokio::spawn(async move { forward(&ctx, &pod_path, mapping, connection).await });
            }
        });
    }
    while accepting.join_next().await.is_some() {}
    Ok(())
}

/// `[LOCAL:]REMOTE` (`8080`, `18080:80`, `:80` for any free local port): the local port (0 for
/// any) and the remote port as given (a number, or a name for a Service's or pod's port).
fn parse_port(text: &str) -> Result<(u16, String)> {
    let (local, remote) = match text.split_once(':') {
        Some((local, remote)) => (local, remote),
        None => (text, text),
    };
    let local = if local.is_empty() {
        0
    } else {
        local.parse::<u16>().map_err(|_| Error::msg(format!("invalid local port {local:?} in {text:?}")))?
    };
    if remote.is_empty() {
        return Err(Error::msg(format!("invalid port {text:?}: the remote port is missing")));
    }
    Ok((local, remote.to_string()))
}

/// The pod `target` stands for and the pod's port for each requested remote port.
async fn target(ctx: &Connection, target: &str, requested: &[(u16, String)]) -> Result<(Value, Vec<u16>)> {
    let (kind, name) = match target.split_once('/') {
        Some((kind, name)) => (resource::resolve(kind)?, name),
        None => (resource::resolve("pods")?, target),
    };
    let object = ctx.get(&path(kind, ctx.ns_for(kind), Some(name))).await?;
    let (pod, service) = match kind.plural {
        "pods" => (object, None),
        "services" => {
            let selector = object["spec"]["selector"]
                .as_object()
                .map(|labels| labels.iter().map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or(""))).collect())
                .unwrap_or_else(Vec::new)
                .join(",");
            if selector.is_empty() {
                return Err(Error::msg(format!("service {name} has no selector: no pod to forward to")));
            }
            (running_pod(ctx, &selector, target).await?, Some(object))
        }
        "deployments" | "replicasets" | "statefulsets" | "daemonsets" => {
            let selector = crate::describe::selector_text(&object["spec"]["selector"]);
            (running_pod(ctx, &selector, target).await?, None)
        }
        other => return Err(Error::msg(format!("cannot forward ports to {other}: name a pod, service or workload"))),
    };
    let ports =
        requested.iter().map(|(_, remote)| remote_port(&pod, service.as_ref(), remote)).collect::<Result<Vec<_>>>()?;
    Ok((pod, ports))
}

/// A running pod matching `selector` (the newest), as kubectl picks one.
async fn running_pod(ctx: &Connection, selector: &str, target: &str) -> Result<Value> {
    let pods = resource::resolve("pods")?;
    let list = ctx.get(&with_query(&path(pods, ctx.ns_for(pods), None), &[("labelSelector", selector)])).await?;
    list["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|pod| pod["status"]["phase"] == "Running" && pod["metadata"]["deletionTimestamp"].is_null())
        .max_by_key(|pod| pod["metadata"]["creationTimestamp"].as_str().unwrap_or_default().to_string())
        .cloned()
        .ok_or_else(|| Error::msg(format!("no running pod for {target}")))
}

/// The pod's port for `remote`: through the Service's port (to its `targetPort`) when there is
/// a Service, and a port name looked up among the pod's container ports.
fn remote_port(pod: &Value, service: Option<&Value>, remote: &str) -> Result<u16> {
    let mut port = Value::String(remote.to_string());
    if let Ok(number) = remote.parse::<u16>() {
        port = Value::from(number);
    }
    if let Some(service) = service {
        let entry = service["spec"]["ports"].as_array().into_iter().flatten().find(|entry| {
            entry["name"].as_str() == Some(remote) || entry["port"].as_u64().is_some_and(|p| p.to_string() == remote)
        });
        let Some(entry) = entry else {
            return Err(Error::msg(format!("service has no port {remote}")));
        };
        port = match &entry["targetPort"] {
            Value::Null => entry["port"].clone(),
            target => target.clone(),
        };
    }
    if let Some(number) = port.as_u64() {
        return u16::try_from(number)
            .ok()
            .filter(|p| *p > 0)
            .ok_or_else(|| Error::msg(format!("invalid port {number}")));
    }
    let wanted = port.as_str().unwrap_or_default();
    if let Ok(number) = wanted.parse::<u16>() {
        return Ok(number);
    }
    pod["spec"]["containers"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|container| container["ports"].as_array().into_iter().flatten())
        .find(|entry| entry["name"].as_str() == Some(wanted))
        .and_then(|entry| entry["containerPort"].as_u64())
        .and_then(|number| u16::try_from(number).ok())
        .ok_or_else(|| Error::msg(format!("pod has no port named {wanted:?}")))
}

/// One local connection: a WebSocket to the pod's port, bytes both ways until either side ends.
/// An error is printed before the local connection closes.
async fn forward(ctx: &Connection, pod_path: &str, mapping: Mapping, mut local: TcpStream) {
    if let Err(error) = relay(ctx, pod_path, mapping.remote, &mut local).await {
        eprintln!("error: forwarding {} -> {}: {error}", mapping.local, mapping.remote);
    }
}

async fn relay(ctx: &Connection, pod_path: &str, remote: u16, local: &mut TcpStream) -> Result<()> {
    let socket = ctx.websocket(&format!("{pod_path}/portforward?ports={remote}"), PROTOCOL, "port-forward").await?;
    let (mut sink, mut incoming) = socket.split();
    let (mut from_local, mut to_local) = local.split();
    let upstream = async {
        let mut buffer = vec![0u8; 32 * 1024];
        while let Ok(n @ 1..) = from_local.read(&mut buffer).await {
            let mut message = Vec::with_capacity(n + 1);
            message.push(0);
            message.extend_from_slice(&buffer[..n]);
            if sink.send(Message::Binary(message.into())).await.is_err() {
                break;
            }
        }
        std::future::pending::<()>().await;
    };
    let downstream = async {
        // Each channel's first message is its port number.
        let mut announced = [false, false];
        while let Some(Ok(message)) = incoming.next().await {
            let Message::Binary(data) = message else { continue };
            let Some((&channel, bytes)) = data.split_first() else { continue };
            let Some(seen) = announced.get_mut(usize::from(channel)) else { continue };
            if !*seen {
                *seen = true;
                continue;
            }
            if channel == 1 {
                return Err(Error::msg(String::from_utf8_lossy(bytes).into_owned()));
            }
            to_local.write_all(bytes).await?;
        }
        let _ = to_local.shutdown().await;
        Ok(())
    };
    tokio::select! {
        result = downstream => result,
        () = upstream => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_local_colon_remote() {
        assert_eq!(parse_port("8080").ok(), Some((8080, "8080".into())));
        assert_eq!(parse_port("18080:80").ok(), Some((18080, "80".into())));
        assert_eq!(parse_port(":http").ok(), Some((0, "http".into())));
        assert!(parse_port("x:80").is_err());
        assert!(parse_port("80:").is_err());
    }

    #[test]
    fn a_service_port_leads_to_the_pods_target_port() {
        let pod = serde_json::json!({"spec": {"containers": [{"ports": [{"name": "web", "containerPort": 8080}]}]}});
        let service = serde_json::json!({"spec": {"ports": [
            {"name": "http", "port": 80, "targetPort": "web"}, {"port": 81, "targetPort": 9090}, {"port": 82}]}});
        assert_eq!(remote_port(&pod, Some(&service), "80").ok(), Some(8080));
        assert_eq!(remote_port(&pod, Some(&service), "http").ok(), Some(8080));
        assert_eq!(remote_port(&pod, Some(&service), "81").ok(), Some(9090));
        assert_eq!(remote_port(&pod, Some(&service), "82").ok(), Some(82));
        assert!(remote_port(&pod, Some(&service), "83").is_err());
        assert_eq!(remote_port(&pod, None, "web").ok(), Some(8080));
        assert_eq!(remote_port(&pod, None, "5000").ok(), Some(5000));
        assert!(remote_port(&pod, None, "db").is_err());
    }
}
