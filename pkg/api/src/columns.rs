//! Table columns, as `kubectl get` shows them (server-side printing): the [`Column`] type,
//! the columns every kind shares (`Name`, `Age`) and the cell formatting the kinds' rows
//! share, following Kubernetes' `pkg/printers/internalversion/printers.go`.
//!
//! Each kind's own columns and row live beside its registry entry, in `kinds/<kind>.rs`
//! ([`crate::ResourceDef::columns`] and [`crate::ResourceDef::row`]); rows carry every
//! column, priority-1 ("wide") ones included, as the apiserver's Table responses do; clients
//! hide columns with a priority above 0 unless asked for `-o wide`.
//!
//! Invariants (each has a test below):
//! - a row works on the stored JSON and never fails: a missing field prints as Kubernetes
//!   prints its zero value (`<none>`, `<unknown>`, `0` or an empty string, column by column);
//! - every kind's row has exactly as many cells as its columns, and one `Name` column;
//! - ages read exactly like apimachinery's `duration.HumanDuration` (`90s`, `5m12s`, `3h`).
//!
//! Column types follow printers.go rather than the look of the values: `Age` and
//! `Restarts` are `string` (`Restarts` reads `3 (5m ago)` after a restart), while
//! `Desired`/`Current`/`Ready` of a ReplicaSet are `integer`. Cells are strings, except the
//! integers printers.go puts in cells (ReplicaSet counts, Deployment `Up-to-date` and
//! `Available`, ConfigMap `Data`, event `Count`).

use std::collections::BTreeSet;

use jiff::Timestamp;
use serde_json::Value;

/// One column of a Table, as `metav1.TableColumnDefinition`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Column {
    /// The header, e.g. `Name`.
    pub name: &'static str,
    /// The OpenAPI type of the cells: `string`, `integer` or `date`.
    pub kind: &'static str,
    /// `name` for the column holding the object's name, otherwise empty.
    pub format: &'static str,
    /// What the column shows.
    pub description: &'static str,
    /// 0 for columns always shown, 1 for those only `-o wide` shows.
    pub priority: i32,
}

/// How a kind turns one stored object into its row, ages measured at `now`.
pub type RowFn = fn(&Value, Timestamp) -> Vec<Value>;

const NAME_DESCRIPTION: &str = "Name must be unique within a namespace. Is required when creating resources, although some resources may allow a client to request the generation of an appropriate name automatically. Name is primarily intended for creation idempotence and configuration definition. Cannot be updated. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names";
const AGE_DESCRIPTION: &str = "CreationTimestamp is a timestamp representing the server time when this object was created. It is not guaranteed to be set in happens-before order across separate operations. Clients may not set this value. It is represented in RFC3339 form and is in UTC.";
/// The description of a workload's `Containers` column.
pub(crate) const CONTAINERS_DESCRIPTION: &str = "Names of each container in the template.";
/// The description of a workload's `Images` column.
pub(crate) const IMAGES_DESCRIPTION: &str = "Images referenced by each container in the template.";

/// A column that is not the name column.
pub const fn column(name: &'static str, kind: &'static str, description: &'static str, priority: i32) -> Column {
    Column { name, kind, format: "", description, priority }
}

/// The `Name` column every kind has.
pub const NAME: Column =
    Column { name: "Name", kind: "string", format: "name", description: NAME_DESCRIPTION, priority: 0 };
/// The `Age` column.
pub const AGE: Column = column("Age", "string", AGE_DESCRIPTION, 0);

/// The columns of a kind without columns of its own (Kubernetes' default table shows `Name`
/// and `Created At`).
pub const DEFAULT_COLUMNS: &[Column] = &[NAME, AGE];

/// The row under [`DEFAULT_COLUMNS`].
pub fn default_row(obj: &Value, now: Timestamp) -> Vec<Value> {
    vec![name_cell(obj), age_cell(obj, now)]
}

/// The object's name as a cell.
pub(crate) fn name_cell(obj: &Value) -> Value {
    Value::from(text(obj, &["metadata", "name"]))
}

/// The object's age as a cell.
pub(crate) fn age_cell(obj: &Value, now: Timestamp) -> Value {
    Value::from(since(text(obj, &["metadata", "creationTimestamp"]), now))
}

/// A duration as apimachinery's `duration.HumanDuration` writes it: seconds below 2
/// minutes, minutes and seconds below 10 minutes, then ever coarser (`3h`, `4d5h`, `2y30d`).
pub fn human_age(d: std::time::Duration) -> String {
    human_seconds(i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// `HumanDuration` on a whole number of seconds, which may be negative (a clock skew):
/// down to -1s reads `0s`, below that `<invalid>`.
fn human_seconds(seconds: i64) -> String {
    if seconds < -1 {
        return "<invalid>".to_string();
    }
    if seconds < 0 {
        return "0s".to_string();
    }
    if seconds < 2 * 60 {
        return format!("{seconds}s");
    }
    let minutes = seconds / 60;
    if minutes < 10 {
        let s = seconds % 60;
        return if s == 0 { format!("{minutes}m") } else { format!("{minutes}m{s}s") };
    }
    if minutes < 3 * 60 {
        return format!("{minutes}m");
    }
    let hours = seconds / 3600;
    if hours < 8 {
        let m = minutes % 60;
        return if m == 0 { format!("{hours}h") } else { format!("{hours}h{m}m") };
    }
    if hours < 48 {
        return format!("{hours}h");
    }
    if hours < 24 * 8 {
        let h = hours % 24;
        return if h == 0 { format!("{}d", hours / 24) } else { format!("{}d{h}h", hours / 24) };
    }
    if hours < 24 * 365 * 2 {
        return format!("{}d", hours / 24);
    }
    if hours < 24 * 365 * 8 {
        let days = (hours / 24) % 365;
        let years = hours / 24 / 365;
        return if days == 0 { format!("{years}y") } else { format!("{years}y{days}d") };
    }
    format!("{}y", hours / 24 / 365)
}

// ---------------------------------------------------------------------------------------------
// JSON access that never fails.
// ---------------------------------------------------------------------------------------------

pub(crate) fn at<'a>(value: &'a Value, path: &[&str]) -> Option<&'a Value> {
    path.iter().try_fold(value, |v, key| v.get(*key))
}

pub(crate) fn text<'a>(value: &'a Value, path: &[&str]) -> &'a str {
    at(value, path).and_then(Value::as_str).unwrap_or_default()
}

pub(crate) fn int(value: &Value, path: &[&str]) -> i64 {
    at(value, path).and_then(Value::as_i64).unwrap_or(0)
}

pub(crate) fn flag(value: &Value, path: &[&str]) -> bool {
    at(value, path).and_then(Value::as_bool).unwrap_or(false)
}

pub(crate) fn list<'a>(value: &'a Value, path: &[&str]) -> &'a [Value] {
    at(value, path).and_then(Value::as_array).map_or(&[], Vec::as_slice)
}

pub(crate) fn or_none(s: &str) -> String {
    if s.is_empty() { "<none>".to_string() } else { s.to_string() }
}

pub(crate) fn timestamp(value: &Value, path: &[&str]) -> Option<Timestamp> {
    text(value, path).parse().ok()
}

/// Kubernetes' `translateTimestampSince`: `<unknown>` for a missing (or unreadable) time.
pub(crate) fn since(rfc3339: &str, now: Timestamp) -> String {
    match rfc3339.parse::<Timestamp>() {
        Ok(t) => since_timestamp(t, now),
        Err(_) => "<unknown>".to_string(),
    }
}

pub(crate) fn since_timestamp(t: Timestamp, now: Timestamp) -> String {
    human_seconds(now.duration_since(t).as_secs())
}

pub(crate) fn has_condition(conditions: &[Value], condition_type: &str) -> bool {
    conditions.iter().any(|c| text(c, &["type"]) == condition_type && text(c, &["status"]) == "True")
}

/// The template's container names and images, comma-separated (`layoutContainerCells`).
pub(crate) fn container_cells(obj: &Value) -> (String, String) {
    let containers = list(obj, &["spec", "template", "spec", "containers"]);
    let names: Vec<&str> = containers.iter().map(|c| text(c, &["name"])).collect();
    let images: Vec<&str> = containers.iter().map(|c| text(c, &["image"])).collect();
    (names.join(","), images.join(","))
}

/// A label selector as `metav1.FormatLabelSelector` writes it: requirements sorted by key,
/// `<none>` when empty, `<error>` for an unknown operator.
pub(crate) fn format_selector(selector: Option<&Value>) -> String {
    let Some(selector) = selector else { return "<none>".to_string() };
    let mut requirements: Vec<(String, String)> = Vec::new();
    if let Some(labels) = at(selector, &["matchLabels"]).and_then(Value::as_object) {
        for (key, value) in labels {
            requirements.push((key.clone(), format!("{key}={}", value.as_str().unwrap_or_default())));
        }
    }
    for requirement in list(selector, &["matchExpressions"]) {
        let key = text(requirement, &["key"]);
        let values: BTreeSet<&str> = list(requirement, &["values"]).iter().filter_map(Value::as_str).collect();
        let values = values.into_iter().collect::<Vec<_>>().join(",");
        let formatted = match text(requirement, &["operator"]) {
            "In" => format!("{key} in ({values})"),
            "NotIn" => format!("{key} notin ({values})"),
            "Exists" => key.to_string(),
            "DoesNotExist" => format!("!{key}"),
            _ => return "<error>".to_string(),
        };
        requirements.push((key.to_string(), formatted));
    }
    requirements.sort_by(|a, b| a.0.cmp(&b.0));
    let joined = requirements.into_iter().map(|(_, r)| r).collect::<Vec<_>>().join(",");
    or_none(&joined)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::resources;
    use serde_json::json;

    /// The row of `obj` as the registry entry of `plural` prints it.
    fn row(plural: &str, obj: &Value, now: Timestamp) -> Vec<Value> {
        resources().iter().find(|r| r.plural == plural).map_or_else(|| default_row(obj, now), |r| (r.row)(obj, now))
    }

    /// The columns of `plural`, [`DEFAULT_COLUMNS`] for a kind not served.
    fn columns(plural: &str) -> &'static [Column] {
        resources().iter().find(|r| r.plural == plural).map_or(DEFAULT_COLUMNS, |r| r.columns)
    }

    fn now() -> Timestamp {
        "2025-01-01T12:00:00Z".parse().expect("valid timestamp")
    }

    fn strings(cells: &[Value]) -> Vec<String> {
        cells.iter().map(|c| c.as_str().map_or_else(|| c.to_string(), str::to_string)).collect()
    }

    #[test]
    fn human_age_matches_apimachinery_human_duration() {
        let cases = [
            (0, "0s"),
            (119, "119s"),
            (120, "2m"),
            (312, "5m12s"),
            (600, "10m"),
            (179 * 60, "179m"),
            (3 * 3600, "3h"),
            (3 * 3600 + 30 * 60, "3h30m"),
            (8 * 3600, "8h"),
            (47 * 3600, "47h"),
            (48 * 3600, "2d"),
            (4 * 86400 + 5 * 3600, "4d5h"),
            (8 * 86400, "8d"),
            (729 * 86400, "729d"),
            (2 * 365 * 86400, "2y"),
            (2 * 365 * 86400 + 30 * 86400, "2y30d"),
            (9 * 365 * 86400, "9y"),
        ];
        for (seconds, expected) in cases {
            assert_eq!(human_age(std::time::Duration::from_secs(seconds)), expected, "{seconds}s");
        }
        assert_eq!(human_seconds(-1), "0s");
        assert_eq!(human_seconds(-2), "<invalid>");
    }

    #[test]
    fn every_row_has_one_cell_per_column_even_for_empty_objects() {
        let plurals = resources().iter().map(|r| r.plural).chain(["widgets"]);
        for plural in plurals {
            for obj in [json!({}), json!(null), json!({"metadata": {"name": 5}, "spec": []})] {
                assert_eq!(row(plural, &obj, now()).len(), columns(plural).len(), "{plural}");
            }
            let names: Vec<_> = columns(plural).iter().filter(|c| c.format == "name").map(|c| c.name).collect();
            assert_eq!(names, vec!["Name"], "{plural}");
        }
    }

    #[test]
    fn missing_fields_print_like_kubectl() {
        let cells = strings(&row("pods", &json!({"metadata": {"name": "p"}}), now()));
        assert_eq!(cells, vec!["p", "0/0", "", "0", "<unknown>", "<none>", "<none>", "<none>", "<none>"]);
        let cells = strings(&row("nodes", &json!({"metadata": {"name": "n"}}), now()));
        assert_eq!(
            cells,
            vec!["n", "Unknown", "<none>", "<unknown>", "", "<none>", "<none>", "<unknown>", "<unknown>", "<unknown>"]
        );
    }

    #[test]
    fn running_pod_shows_ready_count_restarts_and_wide_columns() {
        let pod = json!({
            "metadata": {"name": "web", "creationTimestamp": "2025-01-01T11:55:00Z"},
            "spec": {"nodeName": "n1", "containers": [{"name": "a"}, {"name": "b"}]},
            "status": {"phase": "Running", "podIPs": [{"ip": "10.0.0.7"}],
                       "containerStatuses": [
                           {"name": "a", "ready": true, "restartCount": 2, "state": {"running": {}},
                            "lastState": {"terminated": {"exitCode": 1, "finishedAt": "2025-01-01T11:59:00Z"}}},
                           {"name": "b", "ready": false, "restartCount": 0, "state": {"running": {}}}]}
        });
        let cells = strings(&row("pods", &pod, now()));
        assert_eq!(cells, vec!["web", "1/2", "Running", "2 (60s ago)", "5m", "10.0.0.7", "n1", "<none>", "<none>"]);
    }

    #[test]
    fn pod_status_shows_the_waiting_reason_init_progress_and_terminating() {
        let crashing = json!({
            "metadata": {"name": "p"}, "spec": {"containers": [{"name": "a"}]},
            "status": {"phase": "Running", "containerStatuses": [
                {"name": "a", "restartCount": 4, "state": {"waiting": {"reason": "CrashLoopBackOff"}}}]}
        });
        assert_eq!(row("pods", &crashing, now())[2], "CrashLoopBackOff");
        assert_eq!(row("pods", &crashing, now())[3], "4");

        let initializing = json!({
            "metadata": {"name": "p"},
            "spec": {"initContainers": [{"name": "i1"}, {"name": "i2"}], "containers": [{"name": "a"}]},
            "status": {"phase": "Pending", "initContainerStatuses": [
                {"name": "i1", "state": {"terminated": {"exitCode": 0}}},
                {"name": "i2", "state": {"running": {}}}]}
        });
        assert_eq!(row("pods", &initializing, now())[2], "Init:1/2");

        let deleting = json!({"metadata": {"name": "p", "deletionTimestamp": "2025-01-01T11:00:00Z"},
                              "status": {"phase": "Running"}});
        assert_eq!(row("pods", &deleting, now())[2], "Terminating");
        let done = json!({"metadata": {"name": "p", "deletionTimestamp": "2025-01-01T11:00:00Z"},
                          "status": {"phase": "Succeeded"}});
        assert_eq!(row("pods", &done, now())[2], "Succeeded");
    }

    #[test]
    fn node_status_and_roles_follow_kubectl() {
        let node = json!({
            "metadata": {"name": "n1", "creationTimestamp": "2024-12-30T12:00:00Z",
                         "labels": {"node-role.kubernetes.io/control-plane": "", "node-role.kubernetes.io/worker": "",
                                    "kubernetes.io/hostname": "n1"}},
            "spec": {"unschedulable": true},
            "status": {"conditions": [{"type": "MemoryPressure", "status": "False"}, {"type": "Ready", "status": "Unknown"}],
                       "addresses": [{"type": "InternalIP", "address": "192.168.0.2"}],
                       "nodeInfo": {"kubeletVersion": "v1.37.0", "osImage": "Debian"}}
        });
        let cells = strings(&row("nodes", &node, now()));
        assert_eq!(
            cells,
            vec![
                "n1",
                "NotReady,SchedulingDisabled",
                "control-plane,worker",
                "2d",
                "v1.37.0",
                "192.168.0.2",
                "<none>",
                "Debian",
                "<unknown>",
                "<unknown>"
            ]
        );
    }

    #[test]
    fn workloads_show_counts_containers_and_selectors() {
        let deployment = json!({
            "metadata": {"name": "web", "creationTimestamp": "2025-01-01T11:59:30Z"},
            "spec": {"replicas": 3,
                     "selector": {"matchLabels": {"app": "web"},
                                  "matchExpressions": [{"key": "tier", "operator": "In", "values": ["b", "a"]},
                                                       {"key": "canary", "operator": "DoesNotExist"}]},
                     "template": {"spec": {"containers": [{"name": "c", "image": "nginx:1"}, {"name": "s", "image": "envoy"}]}}},
            "status": {"readyReplicas": 2, "updatedReplicas": 3, "availableReplicas": 2}
        });
        let cells = row("deployments", &deployment, now());
        assert_eq!(
            cells,
            vec![
                json!("web"),
                json!("2/3"),
                json!(3),
                json!(2),
                json!("30s"),
                json!("c,s"),
                json!("nginx:1,envoy"),
                json!("app=web,!canary,tier in (a,b)")
            ]
        );
        let replica_set = json!({"metadata": {"name": "web-1"}, "spec": {"replicas": 2}, "status": {"replicas": 2}});
        assert_eq!(
            row("replicasets", &replica_set, now()),
            vec![
                json!("web-1"),
                json!(2),
                json!(2),
                json!(0),
                json!("<unknown>"),
                json!(""),
                json!(""),
                json!("<none>")
            ]
        );
    }

    #[test]
    fn services_and_endpoints_print_ports_and_addresses() {
        let service = json!({
            "metadata": {"name": "web"},
            "spec": {"type": "NodePort", "clusterIP": "10.96.0.10", "clusterIPs": ["10.96.0.10"],
                     "ports": [{"port": 80, "protocol": "TCP", "nodePort": 30080}, {"port": 53, "protocol": "UDP"}],
                     "selector": {"app": "web", "tier": "fe"}}
        });
        let cells = strings(&row("services", &service, now()));
        assert_eq!(
            cells,
            vec!["web", "NodePort", "10.96.0.10", "<none>", "80:30080/TCP,53/UDP", "<unknown>", "app=web,tier=fe"]
        );
        let lb = json!({"metadata": {"name": "lb"}, "spec": {"type": "LoadBalancer", "ports": []}});
        assert_eq!(strings(&row("services", &lb, now()))[3], "<pending>");

        let endpoints = json!({"metadata": {"name": "web"}, "subsets": [{
            "addresses": [{"ip": "10.0.0.1"}, {"ip": "10.0.0.2"}, {"ip": "fd00::3"}],
            "ports": [{"port": 80}, {"port": 443}]}]});
        assert_eq!(row("endpoints", &endpoints, now())[1], "10.0.0.1:80,10.0.0.2:80,[fd00::3]:80 + 3 more...");
        assert_eq!(row("endpoints", &json!({"metadata": {"name": "x"}}), now())[1], "<none>");
    }

    #[test]
    fn events_name_their_object_and_source() {
        let event = json!({
            "metadata": {"name": "web.1"},
            "involvedObject": {"kind": "Pod", "name": "web", "fieldPath": "spec.containers{c}"},
            "reason": "Pulled", "type": "Normal", "message": " pulled image \n",
            "source": {"component": "kubelet", "host": "n1"},
            "firstTimestamp": "2025-01-01T11:00:00Z", "lastTimestamp": "2025-01-01T11:58:00Z", "count": 3
        });
        assert_eq!(
            row("events", &event, now()),
            vec![
                json!("2m"),
                json!("Normal"),
                json!("Pulled"),
                json!("pod/web"),
                json!("spec.containers{c}"),
                json!("kubelet, n1"),
                json!("pulled image"),
                json!("60m"),
                json!(3),
                json!("web.1")
            ]
        );
    }

    #[test]
    fn namespaces_configmaps_and_leases_have_their_own_columns() {
        let ns = json!({"metadata": {"name": "default"}, "status": {"phase": "Active"}});
        assert_eq!(strings(&row("namespaces", &ns, now()))[1], "Active");
        let cm = json!({"metadata": {"name": "c"}, "data": {"a": "1", "b": "2"}, "binaryData": {"c": "AA=="}});
        assert_eq!(row("configmaps", &cm, now())[1], json!(3));
        let lease = json!({"metadata": {"name": "l"}, "spec": {"holderIdentity": "node-1"}});
        assert_eq!(row("leases", &lease, now())[1], "node-1");
        assert_eq!(columns("widgets").iter().map(|c| c.name).collect::<Vec<_>>(), vec!["Name", "Age"]);
    }
}
