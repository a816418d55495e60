//! The arithmetic of a rollout, apart from any I/O: how many pods the new ReplicaSet may have
//! and how far the old ones may shrink, from `maxSurge` and `maxUnavailable`.
//!
//! Kubernetes' names: `ResolveFenceposts`, `NewRSNewReplicas`, `reconcileOldReplicaSets`,
//! `cleanupUnhealthyReplicas`, `scaleDownOldReplicaSetsForRollingUpdate` (pkg/controller/deployment).
//!
//! What it keeps true (tests below): the total of `spec.replicas` never goes above
//! `replicas + maxSurge`; old ReplicaSets shrink only by as many pods as are available beyond
//! `replicas - maxUnavailable`, counting for each ReplicaSet at most `spec.replicas` available
//! pods (pods above that are about to be deleted and must not be counted on).

use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

/// One ReplicaSet as the rollout sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Replicas {
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
pub fn scale_down_old(replicas: i32, max_unavailable: i32, new: &Replicas, old: &[Replicas]) -> Vec<i32> {
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

/// A ReplicaSet as proportional scaling sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sized {
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
pub fn proportional_scale(replicas: i32, max_surge: i32, status_replicas: i32, sets: &[Sized]) -> Vec<i32> {
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
        let new = Replicas { spec: 1, available: 0 };
        assert_eq!(scale_down_old(3, 0, &new, &[Replicas { spec: 3, available: 3 }]), vec![3]);
        let new = Replicas { spec: 1, available: 1 };
        assert_eq!(scale_down_old(3, 0, &new, &[Replicas { spec: 3, available: 3 }]), vec![2]);
    }

    #[test]
    fn pods_above_spec_are_not_counted_as_available() {
        // The old ReplicaSet was already cut to 2 but still has 3 pods: only 2 count.
        let new = Replicas { spec: 2, available: 2 };
        assert_eq!(scale_down_old(3, 0, &new, &[Replicas { spec: 2, available: 2 }]), vec![1]);
    }

    #[test]
    fn unavailable_old_pods_are_removed_first() {
        let new = Replicas { spec: 1, available: 0 };
        assert_eq!(scale_down_old(3, 1, &new, &[Replicas { spec: 3, available: 1 }]), vec![2]);
    }

    #[test]
    fn scaling_mid_rollout_keeps_each_replica_set_s_share() {
        // 4 old pods and 1 new (stuck) one at replicas 4 + surge 1; scaled to 8 (+ surge 1).
        let sets = [Sized { spec: 1, max_replicas: Some(5) }, Sized { spec: 4, max_replicas: Some(5) }];
        assert_eq!(proportional_scale(8, 1, 5, &sets), vec![2, 7]);
        // And back down to 4: each shrinks in proportion.
        let sets = [Sized { spec: 2, max_replicas: Some(9) }, Sized { spec: 7, max_replicas: Some(9) }];
        assert_eq!(proportional_scale(4, 1, 9, &sets), vec![1, 4]);
        assert_eq!(proportional_scale(0, 1, 9, &sets), vec![0, 0]);
    }
}
