//! Database drills: every PostgreSQL dump restored from a snapshot is loaded
//! into a throwaway cluster that vault starts (initdb in a temporary
//! directory, a Unix socket only, run as an unprivileged user when vault
//! runs as root), and every table's row count is compared with the count
//! recorded at backup time. The cluster is always stopped and removed: on
//! success, on failure, and on SIGINT/SIGTERM.

use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use crate::format::snapshot::{Snapshot, SourceStatus};
use crate::source::postgres::{COUNT_ROWS_SQL, PSQL_ARGS, parse_counts};

/// One table: rows recorded at backup time and rows found after restore.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct TableCheck {
    /// `schema.table` as PostgreSQL quotes it.
    pub table: String,
    /// Rows recorded in the snapshot header (absent: a table the header
    /// does not know).
    pub expected: Option<u64>,
    /// Rows found in the restored database (absent: the table is missing).
    pub found: Option<u64>,
}

/// One dump's drill.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DumpCheck {
    /// The dump's path in the snapshot (`postgres/app.dump`).
    pub name: String,
    /// Whether it restored and every count matched.
    pub passed: bool,
    /// Why it could not be checked, if it could not.
    pub error: Option<String>,
    /// Every table, expected and found.
    pub tables: Vec<TableCheck>,
}

/// A live scratch cluster: its binaries, its directory, the uid/gid it runs as.
type LiveCluster = (PathBuf, PathBuf, Option<(u32, u32)>);

/// Scratch clusters alive right now, so a signal handler can remove them.
static LIVE: Mutex<Vec<LiveCluster>> = Mutex::new(Vec::new());

/// Held while a cluster is being created: a signal handler waits for it, so
/// it never misses a server that `pg_ctl start` is still bringing up.
static STARTING: Mutex<()> = Mutex::new(());

fn install_signal_cleanup() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let _ = ctrlc::set_handler(|| {
            // Wait for a cluster being started, then take every live one
            // and exit while still holding the lock, so no other thread
            // races this cleanup.
            let _starting = STARTING.lock().unwrap_or_else(|e| e.into_inner());
            let mut live = LIVE.lock().unwrap_or_else(|e| e.into_inner());
            for (bin, dir, user) in live.drain(..) {
                stop(&bin, &dir, user);
                let _ = std::fs::remove_dir_all(&dir);
            }
            std::process::exit(130);
        });
    });
}

fn pg_bindir() -> Result<PathBuf, String> {
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
        .map_err(|_| {
            "no PostgreSQL server binaries found (install postgresql) for the database drill"
                .to_string()
        })?;
    Ok(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
}

fn stop(bin: &Path, dir: &Path, user: Option<(u32, u32)>) {
    let mut cmd = Command::new(bin.join("pg_ctl"));
    cmd.arg("-D")
        .arg(dir.join("data"))
        .args(["-m", "immediate", "stop"]);
    cmd.stdout(Stdio::null()).stderr(Stdio::null());
    if let Some((uid, gid)) = user {
        cmd.uid(uid).gid(gid);
    }
    let _ = cmd.status();
}

/// A throwaway PostgreSQL cluster.
struct Cluster {
    bin: PathBuf,
    dir: PathBuf,
    user: Option<(u32, u32)>,
}

impl Cluster {
    fn start() -> Result<Cluster, String> {
        install_signal_cleanup();
        let _starting = STARTING.lock().unwrap_or_else(|e| e.into_inner());
        let bin = pg_bindir()?;
        let dir = tempfile::Builder::new()
            .prefix("vault-drill-pg-")
            .tempdir()
            .map_err(|e| format!("temporary directory: {e}"))?
            .keep();
        // PostgreSQL refuses to run as root: use the postgres (or nobody) user.
        let user = if nix::unistd::geteuid().is_root() {
            let u = nix::unistd::User::from_name("postgres")
                .ok()
                .flatten()
                .or_else(|| nix::unistd::User::from_name("nobody").ok().flatten())
                .ok_or("neither a postgres nor a nobody user exists to run the scratch cluster")?;
            nix::unistd::chown(&dir, Some(u.uid), Some(u.gid))
                .map_err(|e| format!("chown: {e}"))?;
            Some((u.uid.as_raw(), u.gid.as_raw()))
        } else {
            None
        };
        LIVE.lock()
            .expect("live lock")
            .push((bin.clone(), dir.clone(), user));
        let cluster = Cluster { bin, dir, user };
        let data = cluster.dir.join("data");
        cluster.run(
            "initdb",
            &[
                "-D",
                &data.to_string_lossy(),
                "-A",
                "trust",
                "-U",
                "vault_drill",
                "--no-sync",
                "-E",
                "UTF8",
            ],
        )?;
        let opts = format!(
            "-k {} -c listen_addresses='' -p 5432 -c fsync=off",
            cluster.dir.display()
        );
        let log = cluster.dir.join("server.log");
        cluster.run(
            "pg_ctl",
            &[
                "-D",
                &data.to_string_lossy(),
                "-o",
                &opts,
                "-l",
                &log.to_string_lossy(),
                "-w",
                "start",
            ],
        )?;
        Ok(cluster)
    }

    fn run(&self, tool: &str, args: &[&str]) -> Result<(), String> {
        let mut cmd = Command::new(self.bin.join(tool));
        cmd.args(args).stdin(Stdio::null());
        if let Some((uid, gid)) = self.user {
            cmd.uid(uid).gid(gid);
        }
        let out = cmd.output().map_err(|e| format!("{tool}: {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "{tool} failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ))
        }
    }

    /// The scratch cluster as a load target.
    fn target(&self) -> Db {
        Db {
            tools: self.bin.clone(),
            env: vec![
                ("PGHOST".into(), self.dir.to_string_lossy().into_owned()),
                ("PGPORT".into(), "5432".into()),
                ("PGUSER".into(), "vault_drill".into()),
            ],
        }
    }
}

/// Where dumps are loaded: the scratch cluster, or a server given with
/// `--pg-url` (each dump goes into a new database that is dropped after).
struct Db {
    /// Directory of the client tools (empty: found on PATH).
    tools: PathBuf,
    /// Connection settings as `PG*` variables.
    env: Vec<(String, String)>,
}

impl Db {
    fn client(&self, tool: &str, db: &str) -> Command {
        let mut cmd = Command::new(self.tools.join(tool));
        cmd.env_remove("PGSERVICE")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .env("PGDATABASE", db);
        cmd
    }

    fn psql(&self, db: &str, script: &str) -> Result<Vec<String>, String> {
        let mut child = self
            .client("psql", db)
            .args(PSQL_ARGS)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("psql: {e}"))?;
        let _ = child
            .stdin
            .take()
            .expect("piped")
            .write_all(script.as_bytes());
        let out = child.wait_with_output().map_err(|e| format!("psql: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "psql: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_owned)
            .collect())
    }

    /// Loads a custom-format dump into a new database `db`, counts its rows,
    /// and drops the database again.
    fn load(&self, dump: &Path, db: &str) -> Result<BTreeMap<String, u64>, String> {
        self.psql("postgres", &format!("CREATE DATABASE {db};\n"))?;
        let result = self.restore_and_count(dump, db);
        let _ = self.psql("postgres", &format!("DROP DATABASE IF EXISTS {db};\n"));
        result
    }

    fn restore_and_count(&self, dump: &Path, db: &str) -> Result<BTreeMap<String, u64>, String> {
        let out = self
            .client("pg_restore", db)
            .args([
                "--no-owner",
                "--no-privileges",
                "--exit-on-error",
                "--no-password",
                "-d",
                db,
            ])
            .arg(dump)
            .output()
            .map_err(|e| format!("pg_restore: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "pg_restore failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        parse_counts(&self.psql(db, COUNT_ROWS_SQL)?)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // Whoever takes the cluster out of LIVE stops it (this or the signal
        // handler), holding the lock until it is gone.
        let mut live = LIVE.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(i) = live.iter().position(|(_, d, _)| d == &self.dir) {
            live.remove(i);
            stop(&self.bin, &self.dir, self.user);
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// Drills every PostgreSQL dump of `snapshot` restored under `sandbox`:
/// into a scratch cluster, or into the server `pg_url` names. Returns
/// nothing when the snapshot has no database source.
pub fn check_dumps(sandbox: &Path, snapshot: &Snapshot, pg_url: Option<&str>) -> Vec<DumpCheck> {
    let dumps: Vec<_> = snapshot
        .sources
        .iter()
        .filter(|s| s.kind == "postgres" && s.status == SourceStatus::Ok)
        .collect();
    if dumps.is_empty() {
        return Vec::new();
    }
    let failed = |e: String| -> Vec<DumpCheck> {
        dumps
            .iter()
            .map(|s| DumpCheck {
                name: s.name.clone(),
                passed: false,
                error: Some(e.clone()),
                tables: Vec::new(),
            })
            .collect()
    };
    let cluster;
    let target = match pg_url {
        Some(url) => match crate::source::postgres::conninfo_env(url) {
            Ok(env) => Db {
                tools: PathBuf::new(),
                env,
            },
            Err(e) => return failed(e),
        },
        None => match Cluster::start() {
            Ok(c) => {
                cluster = c;
                cluster.target()
            }
            Err(e) => return failed(e),
        },
    };
    let mut tag = [0u8; 6];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut tag);
    dumps
        .iter()
        .enumerate()
        .map(|(i, source)| {
            let expected: BTreeMap<String, u64> = source
                .details
                .as_ref()
                .and_then(|d| d.get("row_counts"))
                .and_then(|c| serde_json::from_value(c.clone()).ok())
                .unwrap_or_default();
            let path = sandbox.join(&source.name);
            let db = format!("vault_drill_{}_{i}", hex::encode(tag));
            match target.load(&path, &db) {
                Ok(found) => compare(&source.name, &expected, &found),
                Err(e) => DumpCheck {
                    name: source.name.clone(),
                    passed: false,
                    error: Some(e),
                    tables: Vec::new(),
                },
            }
        })
        .collect()
}

fn compare(
    name: &str,
    expected: &BTreeMap<String, u64>,
    found: &BTreeMap<String, u64>,
) -> DumpCheck {
    let mut tables: Vec<TableCheck> = expected
        .iter()
        .map(|(t, n)| TableCheck {
            table: t.clone(),
            expected: Some(*n),
            found: found.get(t).copied(),
        })
        .collect();
    tables.extend(
        found
            .iter()
            .filter(|(t, _)| !expected.contains_key(*t))
            .map(|(t, n)| TableCheck {
                table: t.clone(),
                expected: None,
                found: Some(*n),
            }),
    );
    let passed = tables.iter().all(|t| t.expected == t.found);
    DumpCheck {
        name: name.to_owned(),
        passed,
        error: None,
        tables,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compare_names_missing_extra_and_short_tables() {
        let exp: BTreeMap<String, u64> = [("public.a".into(), 3), ("public.b".into(), 1)].into();
        let ok = compare("x", &exp, &exp.clone());
        assert!(ok.passed);
        let found: BTreeMap<String, u64> = [("public.a".into(), 2), ("public.c".into(), 5)].into();
        let bad = compare("x", &exp, &found);
        assert!(!bad.passed);
        assert!(bad.tables.contains(&TableCheck {
            table: "public.a".into(),
            expected: Some(3),
            found: Some(2)
        }));
        assert!(bad.tables.contains(&TableCheck {
            table: "public.b".into(),
            expected: Some(1),
            found: None
        }));
        assert!(bad.tables.contains(&TableCheck {
            table: "public.c".into(),
            expected: None,
            found: Some(5)
        }));
    }
}
