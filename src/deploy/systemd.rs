//! `vault systemd`: renders hardened systemd units for a nightly backup and
//! a weekly restore drill. Pure text in, text out; the CLI writes the files.
//!
//! The services run as a dedicated unprivileged user that can *read*
//! everything (`CAP_DAC_READ_SEARCH`, nothing else) and write only its own
//! state and cache directories plus the paths it is given. The drill keeps
//! `CAP_SETUID` and `CAP_SETGID` instead, for one thing only: running the
//! scratch PostgreSQL cluster that loads database dumps as the drill user
//! (`vault-drill`), so that code hidden in a dump never runs as the user
//! holding the owner key (see `ops::restore::pgdrill`). Keys and S3
//! credentials stay root-owned files: systemd hands them to the service
//! through `LoadCredential=`, and the environment points vault at them
//! (`%d/NAME`, the service's credentials directory).

use std::path::{Path, PathBuf};
use std::str::FromStr;

use crate::error::{Error, Result};

/// Names of every file [`render`] may produce: the backup host's two, then
/// the drill host's (drill, and forget when a retention policy is set).
pub const UNIT_NAMES: [&str; 6] = [
    "vault-backup.service",
    "vault-backup.timer",
    "vault-drill.service",
    "vault-drill.timer",
    "vault-forget.service",
    "vault-forget.timer",
];

/// The credential names vault understands (see [`Credential`]).
pub const CREDENTIAL_NAMES: [&str; 5] = ["writer.key", "owner.key", "passphrase", "aws", "pgpass"];

/// A file handed to a service with `LoadCredential=NAME:PATH`.
///
/// Each name sets an environment variable pointing at `%d/NAME`; other
/// names are refused (a typo would otherwise load nothing useful):
///
/// | name | units | variable |
/// | --- | --- | --- |
/// | `writer.key` | backup | `VAULT_IDENTITY` |
/// | `owner.key` | drill, forget | `VAULT_IDENTITY` |
/// | `passphrase` | drill, forget | `VAULT_PASSPHRASE_FILE` |
/// | `aws` | all | `AWS_SHARED_CREDENTIALS_FILE` |
/// | `pgpass` | all | `PGPASSFILE` |
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credential {
    /// The credential's name: the file name under `%d`.
    pub name: String,
    /// The absolute path of the source file, read by systemd as root.
    pub path: PathBuf,
}

impl FromStr for Credential {
    type Err = Error;

    /// Parses `NAME:PATH`.
    fn from_str(s: &str) -> Result<Self> {
        let (name, path) = s.split_once(':').ok_or_else(|| {
            Error::InvalidInput(format!(
                "credential {s:?}: expected NAME:PATH, e.g. writer.key:/etc/vault/writer.key"
            ))
        })?;
        let c = Credential {
            name: name.to_owned(),
            path: PathBuf::from(path),
        };
        check_credential_name(&c.name)?;
        check_path("credential path", &c.path)?;
        Ok(c)
    }
}

/// What the units should contain: the flags of `vault systemd` and what
/// the configuration file says.
#[derive(Debug, Clone, Default)]
pub struct UnitOptions {
    /// Absolute path of the vault binary for `ExecStart=`.
    pub vault_bin: PathBuf,
    /// The dedicated user the services run as.
    pub user: String,
    /// Its group, when not the user's primary group.
    pub group: Option<String>,
    /// The config file passed with `--config`.
    pub config: PathBuf,
    /// The drill host's units (drill, and forget with `forget`) instead of
    /// the backup host's.
    pub drill: bool,
    /// `OnCalendar=` of the backup timer (e.g. `daily`).
    pub on_calendar: String,
    /// `OnCalendar=` of the drill timer (e.g. `weekly`).
    pub drill_on_calendar: String,
    /// With `drill`: a forget (and prune, as `[retention]` says) timer at
    /// this calendar; `None` when no retention policy is set.
    pub forget_on_calendar: Option<String>,
    /// Paths the backup reads; listed as `ReadOnlyPaths=` so that they stay
    /// read-only even if a drop-in widens `ReadWritePaths=`.
    pub read_paths: Vec<PathBuf>,
    /// Paths the services may write: a local-directory repository, the
    /// Prometheus file's directory.
    pub write_paths: Vec<PathBuf>,
    /// The services' cache directory (`cache_dir`); `None`: systemd's
    /// `CacheDirectory=vault`.
    pub cache_dir: Option<PathBuf>,
    /// Files handed over with `LoadCredential=`, in addition to the
    /// default (`writer.key:/etc/vault/writer.key` for the backup,
    /// `owner.key:/etc/vault/owner.key` for the drill host); one with a
    /// default's name replaces it.
    pub credentials: Vec<Credential>,
}

/// One rendered unit file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnitFile {
    /// The file name, one of [`UNIT_NAMES`].
    pub name: &'static str,
    /// The file's contents.
    pub text: String,
}

/// Which service a line is for.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Job {
    Backup,
    Drill,
    Forget,
}

/// Renders the units of one host: the backup service and timer, or with
/// `drill` the drill's (and forget's, with `forget_on_calendar`). Refuses
/// names and paths that would need quoting in a unit file (whitespace,
/// quotes, `$`, `\`), relative paths, calendar expressions that are not,
/// unknown credential names, and an owner key for a backup host.
pub fn render(opts: &UnitOptions) -> Result<Vec<UnitFile>> {
    check_path("--vault-bin", &opts.vault_bin)?;
    check_path("--config", &opts.config)?;
    check_account("--user", &opts.user)?;
    if let Some(g) = &opts.group {
        check_account("--group", g)?;
    }
    // Only what would break the unit file here; whether systemd reads the
    // expression is for `systemd-analyze calendar` (or [`check_calendar`]).
    check_calendar_chars("--on-calendar", &opts.on_calendar)?;
    check_calendar_chars("--drill-on-calendar", &opts.drill_on_calendar)?;
    if let Some(c) = &opts.forget_on_calendar {
        check_calendar_chars("--forget-on-calendar", c)?;
    }
    for p in &opts.read_paths {
        check_path("--read-path", p)?;
    }
    for p in opts.write_paths.iter().chain(&opts.cache_dir) {
        check_path("a writable path", p)?;
    }
    let credentials = credentials(opts)?;
    let mut units = Vec::new();
    if !opts.drill {
        units.push(UnitFile {
            name: UNIT_NAMES[0],
            text: service(opts, &credentials, Job::Backup),
        });
        units.push(UnitFile {
            name: UNIT_NAMES[1],
            text: timer("vault backup", &opts.on_calendar, "30min"),
        });
        return Ok(units);
    }
    units.push(UnitFile {
        name: UNIT_NAMES[2],
        text: service(opts, &credentials, Job::Drill),
    });
    units.push(UnitFile {
        name: UNIT_NAMES[3],
        text: timer("vault restore drill", &opts.drill_on_calendar, "1h"),
    });
    if let Some(cal) = &opts.forget_on_calendar {
        units.push(UnitFile {
            name: UNIT_NAMES[4],
            text: service(opts, &credentials, Job::Forget),
        });
        units.push(UnitFile {
            name: UNIT_NAMES[5],
            text: timer("vault forget and prune", cal, "1h"),
        });
    }
    Ok(units)
}

/// The host's credentials: its default, then the ones given (a given one
/// with the default's name replaces it).
fn credentials(opts: &UnitOptions) -> Result<Vec<Credential>> {
    let default = if opts.drill {
        "owner.key:/etc/vault/owner.key"
    } else {
        "writer.key:/etc/vault/writer.key"
    };
    let mut out = vec![Credential::from_str(default)?];
    for c in &opts.credentials {
        check_credential_name(&c.name)?;
        check_path("credential path", &c.path)?;
        match (c.name.as_str(), opts.drill) {
            ("owner.key" | "passphrase", false) => {
                return Err(Error::InvalidInput(format!(
                    "credential {}: the backup host's units never hold an owner key (the writer \
                     key backs up); an owner key belongs on the drill host: `vault systemd \
                     --drill --credential {}:{}`",
                    c.name,
                    c.name,
                    c.path.display()
                )));
            }
            ("writer.key", true) => {
                return Err(Error::InvalidInput(
                    "credential writer.key: the drill host's units use the owner key; the \
                     writer key belongs in the backup host's units (without --drill)"
                        .into(),
                ));
            }
            _ => {}
        }
        out.retain(|d| d.name != c.name);
        out.push(c.clone());
    }
    if opts.drill
        && out.iter().any(|c| c.name == "passphrase")
        && !opts.credentials.iter().any(|c| c.name == "owner.key")
    {
        // A passphrase owner: no owner key file to load.
        out.retain(|c| c.name != "owner.key");
    }
    Ok(out)
}

/// The environment variable a credential sets in `job`'s unit; `None`
/// when it is not loaded there.
fn credential_use(name: &str, job: Job) -> Option<&'static str> {
    match (name, job) {
        ("writer.key", Job::Backup) => Some("VAULT_IDENTITY"),
        ("owner.key" | "passphrase", Job::Backup) | ("writer.key", _) => None,
        ("owner.key", _) => Some("VAULT_IDENTITY"),
        ("passphrase", _) => Some("VAULT_PASSPHRASE_FILE"),
        ("aws", _) => Some("AWS_SHARED_CREDENTIALS_FILE"),
        ("pgpass", _) => Some("PGPASSFILE"),
        _ => None,
    }
}

fn service(opts: &UnitOptions, credentials: &[Credential], job: Job) -> String {
    let (what, command) = match job {
        Job::Backup => ("vault backup", "backup"),
        Job::Drill => ("vault restore drill", "drill"),
        Job::Forget => ("vault forget (and prune, as [retention] says)", "forget"),
    };
    let mut s = header();
    s += &format!(
        "[Unit]\nDescription={what}\nDocumentation=man:vault(1)\n\
         Wants=network-online.target\nAfter=network-online.target\n\n"
    );
    s += "[Service]\nType=oneshot\n";
    s += &format!("User={}\n", esc(&opts.user));
    if let Some(g) = &opts.group {
        s += &format!("Group={}\n", esc(g));
    }
    s += &format!(
        "ExecStart={} --config {} {command}\n",
        esc_path(&opts.vault_bin),
        esc_path(&opts.config)
    );
    // After a successful run, refresh `vault status` (the journal line, and
    // the Prometheus textfile when [status] prometheus_file names one, which
    // then needs a --write-path). `-`: a stale figure elsewhere must not
    // fail this run.
    s += &format!(
        "ExecStartPost=-{} --config {} status\n",
        esc_path(&opts.vault_bin),
        esc_path(&opts.config)
    );
    for c in credentials {
        let Some(var) = credential_use(&c.name, job) else {
            continue;
        };
        s += &format!("LoadCredential={}:{}\n", c.name, esc_path(&c.path));
        s += &format!("Environment={var}=%d/{}\n", c.name);
    }
    s += "StateDirectory=vault\nStateDirectoryMode=0700\n";
    // Every job reads the repository's metadata through the cache (the
    // configuration file's `cache_dir` applies to every command).
    match &opts.cache_dir {
        // The configuration file's `cache_dir`, writable below.
        Some(dir) => s += &format!("Environment=VAULT_CACHE_DIR={}\n", esc_path(dir)),
        None => {
            s += "CacheDirectory=vault\nCacheDirectoryMode=0700\n";
            s += "Environment=VAULT_CACHE_DIR=%C/vault\n";
        }
    }
    match job {
        Job::Backup | Job::Forget => {}
        Job::Drill => {
            // Restores can be large: the (private) /var/tmp is on disk where
            // /tmp may be a tmpfs. PostgreSQL's JIT needs writable+executable
            // memory, which MemoryDenyWriteExecute= forbids.
            s += "Environment=TMPDIR=/var/tmp\n";
            s += "Environment=\"PGOPTIONS=-c jit=off\"\n";
        }
    }
    s += "Nice=19\nIOSchedulingClass=idle\nUMask=0077\n\n";
    s += "# Sandbox: see systemd.exec(5); `systemd-analyze security vault-*.service` scores it.\n";
    match job {
        Job::Backup => {
            s += "# Read every file to back it up (and nothing else a capability could give).\n";
            s += "CapabilityBoundingSet=CAP_DAC_READ_SEARCH\n";
            s += "AmbientCapabilities=CAP_DAC_READ_SEARCH\n";
        }
        Job::Forget => {
            s += "# Forget and prune only read and delete repository objects: no capability.\n";
            s += "CapabilityBoundingSet=\n";
        }
        Job::Drill => {
            s += "# Only to run the scratch PostgreSQL cluster as the drill user ([drill] user,\n";
            s += "# default vault-drill): a database dump never runs as this service's user.\n";
            s += "CapabilityBoundingSet=CAP_SETUID CAP_SETGID\n";
            s += "AmbientCapabilities=CAP_SETUID CAP_SETGID\n";
        }
    }
    s += "NoNewPrivileges=yes\nProtectSystem=strict\nProtectHome=read-only\n";
    if job == Job::Backup {
        for p in &opts.read_paths {
            s += &format!("ReadOnlyPaths=-{}\n", esc_path(p));
        }
    }
    for p in &opts.write_paths {
        s += &format!("ReadWritePaths={}\n", esc_path(p));
    }
    if let Some(dir) = &opts.cache_dir {
        s += &format!("ReadWritePaths={}\n", esc_path(dir));
    }
    s += "PrivateTmp=yes\n\
          PrivateDevices=yes\n\
          ProtectKernelModules=yes\n\
          ProtectKernelTunables=yes\n\
          ProtectKernelLogs=yes\n\
          ProtectControlGroups=yes\n\
          ProtectClock=yes\n\
          ProtectHostname=yes\n\
          RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6\n\
          RestrictNamespaces=yes\n\
          RestrictRealtime=yes\n\
          RestrictSUIDSGID=yes\n\
          LockPersonality=yes\n\
          MemoryDenyWriteExecute=yes\n\
          SystemCallArchitectures=native\n";
    s
}

fn timer(what: &str, on_calendar: &str, delay: &str) -> String {
    let mut s = header();
    s += &format!(
        "[Unit]\nDescription={what} timer\nDocumentation=man:vault(1)\n\n\
         [Timer]\nOnCalendar={on_calendar}\nRandomizedDelaySec={delay}\nPersistent=yes\n\n\
         [Install]\nWantedBy=timers.target\n"
    );
    s
}

fn header() -> String {
    format!(
        "# Written by `vault systemd` (vault {}). Re-run it, or override with\n\
         # `systemctl edit`, rather than editing this file.\n",
        env!("CARGO_PKG_VERSION")
    )
}

/// Escapes `%` so that systemd does not read it as a specifier.
fn esc(s: &str) -> String {
    s.replace('%', "%%")
}

fn esc_path(p: &Path) -> String {
    esc(&p.to_string_lossy())
}

fn check_path(what: &str, p: &Path) -> Result<()> {
    let Some(s) = p.to_str() else {
        return Err(Error::InvalidInput(format!("{what} {p:?}: not UTF-8")));
    };
    if !p.is_absolute() {
        return Err(Error::InvalidInput(format!(
            "{what} {s:?}: must be an absolute path"
        )));
    }
    if let Some(c) = s
        .chars()
        .find(|&c| c.is_whitespace() || c.is_control() || "\"'\\$;".contains(c))
    {
        return Err(Error::InvalidInput(format!(
            "{what} {s:?}: {c:?} would need quoting in a unit file; use a path without it"
        )));
    }
    Ok(())
}

fn check_account(what: &str, name: &str) -> Result<()> {
    let ok = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
    if !ok {
        return Err(Error::InvalidInput(format!(
            "{what} {name:?}: not a valid user or group name"
        )));
    }
    if what == "--user" && name == "root" {
        return Err(Error::InvalidInput(
            "--user root: the units are meant for a dedicated unprivileged user \
             (e.g. `useradd --system vault`)"
                .into(),
        ));
    }
    Ok(())
}

fn check_calendar_chars(what: &str, spec: &str) -> Result<()> {
    if spec.trim().is_empty() || spec.chars().any(|c| c.is_control() || c == '%') {
        return Err(Error::InvalidInput(format!(
            "{what} {spec:?}: not a calendar expression (e.g. daily, weekly, *-*-* 02:30)"
        )));
    }
    Ok(())
}

/// A simple check of a systemd.time(7) calendar expression, for hosts
/// without `systemd-analyze` (the CLI asks it when present): a shorthand
/// (`daily`, `weekly`, …), or words of weekdays, digits, `*`, and the
/// separators `-:/,.~` plus spaces.
pub fn check_calendar(what: &str, spec: &str) -> Result<()> {
    const SHORTHANDS: [&str; 10] = [
        "minutely",
        "hourly",
        "daily",
        "weekly",
        "monthly",
        "yearly",
        "annually",
        "quarterly",
        "semiannually",
        "semi-annually",
    ];
    const DAYS: [&str; 14] = [
        "mon",
        "tue",
        "wed",
        "thu",
        "fri",
        "sat",
        "sun",
        "monday",
        "tuesday",
        "wednesday",
        "thursday",
        "friday",
        "saturday",
        "sunday",
    ];
    let bad = || {
        Err(Error::InvalidInput(format!(
            "{what} {spec:?}: not a calendar expression (e.g. daily, weekly, Mon *-*-* 03:00, \
             *-*-* 02:30; see systemd.time(7))"
        )))
    };
    let t = spec.trim();
    if t.is_empty() || spec.chars().any(|c| c.is_control() || c == '%') {
        return bad();
    }
    if SHORTHANDS.contains(&t.to_ascii_lowercase().as_str()) {
        return Ok(());
    }
    let mut has_time_or_date = false;
    for word in t.split_whitespace() {
        if word.eq_ignore_ascii_case("utc") {
            continue;
        }
        let days = word.split([',', '.']).filter(|d| !d.is_empty());
        if days
            .clone()
            .all(|d| DAYS.contains(&d.to_ascii_lowercase().as_str()))
        {
            continue;
        }
        if !word
            .chars()
            .all(|c| c.is_ascii_digit() || "*-:/,.~".contains(c))
            || !word.chars().any(|c| c.is_ascii_digit() || c == '*')
        {
            return bad();
        }
        has_time_or_date = true;
    }
    if !has_time_or_date {
        return bad();
    }
    Ok(())
}

fn check_credential_name(name: &str) -> Result<()> {
    if !CREDENTIAL_NAMES.contains(&name) {
        return Err(Error::InvalidInput(format!(
            "credential name {name:?} is not one vault uses; use one of {}",
            CREDENTIAL_NAMES.join(", ")
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts() -> UnitOptions {
        UnitOptions {
            vault_bin: "/usr/local/bin/vault".into(),
            user: "vault".into(),
            group: None,
            config: "/etc/vault/vault.toml".into(),
            on_calendar: "daily".into(),
            drill_on_calendar: "weekly".into(),
            ..Default::default()
        }
    }

    fn drill_opts() -> UnitOptions {
        UnitOptions {
            drill: true,
            ..opts()
        }
    }

    fn unit<'a>(units: &'a [UnitFile], name: &str) -> &'a str {
        &units.iter().find(|u| u.name == name).unwrap().text
    }

    fn lines(text: &str) -> Vec<&str> {
        text.lines().collect()
    }

    #[test]
    fn backup_service_is_hardened_and_gets_the_writer_key() {
        let units = render(&opts()).unwrap();
        assert_eq!(
            units.iter().map(|u| u.name).collect::<Vec<_>>(),
            UNIT_NAMES[..2],
            "the backup host's units only"
        );
        let s = lines(unit(&units, "vault-backup.service"));
        for want in [
            "Type=oneshot",
            "User=vault",
            "ExecStart=/usr/local/bin/vault --config /etc/vault/vault.toml backup",
            "ExecStartPost=-/usr/local/bin/vault --config /etc/vault/vault.toml status",
            "LoadCredential=writer.key:/etc/vault/writer.key",
            "Environment=VAULT_IDENTITY=%d/writer.key",
            "Environment=VAULT_CACHE_DIR=%C/vault",
            "StateDirectory=vault",
            "CacheDirectory=vault",
            "Nice=19",
            "IOSchedulingClass=idle",
            "CapabilityBoundingSet=CAP_DAC_READ_SEARCH",
            "AmbientCapabilities=CAP_DAC_READ_SEARCH",
            "NoNewPrivileges=yes",
            "ProtectSystem=strict",
            "ProtectHome=read-only",
            "PrivateTmp=yes",
            "PrivateDevices=yes",
            "ProtectKernelModules=yes",
            "ProtectKernelTunables=yes",
            "ProtectKernelLogs=yes",
            "ProtectControlGroups=yes",
            "ProtectClock=yes",
            "ProtectHostname=yes",
            "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6",
            "RestrictNamespaces=yes",
            "RestrictRealtime=yes",
            "RestrictSUIDSGID=yes",
            "LockPersonality=yes",
            "MemoryDenyWriteExecute=yes",
            "SystemCallArchitectures=native",
        ] {
            assert!(s.contains(&want), "missing {want:?} in {s:#?}");
        }
        // The owner key never reaches the backup host's nightly job.
        assert!(!s.iter().any(|l| l.contains("owner.key")));
        assert!(!s.iter().any(|l| l.starts_with("Group=")));
        assert!(!s.iter().any(|l| l.starts_with("ReadWritePaths=")));
    }

    #[test]
    fn drill_service_gets_the_owner_key_and_only_the_user_switch() {
        let units = render(&drill_opts()).unwrap();
        assert_eq!(
            units.iter().map(|u| u.name).collect::<Vec<_>>(),
            UNIT_NAMES[2..4]
        );
        let s = lines(unit(&units, "vault-drill.service"));
        for want in [
            "ExecStart=/usr/local/bin/vault --config /etc/vault/vault.toml drill",
            "LoadCredential=owner.key:/etc/vault/owner.key",
            "Environment=VAULT_IDENTITY=%d/owner.key",
            "Environment=TMPDIR=/var/tmp",
            "CapabilityBoundingSet=CAP_SETUID CAP_SETGID",
            "AmbientCapabilities=CAP_SETUID CAP_SETGID",
            "NoNewPrivileges=yes",
            "StateDirectoryMode=0700",
            "PrivateTmp=yes",
            "ProtectSystem=strict",
        ] {
            assert!(s.contains(&want), "missing {want:?} in {s:#?}");
        }
        assert!(!s.iter().any(|l| l.contains("writer.key")));
        assert!(!s.iter().any(|l| l.contains("DAC_READ_SEARCH")));
    }

    #[test]
    fn timers_are_persistent_with_a_random_delay() {
        let mut o = opts();
        o.on_calendar = "*-*-* 02:30".into();
        let units = render(&o).unwrap();
        let t = lines(unit(&units, "vault-backup.timer"));
        let drill = render(&drill_opts()).unwrap();
        for want in [
            "OnCalendar=*-*-* 02:30",
            "RandomizedDelaySec=30min",
            "Persistent=yes",
            "WantedBy=timers.target",
        ] {
            assert!(t.contains(&want), "missing {want:?} in {t:#?}");
        }
        assert!(lines(unit(&drill, "vault-drill.timer")).contains(&"OnCalendar=weekly"));
    }

    #[test]
    fn credentials_paths_and_group_are_routed_to_the_right_unit() {
        let mut o = opts();
        o.group = Some("backup".into());
        o.read_paths = vec!["/etc".into(), "/srv/app%1".into()];
        o.write_paths = vec!["/srv/backup".into()];
        o.cache_dir = Some("/var/cache/vault-here".into());
        o.credentials = ["writer.key:/root/w.key", "aws:/etc/vault/aws"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        let units = render(&o).unwrap();
        let b = lines(unit(&units, "vault-backup.service"));
        o.drill = true;
        o.credentials = vec!["aws:/etc/vault/aws".parse().unwrap()];
        o.forget_on_calendar = Some("daily".into());
        let units = render(&o).unwrap();
        let d = lines(unit(&units, "vault-drill.service"));
        let f = lines(unit(&units, "vault-forget.service"));
        assert!(b.contains(&"Group=backup") && d.contains(&"Group=backup"));
        assert!(b.contains(&"ReadOnlyPaths=-/etc"));
        assert!(b.contains(&"ReadOnlyPaths=-/srv/app%%1"), "% escaped");
        for u in [&b, &d, &f] {
            assert!(u.contains(&"ReadWritePaths=/srv/backup"));
            assert!(u.contains(&"LoadCredential=aws:/etc/vault/aws"));
            assert!(u.contains(&"Environment=AWS_SHARED_CREDENTIALS_FILE=%d/aws"));
        }
        // A given credential replaces the default of its name; the others
        // stay.
        assert!(b.contains(&"LoadCredential=writer.key:/root/w.key"));
        assert!(!b.iter().any(|l| l.contains("/etc/vault/writer.key")));
        for u in [&d, &f] {
            assert!(u.contains(&"LoadCredential=owner.key:/etc/vault/owner.key"));
        }
        // The configured cache directory replaces systemd's.
        assert!(b.contains(&"Environment=VAULT_CACHE_DIR=/var/cache/vault-here"));
        assert!(b.contains(&"ReadWritePaths=/var/cache/vault-here"));
        assert!(!b.iter().any(|l| l.starts_with("CacheDirectory=")));
        assert!(
            f.contains(&"ExecStart=/usr/local/bin/vault --config /etc/vault/vault.toml forget")
        );
        assert!(f.contains(&"CapabilityBoundingSet="));
        assert!(lines(unit(&units, "vault-forget.timer")).contains(&"OnCalendar=daily"));
    }

    #[test]
    fn the_owner_key_never_goes_to_a_backup_host_and_unknown_names_are_refused() {
        for bad in [
            "owner.key:/etc/vault/owner.key",
            "passphrase:/etc/vault/pass",
        ] {
            let mut o = opts();
            o.credentials = vec![bad.parse().unwrap()];
            let err = render(&o).unwrap_err().to_string();
            assert!(err.contains("drill host"), "{err}");
        }
        let mut o = drill_opts();
        o.credentials = vec!["writer.key:/etc/vault/writer.key".parse().unwrap()];
        assert!(render(&o).is_err());
        let err = "site:/etc/x".parse::<Credential>().unwrap_err().to_string();
        assert!(
            err.contains("writer.key, owner.key, passphrase, aws, pgpass"),
            "{err}"
        );
    }

    #[test]
    fn calendar_expressions_are_checked_without_systemd() {
        for good in [
            "daily",
            "Weekly",
            "*-*-* 02:30",
            "Mon,Fri *-*-* 03:00:00",
            "Sat 04:00",
            "*:0/15",
            "2026-01-01 UTC",
        ] {
            assert!(check_calendar("--on-calendar", good).is_ok(), "{good}");
        }
        for bad in ["dayly", "every night", "", "Mon", "02:30; rm"] {
            assert!(check_calendar("--on-calendar", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn refuses_what_would_break_a_unit_file() {
        for bad in [
            "writer.key",
            ":/x",
            "a/b:/x",
            "..:/x",
            "aws:relative",
            "aws:/a b",
        ] {
            assert!(bad.parse::<Credential>().is_err(), "{bad}");
        }
        let cases: [fn(&mut UnitOptions); 6] = [
            |o| o.user = "root".into(),
            |o| o.user = "va ult".into(),
            |o| o.vault_bin = "vault".into(),
            |o| o.config = "/etc/$HOME".into(),
            |o| o.on_calendar = "daily\nExecStart=/bin/sh".into(),
            |o| o.read_paths = vec!["/etc\n[Service]".into()],
        ];
        for f in cases {
            let mut o = opts();
            f(&mut o);
            let err = render(&o).unwrap_err();
            assert!(matches!(err, Error::InvalidInput(_)), "{err}");
        }
    }
}
