//! [`Store`] on a real etcd cluster, through the `etcd-client` crate.

use std::collections::VecDeque;
use std::time::Duration;

use async_trait::async_trait;
use etcd_client::{
    Certificate, Client, Compare, CompareOp, ConnectOptions, DeleteOptions, EventType, GetOptions, Identity,
    TlsOptions, Txn, TxnOp, TxnOpResponse, WatchOptions, WatchRequestSender, WatchResponseStream,
};
use futures::StreamExt;

use crate::{Continue, Error, KeyValue, ListOptions, ListPage, PrefixSummary, Result, Store, WatchEvent, WatchStream};

/// Keys read per etcd range request when listing: a page of this many objects stays far
/// below any message limit, and a list of any size is read page by page at one revision.
const PAGE_SIZE: i64 = 500;

/// The largest etcd response accepted (the same as Kubernetes' `MaxCallRecvMsgSize`):
/// `PAGE_SIZE` objects of etcd's largest value, 1.5 MiB each, fit.
const MAX_RESPONSE_BYTES: usize = i32::MAX as usize;

/// How to reach etcd.
#[derive(Debug, Clone)]
pub struct EtcdConfig {
    /// Client URLs, e.g. `http://127.0.0.1:2379`.
    pub endpoints: Vec<String>,
    /// Longest wait for one request before it counts as unavailable.
    pub request_timeout: Duration,
    /// TLS towards etcd (`https://` endpoints); `None`: plain HTTP.
    pub tls: Option<EtcdTls>,
}

/// TLS towards etcd, as kube-apiserver's `--etcd-cafile`, `--etcd-certfile` and
/// `--etcd-keyfile`: the CA that signed etcd's serving certificate and, for an etcd started
/// with `--client-cert-auth`, the apiserver's client certificate and key (all PEM text).
#[derive(Clone)]
pub struct EtcdTls {
    /// The CA bundle etcd's serving certificate must chain to.
    pub ca_pem: String,
    /// The client certificate and key presented to etcd, if any.
    pub identity: Option<(String, String)>,
}

impl std::fmt::Debug for EtcdTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdTls").field("client_certificate", &self.identity.is_some()).finish_non_exhaustive()
    }
}

impl Default for EtcdConfig {
    fn default() -> Self {
        EtcdConfig {
            endpoints: vec!["http://127.0.0.1:2379".into()],
            request_timeout: Duration::from_secs(10),
            tls: None,
        }
    }
}

/// The etcd implementation of [`Store`].
#[derive(Clone)]
pub struct EtcdStore {
    client: Client,
    timeout: Duration,
}

impl std::fmt::Debug for EtcdStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdStore").field("timeout", &self.timeout).finish_non_exhaustive()
    }
}

fn map_err(e: etcd_client::Error) -> Error {
    use etcd_client::Error as E;
    use tonic::Code;
    match e {
        E::GRpcStatus(status) => {
            let msg = status.message().to_string();
            match status.code() {
                Code::OutOfRange if msg.contains("compacted") => Error::Expired { requested: 0, compacted: 0 },
                // The callers fill in the revision and the key they know.
                Code::OutOfRange if msg.contains("future revision") => {
                    Error::FutureRevision { requested: 0, current: 0 }
                }
                // Over --max-request-bytes etcd says "request is too large"; over that plus gRPC's
                // 512 KiB allowance its gRPC server refuses the message before reading it.
                Code::InvalidArgument if msg.contains("request is too large") => {
                    Error::TooLarge { key: String::new(), size: 0 }
                }
                Code::ResourceExhausted if msg.contains("larger than max") => {
                    Error::TooLarge { key: String::new(), size: 0 }
                }
                Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled | Code::Unknown | Code::Aborted => {
                    Error::Unavailable(msg)
                }
                _ => Error::Internal(format!("{:?}: {msg}", status.code())),
            }
        }
        E::TransportError(t) => Error::Unavailable(t.to_string()),
        E::IoError(io) => Error::Unavailable(io.to_string()),
        E::WatchError(w) => Error::Unavailable(w),
        other => Error::Internal(other.to_string()),
    }
}

fn to_kv(kv: &etcd_client::KeyValue) -> Result<KeyValue> {
    let key = kv.key_str().map_err(|e| Error::Internal(format!("non UTF-8 key: {e}")))?.to_string();
    Ok(KeyValue {
        key,
        value: kv.value().to_vec(),
        mod_revision: kv.mod_revision(),
        create_revision: kv.create_revision(),
    })
}

/// The first key after every key that starts with `prefix`.
fn prefix_end(prefix: &str) -> Vec<u8> {
    let mut end = prefix.as_bytes().to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

impl EtcdStore {
    /// Connects to etcd. Succeeds even while etcd is down (requests then fail with
    /// [`Error::Unavailable`] until it is back), so the apiserver can start first.
    pub async fn connect(config: &EtcdConfig) -> Result<Self> {
        let mut options = ConnectOptions::new()
            .with_connect_timeout(Duration::from_secs(2))
            .with_keep_alive(Duration::from_secs(10), Duration::from_secs(5))
            .with_keep_alive_while_idle(true);
        if let Some(tls) = &config.tls {
            let mut settings = TlsOptions::new().ca_certificate(Certificate::from_pem(&tls.ca_pem));
            if let Some((cert, key)) = &tls.identity {
                settings = settings.identity(Identity::from_pem(cert, key));
            }
            options = options.with_tls(settings);
        }
        let client = Client::connect(&config.endpoints, Some(options)).await.map_err(map_err)?;
        Ok(EtcdStore { client, timeout: config.request_timeout })
    }

    async fn timed<T>(&self, fut: impl Future<Output = std::result::Result<T, etcd_client::Error>>) -> Result<T> {
        match tokio::time::timeout(self.timeout, fut).await {
            Ok(result) => result.map_err(map_err),
            Err(_) => Err(Error::Unavailable(format!("etcd did not answer within {:?}", self.timeout))),
        }
    }

    async fn txn(&self, txn: Txn) -> Result<etcd_client::TxnResponse> {
        let mut kv = self.client.kv_client();
        self.timed(kv.txn(txn)).await
    }

    /// [`EtcdStore::txn`] of a write of `size` bytes to `key`: a refusal for size names both.
    async fn write_txn(&self, key: &str, size: usize, txn: Txn) -> Result<etcd_client::TxnResponse> {
        match self.txn(txn).await {
            Err(Error::TooLarge { .. }) => Err(Error::TooLarge { key: key.to_string(), size }),
            other => other,
        }
    }

    /// A kv client that accepts responses of any size etcd sends (tonic's default stops at
    /// 4 MiB, which one large object or one page of many can pass).
    fn kv(&self) -> etcd_client::KvClient {
        self.client.kv_client().max_decoding_message_size(MAX_RESPONSE_BYTES)
    }

    /// The current value of `key` from a failed transaction's `or_else` get.
    fn current_from(resp: &etcd_client::TxnResponse) -> Result<Option<KeyValue>> {
        for op in resp.op_responses() {
            if let TxnOpResponse::Get(get) = op {
                return get.kvs().first().map(to_kv).transpose();
            }
        }
        Ok(None)
    }
}

fn revision_of(header: Option<&etcd_client::ResponseHeader>) -> Result<i64> {
    header.map(|h| h.revision()).ok_or_else(|| Error::Internal("etcd response without header".into()))
}

#[async_trait]
impl Store for EtcdStore {
    async fn create(&self, key: &str, value: Vec<u8>) -> Result<i64> {
        let size = value.len();
        let txn = Txn::new()
            .when([Compare::create_revision(key, CompareOp::Equal, 0)])
            .and_then([TxnOp::put(key, value, None)])
            .or_else([TxnOp::get(key, None)]);
        let resp = self.write_txn(key, size, txn).await?;
        if resp.succeeded() { revision_of(resp.header()) } else { Err(Error::AlreadyExists { key: key.to_string() }) }
    }

    async fn get(&self, key: &str) -> Result<KeyValue> {
        let resp = self.timed(self.kv().get(key, None)).await?;
        match resp.kvs().first() {
            Some(found) => to_kv(found),
            None => Err(Error::NotFound { key: key.to_string() }),
        }
    }

    async fn update(&self, key: &str, expected: i64, value: Vec<u8>) -> Result<i64> {
        let size = value.len();
        let txn = Txn::new()
            .when([Compare::mod_revision(key, CompareOp::Equal, expected)])
            .and_then([TxnOp::put(key, value, None)])
            .or_else([TxnOp::get(key, None)]);
        let resp = self.write_txn(key, size, txn).await?;
        if resp.succeeded() {
            return revision_of(resp.header());
        }
        match Self::current_from(&resp)? {
            Some(current) => Err(Error::Conflict { key: key.to_string(), expected, actual: current.mod_revision }),
            None => Err(Error::NotFound { key: key.to_string() }),
        }
    }

    async fn delete(&self, key: &str, expected: Option<i64>) -> Result<(KeyValue, i64)> {
        let delete = TxnOp::delete(key, Some(DeleteOptions::new().with_prev_key()));
        let txn = match expected {
            Some(rev) => Txn::new()
                .when([Compare::mod_revision(key, CompareOp::Equal, rev)])
                .and_then([delete])
                .or_else([TxnOp::get(key, None)]),
            None => Txn::new().and_then([delete]),
        };
        let resp = self.txn(txn).await?;
        if !resp.succeeded() {
            return match Self::current_from(&resp)? {
                Some(current) => Err(Error::Conflict {
                    key: key.to_string(),
                    expected: expected.unwrap_or_default(),
                    actual: current.mod_revision,
                }),
                None => Err(Error::NotFound { key: key.to_string() }),
            };
        }
        let revision = revision_of(resp.header())?;
        for op in resp.op_responses() {
            if let TxnOpResponse::Delete(deleted) = op
                && let Some(prev) = deleted.prev_kvs().first()
            {
                return Ok((to_kv(prev)?, revision));
            }
        }
        Err(Error::NotFound { key: key.to_string() })
    }

    async fn list(&self, prefix: &str, options: ListOptions) -> Result<ListPage> {
        let (mut start, revision) = match &options.continue_from {
            Some(token) => (format!("{prefix}{}", token.start), Some(token.revision)),
            None => (prefix.to_string(), options.revision.filter(|r| *r > 0)),
        };
        let limit = options.limit.filter(|l| *l > 0);
        // Read in pages of at most PAGE_SIZE keys, all at the first page's revision, so no one
        // response has to hold the whole collection; stop at `limit` or the end.
        let mut items = Vec::new();
        let mut revision = revision;
        let mut count = 0;
        let more = loop {
            let want = limit.map_or(PAGE_SIZE, |l| (l - items.len() as i64).min(PAGE_SIZE));
            let mut get = GetOptions::new().with_range(prefix_end(prefix)).with_limit(want);
            if let Some(rev) = revision {
                get = get.with_revision(rev);
            }
            let resp = match self.timed(self.kv().get(start.as_str(), Some(get))).await {
                Err(Error::Expired { .. }) => {
                    return Err(Error::Expired { requested: revision.unwrap_or_default(), compacted: 0 });
                }
                Err(Error::FutureRevision { .. }) => {
                    let current = self.current_revision().await.unwrap_or_default();
                    return Err(Error::FutureRevision { requested: revision.unwrap_or_default(), current });
                }
                other => other?,
            };
            if revision.is_none() {
                revision = Some(revision_of(resp.header())?);
            }
            if items.is_empty() {
                count = resp.count();
            }
            items.extend(resp.kvs().iter().map(to_kv).collect::<Result<Vec<_>>>()?);
            let (Some(last), true) = (items.last(), resp.more()) else { break false };
            if limit.is_some_and(|l| items.len() as i64 >= l) {
                break true;
            }
            start = format!("{}\u{0}", last.key);
        };
        let revision = revision.unwrap_or_default();
        let next = match (more, items.last()) {
            (true, Some(last)) => Some(Continue {
                revision,
                start: format!("{}\u{0}", last.key.strip_prefix(prefix).unwrap_or(&last.key)),
            }),
            _ => None,
        };
        let remaining = limit.map(|_| (count - items.len() as i64).max(0));
        Ok(ListPage { items, revision, next, remaining })
    }

    async fn watch(&self, prefix: &str, after_revision: i64, progress_every: Option<Duration>) -> Result<WatchStream> {
        let options = WatchOptions::new().with_prefix().with_prev_key().with_start_revision(after_revision + 1);
        let mut client = self.client.watch_client().max_decoding_message_size(MAX_RESPONSE_BYTES);
        let stream = self.timed(client.watch(prefix, Some(options))).await?;
        let (sender, responses) = stream.split();
        let ticker = progress_every.map(|every| {
            let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            ticker
        });
        let state = WatchState { sender, responses, ticker, pending: VecDeque::new(), done: false, after_revision };
        Ok(Box::pin(futures::stream::unfold(state, WatchState::next)))
    }

    async fn written_since(&self, prefix: &str, since: i64) -> Result<PrefixSummary> {
        // etcd reads the whole range for the filter, but sends back only the keys it keeps,
        // and `count` is that of the whole range.
        let get = GetOptions::new().with_range(prefix_end(prefix)).with_keys_only().with_min_mod_revision(since + 1);
        let resp = self.timed(self.kv().get(prefix, Some(get))).await?;
        let written = resp.kvs().iter().map(|kv| to_kv(kv).map(|kv| kv.key)).collect::<Result<Vec<_>>>()?;
        Ok(PrefixSummary { revision: revision_of(resp.header())?, count: resp.count(), written })
    }

    async fn current_revision(&self) -> Result<i64> {
        let resp = self.timed(self.kv().get("/", Some(GetOptions::new().with_count_only()))).await?;
        revision_of(resp.header())
    }

    async fn ping(&self) -> Result<()> {
        self.current_revision().await.map(|_| ())
    }

    async fn compact(&self, revision: i64) -> Result<()> {
        match self.timed(self.kv().compact(revision, Some(etcd_client::CompactionOptions::new()))).await {
            // Someone (another apiserver) compacted further already: nothing to do.
            Ok(_) | Err(Error::Expired { .. }) => Ok(()),
            Err(Error::FutureRevision { .. }) => {
                let current = self.current_revision().await.unwrap_or_default();
                Err(Error::FutureRevision { requested: revision, current })
            }
            Err(e) => Err(e),
        }
    }
}

/// The state of one watch stream: etcd's responses are unpacked into single events, and a
/// progress request is sent on every tick so that a quiet watch still yields bookmarks.
struct WatchState {
    sender: WatchRequestSender,
    responses: WatchResponseStream,
    ticker: Option<tokio::time::Interval>,
    pending: VecDeque<WatchEvent>,
    done: bool,
    after_revision: i64,
}

impl WatchState {
    async fn next(mut self) -> Option<(Result<WatchEvent>, Self)> {
        loop {
            if let Some(event) = self.pending.pop_front() {
                return Some((Ok(event), self));
            }
            if self.done {
                return None;
            }
            let response = match &mut self.ticker {
                Some(ticker) => tokio::select! {
                    response = self.responses.next() => response,
                    _ = ticker.tick() => {
                        // A failed request means the stream is gone; the next read reports it.
                        let _ = self.sender.request_progress().await;
                        continue;
                    }
                },
                None => self.responses.next().await,
            };
            match response {
                None => {
                    self.done = true;
                    return Some((Err(Error::Unavailable("etcd closed the watch".into())), self));
                }
                Some(Err(e)) => {
                    self.done = true;
                    return Some((Err(map_err(e)), self));
                }
                Some(Ok(resp)) => {
                    if resp.compact_revision() > 0 {
                        self.done = true;
                        let err = Error::Expired { requested: self.after_revision, compacted: resp.compact_revision() };
                        return Some((Err(err), self));
                    }
                    if resp.canceled() {
                        self.done = true;
                        let err = Error::Unavailable(format!("etcd canceled the watch: {}", resp.cancel_reason()));
                        return Some((Err(err), self));
                    }
                    if resp.events().is_empty() {
                        if !resp.created()
                            && let Some(header) = resp.header()
                        {
                            self.pending.push_back(WatchEvent::Progress { revision: header.revision() });
                        }
                        continue;
                    }
                    for event in resp.events() {
                        match self.convert(event) {
                            Ok(Some(e)) => self.pending.push_back(e),
                            Ok(None) => {}
                            Err(e) => {
                                self.done = true;
                                return Some((Err(e), self));
                            }
                        }
                    }
                }
            }
        }
    }

    fn convert(&self, event: &etcd_client::Event) -> Result<Option<WatchEvent>> {
        let Some(kv) = event.kv() else { return Ok(None) };
        let prev = event.prev_kv().map(to_kv).transpose()?;
        Ok(Some(match event.event_type() {
            EventType::Put => WatchEvent::Put { kv: to_kv(kv)?, prev },
            EventType::Delete => WatchEvent::Delete {
                key: kv.key_str().map_err(|e| Error::Internal(e.to_string()))?.to_string(),
                revision: kv.mod_revision(),
                prev,
            },
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_end_is_the_first_key_after_the_prefix() {
        assert_eq!(prefix_end("/registry/pods/"), b"/registry/pods0".to_vec());
        assert_eq!(prefix_end("a\u{7f}"), b"a\x80".to_vec());
    }
}
