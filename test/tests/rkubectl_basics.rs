//! rkubectl's global flags, errors, `version`, `api-resources`, `config` and `completion`,
//! running the real binary against a real apiserver (etcd underneath).

use rkube_tests::Cluster;
use rkube_tests::kubectl::{Rkubectl, row_named, rows};

async fn start() -> Cluster {
    Cluster::start().await.expect("etcd and rkube-apiserver start")
}

#[tokio::test]
async fn version_and_api_resources_come_from_the_server() {
    let cluster = start().await;
    let k = Rkubectl::new(&cluster);
    let out = k.ok(&["version"]).await;
    assert!(out.contains("Client Version: v"), "{out}");
    assert!(out.contains("Server Version: v1."), "{out}");
    let client_only = k.run_with(&["version", "--client"], &[("KUBECONFIG", "/nonexistent")], None).await;
    assert_eq!(client_only.code, Some(0), "{}", client_only.describe());

    let table = rows(&k.ok(&["api-resources"]).await);
    assert_eq!(table[0], vec!["NAME", "SHORTNAMES", "APIVERSION", "NAMESPACED", "KIND"]);
    assert_eq!(row_named(&table, "pods").unwrap(), vec!["pods", "po", "v1", "true", "Pod"]);
    assert_eq!(
        row_named(&table, "deployments").unwrap(),
        vec!["deployments", "deploy", "apps/v1", "true", "Deployment"]
    );
    assert_eq!(row_named(&table, "nodes").unwrap(), vec!["nodes", "no", "v1", "false", "Node"]);
    let cluster_scoped = k.ok(&["api-resources", "--namespaced=false", "-o", "name"]).await;
    assert_eq!(
        cluster_scoped.lines().collect::<Vec<_>>(),
        vec![
            "namespaces",
            "nodes",
            "persistentvolumes",
            "clusterroles.rbac.authorization.k8s.io",
            "clusterrolebindings.rbac.authorization.k8s.io",
            "priorityclasses.scheduling.k8s.io",
            "storageclasses.storage.k8s.io",
            "customresourcedefinitions.apiextensions.k8s.io",
            "selfsubjectaccessreviews.authorization.k8s.io",
            "subjectaccessreviews.authorization.k8s.io",
            "selfsubjectrulesreviews.authorization.k8s.io",
            "selfsubjectreviews.authentication.k8s.io",
            "tokenreviews.authentication.k8s.io",
            "nodes.metrics.k8s.io",
        ]
    );
}

#[tokio::test]
async fn errors_are_one_line_with_the_servers_message_and_exit_1() {
    let cluster = start().await;
    let k = Rkubectl::new(&cluster);
    let ran = k.fails(&["get", "pod", "missing"]).await;
    assert_eq!(ran.stderr.trim(), r#"Error from server (NotFound): pods "missing" not found"#);
    let ran = k.fails(&["get", "widgets"]).await;
    assert_eq!(ran.stderr.trim(), r#"error: the server doesn't have a resource type "widgets""#);
    let ran = k.fails(&["--kubeconfig", "/nonexistent/config", "get", "pods"]).await;
    assert!(ran.stderr.starts_with("error: ") && ran.stderr.contains("/nonexistent/config"), "{}", ran.describe());
    let ran = k.fails(&["--server", "http://127.0.0.1:1", "get", "pods"]).await;
    assert!(ran.stderr.contains("could not be reached"), "{}", ran.describe());

    // Unknown flag: clap's error, exit code 2, no panic.
    let ran = k.run(&["get", "pods", "--no-such-flag"]).await;
    assert_eq!(ran.code, Some(2), "{}", ran.describe());
    assert!(ran.stderr.starts_with("error: unexpected argument '--no-such-flag'"), "{}", ran.describe());
    let ran = k.run(&["frobnicate"]).await;
    assert_eq!(ran.code, Some(2), "{}", ran.describe());
}

#[tokio::test]
async fn global_flags_pick_server_context_and_namespace() {
    let cluster = start().await;
    let k = Rkubectl::new(&cluster);
    k.ok(&[
        "create",
        "-f",
        &k.file("cm.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: sys, namespace: kube-system}\n"),
    ])
    .await;
    k.ok(&["-n", "kube-public", "run", "p", "--image", "busybox"]).await;

    // -n and --namespace pick the namespace; -A lists across namespaces with a NAMESPACE column.
    assert!(k.ok(&["get", "cm", "-n", "kube-system"]).await.contains("sys"));
    let ran = k.run(&["get", "cm"]).await;
    assert_eq!(ran.code, Some(0));
    assert_eq!(ran.stderr.trim(), "No resources found in default namespace.");
    let all = rows(&k.ok(&["get", "configmaps", "-A"]).await);
    assert_eq!(all[0][0], "NAMESPACE");
    assert_eq!(row_named(&all, "kube-system").unwrap()[1], "sys");
    assert!(k.ok(&["get", "pods", "--namespace", "kube-public", "-o", "name"]).await.contains("pod/p"));

    // --server works with no kubeconfig at all; --context picks a context's namespace.
    let ran = k
        .run_with(
            &["--server", cluster.url(), "get", "ns", "kube-system", "-o", "name"],
            &[("KUBECONFIG", "/nonexistent")],
            None,
        )
        .await;
    assert_eq!(ran.stdout.trim(), "namespace/kube-system", "{}", ran.describe());
    k.ok(&["config", "set-context", "sys", "--cluster", "rkube", "--user", "rkube", "-n", "kube-system"]).await;
    assert!(k.ok(&["--context", "sys", "get", "cm", "-o", "name"]).await.contains("configmap/sys"));
    let ran = k.fails(&["--context", "nope", "get", "pods"]).await;
    assert!(ran.stderr.contains("nope"), "{}", ran.describe());
}

#[tokio::test]
async fn config_subcommands_read_and_change_the_kubeconfig() {
    let cluster = start().await;
    let k = Rkubectl::new(&cluster);
    assert_eq!(k.ok(&["config", "current-context"]).await.trim(), "rkube");
    let contexts = rows(&k.ok(&["config", "get-contexts"]).await);
    assert_eq!(contexts[1], vec!["*", "rkube", "rkube", "rkube", "default"]);
    let view = k.ok(&["config", "view"]).await;
    assert!(view.contains(cluster.url()) && view.contains("current-context: rkube"), "{view}");

    assert_eq!(
        k.ok(&["config", "set-context", "other", "--cluster", "rkube", "-n", "kube-system"]).await.trim(),
        "Context \"other\" created."
    );
    assert_eq!(k.ok(&["config", "use-context", "other"]).await.trim(), "Switched to context \"other\".");
    assert_eq!(k.ok(&["config", "current-context"]).await.trim(), "other");
    let ran = k.run(&["get", "pods"]).await;
    assert_eq!(ran.stderr.trim(), "No resources found in kube-system namespace.", "{}", ran.describe());
    k.ok(&["config", "set-context", "--current", "--namespace", "kube-public"]).await;
    let ran = k.run(&["get", "pods"]).await;
    assert_eq!(ran.stderr.trim(), "No resources found in kube-public namespace.", "{}", ran.describe());
    let ran = k.fails(&["config", "use-context", "missing"]).await;
    assert_eq!(ran.stderr.trim(), "error: no context exists with the name: \"missing\"");
    let text = std::fs::read_to_string(k.kubeconfig()).unwrap();
    assert!(text.contains("current-context: other"), "{text}");
}

#[tokio::test]
async fn help_and_completion_scripts_work_without_a_cluster() {
    let cluster = start().await;
    let k = Rkubectl::new(&cluster);
    let help = k.ok(&["--help"]).await;
    for verb in ["get", "apply", "delete", "describe", "edit", "logs", "rollout", "completion"] {
        assert!(help.contains(verb), "--help lacks {verb}: {help}");
    }
    assert!(k.ok(&["get", "--help"]).await.contains("--selector"));
    for (shell, marker) in [("bash", "complete -F"), ("zsh", "#compdef rkubectl"), ("fish", "complete -c rkubectl")] {
        let script = k.ok(&["completion", shell]).await;
        assert!(script.contains(marker), "{shell}: {script}");
    }
    let ran = k.run(&["completion", "tcsh"]).await;
    assert_eq!(ran.code, Some(2), "{}", ran.describe());
}
