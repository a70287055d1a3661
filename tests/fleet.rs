//! A short round of `scripts/fleet-test.sh`: a fleet of hosts, each with its
//! own key, backing up a few at a time into one S3 (moto) repository with a
//! prune running meanwhile; every host's snapshot there, `check
//! --read-data` clean, a sample restored byte for byte, and packs within
//! 10 % of the distinct content. The control run without the owner step
//! shows the deduplication check can fail. The full run (100 hosts, 10 at a
//! time) is `scripts/fleet-test.sh`.

use std::process::{Command, Output};

use crate::util::*;

fn fleet(hosts: &str, envs: &[(&str, &str)]) -> (Output, tempfile::TempDir) {
    let work = tempfile::tempdir().unwrap();
    let mut cmd = Command::new("bash");
    cmd.arg(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/scripts/fleet-test.sh"
    ))
    .arg(hosts)
    .env("VAULT_BIN", vault_bin())
    .env("FLEET_WORK", work.path())
    .env("FLEET_PARALLEL", "4")
    .env("FLEET_RESTORE_EVERY", "3")
    .env_remove("VAULT_REPO")
    .env_remove("VAULT_IDENTITY")
    .env_remove("VAULT_CONFIG");
    for (k, v) in envs {
        cmd.env(k, v);
    }
    (cmd.output().unwrap(), work)
}

/// The ratio of pack bytes to distinct content the script printed.
fn ratio(text: &str) -> f64 {
    text.lines()
        .find_map(|l| {
            l.split_once(" ratio ")
                .map(|(_, r)| r.trim().parse().unwrap())
        })
        .unwrap_or_else(|| panic!("no ratio in {text}"))
}

#[test]
fn a_fleet_of_hosts_shares_one_repository_and_deduplicates_across_hosts() {
    let (out, _work) = fleet("12", &[]);
    let text = stdout(&out);
    assert!(out.status.success(), "{text}\n{}", stderr(&out));
    assert_contains(&text, "snapshots of 12 hosts; 4 restored and compared");
    assert_contains(&text, "fleet: ok");
    assert!(ratio(&text) <= 1.10, "{text}");
}

#[test]
fn without_the_owner_step_hosts_do_not_deduplicate_against_each_other() {
    let (out, _work) = fleet("6", &[("FLEET_OWNER_STEP", "none")]);
    let text = stdout(&out);
    assert!(!out.status.success(), "{text}");
    // Each host stored the common base again: several times the content.
    assert!(ratio(&text) > 3.0, "{text}");
    assert_contains(&stderr(&out), "over 1.10");
    assert_contains(&text, "snapshots of 6 hosts");
}
