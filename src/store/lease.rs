//! The pure rules of the state lock lease: whether a lease still holds, when a
//! new one ends, and which lease a `scaler unlock ID` argument names.
//!
//! No clock: `now` is always a parameter, so tests drive expiry by passing
//! instants instead of sleeping. Shared by every backend (each reads and
//! writes the lease row in its own transaction).

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use uuid::Uuid;

use crate::store::rows::hostname;
use crate::store::{LockInfo, LockRequest, Result, StoreError};

/// The shortest id prefix `force_unlock` accepts (the full id is always accepted).
pub const MIN_PREFIX: usize = 8;

/// The latest expiry recorded: 9999-12-31T23:59:59.999999999Z. Later instants
/// do not fit the four-digit years of RFC 3339 and could not be read back.
const LATEST: DateTime<Utc> = match DateTime::from_timestamp(253_402_300_799, 999_999_999) {
    Some(t) => t,
    None => panic!("9999-12-31 is a valid instant"),
};

/// What taking the lock does, given the lease currently recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// No lease is recorded: take it.
    Take,
    /// The recorded lease ran out at or before `now`: replace it.
    TakeOver(LockInfo),
    /// The recorded lease is live: refuse, naming its holder.
    Refuse(LockInfo),
}

/// Decides whether the lock can be taken at `now`. A lease is live while
/// `now < expires`; at `expires` it is over.
pub fn decide(current: Option<LockInfo>, now: DateTime<Utc>) -> Decision {
    match current {
        None => Decision::Take,
        Some(lease) if lease.expires <= now => Decision::TakeOver(lease),
        Some(lease) => Decision::Refuse(lease),
    }
}

/// The lease `req` takes at `now` (a fresh id, held by this process) given
/// the `current` one, or [`StoreError::Locked`] naming a live holder; the
/// caller records it in the transaction it read `current` in. `label` names
/// the store in the log.
pub fn take(label: &str, current: Option<LockInfo>, req: &LockRequest, now: DateTime<Utc>) -> Result<LockInfo> {
    match decide(current, now) {
        Decision::Refuse(holder) => return Err(StoreError::Locked(Box::new(holder))),
        Decision::TakeOver(old) => tracing::info!(
            path = %label,
            lock = %old.id,
            holder = %old.who(),
            expired = %old.expires.to_rfc3339(),
            "taking over an expired state lock"
        ),
        Decision::Take => {}
    }
    Ok(LockInfo {
        id: Uuid::new_v4().simple().to_string(),
        owner: req.owner.clone(),
        host: hostname(),
        pid: std::process::id(),
        operation: req.operation.clone(),
        created: now,
        expires: expiry(now, req.ttl),
    })
}

/// `now + ttl`, saturating at the latest instant that can be recorded.
pub fn expiry(now: DateTime<Utc>, ttl: Duration) -> DateTime<Utc> {
    TimeDelta::from_std(ttl)
        .ok()
        .and_then(|ttl| now.checked_add_signed(ttl))
        .map_or(LATEST, |t| t.min(LATEST))
}

/// Whether `given` (from `scaler unlock ID`) names the lease `id`: the full id,
/// or a prefix of at least [`MIN_PREFIX`] characters, ignoring ASCII case and
/// surrounding blanks. The lock has a single slot, so a prefix is always unique.
pub fn names(id: &str, given: &str) -> bool {
    let given = given.trim();
    if given.is_empty() {
        return false;
    }
    if given.eq_ignore_ascii_case(id) {
        return true;
    }
    given.len() >= MIN_PREFIX
        && id
            .get(..given.len())
            .is_some_and(|head| head.eq_ignore_ascii_case(given))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000 + secs, 0).expect("valid instant")
    }

    fn lease(expires: DateTime<Utc>) -> LockInfo {
        LockInfo {
            id: "0123456789abcdef0123456789abcdef".into(),
            owner: "ann@box".into(),
            host: "box".into(),
            pid: 42,
            operation: "apply".into(),
            created: at(0),
            expires,
        }
    }

    #[test]
    fn no_lease_is_taken() {
        assert_eq!(decide(None, at(0)), Decision::Take);
    }

    #[test]
    fn live_lease_is_refused_until_its_expiry() {
        let held = lease(at(30));
        assert_eq!(
            decide(Some(held.clone()), at(0)),
            Decision::Refuse(held.clone())
        );
        assert_eq!(
            decide(Some(held.clone()), at(30) - TimeDelta::nanoseconds(1)),
            Decision::Refuse(held)
        );
    }

    #[test]
    fn lease_is_over_at_its_expiry_and_after() {
        let held = lease(at(30));
        assert_eq!(
            decide(Some(held.clone()), at(30)),
            Decision::TakeOver(held.clone())
        );
        assert_eq!(
            decide(Some(held.clone()), at(3600)),
            Decision::TakeOver(held)
        );
    }

    #[test]
    fn expiry_adds_the_ttl_with_subsecond_precision() {
        assert_eq!(
            expiry(at(0), Duration::from_millis(1500)),
            at(1) + TimeDelta::milliseconds(500)
        );
        assert_eq!(expiry(at(0), Duration::ZERO), at(0));
    }

    #[test]
    fn expiry_saturates_at_year_9999() {
        assert_eq!(expiry(at(0), Duration::MAX), LATEST);
        assert_eq!(
            expiry(at(0), Duration::from_secs(10_000 * 366 * 86_400)),
            LATEST
        );
        assert_eq!(LATEST.to_rfc3339(), "9999-12-31T23:59:59.999999999+00:00");
    }

    #[test]
    fn full_id_and_long_prefixes_name_the_lease() {
        let id = "0123456789abcdef0123456789abcdef";
        assert!(names(id, id));
        assert!(names(id, "01234567"));
        assert!(names(id, "0123456789ABCDEF"));
        assert!(names(id, " 0123456789abcdef \n"));
    }

    #[test]
    fn short_wrong_or_empty_ids_do_not_name_the_lease() {
        let id = "0123456789abcdef0123456789abcdef";
        assert!(!names(id, "0123456"));
        assert!(!names(id, "12345678"));
        assert!(!names(id, ""));
        assert!(!names(id, "0123456789abcdef0123456789abcdef0"));
        // a short full id is still accepted whole
        assert!(names("abc", "abc"));
        assert!(!names("abcdefghij", "abc"));
        // a multi-byte argument never splits a character
        assert!(!names(id, "0123456é"));
    }
}
