//! The one rule for a group's desired count, used by the planner, the
//! `scale` action and `scaler scale` alike.
//!
//! Two inputs change the count: `desired` in git (a planned change) and the
//! runtime count in state (written by triggers and `scaler scale`, within
//! `min..max`). Every runtime count records the config value it was set
//! against (its *base*: the group's `desired`, or `min` when unset).
//!
//! - No runtime count: the config value.
//! - A runtime count whose base is today's config value: the runtime count
//!   (it was made on top of this git value, even one not applied yet).
//! - A runtime count whose base differs: git changed `desired` after the
//!   runtime change, so the config value wins.
//! - A runtime count without a base (written by an older scaler): it wins
//!   while the applied group's `desired` equals the config's.
//!
//! The result is always clamped to `min..max`. Pure: no IO.

use crate::model::Group;
use crate::store::Snapshot;

/// The config's own value: `desired`, else `min`.
pub fn config_value(spec: &Group) -> u32 {
    spec.desired.unwrap_or(spec.min)
}

/// The desired count of `spec` now, given the recorded state.
pub fn current(spec: &Group, snapshot: &Snapshot) -> u32 {
    let recorded: Option<Group> = snapshot
        .objects
        .iter()
        .find(|o| o.kind == crate::model::Kind::Group.slug() && o.name == spec.name)
        .and_then(|o| serde_json::from_value(o.spec.clone()).ok());
    combine(
        spec,
        recorded.as_ref(),
        snapshot.desired.get(&spec.name).copied(),
        snapshot.desired_base.get(&spec.name).copied(),
    )
}

/// The rule on its parts (see the module docs).
pub fn combine(spec: &Group, recorded: Option<&Group>, runtime: Option<u32>, base: Option<u32>) -> u32 {
    let config = config_value(spec);
    let chosen = match (runtime, base) {
        (None, _) => config,
        (Some(n), Some(b)) if b == config => n,
        (Some(_), Some(_)) => config,
        (Some(n), None) if recorded.is_some_and(|r| r.desired == spec.desired) => n,
        (Some(_), None) => config,
    };
    chosen.clamp(spec.min, spec.max.max(spec.min))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn group(desired: Option<u32>) -> Group {
        Group {
            name: "web".into(),
            description: None,
            template: "t".into(),
            min: 1,
            max: 10,
            desired,
            scale_in: None,
            naming: None,
            prevent_destroy: false,
            labels: Default::default(),
        }
    }

    #[test]
    fn the_config_value_without_a_runtime_count() {
        assert_eq!(combine(&group(Some(3)), None, None, None), 3);
        assert_eq!(combine(&group(None), None, None, None), 1);
    }

    #[test]
    fn a_runtime_count_made_on_this_git_value_wins() {
        // git says 4 (not applied yet: the recorded group says 2); a trigger
        // scaled by 1 from 4, recording base 4: the planner keeps 5.
        assert_eq!(combine(&group(Some(4)), Some(&group(Some(2))), Some(5), Some(4)), 5);
    }

    #[test]
    fn a_later_git_change_overrides_the_runtime_count() {
        assert_eq!(combine(&group(Some(6)), Some(&group(Some(4))), Some(5), Some(4)), 6);
    }

    #[test]
    fn counts_without_a_base_follow_the_old_rule() {
        assert_eq!(combine(&group(Some(2)), Some(&group(Some(2))), Some(7), None), 7);
        assert_eq!(combine(&group(Some(3)), Some(&group(Some(2))), Some(7), None), 3);
        assert_eq!(combine(&group(Some(3)), None, Some(7), None), 3);
    }

    #[test]
    fn always_within_bounds() {
        assert_eq!(combine(&group(Some(4)), None, Some(50), Some(4)), 10);
        assert_eq!(combine(&group(Some(0)), None, None, None), 1);
    }
}
