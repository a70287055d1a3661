//! `vault key generate | list | add-owner | remove-owner | rotate-writer | add-host |
//! revoke-host | passwd`.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};

use crate::cli::access::{Key, RepoArgs, key_parent, open_storage};
use crate::cli::exit::{ExitCode, usage};
use crate::cli::render;
use vault::crypto;
use vault::repo::{self, OwnerSpec, keys, owners};

/// `vault key …`.
#[derive(Subcommand)]
pub enum KeyCommand {
    /// Make a new age X25519 identity file (mode 0600) and print its recipient.
    Generate {
        /// Where to write it (missing directories are made, mode 0700); an
        /// existing file is never replaced. `-` prints the identity on
        /// stdout and the recipient on stderr.
        #[arg(long, short = 'o')]
        output: PathBuf,
    },
    /// List the owners (keys/owners/NAME.age) and writer key generations;
    /// names need no key, -i also shows which owner file your identity opens.
    List(ListArgs),
    /// Add an owner: wrap the repository owner key for new recipients or a
    /// passphrase (owner key).
    AddOwner(AddOwnerArgs),
    /// Delete an owner's copy of the repository owner key; this does not
    /// revoke what that owner could already read (owner key).
    RemoveOwner(RemoveOwnerArgs),
    /// Make a new writer key for backup hosts and retire the current one
    /// (what the retired shared key signs from now on does not count; host
    /// keys are not revoked); old snapshots stay readable (owner key).
    RotateWriter(RotateWriterArgs),
    /// Make a writer key for one host: it signs that host's backups, so a
    /// compromised host can forge only its own series (owner key).
    AddHost(AddHostArgs),
    /// Revoke every key of one host: nothing it signs and storage receives
    /// from now on counts; its earlier snapshots keep their trust (owner key).
    RevokeHost(RevokeHostArgs),
    /// Change a passphrase owner's passphrase: open with the current one
    /// (VAULT_PASSPHRASE_FILE or a prompt); the new one is asked twice (or
    /// read from --new-passphrase-file). The old owner file goes only once
    /// the new one is stored and opens.
    Passwd(PasswdArgs),
}

/// `vault key passwd`.
#[derive(Args)]
pub struct PasswdArgs {
    /// Repository: a directory, file:///path or s3://bucket/prefix.
    #[arg(short = 'r', long = "repo", env = "VAULT_REPO")]
    repo: String,
    /// A file whose first line is the new passphrase (mode 0600), instead
    /// of typing it twice at a prompt.
    #[arg(long, env = "VAULT_NEW_PASSPHRASE_FILE", value_name = "FILE")]
    new_passphrase_file: Option<PathBuf>,
}

/// `vault key list`.
#[derive(Args)]
pub struct ListArgs {
    #[command(flatten)]
    repo: RepoArgs,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// `vault key add-owner`.
#[derive(Args)]
pub struct AddOwnerArgs {
    #[command(flatten)]
    repo: RepoArgs,
    /// Name of the new owner (keys/owners/NAME.age); an existing name is refused.
    #[arg(long)]
    name: String,
    /// The new owner's recipients (age1…, "ssh-ed25519 …", "ssh-rsa …"),
    /// comma-separated or repeated.
    #[arg(value_delimiter = ',', required_unless_present = "passphrase")]
    recipients: Vec<String>,
    /// Make a passphrase owner (from VAULT_PASSPHRASE_FILE or a prompt).
    #[arg(long, conflicts_with = "recipients")]
    passphrase: bool,
}

/// `vault key remove-owner`.
#[derive(Args)]
pub struct RemoveOwnerArgs {
    #[command(flatten)]
    repo: RepoArgs,
    /// The owner to remove (keys/owners/NAME.age).
    name: String,
    /// Also remove the owner file your own identity opened.
    #[arg(long)]
    force: bool,
}

/// `vault key rotate-writer`.
#[derive(Args)]
pub struct RotateWriterArgs {
    #[command(flatten)]
    repo: RepoArgs,
    /// Where to write the new writer key (mode 0600) for backup hosts.
    #[arg(long)]
    writer_key_out: PathBuf,
}

/// `vault key add-host`.
#[derive(Args)]
pub struct AddHostArgs {
    #[command(flatten)]
    repo: RepoArgs,
    /// The host's name: its backups record it, and its key signs only
    /// snapshots that name it.
    name: String,
    /// Where to write the host's writer key (mode 0600).
    #[arg(long)]
    writer_key_out: PathBuf,
}

/// `vault key revoke-host`.
#[derive(Args)]
pub struct RevokeHostArgs {
    #[command(flatten)]
    repo: RepoArgs,
    /// The host whose keys to revoke.
    name: String,
}

/// Runs a `vault key` subcommand.
pub fn run(command: KeyCommand) -> Result<ExitCode> {
    match command {
        KeyCommand::Generate { output } => generate(output),
        KeyCommand::List(a) => list(a),
        KeyCommand::AddOwner(a) => add_owner(a),
        KeyCommand::RemoveOwner(a) => remove_owner(a),
        KeyCommand::RotateWriter(a) => rotate_writer(a),
        KeyCommand::AddHost(a) => add_host(a),
        KeyCommand::RevokeHost(a) => revoke_host(a),
        KeyCommand::Passwd(a) => passwd(a),
    }
}

fn generate(output: PathBuf) -> Result<ExitCode> {
    let (text, recipient) = crypto::generate_x25519();
    if output.as_os_str() == "-" {
        render::raw(text.as_bytes()).context("writing the new identity")?;
        eprintln!("public key: {recipient}");
        return Ok(ExitCode::Ok);
    }
    key_parent(&output)?;
    crypto::write_key_file(&output, &text).with_context(|| "writing the new identity")?;
    outln!("{recipient}");
    Ok(ExitCode::Ok)
}

fn list(a: ListArgs) -> Result<ExitCode> {
    let storage = open_storage(&a.repo.repo)?;
    repo::read_config(storage.as_ref())?;
    let owners = owners::list_owners(storage.as_ref())?;
    let generations = keys::generation_numbers(storage.as_ref())?;
    // Names need no key; open the repository only when a key is given.
    let opened = match Key::given(a.repo.identity.as_deref())? {
        Some(key) => Some(
            key.open(&a.repo.repo)
                .with_context(|| format!("opening repository {}", a.repo.repo))?,
        ),
        None => None,
    };
    // Host keys: names need no key; with one, only certificates the owner
    // signed are listed.
    let mut hosts: Vec<String> = match &opened {
        Some(r) => r.host_certificates()?.into_iter().map(|c| c.host).collect(),
        None => storage
            .list(repo::trust::HOSTS_PREFIX)?
            .iter()
            .filter_map(|o| {
                o.key
                    .strip_prefix(repo::trust::HOSTS_PREFIX)?
                    .split_once('/')
                    .map(|(h, _)| h.to_owned())
            })
            .collect(),
    };
    hosts.sort();
    hosts.dedup();
    // Revocations: with a key, those the owner signed; without, how many
    // objects there are (anyone can add files there).
    let revocation_objects = storage.list(repo::revoke::REVOKED_PREFIX)?.len();
    let revoked = match &opened {
        Some(r) => Some(r.revocation_list()?),
        None => None,
    };
    let listing = render::keys::Listing {
        revoked: revoked.as_deref(),
        revocation_objects,
        owners: &owners,
        hosts: &hosts,
        generations: &generations,
        role: opened
            .as_ref()
            .map(|r| match (r.keys().is_owner(), r.owner_file()) {
                (true, Some(_)) => "owner",
                (true, None) => "repository owner key",
                (false, _) => "writer",
            }),
        yours: opened.as_ref().and_then(|r| r.owner_file()),
        current: opened.as_ref().map(|r| r.keys().writer().generation()),
    };
    if a.json {
        render::keys::json(&listing);
    } else {
        render::keys::text(&listing);
    }
    Ok(ExitCode::Ok)
}

/// The owner `recipients` or `passphrase` describe (prompting for the passphrase).
pub fn owner_spec(recipients: &[String], passphrase: bool) -> Result<OwnerSpec> {
    Ok(if passphrase {
        OwnerSpec::Passphrase(crate::cli::edge::obtain_new_passphrase("the new owner")?)
    } else {
        OwnerSpec::Recipients(
            recipients
                .iter()
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty())
                .collect(),
        )
    })
}

fn add_owner(a: AddOwnerArgs) -> Result<ExitCode> {
    if a.passphrase && a.repo.identity.is_none() && crate::cli::edge::passphrase_file().is_some() {
        usage!(
            "--passphrase would read VAULT_PASSPHRASE_FILE for both you and the new owner: \
             open the repository with -i, or run on a terminal to be asked twice"
        );
    }
    let repo = a.repo.open()?;
    let owner = owner_spec(&a.recipients, a.passphrase)?;
    let object = repo
        .add_owner(&a.name, &owner)
        .with_context(|| format!("adding owner {:?}", a.name))?;
    outln!("added owner {:?} ({object})", a.name);
    Ok(ExitCode::Ok)
}

fn remove_owner(a: RemoveOwnerArgs) -> Result<ExitCode> {
    let repo = a.repo.open()?;
    let object = repo
        .remove_owner(&a.name, a.force)
        .with_context(|| format!("removing owner {:?}", a.name))?;
    outln!("removed owner {:?} ({object})", a.name);
    outln!(
        "note: this does not revoke access: that owner may have kept the repository owner key, \
         which still decrypts every snapshot; see docs/SECURITY.md"
    );
    Ok(ExitCode::Ok)
}

fn rotate_writer(a: RotateWriterArgs) -> Result<ExitCode> {
    let repo = a.repo.open()?;
    key_parent(&a.writer_key_out)?;
    let rotated = repo
        .rotate_writer(&a.writer_key_out)
        .context("rotating the writer key")?;
    outln!(
        "writer key generation {} ({}) written to {}",
        rotated.generation,
        rotated.object,
        a.writer_key_out.display()
    );
    outln!(
        "install it on every backup host: the previous writer key is refused for new backups \
         from now on; existing snapshots stay readable by owners"
    );
    match (&rotated.revoked_shared, &rotated.revocation_failed) {
        (Some(r), _) => outln!(
            "revoked: the previous shared writer key's signatures ({}): headers and index files \
             it signs from {} on do not count",
            r.object,
            render::time(r.cutoff)
        ),
        (None, Some(e)) => outln!(
            "NOT revoked: the previous shared writer key's signatures ({e}); run \
             `vault key rotate-writer` again"
        ),
        (None, None) => {}
    }
    outln!(
        "not revoked: host keys (`vault key add-host`; each needs a new key for this generation, \
         and its old key's signatures still count until `vault key revoke-host HOST`); what the \
         previous writer key already read (every index file and snapshot header sealed before \
         now); the chunk-id key (kept, so it can still compute blob ids); storage credentials \
         (take them away from retired hosts)"
    );
    Ok(ExitCode::Ok)
}

fn add_host(a: AddHostArgs) -> Result<ExitCode> {
    let repo = a.repo.open()?;
    let added = repo
        .add_host(&a.name, &a.writer_key_out)
        .with_context(|| format!("adding host {:?}", a.name))?;
    println!(
        "writer key for host {:?} written to {} (certificate {})",
        added.host,
        a.writer_key_out.display(),
        added.object
    );
    println!(
        "install it on that host instead of the shared writer key: its backups record host {:?} \
         and are signed by it; the shared writer key can no longer write that host's series",
        added.host
    );
    Ok(ExitCode::Ok)
}

fn revoke_host(a: RevokeHostArgs) -> Result<ExitCode> {
    let repo = a.repo.open()?;
    let revoked = repo
        .revoke_host(&a.name)
        .with_context(|| format!("revoking host {:?}", a.name))?;
    for k in &revoked.keys {
        outln!(
            "{} key {} of host {:?} ({}): nothing it signs that storage receives from {} on counts",
            if k.new { "revoked" } else { "already revoked" },
            k.key,
            revoked.host,
            k.object,
            render::time(k.cutoff)
        );
    }
    outln!(
        "its earlier snapshots stay restorable and keep their trust; the key can no longer open \
         the repository with vault, but it still reads what the writer key reads (index files, \
         snapshot headers) and can still write to storage with a modified client: take the \
         host's storage credentials away too, and give it a new key (`vault key add-host {}`) \
         once it is clean",
        revoked.host
    );
    Ok(ExitCode::Ok)
}

fn passwd(a: PasswdArgs) -> Result<ExitCode> {
    use vault::crypto::PassphraseSource;
    use vault::crypto::{ExposeSecret, SecretString};
    let terminal = std::io::IsTerminal::is_terminal(&std::io::stdin());
    if a.new_passphrase_file.is_none() && !terminal {
        usage!(
            "no new passphrase: pass --new-passphrase-file FILE (or VAULT_NEW_PASSPHRASE_FILE), \
             or run on a terminal to type it twice"
        );
    }
    if crate::cli::edge::passphrase_file().is_none() && !terminal {
        usage!("no current passphrase: set VAULT_PASSPHRASE_FILE, or run on a terminal");
    }
    let old = crate::cli::edge::obtain_passphrase("the repository owner (current)")?;
    let repo = Key::Passphrase(SecretString::from(old.expose_secret().to_owned()))
        .open(&a.repo)
        .with_context(|| format!("opening repository {}", a.repo))?;
    let new = match &a.new_passphrase_file {
        Some(p) => vault::crypto::PassphraseFile(p.clone())
            .passphrase("the new passphrase")
            .with_context(|| format!("reading the new passphrase from {}", p.display()))?,
        None => crate::cli::edge::obtain_new_passphrase_prompted("the repository owner")?,
    };
    if new.expose_secret() == old.expose_secret() {
        usage!("the new passphrase is the current one; nothing was changed");
    }
    let object = repo
        .change_passphrase(&new)
        .context("changing the passphrase")?;
    outln!("passphrase changed ({object}); the old passphrase no longer opens the repository");
    Ok(ExitCode::Ok)
}
