//! rkube-client under contention and under its own rate limit: `retry_on_conflict` lets many
//! writers increment one counter without losing an update, and the token bucket lets a full
//! burst go at once, then spaces requests.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures::future::join_all;
use k8s_openapi::api::core::v1::ConfigMap;
use rkube_client::config::DEFAULT_BURST;
use rkube_client::{Api, Client, Config, Error, PostParams, retry_on_conflict};
use rkube_tests::resources::config_map;
use rkube_tests::{Cluster, eventually};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

const WRITERS: u32 = 16;
const INCREMENTS_PER_WRITER: u32 = 5;

fn client(cluster: &Cluster) -> Client {
    Client::new(Config::new(cluster.url().parse().expect("cluster URL"))).expect("client")
}

fn count(cm: &ConfigMap) -> u32 {
    cm.data.as_ref().and_then(|d| d.get("count")).and_then(|n| n.parse().ok()).unwrap_or(0)
}

/// One read-modify-write of the counter: get, add one, replace with the resourceVersion read.
async fn increment(api: &Api<ConfigMap>, conflicts: &AtomicU32) -> rkube_client::Result<ConfigMap> {
    let mut cm = api.get("counter").await?;
    let next = count(&cm) + 1;
    cm.data.get_or_insert_with(Default::default).insert("count".into(), next.to_string());
    let result = api.replace("counter", &PostParams::default(), &cm).await;
    if matches!(result, Err(Error::Conflict(_))) {
        conflicts.fetch_add(1, Ordering::Relaxed);
    }
    result
}

#[tokio::test]
async fn sixteen_writers_retrying_on_conflict_lose_no_increment() {
    let cluster = Cluster::start().await.expect("cluster starts");
    let seed: ConfigMap = serde_json::from_value(config_map("default", "counter", json!({"count": "0"}))).unwrap();
    Api::<ConfigMap>::namespaced(client(&cluster), "default").create(&PostParams::default(), &seed).await.unwrap();

    let conflicts = Arc::new(AtomicU32::new(0));
    let exhausted = Arc::new(AtomicU32::new(0));
    let mut writers = Vec::new();
    for _ in 0..WRITERS {
        // One client per writer, as separate processes would have.
        let api: Api<ConfigMap> = Api::namespaced(client(&cluster), "default");
        let (conflicts, exhausted) = (conflicts.clone(), exhausted.clone());
        writers.push(tokio::spawn(async move {
            for _ in 0..INCREMENTS_PER_WRITER {
                // retry_on_conflict gives up after five conflicts (client-go's DefaultRetry);
                // under this much contention that can happen, and the writer tries again.
                loop {
                    match retry_on_conflict(|| increment(&api, &conflicts)).await {
                        Ok(_) => break,
                        Err(e) if e.is_conflict() => {
                            exhausted.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(e) => panic!("only conflicts are expected: {e}"),
                    }
                }
            }
        }));
    }
    for writer in writers {
        writer.await.expect("writer finished");
    }
    let final_cm = Api::<ConfigMap>::namespaced(client(&cluster), "default").get("counter").await.unwrap();
    assert_eq!(count(&final_cm), WRITERS * INCREMENTS_PER_WRITER, "every increment counted exactly once");
    let conflicts = conflicts.load(Ordering::Relaxed);
    assert!(conflicts > 0, "sixteen concurrent writers must have collided at least once");
    eprintln!("conflicts retried: {conflicts}; retry_on_conflict gave up {} times", exhausted.load(Ordering::Relaxed));
}

#[tokio::test]
async fn with_qps_5_and_burst_1_six_requests_take_at_least_a_second() {
    let cluster = Cluster::start().await.expect("cluster starts");
    let mut config = Config::new(cluster.url().parse().expect("cluster URL"));
    config.qps = 5.0;
    config.burst = 1;
    let api: Api<ConfigMap> = Api::namespaced(Client::new(config).expect("client"), "default");

    let started = Instant::now();
    for _ in 0..6 {
        api.get_opt("anything").await.unwrap();
    }
    let elapsed = started.elapsed();
    // One at once, then one every 200ms: the sixth starts at 1s.
    assert!(elapsed >= Duration::from_millis(950), "6 requests at qps=5 burst=1 took only {elapsed:?}");
}

/// A stand-in apiserver that answers no request until `expected` have arrived, then answers
/// every one with a 404 `Status`. Stops when dropped.
struct HoldingServer {
    url: String,
    arrived: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl HoldingServer {
    async fn start(expected: usize) -> HoldingServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("address"));
        let arrived = Arc::new(AtomicUsize::new(0));
        let (release, released) = tokio::sync::watch::channel(false);
        let release = Arc::new(release);
        let counter = Arc::clone(&arrived);
        let task = tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let (counter, release, mut released) = (Arc::clone(&counter), Arc::clone(&release), released.clone());
                tokio::spawn(async move {
                    if !read_request_head(&mut socket).await {
                        return;
                    }
                    if counter.fetch_add(1, Ordering::SeqCst) + 1 == expected {
                        release.send_replace(true);
                    }
                    if released.wait_for(|released| *released).await.is_ok() {
                        let body = r#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","reason":"NotFound","code":404,"message":"configmaps \"anything\" not found"}"#;
                        let head = format!(
                            "HTTP/1.1 404 Not Found\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                            body.len()
                        );
                        let _ = socket.write_all(format!("{head}{body}").as_bytes()).await;
                    }
                });
            }
        });
        HoldingServer { url, arrived, task }
    }

    /// Requests that have arrived so far.
    fn arrived(&self) -> usize {
        self.arrived.load(Ordering::SeqCst)
    }
}

impl Drop for HoldingServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Reads one request's head (up to the blank line); `false` if the connection ends first.
async fn read_request_head(socket: &mut tokio::net::TcpStream) -> bool {
    let mut head = Vec::new();
    let mut chunk = [0_u8; 1024];
    while !head.windows(4).any(|window| window == b"\r\n\r\n") {
        match socket.read(&mut chunk).await {
            Ok(0) | Err(_) => return false,
            Ok(read) => head.extend_from_slice(&chunk[..read]),
        }
    }
    true
}

/// The default burst goes out at once: that many requests, sent together, are all in flight
/// at a server that answers none of them until every one has arrived. The refill is turned
/// down to one token in 1000 s so that only the burst can let them through (at the default
/// 50 per second, a bucket that ignored its burst would still get them all there in 2 s).
#[tokio::test]
async fn the_default_burst_of_requests_goes_out_at_once() {
    let burst = usize::try_from(DEFAULT_BURST).expect("the burst fits in usize");
    let server = HoldingServer::start(burst).await;
    let mut config = Config::new(server.url.parse().expect("server URL"));
    assert_eq!(config.burst, DEFAULT_BURST);
    config.qps = 0.001;
    let api: Api<ConfigMap> = Api::namespaced(Client::new(config).expect("client"), "default");
    let requests = tokio::spawn(async move { join_all((0..burst).map(|_| api.get_opt("anything"))).await });
    // Well inside the client's 30 s request timeout, so that a request the bucket held back
    // fails here, by name, rather than as a timeout of the requests already held.
    eventually(Duration::from_secs(20), &format!("all {burst} requests in flight at once"), || async {
        (server.arrived() == burst).then_some(())
    })
    .await;
    let answers = requests.await.expect("the requests finish once released");
    assert_eq!(answers.len(), burst);
    for answer in answers {
        assert!(matches!(answer, Ok(None)), "every request answered 404: {answer:?}");
    }
}
