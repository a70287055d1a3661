//! `vault key list` output.

use serde_json::json;

use super::{sanitize, size};
use vault::repo::revoke::ListedRevocation;
use vault::repo::{self, owners::OwnerEntry};

/// What `vault key list` found.
pub struct Listing<'a> {
    /// The owner files.
    pub owners: &'a [OwnerEntry],
    /// Hosts with a writer key of their own (`keys/hosts/`).
    pub hosts: &'a [String],
    /// Writer key generations beyond the first.
    pub generations: &'a [u32],
    /// What the caller's key is, when a key was given.
    pub role: Option<&'static str>,
    /// The owner file the caller's key opened.
    pub yours: Option<&'a str>,
    /// The current writer key generation, when a key was given.
    pub current: Option<u32>,
    /// The revocations the owner signed, when a key was given.
    pub revoked: Option<&'a [ListedRevocation]>,
    /// How many objects are under `keys/revoked/` (checked or not).
    pub revocation_objects: usize,
}

/// Prints the listing as JSON.
pub fn json(l: &Listing<'_>) {
    let list: Vec<_> = l
        .owners
        .iter()
        .map(|o| {
            json!({"name": o.name, "object": o.object, "size": o.size,
                   "opened_by_you": l.yours == Some(o.object.as_str())})
        })
        .collect();
    super::json(&json!({
        "owners": list,
        "writer_generations": l.generations,
        "hosts": l.hosts,
        "identity": l.role,
        "current_writer_generation": l.current,
        "revoked": l.revoked,
        "revocation_objects": l.revocation_objects,
    }));
}

/// Prints the listing as a table.
pub fn text(l: &Listing<'_>) {
    let width = l
        .owners
        .iter()
        .map(|o| o.name.len())
        .max()
        .unwrap_or(5)
        .max(5);
    outln!("{:width$}  {:>9}", "OWNER", "SIZE");
    for o in l.owners {
        let mark = if l.yours == Some(o.object.as_str()) {
            "  (your identity opens this one)"
        } else {
            ""
        };
        outln!("{:width$}  {:>9}{mark}", sanitize(&o.name), size(o.size));
    }
    let gens: Vec<String> = l.generations.iter().map(u32::to_string).collect();
    outln!(
        "writer key generations: 0 ({}){}{}",
        repo::WRITER_KEY,
        if gens.is_empty() { "" } else { ", " },
        gens.join(", ")
    );
    if !l.hosts.is_empty() {
        let names: Vec<String> = l.hosts.iter().map(|h| sanitize(h)).collect();
        println!("host keys: {}", names.join(", "));
    }
    match l.revoked {
        Some(list) => {
            for r in list {
                outln!(
                    "revoked: host {} key {} (what it signs and storage receives from {} on does \
                     not count)",
                    sanitize(&r.host),
                    r.key,
                    super::time(r.cutoff)
                );
            }
            if list.is_empty() {
                outln!("revoked: none");
            }
        }
        None if l.revocation_objects > 0 => outln!(
            "revocations: {} objects under keys/revoked/ (pass -i KEY to check and list them)",
            l.revocation_objects
        ),
        None => {}
    }
    match (l.role, l.current) {
        (Some(role), Some(g)) => outln!("your key: {role}; current writer key generation: {g}"),
        _ => outln!("(pass -i KEY to see which owner file your identity opens)"),
    }
}
