//! Restart policies and crash-loop back-off, as the Kubernetes kubelet applies them: which run
//! of a container to start next, and when.
//!
//! What it keeps true (unit tests below): a container is restarted only when its policy says
//! so for its exit code; the first restart is at once, later ones wait 10 s doubling to 5 min,
//! and a run of 10 min or more resets the back-off; a run whose creation was interrupted (no
//! task) is finished rather than replaced.

use std::time::Duration;

use jiff::Timestamp;

use super::runs::Run;
use crate::runtime::{ContainerState, Terminated};

/// The run number to start next for a container with `runs` (oldest first) at `now`, or
/// `None` when nothing is to be started now: it runs, its policy does not restart it, or it is
/// backing off (CrashLoopBackOff: a later sync restarts it).
pub(super) fn next_attempt(runs: &[Run], restart_policy: &str, now: Timestamp) -> Option<u32> {
    let Some(latest) = runs.last() else { return Some(0) };
    if !latest.has_task {
        return Some(latest.attempt); // creation was interrupted: finish it
    }
    let ContainerState::Terminated(ended) = &latest.state else { return None };
    if !restarts(restart_policy, ended.exit_code) || now < ended.finished_at + backoff(latest.attempt + 1, ended) {
        return None;
    }
    Some(latest.attempt + 1)
}

/// Whether the container's last run ended, will be restarted, and waits out its crash-loop
/// back-off at `now`.
pub(super) fn backing_off(runs: &[Run], restart_policy: &str, now: Timestamp) -> bool {
    let Some(latest) = runs.last() else { return false };
    let ContainerState::Terminated(ended) = &latest.state else { return false };
    latest.has_task && restarts(restart_policy, ended.exit_code) && next_attempt(runs, restart_policy, now).is_none()
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
    fn the_next_run_is_the_first_an_interrupted_one_or_a_restart_once_the_back_off_is_over() {
        let run = |attempt: u32, has_task: bool, state: ContainerState| Run {
            id: format!("uid-app-{attempt}"),
            attempt,
            image: "busybox".into(),
            restart_policy: "Always".into(),
            has_task,
            state,
        };
        let exited = |code: i32| {
            ContainerState::Terminated(Terminated {
                exit_code: code,
                reason: "Error".into(),
                started_at: Some(Timestamp::UNIX_EPOCH),
                finished_at: Timestamp::UNIX_EPOCH,
            })
        };
        let now = Timestamp::UNIX_EPOCH;
        let creating = ContainerState::Waiting { reason: "ContainerCreating".into(), message: None };
        assert_eq!(next_attempt(&[], "Always", now), Some(0));
        assert_eq!(next_attempt(&[run(2, false, creating)], "Always", now), Some(2), "finish an interrupted start");
        let running = ContainerState::Running { started_at: now };
        assert_eq!(next_attempt(&[run(0, true, running)], "Always", now), None);
        assert_eq!(next_attempt(&[run(0, true, exited(1))], "Never", now), None);
        assert_eq!(next_attempt(&[run(0, true, exited(0))], "OnFailure", now), None);
        assert_eq!(next_attempt(&[run(0, true, exited(0))], "Always", now), Some(1), "the first restart is at once");
        let second = [run(0, true, exited(1)), run(1, true, exited(1))];
        assert_eq!(next_attempt(&second, "Always", now), None, "the second waits 10 s");
        let later = now + jiff::SignedDuration::from_secs(10);
        assert_eq!(next_attempt(&second, "Always", later), Some(2));
    }

    #[test]
    fn restart_policies_decide_which_exits_restart() {
        assert!(restarts("Always", 0) && restarts("Always", 1));
        assert!(!restarts("OnFailure", 0) && restarts("OnFailure", 1));
        assert!(!restarts("Never", 0) && !restarts("Never", 1));
    }
}
