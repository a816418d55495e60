//! NodePorts: a pod asking for a `hostPort` cannot go where another pod (bound or assumed)
//! already holds the same port, protocol and host IP (`0.0.0.0` overlaps every IP).

use crate::framework::{FilterPlugin, NodeRef, PodInfo, Rejection};

/// See the module docs.
#[derive(Debug, Clone, Copy)]
pub struct NodePorts;

/// The reason given for a port conflict.
pub const PORTS_TAKEN: &str = "node(s) didn't have free ports for the requested pod ports";

impl FilterPlugin for NodePorts {
    fn name(&self) -> &'static str {
        "NodePorts"
    }

    fn filter(&self, pod: &PodInfo, node: NodeRef<'_>) -> Result<(), Rejection> {
        if pod.host_ports.is_empty() {
            return Ok(());
        }
        let conflict = node
            .info
            .pods
            .values()
            .flat_map(|other| other.host_ports.iter())
            .any(|used| pod.host_ports.iter().any(|wanted| wanted.conflicts_with(used)));
        if conflict { Err(vec![PORTS_TAKEN.into()]) } else { Ok(()) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::framework::testing::{node, node_info, pod};
    use serde_json::{Value, json};

    fn with_port(port: Value) -> PodInfo {
        pod(json!({"spec": {"containers": [{"name": "c", "ports": [port]}]}}))
    }

    #[test]
    fn a_host_port_in_use_rejects_the_node() {
        let n = node_info(node(json!({})), vec![with_port(json!({"containerPort": 80, "hostPort": 8080}))]);
        assert_eq!(
            NodePorts.filter(&with_port(json!({"containerPort": 80, "hostPort": 8080})), n.view()),
            Err(vec![PORTS_TAKEN.into()])
        );
        assert_eq!(
            NodePorts
                .filter(&with_port(json!({"containerPort": 80, "hostPort": 8080, "hostIP": "10.0.0.1"})), n.view()),
            Err(vec![PORTS_TAKEN.into()]),
            "0.0.0.0 overlaps every address"
        );
    }

    #[test]
    fn other_ports_protocols_and_container_ports_do_not_conflict() {
        let n = node_info(
            node(json!({})),
            vec![with_port(json!({"containerPort": 80, "hostPort": 8080, "hostIP": "10.0.0.1"}))],
        );
        for port in [
            json!({"containerPort": 80, "hostPort": 8081}),
            json!({"containerPort": 80, "hostPort": 8080, "protocol": "UDP"}),
            json!({"containerPort": 80, "hostPort": 8080, "hostIP": "10.0.0.2"}),
            json!({"containerPort": 8080}),
        ] {
            assert_eq!(NodePorts.filter(&with_port(port.clone()), n.view()), Ok(()), "{port}");
        }
    }
}
