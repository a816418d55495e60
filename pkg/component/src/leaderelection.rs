//! Leader election through a `coordination.k8s.io/v1` Lease, as client-go's
//! `leaderelection` package does it, so that two copies of a component can run and only
//! one acts.
//!
//! How it works: the Lease names its holder and when it last renewed. A candidate that
//! finds no Lease creates one naming itself; a candidate that finds one held by someone
//! else waits until that holder has not renewed for `lease_duration` — measured on the
//! candidate's own clock from when it first saw the current record, so clocks of
//! different machines never need to agree — then takes it over with a write carrying the
//! Lease's resourceVersion. Two candidates racing for it cannot both win: the apiserver
//! accepts only one of the two writes (the other gets 409 Conflict).
//!
//! What it keeps true: at most one candidate believes it leads at a time, provided a
//! leader stops acting when it cannot renew within `renew_deadline`, which is shorter than
//! `lease_duration` (the token given to `lead` is cancelled then).
//! Not promised: a leader learns of losing the Lease instantly; it learns at its next
//! renewal, within `retry_period`.

use std::future::Future;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use rkube_client::{Api, Client, PostParams};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Which Lease to hold, as whom, and the timing (client-go's defaults: 15 s, 10 s, 2 s).
#[derive(Debug, Clone)]
pub struct LeaderElectionConfig {
    /// Namespace of the Lease (usually `kube-system`).
    pub namespace: String,
    /// Name of the Lease (usually the component's name).
    pub name: String,
    /// This candidate's identity, unique among candidates (e.g. hostname + random suffix).
    pub identity: String,
    /// How long a holder that stopped renewing keeps the Lease before others take it.
    pub lease_duration: Duration,
    /// How long the leader keeps trying to renew before it gives up leading.
    pub renew_deadline: Duration,
    /// How often candidates try to acquire and the leader renews.
    pub retry_period: Duration,
}

impl LeaderElectionConfig {
    /// A config with client-go's default timing.
    pub fn new(namespace: &str, name: &str, identity: &str) -> Self {
        LeaderElectionConfig {
            namespace: namespace.into(),
            name: name.into(),
            identity: identity.into(),
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
        }
    }
}

/// The Lease record as last observed, and when (on our clock) it was first seen.
#[derive(Debug, Clone)]
struct Observed {
    holder: String,
    renew_time: Option<MicroTime>,
    since: Instant,
}

/// Runs a component's work only while this process holds the Lease.
pub struct LeaderElector {
    api: Api<Lease>,
    config: LeaderElectionConfig,
    leading: Arc<AtomicBool>,
    observed: Mutex<Option<Observed>>,
}

impl std::fmt::Debug for LeaderElector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LeaderElector").field("config", &self.config).field("leading", &self.is_leader()).finish()
    }
}

impl LeaderElector {
    /// A candidate for the Lease described by `config`.
    pub fn new(client: Client, config: LeaderElectionConfig) -> Self {
        LeaderElector {
            api: Api::namespaced(client, &config.namespace),
            config,
            leading: Arc::new(AtomicBool::new(false)),
            observed: Mutex::new(None),
        }
    }

    /// Whether this candidate currently leads.
    pub fn is_leader(&self) -> bool {
        self.leading.load(Ordering::Acquire)
    }

    /// Waits until this process holds the Lease, then runs `lead` with a token that is
    /// cancelled when leadership is lost or `shutdown` is cancelled; returns when `lead`
    /// returns. On shutdown the Lease is released so another candidate takes over at once.
    /// A component that loses leadership should exit, as Kubernetes components do.
    pub async fn run<F, Fut>(&self, shutdown: &CancellationToken, lead: F) -> Result<(), rkube_client::Error>
    where
        F: FnOnce(CancellationToken) -> Fut,
        Fut: Future<Output = ()>,
    {
        loop {
            match self.try_acquire_or_renew().await {
                Ok(true) => break,
                Ok(false) => {}
                Err(e) => tracing::warn!(error = %e, lease = %self.config.name, "cannot acquire the lease yet"),
            }
            tokio::select! {
                _ = shutdown.cancelled() => return Ok(()),
                _ = tokio::time::sleep(self.jittered(self.config.retry_period)) => {}
            }
        }
        self.leading.store(true, Ordering::Release);
        tracing::info!(lease = %self.config.name, identity = %self.config.identity, "became leader");
        let token = shutdown.child_token();
        let work = lead(token.clone());
        tokio::pin!(work);
        tokio::select! {
            _ = &mut work => {}
            _ = self.keep_renewing(&token) => {
                token.cancel();
                work.await;
            }
        }
        token.cancel();
        let lost = !shutdown.is_cancelled();
        self.leading.store(false, Ordering::Release);
        if lost {
            tracing::warn!(lease = %self.config.name, "lost leadership");
        } else if let Err(e) = self.release().await {
            tracing::warn!(error = %e, lease = %self.config.name, "could not release the lease");
        }
        Ok(())
    }

    /// Renews every `retry_period`; returns when a renewal has failed for longer than
    /// `renew_deadline` or the token is cancelled.
    async fn keep_renewing(&self, token: &CancellationToken) {
        let mut last_renew = Instant::now();
        loop {
            tokio::select! {
                _ = token.cancelled() => return,
                _ = tokio::time::sleep(self.config.retry_period) => {}
            }
            match self.try_acquire_or_renew().await {
                Ok(true) => last_renew = Instant::now(),
                Ok(false) => return,
                Err(e) => tracing::warn!(error = %e, lease = %self.config.name, "lease renewal failed"),
            }
            if last_renew.elapsed() > self.config.renew_deadline {
                return;
            }
        }
    }

    fn jittered(&self, base: Duration) -> Duration {
        base.mul_f64(1.0 + rand::random::<f64>() * 0.2)
    }

    fn now() -> MicroTime {
        MicroTime(jiff::Timestamp::now())
    }

    fn lease_seconds(&self) -> i32 {
        i32::try_from(self.config.lease_duration.as_secs().max(1)).unwrap_or(i32::MAX)
    }

    /// One attempt: take the Lease if free or expired, renew it if ours. `Ok(false)` when
    /// someone else holds it (or won a race for it).
    async fn try_acquire_or_renew(&self) -> Result<bool, rkube_client::Error> {
        let me = &self.config.identity;
        let Some(mut lease) = self.api.get_opt(&self.config.name).await? else {
            let lease = Lease {
                metadata: ObjectMeta { name: Some(self.config.name.clone()), ..Default::default() },
                spec: Some(LeaseSpec {
                    holder_identity: Some(me.clone()),
                    lease_duration_seconds: Some(self.lease_seconds()),
                    acquire_time: Some(Self::now()),
                    renew_time: Some(Self::now()),
                    lease_transitions: Some(0),
                    ..Default::default()
                }),
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(true),
                Err(e) if e.is_already_exists() => Ok(false),
                Err(e) => Err(e),
            };
        };
        let spec = lease.spec.clone().unwrap_or_default();
        let holder = spec.holder_identity.clone().unwrap_or_default();
        if !holder.is_empty()
            && &holder != me
            && !self.expired(&holder, spec.renew_time.as_ref(), spec.lease_duration_seconds)
        {
            return Ok(false);
        }
        let transitions = spec.lease_transitions.unwrap_or(0) + i32::from(&holder != me);
        lease.spec = Some(LeaseSpec {
            holder_identity: Some(me.clone()),
            lease_duration_seconds: Some(self.lease_seconds()),
            acquire_time: if &holder == me { spec.acquire_time } else { Some(Self::now()) },
            renew_time: Some(Self::now()),
            lease_transitions: Some(transitions),
            ..spec
        });
        match self.api.replace(&self.config.name, &PostParams::default(), &lease).await {
            Ok(_) => Ok(true),
            Err(e) if e.is_conflict() => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Whether `holder` has not renewed for its lease duration, on our clock.
    fn expired(&self, holder: &str, renew_time: Option<&MicroTime>, seconds: Option<i32>) -> bool {
        let Ok(mut observed) = self.observed.lock() else { return false };
        let changed = observed.as_ref().is_none_or(|o| o.holder != holder || o.renew_time.as_ref() != renew_time);
        if changed {
            *observed =
                Some(Observed { holder: holder.to_string(), renew_time: renew_time.cloned(), since: Instant::now() });
            return false;
        }
        let duration =
            seconds.map_or(self.config.lease_duration, |s| Duration::from_secs(u64::try_from(s.max(1)).unwrap_or(1)));
        observed.as_ref().is_some_and(|o| o.since.elapsed() > duration)
    }

    /// Gives the Lease up (empty holder) so another candidate can take it at once.
    async fn release(&self) -> Result<(), rkube_client::Error> {
        let Some(mut lease) = self.api.get_opt(&self.config.name).await? else { return Ok(()) };
        let Some(spec) = lease.spec.as_mut() else { return Ok(()) };
        if spec.holder_identity.as_deref() != Some(self.config.identity.as_str()) {
            return Ok(());
        }
        spec.holder_identity = None;
        spec.lease_duration_seconds = Some(1);
        spec.renew_time = Some(Self::now());
        self.api.replace(&self.config.name, &PostParams::default(), &lease).await.map(|_| ())
    }
}
