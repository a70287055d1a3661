//! One function per command: flags → library options → report → exit code.

use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use clap::CommandFactory;
use serde_json::json;

use super::output::{self, sanitize, size};
use super::{
    BackupArgs, CheckArgs, Cli, Command, CompletionsArgs, ConfigCommand, DrillArgs, DumpArgs,
    ExitCode, InitArgs, KeyCommand, LockModeArg, LsArgs, ManArgs, RepoArgs, RestoreArgs,
    SnapshotsArgs, SystemdArgs,
};
use vault::crypto;
use vault::format::chunk::ChunkerParams;
use vault::format::tree::NodeKind;
use vault::ops::backup::{self, BackupOptions, CommandSource};
use vault::ops::check::{self, CheckOptions, CheckReport, Severity};
use vault::ops::restore::{self, RestoreOptions};
use vault::repo::treewalk::{self, Next, Visit};
use vault::repo::{Access, InitOptions, OwnerSpec, Repository};
use vault::storage::{LockMode, ObjectLock};

/// Runs one command; `config` is the `--config` file (or `VAULT_CONFIG`).
pub fn run(command: Command, config: Option<PathBuf>) -> Result<ExitCode> {
    match command {
        Command::Key(KeyCommand::Generate { output }) => key_generate(output),
        Command::Key(k) => super::keys::run(k),
        Command::Init(a) => init(a),
        Command::Backup(a) => backup(a),
        Command::Snapshots(a) => snapshots(a),
        Command::Ls(a) => ls(a),
        Command::Restore(a) => restore(a),
        Command::Dump(a) => dump(a),
        Command::Check(a) => check(a),
        Command::Drill(a) => drill(a),
        Command::Status(a) => super::status::run(a),
        Command::Forget(a) => super::maintain::forget(a),
        Command::Prune(a) => super::maintain::prune(a),
        Command::Copy(a) => super::copy::copy(a),
        Command::Systemd(a) => systemd(a),
        Command::Completions(a) => completions(a),
        Command::Man(a) => man(a),
        Command::Config(ConfigCommand::Check { json }) => super::config::check(config, json),
    }
}

fn open_storage(repo: &str) -> Result<Arc<dyn vault::storage::Storage>> {
    Ok(Arc::from(vault::storage::open(repo)?))
}

/// Opens the repository `args` names with the key it names.
pub fn open_repo(args: &RepoArgs) -> Result<Repository> {
    let storage = open_storage(&args.repo)?;
    let repo = match &args.identity {
        Some(path) => Repository::open(storage, Access::IdentityFile(path)),
        None if vault::crypto::passphrase_file().is_some()
            || std::io::IsTerminal::is_terminal(&std::io::stdin()) =>
        {
            let p = crypto::obtain_passphrase("vault owner passphrase: ")?;
            Repository::open(storage, Access::Passphrase(p))
        }
        None => bail!(
            "no key given: pass -i KEY (or set VAULT_IDENTITY, or VAULT_PASSPHRASE_FILE for a passphrase owner)"
        ),
    };
    repo.with_context(|| format!("opening repository {}", args.repo))
}

fn key_generate(output: PathBuf) -> Result<ExitCode> {
    let (text, recipient) = crypto::generate_x25519();
    crypto::write_key_file(&output, &text).with_context(|| "writing the new identity")?;
    println!("{recipient}");
    Ok(ExitCode::Ok)
}

fn init(a: InitArgs) -> Result<ExitCode> {
    if a.like.like.is_some() {
        return super::copy::init_like(&a.repo, &a.like);
    }
    let writer_key_out = a
        .writer_key_out
        .clone()
        .context("--writer-key-out is required")?;
    let owner = if a.owner_passphrase {
        OwnerSpec::Passphrase(crypto::obtain_passphrase("passphrase for the new owner: ")?)
    } else {
        OwnerSpec::Recipients(
            a.owner
                .iter()
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty())
                .collect(),
        )
    };
    let avg = a.chunk_avg_kib.saturating_mul(1024);
    let opts = InitOptions {
        owner,
        owner_name: a.owner_name.clone(),
        writer_key_out: writer_key_out.clone(),
        chunker: ChunkerParams {
            min_size: avg / 4,
            avg_size: avg,
            max_size: avg.saturating_mul(4),
        },
        pack_size: a.pack_size_mib.saturating_mul(1 << 20),
        compression_level: a.compression_level,
        object_lock: a.object_lock_days.map(|days| ObjectLock {
            mode: match a.object_lock_mode {
                Some(LockModeArg::Compliance) => LockMode::Compliance,
                Some(LockModeArg::Governance) | None => LockMode::Governance,
            },
            days,
        }),
    };
    let config = Repository::init(open_storage(&a.repo)?, &opts)
        .with_context(|| format!("creating repository {}", a.repo))?;
    println!("created repository {} at {}", config.id, a.repo);
    if let Some(lock) = config.object_lock {
        println!(
            "every object is retained with S3 Object Lock ({}) for {} days after its upload",
            lock.mode.as_s3(),
            lock.days
        );
    }
    println!(
        "owner {:?} can read everything; writer key for backup hosts: {}",
        a.owner_name,
        writer_key_out.display()
    );
    Ok(ExitCode::Ok)
}

fn default_cache_dir() -> Option<PathBuf> {
    if let Some(x) = std::env::var_os("XDG_CACHE_HOME") {
        return Some(PathBuf::from(x).join("vault"));
    }
    if nix::unistd::geteuid().is_root() {
        return Some(PathBuf::from("/var/cache/vault"));
    }
    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/vault"))
}

fn backup(a: BackupArgs) -> Result<ExitCode> {
    if a.paths.is_empty() && a.from_command.is_empty() && a.postgres.is_empty() {
        return Err(anyhow::Error::new(vault::Error::Usage(
            "nothing to back up: give PATHs, --from-command or --postgres, or a [backup] \
             section in the config file"
                .into(),
        )));
    }
    if a.stdin_filename.len() > a.from_command.len() {
        bail!("--stdin-filename is given more often than --from-command");
    }
    let commands = a
        .from_command
        .iter()
        .enumerate()
        .map(|(i, command)| {
            let filename = a.stdin_filename.get(i).cloned().unwrap_or_else(|| {
                if i == 0 {
                    "stdin".into()
                } else {
                    format!("stdin-{}", i + 1)
                }
            });
            CommandSource::shell(command.clone(), filename)
        })
        .collect();
    for conninfo in &a.postgres {
        let has_password = vault::source::postgres::conninfo_env(conninfo)
            .map(|env| env.iter().any(|(k, _)| k == "PGPASSWORD"))
            .unwrap_or(false);
        if has_password {
            bail!(
                "--postgres {}: a password on the command line is visible to every user of this \
                 host; put it in a passfile (PGPASSFILE, ~/.pgpass) or the PGPASSWORD environment variable",
                vault::source::postgres::redacted(conninfo)
            );
        }
    }
    let repo = open_repo(&a.repo)?;
    let stats = std::sync::Arc::new(backup::Stats::default());
    let opts = BackupOptions {
        paths: a.paths,
        commands,
        postgres: a.postgres,
        excludes: a.excludes,
        tags: a.tags,
        host: a.host,
        cache_dir: if a.no_cache {
            None
        } else {
            a.cache_dir.or_else(default_cache_dir)
        },
        progress: Some(stats.clone()),
        ..Default::default()
    };
    let drawing = super::progress::BackupProgress::start(&stats, a.json);
    let out = backup::run(&repo, &opts).context("backup failed; no snapshot was written");
    drop(drawing);
    let out = out?;
    let s = &out.snapshot;
    if a.json {
        output::json(&json!({ "id": out.id, "snapshot": s, "complete": s.is_complete() }));
    } else {
        let t = &s.totals;
        println!("snapshot {} saved", out.id.short());
        println!(
            "  {} files, {} dirs, {} ({} files read, the rest unchanged)",
            t.files,
            t.dirs,
            size(t.bytes),
            t.files_read
        );
        println!(
            "  added {} new blobs, {} raw, {} stored, in {}",
            t.blobs_added,
            size(t.bytes_added),
            size(t.bytes_stored),
            output::duration_ms(t.duration_ms)
        );
    }
    for e in &s.errors {
        eprintln!(
            "vault: warning: could not read {}: {}",
            sanitize(&e.path),
            sanitize(&e.message)
        );
    }
    Ok(if s.is_complete() {
        ExitCode::Ok
    } else {
        ExitCode::Partial
    })
}

fn snapshots(a: SnapshotsArgs) -> Result<ExitCode> {
    let repo = open_repo(&a.repo)?;
    let (list, damaged) = repo.snapshots()?;
    for e in &damaged {
        eprintln!("vault: warning: {}", sanitize(&format!("{e}")));
    }
    if a.json {
        let now = chrono::Utc::now();
        let v: Vec<_> = list
            .iter()
            .map(|(id, s)| {
                let expiring =
                    vault::source::keystore::expiring(&s.certificates, now, CERT_WARN_DAYS);
                json!({ "id": id, "snapshot": s, "expiring_certificates": expiring })
            })
            .collect();
        output::json(&v);
    } else {
        println!(
            "{:<8}  {:<20}  {:<16}  {:>10}  {:<6}  paths",
            "id", "time (UTC)", "host", "size", "status"
        );
        for (id, s) in &list {
            println!(
                "{:<8}  {:<20}  {:<16}  {:>10}  {:<6}  {}",
                id.short(),
                s.time.format("%Y-%m-%d %H:%M:%S"),
                sanitize(&s.host),
                size(s.totals.bytes),
                if s.is_complete() { "ok" } else { "partial" },
                sanitize(
                    &s.sources
                        .iter()
                        .flat_map(|x| x.paths.iter().cloned())
                        .collect::<Vec<_>>()
                        .join(" ")
                )
            );
        }
    }
    Ok(if damaged.is_empty() {
        ExitCode::Ok
    } else {
        ExitCode::Damage
    })
}

/// Prints restore problems, one per line.
fn print_problems(problems: &[vault::ops::restore::Problem]) {
    for p in problems {
        println!(
            "  {:?}: /{}: {}",
            p.kind,
            sanitize(&p.path),
            sanitize(&p.message)
        );
    }
}

/// Certificates expiring within this many days are reported.
const CERT_WARN_DAYS: i64 = 30;

/// Prints a warning line per certificate that expires soon.
fn warn_expiring(certs: &[vault::format::snapshot::CertInfo]) {
    for c in vault::source::keystore::expiring(certs, chrono::Utc::now(), CERT_WARN_DAYS) {
        println!(
            "  warning: certificate {} expires {}",
            sanitize(&c.subject),
            c.not_after.format("%Y-%m-%d %H:%M UTC")
        );
    }
}

fn ls(a: LsArgs) -> Result<ExitCode> {
    let repo = open_repo(&a.repo)?;
    let (id, snap) = repo.find_snapshot(&a.snapshot)?;
    let (index, _) = repo.load_index()?;
    let prefix = a
        .path
        .as_deref()
        .map(|p| PathBuf::from(p.trim_matches('/')))
        .filter(|p| !p.as_os_str().is_empty());
    let mut out = std::io::stdout().lock();
    let mut damaged = false;
    // Every entry counts against the header's totals: a tree reusing its
    // subtrees cannot list 2^depth entries, nor one blob millions.
    let mut walker =
        treewalk::Walker::new(&repo, &index)?.with_budget(treewalk::Budget::of(&snap.totals));
    walker.walk(&snap.root, &mut |v| {
        let (path, node) = match v {
            Visit::Entry { path, node } => (path, node),
            Visit::Leave { .. } => return Ok(Next::Descend),
            Visit::Damaged { path, error } => {
                damaged = true;
                eprintln!(
                    "vault: error: /{}: {}",
                    sanitize(&path.display().to_string()),
                    sanitize(&error.to_string())
                );
                return Ok(Next::Skip);
            }
        };
        if let Some(p) = &prefix
            && !path.starts_with(p)
        {
            return Ok(if p.starts_with(path) {
                Next::Descend
            } else {
                Next::Skip
            });
        }
        let shown = format!(
            "/{}",
            vault::format::escape::escape_bytes(path.as_os_str().as_bytes())
        );
        if a.json {
            let _ = writeln!(out, "{}", json!({ "path": shown, "node": node }));
        } else {
            let kind = match node.kind {
                NodeKind::Dir => 'd',
                NodeKind::Symlink => 'l',
                NodeKind::Fifo => 'p',
                NodeKind::Chardev => 'c',
                NodeKind::Blockdev => 'b',
                NodeKind::Socket => 's',
                NodeKind::File => '-',
            };
            let mtime =
                chrono::DateTime::from_timestamp_nanos(node.mtime_ns).format("%Y-%m-%d %H:%M");
            let owner = format!(
                "{}/{}",
                node.user.clone().unwrap_or(node.uid.to_string()),
                node.group.clone().unwrap_or(node.gid.to_string())
            );
            let _ = write!(
                out,
                "{kind}{:04o} {:<16} {:>10} {mtime} {shown}",
                node.mode,
                sanitize(&owner),
                node.size
            );
            if let Some(t) = &node.target {
                let _ = write!(out, " -> {}", vault::format::escape::escape_bytes(&t.0));
            }
            let _ = writeln!(out);
        }
        Ok(Next::Descend)
    })?;
    let _ = id;
    Ok(if damaged {
        ExitCode::Damage
    } else {
        ExitCode::Ok
    })
}

fn restore(a: RestoreArgs) -> Result<ExitCode> {
    let repo = open_repo(&a.repo)?;
    let (id, snap) = repo.find_snapshot(&a.snapshot)?;
    let (report, drill) = if a.verify {
        let (r, d) = restore::verify_drill(
            &repo,
            &id,
            &snap,
            a.target.as_deref(),
            &a.include,
            a.pg_url.as_deref(),
        )?;
        (r, Some(d))
    } else {
        let target = a
            .target
            .clone()
            .expect("clap requires --target without --verify");
        let opts = RestoreOptions {
            target,
            include: a.include.clone(),
            threads: 0,
            verify: false,
        };
        (restore::restore(&repo, &id, &snap, &opts)?, None)
    };
    let passed = !report.failed();
    if a.json {
        let expiring = vault::source::keystore::expiring(
            &snap.certificates,
            chrono::Utc::now(),
            CERT_WARN_DAYS,
        );
        output::json(
            &json!({ "passed": passed, "drill": drill, "report": report, "expiring_certificates": expiring }),
        );
    } else {
        let verb = if a.verify { "verified" } else { "restored" };
        println!(
            "snapshot {} {verb}: {} files, {} dirs, {} other, {} in {}",
            id.short(),
            report.files,
            report.dirs,
            report.other,
            size(report.bytes),
            output::duration_ms(report.duration_ms)
        );
        if a.verify {
            println!(
                "  {} files re-read from disk and matched their BLAKE3 hashes",
                report.verified
            );
            if let Some(d) = drill {
                println!("  drill record {} written", d.short());
            }
        }
        for db in &report.databases {
            let verdict = if db.passed {
                "restored into a scratch PostgreSQL, every row count matches"
            } else {
                "FAILED"
            };
            println!("  database {}: {verdict}", sanitize(&db.name));
            for t in &db.tables {
                let n = |v: Option<u64>| v.map_or("-".to_owned(), |v| v.to_string());
                let mark = if t.expected == t.found {
                    "ok"
                } else {
                    "MISMATCH"
                };
                println!(
                    "    {:<40} expected {:>10}  found {:>10}  {mark}",
                    sanitize(&t.table),
                    n(t.expected),
                    n(t.found)
                );
            }
        }
        print_problems(&report.problems);
        warn_expiring(&snap.certificates);
        println!("result: {}", if passed { "PASSED" } else { "FAILED" });
    }
    Ok(if passed {
        ExitCode::Ok
    } else if a.verify || report.found_damage() {
        ExitCode::Damage
    } else {
        ExitCode::Failure
    })
}

fn dump(a: DumpArgs) -> Result<ExitCode> {
    let repo = open_repo(&a.repo)?;
    let (_, snap) = repo.find_snapshot(&a.snapshot)?;
    let stdout = std::io::stdout().lock();
    match restore::dump_tar(
        &repo,
        &snap,
        a.path.as_deref(),
        std::io::BufWriter::new(stdout),
    ) {
        Err(vault::Error::Io { error, .. }) if error.kind() == std::io::ErrorKind::BrokenPipe => {
            Ok(ExitCode::Ok)
        }
        other => other.map(|_| ExitCode::Ok).context("dump failed"),
    }
}

fn check(a: CheckArgs) -> Result<ExitCode> {
    let storage = open_storage(&a.repo)?;
    let mut report = CheckReport::default();
    let read_data = match (&a.read_data_subset, a.read_data) {
        (Some(s), _) => {
            let (n, m) = s
                .split_once('/')
                .context("--read-data-subset takes N/M, e.g. 1/7")?;
            let (n, m): (u32, u32) = (n.parse()?, m.parse()?);
            if n == 0 || m == 0 || n > m {
                bail!("--read-data-subset {s}: need 1 <= N <= M");
            }
            Some((n, m))
        }
        (None, true) => Some((1, 1)),
        (None, false) => None,
    };
    if a.storage {
        check::check_storage(storage.as_ref(), &mut report)?;
        let grace = a
            .clean_uploads
            .then(|| chrono::Utc::now() - chrono::Duration::hours(i64::from(a.upload_grace_hours)));
        check::check_uploads(storage.as_ref(), grace, &mut report)?;
    }
    let keyed = a.identity.is_some() || read_data.is_some() || !a.storage;
    if keyed {
        let repo = open_repo(&RepoArgs {
            repo: a.repo.clone(),
            identity: a.identity.clone(),
        })?;
        check::check(
            &repo,
            &CheckOptions {
                structure: true,
                read_data,
                storage: false,
            },
            &mut report,
        )?;
    }
    if a.json {
        output::json(&report);
    } else {
        for f in &report.findings {
            let sev = if f.severity == Severity::Error {
                "error"
            } else {
                "info"
            };
            println!("{sev}: {}: {}", sanitize(&f.subject), sanitize(&f.message));
        }
        println!(
            "checked {} snapshots, hashed {} objects, read {} packs ({} blobs), \
             {} unfinished uploads ({} aborted): {}",
            report.snapshots,
            report.objects_hashed,
            report.packs_read,
            report.blobs_verified,
            report.pending_uploads,
            report.uploads_aborted,
            if report.has_errors() {
                "DAMAGE FOUND"
            } else {
                "no errors"
            }
        );
    }
    Ok(if report.has_errors() {
        ExitCode::Damage
    } else {
        ExitCode::Ok
    })
}

fn drill(a: DrillArgs) -> Result<ExitCode> {
    let repo = open_repo(&a.repo)?;
    let day = (chrono::Utc::now().timestamp() / 86_400).max(0) as u64;
    let opts = vault::ops::drill::DrillOptions {
        period_days: a.period_days,
        day,
        random_older: !a.no_random_older,
    };
    let report = vault::ops::drill::run(&repo, &opts, a.pg_url.as_deref())?;
    if a.json {
        output::json(&report);
    } else {
        for s in &report.snapshots {
            let r = &s.report;
            println!(
                "snapshot {} ({}): {} files, {} re-read, {} databases: {}",
                s.snapshot.short(),
                s.reason,
                r.files,
                r.verified,
                r.databases.len(),
                if r.failed() { "FAILED" } else { "passed" }
            );
            print_problems(&r.problems);
            for c in &s.expiring_certificates {
                println!(
                    "  warning: certificate {} expires {}",
                    sanitize(&c.subject),
                    c.not_after.format("%Y-%m-%d")
                );
            }
        }
        println!(
            "packs slice {}: {} packs, {} blobs verified{}",
            report.pack_slice,
            report.packs.packs_read,
            report.packs.blobs_verified,
            if report.packs.has_errors() {
                ", DAMAGE FOUND"
            } else {
                ""
            }
        );
        for f in report
            .packs
            .findings
            .iter()
            .filter(|f| f.severity == Severity::Error)
        {
            println!(
                "  error: {}: {}",
                sanitize(&f.subject),
                sanitize(&f.message)
            );
        }
        println!(
            "result: {}",
            if report.passed { "PASSED" } else { "FAILED" }
        );
    }
    Ok(if report.passed {
        ExitCode::Ok
    } else {
        ExitCode::Damage
    })
}

fn systemd(a: SystemdArgs) -> Result<ExitCode> {
    let vault_bin = match a.vault_bin {
        Some(p) => p,
        None => std::env::current_exe().context("finding this vault binary (pass --vault-bin)")?,
    };
    let units = vault::deploy::systemd::render(&vault::deploy::systemd::UnitOptions {
        vault_bin,
        user: a.user,
        group: a.group,
        config: a.config,
        on_calendar: a.on_calendar,
        drill_on_calendar: a.drill_on_calendar,
        read_paths: a.read_paths,
        write_paths: a.write_paths,
        credentials: a.credentials,
    })?;
    let Some(dir) = a.output else {
        for u in &units {
            println!("# {}\n{}", u.name, u.text);
        }
        return Ok(ExitCode::Ok);
    };
    if !a.force
        && let Some(u) = units.iter().find(|u| dir.join(u.name).exists())
    {
        bail!(
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
        println!("wrote {}", path.display());
    }
    println!(
        "next: systemctl daemon-reload && systemctl enable --now vault-backup.timer vault-drill.timer"
    );
    Ok(ExitCode::Ok)
}

fn completions(a: CompletionsArgs) -> Result<ExitCode> {
    let mut script = Vec::new();
    clap_complete::generate(a.shell, &mut Cli::command(), "vault", &mut script);
    output::raw(&script).context("writing the completion script")?;
    Ok(ExitCode::Ok)
}

fn man(a: ManArgs) -> Result<ExitCode> {
    let cmd = Cli::command();
    match a.output {
        None => {
            let mut page = Vec::new();
            clap_mangen::Man::new(cmd).render(&mut page)?;
            output::raw(&page).context("writing the manual page")?;
        }
        Some(dir) => {
            std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
            clap_mangen::generate_to(cmd, &dir)
                .with_context(|| format!("writing manual pages to {}", dir.display()))?;
            println!("wrote manual pages to {}", dir.display());
        }
    }
    Ok(ExitCode::Ok)
}
