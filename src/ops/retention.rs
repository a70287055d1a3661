//! Retention planning: which snapshots a `--keep-*` policy keeps, and why.
//!
//! [`plan`] is a pure function — the snapshot times, the policy, the time zone
//! that defines calendar buckets, and the clock are all passed in — so that
//! `vault forget` can show (and tests can pin down) every decision before
//! anything is deleted.
//!
//! The rules follow restic's, which operators already know:
//!
//! - Snapshots are considered newest first. Equal times are ordered by input
//!   position: the later one in the input counts as the newer.
//! - `last n` keeps the `n` newest snapshots.
//! - `hourly`/`daily`/`weekly`/`monthly`/`yearly n` walk the snapshots newest
//!   first and keep the one that opens each new bucket (local hour, local
//!   day, ISO week, month, year in the given time zone) until `n` buckets are
//!   filled. Buckets exist only where snapshots exist: a week without backups
//!   does not use up a weekly slot. Buckets are wall-clock labels, as in
//!   restic, so the hour repeated when daylight-saving time ends is one
//!   hourly bucket, and the 23-hour and 25-hour days are one daily bucket each.
//! - `within d` keeps every snapshot taken after `now - d`.
//! - A snapshot dated more than [`FUTURE_SLACK_HOURS`] after `now` is always
//!   kept with the reason `in the future`, and takes part in no other rule:
//!   a forged or clock-skewed header must not push real snapshots out.
//! - A snapshot kept by several rules lists every reason.

use std::collections::HashSet;

use chrono::{DateTime, Duration, NaiveDateTime, TimeZone, Utc};
use serde::Serialize;

use crate::error::{Error, Result};

pub use crate::format::snapshot::FUTURE_SLACK_HOURS;

/// What to keep: the `--keep-*` flags of `vault forget`. A count of 0 turns
/// a rule off.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeepPolicy {
    /// Keep the newest `last` snapshots.
    pub last: u32,
    /// Keep the newest snapshot of each of the newest `hourly` hours that have one.
    pub hourly: u32,
    /// Keep the newest snapshot of each of the newest `daily` days that have one.
    pub daily: u32,
    /// Keep the newest snapshot of each of the newest `weekly` ISO weeks that have one.
    pub weekly: u32,
    /// Keep the newest snapshot of each of the newest `monthly` months that have one.
    pub monthly: u32,
    /// Keep the newest snapshot of each of the newest `yearly` years that have one.
    pub yearly: u32,
    /// Keep every snapshot taken within this span before `now`.
    pub within: Option<Duration>,
}

impl KeepPolicy {
    /// True when the policy keeps nothing (every count 0, no positive
    /// `within`): applying it would forget every snapshot, so [`plan`] refuses it.
    pub fn is_empty(&self) -> bool {
        let counts = [
            self.last,
            self.hourly,
            self.daily,
            self.weekly,
            self.monthly,
            self.yearly,
        ];
        counts.iter().all(|&n| n == 0) && self.within.is_none_or(|d| d <= Duration::zero())
    }
}

/// The verdict on one snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Decision {
    /// Position of the snapshot in the slice given to [`plan`].
    pub index: usize,
    /// Whether the snapshot is kept.
    pub keep: bool,
    /// Why it is kept, one entry per rule that keeps it, e.g. `last`,
    /// `daily 2026-11-20`, `weekly 2026-W47`, `within 7d`, `in the future`.
    /// Empty when it is forgotten.
    pub reasons: Vec<String>,
}

/// A calendar bucket kind, and how its label is written in reasons.
#[derive(Clone, Copy)]
enum Bucket {
    Hour,
    Day,
    Week,
    Month,
    Year,
}

impl Bucket {
    fn rule(self) -> &'static str {
        match self {
            Bucket::Hour => "hourly",
            Bucket::Day => "daily",
            Bucket::Week => "weekly",
            Bucket::Month => "monthly",
            Bucket::Year => "yearly",
        }
    }

    fn label(self, local: &NaiveDateTime) -> String {
        let pattern = match self {
            Bucket::Hour => "%Y-%m-%d %H:00",
            Bucket::Day => "%Y-%m-%d",
            Bucket::Week => "%G-W%V",
            Bucket::Month => "%Y-%m",
            Bucket::Year => "%Y",
        };
        local.format(pattern).to_string()
    }
}

/// Decides, for each snapshot time, whether `policy` keeps it. Calendar
/// buckets are taken in `tz`; `now` is the clock. Returns one [`Decision`]
/// per input time, in input order. An empty policy is an error: it would
/// forget everything.
pub fn plan<Tz: TimeZone>(
    times: &[DateTime<Utc>],
    policy: &KeepPolicy,
    tz: &Tz,
    now: DateTime<Utc>,
) -> Result<Vec<Decision>> {
    if policy.is_empty() {
        return Err(Error::InvalidInput(
            "refusing to forget every snapshot: give at least one of --keep-last, \
             --keep-hourly, --keep-daily, --keep-weekly, --keep-monthly, --keep-yearly \
             or --keep-within"
                .into(),
        ));
    }
    let mut decisions: Vec<Decision> = (0..times.len())
        .map(|index| Decision {
            index,
            keep: false,
            reasons: Vec::new(),
        })
        .collect();
    let horizon = now + Duration::hours(FUTURE_SLACK_HOURS);
    let mut order = Vec::with_capacity(times.len());
    for (i, t) in times.iter().enumerate() {
        if *t > horizon {
            decisions[i].reasons.push("in the future".into());
        } else {
            order.push(i);
        }
    }
    // Newest first; among equal times the later input position is newer.
    order.sort_by(|&a, &b| times[b].cmp(&times[a]).then(b.cmp(&a)));

    for &i in order.iter().take(policy.last as usize) {
        decisions[i].reasons.push("last".into());
    }
    let rules = [
        (policy.hourly, Bucket::Hour),
        (policy.daily, Bucket::Day),
        (policy.weekly, Bucket::Week),
        (policy.monthly, Bucket::Month),
        (policy.yearly, Bucket::Year),
    ];
    for (count, bucket) in rules {
        let mut seen = HashSet::new();
        for &i in &order {
            if seen.len() >= count as usize {
                break;
            }
            let label = bucket.label(&times[i].with_timezone(tz).naive_local());
            if seen.insert(label.clone()) {
                decisions[i]
                    .reasons
                    .push(format!("{} {label}", bucket.rule()));
            }
        }
    }
    if let Some(span) = policy.within.filter(|d| *d > Duration::zero()) {
        let cutoff = now - span;
        let reason = format!("within {}", format_duration(span));
        for &i in &order {
            if times[i] > cutoff {
                decisions[i].reasons.push(reason.clone());
            }
        }
    }
    for d in &mut decisions {
        d.keep = !d.reasons.is_empty();
    }
    Ok(decisions)
}

/// Parses a `--keep-within` span such as `7d`, `36h` or `1y6m` (the
/// units of [`crate::format::duration::parse`]: months are 30 days and
/// years 365, so a span means the same on every date). Zero is refused.
pub fn parse_duration(s: &str) -> Result<Duration> {
    let bad = |why: &str| {
        Error::InvalidInput(format!(
            "not a duration: {s:?}: {why} (use numbers with units h, d, w, m = 30 days, \
             y = 365 days, e.g. 7d, 36h or 1y6m)"
        ))
    };
    let span = crate::format::duration::parse(s).map_err(|e| bad(&e.to_string()))?;
    if span.is_zero() {
        return Err(bad("zero keeps nothing"));
    }
    Duration::from_std(span).map_err(|_| bad("too large"))
}

/// Writes a span as whole days, else whole hours, else seconds (`7d`, `36h`).
fn format_duration(d: Duration) -> String {
    let secs = d.num_seconds();
    if secs % 86_400 == 0 {
        format!("{}d", secs / 86_400)
    } else if secs % 3_600 == 0 {
        format!("{}h", secs / 3_600)
    } else {
        format!("{secs}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono_tz::Europe::Berlin;

    /// An instant written with an explicit offset, so that ambiguous local
    /// times (the repeated hour) are unambiguous in the test source.
    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s)
            .unwrap_or_else(|e| panic!("{s}: {e}"))
            .with_timezone(&Utc)
    }

    fn kept(decisions: &[Decision]) -> Vec<usize> {
        decisions
            .iter()
            .filter(|d| d.keep)
            .map(|d| d.index)
            .collect()
    }

    fn reasons(decisions: &[Decision], i: usize) -> Vec<&str> {
        decisions[i].reasons.iter().map(String::as_str).collect()
    }

    fn policy() -> KeepPolicy {
        KeepPolicy::default()
    }

    const NOW: &str = "2026-12-01T12:00:00Z";

    #[test]
    fn empty_policy_is_refused_and_names_the_flags() {
        assert!(policy().is_empty());
        let p = KeepPolicy {
            within: Some(Duration::zero()),
            ..policy()
        };
        assert!(p.is_empty());
        let err = plan(&[at(NOW)], &p, &Utc, at(NOW)).unwrap_err().to_string();
        assert!(
            err.contains("--keep-last") && err.contains("--keep-within"),
            "{err}"
        );
        assert!(
            !KeepPolicy {
                yearly: 1,
                ..policy()
            }
            .is_empty()
        );
    }

    #[test]
    fn no_snapshots_no_decisions() {
        let p = KeepPolicy {
            last: 3,
            ..policy()
        };
        assert!(plan(&[], &p, &Utc, at(NOW)).unwrap().is_empty());
    }

    #[test]
    fn last_keeps_the_newest_whatever_the_input_order() {
        let times = [
            at("2026-11-03T00:00:00Z"),
            at("2026-11-05T00:00:00Z"),
            at("2026-11-01T00:00:00Z"),
            at("2026-11-04T00:00:00Z"),
            at("2026-11-02T00:00:00Z"),
        ];
        let p = KeepPolicy {
            last: 2,
            ..policy()
        };
        let d = plan(&times, &p, &Utc, at(NOW)).unwrap();
        assert_eq!(
            d.iter().map(|d| d.index).collect::<Vec<_>>(),
            [0, 1, 2, 3, 4]
        );
        assert_eq!(kept(&d), [1, 3]);
        assert_eq!(reasons(&d, 1), ["last"]);
        assert!(d[0].reasons.is_empty() && !d[0].keep);
    }

    #[test]
    fn daily_counts_only_days_that_have_snapshots() {
        let times = [
            at("2026-11-20T01:00:00Z"),
            at("2026-11-20T09:00:00Z"), // newest of the 20th
            at("2026-11-20T05:00:00Z"),
            at("2026-11-18T23:00:00Z"), // 19th missing
            at("2026-11-15T08:00:00Z"),
            at("2026-11-15T20:00:00Z"), // newest of the 15th
            at("2026-11-10T20:00:00Z"), // fourth day: over the count
        ];
        let p = KeepPolicy {
            daily: 3,
            ..policy()
        };
        let d = plan(&times, &p, &Utc, at(NOW)).unwrap();
        assert_eq!(kept(&d), [1, 3, 5]);
        assert_eq!(reasons(&d, 1), ["daily 2026-11-20"]);
        assert_eq!(reasons(&d, 3), ["daily 2026-11-18"]);
        assert_eq!(reasons(&d, 5), ["daily 2026-11-15"]);
    }

    #[test]
    fn many_snapshots_in_one_hour_fill_one_hourly_bucket() {
        let mut times: Vec<_> = (0..60)
            .map(|m| at(&format!("2026-11-20T10:{m:02}:00Z")))
            .collect();
        times.push(at("2026-11-20T08:15:00Z"));
        let p = KeepPolicy {
            hourly: 2,
            ..policy()
        };
        let d = plan(&times, &p, &Utc, at(NOW)).unwrap();
        assert_eq!(kept(&d), [59, 60]);
        assert_eq!(reasons(&d, 59), ["hourly 2026-11-20 10:00"]);
        assert_eq!(reasons(&d, 60), ["hourly 2026-11-20 08:00"]);
    }

    #[test]
    fn weekly_skips_empty_weeks_and_iso_week_53_spans_new_year() {
        let times = [
            at("2026-12-31T10:00:00Z"), // Thursday, 2026-W53
            at("2027-01-01T10:00:00Z"), // Friday, still 2026-W53
            at("2026-12-20T10:00:00Z"), // Sunday, 2026-W51 (W52 has none)
            at("2026-12-14T10:00:00Z"), // Monday, 2026-W51
            at("2026-11-30T10:00:00Z"), // 2026-W49
        ];
        let p = KeepPolicy {
            weekly: 3,
            ..policy()
        };
        let now = at("2027-01-02T00:00:00Z");
        let d = plan(&times, &p, &Utc, now).unwrap();
        assert_eq!(kept(&d), [1, 2, 4]);
        assert_eq!(reasons(&d, 1), ["weekly 2026-W53"]);
        assert_eq!(reasons(&d, 2), ["weekly 2026-W51"]);
        assert_eq!(reasons(&d, 4), ["weekly 2026-W49"]);

        // The same two days are two different years.
        let p = KeepPolicy {
            yearly: 5,
            ..policy()
        };
        let d = plan(&times, &p, &Utc, now).unwrap();
        assert_eq!(kept(&d), [0, 1]);
        assert_eq!(reasons(&d, 0), ["yearly 2026"]);
        assert_eq!(reasons(&d, 1), ["yearly 2027"]);
    }

    #[test]
    fn buckets_are_taken_in_the_given_time_zone() {
        // 23:30 UTC on New Year's Eve is already 2027 in Berlin.
        let times = [at("2026-12-31T23:30:00Z"), at("2026-12-31T20:00:00Z")];
        let p = KeepPolicy {
            yearly: 5,
            monthly: 5,
            ..policy()
        };
        let now = at("2027-01-02T00:00:00Z");
        let utc = plan(&times, &p, &Utc, now).unwrap();
        assert_eq!(kept(&utc), [0]);
        let berlin = plan(&times, &p, &Berlin, now).unwrap();
        assert_eq!(kept(&berlin), [0, 1]);
        assert_eq!(reasons(&berlin, 0), ["monthly 2027-01", "yearly 2027"]);
        assert_eq!(reasons(&berlin, 1), ["monthly 2026-12", "yearly 2026"]);
    }

    #[test]
    fn dst_end_repeated_hour_is_one_hourly_bucket_and_the_25_hour_day_one_daily() {
        // Europe/Berlin, 2026-10-25: 03:00 CEST falls back to 02:00 CET.
        let times = [
            at("2026-10-25T01:30:00+02:00"),
            at("2026-10-25T02:10:00+02:00"), // first 02:xx (CEST)
            at("2026-10-25T02:50:00+02:00"),
            at("2026-10-25T02:10:00+01:00"), // second 02:xx (CET)
            at("2026-10-25T02:50:00+01:00"), // newest of the repeated hour
            at("2026-10-25T03:10:00+01:00"),
            at("2026-10-25T00:05:00+02:00"), // first of the day
            at("2026-10-24T23:55:00+02:00"), // the day before
        ];
        let now = at("2026-10-26T00:00:00Z");
        let p = KeepPolicy {
            hourly: 10,
            ..policy()
        };
        let d = plan(&times, &p, &Berlin, now).unwrap();
        assert_eq!(kept(&d), [0, 4, 5, 6, 7]);
        assert_eq!(reasons(&d, 4), ["hourly 2026-10-25 02:00"]);
        assert_eq!(reasons(&d, 0), ["hourly 2026-10-25 01:00"]);
        assert_eq!(reasons(&d, 6), ["hourly 2026-10-25 00:00"]);

        let p = KeepPolicy {
            daily: 2,
            ..policy()
        };
        let d = plan(&times, &p, &Berlin, now).unwrap();
        assert_eq!(kept(&d), [5, 7]);
        assert_eq!(reasons(&d, 5), ["daily 2026-10-25"]);
        assert_eq!(reasons(&d, 7), ["daily 2026-10-24"]);
    }

    #[test]
    fn dst_start_23_hour_day_is_one_daily_bucket() {
        // Europe/Berlin, 2026-03-29: 02:00 CET jumps to 03:00 CEST.
        let times = [
            at("2026-03-29T00:30:00+01:00"), // 23:30 UTC on the 28th
            at("2026-03-29T01:30:00+01:00"),
            at("2026-03-29T03:30:00+02:00"), // one real hour after 01:30
            at("2026-03-29T23:30:00+02:00"), // last of the 23-hour day
            at("2026-03-28T22:00:00+01:00"),
        ];
        let now = at("2026-03-31T00:00:00Z");
        let p = KeepPolicy {
            daily: 5,
            ..policy()
        };
        let d = plan(&times, &p, &Berlin, now).unwrap();
        assert_eq!(kept(&d), [3, 4]);
        assert_eq!(reasons(&d, 3), ["daily 2026-03-29"]);
        // In UTC the first one belongs to the 28th, and is its newest.
        let d = plan(&times, &p, &Utc, now).unwrap();
        assert_eq!(kept(&d), [0, 3]);

        let p = KeepPolicy {
            hourly: 3,
            ..policy()
        };
        let d = plan(&times, &p, &Berlin, now).unwrap();
        assert_eq!(kept(&d), [1, 2, 3]);
        assert_eq!(reasons(&d, 2), ["hourly 2026-03-29 03:00"]);
        assert_eq!(reasons(&d, 1), ["hourly 2026-03-29 01:00"]);
    }

    #[test]
    fn future_snapshots_are_kept_and_take_no_slot() {
        let now = at("2026-11-20T12:00:00Z");
        let times = [
            at("2026-11-20T14:00:00Z"), // 2 h ahead: in the future
            at("2099-01-01T00:00:00Z"), // forged
            at("2026-11-20T12:30:00Z"), // within the slack: an ordinary snapshot
            at("2026-11-20T10:00:00Z"),
            at("2026-11-19T10:00:00Z"),
        ];
        let p = KeepPolicy {
            last: 1,
            daily: 2,
            ..policy()
        };
        let d = plan(&times, &p, &Utc, now).unwrap();
        assert_eq!(kept(&d), [0, 1, 2, 4]);
        assert_eq!(reasons(&d, 0), ["in the future"]);
        assert_eq!(reasons(&d, 1), ["in the future"]);
        assert_eq!(reasons(&d, 2), ["last", "daily 2026-11-20"]);
        assert_eq!(reasons(&d, 4), ["daily 2026-11-19"]);
    }

    #[test]
    fn ties_in_time_are_broken_by_input_position() {
        let t = at("2026-11-20T10:00:00Z");
        let times = [t, t, at("2026-11-19T10:00:00Z")];
        let p = KeepPolicy {
            last: 1,
            daily: 1,
            ..policy()
        };
        let d = plan(&times, &p, &Utc, at(NOW)).unwrap();
        assert_eq!(kept(&d), [1]);
        assert_eq!(reasons(&d, 1), ["last", "daily 2026-11-20"]);
        let p = KeepPolicy {
            last: 2,
            ..policy()
        };
        assert_eq!(kept(&plan(&times, &p, &Utc, at(NOW)).unwrap()), [0, 1]);
    }

    #[test]
    fn within_keeps_everything_newer_than_now_minus_span() {
        let now = at(NOW);
        let times = [
            now - Duration::days(7) + Duration::minutes(1),
            now - Duration::days(7) - Duration::minutes(1),
            now - Duration::hours(1),
        ];
        let p = KeepPolicy {
            within: Some(Duration::days(7)),
            ..policy()
        };
        let d = plan(&times, &p, &Utc, now).unwrap();
        assert_eq!(kept(&d), [0, 2]);
        assert_eq!(reasons(&d, 0), ["within 7d"]);
        let p = KeepPolicy {
            within: Some(Duration::hours(36)),
            ..policy()
        };
        assert_eq!(
            reasons(&plan(&times, &p, &Utc, now).unwrap(), 2),
            ["within 36h"]
        );
    }

    #[test]
    fn every_rule_that_keeps_a_snapshot_is_listed() {
        let times = [
            at("2026-11-20T10:00:00Z"),
            at("2026-11-13T10:00:00Z"),
            at("2026-10-01T10:00:00Z"),
            at("2025-06-01T10:00:00Z"),
        ];
        let p = KeepPolicy {
            last: 1,
            hourly: 1,
            daily: 1,
            weekly: 2,
            monthly: 3,
            yearly: 2,
            within: Some(Duration::days(30)),
        };
        let d = plan(&times, &p, &Utc, at(NOW)).unwrap();
        assert_eq!(
            reasons(&d, 0),
            [
                "last",
                "hourly 2026-11-20 10:00",
                "daily 2026-11-20",
                "weekly 2026-W47",
                "monthly 2026-11",
                "yearly 2026",
                "within 30d"
            ]
        );
        assert_eq!(reasons(&d, 1), ["weekly 2026-W46", "within 30d"]);
        assert_eq!(reasons(&d, 2), ["monthly 2026-10"]);
        assert_eq!(reasons(&d, 3), ["monthly 2025-06", "yearly 2025"]);
    }

    #[test]
    fn parse_duration_units_and_combinations() {
        assert_eq!(parse_duration("7d").unwrap(), Duration::days(7));
        assert_eq!(parse_duration("36h").unwrap(), Duration::hours(36));
        assert_eq!(parse_duration("2w").unwrap(), Duration::days(14));
        assert_eq!(parse_duration("1m").unwrap(), Duration::days(30));
        assert_eq!(parse_duration("1y").unwrap(), Duration::days(365));
        assert_eq!(
            parse_duration(" 1y6m2d12h ").unwrap(),
            Duration::days(365 + 180 + 2) + Duration::hours(12)
        );
        assert_eq!(format_duration(parse_duration("2w").unwrap()), "14d");
    }

    #[test]
    fn parse_duration_refuses_nonsense() {
        for bad in [
            "",
            "7",
            "d",
            "7x",
            "0d",
            "-1d",
            "7 d",
            "1.5d",
            "99999999999999999999y",
        ] {
            let err = parse_duration(bad).expect_err(bad).to_string();
            assert!(err.contains("not a duration"), "{bad}: {err}");
        }
        assert!(parse_duration("9999999999999y").is_err());
    }
}
