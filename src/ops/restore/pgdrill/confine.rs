//! Running the programs that touch a dump as another OS user.
//!
//! A dump is hostile input, and the drill process holds the owner key. So
//! the scratch cluster and every PostgreSQL tool that reads the dump or
//! talks to that cluster run as the *drill user*, a dedicated unprivileged
//! account (`vault-drill` unless `--drill-user` names another): never root,
//! never the user running the drill. Each child gets an environment built
//! from an allow-list (nothing of the drill's: no `VAULT_*`, `AWS_*`,
//! `CREDENTIALS_DIRECTORY` or `PG*` secret), starts in `/`, has no
//! supplementary groups, no capabilities and `no_new_privs` set.
//!
//! Switching users needs root or `CAP_SETUID` + `CAP_SETGID` (the drill unit
//! that `vault systemd` writes keeps exactly these two, see
//! `deploy::systemd`). std's `Command::uid`/`gid` do the switch in the child
//! (dropping supplementary groups too); capabilities are per thread in Linux
//! and a forked child starts with its parent thread's, so each child is
//! spawned from a short-lived thread that first empties its ambient and
//! inheritable sets and sets `no_new_privs`: the exec'd program keeps no
//! capability, and the drill's own threads are left as they were.

use std::ffi::OsString;
use std::fs::File;
use std::io::Write;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use crate::cancel::Cancel;

/// The drill user when none is given.
pub const DEFAULT_DRILL_USER: &str = "vault-drill";

/// The unprivileged OS account the scratch cluster runs as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DrillUser {
    /// Its name.
    pub name: String,
    /// Its uid (never 0, never the drill's own).
    pub uid: u32,
    /// Its primary gid (never 0).
    pub gid: u32,
}

/// The command that creates the drill user `name`.
pub fn useradd_line(name: &str) -> String {
    format!(
        "useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin {name}"
    )
}

fn valid_user_name(name: &str) -> bool {
    name.len() <= 32
        && name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
}

impl DrillUser {
    /// Looks `name` up and checks that this process may and can run the
    /// scratch cluster as it. Every refusal says how to fix it.
    pub fn resolve(name: &str) -> Result<DrillUser, DrillUserRefused> {
        if !valid_user_name(name) {
            return Err(DrillUserRefused::InvalidName(name.to_owned()));
        }
        let user = nix::unistd::User::from_name(name)
            .map_err(|error| DrillUserRefused::Lookup {
                name: name.to_owned(),
                error,
            })?
            .ok_or_else(|| DrillUserRefused::Missing(name.to_owned()))?;
        let (uid, gid) = (user.uid.as_raw(), user.gid.as_raw());
        if uid == 0 || gid == 0 {
            return Err(DrillUserRefused::Root {
                name: name.to_owned(),
                uid,
                gid,
            });
        }
        let (me, real) = (nix::unistd::geteuid(), nix::unistd::getuid());
        if uid == me.as_raw() || uid == real.as_raw() {
            return Err(DrillUserRefused::Myself(name.to_owned()));
        }
        if !me.is_root() && !can_switch_users() {
            return Err(DrillUserRefused::CannotSwitch {
                name: name.to_owned(),
                uid: me.as_raw(),
            });
        }
        Ok(DrillUser {
            name: name.to_owned(),
            uid,
            gid,
        })
    }
}

/// Why a drill user cannot run the scratch cluster ([`DrillUser::resolve`]);
/// each message says how to fix it.
#[derive(Debug, thiserror::Error)]
pub enum DrillUserRefused {
    /// Not a valid user name.
    #[error("--drill-user {0:?}: not a valid user name")]
    InvalidName(String),
    /// Looking the user up failed.
    #[error("looking up the drill user {name}: {error}")]
    Lookup {
        /// The user.
        name: String,
        /// What failed.
        error: nix::Error,
    },
    /// No such user.
    #[error(
        "the drill user {0} does not exist: drills run the scratch PostgreSQL cluster that loads \
         database dumps as a dedicated unprivileged user; create it with `{line}` (or name \
         another with --drill-user)",
        line = useradd_line(.0)
    )]
    Missing(String),
    /// Root, or in group root.
    #[error(
        "the drill user {name} is root or in group root (uid {uid}, gid {gid}): name a dedicated \
         unprivileged user, e.g. `{line}`",
        line = useradd_line(DEFAULT_DRILL_USER)
    )]
    Root {
        /// The user.
        name: String,
        /// Its uid.
        uid: u32,
        /// Its gid.
        gid: u32,
    },
    /// The user running the drill.
    #[error(
        "the drill user {0} is the user running this drill: database dumps must never run as \
         the user holding the owner key; create another with `{line}`",
        line = useradd_line(DEFAULT_DRILL_USER)
    )]
    Myself(String),
    /// This process cannot switch to it.
    #[error(
        "this drill runs as uid {uid} without CAP_SETUID and CAP_SETGID, so it cannot run the \
         scratch PostgreSQL cluster as the drill user {name}, and it will not load a database \
         dump as the user holding the owner key. Run the drill from the unit `vault systemd` \
         writes (it keeps CAP_SETUID and CAP_SETGID for this one switch), or as root, or pass \
         --pg-url with a PostgreSQL server prepared for drills (docs/SECURITY.md, \"Database \
         drills\")"
    )]
    CannotSwitch {
        /// The user.
        name: String,
        /// This process's uid.
        uid: u32,
    },
}

/// Whether this thread holds CAP_SETUID and CAP_SETGID.
fn can_switch_users() -> bool {
    use rustix::thread::CapabilitySet;
    rustix::thread::capabilities(None).is_ok_and(|c| {
        c.effective
            .contains(CapabilitySet::SETUID | CapabilitySet::SETGID)
    })
}

/// The only variables a confined program sees besides its own `PG*`
/// settings: a fixed PATH, the C locale, and HOME when given.
pub fn base_env(home: Option<&Path>) -> Vec<(OsString, OsString)> {
    let mut env: Vec<(OsString, OsString)> = vec![
        ("PATH".into(), "/usr/local/bin:/usr/bin:/bin".into()),
        ("LANG".into(), "C".into()),
        ("LC_ALL".into(), "C".into()),
    ];
    if let Some(h) = home {
        env.push(("HOME".into(), h.as_os_str().to_owned()));
    }
    env
}

/// A command for `program` with exactly `env`, run from `/`, as `user`
/// when given (otherwise as the drill's own user).
pub fn command(program: &Path, env: &[(OsString, OsString)], user: Option<&DrillUser>) -> Command {
    let mut cmd = Command::new(program);
    cmd.env_clear()
        .envs(env.iter().map(|(k, v)| (k, v)))
        .current_dir("/")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(u) = user {
        cmd.gid(u.gid).uid(u.uid);
    }
    cmd
}

/// Empties this thread's ambient and inheritable capability sets and sets
/// `no_new_privs`, so that what it spawns runs with no capability at all.
fn harden_this_thread() -> std::io::Result<()> {
    rustix::thread::set_no_new_privs(true)?;
    // EINVAL: a kernel without ambient capabilities, which has none to clear.
    match rustix::thread::clear_ambient_capability_set() {
        Ok(()) | Err(rustix::io::Errno::INVAL) => {}
        Err(e) => return Err(e.into()),
    }
    let mut caps = rustix::thread::capabilities(None)?;
    caps.inheritable = rustix::thread::CapabilitySet::empty();
    rustix::thread::set_capabilities(None, caps)?;
    Ok(())
}

/// Spawns `cmd` from a short-lived hardened thread (see the module docs).
pub fn spawn(cmd: &mut Command) -> std::io::Result<Child> {
    std::thread::scope(|s| {
        s.spawn(|| {
            harden_this_thread()?;
            cmd.spawn()
        })
        .join()
        .unwrap_or_else(|_| Err(std::io::Error::other("spawning thread panicked")))
    })
}

/// What a confined program reads on its standard input.
pub enum Input {
    /// Nothing (`/dev/null`).
    Nothing,
    /// These bytes (a psql script, a list file).
    Bytes(Vec<u8>),
    /// An open file: a dump the program could not open itself.
    File(File),
}

/// How a program run by [`run`] ended.
pub enum Ran {
    /// It exited by itself.
    Exited(Output),
    /// The drill was cancelled, or the program was killed by SIGINT,
    /// SIGTERM or SIGHUP (a terminal's Ctrl-C or a service stop reaching
    /// the whole process group).
    Cancelled,
}

/// Runs `cmd` to the end, feeding it `input`. When `cancel` fires meanwhile,
/// calls `kill` with the child's pid once, and still waits for it.
pub fn run(
    mut cmd: Command,
    input: Input,
    cancel: &Cancel,
    kill: &mut dyn FnMut(u32),
) -> std::io::Result<Ran> {
    let bytes = match input {
        Input::Nothing => None,
        Input::Bytes(b) => {
            cmd.stdin(Stdio::piped());
            Some(b)
        }
        Input::File(f) => {
            cmd.stdin(f);
            None
        }
    };
    let mut child = spawn(&mut cmd)?;
    let pid = child.id();
    if let (Some(bytes), Some(mut stdin)) = (bytes, child.stdin.take()) {
        // A writer of its own: a child that does not read must not block us.
        std::thread::spawn(move || {
            let _ = stdin.write_all(&bytes);
        });
    }
    let (tx, rx) = crossbeam_channel::bounded(1);
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let mut killed = false;
    loop {
        match rx.recv_timeout(Duration::from_millis(50)) {
            Ok(out) => {
                let out = out?;
                let interrupted = out
                    .status
                    .signal()
                    .is_some_and(|s| [libc::SIGINT, libc::SIGTERM, libc::SIGHUP].contains(&s));
                return Ok(if killed || interrupted || cancel.is_cancelled() {
                    Ran::Cancelled
                } else {
                    Ran::Exited(out)
                });
            }
            Err(crossbeam_channel::RecvTimeoutError::Timeout) => {
                if cancel.is_cancelled() && !killed {
                    killed = true;
                    kill(pid);
                }
            }
            Err(crossbeam_channel::RecvTimeoutError::Disconnected) => {
                return Err(std::io::Error::other("waiting for a child process failed"));
            }
        }
    }
}

/// The last `limit` bytes of a program's standard error, as text: enough
/// to name the failure, never a flood (the text is the dump's to shape).
pub fn stderr_tail(out: &Output, limit: usize) -> String {
    let text = String::from_utf8_lossy(&out.stderr);
    // One line, so that a message shaped by the dump cannot pass for
    // lines of a report.
    let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
    let text = text.as_str();
    if text.len() <= limit {
        return text.to_owned();
    }
    let mut start = text.len() - limit;
    while !text.is_char_boundary(start) {
        start += 1;
    }
    format!("…{}", &text[start..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_names_are_vetted_before_any_lookup() {
        for bad in ["", "-x", "a b", "a/b", "1abc", &"a".repeat(33)] {
            assert!(DrillUser::resolve(bad).is_err(), "{bad:?}");
        }
        let missing = DrillUser::resolve("vault-no-such-user-x")
            .unwrap_err()
            .to_string();
        assert!(missing.contains("useradd --system"), "{missing}");
    }

    #[test]
    fn root_is_never_a_drill_user() {
        let e = DrillUser::resolve("root").unwrap_err();
        assert!(matches!(e, DrillUserRefused::Root { uid: 0, .. }), "{e}");
        assert!(e.to_string().contains("root"), "{e}");
    }

    #[test]
    fn the_environment_is_an_allow_list() {
        let env = base_env(Some(Path::new("/tmp/x")));
        let keys: Vec<_> = env.iter().map(|(k, _)| k.to_str().unwrap()).collect();
        assert_eq!(keys, ["PATH", "LANG", "LC_ALL", "HOME"]);
        let cmd = command(Path::new("/bin/true"), &env, None);
        // env_clear: nothing inherited, whatever the parent holds.
        assert!(
            cmd.get_envs()
                .all(|(k, _)| keys.contains(&k.to_str().unwrap()))
        );
    }

    #[test]
    fn a_spawned_child_has_no_capabilities_and_no_new_privs() {
        // As root, switch to nobody as a drill would (root keeps its
        // capabilities across exec); otherwise run as ourselves.
        let nobody = DrillUser {
            name: "nobody".into(),
            uid: 65534,
            gid: 65534,
        };
        let root = nix::unistd::geteuid().is_root();
        let mut cmd = command(
            Path::new("/bin/cat"),
            &base_env(None),
            root.then_some(&nobody),
        );
        cmd.arg("/proc/self/status");
        let out = spawn(&mut cmd).unwrap().wait_with_output().unwrap();
        let status = String::from_utf8(out.stdout).unwrap();
        for field in ["CapInh:", "CapPrm:", "CapEff:", "CapAmb:"] {
            let line = status.lines().find(|l| l.starts_with(field)).unwrap();
            assert!(line.ends_with("0000000000000000"), "{line}");
        }
        assert!(status.lines().any(|l| l == "NoNewPrivs:\t1"), "{status}");
        if root {
            assert!(
                status
                    .lines()
                    .any(|l| l == "Uid:\t65534\t65534\t65534\t65534"),
                "{status}"
            );
            let groups = status.lines().find(|l| l.starts_with("Groups:")).unwrap();
            assert_eq!(groups.trim_end(), "Groups:", "no supplementary groups");
        }
        // The calling thread is untouched.
        assert!(!rustix::thread::no_new_privs().unwrap());
    }

    #[test]
    fn cancelling_kills_the_child_and_reports_it() {
        let cancel = Cancel::new();
        cancel.cancel();
        let mut cmd = command(Path::new("/bin/sleep"), &base_env(None), None);
        cmd.arg("30");
        let started = std::time::Instant::now();
        let mut kills = 0;
        let ran = run(cmd, Input::Nothing, &cancel, &mut |pid| {
            kills += 1;
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
        })
        .unwrap();
        assert!(matches!(ran, Ran::Cancelled));
        assert_eq!(kills, 1);
        assert!(started.elapsed() < Duration::from_secs(10));
    }

    #[test]
    fn input_reaches_the_child_and_errors_are_bounded() {
        let cmd = command(Path::new("/bin/cat"), &base_env(None), None);
        let Ran::Exited(out) = run(
            cmd,
            Input::Bytes(b"hello".to_vec()),
            &Cancel::new(),
            &mut |_| {},
        )
        .unwrap() else {
            panic!("not cancelled")
        };
        assert_eq!(out.stdout, b"hello");
        let long = Output {
            status: out.status,
            stdout: vec![],
            stderr: "é".repeat(5000).into_bytes(),
        };
        assert!(stderr_tail(&long, 100).len() <= 104);
    }
}
