//! The process edge: what only the command-line tool does for the library,
//! which never reads the environment, prompts or holds globals. It resolves
//! [`S3Options`] (environment over the configuration file) and supplies the
//! passphrase source (`VAULT_PASSPHRASE_FILE`, the file's
//! `passphrase_file`, or a prompt on the terminal).

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use anyhow::{Context, Result};
use vault::crypto::{PassphraseFile, PassphraseSource, SecretString};
use vault::settings::{S3Config, Settings};
use vault::storage::{S3Options, Storage};

/// What the configuration file says for the whole process.
#[derive(Default)]
struct FileSettings {
    s3: S3Config,
    passphrase_file: Option<PathBuf>,
}

static FILE: OnceLock<FileSettings> = OnceLock::new();

/// Records the configuration file's settings that are not flags (the S3
/// connection and the passphrase file); called once, at start.
pub fn configure(s: &Settings) {
    let _ = FILE.set(FileSettings {
        s3: s.s3.clone(),
        passphrase_file: s.passphrase_file.clone(),
    });
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// The S3 options of this process: each from its environment variable,
/// else from the configuration file's `[s3]`, else the default.
pub fn s3_options() -> Result<S3Options> {
    let none = S3Config::default();
    let file = FILE.get().map_or(&none, |f| &f.s3);
    resolve_s3(&env, file)
}

/// [`s3_options`] with the environment given as a lookup function.
fn resolve_s3(env: &dyn Fn(&str) -> Option<String>, file: &S3Config) -> Result<S3Options> {
    let set = |name: &str| env(name).filter(|v| !v.trim().is_empty());
    let number = |name: &str| -> Result<Option<u64>> {
        set(name)
            .map(|v| {
                v.trim()
                    .parse::<u64>()
                    .with_context(|| format!("{name}: {v:?} is not a whole number"))
            })
            .transpose()
    };
    let defaults = S3Options::default();
    let endpoint_env = set("AWS_ENDPOINT_URL_S3").or_else(|| set("AWS_ENDPOINT_URL"));
    let path_style = match set("VAULT_S3_PATH_STYLE") {
        Some(v) => v == "1",
        None => file.path_style == Some(true),
    } || set("AWS_ENDPOINT_URL").is_some();
    Ok(S3Options {
        endpoint: endpoint_env.or_else(|| file.endpoint.clone()),
        region: set("AWS_REGION")
            .or_else(|| set("AWS_DEFAULT_REGION"))
            .or_else(|| file.region.clone()),
        credentials: None,
        path_style,
        max_attempts: number("VAULT_S3_MAX_ATTEMPTS")?
            .map_or(defaults.max_attempts, |n| n.min(100) as u32),
        retry_base: number("VAULT_S3_RETRY_BASE_MS")?
            .map_or(defaults.retry_base, Duration::from_millis),
        read_timeout: number("VAULT_S3_TIMEOUT_SECS")?
            .map_or(defaults.read_timeout, Duration::from_secs),
        multipart_threshold: number("VAULT_S3_MULTIPART_THRESHOLD_MIB")?
            .map_or(defaults.multipart_threshold, |n| n.saturating_mul(1 << 20)),
        part_size: number("VAULT_S3_PART_SIZE_MIB")?
            .map_or(defaults.part_size, |n| n.saturating_mul(1 << 20)),
        storage_class: set("VAULT_S3_STORAGE_CLASS").or_else(|| file.storage_class.clone()),
        profile: set("AWS_PROFILE").or_else(|| file.profile.clone()),
        credentials_file: set("AWS_SHARED_CREDENTIALS_FILE")
            .map(PathBuf::from)
            .or_else(|| file.credentials_file.clone()),
    })
}

/// Opens the storage `repo` names, S3 with this process's options.
pub fn open_storage(repo: &str) -> Result<Arc<dyn Storage>> {
    let options = if repo.starts_with("s3://") {
        s3_options()?
    } else {
        S3Options::default()
    };
    Ok(Arc::from(vault::storage::open(repo, &options)?))
}

/// The passphrase file in effect: `VAULT_PASSPHRASE_FILE`, else the
/// configuration file's `passphrase_file`.
pub fn passphrase_file() -> Option<PathBuf> {
    std::env::var_os("VAULT_PASSPHRASE_FILE")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| FILE.get().and_then(|f| f.passphrase_file.clone()))
}

/// The command line's passphrases: the passphrase file when one is set,
/// else a prompt when standard input is a terminal, else none.
#[derive(Clone, Copy, Default)]
pub struct Passphrases;

impl PassphraseSource for Passphrases {
    fn passphrase(&self, purpose: &str) -> vault::Result<SecretString> {
        if let Some(path) = passphrase_file() {
            return PassphraseFile(path).passphrase(purpose);
        }
        if std::io::IsTerminal::is_terminal(&std::io::stdin()) {
            let p = rpassword::prompt_password(format!("passphrase for {purpose}: "))
                .map_err(|e| vault::Error::io("/dev/tty", e))?;
            return Ok(SecretString::from(p));
        }
        vault::crypto::NoPassphrase.passphrase(purpose)
    }
}

/// A passphrase for `purpose` from [`Passphrases`].
pub fn obtain_passphrase(purpose: &str) -> Result<SecretString> {
    Ok(Passphrases.passphrase(purpose)?)
}

/// A NEW passphrase for `purpose`: from the passphrase file when one is set
/// (an empty one is refused there), else typed twice at the terminal. An
/// empty passphrase is refused: it would let anyone with access to the
/// storage unwrap the repository owner key.
pub fn obtain_new_passphrase(purpose: &str) -> Result<SecretString> {
    if passphrase_file().is_some() || !std::io::IsTerminal::is_terminal(&std::io::stdin()) {
        return obtain_passphrase(purpose);
    }
    obtain_new_passphrase_prompted(purpose)
}

/// A NEW passphrase for `purpose`, typed twice at the terminal whatever
/// the passphrase file says (`vault key passwd` reads the current one
/// there); empty or differing entries are refused.
pub fn obtain_new_passphrase_prompted(purpose: &str) -> Result<SecretString> {
    let ask = |prompt: String| {
        rpassword::prompt_password(prompt).map_err(|e| anyhow::anyhow!("/dev/tty: {e}"))
    };
    let first = ask(format!("new passphrase for {purpose}: "))?;
    if first.is_empty() {
        return Err(vault::Error::InvalidInput(
            "an empty passphrase is refused: anyone with access to the storage could open the \
             repository with it"
                .into(),
        )
        .into());
    }
    let second = ask("the same passphrase again: ".to_owned())?;
    if first != second {
        return Err(vault::Error::InvalidInput(
            "the two passphrases differ; nothing was changed".into(),
        )
        .into());
    }
    Ok(SecretString::from(first))
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn lookup(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name| map.get(name).cloned()
    }

    #[test]
    fn s3_options_take_the_environment_over_the_file() {
        let file = S3Config {
            endpoint: Some("https://file.example".into()),
            region: Some("eu-west-1".into()),
            path_style: Some(true),
            storage_class: Some("STANDARD_IA".into()),
            profile: Some("backup".into()),
            credentials_file: Some("/etc/vault/aws".into()),
        };
        let o = resolve_s3(&lookup(&[]), &file).unwrap();
        assert_eq!(o.endpoint.as_deref(), Some("https://file.example"));
        assert_eq!(o.region.as_deref(), Some("eu-west-1"));
        assert!(o.path_style);
        assert_eq!(o.storage_class.as_deref(), Some("STANDARD_IA"));
        assert_eq!(o.profile.as_deref(), Some("backup"));
        assert_eq!(o.credentials_file, Some(PathBuf::from("/etc/vault/aws")));
        let env = lookup(&[
            ("AWS_ENDPOINT_URL", "http://127.0.0.1:9000"),
            ("AWS_REGION", "us-east-1"),
            ("VAULT_S3_STORAGE_CLASS", "GLACIER_IR"),
            ("AWS_PROFILE", "other"),
            ("VAULT_S3_MAX_ATTEMPTS", "3"),
            ("VAULT_S3_PART_SIZE_MIB", "8"),
        ]);
        let o = resolve_s3(&env, &file).unwrap();
        assert_eq!(o.endpoint.as_deref(), Some("http://127.0.0.1:9000"));
        assert_eq!(o.region.as_deref(), Some("us-east-1"));
        assert_eq!(o.storage_class.as_deref(), Some("GLACIER_IR"));
        assert_eq!(o.profile.as_deref(), Some("other"));
        assert_eq!((o.max_attempts, o.part_size), (3, 8 << 20));
    }

    #[test]
    fn path_style_follows_its_variable_and_a_custom_endpoint() {
        let file = S3Config {
            path_style: Some(true),
            ..Default::default()
        };
        let off = resolve_s3(&lookup(&[("VAULT_S3_PATH_STYLE", "0")]), &file).unwrap();
        assert!(!off.path_style, "the variable beats the file");
        let none = resolve_s3(&lookup(&[]), &S3Config::default()).unwrap();
        assert!(!none.path_style);
        let endpoint = resolve_s3(
            &lookup(&[("AWS_ENDPOINT_URL", "http://minio:9000")]),
            &S3Config::default(),
        )
        .unwrap();
        assert!(endpoint.path_style);
    }

    #[test]
    fn a_tuning_variable_that_is_not_a_number_is_named() {
        let err = resolve_s3(
            &lookup(&[("VAULT_S3_TIMEOUT_SECS", "soon")]),
            &S3Config::default(),
        )
        .unwrap_err();
        assert!(
            format!("{err:#}").contains("VAULT_S3_TIMEOUT_SECS: \"soon\" is not a whole number"),
            "{err:#}"
        );
    }
}
