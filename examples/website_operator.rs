//! An operator in one file, written with kube-rs exactly as one would write it for Kubernetes.
//!
//! It adds a kind, `Website` (`examples.rkube.dev/v1`), and keeps, for each Website, three
//! objects in step with its spec: a ConfigMap holding the page (`index.html`), a Deployment of
//! busybox `httpd` serving that ConfigMap, and a Service in front of them. Read it top to bottom:
//! 1. the kind is a Rust struct; `#[derive(CustomResource)]` makes the `Website` type and its
//!    CustomResourceDefinition (`Website::crd()`: schema, status and scale subresources, columns);
//! 2. at start the operator applies that CRD (server-side apply) and waits until it is Established;
//! 3. a `Controller` watches Websites and the objects they own, and calls `reconcile` with the
//!    *current* Website whenever any of them changes (level-triggered, as `configmap_controller`);
//! 4. `reconcile` applies the three objects with owner references (so deleting the Website lets the
//!    garbage collector delete them) and copies the Deployment's ready count into the status;
//! 5. a finalizer gives the operator a last word before a Website goes; errors retry after a delay.
//!
//! Run: `make run` in another terminal, then
//! `cargo run -p rkube-examples --example website_operator`, then
//! `kubectl apply -f` a Website (examples/README.md has one) and `kubectl get websites`.

use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Service};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Event, EventType, Recorder};
use kube::runtime::finalizer::{self, finalizer};
use kube::runtime::{wait, watcher};
use kube::{Client, CustomResource, CustomResourceExt, Resource, ResourceExt};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::json;

/// The field manager of every apply: the server records which fields this operator owns.
const MANAGER: &str = "website-operator";
const FINALIZER: &str = "websites.examples.rkube.dev/cleanup";
/// Put on every object the operator makes, so its watches see only those.
const MANAGED_BY: (&str, &str) = ("app.kubernetes.io/managed-by", MANAGER);

// 1. The kind. The spec is what users write; the derive adds the `Website` type and its CRD.
/// A static website: one HTML page, served by `replicas` web servers behind a Service.
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, JsonSchema)]
#[kube(group = "examples.rkube.dev", version = "v1", kind = "Website", namespaced, shortname = "web")]
#[kube(doc = "A static website: an HTML page served by busybox httpd (see examples/website_operator.rs)")]
#[kube(
    status = "WebsiteStatus",
    scale(spec_replicas_path = ".spec.replicas", status_replicas_path = ".status.readyReplicas")
)]
// Two columns with `type_ = "integer"` look like a repeated attribute to clippy; they are not.
#[allow(clippy::duplicated_attributes)]
#[kube(
    printcolumn(name = "Replicas", type_ = "integer", json_path = ".spec.replicas"),
    printcolumn(name = "Ready", type_ = "integer", json_path = ".status.readyReplicas"),
    printcolumn(name = "URL", type_ = "string", json_path = ".status.url"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
pub struct WebsiteSpec {
    /// The page, served as `index.html`.
    pub content: String,
    /// How many web servers serve it.
    pub replicas: i32,
    /// An image with busybox's `httpd` (default: the operator's `--default-image`).
    pub image: Option<String>,
}

/// What the operator last saw of the site.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WebsiteStatus {
    /// Web servers that are Ready (the Deployment's `readyReplicas`).
    pub ready_replicas: i32,
    /// Where the site answers inside the cluster.
    pub url: String,
}

/// Runs the Website operator: creates the Website kind, then serves every Website it finds.
#[derive(Parser)]
#[command(after_help = "It needs a kubeconfig (KUBECONFIG, else ~/.kube/config) for a cluster that serves \
CRDs. Then `kubectl apply -f` a Website (examples/README.md has one) and `kubectl get websites`.")]
struct Args {
    /// Image of a Website that names none; it must have busybox's `httpd`. busybox-local:v1 is
    /// the image rkube's nodes import (hack/build-test-image.sh); elsewhere try busybox:1.37.
    #[arg(long, default_value = "busybox-local:v1")]
    default_image: String,
    /// Print the CustomResourceDefinition (JSON, for `kubectl apply -f -`) and exit.
    #[arg(long)]
    print_crd: bool,
}

/// What every reconcile needs.
struct Context {
    client: Client,
    recorder: Recorder,
    default_image: String,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt().with_env_filter("info").init();
    let args = Args::parse();
    if args.print_crd {
        println!("{}", serde_json::to_string_pretty(&Website::crd())?);
        return Ok(());
    }
    let client = Client::try_default().await?;

    // 2. Install the kind: apply the CRD, then wait until the apiserver serves it.
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let apply = PatchParams::apply(MANAGER).force();
    crds.patch(Website::crd_name(), &apply, &Patch::Apply(Website::crd())).await?;
    let established = wait::await_condition(crds, Website::crd_name(), wait::conditions::is_crd_established());
    tokio::time::timeout(Duration::from_secs(30), established)
        .await
        .map_err(|_| anyhow::anyhow!("the CRD is not Established after 30 s"))??;
    tracing::info!("CRD {} established", Website::crd_name());

    // 3. Watch Websites, and the objects they own (narrowed to ours by label).
    let ours = watcher::Config::default().labels(&format!("{}={}", MANAGED_BY.0, MANAGED_BY.1));
    let recorder = Recorder::new(client.clone(), MANAGER.into());
    let context = Arc::new(Context { client: client.clone(), recorder, default_image: args.default_image });
    Controller::new(Api::<Website>::all(client.clone()), watcher::Config::default())
        .owns(Api::<ConfigMap>::all(client.clone()), ours.clone())
        .owns(Api::<Deployment>::all(client.clone()), ours.clone())
        .owns(Api::<Service>::all(client), ours)
        .shutdown_on_signal() // Ctrl-C or SIGTERM: finish the reconciles under way, then stop.
        .run(reconcile, error_policy, context)
        .for_each(|result| async move {
            match result {
                Ok((site, _)) => tracing::info!("reconciled {site}"),
                Err(error) => tracing::warn!("reconcile failed: {error}"),
            }
        })
        .await;
    tracing::info!("stopped");
    Ok(())
}

type Error = finalizer::Error<kube::Error>;

/// Step 5: the finalizer wraps the reconcile. `Apply` while the Website lives (the finalizer is
/// added first), `Cleanup` once it is being deleted (the finalizer goes when cleanup succeeds).
async fn reconcile(site: Arc<Website>, ctx: Arc<Context>) -> Result<Action, Error> {
    let websites: Api<Website> = Api::namespaced(ctx.client.clone(), &site.namespace().unwrap_or_default());
    finalizer(&websites, FINALIZER, site, |event| async {
        match event {
            finalizer::Event::Apply(site) => apply(&site, &websites, &ctx).await,
            finalizer::Event::Cleanup(site) => cleanup(&site, &ctx).await,
        }
    })
    .await
}

/// Step 4: applies the ConfigMap, Deployment and Service the spec asks for, then the status.
async fn apply(site: &Website, websites: &Api<Website>, ctx: &Context) -> Result<Action, kube::Error> {
    let (name, ns) = (site.name_any(), site.namespace().unwrap_or_default());
    // Objects read from the apiserver always have a uid, so this never returns early.
    let Some(owner) = site.controller_owner_ref(&()) else { return Ok(Action::await_change()) };
    let metadata = json!({"name": name, "labels": {MANAGED_BY.0: MANAGED_BY.1}, "ownerReferences": [owner]});
    let pods = json!({"app.kubernetes.io/name": name, "app.kubernetes.io/instance": "website"});
    let image = site.spec.image.as_deref().unwrap_or(&ctx.default_image);
    // `force`: this operator owns these fields, even if someone edited them by hand.
    let apply = PatchParams::apply(MANAGER).force();

    let config_map = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": metadata,
        "data": {"index.html": site.spec.content}});
    Api::<ConfigMap>::namespaced(ctx.client.clone(), &ns).patch(&name, &apply, &Patch::Apply(config_map)).await?;

    let deployment = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": metadata, "spec": {
        "replicas": site.spec.replicas,
        "selector": {"matchLabels": pods},
        "template": {"metadata": {"labels": pods}, "spec": {
            "containers": [{"name": "httpd", "image": image, "command": ["httpd", "-f", "-p", "8080", "-h", "/www"],
                "ports": [{"containerPort": 8080}], "volumeMounts": [{"name": "www", "mountPath": "/www"}]}],
            "volumes": [{"name": "www", "configMap": {"name": name}}]}}}});
    let deployment =
        Api::<Deployment>::namespaced(ctx.client.clone(), &ns).patch(&name, &apply, &Patch::Apply(deployment)).await?;

    let service = json!({"apiVersion": "v1", "kind": "Service", "metadata": metadata,
        "spec": {"selector": pods, "ports": [{"name": "http", "port": 80, "targetPort": 8080}]}});
    Api::<Service>::namespaced(ctx.client.clone(), &ns).patch(&name, &apply, &Patch::Apply(service)).await?;

    // The status is ours alone: a merge patch, and only when it changed (every write is an event).
    let ready_replicas = deployment.status.and_then(|s| s.ready_replicas).unwrap_or(0);
    let status = WebsiteStatus { ready_replicas, url: format!("http://{name}.{ns}.svc") };
    if site.status.as_ref() != Some(&status) {
        websites.patch_status(&name, &PatchParams::default(), &Patch::Merge(json!({ "status": status }))).await?;
    }
    // Changes to the Website or its objects wake us; the requeue is a safety net.
    Ok(Action::requeue(Duration::from_secs(300)))
}

/// What the finalizer is for: state *outside* the cluster (a DNS record, a CDN, a bucket) that
/// owner references cannot reach. This site has none: the garbage collector deletes the
/// ConfigMap, Deployment and Service once the Website is gone. So cleanup only leaves an Event.
async fn cleanup(site: &Website, ctx: &Context) -> Result<Action, kube::Error> {
    tracing::info!("cleaning up {}/{}", site.namespace().unwrap_or_default(), site.name_any());
    let event = Event {
        type_: EventType::Normal,
        reason: "CleanedUp".into(),
        note: Some("nothing outside the cluster to remove; owned objects go with the Website".into()),
        action: "Cleanup".into(),
        secondary: None,
    };
    ctx.recorder.publish(&event, &site.object_ref(&())).await?;
    Ok(Action::await_change())
}

/// A failed reconcile is tried again after a pause (the controller also retries on the next change).
fn error_policy(site: Arc<Website>, error: &Error, _ctx: Arc<Context>) -> Action {
    tracing::warn!("{}: {error}; retrying in 10s", site.name_any());
    Action::requeue(Duration::from_secs(10))
}
