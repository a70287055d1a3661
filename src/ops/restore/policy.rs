//! What a restore may create that grants privilege, and the metadata it
//! applies. A snapshot is written by a backup host; once that host is
//! compromised, its snapshots are an attacker's (issue 11, "Privileged files
//! from a snapshot"). Restoring one as root must not hand out privilege the
//! operator did not ask for, so by default restore withholds, and reports:
//!
//! - the setuid and setgid bits of everything but directories (a setuid-root
//!   shell in a restored tree is root for whoever finds it);
//! - device nodes (a mode-0666 `sda` or `mem` is the whole machine);
//! - `security.*` and `trusted.*` extended attributes (`security.capability`
//!   grants capabilities to a program; SELinux and IMA labels, overlayfs
//!   `trusted.*` redirects).
//!
//! Drills never create any of these, whatever the operator asks.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use super::fsops::Handle;
use crate::format::tree::{Node, NodeKind, Xattr};

/// What privileged content a restore may create (all off by default).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RestorePolicy {
    /// Create block and character devices (needs root).
    pub allow_devices: bool,
    /// Keep setuid and setgid bits on files.
    pub keep_setid: bool,
    /// Restore `security.*` and `trusted.*` extended attributes.
    pub keep_security_xattrs: bool,
}

/// What kind of thing the policy kept out of the target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WithheldKind {
    /// A device node that was not created.
    Device,
    /// Setuid or setgid bits that were cleared.
    Setid,
    /// A `security.*` or `trusted.*` attribute that was not set.
    SecurityXattr,
}

/// One thing the policy kept out, naming the path.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Withheld {
    /// Path relative to the snapshot root.
    pub path: String,
    /// What was withheld.
    pub kind: WithheldKind,
    /// Details: the mode as recorded and as restored, the attribute name.
    pub detail: String,
}

/// Entries listed in a report; beyond this only the counts grow (a
/// labelled SELinux system has a `security.selinux` on every file).
pub const MAX_LISTED: usize = 1000;

/// Everything the policy withheld in one restore.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct WithheldReport {
    /// Device nodes not created.
    pub devices: u64,
    /// Entries whose setuid/setgid bits were cleared.
    pub setid: u64,
    /// `security.*` / `trusted.*` attributes not set.
    pub security_xattrs: u64,
    /// The first [`MAX_LISTED`] of them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub entries: Vec<Withheld>,
}

impl WithheldReport {
    /// Records one withheld item.
    pub fn add(&mut self, w: Withheld) {
        match w.kind {
            WithheldKind::Device => self.devices += 1,
            WithheldKind::Setid => self.setid += 1,
            WithheldKind::SecurityXattr => self.security_xattrs += 1,
        }
        if self.entries.len() < MAX_LISTED {
            self.entries.push(w);
        }
    }

    /// How many items were withheld in all.
    pub fn total(&self) -> u64 {
        self.devices + self.setid + self.security_xattrs
    }
}

/// Whether an xattr name is in a namespace that grants or labels privilege.
pub fn is_security_xattr(name: &[u8]) -> bool {
    name.starts_with(b"security.") || name.starts_with(b"trusted.")
}

/// The metadata of one entry after the policy, and what it withheld.
pub struct Screened<'n> {
    /// Permission bits to set.
    pub mode: u32,
    /// Attributes to set.
    pub xattrs: Vec<&'n Xattr>,
    /// What was left out, with details.
    pub withheld: Vec<(WithheldKind, String)>,
}

impl RestorePolicy {
    /// Whether `node` is created at all (`Err` says why not).
    pub fn admits(&self, node: &Node) -> Result<(), (WithheldKind, String)> {
        match node.kind {
            NodeKind::Chardev | NodeKind::Blockdev if !self.allow_devices => {
                let rdev = node.rdev.unwrap_or(0);
                Err((
                    WithheldKind::Device,
                    format!(
                        "{} device {}:{} mode {:04o} not created",
                        if node.kind == NodeKind::Chardev {
                            "character"
                        } else {
                            "block"
                        },
                        nix::sys::stat::major(rdev),
                        nix::sys::stat::minor(rdev),
                        node.mode & 0o7777
                    ),
                ))
            }
            _ => Ok(()),
        }
    }

    /// The mode and attributes `node` gets under this policy.
    pub fn screen<'n>(&self, node: &'n Node) -> Screened<'n> {
        let mut withheld = Vec::new();
        let mut mode = node.mode & 0o7777;
        // Setgid on a directory only makes new entries inherit its group;
        // it runs nothing, so it is kept.
        let setid = if node.kind == NodeKind::Dir {
            0o4000
        } else {
            0o6000
        };
        if !self.keep_setid && node.kind != NodeKind::Symlink && mode & setid != 0 {
            withheld.push((
                WithheldKind::Setid,
                format!("mode {mode:04o} restored as {:04o}", mode & !setid),
            ));
            mode &= !setid;
        }
        let mut xattrs = Vec::with_capacity(node.xattrs.len());
        for x in &node.xattrs {
            if !self.keep_security_xattrs && is_security_xattr(&x.name.0) {
                withheld.push((
                    WithheldKind::SecurityXattr,
                    format!("attribute {} not set", String::from_utf8_lossy(&x.name.0)),
                ));
            } else {
                xattrs.push(x);
            }
        }
        Screened {
            mode,
            xattrs,
            withheld,
        }
    }
}

/// Turns recorded owner names into local ids, once per name: a name found
/// on this system wins over the recorded number (as tar does).
#[derive(Default)]
pub struct Owners {
    users: Mutex<HashMap<String, Option<u32>>>,
    groups: Mutex<HashMap<String, Option<u32>>>,
}

impl Owners {
    fn uid(&self, node: &Node) -> u32 {
        let Some(name) = node.user.as_deref() else {
            return node.uid;
        };
        let mut cache = self.users.lock().expect("owner cache lock");
        let found = cache.entry(name.to_owned()).or_insert_with(|| {
            nix::unistd::User::from_name(name)
                .ok()
                .flatten()
                .map(|u| u.uid.as_raw())
        });
        found.unwrap_or(node.uid)
    }

    fn gid(&self, node: &Node) -> u32 {
        let Some(name) = node.group.as_deref() else {
            return node.gid;
        };
        let mut cache = self.groups.lock().expect("owner cache lock");
        let found = cache.entry(name.to_owned()).or_insert_with(|| {
            nix::unistd::Group::from_name(name)
                .ok()
                .flatten()
                .map(|g| g.gid.as_raw())
        });
        found.unwrap_or(node.gid)
    }
}

/// Applies an entry's metadata on an open handle, under a policy.
pub struct MetaWriter {
    /// Whether ownership is restored (only root can).
    pub as_root: bool,
    /// What privileged metadata is kept.
    pub policy: RestorePolicy,
    /// The owner name cache.
    pub owners: Owners,
}

/// The outcome of applying metadata.
#[derive(Default)]
pub struct Applied {
    /// What could not be applied, when anything.
    pub problem: Option<String>,
    /// What the policy withheld.
    pub withheld: Vec<(WithheldKind, String)>,
}

impl MetaWriter {
    /// The owner and group `node` gets when restoring as root.
    pub fn owner_of(&self, node: &Node) -> (u32, u32) {
        (self.owners.uid(node), self.owners.gid(node))
    }

    /// Sets owner (as root), mode, attributes and times, in that order:
    /// `chown` clears setuid bits and capabilities, so it comes first. The
    /// owner is left alone when `owned_by` (what a new file starts with)
    /// already is the right one, and the mode when `mode_is` (the
    /// permission bits a new file was created with, when known) already is.
    pub fn apply(
        &self,
        h: &Handle<'_>,
        node: &Node,
        owned_by: Option<(u32, u32)>,
        mode_is: Option<u32>,
    ) -> Applied {
        let screened = self.policy.screen(node);
        let mut problems = Vec::new();
        if self.as_root {
            let owner = self.owner_of(node);
            if owned_by != Some(owner)
                && let Err(e) = h.chown(owner.0, owner.1)
            {
                problems.push(format!("owner: {e}"));
            }
        }
        if mode_is != Some(screened.mode)
            && let Err(e) = h.chmod(screened.mode)
        {
            problems.push(format!("mode: {e}"));
        }
        for x in &screened.xattrs {
            if let Err(e) = h.set_xattr(OsStr::from_bytes(&x.name.0), &x.value) {
                problems.push(format!("xattr {:?}: {e}", x.name));
            }
        }
        if let Err(e) = h.set_times(node.mtime_ns) {
            problems.push(format!("mtime: {e}"));
        }
        Applied {
            problem: (!problems.is_empty()).then(|| problems.join("; ")),
            withheld: screened.withheld,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::tree::Bytes;

    fn node(kind: NodeKind, mode: u32) -> Node {
        Node {
            name: Bytes(b"x".to_vec()),
            kind,
            mode,
            uid: 0,
            gid: 0,
            user: None,
            group: None,
            mtime_ns: 0,
            size: 0,
            target: None,
            rdev: Some(nix::sys::stat::makedev(8, 0)),
            hardlink: None,
            xattrs: vec![
                Xattr {
                    name: Bytes(b"security.capability".to_vec()),
                    value: vec![1],
                },
                Xattr {
                    name: Bytes(b"trusted.overlay.redirect".to_vec()),
                    value: vec![2],
                },
                Xattr {
                    name: Bytes(b"user.note".to_vec()),
                    value: vec![3],
                },
            ],
            content: vec![],
            bundle_offset: None,
            content_lists: Vec::new(),
            hash: None,
            subtree: None,
        }
    }

    #[test]
    fn the_default_policy_withholds_privilege() {
        let p = RestorePolicy::default();
        let n = node(NodeKind::File, 0o6755);
        let s = p.screen(&n);
        assert_eq!(s.mode, 0o755);
        assert_eq!(s.xattrs.len(), 1);
        assert_eq!(s.xattrs[0].name.0, b"user.note");
        let kinds: Vec<_> = s.withheld.iter().map(|w| w.0).collect();
        assert_eq!(
            kinds,
            [
                WithheldKind::Setid,
                WithheldKind::SecurityXattr,
                WithheldKind::SecurityXattr
            ]
        );
        assert!(s.withheld[0].1.contains("6755") && s.withheld[0].1.contains("0755"));
        let dev = p.admits(&node(NodeKind::Blockdev, 0o666)).unwrap_err();
        assert_eq!(dev.0, WithheldKind::Device);
        assert!(dev.1.contains("block device 8:0"), "{}", dev.1);
        assert!(p.admits(&node(NodeKind::Fifo, 0o666)).is_ok());
    }

    #[test]
    fn directories_keep_setgid_and_sticky() {
        let n = node(NodeKind::Dir, 0o7775);
        let s = RestorePolicy::default().screen(&n);
        assert_eq!(s.mode, 0o3775);
    }

    #[test]
    fn the_operator_can_ask_for_everything() {
        let p = RestorePolicy {
            allow_devices: true,
            keep_setid: true,
            keep_security_xattrs: true,
        };
        let n = node(NodeKind::File, 0o4755);
        let s = p.screen(&n);
        assert_eq!((s.mode, s.xattrs.len(), s.withheld.len()), (0o4755, 3, 0));
        assert!(p.admits(&node(NodeKind::Chardev, 0o666)).is_ok());
    }

    #[test]
    fn reports_list_a_bounded_number_of_entries() {
        let mut r = WithheldReport::default();
        for i in 0..MAX_LISTED + 5 {
            r.add(Withheld {
                path: i.to_string(),
                kind: WithheldKind::SecurityXattr,
                detail: String::new(),
            });
        }
        assert_eq!(r.entries.len(), MAX_LISTED);
        assert_eq!(r.security_xattrs as usize, MAX_LISTED + 5);
        assert_eq!(r.total() as usize, MAX_LISTED + 5);
    }
}
