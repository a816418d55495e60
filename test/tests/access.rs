//! Authentication and RBAC against the real apiserver and etcd: who is refused with 401,
//! who with 403 in Kubernetes' words, and that a binding grants exactly what its role says.

use std::time::Duration;

use rkube_tests::{Api, Cluster, Method, Reply, StatusCode, eventually};
use serde_json::{Value, json};

const TOKENS: &str = "admin-token,admin,1,\"system:masters\"\nalice-token,alice,2\nbob-token,bob,3,\"devs\"\n";

/// A cluster with RBAC and the three token users above (plus anonymous requests).
async fn start(extra: &[&str]) -> (Cluster, Api, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temporary directory");
    let tokens = dir.path().join("tokens.csv");
    std::fs::write(&tokens, TOKENS).expect("token file");
    let tokens = tokens.display().to_string();
    let mut args = vec!["--authorization-mode=RBAC", "--token-auth-file", tokens.as_str()];
    args.extend_from_slice(extra);
    let cluster = Cluster::start_with_args(&args).await.expect("etcd and rkube-apiserver start");
    let api = Api::new(cluster.url());
    (cluster, api, dir)
}

async fn as_user(api: &Api, token: Option<&str>, method: Method, path: &str, body: Option<&Value>) -> Reply {
    let bearer = token.map(|t| format!("Bearer {t}"));
    let mut headers = vec![("Content-Type", "application/json")];
    if let Some(bearer) = bearer.as_deref() {
        headers.push(("Authorization", bearer));
    }
    api.send(method, path, &headers, body.map(|b| b.to_string().into_bytes())).await
}

fn assert_refused(reply: &Reply, code: StatusCode, reason: &str, message: &str) {
    assert_eq!(reply.status, code, "{:?}", reply.body);
    assert_eq!(reply.body["kind"], "Status", "{:?}", reply.body);
    assert_eq!(reply.body["reason"], reason, "{:?}", reply.body);
    assert_eq!(reply.body["message"], message, "{:?}", reply.body);
}

#[tokio::test]
async fn anonymous_and_unknown_users_are_refused_in_kubernetes_words() {
    let (_cluster, api, _dir) = start(&[]).await;
    // Anyone may ask whether the server is up and which version it runs.
    for public in ["/healthz", "/readyz", "/livez", "/version"] {
        assert_eq!(as_user(&api, None, Method::GET, public, None).await.status, StatusCode::OK, "{public}");
    }
    let reply = as_user(&api, None, Method::GET, "/api/v1/namespaces/default/pods", None).await;
    assert_refused(
        &reply,
        StatusCode::FORBIDDEN,
        "Forbidden",
        r#"pods is forbidden: User "system:anonymous" cannot list resource "pods" in API group "" in the namespace "default""#,
    );
    let reply = as_user(&api, None, Method::GET, "/api", None).await;
    assert_refused(
        &reply,
        StatusCode::FORBIDDEN,
        "Forbidden",
        r#"forbidden: User "system:anonymous" cannot get path "/api""#,
    );
    // A token nobody issued is a 401, not an anonymous request.
    let reply = as_user(&api, Some("guessed"), Method::GET, "/healthz", None).await;
    assert_refused(&reply, StatusCode::UNAUTHORIZED, "Unauthorized", "Unauthorized");
    // An authenticated user without a binding reads discovery, and nothing else.
    assert_eq!(as_user(&api, Some("alice-token"), Method::GET, "/apis", None).await.status, StatusCode::OK);
    let reply = as_user(&api, Some("alice-token"), Method::DELETE, "/api/v1/nodes/n1", None).await;
    assert_refused(
        &reply,
        StatusCode::FORBIDDEN,
        "Forbidden",
        r#"nodes "n1" is forbidden: User "alice" cannot delete resource "nodes" in API group "" at the cluster scope"#,
    );
    // system:masters may do anything.
    assert_eq!(as_user(&api, Some("admin-token"), Method::GET, "/api/v1/nodes", None).await.status, StatusCode::OK);
    assert_eq!(as_user(&api, Some("admin-token"), Method::GET, "/metrics", None).await.status, StatusCode::OK);
}

#[tokio::test]
async fn without_anonymous_requests_no_credentials_is_a_401() {
    let (_cluster, api, _dir) = start(&["--anonymous-auth=false"]).await;
    let reply = as_user(&api, None, Method::GET, "/api/v1/namespaces/default/pods", None).await;
    assert_refused(&reply, StatusCode::UNAUTHORIZED, "Unauthorized", "Unauthorized");
    let reply = as_user(&api, None, Method::GET, "/version", None).await;
    assert_refused(&reply, StatusCode::UNAUTHORIZED, "Unauthorized", "Unauthorized");
    assert_eq!(as_user(&api, Some("admin-token"), Method::GET, "/api/v1/pods", None).await.status, StatusCode::OK);
    // Probes still reach the health paths (the harness waited for /readyz).
    assert_eq!(as_user(&api, None, Method::GET, "/livez", None).await.status, StatusCode::OK);
}

#[tokio::test]
async fn a_binding_grants_exactly_what_its_role_says() {
    let (_cluster, api, _dir) = start(&[]).await;
    let admin = Some("admin-token");
    let role = json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
        "metadata": {"name": "pod-reader", "namespace": "default"},
        "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]}]
    });
    let path = "/apis/rbac.authorization.k8s.io/v1/namespaces/default/roles";
    assert_eq!(as_user(&api, admin, Method::POST, path, Some(&role)).await.status, StatusCode::CREATED);
    let binding = json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
        "metadata": {"name": "alice-reads-pods", "namespace": "default"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "pod-reader"},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "alice"}]
    });
    let path = "/apis/rbac.authorization.k8s.io/v1/namespaces/default/rolebindings";
    assert_eq!(as_user(&api, admin, Method::POST, path, Some(&binding)).await.status, StatusCode::CREATED);

    let alice = Some("alice-token");
    eventually(Duration::from_secs(10), "alice to list pods in default", || async {
        (as_user(&api, alice, Method::GET, "/api/v1/namespaces/default/pods", None).await.status == StatusCode::OK)
            .then_some(())
    })
    .await;
    // Only what the rule names: not another namespace, verb, resource or subresource.
    for (method, path) in [
        (Method::GET, "/api/v1/namespaces/kube-system/pods"),
        (Method::DELETE, "/api/v1/namespaces/default/pods/web"),
        (Method::GET, "/api/v1/namespaces/default/configmaps"),
        (Method::GET, "/api/v1/namespaces/default/pods/web/log"),
        (Method::GET, "/api/v1/pods"),
    ] {
        let reply = as_user(&api, alice, method.clone(), path, None).await;
        assert_eq!(reply.status, StatusCode::FORBIDDEN, "{method} {path}: {:?}", reply.body);
    }
    // A group bound cluster-wide to the bootstrap `view` role reads workloads everywhere,
    // but not Secrets.
    let view = json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
        "metadata": {"name": "devs-view"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "view"},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": "devs"}]
    });
    let path = "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings";
    assert_eq!(as_user(&api, admin, Method::POST, path, Some(&view)).await.status, StatusCode::CREATED);
    let bob = Some("bob-token");
    eventually(Duration::from_secs(10), "bob to list deployments everywhere", || async {
        (as_user(&api, bob, Method::GET, "/apis/apps/v1/deployments", None).await.status == StatusCode::OK)
            .then_some(())
    })
    .await;
    let reply = as_user(&api, bob, Method::GET, "/api/v1/namespaces/kube-system/secrets", None).await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN, "{:?}", reply.body);
    // Deleting the binding takes the grant back.
    let path = "/apis/rbac.authorization.k8s.io/v1/namespaces/default/rolebindings/alice-reads-pods";
    assert_eq!(as_user(&api, admin, Method::DELETE, path, None).await.status, StatusCode::OK);
    eventually(Duration::from_secs(10), "alice to lose the grant", || async {
        (as_user(&api, alice, Method::GET, "/api/v1/namespaces/default/pods", None).await.status
            == StatusCode::FORBIDDEN)
            .then_some(())
    })
    .await;
}

#[tokio::test]
async fn nobody_grants_what_they_do_not_hold() {
    let (_cluster, api, _dir) = start(&[]).await;
    let admin = Some("admin-token");
    let rbac = "/apis/rbac.authorization.k8s.io/v1";
    assert_eq!(
        as_user(&api, admin, Method::POST, "/api/v1/namespaces", Some(&json!({"metadata": {"name": "team"}})))
            .await
            .status,
        StatusCode::CREATED
    );
    // alice administers the namespace "team" through the bootstrap `admin` role.
    let binding = |name: &str, role_kind: &str, role: &str| {
        json!({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
            "metadata": {"name": name, "namespace": "team"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": role_kind, "name": role},
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "alice"}]
        })
    };
    let bindings = format!("{rbac}/namespaces/team/rolebindings");
    let reply =
        as_user(&api, admin, Method::POST, &bindings, Some(&binding("alice-admin", "ClusterRole", "admin"))).await;
    assert_eq!(reply.status, StatusCode::CREATED, "{:?}", reply.body);
    let alice = Some("alice-token");
    eventually(Duration::from_secs(10), "alice to administer team", || async {
        (as_user(&api, alice, Method::GET, &bindings, None).await.status == StatusCode::OK).then_some(())
    })
    .await;
    // What she holds she may grant: a Role within `admin`, a binding to `edit`.
    let role = |name: &str, rule: Value| {
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
               "metadata": {"name": name, "namespace": "team"}, "rules": [rule]})
    };
    let roles = format!("{rbac}/namespaces/team/roles");
    let pod_admin = role("pods", json!({"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "delete"]}));
    assert_eq!(as_user(&api, alice, Method::POST, &roles, Some(&pod_admin)).await.status, StatusCode::CREATED);
    let reply =
        as_user(&api, alice, Method::POST, &bindings, Some(&binding("alice-edit", "ClusterRole", "edit"))).await;
    assert_eq!(reply.status, StatusCode::CREATED, "{:?}", reply.body);
    // What she does not hold she may not: nodes in a Role, cluster-admin in a binding.
    let nodes = role("nodes", json!({"apiGroups": [""], "resources": ["nodes"], "verbs": ["list"]}));
    let reply = as_user(&api, alice, Method::POST, &roles, Some(&nodes)).await;
    assert_refused(
        &reply,
        StatusCode::FORBIDDEN,
        "Forbidden",
        "roles.rbac.authorization.k8s.io \"nodes\" is forbidden: user \"alice\" (groups=[\"system:authenticated\"]) \
         is attempting to grant RBAC permissions not currently held:\n{APIGroups:[\"\"], Resources:[\"nodes\"], Verbs:[\"list\"]}",
    );
    let reply =
        as_user(&api, alice, Method::POST, &bindings, Some(&binding("root", "ClusterRole", "cluster-admin"))).await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN, "{:?}", reply.body);
    assert!(
        reply.body["message"]
            .as_str()
            .is_some_and(|m| m.contains("attempting to grant RBAC permissions not currently held")),
        "{:?}",
        reply.body
    );
    // Nor by changing a Role she may update.
    let path = format!("{roles}/pods");
    let patch = json!({"rules": [{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}]});
    let reply = api
        .send(
            Method::PATCH,
            &path,
            &[("Content-Type", "application/merge-patch+json"), ("Authorization", "Bearer alice-token")],
            Some(patch.to_string().into_bytes()),
        )
        .await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN, "{:?}", reply.body);
}

#[tokio::test]
async fn service_account_tokens_are_issued_checked_and_revoked() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let key = dir.path().join("sa.key");
    std::fs::write(&key, rkube_pki::signing_key_pem().expect("key")).expect("key file");
    let key = key.display().to_string();
    let (_cluster, api, _tokens) = start(&["--service-account-signing-key-file", key.as_str()]).await;
    let admin = Some("admin-token");
    let accounts = "/api/v1/namespaces/default/serviceaccounts";
    let bot = json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "bot"}});
    assert_eq!(as_user(&api, admin, Method::POST, accounts, Some(&bot)).await.status, StatusCode::CREATED);
    let request = |body: Value| {
        let api = &api;
        async move { as_user(api, admin, Method::POST, &format!("{accounts}/bot/token"), Some(&body)).await }
    };
    let reply = request(json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {}})).await;
    assert_eq!(reply.status, StatusCode::CREATED, "{:?}", reply.body);
    assert_eq!(reply.body["kind"], "TokenRequest");
    assert_eq!(reply.body["spec"]["expirationSeconds"], 3600);
    let token = reply.body["status"]["token"].as_str().expect("a token").to_string();

    // The token is the ServiceAccount; RBAC decides what it may do.
    let pods = "/api/v1/namespaces/default/pods";
    let reply = as_user(&api, Some(&token), Method::GET, pods, None).await;
    assert_refused(
        &reply,
        StatusCode::FORBIDDEN,
        "Forbidden",
        r#"pods is forbidden: User "system:serviceaccount:default:bot" cannot list resource "pods" in API group "" in the namespace "default""#,
    );
    let binding = json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
        "metadata": {"name": "bot-view", "namespace": "default"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "view"},
        "subjects": [{"kind": "ServiceAccount", "name": "bot"}]
    });
    let bindings = "/apis/rbac.authorization.k8s.io/v1/namespaces/default/rolebindings";
    assert_eq!(as_user(&api, admin, Method::POST, bindings, Some(&binding)).await.status, StatusCode::CREATED);
    eventually(Duration::from_secs(10), "the ServiceAccount to list pods", || async {
        (as_user(&api, Some(&token), Method::GET, pods, None).await.status == StatusCode::OK).then_some(())
    })
    .await;

    // Bad requests and forgeries.
    let short = request(json!({"spec": {"expirationSeconds": 60}})).await;
    assert_eq!(short.status, StatusCode::UNPROCESSABLE_ENTITY, "{:?}", short.body);
    let missing = as_user(&api, admin, Method::POST, &format!("{accounts}/nobody/token"), Some(&json!({}))).await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND, "{:?}", missing.body);
    let mut forged = token.clone();
    forged.pop();
    forged.push(if token.ends_with('A') { 'B' } else { 'A' });
    assert_eq!(as_user(&api, Some(&forged), Method::GET, pods, None).await.status, StatusCode::UNAUTHORIZED);

    // A token bound to a pod dies with the pod; every token dies with its ServiceAccount.
    let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "worker"},
        "spec": {"containers": [{"name": "c", "image": "busybox-local:v1"}]}});
    assert_eq!(as_user(&api, admin, Method::POST, pods, Some(&pod)).await.status, StatusCode::CREATED);
    let bound =
        request(json!({"spec": {"boundObjectRef": {"kind": "Pod", "apiVersion": "v1", "name": "worker"}}})).await;
    let bound = bound.body["status"]["token"].as_str().expect("a bound token").to_string();
    assert_eq!(as_user(&api, Some(&bound), Method::GET, pods, None).await.status, StatusCode::OK);
    let worker = format!("{pods}/worker?gracePeriodSeconds=0");
    assert!(as_user(&api, admin, Method::DELETE, &worker, None).await.status.is_success());
    eventually(Duration::from_secs(10), "the bound token to stop working", || async {
        (as_user(&api, Some(&bound), Method::GET, pods, None).await.status == StatusCode::UNAUTHORIZED).then_some(())
    })
    .await;
    assert_eq!(as_user(&api, admin, Method::DELETE, &format!("{accounts}/bot"), None).await.status, StatusCode::OK);
    assert_eq!(as_user(&api, Some(&token), Method::GET, pods, None).await.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn review_apis_answer_who_i_am_and_what_i_may_do() {
    let (_cluster, api, _dir) = start(&[]).await;
    let alice = Some("alice-token");
    // Who am I?
    let reply = as_user(
        &api,
        alice,
        Method::POST,
        "/apis/authentication.k8s.io/v1/selfsubjectreviews",
        Some(&json!({"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"})),
    )
    .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{:?}", reply.body);
    assert_eq!(reply.body["status"]["userInfo"]["username"], "alice");
    assert_eq!(reply.body["status"]["userInfo"]["groups"], json!(["system:authenticated"]));
    // Whose is this token? Only for those who may ask (system:auth-delegator, the admin).
    let token_review = |token: &str| json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": {"token": token}});
    let tokenreviews = "/apis/authentication.k8s.io/v1/tokenreviews";
    let reply = as_user(&api, alice, Method::POST, tokenreviews, Some(&token_review("bob-token"))).await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN, "{:?}", reply.body);
    let reply = as_user(&api, Some("admin-token"), Method::POST, tokenreviews, Some(&token_review("bob-token"))).await;
    assert_eq!(reply.status, StatusCode::CREATED, "{:?}", reply.body);
    assert_eq!(reply.body["status"]["authenticated"], true);
    assert_eq!(reply.body["status"]["user"]["username"], "bob");
    assert_eq!(reply.body["status"]["user"]["groups"], json!(["devs", "system:authenticated"]));
    let reply = as_user(&api, Some("admin-token"), Method::POST, tokenreviews, Some(&token_review("guessed"))).await;
    assert_eq!((reply.status, reply.body["status"]["authenticated"].clone()), (StatusCode::CREATED, json!(false)));
    // May I? Not yet; then a Role says yes for exactly its rule.
    let can_i = |verb: &str, resource: &str| {
        json!({"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview",
               "spec": {"resourceAttributes": {"namespace": "default", "verb": verb, "resource": resource}}})
    };
    let ssar = "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews";
    let reply = as_user(&api, alice, Method::POST, ssar, Some(&can_i("list", "pods"))).await;
    assert_eq!(
        (reply.status, reply.body["status"]["allowed"].clone()),
        (StatusCode::CREATED, json!(false)),
        "{:?}",
        reply.body
    );
    let role = json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
        "metadata": {"name": "pod-reader", "namespace": "default"},
        "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["list"]}]});
    let binding = json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
        "metadata": {"name": "alice", "namespace": "default"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "pod-reader"},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "alice"}]});
    let rbac = "/apis/rbac.authorization.k8s.io/v1/namespaces/default";
    assert_eq!(
        as_user(&api, Some("admin-token"), Method::POST, &format!("{rbac}/roles"), Some(&role)).await.status,
        StatusCode::CREATED
    );
    assert_eq!(
        as_user(&api, Some("admin-token"), Method::POST, &format!("{rbac}/rolebindings"), Some(&binding)).await.status,
        StatusCode::CREATED
    );
    eventually(Duration::from_secs(10), "alice may list pods", || async {
        let reply = as_user(&api, alice, Method::POST, ssar, Some(&can_i("list", "pods"))).await;
        (reply.body["status"]["allowed"] == json!(true)).then_some(())
    })
    .await;
    let reply = as_user(&api, alice, Method::POST, ssar, Some(&can_i("delete", "pods"))).await;
    assert_eq!(reply.body["status"]["allowed"], json!(false));
    // What may I do here?
    let reply = as_user(
        &api,
        alice,
        Method::POST,
        "/apis/authorization.k8s.io/v1/selfsubjectrulesreviews",
        Some(&json!({"spec": {"namespace": "default"}})),
    )
    .await;
    let rules = reply.body["status"]["resourceRules"].as_array().cloned().unwrap_or_default();
    assert!(
        rules.iter().any(|r| r["resources"] == json!(["pods"]) && r["verbs"] == json!(["list"])),
        "{:?}",
        reply.body
    );
    // Asking about others needs a grant of its own; the admin may.
    let sar = json!({"spec": {"user": "alice", "resourceAttributes": {"namespace": "default", "verb": "list", "resource": "pods"}}});
    let path = "/apis/authorization.k8s.io/v1/subjectaccessreviews";
    assert_eq!(as_user(&api, alice, Method::POST, path, Some(&sar)).await.status, StatusCode::FORBIDDEN);
    let reply = as_user(&api, Some("admin-token"), Method::POST, path, Some(&sar)).await;
    assert_eq!(reply.body["status"]["allowed"], json!(true), "{:?}", reply.body);
    // Discovery lists them.
    let list = as_user(&api, Some("admin-token"), Method::GET, "/apis/authorization.k8s.io/v1", None).await;
    assert!(
        list.body["resources"].as_array().is_some_and(|r| r.iter().any(|x| x["name"] == "selfsubjectaccessreviews")),
        "{:?}",
        list.body
    );
}
