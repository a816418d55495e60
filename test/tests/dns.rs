//! rkube-dns over real etcd and rkube-apiserver: Service names, headless Services' pods, SRV
//! records and NXDOMAIN from the cluster domain, everything else forwarded to the upstream
//! resolver, and the kube-dns Service it registers. Asked over UDP as a resolver would.

use std::net::{Ipv4Addr, SocketAddr};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::A;
use hickory_proto::rr::{Name, RData, Record, RecordType};
use rkube_tests::{Api, Cluster, binary, eventually};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(20);

/// Asks `server` for `name` of `kind`: the response code and the answers' data as text.
async fn ask(server: SocketAddr, name: &str, kind: RecordType) -> Option<(ResponseCode, Vec<String>)> {
    let mut question = Message::new(rand_id(), MessageType::Query, OpCode::Query);
    question.metadata.recursion_desired = true;
    question.queries.push(Query::query(Name::from_ascii(name).ok()?, kind));
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.ok()?;
    socket.send_to(&question.to_vec().ok()?, server).await.ok()?;
    let mut buffer = vec![0u8; 4096];
    let (length, _) = tokio::time::timeout(Duration::from_secs(2), socket.recv_from(&mut buffer)).await.ok()?.ok()?;
    let answer = Message::from_vec(&buffer[..length]).ok()?;
    assert_eq!(answer.metadata.id, question.metadata.id, "the answer is to this question");
    let mut data: Vec<String> = answer.answers.iter().map(|record| record.data.to_string()).collect();
    data.sort();
    Some((answer.metadata.response_code, data))
}

fn rand_id() -> u16 {
    u16::try_from(std::process::id() % 60_000).unwrap_or(1)
}

/// A stand-in upstream resolver answering every question with `192.0.2.99`.
async fn fake_upstream() -> SocketAddr {
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.expect("upstream socket");
    let address = socket.local_addr().expect("address");
    tokio::spawn(async move {
        let mut buffer = vec![0u8; 4096];
        while let Ok((length, peer)) = socket.recv_from(&mut buffer).await {
            let Ok(question) = Message::from_vec(&buffer[..length]) else { continue };
            let mut answer = Message::response(question.metadata.id, OpCode::Query);
            answer.queries = question.queries.clone();
            if let Some(query) = question.queries.first() {
                answer.answers.push(Record::from_rdata(
                    query.name().clone(),
                    60,
                    RData::A(A(Ipv4Addr::new(192, 0, 2, 99))),
                ));
            }
            if let Ok(bytes) = answer.to_vec() {
                let _ = socket.send_to(&bytes, peer).await;
            }
        }
    });
    address
}

struct Dns(Child);

impl Drop for Dns {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn cluster_names_are_answered_and_the_rest_forwarded() {
    let cluster = Cluster::start().await.expect("cluster starts");
    let api = Api::new(cluster.url());
    let dir = tempfile::tempdir().expect("dir");
    let kubeconfig = cluster.write_kubeconfig(dir.path()).expect("kubeconfig");
    let upstream = fake_upstream().await;
    let port = std::net::UdpSocket::bind("127.0.0.1:0").and_then(|s| s.local_addr()).expect("a free port").port();
    let server: SocketAddr = ([127, 0, 0, 1], port).into();
    let start_dns = || {
        Dns(Command::new(binary("rkube-dns"))
            .args(["--listen", &server.to_string(), "--upstream", &upstream.to_string(), "--port", "0"])
            .args(["--advertise-address", "127.0.0.1", "--kubeconfig"])
            .arg(&kubeconfig)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("dns.log")).expect("log"))
            .spawn()
            .expect("rkube-dns runs (cargo build)"))
    };
    let dns = start_dns();
    let web = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
        "spec": {"selector": {"app": "web"}, "ports": [{"name": "http", "port": 80}]}});
    let web = api.create("/api/v1/namespaces/default/services", &web).await;
    let web_ip = web["spec"]["clusterIP"].as_str().expect("ip").to_string();
    let db = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "db"},
        "spec": {"clusterIP": "None", "selector": {"app": "db"}, "ports": [{"name": "pg", "port": 5432}]}});
    api.create("/api/v1/namespaces/default/services", &db).await;
    let slice = json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": "db-1", "labels": {"kubernetes.io/service-name": "db"}}, "addressType": "IPv4",
        "ports": [{"name": "pg", "port": 5432, "protocol": "TCP"}],
        "endpoints": [{"addresses": ["10.244.1.5"], "hostname": "db-0", "conditions": {"ready": true}},
                      {"addresses": ["10.244.2.6"], "conditions": {"ready": true}},
                      {"addresses": ["10.244.2.7"], "conditions": {"ready": false}}]});
    api.create("/apis/discovery.k8s.io/v1/namespaces/default/endpointslices", &slice).await;

    let log = || std::fs::read_to_string(dir.path().join("dns.log")).unwrap_or_default();
    let answer = eventually(WAIT, "rkube-dns to answer web", || async {
        ask(server, "web.default.svc.cluster.local.", RecordType::A).await.filter(|(_, data)| !data.is_empty())
    })
    .await;
    assert_eq!(answer, (ResponseCode::NoError, vec![web_ip.clone()]), "{}", log());
    let headless = ask(server, "db.default.svc.cluster.local.", RecordType::A).await;
    assert_eq!(headless, Some((ResponseCode::NoError, vec!["10.244.1.5".into(), "10.244.2.6".into()])));
    let pod = ask(server, "db-0.db.default.svc.cluster.local.", RecordType::A).await;
    assert_eq!(pod, Some((ResponseCode::NoError, vec!["10.244.1.5".into()])));
    let srv = ask(server, "_http._tcp.web.default.svc.cluster.local.", RecordType::SRV).await;
    assert_eq!(srv, Some((ResponseCode::NoError, vec!["0 100 80 web.default.svc.cluster.local.".into()])));
    let missing = ask(server, "nothing.default.svc.cluster.local.", RecordType::A).await;
    assert_eq!(missing, Some((ResponseCode::NXDomain, Vec::new())));
    // Everything else goes upstream.
    let outside = ask(server, "example.com.", RecordType::A).await;
    assert_eq!(outside, Some((ResponseCode::NoError, vec!["192.0.2.99".into()])));

    // Over TCP too (each message after its two-byte length).
    let mut question = Message::new(7, MessageType::Query, OpCode::Query);
    question
        .queries
        .push(Query::query(Name::from_ascii("web.default.svc.cluster.local.").expect("name"), RecordType::A));
    let bytes = question.to_vec().expect("encoded");
    let mut tcp = tokio::net::TcpStream::connect(server).await.expect("TCP");
    tokio::io::AsyncWriteExt::write_u16(&mut tcp, u16::try_from(bytes.len()).expect("short")).await.expect("length");
    tokio::io::AsyncWriteExt::write_all(&mut tcp, &bytes).await.expect("question");
    let length = tokio::io::AsyncReadExt::read_u16(&mut tcp).await.expect("answer length");
    let mut answer = vec![0u8; usize::from(length)];
    tokio::io::AsyncReadExt::read_exact(&mut tcp, &mut answer).await.expect("answer");
    let answer = Message::from_vec(&answer).expect("a DNS message");
    assert_eq!(answer.answers.iter().map(|r| r.data.to_string()).collect::<Vec<_>>(), vec![web_ip.clone()]);

    // The kube-dns Service pods' resolv.conf names, pointing at where rkube-dns listens.
    let service = api.get_ok("/api/v1/namespaces/kube-system/services/kube-dns").await;
    assert_eq!(service["spec"]["clusterIP"], "10.96.0.10", "{service}");
    let endpoints = api.get_ok("/api/v1/namespaces/kube-system/endpoints/kube-dns").await;
    assert_eq!(endpoints["subsets"][0]["addresses"][0]["ip"], "127.0.0.1", "{endpoints}");
    assert_eq!(endpoints["subsets"][0]["ports"][0]["port"], port, "{endpoints}");

    // Started again (a restart, a rebooted master), it finds its Service there and serves.
    drop(dns);
    let mut again = start_dns();
    let answer = eventually(WAIT, "the restarted rkube-dns to answer web", || async {
        ask(server, "web.default.svc.cluster.local.", RecordType::A).await.filter(|(_, data)| !data.is_empty())
    })
    .await;
    assert_eq!(answer, (ResponseCode::NoError, vec![web_ip]), "{}", log());
    assert!(again.0.try_wait().expect("status").is_none(), "the restarted rkube-dns exited: {}", log());
}
