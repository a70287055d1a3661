//! What a drill killed outright (SIGKILL, power loss) leaves behind: its
//! sandbox of restored files and its scratch PostgreSQL cluster. Both are
//! named `PREFIX-PID-START-RANDOM` after the process that made them (START:
//! its start time in clock ticks since boot, so that a reused pid is not
//! mistaken for it), and the next drill removes those whose process is gone.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// The start time of process `pid` (`self` for this one), if it runs.
fn process_start(pid: &str) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses: fields start after
    // the last ')'. starttime is field 22, the 20th after it.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// `PREFIX-PID-START-` for this process: the start of a leftover's name.
pub fn name_prefix(prefix: &str) -> std::io::Result<String> {
    let start = process_start("self")
        .ok_or_else(|| std::io::Error::other("cannot read /proc/self/stat"))?;
    Ok(format!("{prefix}-{}-{start}-", std::process::id()))
}

/// The `(pid, start)` a leftover named `name` records, if it is one.
fn owner_of(name: &str, prefix: &str) -> Option<(u32, u64)> {
    let mut parts = name.strip_prefix(prefix)?.strip_prefix('-')?.splitn(3, '-');
    let pid = parts.next()?.parse().ok()?;
    let start = parts.next()?.parse().ok()?;
    let random = parts.next()?;
    (!random.is_empty() && random.bytes().all(|b| b.is_ascii_alphanumeric()))
        .then_some((pid, start))
}

/// The directories in `dir` named by a `prefix` leftover whose process is
/// gone, owned by `uid` (never followed through a symlink).
pub fn stale(dir: &Path, prefix: &str, uid: u32) -> Vec<(PathBuf, u32)> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| {
            let (pid, start) = owner_of(e.file_name().to_str()?, prefix)?;
            if process_start(&pid.to_string()) == Some(start) {
                return None; // a live drill's
            }
            let meta = std::fs::symlink_metadata(e.path()).ok()?;
            (meta.is_dir() && meta.uid() == uid).then(|| (e.path(), pid))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_carry_their_process_and_only_dead_ones_are_stale() {
        let d = tempfile::tempdir().unwrap();
        let me = nix::unistd::geteuid().as_raw();
        let live = format!("{}abc123", name_prefix("vault-x").unwrap());
        assert_eq!(
            owner_of(&live, "vault-x"),
            Some((std::process::id(), process_start("self").unwrap()))
        );
        // pid 1 runs, but did not start at tick 1: a reused pid.
        let dead = "vault-x-1-1-abc123";
        for n in [
            live.as_str(),
            dead,
            "vault-x-2-",
            "vault-y-1-1-ab",
            "vault-x-1-1-a/b",
        ] {
            let _ = std::fs::create_dir(d.path().join(n));
        }
        std::os::unix::fs::symlink(d.path(), d.path().join("vault-x-1-2-link")).unwrap();
        let found = stale(d.path(), "vault-x", me);
        assert_eq!(found, vec![(d.path().join(dead), 1)]);
        assert!(
            stale(d.path(), "vault-x", me + 1).is_empty(),
            "another user's"
        );
        for bad in [
            "vault-x-12",
            "vault-x-12-34-",
            "vault-x-a-1-b",
            "vault-xx-1-1-b",
        ] {
            assert_eq!(owner_of(bad, "vault-x"), None, "{bad}");
        }
    }
}
