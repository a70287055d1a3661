//! `vault backup`: paths, command output and PostgreSQL databases into a
//! new snapshot.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::Args;

use crate::cli::access::RepoArgs;
use crate::cli::exit::{ExitCode, usage};
use crate::cli::{progress, render};
use vault::ops::backup::{self, BackupOptions, CommandSource};

/// `vault backup`.
#[derive(Args)]
pub struct BackupArgs {
    #[command(flatten)]
    repo: RepoArgs,
    /// Paths to back up.
    /// (Required unless --files-from, --from-command, --postgres or the
    /// config file's [backup] section names a source.)
    paths: Vec<PathBuf>,
    /// Also back up the paths listed in FILE (`-`: standard input), one
    /// per line; blank lines and lines starting with `#` are skipped.
    /// Repeatable.
    #[arg(long = "files-from", value_name = "FILE")]
    files_from: Vec<PathBuf>,
    /// Like --files-from, but the paths are separated by NUL bytes and
    /// taken verbatim (`find -print0`). Repeatable.
    #[arg(long = "files-from-raw", value_name = "FILE")]
    files_from_raw: Vec<PathBuf>,
    /// Dump a PostgreSQL database natively (libpq conninfo, repeatable):
    /// one consistent snapshot with the exact row count of every table.
    /// A password belongs in a passfile or PGPASSWORD, not here.
    #[arg(long = "postgres", value_name = "CONNINFO")]
    postgres: Vec<String>,
    /// Name the --postgres source this follows: its dump is stored as
    /// postgres/NAME.dump instead of the database's name, so two databases
    /// of one name from different servers can share a snapshot, e.g.
    /// `--postgres "dbname=app host=db1" --postgres "dbname=app host=db2"
    /// --postgres-name app-replica`. A --postgres with no name after it
    /// keeps its database's name. Letters, digits, `.`, `_`, `-`.
    #[arg(long = "postgres-name", value_name = "NAME")]
    postgres_name: Vec<String>,
    /// Also store this command's standard output as a file (repeatable); its
    /// exit status decides success. Run with `sh -c`.
    #[arg(long = "from-command", value_name = "COMMAND")]
    from_command: Vec<String>,
    /// Where each --from-command's output appears in the snapshot, in the same
    /// order (default: stdin, stdin-2, …).
    #[arg(long = "stdin-filename", value_name = "PATH")]
    stdin_filename: Vec<String>,
    /// Tag the snapshot (repeatable).
    #[arg(long = "tag")]
    tags: Vec<String>,
    /// Host name to record.
    #[arg(long, env = "VAULT_HOST")]
    host: Option<String>,
    /// Exclude pattern (repeatable): `*.tmp` matches names, `/var/cache/**` whole paths.
    #[arg(long = "exclude")]
    excludes: Vec<String>,
    /// Read exclude patterns from FILE (repeatable): one per line; blank
    /// lines and lines starting with `#` are skipped.
    #[arg(long = "exclude-file", value_name = "FILE")]
    exclude_files: Vec<PathBuf>,
    /// Leave out every directory holding an entry of this name (repeatable),
    /// e.g. `.nobackup` or `CACHEDIR.TAG`.
    #[arg(long = "exclude-if-present", value_name = "NAME")]
    exclude_if_present: Vec<String>,
    /// Do not cross into other file systems below each path (a mount point
    /// is kept, empty).
    #[arg(long, short = 'x')]
    one_file_system: bool,
    /// List what would be backed up (paths, commands, databases) and
    /// stop: no file is read, no command run, nothing written.
    #[arg(long)]
    dry_run: bool,
    /// List every file from the paths as new, changed or unchanged since
    /// this host's last backup of the same paths, each line printed as the
    /// file is stored. A backup host cannot read its earlier snapshots (the
    /// writer key only encrypts), so the comparison is with its file cache,
    /// the host's own record of its last backup: with --no-cache or on a
    /// first backup every file is new. With --json the `changes` array of
    /// the document is written as it goes too.
    #[arg(long, conflicts_with = "dry_run")]
    list: bool,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
}

impl BackupArgs {
    /// Sources on the command line mean "only these": when any of PATHs,
    /// `--from-command` or `--postgres` is given there, the configuration
    /// file's other sources (which clap filled in as defaults) are dropped,
    /// so `vault backup /etc/cron.d` backs up only that directory.
    ///
    /// Each `--postgres-name` on the command line names the `--postgres`
    /// right before it; one before any `--postgres`, two after one, or an
    /// empty one is a usage error.
    pub fn only_given_sources(&mut self, m: &clap::ArgMatches) -> Result<(), clap::Error> {
        use clap::parser::ValueSource;
        let given = |id: &str| {
            matches!(
                m.value_source(id),
                Some(ValueSource::CommandLine | ValueSource::EnvVariable)
            )
        };
        if given("postgres_name") {
            self.postgres_name = names_by_position(m, given("postgres"))?;
        }
        let lists = given("files_from") || given("files_from_raw");
        if !(given("paths") || lists || given("from_command") || given("postgres")) {
            return Ok(());
        }
        if !given("paths") {
            self.paths.clear();
        }
        if !given("from_command") {
            self.from_command.clear();
            self.stdin_filename.clear();
        }
        if !given("postgres") {
            self.postgres.clear();
            self.postgres_name.clear();
        } else if !given("postgres_name") {
            // The file's names belong to the file's databases.
            self.postgres_name.clear();
        }
        Ok(())
    }
}

/// The command line's `--postgres-name`s, one per `--postgres` in order
/// (empty: the database's own name), each naming the `--postgres` it
/// follows.
fn names_by_position(
    m: &clap::ArgMatches,
    postgres_given: bool,
) -> Result<Vec<String>, clap::Error> {
    let refuse =
        |msg: String| clap::Error::raw(clap::error::ErrorKind::ArgumentConflict, msg + "\n");
    let sources: Vec<usize> = if postgres_given {
        m.indices_of("postgres")
            .map(|i| i.collect())
            .unwrap_or_default()
    } else {
        Vec::new()
    };
    let mut names = vec![String::new(); sources.len()];
    let given = m
        .indices_of("postgres_name")
        .into_iter()
        .flatten()
        .zip(m.get_many::<String>("postgres_name").into_iter().flatten());
    for (at, name) in given {
        if name.is_empty() {
            return Err(refuse(
                "--postgres-name needs a name (a --postgres without one keeps its database's name)"
                    .into(),
            ));
        }
        let Some(source) = sources.iter().rposition(|&i| i < at) else {
            return Err(refuse(format!(
                "--postgres-name {name:?} names the --postgres it follows, and follows none \
                 on the command line: write it after its --postgres CONNINFO"
            )));
        };
        if !names[source].is_empty() {
            return Err(refuse(format!(
                "--postgres-name {:?} and {name:?} both follow the same --postgres: give each \
                 --postgres at most one name, right after it",
                names[source]
            )));
        }
        names[source] = name.clone();
    }
    Ok(names)
}

/// The `--from-command` sources, each with its `--stdin-filename`.
fn command_sources(a: &BackupArgs) -> Result<Vec<CommandSource>> {
    if a.stdin_filename.len() > a.from_command.len() {
        usage!("--stdin-filename is given more often than --from-command");
    }
    Ok(a.from_command
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
        .collect())
}

/// The patterns of an `--exclude-file`: one per line, blank lines and
/// `#` comments skipped; a pattern that is not a valid glob is a usage
/// error naming the file and line (before anything is read or written).
fn read_exclude_file(path: &std::path::Path) -> Result<Vec<String>> {
    let text = match std::fs::read(path) {
        Ok(b) => match String::from_utf8(b) {
            Ok(t) => t,
            Err(_) => usage!("--exclude-file {}: not UTF-8 text", path.display()),
        },
        Err(e) => usage!("--exclude-file {}: {e}", path.display()),
    };
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let pat = line.trim();
        if pat.is_empty() || pat.starts_with('#') {
            continue;
        }
        if let Err(e) = globset::Glob::new(pat) {
            usage!(
                "--exclude-file {}:{}: {pat:?} is not a valid pattern: {}",
                path.display(),
                i + 1,
                e.kind()
            );
        }
        out.push(pat.to_owned());
    }
    Ok(out)
}

/// The paths listed by `--files-from` (`raw`: `--files-from-raw`) FILE:
/// a missing or unreadable file, a list with no path, an empty or
/// NUL-holding line are usage errors naming the file (and line).
fn read_files_from(
    path: &std::path::Path,
    raw: bool,
    stdin_used: &mut bool,
) -> Result<Vec<PathBuf>> {
    use std::io::Read;
    use std::os::unix::ffi::OsStrExt;
    let flag = if raw {
        "--files-from-raw"
    } else {
        "--files-from"
    };
    let shown = path.display();
    let mut bytes = Vec::new();
    if path.as_os_str() == "-" {
        if std::mem::replace(stdin_used, true) {
            usage!("{flag} -: standard input can be read only once");
        }
        if let Err(e) = std::io::stdin().lock().read_to_end(&mut bytes) {
            usage!("{flag} -: reading standard input: {e}");
        }
    } else {
        match std::fs::metadata(path) {
            Ok(m) if m.is_dir() => usage!("{flag} {shown}: is a directory, not a list of paths"),
            Ok(_) => {}
            Err(e) => usage!("{flag} {shown}: {e}"),
        }
        if let Err(e) = std::fs::File::open(path).and_then(|mut f| f.read_to_end(&mut bytes)) {
            usage!("{flag} {shown}: {e}");
        }
    }
    let mut out = Vec::new();
    let sep = if raw { b'\0' } else { b'\n' };
    for (i, item) in bytes.split(|&b| b == sep).enumerate() {
        let item = if raw {
            item
        } else {
            let line = item.strip_suffix(b"\r").unwrap_or(item);
            if line.iter().all(u8::is_ascii_whitespace) || line.starts_with(b"#") {
                continue;
            }
            if line.contains(&0) {
                usage!(
                    "{flag} {shown}:{}: holds a NUL byte (use --files-from-raw for NUL-separated lists)",
                    i + 1
                );
            }
            line
        };
        if item.is_empty() {
            continue;
        }
        out.push(PathBuf::from(std::ffi::OsStr::from_bytes(item)));
    }
    if out.is_empty() {
        usage!("{flag} {shown}: lists no path");
    }
    Ok(out)
}

/// Refuses a `--postgres` conninfo that carries a password.
fn refuse_passwords(postgres: &[String]) -> Result<()> {
    for conninfo in postgres {
        let has_password = vault::source::postgres::conninfo_env(conninfo)
            .map(|env| env.iter().any(|(k, _)| k == "PGPASSWORD"))
            .unwrap_or(false);
        if has_password {
            usage!(
                "--postgres {}: a password on the command line is visible to every user of this \
                 host; put it in a passfile (PGPASSFILE, ~/.pgpass) or the PGPASSWORD environment variable",
                vault::source::postgres::redacted(conninfo)
            );
        }
    }
    Ok(())
}

/// Runs `vault backup`; exits 3 when some inputs could not be read.
pub fn run(mut a: BackupArgs) -> Result<ExitCode> {
    let mut stdin_used = false;
    for f in &a.files_from {
        let listed = read_files_from(f, false, &mut stdin_used)?;
        a.paths.extend(listed);
    }
    for f in &a.files_from_raw {
        let listed = read_files_from(f, true, &mut stdin_used)?;
        a.paths.extend(listed);
    }
    if a.paths.is_empty() && a.from_command.is_empty() && a.postgres.is_empty() {
        return Err(anyhow::Error::new(vault::Error::InvalidInput(
            "nothing to back up: give PATHs, --from-command or --postgres, or a [backup] \
             section in the config file"
                .into(),
        )));
    }
    let commands = command_sources(&a)?;
    refuse_passwords(&a.postgres)?;
    let mut excludes = a.excludes.clone();
    for f in &a.exclude_files {
        excludes.extend(read_exclude_file(f)?);
    }
    for n in &a.exclude_if_present {
        if n.is_empty() || n.contains('/') || n == "." || n == ".." {
            usage!("--exclude-if-present {n:?}: give a file name, without `/`");
        }
    }
    let dry = a.dry_run;
    let repo = if dry { None } else { Some(a.repo.open()?) };
    let stats = Arc::new(backup::Stats::default());
    let opts = BackupOptions {
        paths: a.paths,
        commands,
        postgres: a.postgres,
        postgres_names: a.postgres_name,
        excludes,
        exclude_if_present: a.exclude_if_present,
        one_file_system: a.one_file_system,
        tags: a.tags,
        host: a.host,
        cache_dir: a.repo.cache_dir(),
        progress: Some(stats.clone()),
        ..Default::default()
    };
    let Some(repo) = repo else {
        return dry_run(&opts, a.json);
    };
    // The list is the progress of `--list`: no line is drawn beside it.
    let drawing = progress::BackupProgress::start(&stats, a.json || a.list);
    let listing = a.list.then(|| render::backup::ChangeStream::start(a.json));
    let opts = BackupOptions {
        list_changes: listing.as_ref().map(|l| l.list()),
        ..opts
    };
    let out = backup::run(&repo, &opts).with_context(|| {
        format!(
            "backup into {} failed; no snapshot was written",
            repo.storage().location()
        )
    });
    drop(drawing);
    if let (Some(l), Err(e)) = (&listing, &out) {
        l.fail(e);
    }
    let out = out?;
    if let Some(l) = &listing {
        l.finish(&out);
        if !a.json {
            render::backup::text(&out);
        }
    } else if a.json {
        render::backup::json(&out);
    } else {
        render::backup::text(&out);
    }
    render::backup::warnings(&out);
    Ok(if out.snapshot.is_complete() {
        ExitCode::Ok
    } else {
        ExitCode::Partial
    })
}

/// `--dry-run`: prints what a backup would store; exits 3 when some inputs
/// could not be listed (as a backup would be partial).
fn dry_run(opts: &BackupOptions, json: bool) -> Result<ExitCode> {
    let r = backup::dry_run(opts).context("backup --dry-run")?;
    if json {
        render::json(&r);
    } else {
        for e in &r.entries {
            outln!("{}", render::sanitize(e));
        }
        for c in &r.commands {
            outln!("would run: {}", render::sanitize(c));
        }
        for d in &r.databases {
            outln!("would dump: {}", render::sanitize(d));
        }
        for e in &r.errors {
            eprintln!(
                "vault: warning: {}: {}",
                render::sanitize(&e.path),
                render::sanitize(&e.message)
            );
        }
        eprintln!(
            "dry run: would back up {} ({}), {}, {}, {}, {}; nothing was read or written",
            render::count(r.files, "file"),
            render::count(r.bytes, "byte"),
            render::count(r.dirs, "dir"),
            render::plural(r.other, "other entry", "other entries"),
            render::count(r.commands.len() as u64, "command"),
            render::count(r.databases.len() as u64, "database")
        );
    }
    Ok(if r.errors.is_empty() {
        ExitCode::Ok
    } else {
        ExitCode::Partial
    })
}
