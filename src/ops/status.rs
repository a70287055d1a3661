//! `vault status`: per source, the last backup and the last passed drill
//! with their ages, certificates near expiry, and whether anything is older
//! than its threshold. Works with the writer key: it reads only snapshot
//! headers and drill records.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};
use serde::Serialize;

use crate::error::{Error, Result};
use crate::format::id::Id;
use crate::format::id::SnapshotId;
use crate::format::retirement::RetireRecord;
use crate::format::snapshot::CertInfo;
use crate::format::snapshot::Snapshot;
use crate::ops::restore::DrillRecord;
use crate::repo::ObjectKind;
use crate::repo::Repository;

/// When a figure counts as too old.
#[derive(Debug, Clone, Copy)]
pub struct Thresholds {
    /// A source's last complete backup must be younger than this.
    pub max_backup_age: Duration,
    /// A source's last passed drill must be younger than this.
    pub max_drill_age: Duration,
    /// Certificates expiring within this span are reported.
    pub certificate_warning: Duration,
}

impl Default for Thresholds {
    /// A nightly backup with a few hours' slack, a weekly drill with a day's.
    fn default() -> Self {
        Thresholds {
            max_backup_age: Duration::hours(26),
            max_drill_age: Duration::days(8),
            certificate_warning: Duration::days(30),
        }
    }
}

/// The state of one source (a host and source as recorded in snapshots).
#[derive(Debug, Clone, Serialize)]
pub struct SourceStatus {
    /// The host that backs it up.
    pub host: String,
    /// The source, `kind:name` (e.g. `paths:/etc`, `postgres:app`).
    pub source: String,
    /// The newest snapshot with this source.
    pub last_backup: Option<DateTime<Utc>>,
    /// Whether that source was read completely in it.
    pub last_backup_ok: bool,
    /// The newest snapshot in which this source was read completely.
    pub last_complete_backup: Option<DateTime<Utc>>,
    /// Seconds since then.
    pub backup_age_seconds: Option<i64>,
    /// The newest passed drill of a snapshot holding this source.
    pub last_passed_drill: Option<DateTime<Utc>>,
    /// Seconds since then.
    pub drill_age_seconds: Option<i64>,
    /// The newest failed drill, if newer than the last passed one.
    pub failed_drill_since_pass: Option<DateTime<Utc>>,
    /// Snapshots holding this source.
    pub snapshots: u64,
    /// What is wrong (empty when all is well).
    pub problems: Vec<String>,
    /// What the operator should know that is not a failure (a PostgreSQL
    /// dump without roles and tablespaces, say), from the newest backup.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

/// A certificate near (or past) its end of validity, from a host's newest snapshot.
#[derive(Debug, Clone, Serialize)]
pub struct ExpiringCertificate {
    /// The host whose snapshot holds it.
    pub host: String,
    /// The certificate.
    pub certificate: CertInfo,
    /// Days left (negative when expired).
    pub days_left: i64,
}

/// What `vault status` reports.
#[derive(Debug, Clone, Serialize)]
pub struct StatusReport {
    /// When the report was made.
    pub time: DateTime<Utc>,
    /// Per source.
    pub sources: Vec<SourceStatus>,
    /// Certificates expiring within the warning span.
    pub expiring_certificates: Vec<ExpiringCertificate>,
    /// Snapshots dated in the future, left out of the figures.
    pub future_snapshots: Vec<String>,
    /// Snapshot headers or drill records that could not be read.
    pub unreadable: Vec<String>,
    /// Snapshot headers and drill records that were read but do not count:
    /// not signed by the repository owner or by the host they name (a
    /// forgery with a writer key, or planted by someone with storage access).
    #[serde(default)]
    pub untrusted: Vec<String>,
    /// Sources the owner retired (`vault status --retire`), not judged.
    #[serde(default)]
    pub retired: Vec<RetiredSource>,
    /// Whether every source is within its thresholds and nothing is expiring.
    pub ok: bool,
}

/// A source left out of the judgement: the owner retired it and nothing
/// backed it up since.
#[derive(Debug, Clone, Serialize)]
pub struct RetiredSource {
    /// The host that backed it up.
    pub host: String,
    /// The source, `kind:name`.
    pub source: String,
    /// When it was retired.
    pub retired: DateTime<Utc>,
    /// Its newest backup.
    pub last_backup: Option<DateTime<Utc>>,
}

/// Computes the status from snapshot headers and drill records (pure).
pub fn compute(
    snapshots: &[(SnapshotId, Snapshot)],
    drills: &[DrillRecord],
    thresholds: &Thresholds,
    now: DateTime<Utc>,
) -> StatusReport {
    // A header dated ahead of the clock (skew, or forged with a writer key)
    // must not make a stale source look fresh: it is reported instead.
    let (snapshots, future) = split_future(snapshots, now);
    let mut sources = tally_backups(&snapshots);
    apply_drills(&mut sources, &snapshots, drills);
    let mut all_ok = true;
    for s in sources.values_mut() {
        judge(s, thresholds, now);
        all_ok &= s.problems.is_empty();
    }
    let expiring = expiring_certificates(&snapshots, thresholds, now);
    all_ok &= expiring.is_empty() && future.is_empty();
    StatusReport {
        time: now,
        sources: sources.into_values().collect(),
        expiring_certificates: expiring,
        future_snapshots: future,
        unreadable: Vec::new(),
        untrusted: Vec::new(),
        retired: Vec::new(),
        ok: all_ok && !snapshots.is_empty(),
    }
}

/// A source's status, keyed by host and `kind:name`.
type Sources = BTreeMap<(String, String), SourceStatus>;

/// The snapshots not dated in the future, and a message for each that is.
fn split_future(
    snapshots: &[(SnapshotId, Snapshot)],
    now: DateTime<Utc>,
) -> (Vec<&(SnapshotId, Snapshot)>, Vec<String>) {
    let (future, present): (Vec<_>, Vec<_>) =
        snapshots.iter().partition(|(_, s)| s.is_in_the_future(now));
    let messages = future
        .iter()
        .map(|(id, s)| {
            format!(
                "snapshot {} from {} is dated {}, in the future (clock skew or a forged header)",
                id.short(),
                s.host,
                s.time.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            )
        })
        .collect();
    (present, messages)
}

/// One status per source of every host: its snapshot count and newest
/// (complete) backup.
fn tally_backups(snapshots: &[&(SnapshotId, Snapshot)]) -> Sources {
    let mut sources = Sources::new();
    for (_, snap) in snapshots.iter().copied() {
        for src in &snap.sources {
            let key = (snap.host.clone(), format!("{}:{}", src.kind, src.name));
            let entry = sources.entry(key.clone()).or_insert_with(|| SourceStatus {
                host: key.0.clone(),
                source: key.1.clone(),
                last_backup: None,
                last_backup_ok: false,
                last_complete_backup: None,
                backup_age_seconds: None,
                last_passed_drill: None,
                drill_age_seconds: None,
                failed_drill_since_pass: None,
                snapshots: 0,
                problems: Vec::new(),
                notes: Vec::new(),
            });
            entry.snapshots += 1;
            let ok = src.status == crate::format::snapshot::SourceStatus::Ok;
            if entry.last_backup.is_none_or(|t| snap.time >= t) {
                entry.last_backup = Some(snap.time);
                entry.last_backup_ok = ok;
                entry.notes = notes(src);
            }
            if ok && entry.last_complete_backup.is_none_or(|t| snap.time > t) {
                entry.last_complete_backup = Some(snap.time);
            }
        }
    }
    sources
}

/// Notes on one source of a snapshot: a PostgreSQL dump made without its
/// roles and tablespaces.
fn notes(src: &crate::format::snapshot::SourceRecord) -> Vec<String> {
    let globals = src.details.as_ref().and_then(|d| d.get("globals"));
    match globals.and_then(|g| g.as_str()) {
        Some(g) if g.starts_with("not dumped") => vec![format!("globals {g}")],
        _ => Vec::new(),
    }
}

/// Credits each drill to the sources of the snapshot it drilled: the newest
/// pass, and the newest failure after it.
fn apply_drills(
    sources: &mut Sources,
    snapshots: &[&(SnapshotId, Snapshot)],
    drills: &[DrillRecord],
) {
    let by_id: BTreeMap<SnapshotId, &Snapshot> = snapshots.iter().map(|(id, s)| (*id, s)).collect();
    for drill in drills {
        let Some(snap) = by_id.get(&drill.snapshot) else {
            continue; // the drilled snapshot was forgotten since
        };
        for src in &snap.sources {
            let key = (snap.host.clone(), format!("{}:{}", src.kind, src.name));
            let Some(entry) = sources.get_mut(&key) else {
                continue;
            };
            if drill.passed {
                if entry.last_passed_drill.is_none_or(|t| drill.time > t) {
                    entry.last_passed_drill = Some(drill.time);
                }
            } else if entry.failed_drill_since_pass.is_none_or(|t| drill.time > t) {
                entry.failed_drill_since_pass = Some(drill.time);
            }
        }
    }
    for s in sources.values_mut() {
        if let (Some(fail), Some(pass)) = (s.failed_drill_since_pass, s.last_passed_drill)
            && fail < pass
        {
            s.failed_drill_since_pass = None;
        }
    }
}

/// Ages and problems of one source against the thresholds.
fn judge(s: &mut SourceStatus, thresholds: &Thresholds, now: DateTime<Utc>) {
    s.backup_age_seconds = s.last_complete_backup.map(|t| (now - t).num_seconds());
    s.drill_age_seconds = s.last_passed_drill.map(|t| (now - t).num_seconds());
    match s.last_complete_backup {
        None => s.problems.push("no complete backup".into()),
        Some(t) if now - t > thresholds.max_backup_age => s.problems.push(format!(
            "last complete backup is {} old (threshold {})",
            human(now - t),
            human(thresholds.max_backup_age)
        )),
        _ => {}
    }
    if !s.last_backup_ok && s.last_backup.is_some() {
        s.problems
            .push("the newest backup of this source is incomplete".into());
    }
    match s.last_passed_drill {
        None => s.problems.push("no passed restore drill".into()),
        Some(t) if now - t > thresholds.max_drill_age => s.problems.push(format!(
            "last passed drill is {} old (threshold {})",
            human(now - t),
            human(thresholds.max_drill_age)
        )),
        _ => {}
    }
    if let Some(t) = s.failed_drill_since_pass {
        s.problems.push(format!(
            "a drill failed at {} after the last one that passed",
            t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        ));
    }
}

/// Certificates expiring within the warning span, from the newest snapshot
/// of each series (host and source set), so renewed ones drop out and a
/// one-off backup of other paths does not hide a keystore's. Each
/// certificate (host, subject, serial) is listed once.
fn expiring_certificates(
    snapshots: &[&(SnapshotId, Snapshot)],
    thresholds: &Thresholds,
    now: DateTime<Utc>,
) -> Vec<ExpiringCertificate> {
    let mut newest: BTreeMap<(String, Vec<String>), &Snapshot> = BTreeMap::new();
    for (_, snap) in snapshots.iter().copied() {
        let e = newest.entry(snap.group_key()).or_insert(snap);
        if snap.time >= e.time {
            *e = snap;
        }
    }
    let mut seen = std::collections::BTreeSet::new();
    let mut expiring = Vec::new();
    for snap in newest.into_values() {
        for cert in &snap.certificates {
            let key = (snap.host.clone(), cert.subject.clone(), cert.serial.clone());
            if cert.not_after - now <= thresholds.certificate_warning && seen.insert(key) {
                expiring.push(ExpiringCertificate {
                    host: snap.host.clone(),
                    certificate: cert.clone(),
                    days_left: (cert.not_after - now).num_days(),
                });
            }
        }
    }
    expiring.sort_by(|a, b| {
        (a.certificate.not_after, &a.host).cmp(&(b.certificate.not_after, &b.host))
    });
    expiring
}

/// Reads the repository and computes its status.
pub fn status(
    repo: &Repository,
    thresholds: &Thresholds,
    now: DateTime<Utc>,
) -> Result<StatusReport> {
    // Only what counts: headers signed by the owner or the host they name,
    // dated no later than their upload; drill records signed by the owner.
    // A writer key can add neither a green drill nor a fresh backup of
    // another host.
    let set = repo.verified_snapshots()?;
    let drills = repo.verified_drills()?;
    let retirements = repo.verified_retirements()?;
    let mut report = compute(&set.usable(), &drills.usable, thresholds, now);
    apply_retirements(&mut report, &retirements.usable);
    report.unreadable = set
        .damaged
        .iter()
        .map(|e| e.to_string())
        .chain(drills.unreadable)
        .chain(retirements.unreadable)
        .collect();
    report.untrusted = set
        .untrusted()
        .map(|(r, why)| {
            format!(
                "snapshot {} (host {:?}) does not count: {why}",
                r.id.short(),
                r.snapshot.host
            )
        })
        .chain(
            drills
                .untrusted
                .into_iter()
                .map(|d| format!("drill record {d}")),
        )
        .chain(
            retirements
                .untrusted
                .into_iter()
                .map(|d| format!("retirement record {d}")),
        )
        .collect();
    report.ok &= report.unreadable.is_empty() && report.untrusted.is_empty();
    Ok(report)
}

/// Moves every retired source (a retirement at or after its newest backup)
/// out of the judged sources into [`StatusReport::retired`], drops the
/// expiring certificates of hosts with nothing left to judge, and decides
/// `ok` again (pure). A source backed up again after its retirement is
/// judged again.
pub fn apply_retirements(report: &mut StatusReport, records: &[RetireRecord]) {
    if records.is_empty() {
        return;
    }
    let mut kept = Vec::new();
    for s in std::mem::take(&mut report.sources) {
        let newest = records
            .iter()
            .filter(|r| r.host == s.host && r.source == s.source)
            .map(|r| r.time)
            .max();
        match newest {
            Some(t) if s.last_backup.is_none_or(|b| b <= t) => report.retired.push(RetiredSource {
                host: s.host,
                source: s.source,
                retired: t,
                last_backup: s.last_backup,
            }),
            _ => kept.push(s),
        }
    }
    report.sources = kept;
    let judged = |host: &str| report.sources.iter().any(|s| s.host == host);
    let certificates = std::mem::take(&mut report.expiring_certificates);
    report.expiring_certificates = certificates
        .into_iter()
        .filter(|c| judged(&c.host))
        .collect();
    report.ok = report.sources.iter().all(|s| s.problems.is_empty())
        && report.expiring_certificates.is_empty()
        && report.future_snapshots.is_empty()
        && (!report.sources.is_empty() || !report.retired.is_empty());
}

/// Retires `host`'s source `source` (`kind:name`, as [`status`] lists it):
/// stores an owner-signed record so that `vault status` stops judging it
/// until it is backed up again. Needs the owner key and a format-2
/// repository (format 1 has no owner signatures).
///
/// # Errors
///
/// Not the owner; format 1; no snapshot of `host` holds `source` (the
/// message lists the host's sources); storage errors.
pub fn retire(repo: &Repository, host: &str, source: &str, now: DateTime<Utc>) -> Result<Id> {
    repo.keys().require_owner("retire a source")?;
    if repo.config().version < 2 {
        return Err(Error::InvalidInput(
            "retiring a source needs a format-2 repository (owner-signed records)".into(),
        ));
    }
    let set = repo.verified_snapshots()?;
    let mut known: Vec<String> = Vec::new();
    for (_, snap) in set.usable() {
        for src in &snap.sources {
            let name = format!("{}:{}", src.kind, src.name);
            if snap.host == host && !known.contains(&name) {
                known.push(name);
            }
        }
    }
    if !known.iter().any(|k| k == source) {
        known.sort();
        return Err(Error::NotFound(if known.is_empty() {
            format!("no snapshot of host {host:?} to retire a source of")
        } else {
            format!(
                "host {host:?} has no source {source:?}; its sources: {}",
                known.join(", ")
            )
        }));
    }
    let record = RetireRecord {
        time: now,
        host: host.to_owned(),
        source: source.to_owned(),
    };
    repo.put_signed_json(ObjectKind::Retirement, &record)
}

/// A span for humans: `3d 4h`, `26h`, `15m`.
pub fn human(d: Duration) -> String {
    let secs = d.num_seconds().max(0);
    if secs >= 2 * 86_400 {
        format!("{}d {}h", secs / 86_400, secs % 86_400 / 3600)
    } else if secs >= 3600 {
        format!("{}h", secs / 3600)
    } else {
        format!("{}m", secs / 60)
    }
}

/// The report as a node_exporter textfile (Prometheus text format).
pub fn prometheus(report: &StatusReport) -> String {
    fn esc(s: &str) -> String {
        s.replace('\\', "\\\\")
            .replace('"', "\\\"")
            .replace('\n', "\\n")
    }
    let mut out = String::new();
    let mut metric = |name: &str, help: &str, rows: Vec<(String, f64)>| {
        out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} gauge\n"));
        for (labels, v) in rows {
            out.push_str(&format!("{name}{labels} {v}\n"));
        }
    };
    let label = |s: &SourceStatus| {
        format!(
            "{{host=\"{}\",source=\"{}\"}}",
            esc(&s.host),
            esc(&s.source)
        )
    };
    let ts = |t: Option<DateTime<Utc>>| t.map_or(0.0, |t| t.timestamp() as f64);
    metric(
        "vault_last_complete_backup_timestamp_seconds",
        "Time of the newest snapshot in which the source was read completely (0: none).",
        report
            .sources
            .iter()
            .map(|s| (label(s), ts(s.last_complete_backup)))
            .collect(),
    );
    metric(
        "vault_last_backup_ok",
        "1 if the newest snapshot read the source completely.",
        report
            .sources
            .iter()
            .map(|s| (label(s), s.last_backup_ok as u8 as f64))
            .collect(),
    );
    metric(
        "vault_last_passed_drill_timestamp_seconds",
        "Time of the newest passed restore drill of a snapshot with the source (0: none).",
        report
            .sources
            .iter()
            .map(|s| (label(s), ts(s.last_passed_drill)))
            .collect(),
    );
    metric(
        "vault_source_ok",
        "1 if the source is within its backup and drill thresholds.",
        report
            .sources
            .iter()
            .map(|s| (label(s), s.problems.is_empty() as u8 as f64))
            .collect(),
    );
    metric(
        "vault_certificates_expiring",
        "Certificates in the newest snapshot of each series expiring within the warning span.",
        vec![(String::new(), report.expiring_certificates.len() as f64)],
    );
    metric(
        "vault_certificate_not_after_timestamp_seconds",
        "End of validity of each expiring certificate, one sample per certificate.",
        report
            .expiring_certificates
            .iter()
            .map(|c| {
                (
                    format!(
                        "{{host=\"{}\",subject=\"{}\",serial=\"{}\"}}",
                        esc(&c.host),
                        esc(&c.certificate.subject),
                        esc(&c.certificate.serial)
                    ),
                    c.certificate.not_after.timestamp() as f64,
                )
            })
            .collect(),
    );
    metric(
        "vault_status_ok",
        "1 if every source is within its thresholds and nothing is expiring or unreadable.",
        vec![(String::new(), report.ok as u8 as f64)],
    );
    metric(
        "vault_status_timestamp_seconds",
        "When this report was made.",
        vec![(String::new(), report.time.timestamp() as f64)],
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::id::Id;
    use crate::format::snapshot::SourceStatus as St;
    use crate::ops::restore::DrillSummary;

    fn t(h: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + h * 3600, 0).unwrap()
    }

    fn snap(h: i64, host: &str, status: St) -> Snapshot {
        crate::format::snapshot::test_snapshot(t(h), host, "/etc", status)
    }

    fn drill(h: i64, snapshot: u8, passed: bool) -> DrillRecord {
        DrillRecord {
            time: t(h),
            host: "drill".into(),
            snapshot: SnapshotId(Id([snapshot; 32])),
            passed,
            summary: DrillSummary::default(),
        }
    }

    #[test]
    fn fresh_backups_and_drills_are_ok_and_stale_ones_are_named() {
        let snaps = vec![
            (SnapshotId(Id([1; 32])), snap(0, "db1", St::Ok)),
            (SnapshotId(Id([2; 32])), snap(24, "db1", St::Ok)),
        ];
        let drills = vec![drill(30, 2, true)];
        let th = Thresholds::default();
        let r = compute(&snaps, &drills, &th, t(40));
        assert!(r.ok, "{:?}", r.sources[0].problems);
        assert_eq!(r.sources[0].backup_age_seconds, Some(16 * 3600));
        assert_eq!(r.sources[0].snapshots, 2);

        let r = compute(&snaps, &drills, &th, t(24 + 27));
        assert!(!r.ok);
        assert!(r.sources[0].problems[0].contains("last complete backup is 27h old"));

        let r = compute(&snaps, &drills, &th, t(30 + 8 * 24 + 1));
        assert!(
            r.sources[0]
                .problems
                .iter()
                .any(|p| p.contains("last passed drill"))
        );
    }

    #[test]
    fn partial_backups_failed_drills_and_missing_drills_are_problems() {
        let snaps = vec![
            (SnapshotId(Id([1; 32])), snap(0, "db1", St::Ok)),
            (SnapshotId(Id([2; 32])), snap(10, "db1", St::Partial)),
        ];
        let r = compute(
            &snaps,
            &[drill(5, 1, true), drill(12, 2, false)],
            &Thresholds::default(),
            t(12),
        );
        let p = &r.sources[0];
        assert_eq!(p.last_complete_backup, Some(t(0)));
        assert!(!p.last_backup_ok);
        assert!(p.problems.iter().any(|x| x.contains("incomplete")));
        assert!(p.problems.iter().any(|x| x.contains("a drill failed")));
        let r = compute(&snaps[..1], &[], &Thresholds::default(), t(1));
        assert!(
            r.sources[0]
                .problems
                .iter()
                .any(|x| x == "no passed restore drill")
        );
        assert!(
            !compute(&[], &[], &Thresholds::default(), t(1)).ok,
            "no snapshots is not ok"
        );
    }

    #[test]
    fn a_snapshot_dated_in_the_future_does_not_make_a_stale_source_fresh() {
        let snaps = vec![
            (SnapshotId(Id([1; 32])), snap(0, "db1", St::Ok)),
            (SnapshotId(Id([2; 32])), snap(24 * 365, "db1", St::Ok)),
        ];
        let r = compute(&snaps, &[drill(1, 1, true)], &Thresholds::default(), t(48));
        assert!(!r.ok);
        assert_eq!(r.sources[0].last_complete_backup, Some(t(0)));
        assert!(
            r.sources[0].problems[0].contains("2d 0h old"),
            "{:?}",
            r.sources[0].problems
        );
        assert!(r.future_snapshots[0].contains("in the future"));
    }

    #[test]
    fn prometheus_output_has_one_sample_per_source_and_escapes_labels() {
        let snaps = vec![(SnapshotId(Id([1; 32])), snap(0, "db\"1", St::Ok))];
        let text = prometheus(&compute(
            &snaps,
            &[drill(1, 1, true)],
            &Thresholds::default(),
            t(2),
        ));
        assert!(text.contains("vault_last_complete_backup_timestamp_seconds{host=\"db\\\"1\",source=\"paths:/etc\"} 1800000000\n"), "{text}");
        assert!(text.contains("vault_status_ok 1\n"), "{text}");
        assert!(text.contains("# TYPE vault_source_ok gauge\n"));
    }

    fn cert(serial: &str, days: i64) -> crate::format::snapshot::CertInfo {
        crate::format::snapshot::CertInfo {
            subject: "CN=db1.example".into(),
            issuer: "CN=ca".into(),
            serial: serial.into(),
            not_after: t(0) + Duration::days(days),
        }
    }

    #[test]
    fn a_one_off_backup_does_not_hide_a_keystores_expiring_certificates() {
        let mut keystore = crate::format::snapshot::test_snapshot(t(0), "db1", "/etc/ssl", St::Ok);
        keystore.certificates = vec![cert("01", 10), cert("02", 200)];
        let mut again = keystore.clone();
        again.time = t(1);
        // The same certificate in a second series of the host.
        let mut other = crate::format::snapshot::test_snapshot(t(2), "db1", "/srv/tls", St::Ok);
        other.certificates = vec![cert("01", 10)];
        // A newer one-off backup of other paths, without keystores.
        let one_off = crate::format::snapshot::test_snapshot(t(3), "db1", "/etc/cron.d", St::Ok);
        let snaps = vec![
            (SnapshotId(Id([1; 32])), keystore),
            (SnapshotId(Id([2; 32])), again),
            (SnapshotId(Id([3; 32])), other),
            (SnapshotId(Id([4; 32])), one_off),
        ];
        let r = compute(&snaps, &[], &Thresholds::default(), t(4));
        let serials: Vec<&str> = r
            .expiring_certificates
            .iter()
            .map(|c| c.certificate.serial.as_str())
            .collect();
        assert_eq!(serials, ["01"], "{:?}", r.expiring_certificates);
        let text = prometheus(&r);
        let samples: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with("vault_certificate_not_after_timestamp_seconds{"))
            .collect();
        assert_eq!(samples.len(), 1, "{text}");
        assert!(samples[0].contains("serial=\"01\""), "{text}");
        assert!(text.contains("vault_certificates_expiring 1"), "{text}");
    }

    #[test]
    fn retirements_cover_a_source_until_it_is_backed_up_again() {
        let mut snaps = vec![
            (SnapshotId(Id([1; 32])), snap(0, "db1", St::Ok)),
            (SnapshotId(Id([2; 32])), snap(0, "old", St::Ok)),
        ];
        let drills = [drill(1, 1, true)];
        let th = Thresholds::default();
        let base = compute(&snaps, &drills, &th, t(2));
        assert!(!base.ok, "the old host was never drilled");
        let record = |h: i64, host: &str| RetireRecord {
            time: t(h),
            host: host.into(),
            source: "paths:/etc".into(),
        };
        let mut r = base.clone();
        apply_retirements(&mut r, &[record(1, "old")]);
        assert!(r.ok, "{:?}", r.sources);
        assert_eq!((r.sources.len(), r.retired.len()), (1, 1));
        assert_eq!(r.retired[0].host, "old");
        // Another host's record retires nothing here.
        let mut r = base.clone();
        apply_retirements(&mut r, &[record(1, "web9")]);
        assert!(!r.ok && r.retired.is_empty());
        // A backup after the retirement brings the source back.
        snaps.push((SnapshotId(Id([3; 32])), snap(2, "old", St::Ok)));
        let mut r = compute(&snaps, &drills, &th, t(3));
        apply_retirements(&mut r, &[record(1, "old")]);
        assert!(!r.ok && r.retired.is_empty());
    }
}
