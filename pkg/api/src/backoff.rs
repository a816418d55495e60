//! Exponential backoff with jitter between attempts, reset after a quiet period: the one
//! retry delay of rkube (apimachinery's `wait.Backoff`), used wherever a loop retries
//! something that failed — the reflector's reconnects, the apiserver's bootstrap, the
//! kubelet's registration, Lease renewals, pod syncs and image pulls.
//!
//! Built on `backon`'s [`ExponentialBuilder`] (the `backoff` crate is unmaintained), with the
//! two things a retry loop needs that `backon` lacks: it never runs out (`without_max_times`;
//! `backon` stops after 3 by default) and it resets itself once no delay was asked for during
//! [`BackoffConfig::reset_after`], i.e. after a stable stretch of watching.
//!
//! What it keeps true (tests below):
//! - the first delay is at least `initial`, and each next one grows by `factor`;
//! - no delay is longer than `max`;
//! - after `reset_after` without asking for a delay, the next delay starts from `initial` again.
//!
//! Jitter: a delay `d` becomes a random value in `[d, 2d)` (client-go's jitter factor 1.0),
//! then is clamped to `max`. At the cap the delays are therefore all `max`; callers that went
//! down together still retry at different moments because their earlier delays differed.
//! client-go calls this the reflector's `backoffManager` (800 ms, ×2, cap 30 s, reset after
//! 2 min, the defaults here too).
//!
//! Time is passed in (`next_delay(now)`), so the type does no I/O and tests choose the
//! clock; async callers pass `tokio::time::Instant::now().into_std()`, which follows tokio's
//! paused clock in tests.

use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use std::time::Instant;

/// How reconnect delays grow. The defaults are client-go's reflector defaults.
#[derive(Clone, Debug, PartialEq)]
pub struct BackoffConfig {
    /// The first delay (800 ms).
    pub initial: Duration,
    /// How much each delay grows over the previous one (2.0).
    pub factor: f32,
    /// No delay is longer than this (30 s).
    pub max: Duration,
    /// After this long without a delay asked for (a stable watch), start again from `initial`
    /// (2 min).
    pub reset_after: Duration,
    /// Randomise each delay `d` into `[d, 2d)` before clamping to `max` (on).
    pub jitter: bool,
}

impl Default for BackoffConfig {
    fn default() -> Self {
        BackoffConfig {
            initial: Duration::from_millis(800),
            factor: 2.0,
            max: Duration::from_secs(30),
            reset_after: Duration::from_secs(120),
            jitter: true,
        }
    }
}

/// A running backoff: the sequence of delays for consecutive failures.
#[derive(Debug)]
pub struct Backoff {
    config: BackoffConfig,
    builder: ExponentialBuilder,
    delays: <ExponentialBuilder as BackoffBuilder>::Backoff,
    /// When the last delay was handed out; `None` before the first or after a reset.
    last: Option<Instant>,
}

impl BackoffConfig {
    /// A configuration without jitter that starts at `initial`, doubles up to `max` and
    /// resets after `reset_after` without a failure.
    pub fn doubling(initial: Duration, max: Duration, reset_after: Duration) -> BackoffConfig {
        BackoffConfig { initial, factor: 2.0, max, reset_after, jitter: false }
    }
}

impl Backoff {
    /// A backoff at its start: the next delay is about `config.initial`.
    pub fn new(config: BackoffConfig) -> Backoff {
        let mut builder = ExponentialBuilder::new()
            .with_min_delay(config.initial)
            .with_max_delay(config.max)
            .with_factor(config.factor)
            .without_max_times();
        if config.jitter {
            builder = builder.with_jitter();
        }
        Backoff { delays: builder.build(), builder, config, last: None }
    }

    /// The delay to wait before the next attempt, asked for at `now`. Resets first if the last
    /// delay was handed out at least `reset_after` before `now`.
    pub fn next_delay(&mut self, now: Instant) -> Duration {
        if let Some(last) = self.last
            && now.saturating_duration_since(last) >= self.config.reset_after
        {
            self.reset();
        }
        self.last = Some(now);
        // `without_max_times` makes the iterator endless; `max` is the honest fallback anyway.
        self.delays.next().unwrap_or(self.config.max).min(self.config.max)
    }

    /// Starts over: the next delay is about `initial` again.
    pub fn reset(&mut self) {
        self.delays = self.builder.build();
        self.last = None;
    }

    /// The configuration this backoff was built from.
    pub fn config(&self) -> &BackoffConfig {
        &self.config
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(jitter: bool) -> BackoffConfig {
        BackoffConfig {
            initial: Duration::from_millis(100),
            factor: 2.0,
            max: Duration::from_secs(2),
            reset_after: Duration::from_secs(60),
            jitter,
        }
    }

    #[test]
    fn delays_grow_by_the_factor_and_stop_at_the_cap() {
        let mut backoff = Backoff::new(config(false));
        let now = Instant::now();
        let delays: Vec<u128> = (0..10).map(|_| backoff.next_delay(now).as_millis()).collect();
        assert_eq!(delays, [100, 200, 400, 800, 1600, 2000, 2000, 2000, 2000, 2000]);
    }

    #[test]
    fn backoff_never_runs_out() {
        let mut backoff = Backoff::new(config(false));
        let now = Instant::now();
        for _ in 0..1000 {
            assert!(backoff.next_delay(now) <= Duration::from_secs(2));
        }
    }

    #[test]
    fn jittered_delays_stay_between_the_base_delay_and_the_cap() {
        let mut backoff = Backoff::new(config(true));
        let now = Instant::now();
        let mut base = Duration::from_millis(100);
        for _ in 0..20 {
            let delay = backoff.next_delay(now);
            assert!(delay >= base.min(Duration::from_secs(2)), "{delay:?} < {base:?}");
            assert!(delay < base * 2 || delay == Duration::from_secs(2), "{delay:?} >= 2 × {base:?}");
            assert!(delay <= Duration::from_secs(2), "{delay:?} above the cap");
            base = (base * 2).min(Duration::from_secs(2));
        }
    }

    #[test]
    fn backoff_resets_after_a_quiet_period() {
        let mut backoff = Backoff::new(config(false));
        let start = Instant::now();
        for _ in 0..6 {
            backoff.next_delay(start);
        }
        assert_eq!(backoff.next_delay(start + Duration::from_secs(59)), Duration::from_secs(2));
        // 60 s after the last delay: a stable watch; start over.
        let later = start + Duration::from_secs(59) + Duration::from_secs(60);
        assert_eq!(backoff.next_delay(later).as_millis(), 100);
        assert_eq!(backoff.next_delay(later).as_millis(), 200);
    }

    #[test]
    fn explicit_reset_starts_from_the_initial_delay() {
        let mut backoff = Backoff::new(config(false));
        let now = Instant::now();
        backoff.next_delay(now);
        backoff.next_delay(now);
        backoff.reset();
        assert_eq!(backoff.next_delay(now).as_millis(), 100);
    }
}
