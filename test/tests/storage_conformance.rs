//! The `Store` conformance suite (`rkube_storage::conformance`) against a real etcd through
//! `EtcdStore`: the same cases `MemoryStore` passes in `pkg/storage`, so that the in-memory
//! store cannot drift from what runs. When a case passes there and fails here, etcd is right.
//!
//! Each case gets its own etcd, because the compaction cases compact the whole store; one more
//! test runs every case in a row on one shared etcd, under one prefix each, as
//! `conformance::run_all` does for any store.

use std::time::Duration;

use rkube_storage::conformance;
use rkube_storage::{EtcdConfig, EtcdStore};
use rkube_tests::Etcd;

async fn connect(etcd: &Etcd) -> EtcdStore {
    let config =
        EtcdConfig { endpoints: vec![etcd.client_url.clone()], request_timeout: Duration::from_secs(10), tls: None };
    EtcdStore::connect(&config).await.expect("EtcdStore connects to the test etcd")
}

/// One test per conformance case, each on its own etcd.
macro_rules! etcd_cases {
    ($($case:ident),* $(,)?) => {$(
        #[tokio::test]
        async fn $case() {
            let etcd = Etcd::start().await.expect("etcd starts");
            let store = connect(&etcd).await;
            if let Err(failure) = conformance::$case(&store, "/conformance/").await {
                panic!("{failure}\netcd log tail:\n{}", etcd.log_tail(20));
            }
        }
    )*};
}
rkube_storage::for_each_conformance_case!(etcd_cases);

#[tokio::test]
async fn every_case_passes_one_after_another_on_one_shared_etcd() {
    let etcd = Etcd::start().await.expect("etcd starts");
    let store = connect(&etcd).await;
    if let Err(failed) = conformance::run_all(&store, "/conformance/").await {
        panic!("{failed}");
    }
}
