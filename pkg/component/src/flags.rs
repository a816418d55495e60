//! Command-line flags every component shares, as clap `Args` to `#[command(flatten)]` into a
//! main's flags, so that the scheduler and the controller-manager spell and parse them alike
//! (names as in Kubernetes' component-base).

use std::time::Duration;

use crate::leaderelection::LeaderElectionConfig;

/// The `--leader-elect*` flags.
#[derive(Clone, Debug, clap::Args)]
pub struct LeaderElectionFlags {
    /// Act only while holding the leader Lease, so that several copies can run and only one
    /// acts; the others wait to take over. Turn off with --leader-elect=false when running
    /// exactly one copy.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub leader_elect: bool,

    /// Namespace of the leader Lease.
    #[arg(long, default_value = "kube-system")]
    pub leader_elect_resource_namespace: String,

    /// Name of the leader Lease (default: the component's own, rkube-scheduler or
    /// rkube-controller-manager).
    #[arg(long)]
    pub leader_elect_resource_name: Option<String>,

    /// How long a leader that stopped renewing keeps the Lease before another copy takes over
    /// (e.g. 15s, 1500ms).
    #[arg(long, default_value = "15s", value_parser = parse_duration)]
    pub leader_elect_lease_duration: Duration,

    /// How long the leader keeps trying to renew before it stops acting and exits.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub leader_elect_renew_deadline: Duration,

    /// How often copies try to take the Lease, and the leader renews it.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    pub leader_elect_retry_period: Duration,
}

impl LeaderElectionFlags {
    /// The election these flags ask for, as candidate `identity` for the Lease named
    /// `--leader-elect-resource-name` or `default_name`; `None` with `--leader-elect=false`.
    pub fn config(&self, default_name: &str, identity: &str) -> Option<LeaderElectionConfig> {
        self.leader_elect.then(|| {
            let name = self.leader_elect_resource_name.as_deref().unwrap_or(default_name);
            let mut election = LeaderElectionConfig::new(&self.leader_elect_resource_namespace, name, identity);
            election.lease_duration = self.leader_elect_lease_duration;
            election.renew_deadline = self.leader_elect_renew_deadline;
            election.retry_period = self.leader_elect_retry_period;
            election
        })
    }
}

/// Parses a duration flag (`15s`, `500ms`, `2m`; a bare number is seconds), as Kubernetes'
/// components read theirs.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    rkube_api::duration::parse(text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Flags {
        #[command(flatten)]
        election: LeaderElectionFlags,
    }

    #[test]
    fn leader_election_is_on_by_default_and_named_after_the_component() {
        let flags = Flags::parse_from(["x"]);
        let config = flags.election.config("rkube-scheduler", "me").expect("on by default");
        assert_eq!((config.namespace.as_str(), config.name.as_str()), ("kube-system", "rkube-scheduler"));
        assert_eq!(config.lease_duration, Duration::from_secs(15));
        let flags = Flags::parse_from([
            "x",
            "--leader-elect",
            "--leader-elect-resource-name=other",
            "--leader-elect-retry-period=500ms",
        ]);
        let config = flags.election.config("rkube-scheduler", "me").expect("on");
        assert_eq!((config.name.as_str(), config.retry_period), ("other", Duration::from_millis(500)));
        assert!(Flags::parse_from(["x", "--leader-elect=false"]).election.config("c", "me").is_none());
        assert!(Flags::try_parse_from(["x", "--leader-elect-lease-duration=forever"]).is_err());
    }
}
