//! The arithmetic of a rollout, apart from any I/O: how many pods the new ReplicaSet may have
//! and how far the old ones may shrink, from `maxSurge` and `maxUnavailable`.
//!
//! Kubernetes' names: `ResolveFenceposts`, `NewRSNewReplicas`, `reconcileOldReplicaSets`,
//! `cleanupUnhealthyReplicas`, `scaleDownOldReplicaSetsForRollingUpdate` (pkg/controller/deployment).
//!
//! What it keeps true (tests below): the total of `spec.replicas` never goes above
//! `replicas + maxSurge`; old ReplicaSets shrink only by as many pods as are available beyond
//! `replicas - maxUnavailable`, counting for each ReplicaSet at most `spec.replicas` available
//! pods (pods above that are about to be deleted and must not be counted on); step after step,
//! a rollout whose pods become available ends with every pod on the new ReplicaSet
//! (`a_rolling_update_stays_within_surge_and_unavailability_and_finishes`).

use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

/// One ReplicaSet as a rolling update sees it: its size and how many of its pods serve.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplicaSetAvailability {
    /// `spec.replicas`.
    pub spec: i32,
    /// Available pods it owns, counted at most up to `spec`.
    pub available: i32,
}

/// A percentage or a count, resolved against `total`; percentages round up when `round_up`.
fn scaled(value: Option<&IntOrString>, default_percent: i32, total: i32, round_up: bool) -> i32 {
    match value {
        Some(IntOrString::Int(count)) => (*count).max(0),
        Some(IntOrString::String(text)) => {
            let percent: i64 = text.trim_end_matches('%').parse().unwrap_or(i64::from(default_percent));
            percent_of(percent, total, round_up)
        }
        None => percent_of(i64::from(default_percent), total, round_up),
    }
}

fn percent_of(percent: i64, total: i32, round_up: bool) -> i32 {
    let product = percent.max(0) * i64::from(total.max(0));
    let value = if round_up { (product + 99) / 100 } else { product / 100 };
    i32::try_from(value).unwrap_or(i32::MAX)
}

/// `(maxSurge, maxUnavailable)` as pod counts for `replicas` (defaults 25% each; surge rounds
/// up, unavailable down; both 0 would deadlock, so unavailable becomes 1 then).
pub fn fenceposts(max_surge: Option<&IntOrString>, max_unavailable: Option<&IntOrString>, replicas: i32) -> (i32, i32) {
    let surge = scaled(max_surge, 25, replicas, true);
    let unavailable = scaled(max_unavailable, 25, replicas, false);
    if surge == 0 && unavailable == 0 { (0, 1) } else { (surge, unavailable) }
}

/// The new ReplicaSet's `spec.replicas` for this step: grow towards `replicas` without the total
/// passing `replicas + max_surge`.
pub fn new_replica_set_replicas(replicas: i32, max_surge: i32, total_spec: i32, new_spec: i32) -> i32 {
    if new_spec >= replicas {
        return replicas;
    }
    let room = (replicas + max_surge - total_spec).max(0);
    new_spec + room.min(replicas - new_spec)
}

/// The old ReplicaSets' new `spec.replicas` (same order as `old`, which must be oldest first).
pub fn scale_down_old(
    replicas: i32,
    max_unavailable: i32,
    new: &ReplicaSetAvailability,
    old: &[ReplicaSetAvailability],
) -> Vec<i32> {
    let mut specs: Vec<i32> = old.iter().map(|rs| rs.spec).collect();
    let old_total: i32 = specs.iter().sum();
    if old_total == 0 {
        return specs;
    }
    let all = new.spec + old_total;
    let min_available = replicas - max_unavailable;
    let new_unavailable = new.spec - new.available;
    let max_scaled_down = all - min_available - new_unavailable;
    if max_scaled_down <= 0 {
        return specs;
    }
    // First the old pods that are not available anyway: removing them costs nothing.
    let mut cleaned = 0;
    for (spec, rs) in specs.iter_mut().zip(old) {
        let unhealthy = (*spec - rs.available).max(0);
        let cut = unhealthy.min(max_scaled_down - cleaned);
        *spec -= cut;
        cleaned += cut;
    }
    // Then available ones, as long as enough stay available.
    let available: i32 = new.available + old.iter().zip(&specs).map(|(rs, spec)| rs.available.min(*spec)).sum::<i32>();
    let mut budget = available - min_available;
    for spec in &mut specs {
        if budget <= 0 {
            break;
        }
        let cut = (*spec).min(budget);
        *spec -= cut;
        budget -= cut;
    }
    specs
}

/// One step of a rolling update: the new ReplicaSet's `spec.replicas` and the old ones' (in
/// the order given, oldest first).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RollingStep {
    /// The new ReplicaSet's `spec.replicas`.
    pub new: i32,
    /// The old ReplicaSets' `spec.replicas`.
    pub old: Vec<i32>,
}

/// One step of a rolling update: grow the new ReplicaSet ([`new_replica_set_replicas`]), then
/// shrink the old ones ([`scale_down_old`]) counting the new one at its new size with at most
/// that many of its `new_available` pods.
///
/// `total_spec` is the sum of every ReplicaSet's `spec.replicas` now, `new_spec` the new
/// ReplicaSet's (0 when it does not exist yet), and `old` the old ones, oldest first.
pub fn rolling_update_step(
    replicas: i32,
    max_surge: i32,
    max_unavailable: i32,
    total_spec: i32,
    new_spec: i32,
    new_available: i32,
    old: &[ReplicaSetAvailability],
) -> RollingStep {
    let new = new_replica_set_replicas(replicas, max_surge, total_spec, new_spec);
    let new_view = ReplicaSetAvailability { spec: new, available: new_available.min(new) };
    RollingStep { new, old: scale_down_old(replicas, max_unavailable, &new_view, old) }
}

/// A ReplicaSet as proportional scaling sees it: its size now and the Deployment size it was
/// last scaled for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScaledReplicaSet {
    /// `spec.replicas`.
    pub spec: i32,
    /// Its `deployment.kubernetes.io/max-replicas` annotation: the Deployment's
    /// `replicas + maxSurge` when it was last scaled.
    pub max_replicas: Option<i32>,
}

/// New `spec.replicas` for the active ReplicaSets (`sets`, newest first) when the Deployment was
/// scaled to `replicas` in the middle of a rollout: each keeps its share of the pods
/// (Kubernetes' `scale` with `GetProportion`), so a half-done rollout stays half done, and a
/// broken new template does not get all the new pods. Leftovers go to the largest set.
pub fn proportional_scale(replicas: i32, max_surge: i32, status_replicas: i32, sets: &[ScaledReplicaSet]) -> Vec<i32> {
    let allowed = if replicas > 0 { replicas + max_surge } else { 0 };
    let mut specs: Vec<i32> = sets.iter().map(|set| set.spec).collect();
    let to_add = allowed - specs.iter().sum::<i32>();
    if to_add == 0 || sets.is_empty() {
        return specs;
    }
    // Largest first; among equals, newer first when growing and older first when shrinking.
    let mut order: Vec<usize> = (0..sets.len()).collect();
    order.sort_by(|&a, &b| {
        let tie = if to_add > 0 { a.cmp(&b) } else { b.cmp(&a) };
        sets[b].spec.cmp(&sets[a].spec).then(tie)
    });
    let mut added = 0;
    for &index in &order {
        let set = &sets[index];
        let fraction = if replicas == 0 {
            -set.spec
        } else {
            let annotated = set.max_replicas.unwrap_or(status_replicas);
            if annotated <= 0 {
                0
            } else {
                let share = (f64::from(set.spec) * f64::from(allowed) / f64::from(annotated)).round();
                // A share of at most `allowed` pods: always within i32.
                #[allow(clippy::cast_possible_truncation)]
                let share = share as i32;
                share - set.spec
            }
        };
        let room = to_add - added;
        let step = if to_add > 0 { fraction.clamp(0, room) } else { fraction.clamp(room, 0) };
        specs[index] += step;
        added += step;
    }
    if added != to_add {
        let first = order[0];
        specs[first] = (specs[first] + to_add - added).max(0);
    }
    specs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fenceposts_round_surge_up_and_unavailable_down_and_never_both_zero() {
        let pct = |s: &str| IntOrString::String(s.into());
        assert_eq!(fenceposts(Some(&pct("25%")), Some(&pct("25%")), 3), (1, 0));
        assert_eq!(fenceposts(None, None, 10), (3, 2));
        assert_eq!(fenceposts(Some(&IntOrString::Int(0)), Some(&IntOrString::Int(0)), 3), (0, 1));
    }

    #[test]
    fn the_new_replica_set_grows_only_within_the_surge() {
        assert_eq!(new_replica_set_replicas(3, 1, 3, 0), 1);
        assert_eq!(new_replica_set_replicas(3, 1, 4, 1), 1, "at the surge limit: wait");
        assert_eq!(new_replica_set_replicas(3, 1, 3, 1), 2);
        assert_eq!(new_replica_set_replicas(3, 1, 5, 4), 3, "never above replicas");
    }

    #[test]
    fn with_max_unavailable_zero_old_pods_go_only_as_new_ones_become_available() {
        let new = ReplicaSetAvailability { spec: 1, available: 0 };
        assert_eq!(scale_down_old(3, 0, &new, &[ReplicaSetAvailability { spec: 3, available: 3 }]), vec![3]);
        let new = ReplicaSetAvailability { spec: 1, available: 1 };
        assert_eq!(scale_down_old(3, 0, &new, &[ReplicaSetAvailability { spec: 3, available: 3 }]), vec![2]);
    }

    #[test]
    fn pods_above_spec_are_not_counted_as_available() {
        // The old ReplicaSet was already cut to 2 but still has 3 pods: only 2 count.
        let new = ReplicaSetAvailability { spec: 2, available: 2 };
        assert_eq!(scale_down_old(3, 0, &new, &[ReplicaSetAvailability { spec: 2, available: 2 }]), vec![1]);
    }

    #[test]
    fn unavailable_old_pods_are_removed_first() {
        let new = ReplicaSetAvailability { spec: 1, available: 0 };
        assert_eq!(scale_down_old(3, 1, &new, &[ReplicaSetAvailability { spec: 3, available: 1 }]), vec![2]);
    }

    #[test]
    fn a_rolling_step_surges_the_new_replica_set_and_keeps_old_pods_until_new_ones_are_available() {
        let old = [ReplicaSetAvailability { spec: 3, available: 3 }];
        // maxSurge 1, maxUnavailable 0, nothing new yet: one surge pod, no old pod goes.
        assert_eq!(rolling_update_step(3, 1, 0, 3, 0, 0, &old), RollingStep { new: 1, old: vec![3] });
        // That pod is available: one old pod may go, and the new one waits for room.
        assert_eq!(rolling_update_step(3, 1, 0, 4, 1, 1, &old), RollingStep { new: 1, old: vec![2] });
    }

    #[test]
    fn a_rolling_step_counts_no_more_new_pods_available_than_its_new_size() {
        // 3 new pods available (left over from a larger size) but the new size is 1: only 1
        // counts, so with maxUnavailable 0 one old pod may go, not all 3.
        let old = [ReplicaSetAvailability { spec: 3, available: 3 }];
        assert_eq!(rolling_update_step(3, 1, 0, 3, 0, 3, &old), RollingStep { new: 1, old: vec![2] });
    }

    #[test]
    fn a_rolling_update_stays_within_surge_and_unavailability_and_finishes() {
        for (replicas, surge, unavailable) in [(3, 1, 0), (10, 3, 2), (5, 0, 1), (4, 2, 2), (1, 1, 0)] {
            // Every pod becomes available as soon as it exists; pods of shrunk sets go at once.
            let (mut new, mut old) = (0, vec![replicas, 0]);
            for step in 0.. {
                assert!(step < 100, "{replicas}/{surge}/{unavailable}: no end in sight");
                let available: Vec<ReplicaSetAvailability> =
                    old.iter().map(|&spec| ReplicaSetAvailability { spec, available: spec }).collect();
                let total = new + old.iter().sum::<i32>();
                let next = rolling_update_step(replicas, surge, unavailable, total, new, new, &available);
                assert!(next.new + old.iter().sum::<i32>() <= replicas + surge, "surge exceeded");
                let still_available = new + next.old.iter().sum::<i32>();
                assert!(still_available >= replicas - unavailable, "too many unavailable");
                if (next.new, &next.old) == (new, &old) {
                    break;
                }
                (new, old) = (next.new, next.old);
            }
            assert_eq!((new, old.iter().sum::<i32>()), (replicas, 0), "{replicas}/{surge}/{unavailable}");
        }
    }

    #[test]
    fn scaling_mid_rollout_keeps_each_replica_set_s_share() {
        // 4 old pods and 1 new (stuck) one at replicas 4 + surge 1; scaled to 8 (+ surge 1).
        let sets =
            [ScaledReplicaSet { spec: 1, max_replicas: Some(5) }, ScaledReplicaSet { spec: 4, max_replicas: Some(5) }];
        assert_eq!(proportional_scale(8, 1, 5, &sets), vec![2, 7]);
        // And back down to 4: each shrinks in proportion.
        let sets =
            [ScaledReplicaSet { spec: 2, max_replicas: Some(9) }, ScaledReplicaSet { spec: 7, max_replicas: Some(9) }];
        assert_eq!(proportional_scale(4, 1, 9, &sets), vec![1, 4]);
        assert_eq!(proportional_scale(0, 1, 9, &sets), vec![0, 0]);
    }
}
