//! A raw watch loop: what an informer does under the hood, without the cache.
//!
//! 1. List pods once, only to learn the current resourceVersion (`limit=1`: we want the
//!    version, not the objects).
//! 2. Watch from that version and print every event.
//! 3. When the server ends the stream (it does, every few minutes), watch again from the
//!    last resourceVersion seen; nothing is missed and nothing is repeated.
//! 4. If that version has been compacted away (410 Gone), start over at step 1. Changes made
//!    in between are lost to this loop: that is why informers relist and diff (see
//!    docs/informers.md).
//!
//! Run: `cargo run -p rkube-examples --example pod_watcher -- [--namespace NS]`
//! (uses `KUBECONFIG` or `~/.kube/config`), then create, label and delete pods.

use clap::Parser;
use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use rkube_client::{Api, Client, ListParams, WatchEvent, WatchParams};

#[derive(Parser)]
struct Args {
    /// Watch this namespace only (default: all namespaces).
    #[arg(long)]
    namespace: Option<String>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let client = Client::try_default()?;
    let pods: Api<Pod> = match &args.namespace {
        Some(ns) => Api::namespaced(client, ns),
        None => Api::all(client),
    };

    loop {
        // Step 1: where does history stand right now?
        let list = pods.list(&ListParams::default().limit(1)).await?;
        let mut resource_version = list.metadata.resource_version.unwrap_or_default();
        println!("listed at resourceVersion {resource_version}");

        // Steps 2 and 3: watch, and resume after each stream end.
        'resume: loop {
            let params = WatchParams::default().timeout(60); // bookmarks are on by default
            let mut events = match pods.watch(&params, &resource_version).await {
                Ok(events) => events,
                Err(e) if e.is_gone() => break 'resume,
                Err(e) => return Err(e.into()),
            };
            while let Some(event) = events.next().await {
                match event {
                    Ok(WatchEvent::Added(pod)) => print("ADDED", &pod, &mut resource_version),
                    Ok(WatchEvent::Modified(pod)) => print("MODIFIED", &pod, &mut resource_version),
                    Ok(WatchEvent::Deleted(pod)) => print("DELETED", &pod, &mut resource_version),
                    Ok(WatchEvent::Bookmark(bookmark)) => {
                        // Nothing changed for us up to here: resume from this version.
                        resource_version = bookmark.metadata.resource_version;
                    }
                    // Step 4: the server says our version is compacted away (410).
                    Ok(WatchEvent::Error(status)) if status.code == 410 => break 'resume,
                    Err(e) if e.is_gone() => break 'resume,
                    Ok(WatchEvent::Error(status)) => anyhow::bail!("watch error: {status:?}"),
                    Err(e) => {
                        eprintln!("stream broke ({e}); resuming from {resource_version}");
                        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                        continue 'resume;
                    }
                }
            }
            println!("stream ended; resuming from {resource_version}");
        }
        println!("resourceVersion {resource_version} expired (410): listing again");
    }
}

/// Prints one event and remembers the object's resourceVersion as the resume point.
fn print(kind: &str, pod: &Pod, resource_version: &mut String) {
    let meta = &pod.metadata;
    let rv = meta.resource_version.clone().unwrap_or_default();
    println!(
        "{kind:<8} {}/{} rv={rv} phase={}",
        meta.namespace.as_deref().unwrap_or(""),
        meta.name.as_deref().unwrap_or(""),
        pod.status.as_ref().and_then(|s| s.phase.as_deref()).unwrap_or("-"),
    );
    *resource_version = rv;
}
