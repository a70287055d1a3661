//! `vault systemd`: hardened units for the backup host (nightly backup) or,
//! with `--drill`, the drill host (weekly drill, and forget/prune when the
//! configuration file sets `[retention]`).

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::Args;

use crate::cli::exit::{ExitCode, usage};
use vault::deploy::systemd::{self, Credential, UnitOptions};

/// `vault systemd`.
#[derive(Args)]
pub struct SystemdArgs {
    /// The dedicated unprivileged user the services run as; it must exist
    /// (the error gives the `useradd` line).
    #[arg(long)]
    user: String,
    /// The services' group (default: the user's primary group).
    #[arg(long)]
    group: Option<String>,
    /// Write the drill host's units (vault-drill, and vault-forget when the
    /// configuration file sets [retention]) instead of the backup host's.
    /// Only these hold the owner key.
    #[arg(long)]
    drill: bool,
    /// Write the unit files here (e.g. /etc/systemd/system) instead of
    /// printing them.
    #[arg(long, value_name = "DIR")]
    output: Option<PathBuf>,
    /// Replace unit files that already exist in --output.
    #[arg(long, requires = "output")]
    force: bool,
    /// The config file the services pass to vault; when it exists, its
    /// local repository and prometheus_file directory become
    /// ReadWritePaths=, its cache_dir the services' cache, and its
    /// [retention] a forget timer (with --drill).
    #[arg(long, default_value = "/etc/vault/vault.toml")]
    config: PathBuf,
    /// When the backup runs (systemd.time(7) calendar expression).
    #[arg(long, default_value = "daily")]
    on_calendar: String,
    /// When the restore drill runs.
    #[arg(long, default_value = "weekly")]
    drill_on_calendar: String,
    /// When forget (and prune, as [retention] says) runs, with --drill.
    #[arg(long, default_value = "daily")]
    forget_on_calendar: String,
    /// A path the backup reads, kept read-only for it (repeatable).
    #[arg(long = "read-path", value_name = "PATH")]
    read_paths: Vec<PathBuf>,
    /// A path the services may write (repeatable), besides what the config
    /// file names.
    #[arg(long = "write-path", value_name = "PATH")]
    write_paths: Vec<PathBuf>,
    /// A root-owned file handed over with LoadCredential=, in addition to
    /// the default (writer.key:/etc/vault/writer.key, or with --drill
    /// owner.key:/etc/vault/owner.key); repeatable. NAME is one of
    /// writer.key, owner.key (--drill only), passphrase (--drill only), aws,
    /// pgpass.
    #[arg(long = "credential", value_name = "NAME:PATH")]
    credentials: Vec<Credential>,
    /// The installed vault binary for ExecStart= (default: this one, if it
    /// is installed: not under /tmp or a build directory).
    #[arg(long, value_name = "PATH")]
    vault_bin: Option<PathBuf>,
    /// Units for a package built on another machine (scripts/package.sh):
    /// --vault-bin is where the package installs vault and need not exist
    /// here, --user is created by the package, and no configuration file
    /// is read (the units are the same wherever they are built).
    #[arg(long, requires = "vault_bin")]
    for_package: bool,
}

/// Runs `vault systemd`: prints the units, or writes them to `--output`.
pub fn run(a: SystemdArgs) -> Result<ExitCode> {
    let vault_bin = match a.vault_bin {
        Some(p) => p,
        None => std::env::current_exe().context("finding this vault binary (pass --vault-bin)")?,
    };
    if !a.for_package {
        installed(&vault_bin)?;
        account_exists(&a.user, a.group.as_deref())?;
    } else if !vault_bin.is_absolute() {
        usage!(
            "--vault-bin {}: must be an absolute path",
            vault_bin.display()
        );
    }
    let calendars = [
        ("--on-calendar", &a.on_calendar, !a.drill),
        ("--drill-on-calendar", &a.drill_on_calendar, a.drill),
        ("--forget-on-calendar", &a.forget_on_calendar, a.drill),
    ];
    for (flag, spec, used) in calendars {
        if used {
            calendar(flag, spec)?;
        }
    }
    let from_file = if a.for_package {
        FromConfig::default()
    } else {
        from_config(&a.config)?
    };
    let mut write_paths = a.write_paths;
    for p in from_file.write_paths {
        if !write_paths.contains(&p) {
            write_paths.push(p);
        }
    }
    let units = systemd::render(&UnitOptions {
        vault_bin,
        user: a.user,
        group: a.group,
        config: a.config,
        drill: a.drill,
        on_calendar: a.on_calendar,
        drill_on_calendar: a.drill_on_calendar,
        forget_on_calendar: from_file.retention.then_some(a.forget_on_calendar),
        read_paths: a.read_paths,
        write_paths,
        cache_dir: from_file.cache_dir,
        credentials: a.credentials,
    })?;
    let Some(dir) = a.output else {
        for u in &units {
            outln!("# {}\n{}", u.name, u.text);
        }
        return Ok(ExitCode::Ok);
    };
    if !a.force
        && let Some(u) = units.iter().find(|u| dir.join(u.name).exists())
    {
        usage!(
            "{} exists; pass --force to replace the vault units in {}",
            dir.join(u.name).display(),
            dir.display()
        );
    }
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    for u in &units {
        let path = dir.join(u.name);
        std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .create_new(!a.force)
            .open(&path)
            .and_then(|mut f| f.write_all(u.text.as_bytes()))
            .with_context(|| format!("writing {}", path.display()))?;
        outln!("wrote {}", path.display());
    }
    let timers: Vec<&str> = units
        .iter()
        .map(|u| u.name)
        .filter(|n| n.ends_with(".timer"))
        .collect();
    outln!(
        "next: systemctl daemon-reload && systemctl enable --now {}",
        timers.join(" ")
    );
    Ok(ExitCode::Ok)
}

/// What the configuration file adds to the units.
#[derive(Default)]
struct FromConfig {
    /// A local repository and the Prometheus file's directory.
    write_paths: Vec<PathBuf>,
    /// `cache_dir`.
    cache_dir: Option<PathBuf>,
    /// Whether `[retention]` sets a policy.
    retention: bool,
}

/// Reads `path` when it exists (units may be written before the file);
/// an invalid file is a usage error (`vault config check` says more).
fn from_config(path: &Path) -> Result<FromConfig> {
    if !path.exists() {
        return Ok(FromConfig::default());
    }
    let s = vault::settings::Settings::load(path).map_err(|e| {
        crate::cli::exit::UsageError(format!(
            "{e}\nthe units take the repository, cache and Prometheus paths from this file: \
             fix it first (`vault config check --config {}`)",
            path.display()
        ))
    })?;
    let mut out = FromConfig {
        cache_dir: s.cache_dir.clone(),
        retention: !s.retention.counts().is_empty() || s.retention.keep_within.is_some(),
        ..Default::default()
    };
    if let Some(repo) = &s.repository {
        let local = repo.strip_prefix("file://").unwrap_or(repo);
        if local.starts_with('/') {
            out.write_paths.push(PathBuf::from(local));
        }
    }
    if let Some(dir) = s.status.prometheus_file.as_deref().and_then(Path::parent)
        && !dir.as_os_str().is_empty()
    {
        out.write_paths.push(dir.to_owned());
    }
    Ok(out)
}

/// Refuses an `ExecStart=` binary that is not installed: missing, under a
/// temporary directory (`PrivateTmp=` hides /tmp and /var/tmp from the
/// service, and anyone may write there), or in a cargo build directory
/// (replaced by the next build).
fn installed(bin: &Path) -> Result<()> {
    let install = "install it first (`cargo install --locked --path .`, or `install -m 0755 \
                   target/release/vault /usr/local/bin/vault`) and pass --vault-bin \
                   /usr/local/bin/vault";
    let meta = match std::fs::metadata(bin) {
        Ok(m) => m,
        Err(_) => usage!("--vault-bin {}: does not exist; {install}", bin.display()),
    };
    if !meta.is_file() || meta.permissions().mode() & 0o111 == 0 {
        usage!(
            "--vault-bin {}: not an executable file; {install}",
            bin.display()
        );
    }
    let real = std::fs::canonicalize(bin).unwrap_or_else(|_| bin.to_owned());
    for p in [bin, real.as_path()] {
        if ["/tmp/", "/var/tmp/", "/dev/shm/", "/run/user/"]
            .iter()
            .any(|t| p.starts_with(t))
        {
            usage!(
                "ExecStart would run {}: a temporary directory, which the service's private \
                 /tmp hides and anyone may write; {install}",
                p.display()
            );
        }
        let build_dir = p.ancestors().skip(1).any(|d| {
            d.join("CACHEDIR.TAG").is_file()
                || d.join(".fingerprint").is_dir()
                || (d
                    .file_name()
                    .is_some_and(|n| n == "debug" || n == "release")
                    && d.parent().is_some_and(|t| t.join("CACHEDIR.TAG").exists()))
        });
        if build_dir {
            usage!(
                "ExecStart would run {}: a build directory's binary, replaced by the next build; \
                 {install}",
                p.display()
            );
        }
    }
    Ok(())
}

/// The service user (and group) must exist: systemd would fail at start.
fn account_exists(user: &str, group: Option<&str>) -> Result<()> {
    // Names are checked by the renderer; look up only plausible ones.
    if user.is_empty() || user.contains(['/', '\0']) {
        return Ok(());
    }
    if matches!(nix::unistd::User::from_name(user), Ok(None)) {
        usage!(
            "--user {user}: there is no such user; create it first:\n  useradd --system \
             --no-create-home --home-dir /var/lib/vault --shell /usr/sbin/nologin {user}"
        );
    }
    if let Some(g) = group
        && !g.contains(['/', '\0'])
        && matches!(nix::unistd::Group::from_name(g), Ok(None))
    {
        usage!("--group {g}: there is no such group; create it first:\n  groupadd --system {g}");
    }
    Ok(())
}

/// Validates a calendar expression with `systemd-analyze calendar` when it
/// is installed, else with vault's simple check.
fn calendar(flag: &str, spec: &str) -> Result<()> {
    match std::process::Command::new("systemd-analyze")
        .args(["calendar", "--", spec])
        .stdin(std::process::Stdio::null())
        .output()
    {
        Ok(out) if out.status.success() => Ok(()),
        Ok(out) => {
            let why = String::from_utf8_lossy(&out.stderr);
            let why = why.lines().next().unwrap_or("").trim();
            usage!(
                "{flag} {spec:?}: systemd does not read it as a calendar expression ({}); e.g. \
                 daily, weekly, Mon *-*-* 03:00, *-*-* 02:30 (systemd.time(7))",
                crate::cli::render::sanitize(why)
            )
        }
        Err(_) => Ok(systemd::check_calendar(flag, spec)?),
    }
}
