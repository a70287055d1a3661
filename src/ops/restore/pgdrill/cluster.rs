//! The scratch cluster: created by the drill user with `initdb` in a fresh
//! directory of its own under TMPDIR (mode 0700, so nobody else can enter
//! it, and it holds nothing of the drill's), listening only on a Unix socket
//! inside that directory, started with `pg_ctl`, and always stopped and
//! removed: when the drill ends, fails or is cancelled, and, if the drill
//! was killed outright (SIGKILL), by the next drill that finds it.
//!
//! Its directory is named `vault-drill-pg-PID-START-RANDOM` after the drill
//! process that made it (see `ops::restore::leftovers`): one whose process is
//! gone is a leftover, whose server the next drill stops before removing it.

use std::ffi::OsString;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use super::Fail;
use super::confine::{self, DrillUser, Input, Ran};
use crate::cancel::Cancel;
use crate::ops::restore::leftovers;

/// The cluster's bootstrap superuser: creates databases, roles and
/// extensions, and never connects to a database holding a loaded dump.
pub const ADMIN: &str = "vault_admin";
/// The role that loads dumps and counts their rows: no superuser, no
/// CREATEDB or CREATEROLE, no pg_execute_server_program,
/// pg_read_server_files or pg_write_server_files; it owns the database it
/// loads into.
pub const LOADER: &str = "vault_load";

const PREFIX: &str = "vault-drill-pg";
const PORT: &str = "5432";
/// `sun_path` holds 108 bytes including the terminating NUL.
const MAX_SOCKET_PATH: usize = 107;

/// A running scratch cluster, stopped and removed on drop.
pub struct Scratch {
    /// PostgreSQL's binaries.
    pub bin: PathBuf,
    /// The cluster's directory: data directory and socket directory.
    pub dir: PathBuf,
    /// Who it runs as.
    pub user: DrillUser,
    env: Vec<(OsString, OsString)>,
    started: bool,
}

/// The directory of PostgreSQL's server binaries (the newest installed).
pub fn bindir() -> Result<PathBuf, SetupError> {
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|rd| {
            rd.flatten()
                .map(|e| e.path().join("bin"))
                .filter(|b| b.join("initdb").exists())
                .collect()
        })
        .unwrap_or_default();
    found.sort();
    if let Some(b) = found.pop() {
        return Ok(b);
    }
    let out = Command::new("pg_config")
        .arg("--bindir")
        .output()
        .map_err(|_| SetupError::NoServer)?;
    let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    if dir.join("initdb").exists() {
        Ok(dir)
    } else {
        Err(SetupError::NoServer)
    }
}

/// Why a scratch cluster cannot be set up: no server binaries, or a
/// TMPDIR the drill refuses ([`check_tmp`]).
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// No PostgreSQL server binaries are installed.
    #[error("no PostgreSQL server binaries found (install postgresql) for the database drill")]
    NoServer,
    /// TMPDIR cannot be examined.
    #[error("TMPDIR {}: {error}", .path.display())]
    TmpUnreadable {
        /// TMPDIR.
        path: PathBuf,
        /// What failed.
        error: std::io::Error,
    },
    /// TMPDIR is not a directory.
    #[error("TMPDIR {}: not a directory (a symlink is not followed)", .0.display())]
    TmpNotDirectory(PathBuf),
    /// Others can write to TMPDIR, which has no sticky bit.
    #[error(
        "TMPDIR {}: writable by others without the sticky bit (mode {mode:o}); use a directory \
         like /var/tmp",
        .path.display()
    )]
    TmpShared {
        /// TMPDIR.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// TMPDIR is not a plain path.
    #[error(
        "TMPDIR {}: use a path of letters, digits, '/', '.', '_' and '-' only for database drills",
        .0.display()
    )]
    TmpNotPlain(PathBuf),
    /// This process's start time cannot be read (for the directory's name).
    #[error("{0}")]
    Name(std::io::Error),
}

/// A system tool (`rm`, `tee`) by absolute path.
fn system_tool(name: &str) -> PathBuf {
    ["/usr/bin", "/bin"]
        .iter()
        .map(|d| Path::new(d).join(name))
        .find(|p| p.exists())
        .unwrap_or_else(|| Path::new("/usr/bin").join(name))
}

/// TMPDIR must be a place the drill user can create a directory in, that
/// nobody can rename it out of, and a plain path (it is put in a server
/// option string and a socket address).
fn check_tmp(tmp: &Path) -> Result<(), SetupError> {
    let meta = std::fs::symlink_metadata(tmp).map_err(|error| SetupError::TmpUnreadable {
        path: tmp.to_owned(),
        error,
    })?;
    if !meta.is_dir() {
        return Err(SetupError::TmpNotDirectory(tmp.to_owned()));
    }
    let mode = meta.permissions().mode();
    if mode & 0o022 != 0 && mode & 0o1000 == 0 {
        return Err(SetupError::TmpShared {
            path: tmp.to_owned(),
            mode: mode & 0o7777,
        });
    }
    let plain = tmp.to_str().is_some_and(|s| {
        s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-".contains(c))
    });
    if !plain {
        return Err(SetupError::TmpNotPlain(tmp.to_owned()));
    }
    Ok(())
}

/// Whatever ends a confined program: SIGKILL, from the drill when it may
/// (root), otherwise from the drill user itself (`pg_ctl kill`).
fn kill_as(bin: &Path, env: &[(OsString, OsString)], user: &DrillUser, pid: u32) {
    let target = nix::unistd::Pid::from_raw(pid as i32);
    if nix::sys::signal::kill(target, nix::sys::signal::Signal::SIGKILL).is_ok() {
        return;
    }
    let mut cmd = confine::command(&bin.join("pg_ctl"), env, Some(user));
    cmd.args(["kill", "KILL", &pid.to_string()]);
    let _ = confine::spawn(&mut cmd).and_then(|c| c.wait_with_output());
}

/// Runs a confined cleanup command to its end, ignoring how it went.
fn cleanup(mut cmd: Command) {
    let _ = confine::spawn(&mut cmd).and_then(|c| c.wait_with_output());
}

fn stop_and_remove(bin: &Path, dir: &Path, env: &[(OsString, OsString)], user: &DrillUser) {
    let mut stop = confine::command(&bin.join("pg_ctl"), env, Some(user));
    stop.arg("-D")
        .arg(dir)
        .args(["-m", "immediate", "-s", "stop"]);
    cleanup(stop);
    let mut rm = confine::command(&system_tool("rm"), env, Some(user));
    rm.args(["-rf", "--one-file-system", "--"]).arg(dir);
    cleanup(rm);
}

/// Stops and removes the scratch clusters of drills that are gone (killed
/// with SIGKILL, or a host that lost power): directories named like ours,
/// owned by `user`, whose process no longer runs. Returns how many.
pub fn reap_stale(bin: &Path, user: &DrillUser, tmp: &Path) -> usize {
    let mut removed = 0;
    for (path, pid) in leftovers::stale(tmp, PREFIX, user.uid) {
        let env = confine::base_env(Some(tmp));
        stop_and_remove(bin, &path, &env, user);
        if !path.exists() {
            removed += 1;
            tracing::warn!(
                "removed scratch PostgreSQL cluster {} left behind by drill process {pid}, which is gone",
                path.display()
            );
        }
    }
    removed
}

/// The name of a new scratch directory for this process.
fn new_name() -> Result<String, SetupError> {
    let mut tag = [0u8; 8];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut tag);
    let prefix = leftovers::name_prefix(PREFIX).map_err(SetupError::Name)?;
    Ok(format!("{prefix}{}", hex::encode(tag)))
}

impl Scratch {
    /// Removes leftovers of killed drills, then creates and starts a
    /// cluster as `user` in a new directory under `work_dir` and creates
    /// the loading role.
    pub fn start(user: DrillUser, work_dir: &Path, cancel: &Cancel) -> Result<Scratch, Fail> {
        let setup = |e: SetupError| Fail::setup(e.to_string());
        let bin = bindir().map_err(setup)?;
        let tmp = work_dir.to_owned();
        check_tmp(&tmp).map_err(setup)?;
        reap_stale(&bin, &user, &tmp);
        let dir = tmp.join(new_name().map_err(setup)?);
        let socket = dir.join(format!(".s.PGSQL.{PORT}"));
        if socket.as_os_str().len() > MAX_SOCKET_PATH {
            return Err(Fail::setup(format!(
                "the scratch cluster's socket {} would be longer than {MAX_SOCKET_PATH} bytes: set \
                 TMPDIR to a shorter directory such as /var/tmp",
                socket.display()
            )));
        }
        let mut env = confine::base_env(Some(&dir));
        env.push(("PGSYSCONFDIR".into(), dir.clone().into()));
        // A file that does not exist: no password file of anyone's.
        env.push(("PGPASSFILE".into(), dir.join("no-pgpass").into()));
        let mut s = Scratch {
            bin,
            dir,
            user,
            env,
            started: false,
        };
        // From here on, dropping `s` stops and removes whatever exists.
        let data = s.dir.to_string_lossy().into_owned();
        let out = s.tool(
            "initdb",
            &[
                "-D",
                &data,
                "-A",
                "trust",
                "-U",
                ADMIN,
                "--no-sync",
                "-E",
                "UTF8",
                "--locale=C",
            ],
            cancel,
        )?;
        if !out.status.success() {
            let err = confine::stderr_tail(&out, 2000);
            let hint = if err.contains("ermission denied") {
                format!(
                    " (the drill user {} must be able to create a directory in TMPDIR {})",
                    s.user.name,
                    tmp.display()
                )
            } else {
                String::new()
            };
            return Err(Fail::setup(format!("initdb failed: {err}{hint}")));
        }
        // No TCP listener; the socket lives in the cluster's private
        // directory; no JIT (the drill unit forbids writable+executable
        // memory); messages in English so that failures can be named.
        let opts = format!(
            "-c listen_addresses='' -c unix_socket_directories='{data}' \
             -c unix_socket_permissions=0700 -p {PORT} -c fsync=off \
             -c full_page_writes=off -c synchronous_commit=off -c jit=off -c lc_messages=C"
        );
        let log = s.dir.join("server.log").to_string_lossy().into_owned();
        s.started = true;
        let out = s.tool(
            "pg_ctl",
            &["-D", &data, "-o", &opts, "-l", &log, "-w", "-s", "start"],
            cancel,
        )?;
        if !out.status.success() {
            return Err(Fail::setup(format!(
                "pg_ctl start failed: {}",
                confine::stderr_tail(&out, 2000)
            )));
        }
        s.psql(
            ADMIN,
            "postgres",
            &format!(
                "CREATE ROLE {LOADER} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS;\n\
                 REVOKE ALL ON DATABASE postgres, template1 FROM PUBLIC;\n"
            ),
            cancel,
        )
        .map_err(|f| f.into_setup("creating the loading role"))?;
        Ok(s)
    }

    /// Runs a server tool as the drill user.
    fn tool(&self, tool: &str, args: &[&str], cancel: &Cancel) -> Result<Output, Fail> {
        let mut cmd = confine::command(&self.bin.join(tool), &self.env, Some(&self.user));
        cmd.args(args);
        self.run(tool, cmd, Input::Nothing, cancel)
    }

    /// A client tool as the drill user, connected as `role` to `db`.
    pub fn client(&self, tool: &str, role: &str, db: &str) -> Command {
        let mut env = self.env.clone();
        env.extend(
            [
                ("PGHOST", self.dir.as_os_str().to_owned()),
                ("PGPORT", PORT.into()),
                ("PGUSER", role.into()),
                ("PGDATABASE", db.into()),
                ("PGAPPNAME", "vault-drill".into()),
            ]
            .map(|(k, v)| (OsString::from(k), v)),
        );
        confine::command(&self.bin.join(tool), &env, Some(&self.user))
    }

    /// Runs `cmd` (made by [`Scratch::client`] or [`Scratch::tool`]) to its end.
    pub fn run(
        &self,
        what: &str,
        cmd: Command,
        input: Input,
        cancel: &Cancel,
    ) -> Result<Output, Fail> {
        let (bin, env, user) = (&self.bin, &self.env, &self.user);
        match confine::run(cmd, input, cancel, &mut |pid| kill_as(bin, env, user, pid)) {
            Ok(Ran::Exited(out)) => Ok(out),
            Ok(Ran::Cancelled) => Err(Fail::Cancelled),
            Err(e) => Err(Fail::setup(format!("{what}: {e}"))),
        }
    }

    /// Runs a psql script as `role` in `db`; returns its output lines.
    pub fn psql(
        &self,
        role: &str,
        db: &str,
        script: &str,
        cancel: &Cancel,
    ) -> Result<Vec<String>, Fail> {
        let mut cmd = self.client("psql", role, db);
        cmd.args(crate::source::postgres::PSQL_ARGS);
        let out = self.run(
            "psql",
            cmd,
            Input::Bytes(script.as_bytes().to_vec()),
            cancel,
        )?;
        super::load::psql_lines(&out)
    }

    /// Writes `bytes` to `name` in the cluster's directory, as the drill
    /// user (the drill itself cannot enter that directory).
    pub fn write_file(&self, name: &str, bytes: Vec<u8>, cancel: &Cancel) -> Result<PathBuf, Fail> {
        let path = self.dir.join(name);
        let mut cmd = confine::command(&system_tool("tee"), &self.env, Some(&self.user));
        cmd.arg("--").arg(&path).stdout(std::process::Stdio::null());
        let out = self.run("tee", cmd, Input::Bytes(bytes), cancel)?;
        if out.status.success() {
            Ok(path)
        } else {
            Err(Fail::setup(format!(
                "writing {}: {}",
                path.display(),
                confine::stderr_tail(&out, 500)
            )))
        }
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if self.started {
            stop_and_remove(&self.bin, &self.dir, &self.env, &self.user);
        } else {
            let mut rm = confine::command(&system_tool("rm"), &self.env, Some(&self.user));
            rm.args(["-rf", "--one-file-system", "--"]).arg(&self.dir);
            cleanup(rm);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directory_names_carry_their_drill_process() {
        let name = new_name().unwrap();
        assert!(
            name.starts_with(&format!("{PREFIX}-{}-", std::process::id())),
            "{name}"
        );
        assert_ne!(new_name().unwrap(), name);
    }

    #[test]
    fn tmpdir_must_be_safe_and_plain() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("open");
        std::fs::create_dir(&p).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o777)).unwrap();
        let e = check_tmp(&p).unwrap_err();
        assert!(
            matches!(e, SetupError::TmpShared { mode: 0o777, .. }),
            "{e}"
        );
        assert!(e.to_string().contains("sticky"));
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o1777)).unwrap();
        assert!(check_tmp(&p).is_ok());
        let q = d.path().join("it's");
        std::fs::create_dir(&q).unwrap();
        assert!(check_tmp(&q).unwrap_err().to_string().contains("letters"));
        let link = d.path().join("link");
        std::os::unix::fs::symlink(&p, &link).unwrap();
        assert!(
            check_tmp(&link)
                .unwrap_err()
                .to_string()
                .contains("symlink")
        );
    }
}
