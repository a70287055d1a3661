//! Loading one dump and counting its rows, as a role that is no superuser.
//!
//! Anything in a dump may run while it loads or while its rows are
//! counted: CHECK constraints, index expressions, triggers, defaults,
//! materialized views, row-level security policies, functions declared
//! SECURITY DEFINER (owned, after `--no-owner`, by whoever loads them).
//! So the loading role holds no superuser, CREATEDB, CREATEROLE,
//! pg_execute_server_program, pg_read_server_files or pg_write_server_files,
//! and cannot become a role that does; every step after the database is
//! created runs as that role. The one thing done as superuser is creating
//! the extensions the dump needs, in the still-empty database, from
//! statements vault writes, and only extensions the server has installed.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fs::File;
use std::io::{Seek, SeekFrom};
use std::path::PathBuf;
use std::process::{Command, Output};

use super::cluster::{ADMIN, LOADER, Scratch};
use super::confine::{self, Input, Ran};
use super::toc::{self, quote_ident};
use super::{DumpFailure, Fail};
use crate::cancel::Cancel;
use crate::source::postgres::{COUNT_ROWS_SQL, PSQL_ARGS, parse_counts};

/// pg_restore flags for the unprivileged load: nothing that needs a
/// superuser to mean anything (owners, privileges, subscriptions,
/// publications, security labels, tablespaces), stop at the first error.
const RESTORE_FLAGS: [&str; 8] = [
    "--no-owner",
    "--no-privileges",
    "--no-subscriptions",
    "--no-publications",
    "--no-security-labels",
    "--no-tablespaces",
    "--exit-on-error",
    "--no-password",
];

/// The roles the connected role is, or may become, that a loading role
/// must never have (each printed on a line of its own, after the role's
/// own name).
const ROLE_CHECK_SQL: &str = "SELECT current_user;\n\
    SELECT pg_catalog.format('%s (%s)', r.rolname, CASE WHEN r.rolsuper THEN 'superuser'\n\
      WHEN r.rolcreaterole THEN 'CREATEROLE' ELSE 'server files and programs' END)\n\
    FROM pg_catalog.pg_roles r\n\
    WHERE pg_catalog.pg_has_role(current_user, r.oid, 'MEMBER')\n\
      AND (r.rolsuper OR r.rolcreaterole OR r.rolname IN\n\
        ('pg_execute_server_program', 'pg_read_server_files', 'pg_write_server_files'))\n\
    ORDER BY 1;\n";

/// psql's output lines, or the failure its standard error names.
pub fn psql_lines(out: &Output) -> Result<Vec<String>, Fail> {
    if !out.status.success() {
        // psql names itself at the start of its own messages.
        let tail = confine::stderr_tail(out, 2000);
        return Err(Fail::load(if tail.starts_with("psql:") {
            tail
        } else {
            format!("psql: {tail}")
        }));
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect())
}

/// Where dumps load: the scratch cluster, or a server the operator prepared.
pub enum Target {
    /// A scratch cluster run as the drill user.
    Scratch(Scratch),
    /// `--pg-url`: the conninfo's role, which must be unprivileged.
    Prepared(Prepared),
}

/// A server given with `--pg-url`.
pub struct Prepared {
    tools: PathBuf,
    env: Vec<(OsString, OsString)>,
    maintenance_db: String,
}

/// What both targets offer: client commands and a way to run them.
trait Runner {
    fn client(&self, tool: &str, role: Option<&str>, db: &str) -> Command;
    fn run(&self, what: &str, cmd: Command, input: Input, cancel: &Cancel) -> Result<Output, Fail>;

    fn psql(
        &self,
        role: Option<&str>,
        db: &str,
        script: &str,
        cancel: &Cancel,
    ) -> Result<Vec<String>, Fail> {
        let mut cmd = self.client("psql", role, db);
        cmd.args(PSQL_ARGS);
        let out = self.run(
            "psql",
            cmd,
            Input::Bytes(script.as_bytes().to_vec()),
            cancel,
        )?;
        psql_lines(&out)
    }
}

impl Runner for Scratch {
    fn client(&self, tool: &str, role: Option<&str>, db: &str) -> Command {
        Scratch::client(self, tool, role.unwrap_or(LOADER), db)
    }
    fn run(&self, what: &str, cmd: Command, input: Input, cancel: &Cancel) -> Result<Output, Fail> {
        Scratch::run(self, what, cmd, input, cancel)
    }
}

impl Runner for Prepared {
    fn client(&self, tool: &str, _role: Option<&str>, db: &str) -> Command {
        let mut env = self.env.clone();
        env.push(("PGDATABASE".into(), db.into()));
        confine::command(&self.tools.join(tool), &env, None)
    }
    fn run(&self, what: &str, cmd: Command, input: Input, cancel: &Cancel) -> Result<Output, Fail> {
        let mut kill = |pid: u32| {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
        };
        match confine::run(cmd, input, cancel, &mut kill) {
            Ok(Ran::Exited(out)) => Ok(out),
            Ok(Ran::Cancelled) => Err(Fail::Cancelled),
            Err(e) => Err(Fail::setup(format!("{what}: {e}"))),
        }
    }
}

/// Refuses a loading role that is, or may become, privileged.
fn check_unprivileged(lines: Vec<String>, server: &str) -> Result<(), Fail> {
    let Some((me, privileged)) = lines.split_first() else {
        return Err(Fail::setup("the role check returned nothing"));
    };
    if privileged.is_empty() {
        return Ok(());
    }
    let fix = if server == "--pg-url" {
        "; create one for drills (`CREATE ROLE vault_drill LOGIN CREATEDB;`) and connect as it \
         (user=vault_drill)"
    } else {
        ""
    };
    Err(Fail::setup(format!(
        "{server} connects as role {me}, which is or can become {}: a drill loads dumps only as a \
         role without superuser, CREATEROLE, pg_execute_server_program, pg_read_server_files and \
         pg_write_server_files{fix}",
        privileged.join(", ")
    )))
}

/// The dump again from its first byte, for one more pg_restore.
fn rewound(dump: &File) -> Result<File, Fail> {
    let f = dump
        .try_clone()
        .map_err(|e| Fail::setup(format!("reopening the dump: {e}")))?;
    (&f).seek(SeekFrom::Start(0))
        .map_err(|e| Fail::setup(format!("rewinding the dump: {e}")))?;
    Ok(f)
}

/// pg_restore that prints (`-l`, `-f -`) rather than connects.
fn pg_restore_text(
    r: &dyn Runner,
    args: &[&str],
    dump: &File,
    cancel: &Cancel,
) -> Result<String, Fail> {
    let mut cmd = r.client("pg_restore", None, "postgres");
    cmd.args(args);
    let out = r.run("pg_restore", cmd, Input::File(rewound(dump)?), cancel)?;
    if !out.status.success() {
        return Err(Fail::load(format!(
            "pg_restore {}: {}",
            args.join(" "),
            confine::stderr_tail(&out, 2000)
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Loads `dump` into the new database `db` as the unprivileged role and
/// counts its rows there.
fn restore_and_count(
    r: &dyn Runner,
    dump: &File,
    db: &str,
    list: Option<&PathBuf>,
    cancel: &Cancel,
) -> Result<BTreeMap<String, u64>, Fail> {
    let mut cmd = r.client("pg_restore", None, db);
    cmd.args(RESTORE_FLAGS);
    if let Some(l) = list {
        cmd.arg("-L").arg(l);
    }
    cmd.args(["-d", db]);
    let out = r.run("pg_restore", cmd, Input::File(rewound(dump)?), cancel)?;
    if !out.status.success() {
        return Err(Fail::load(format!(
            "pg_restore failed: {}",
            confine::stderr_tail(&out, 2000)
        )));
    }
    // pg_catalog first, whatever the dump did to search paths.
    let script = format!("SET search_path = pg_catalog, pg_temp;\n{COUNT_ROWS_SQL}");
    let rows = r.psql(None, db, &script, cancel)?;
    parse_counts(&rows).map_err(|e| Fail::load(e.to_string()))
}

/// Creates, as superuser, the extensions the dump's extension entries name
/// (and the schemas they go in, owned by the loading role), in the still
/// empty database `db`. Returns the schemas it created.
fn create_extensions(
    s: &Scratch,
    db: &str,
    exts: &[toc::Extension],
    cancel: &Cancel,
) -> Result<Vec<String>, Fail> {
    let admin = |sql: &str| Runner::psql(s, Some(ADMIN), db, sql, cancel);
    for e in exts {
        if !toc::plain_name(&e.name) || !e.schema.as_deref().is_none_or(toc::plain_name) {
            return Err(Fail::Failed(
                DumpFailure::LoadFailed,
                format!("the dump names an extension or schema vault will not use: {e:?}"),
            ));
        }
    }
    let available = admin("SELECT name FROM pg_catalog.pg_available_extensions;\n")?;
    let missing: Vec<&str> = exts
        .iter()
        .map(|e| e.name.as_str())
        .filter(|n| !available.iter().any(|a| a == n))
        .collect();
    if !missing.is_empty() {
        return Err(Fail::Failed(
            DumpFailure::MissingExtension,
            format!(
                "the dump needs PostgreSQL extensions this drill host does not have: {}; install \
                 them here (from the same packages as on the database server)",
                missing.join(", ")
            ),
        ));
    }
    let existing = admin("SELECT nspname FROM pg_catalog.pg_namespace;\n")?;
    let mut created: Vec<String> = Vec::new();
    let mut script = String::new();
    for e in exts {
        let schema = e.schema.clone().unwrap_or_else(|| "public".into());
        if !existing.contains(&schema) && !created.contains(&schema) {
            script += &format!(
                "CREATE SCHEMA {} AUTHORIZATION {LOADER};\n",
                quote_ident(&schema)
            );
            created.push(schema.clone());
        }
        script += &format!(
            "CREATE EXTENSION IF NOT EXISTS {} WITH SCHEMA {};\n",
            quote_ident(&e.name),
            quote_ident(&schema)
        );
    }
    admin(&script).map_err(|f| match f {
        Fail::Failed(_, m) => Fail::Failed(
            DumpFailure::LoadFailed,
            format!("creating the dump's extensions: {m}"),
        ),
        other => other,
    })?;
    Ok(created)
}

fn load_scratch(
    s: &Scratch,
    dump: &File,
    db: &str,
    cancel: &Cancel,
) -> Result<BTreeMap<String, u64>, Fail> {
    check_unprivileged(
        Runner::psql(s, Some(LOADER), db, ROLE_CHECK_SQL, cancel)?,
        "the scratch cluster",
    )?;
    let toc = pg_restore_text(s, &["-l"], dump, cancel)?;
    let ext_list = toc::extension_list(&toc);
    let mut created = Vec::new();
    if !ext_list.is_empty() {
        let list = s.write_file(
            &format!("{db}.extensions.list"),
            ext_list.into_bytes(),
            cancel,
        )?;
        let sql = pg_restore_text(s, &["-f", "-", "-L", &list.to_string_lossy()], dump, cancel)?;
        created = create_extensions(s, db, &toc::extensions(&sql), cancel)?;
    }
    let list = s.write_file(
        &format!("{db}.list"),
        toc::load_list(&toc, &created).into_bytes(),
        cancel,
    )?;
    restore_and_count(s, dump, db, Some(&list), cancel)
}

impl Target {
    /// A scratch cluster run as `user`.
    pub fn scratch(
        user: super::confine::DrillUser,
        work_dir: &std::path::Path,
        cancel: &Cancel,
    ) -> Result<Target, Fail> {
        Scratch::start(user, work_dir, cancel).map(Target::Scratch)
    }

    /// The server `conninfo` names, reached with the drill's own libpq
    /// variables (`pg_env`, e.g. PGPASSFILE); its role must be unprivileged.
    pub fn prepared(
        conninfo: &str,
        pg_env: &[(String, String)],
        trust_privileged: bool,
        cancel: &Cancel,
    ) -> Result<Target, Fail> {
        let given = crate::source::postgres::conninfo_env(conninfo)
            .map_err(|e| Fail::setup(e.to_string()))?;
        let mut env = confine::base_env(None);
        env.extend(
            pg_env
                .iter()
                .chain(given.iter())
                .map(|(k, v)| (OsString::from(k), OsString::from(v))),
        );
        let maintenance_db = given
            .iter()
            .chain(pg_env.iter())
            .find(|(k, _)| k == "PGDATABASE")
            .map_or("postgres".to_owned(), |(_, v)| v.clone());
        let p = Prepared {
            tools: super::cluster::bindir().unwrap_or_default(),
            env,
            maintenance_db,
        };
        let lines = Runner::psql(&p, None, &p.maintenance_db, ROLE_CHECK_SQL, cancel)
            .map_err(|f| f.into_setup("--pg-url"))?;
        if trust_privileged {
            if let Err(Fail::Failed(_, why)) = check_unprivileged(lines, "--pg-url") {
                tracing::warn!(
                    "loading dumps as a privileged role because --pg-url-trust-superuser was \
                     given: {why}"
                );
            }
        } else {
            check_unprivileged(lines, "--pg-url")?;
        }
        Ok(Target::Prepared(p))
    }

    /// Drops database `db` and ends its sessions (after a load that ran
    /// out of time and may still be running statements in the server).
    pub fn discard(&self, db: &str) {
        let drop = format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE);\n",
            quote_ident(db)
        );
        let (runner, admin, maint): (&dyn Runner, Option<&str>, &str) = match self {
            Target::Scratch(s) => (s, Some(ADMIN), "postgres"),
            Target::Prepared(p) => (p, None, &p.maintenance_db),
        };
        if let Err(Fail::Failed(_, e)) = runner.psql(admin, maint, &drop, &Cancel::new()) {
            tracing::warn!("could not drop drill database {db}: {e}");
        }
    }

    /// Loads `dump` into a new database `db`, counts its rows, and drops
    /// the database again (unless cancelled: a scratch cluster goes whole).
    pub fn load(
        &self,
        dump: &File,
        db: &str,
        cancel: &Cancel,
    ) -> Result<BTreeMap<String, u64>, Fail> {
        let qdb = quote_ident(db);
        let (runner, admin, maint): (&dyn Runner, Option<&str>, &str) = match self {
            Target::Scratch(s) => (s, Some(ADMIN), "postgres"),
            Target::Prepared(p) => (p, None, &p.maintenance_db),
        };
        let create = match self {
            Target::Scratch(_) => format!("CREATE DATABASE {qdb} OWNER {LOADER};\n"),
            Target::Prepared(_) => format!("CREATE DATABASE {qdb};\n"),
        };
        runner
            .psql(admin, maint, &create, cancel)
            .map_err(|f| f.into_setup("creating the drill database"))?;
        let result = match self {
            Target::Scratch(s) => load_scratch(s, dump, db, cancel),
            Target::Prepared(p) => restore_and_count(p, dump, db, None, cancel),
        };
        if !matches!(result, Err(Fail::Cancelled)) || matches!(self, Target::Prepared(_)) {
            let drop = format!("DROP DATABASE IF EXISTS {qdb} WITH (FORCE);\n");
            let _ = runner.psql(admin, maint, &drop, &Cancel::new());
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn privileged_roles_are_refused_by_name() {
        assert!(check_unprivileged(vec!["vault_load".into()], "x").is_ok());
        let Err(Fail::Failed(kind, msg)) = check_unprivileged(
            vec![
                "app".into(),
                "pg_execute_server_program (server files and programs)".into(),
                "postgres (superuser)".into(),
            ],
            "--pg-url",
        ) else {
            panic!("not refused")
        };
        assert_eq!(kind, DumpFailure::Setup);
        assert!(
            msg.contains("role app")
                && msg.contains("programs), postgres (superuser)")
                && msg.contains("CREATE ROLE vault_drill"),
            "{msg}"
        );
        assert!(check_unprivileged(vec![], "x").is_err());
    }
}
