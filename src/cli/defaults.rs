//! The configuration file as command-line defaults.
//!
//! Each setting of the file becomes the default value of the flag it
//! corresponds to, so clap's own precedence gives what the settings module
//! documents: a flag, then its `VAULT_*` variable, then the file, then the
//! built-in default.

use std::collections::HashMap;
use std::ffi::OsString;
use std::path::PathBuf;

use clap::Command;
use vault::settings::{Settings, format_duration};

/// Per subcommand (`*` for all), flag id → default values.
type Defaults = HashMap<(&'static str, &'static str), Vec<String>>;

/// The `--config FILE` given on the command line, else a non-empty
/// `VAULT_CONFIG` (read before clap parses, because the file decides
/// clap's defaults).
pub fn explicit_config(args: &[OsString]) -> Option<PathBuf> {
    config_flag(args).or_else(|| {
        std::env::var_os("VAULT_CONFIG")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    })
}

/// The `--config FILE` given on the command line, if any.
fn config_flag(args: &[OsString]) -> Option<PathBuf> {
    let mut it = args.iter().skip(1);
    while let Some(a) = it.next() {
        let a = a.to_string_lossy();
        if a == "--" {
            break;
        }
        if a == "--config" {
            return it.next().map(PathBuf::from);
        }
        if let Some(v) = a.strip_prefix("--config=") {
            return Some(PathBuf::from(v));
        }
    }
    None
}

/// The subcommand the command line runs (`backup`, `config`, …), read
/// before clap parses.
pub fn subcommand(args: &[OsString]) -> Option<String> {
    let mut it = args.iter().skip(1);
    while let Some(a) = it.next() {
        let a = a.to_string_lossy();
        if a == "--config" {
            it.next();
        } else if !a.starts_with('-') {
            return Some(a.into_owned());
        }
    }
    None
}

/// Whether the command line runs `vault config …` (which reports a bad
/// configuration file itself instead of being stopped by it).
pub fn is_config_command(args: &[OsString]) -> bool {
    // `vault systemd` reads the file it names itself: it may be written
    // after the units, and a broken one is reported with the units' view.
    matches!(subcommand(args).as_deref(), Some("config" | "systemd"))
}

/// Whether `--no-config` is given: no configuration file is read at all.
pub fn no_config(args: &[OsString]) -> bool {
    args.iter()
        .skip(1)
        .take_while(|a| *a != "--")
        .any(|a| a == "--no-config")
}

/// Whether the subcommand can go on without the configuration file's
/// settings when the file is invalid (after a warning): commands that read
/// a repository given on the command line, those that need no settings,
/// and every `--help`, `help` and `--version` (how else would one read up
/// on fixing the file?). Backup, forget, prune, drill, status, copy and
/// check act on the file's settings and stop instead.
pub fn can_do_without(args: &[OsString]) -> bool {
    let asks_for_help = args
        .iter()
        .skip(1)
        .take_while(|a| *a != "--")
        .any(|a| ["-h", "--help", "-V", "--version"].contains(&a.to_string_lossy().as_ref()));
    asks_for_help
        || matches!(
            subcommand(args).as_deref(),
            Some(
                "restore"
                    | "ls"
                    | "dump"
                    | "snapshots"
                    | "diff"
                    | "find"
                    | "stats"
                    | "mount"
                    | "tag"
                    | "completions"
                    | "man"
                    | "help"
                    | "key"
                    | "init"
            )
        )
}

fn collect(s: &Settings) -> Defaults {
    let mut d: Defaults = HashMap::new();
    let mut set = |cmd: &'static str, id: &'static str, vals: Vec<String>| {
        if !vals.is_empty() {
            d.insert((cmd, id), vals);
        }
    };
    let one = |v: Option<String>| v.into_iter().collect::<Vec<_>>();
    let path = |p: &Option<PathBuf>| one(p.as_ref().map(|p| p.display().to_string()));
    let span = |t: Option<std::time::Duration>| one(t.map(format_duration));
    let num = |n: Option<u32>| one(n.map(|n| n.to_string()));

    set("*", "repo", one(s.repository.clone()));
    set("*", "identity", path(&s.identity));
    set("*", "cache_dir", path(&s.cache_dir));
    set("backup", "host", one(s.host.clone()));
    set(
        "drill",
        "identity",
        path(&s.drill.identity.clone().or(s.identity.clone())),
    );
    if let Some(b) = &s.backup {
        set(
            "backup",
            "paths",
            b.paths.iter().map(|p| p.display().to_string()).collect(),
        );
        set("backup", "excludes", b.exclude.clone());
        set("backup", "tags", b.tags.clone());
        set(
            "backup",
            "from_command",
            b.command.iter().map(|c| c.run.clone()).collect(),
        );
        set(
            "backup",
            "stdin_filename",
            b.command.iter().map(|c| c.path.clone()).collect(),
        );
        set(
            "backup",
            "postgres",
            b.postgres
                .iter()
                .map(|p| match &p.passfile {
                    Some(f) => format!("{} passfile='{}'", p.conninfo, f.display()),
                    None => p.conninfo.clone(),
                })
                .collect(),
        );
        // Only when one is named: an empty name keeps the database's.
        if b.postgres.iter().any(|p| p.name.is_some()) {
            set(
                "backup",
                "postgres_name",
                b.postgres
                    .iter()
                    .map(|p| p.name.clone().unwrap_or_default())
                    .collect(),
            );
        }
    }
    let r = &s.retention;
    set("forget", "keep_last", num(r.keep_last));
    set("forget", "keep_hourly", num(r.keep_hourly));
    set("forget", "keep_daily", num(r.keep_daily));
    set("forget", "keep_weekly", num(r.keep_weekly));
    set("forget", "keep_monthly", num(r.keep_monthly));
    set("forget", "keep_yearly", num(r.keep_yearly));
    set("forget", "keep_within", span(r.keep_within));
    set("forget", "prune", one(r.prune.map(|b| b.to_string())));
    set("forget", "grace", span(r.grace));
    set("prune", "grace", span(r.grace));
    set("drill", "period_days", num(s.drill.period_days));
    set(
        "drill",
        "no_random_older",
        one(s.drill.random_older.map(|b| (!b).to_string())),
    );
    set("drill", "pg_url", one(s.drill.pg_url.clone()));
    set("drill", "drill_user", one(s.drill.user.clone()));
    set("restore", "drill_user", one(s.drill.user.clone()));
    set("drill", "db_load_timeout", span(s.drill.db_load_timeout));
    set("restore", "db_load_timeout", span(s.drill.db_load_timeout));
    set("status", "max_backup_age", span(s.status.max_backup_age));
    set("status", "max_drill_age", span(s.status.max_drill_age));
    set(
        "status",
        "certificate_warning",
        span(s.status.certificate_warning),
    );
    set("status", "prometheus", path(&s.status.prometheus_file));
    d
}

/// Makes the settings of `s` the defaults of the matching flags of `cmd`.
pub fn apply(cmd: Command, s: &Settings) -> Command {
    let defaults = collect(s);
    let names: Vec<String> = cmd
        .get_subcommands()
        .map(|c| c.get_name().to_owned())
        .collect();
    let mut cmd = cmd;
    for name in names {
        cmd = cmd.mut_subcommand(&name, |sub| apply_to(sub, &name, &defaults));
    }
    cmd
}

fn apply_to(mut sub: Command, name: &str, defaults: &Defaults) -> Command {
    let ids: Vec<String> = sub
        .get_arguments()
        .map(|a| a.get_id().as_str().to_owned())
        .collect();
    for id in ids {
        let vals = defaults
            .iter()
            .find(|((c, i), _)| *c == name && *i == id)
            .or_else(|| defaults.iter().find(|((c, i), _)| *c == "*" && *i == id))
            .map(|(_, v)| v.clone());
        if let Some(vals) = vals {
            sub = sub.mut_arg(id.as_str(), |a| a.default_values(vals).required(false));
        }
    }
    sub
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<OsString> {
        list.iter().map(OsString::from).collect()
    }

    #[test]
    fn the_config_command_is_told_apart_from_a_path_named_config() {
        assert!(is_config_command(&args(&["vault", "config", "check"])));
        assert!(is_config_command(&args(&[
            "vault", "--config", "f", "config", "check"
        ])));
        assert!(!is_config_command(&args(&["vault", "backup", "config"])));
        assert!(!is_config_command(&args(&[
            "vault", "--config", "config", "backup"
        ])));
        assert_eq!(
            explicit_config(&args(&["vault", "--config=a.toml", "backup"])),
            Some(PathBuf::from("a.toml"))
        );
    }
}
