//! `rkubectl create <generator>`, `rkubectl expose` and `rkubectl set env` against a real
//! apiserver: each command's line (`deployment.apps/web created`, `service/web exposed`,
//! `deployment.apps/web env updated`), the object it stored, and, for every generator, the
//! object compared field by field with the one the real kubectl builds from the same flags
//! (both with `--dry-run=client -o json`).

use rkube_tests::Cluster;
use rkube_tests::kubectl::{Rkubectl, assert_failed, real_kubectl};
use rkube_tests::{Api, StatusCode};
use serde_json::{Value, json};

async fn start() -> Cluster {
    Cluster::start().await.expect("etcd and rkube-apiserver start")
}

/// `value` without nulls and empty maps and lists (kubectl prints `creationTimestamp: null`,
/// `resources: {}`, `status: {}` where rkubectl leaves the field out).
fn pruned(value: &Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.iter().map(|(key, value)| (key.clone(), pruned(value))).filter(|(_, value)| !is_empty(value)).collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(pruned).collect()),
        other => other.clone(),
    }
}

fn is_empty(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::Object(map) => map.is_empty(),
        Value::Array(items) => items.is_empty(),
        _ => false,
    }
}

/// Asserts that rkubectl and the real kubectl build the same object from `args` (both with
/// `--dry-run=client -o json`), and returns it.
async fn same_as_kubectl(k: &Rkubectl<'_>, args: &[&str]) -> Value {
    // The flags go before a `--` (what follows it is the container's command).
    let at = args.iter().position(|arg| *arg == "--").unwrap_or(args.len());
    let mut full: Vec<&str> = args[..at].to_vec();
    full.extend(["--dry-run=client", "-o", "json"]);
    full.extend(&args[at..]);
    let ours = k.ok(&full).await;
    let ours: Value = serde_json::from_str(&ours).unwrap_or_else(|e| panic!("rkubectl {full:?}: {e}\n{ours}"));
    let theirs = real_kubectl(k.kubeconfig(), k.dir(), &full).await;
    let theirs: Value = serde_json::from_str(&theirs).unwrap_or_else(|e| panic!("kubectl {full:?}: {e}\n{theirs}"));
    // kubectl's Go types print a PodDisruptionBudget's zero counts in `status`; nothing sends
    // a status on create, so it is left out of the comparison.
    let compared = |object: &Value| {
        let mut object = pruned(object);
        if let Some(map) = object.as_object_mut() {
            map.remove("status");
        }
        object
    };
    assert_eq!(compared(&ours), compared(&theirs), "rkubectl and kubectl build different objects for {args:?}");
    ours
}

#[tokio::test]
async fn generators_build_what_kubectl_builds_and_create_it() {
    let cluster = start().await;
    let k = Rkubectl::new(&cluster);
    let api = Api::new(cluster.url());

    // namespace
    same_as_kubectl(&k, &["create", "namespace", "team"]).await;
    assert_eq!(k.ok(&["create", "namespace", "team"]).await, "namespace/team created\n");
    assert_eq!(api.get("/api/v1/namespaces/team").await.0, StatusCode::OK);
    let ran = k.fails(&["create", "ns", "team"]).await;
    assert!(ran.stderr.starts_with("Error from server (AlreadyExists): "), "{}", ran.describe());

    // deployment, with the command form of the lab's first scene
    let web = ["create", "deployment", "web", "--image=busybox:1.37", "--replicas=3", "--port=8080"];
    let mut with_command = web.to_vec();
    with_command.extend(["--", "httpd", "-f", "-p", "8080"]);
    same_as_kubectl(&k, &with_command).await;
    same_as_kubectl(&k, &["create", "deployment", "two", "--image=registry.k8s.io/pause:3.9", "--image=nginx"]).await;
    assert_eq!(k.ok(&with_command).await, "deployment.apps/web created\n");
    let deployment = api.get_ok("/apis/apps/v1/namespaces/default/deployments/web").await;
    assert_eq!(deployment["spec"]["replicas"], 3);
    assert_eq!(deployment["spec"]["selector"], json!({"matchLabels": {"app": "web"}}));
    let container = &deployment["spec"]["template"]["spec"]["containers"][0];
    assert_eq!((container["name"].as_str(), container["image"].as_str()), (Some("busybox"), Some("busybox:1.37")));
    assert_eq!(container["command"], json!(["httpd", "-f", "-p", "8080"]));
    assert_eq!(container["ports"][0]["containerPort"], 8080);
    assert_eq!(
        k.ok(&["create", "deploy", "inns", "--image=nginx", "-n", "team"]).await,
        "deployment.apps/inns created\n"
    );
    assert_eq!(api.get("/apis/apps/v1/namespaces/team/deployments/inns").await.0, StatusCode::OK);

    // configmap and secret, from literals, files, a directory and an env file
    let file = k.file("conf/settings.ini", "mode=fast\n");
    k.file("conf/other.txt", "other\n");
    let env = k.file("app.env", "# the app's settings\nLEVEL=3\n\nNAME=web app\n");
    let dir = k.dir().join("conf").display().to_string();
    let (from_file, renamed, from_env) =
        (format!("--from-file={file}"), format!("--from-file=ini={file}"), format!("--from-env-file={env}"));
    let cm = ["create", "configmap", "cfg", "--from-literal=a=1", "--from-literal=b=x=y", &from_file, &renamed];
    same_as_kubectl(&k, &cm).await;
    same_as_kubectl(&k, &["create", "cm", "dir", &format!("--from-file={dir}")]).await;
    same_as_kubectl(&k, &["create", "cm", "env", &from_env]).await;
    assert_eq!(k.ok(&cm).await, "configmap/cfg created\n");
    assert_eq!(
        api.get_ok("/api/v1/namespaces/default/configmaps/cfg").await["data"],
        json!({"a": "1", "b": "x=y", "settings.ini": "mode=fast\n", "ini": "mode=fast\n"})
    );
    let secret = ["create", "secret", "generic", "pw", "--from-literal=password=s3cr3t", &from_file];
    same_as_kubectl(&k, &secret).await;
    assert_eq!(k.ok(&secret).await, "secret/pw created\n");
    let stored = api.get_ok("/api/v1/namespaces/default/secrets/pw").await;
    assert_eq!(stored["data"]["password"], "czNjcjN0", "{stored}");
    assert_eq!(stored["type"], "Opaque");
    let ran = k.fails(&["create", "cm", "bad", "--from-literal=novalue"]).await;
    assert!(ran.stderr.contains("invalid literal source novalue, expected key=value"), "{}", ran.describe());
    let ran = k.fails(&["create", "cm", "twice", "--from-literal=a=1", "--from-literal=a=2"]).await;
    assert!(ran.stderr.contains("cannot add key a"), "{}", ran.describe());

    // services
    for kind in ["clusterip", "nodeport"] {
        same_as_kubectl(&k, &["create", "service", kind, "api", "--tcp=80:8080", "--tcp=443"]).await;
    }
    same_as_kubectl(&k, &["create", "service", "clusterip", "headless", "--clusterip=None"]).await;
    assert_eq!(k.ok(&["create", "service", "nodeport", "api", "--tcp=80:8080"]).await, "service/api created\n");
    let service = api.get_ok("/api/v1/namespaces/default/services/api").await;
    assert_eq!(service["spec"]["type"], "NodePort");
    assert_eq!(service["spec"]["selector"], json!({"app": "api"}));
    let port = &service["spec"]["ports"][0];
    assert_eq!(
        (port["name"].as_str(), port["port"].as_i64(), port["targetPort"].as_i64()),
        (Some("80-8080"), Some(80), Some(8080))
    );
    assert!(port["nodePort"].as_i64().is_some(), "the server chose a node port: {service}");

    // job, priority class, quota, pod disruption budget
    let job = ["create", "job", "once", "--image=busybox:1.37", "--", "echo", "hi"];
    same_as_kubectl(&k, &job).await;
    assert_eq!(k.ok(&job).await, "job.batch/once created\n");
    let stored = api.get_ok("/apis/batch/v1/namespaces/default/jobs/once").await;
    assert_eq!(stored["spec"]["template"]["spec"]["restartPolicy"], "Never");
    assert_eq!(stored["spec"]["template"]["spec"]["containers"][0]["command"], json!(["echo", "hi"]));
    let class = ["create", "priorityclass", "high", "--value=1000", "--description=important work"];
    same_as_kubectl(&k, &class).await;
    assert_eq!(k.ok(&class).await, "priorityclass.scheduling.k8s.io/high created\n");
    assert_eq!(api.get_ok("/apis/scheduling.k8s.io/v1/priorityclasses/high").await["value"], 1000);
    let quota = ["create", "quota", "small", "--hard=cpu=1,memory=1Gi,pods=5", "--scopes=NotBestEffort"];
    same_as_kubectl(&k, &quota).await;
    assert_eq!(k.ok(&quota).await, "resourcequota/small created\n");
    assert_eq!(
        api.get_ok("/api/v1/namespaces/default/resourcequotas/small").await["spec"]["hard"],
        json!({"cpu": "1", "memory": "1Gi", "pods": "5"})
    );
    let pdb = ["create", "pdb", "web", "--selector=app=web,tier notin (db)", "--min-available=2"];
    same_as_kubectl(&k, &pdb).await;
    same_as_kubectl(&k, &["create", "poddisruptionbudget", "half", "--selector=app=web", "--max-unavailable=50%"])
        .await;
    assert_eq!(k.ok(&pdb).await, "poddisruptionbudget.policy/web created\n");
    let stored = api.get_ok("/apis/policy/v1/namespaces/default/poddisruptionbudgets/web").await;
    assert_eq!(stored["spec"]["minAvailable"], 2);
    assert_eq!(stored["spec"]["selector"]["matchLabels"], json!({"app": "web"}));
    let ran = k.fails(&["create", "pdb", "p", "--selector=app=x"]).await;
    assert_eq!(ran.stderr.trim(), "error: one of min-available or max-unavailable must be specified");

    // -o name, and a server dry run that keeps nothing
    assert_eq!(k.ok(&["create", "ns", "named", "-o", "name"]).await, "namespace/named\n");
    assert_eq!(
        k.ok(&["create", "ns", "ghost", "--dry-run=server"]).await,
        "namespace/ghost created (server dry run)\n"
    );
    assert_eq!(api.get("/api/v1/namespaces/ghost").await.0, StatusCode::NOT_FOUND);
    assert_eq!(k.ok(&["create", "ns", "ghost", "--dry-run=client"]).await, "namespace/ghost created (dry run)\n");

    // A generator's missing flag is clap's usage error (exit 2), -f still works.
    let ran = k.run(&["create", "deployment", "noimage"]).await;
    assert_eq!(ran.code, Some(2), "{}", ran.describe());
    let manifest = k.file("cm.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: from-file}\n");
    assert_eq!(k.ok(&["create", "-f", &manifest]).await, "configmap/from-file created\n");
}

#[tokio::test]
async fn expose_and_set_env_change_a_deployment_as_kubectl_does() {
    let cluster = start().await;
    let k = Rkubectl::new(&cluster);
    let api = Api::new(cluster.url());
    k.ok(&["create", "deployment", "web", "--image=busybox:1.37", "--port=8080", "--", "httpd", "-f", "-p", "8080"])
        .await;

    // expose: the deployment's selector and labels; --port, or the containers' ports.
    let exposed = same_as_kubectl(&k, &["expose", "deployment", "web", "--port=80", "--target-port=8080"]).await;
    assert_eq!(exposed["spec"]["selector"], json!({"app": "web"}));
    same_as_kubectl(&k, &["expose", "deploy/web", "--name=web-np", "--type=NodePort"]).await;
    assert_eq!(
        k.ok(&["expose", "deployment", "web", "--port=80", "--target-port=8080"]).await,
        "service/web exposed\n"
    );
    let service = api.get_ok("/api/v1/namespaces/default/services/web").await;
    assert_eq!(service["metadata"]["labels"], json!({"app": "web"}));
    assert_eq!(service["spec"]["ports"][0]["port"], 80);
    assert_eq!(service["spec"]["ports"][0]["targetPort"], 8080);
    assert_eq!(k.ok(&["expose", "deploy/web", "--name=web-np", "--type=NodePort"]).await, "service/web-np exposed\n");
    let service = api.get_ok("/api/v1/namespaces/default/services/web-np").await;
    assert_eq!(
        (service["spec"]["type"].as_str(), service["spec"]["ports"][0]["port"].as_i64()),
        (Some("NodePort"), Some(8080))
    );
    let ran = k.fails(&["expose", "cm", "nothing", "--port=80"]).await;
    assert!(ran.stderr.starts_with("Error from server (NotFound): "), "{}", ran.describe());

    // set env: set, change, remove; only what changes is sent; --list shows the result.
    let path = "/apis/apps/v1/namespaces/default/deployments/web";
    let env = |deployment: &Value| deployment["spec"]["template"]["spec"]["containers"][0]["env"].clone();
    assert_eq!(
        k.ok(&["set", "env", "deployment/web", "MODE=fast", "LEVEL=3"]).await,
        "deployment.apps/web env updated\n"
    );
    assert_eq!(
        env(&api.get_ok(path).await),
        json!([{"name": "MODE", "value": "fast"}, {"name": "LEVEL", "value": "3"}])
    );
    let before = api.get_ok(path).await["metadata"]["resourceVersion"].clone();
    assert_eq!(k.ok(&["set", "env", "deploy", "web", "MODE=fast"]).await, "", "nothing changes, nothing printed");
    assert_eq!(api.get_ok(path).await["metadata"]["resourceVersion"], before, "and nothing sent");
    assert_eq!(
        k.ok(&["set", "env", "deploy/web", "-c", "busy*", "MODE-", "-e", "LEVEL=4"]).await,
        "deployment.apps/web env updated\n"
    );
    assert_eq!(env(&api.get_ok(path).await), json!([{"name": "LEVEL", "value": "4"}]));
    assert_eq!(k.ok(&["set", "env", "deploy/web", "--list"]).await, "# deployments web, container busybox\nLEVEL=4\n");
    let ran = k.fails(&["set", "env", "deploy/web", "LEVEL=5", "--overwrite=false"]).await;
    assert_eq!(ran.stderr.trim(), "error: 'LEVEL' already has a value (4), and --overwrite is false");
    let ran = k.fails(&["set", "env", "deploy/web", "-c", "sidecar", "X=1"]).await;
    assert!(ran.stderr.contains("unable to find container named"), "{}", ran.describe());
    let ran = k.run(&["set", "env", "deploy/web"]).await;
    assert_failed(&ran);

    // The real kubectl reads what rkubectl set.
    let listed = real_kubectl(k.kubeconfig(), k.dir(), &["set", "env", "deploy/web", "--list"]).await;
    assert!(listed.contains("LEVEL=4"), "{listed}");
}
