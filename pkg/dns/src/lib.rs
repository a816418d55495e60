//! rkube-dns: the cluster's DNS server. It list-watches Services and EndpointSlices and answers
//! the names of the cluster domain from them ([`records`]); every other name is forwarded, as
//! it came, to the upstream resolver and its answer relayed. UDP, one task per question, and
//! TCP (each message after its two-byte length), one task per connection.
//!
//! At start it makes the Service `kube-dns` in `kube-system` (the cluster IP the kubelets put
//! in pods' `resolv.conf`, `10.96.0.10` by default, port 53 over UDP and TCP) with Endpoints
//! naming the address and port it listens on (the EndpointSlice controller mirrors them into a
//! slice, which the proxies read), so pods reach it through its Service as they reach
//! Kubernetes' CoreDNS.
//!
//! Metrics: `rkube_dns_requests_total{answer}` (`cluster`, `nxdomain`, `forwarded`, `error`).

pub mod records;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hickory_proto::op::{Message, MessageType, ResponseCode};
use hickory_proto::rr::Name;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use prometheus::{IntCounterVec, Opts, Registry};
use rkube_client::Client;
use rkube_informer::factory::SharedInformerFactory;
use rkube_informer::store::Store;
use serde_json::json;
use tokio::net::UdpSocket;
use tokio_util::sync::CancellationToken;

/// How long a forwarded question waits for the upstream resolver.
pub const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(3);

/// What can stop the DNS server.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The informers failed.
    #[error("informer: {0}")]
    Informer(#[from] rkube_informer::Error),
    /// Metrics could not be registered.
    #[error("metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    /// The caches never filled.
    #[error("the Service and EndpointSlice caches did not sync")]
    CacheSync,
    /// The socket failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// The `kube-dns` Service could not be written.
    #[error("registering the kube-dns Service: {0}")]
    Register(#[from] rkube_client::Error),
}

/// How the server runs.
#[derive(Clone, Debug)]
pub struct Config {
    /// The cluster domain (`cluster.local`).
    pub domain: String,
    /// The resolver everything else goes to; `None`: other names get `SERVFAIL`.
    pub upstream: Option<SocketAddr>,
    /// With `Some((cluster IP, advertised address))`: make the `kube-dns` Service with that IP,
    /// its endpoint the advertised address (and the port listened on).
    pub service: Option<(String, SocketAddr)>,
}

struct Server {
    domain: Name,
    upstream: Option<SocketAddr>,
    services: Store<Service>,
    slices: Store<EndpointSlice>,
    requests: IntCounterVec,
}

/// The first `nameserver` of a `resolv.conf`; `None` without one.
pub fn resolv_conf_nameserver(text: &str) -> Option<SocketAddr> {
    text.lines()
        .filter_map(|line| line.trim().strip_prefix("nameserver"))
        .filter_map(|address| address.trim().parse::<std::net::IpAddr>().ok())
        .map(|ip| SocketAddr::new(ip, 53))
        .next()
}

/// Serves DNS on `socket` until `shutdown` (see the module docs). `readiness` turns true once
/// the caches are filled.
pub async fn run(
    client: Client,
    config: Config,
    (socket, tcp): (UdpSocket, tokio::net::TcpListener),
    registry: &Registry,
    readiness: impl Fn(bool),
    shutdown: CancellationToken,
) -> Result<(), Error> {
    let requests = IntCounterVec::new(
        Opts::new("rkube_dns_requests_total", "DNS questions answered, by how (cluster, nxdomain, forwarded, error)."),
        &["answer"],
    )?;
    registry.register(Box::new(requests.clone()))?;
    if let Some((cluster_ip, advertised)) = &config.service {
        register(&client, cluster_ip, *advertised).await?;
    }
    let factory = SharedInformerFactory::new(client, registry)?;
    let services = factory.informer::<Service>(None);
    let slices = factory.informer::<EndpointSlice>(None);
    factory.start(&shutdown);
    tokio::select! {
        synced = factory.wait_for_cache_sync() => if !synced { return Err(Error::CacheSync) },
        () = shutdown.cancelled() => return Ok(()),
    }
    let domain = Name::from_ascii(format!("{}.", config.domain.trim_end_matches('.')))
        .map_err(|e| std::io::Error::other(format!("cluster domain {:?}: {e}", config.domain)))?;
    let server = Arc::new(Server {
        domain,
        upstream: config.upstream,
        services: services.store(),
        slices: slices.store(),
        requests,
    });
    let socket = Arc::new(socket);
    let tcp_server = Arc::clone(&server);
    let tcp_shutdown = shutdown.clone();
    tokio::spawn(async move {
        loop {
            let connection = tokio::select! {
                accepted = tcp.accept() => match accepted {
                    Ok((connection, _)) => connection,
                    Err(_) => continue,
                },
                () = tcp_shutdown.cancelled() => return,
            };
            let server = Arc::clone(&tcp_server);
            tokio::spawn(async move { server.serve_tcp(connection).await });
        }
    });
    readiness(true);
    tracing::info!(address = %socket.local_addr()?, domain = %config.domain, upstream = ?config.upstream, "answering DNS");
    let mut buffer = vec![0u8; 4096];
    loop {
        let (length, peer) = tokio::select! {
            received = socket.recv_from(&mut buffer) => received?,
            () = shutdown.cancelled() => return Ok(()),
        };
        let question = buffer[..length].to_vec();
        let (server, socket) = (Arc::clone(&server), Arc::clone(&socket));
        tokio::spawn(async move {
            if let Some(answer) = server.answer(&question).await {
                let _ = socket.send_to(&answer, peer).await;
            }
        });
    }
}

impl Server {
    /// Answers the messages of one TCP connection (each after its length, two bytes big-endian)
    /// until the client closes it or is silent for 10 s.
    async fn serve_tcp(&self, mut connection: tokio::net::TcpStream) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        loop {
            let read = async {
                let length = connection.read_u16().await?;
                let mut question = vec![0u8; usize::from(length)];
                connection.read_exact(&mut question).await?;
                Ok::<_, std::io::Error>(question)
            };
            let Ok(Ok(question)) = tokio::time::timeout(Duration::from_secs(10), read).await else { return };
            let Some(answer) = self.answer(&question).await else { return };
            let Ok(length) = u16::try_from(answer.len()) else { return };
            if connection.write_u16(length).await.is_err() || connection.write_all(&answer).await.is_err() {
                return;
            }
        }
    }

    /// The reply to one UDP message; `None` for what is not a DNS question.
    async fn answer(&self, question: &[u8]) -> Option<Vec<u8>> {
        let request = Message::from_vec(question).ok()?;
        if request.metadata.message_type != MessageType::Query {
            return None;
        }
        let Some(query) = request.queries.first() else {
            return self.reply(&request, ResponseCode::FormErr, Vec::new(), "error");
        };
        let name = query.name().to_lowercase();
        if !self.domain.zone_of(&name) {
            return self.forward(question).await;
        }
        let (services, slices) = (self.services.list(), self.slices.list());
        let zone = records::Zone { domain: &self.domain, services: &services, slices: &slices };
        match zone.answer(&name, query.query_type()) {
            records::Answer::Records(records) => self.reply(&request, ResponseCode::NoError, records, "cluster"),
            records::Answer::NoSuchName => self.reply(&request, ResponseCode::NXDomain, Vec::new(), "nxdomain"),
        }
    }

    fn reply(
        &self,
        request: &Message,
        code: ResponseCode,
        answers: Vec<hickory_proto::rr::Record>,
        how: &str,
    ) -> Option<Vec<u8>> {
        let mut response = Message::response(request.metadata.id, request.metadata.op_code);
        response.metadata.authoritative = true;
        response.metadata.recursion_desired = request.metadata.recursion_desired;
        response.metadata.recursion_available = true;
        response.metadata.response_code = code;
        response.queries = request.queries.clone();
        response.answers = answers;
        self.requests.with_label_values(&[how]).inc();
        response.to_vec().ok()
    }

    /// The upstream resolver's answer to `question`, relayed as it is.
    async fn forward(&self, question: &[u8]) -> Option<Vec<u8>> {
        let Some(upstream) = self.upstream else {
            let request = Message::from_vec(question).ok()?;
            return self.reply(&request, ResponseCode::ServFail, Vec::new(), "error");
        };
        let bind: SocketAddr = if upstream.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" }.parse().ok()?;
        let outcome = async {
            let socket = UdpSocket::bind(bind).await?;
            socket.connect(upstream).await?;
            socket.send(question).await?;
            let mut buffer = vec![0u8; 4096];
            let length = socket.recv(&mut buffer).await?;
            buffer.truncate(length);
            Ok::<_, std::io::Error>(buffer)
        };
        match tokio::time::timeout(UPSTREAM_TIMEOUT, outcome).await {
            Ok(Ok(answer)) => {
                self.requests.with_label_values(&["forwarded"]).inc();
                Some(answer)
            }
            _ => {
                let request = Message::from_vec(question).ok()?;
                self.reply(&request, ResponseCode::ServFail, Vec::new(), "error")
            }
        }
    }
}

/// Makes (or updates) the Service `kube-system/kube-dns` at `cluster_ip` and its Endpoints at
/// `advertised`.
async fn register(client: &Client, cluster_ip: &str, advertised: SocketAddr) -> Result<(), rkube_client::Error> {
    let service: Service = serde_json::from_value(json!({
        "metadata": {"name": "kube-dns", "namespace": "kube-system", "labels": {"k8s-app": "kube-dns"}},
        "spec": {"clusterIP": cluster_ip, "ports": [
            {"name": "dns", "port": 53, "protocol": "UDP", "targetPort": advertised.port()},
            {"name": "dns-tcp", "port": 53, "protocol": "TCP", "targetPort": advertised.port()}]}
    }))
    .map_err(|e| rkube_client::Error::Decode(e.to_string()))?;
    let services: rkube_client::Api<Service> = rkube_client::Api::namespaced(client.clone(), "kube-system");
    // Made by an earlier start: a create would be refused for its taken cluster IP (422), as
    // Kubernetes allocates the IP before it looks at the name.
    if services.get_opt("kube-dns").await?.is_none() {
        match services.create(&Default::default(), &service).await {
            Ok(_) | Err(rkube_client::Error::AlreadyExists(_)) => {}
            Err(error) => return Err(error),
        }
    }
    let endpoints: k8s_openapi::api::core::v1::Endpoints = serde_json::from_value(json!({
        "metadata": {"name": "kube-dns", "namespace": "kube-system", "labels": {"k8s-app": "kube-dns"}},
        "subsets": [{"addresses": [{"ip": advertised.ip().to_string()}],
                     "ports": [{"name": "dns", "port": advertised.port(), "protocol": "UDP"},
                               {"name": "dns-tcp", "port": advertised.port(), "protocol": "TCP"}]}]
    }))
    .map_err(|e| rkube_client::Error::Decode(e.to_string()))?;
    let api: rkube_client::Api<k8s_openapi::api::core::v1::Endpoints> =
        rkube_client::Api::namespaced(client.clone(), "kube-system");
    match api.create(&Default::default(), &endpoints).await {
        Ok(_) => Ok(()),
        Err(rkube_client::Error::AlreadyExists(_)) => {
            let mut current = api.get("kube-dns").await?;
            current.subsets = endpoints.subsets;
            api.replace("kube-dns", &Default::default(), &current).await.map(|_| ())
        }
        Err(error) => Err(error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_upstream_is_the_first_nameserver() {
        let text = "# made by hand\nsearch example.com\nnameserver 192.0.2.53\nnameserver 192.0.2.54\n";
        assert_eq!(resolv_conf_nameserver(text), Some("192.0.2.53:53".parse().expect("address")));
        assert_eq!(resolv_conf_nameserver("search x\n"), None);
    }
}
