//! Restart policies and crash-loop back-off, as the Kubernetes kubelet applies them.

use std::time::Duration;

use crate::runtime::{ContainerState, Terminated};

/// One run of a container (containerd container `<uid>-<name>-<attempt>`).
pub(super) struct Run {
    pub(super) id: String,
    pub(super) attempt: u32,
    pub(super) image: String,
    pub(super) restart_policy: String,
    /// Whether a task was created (a run without one was interrupted during creation).
    pub(super) has_task: bool,
    pub(super) state: ContainerState,
}

/// Whether a container that exited with `exit_code` is restarted under `restart_policy`.
pub(super) fn restarts(restart_policy: &str, exit_code: i32) -> bool {
    match restart_policy {
        "Never" => false,
        "OnFailure" => exit_code != 0,
        _ => true,
    }
}

/// How long after `ended` restart number `restart` may start (Kubernetes' crash-loop back-off):
/// the first restart at once, then 10 s doubling up to 5 min; a run of 10 min or more resets it.
pub fn backoff(restart: u32, ended: &Terminated) -> Duration {
    const INITIAL: Duration = Duration::from_secs(10);
    const MAX: Duration = Duration::from_secs(300);
    const RESET_AFTER: jiff::SignedDuration = jiff::SignedDuration::from_secs(600);
    let ran_long = ended.started_at.is_some_and(|started| ended.finished_at.duration_since(started) >= RESET_AFTER);
    if restart <= 1 || ran_long {
        return Duration::ZERO;
    }
    INITIAL.saturating_mul(1 << (restart - 2).min(5)).min(MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::Timestamp;

    #[test]
    fn crash_loop_back_off_starts_at_once_then_doubles_from_ten_seconds_to_five_minutes() {
        let ended = |ran: i64| Terminated {
            exit_code: 1,
            reason: "Error".into(),
            started_at: Some(Timestamp::UNIX_EPOCH),
            finished_at: Timestamp::UNIX_EPOCH + jiff::SignedDuration::from_secs(ran),
        };
        let delays: Vec<u64> = (1..=8).map(|restart| backoff(restart, &ended(1)).as_secs()).collect();
        assert_eq!(delays, [0, 10, 20, 40, 80, 160, 300, 300]);
        assert_eq!(backoff(5, &ended(600)), Duration::ZERO, "10 min of running resets the back-off");
    }

    #[test]
    fn restart_policies_decide_which_exits_restart() {
        assert!(restarts("Always", 0) && restarts("Always", 1));
        assert!(!restarts("OnFailure", 0) && restarts("OnFailure", 1));
        assert!(!restarts("Never", 0) && !restarts("Never", 1));
    }
}
