//! Large files are restored around the page cache (`O_DIRECT`) in aligned
//! blocks, with the partial blocks where segments meet carried over: every
//! byte, every size, and file systems that refuse direct writes.

use std::fs;

use crate::util::*;

/// Files of several segments whose sizes are not a multiple of 4096, one
/// with a run of zeros across segment boundaries.
fn large_files(src: &std::path::Path) -> Vec<(&'static str, Vec<u8>)> {
    let mut zeros_inside = noise((9 << 20) + 4097 + 13, 21);
    zeros_inside[(3 << 20) + 5..(6 << 20) + 7].fill(0);
    let files = vec![
        ("one-past", noise((8 << 20) + 1, 22)),
        ("block-short", noise((12 << 20) - 4095, 23)),
        ("zeros-inside", zeros_inside),
    ];
    for (name, data) in &files {
        write(&src.join(name), data);
    }
    files
}

#[test]
fn large_files_of_odd_sizes_restore_byte_for_byte_and_verify() {
    let env = Env::new();
    let src = env.path("src");
    fs::create_dir_all(&src).unwrap();
    let files = large_files(&src);
    let id = env.backup(&[&src]);
    let target = env.path("target");
    let out = env.restore(&id, &target);
    assert_success(&out);
    let root = target.join(src.strip_prefix("/").unwrap());
    for (name, data) in &files {
        let back = fs::read(root.join(name)).unwrap();
        assert!(back == *data, "{name} differs ({} bytes back)", back.len());
    }
    // A drill reads them back from disk and matches every hash.
    let out = env.vault(&["restore"], &env.owner_key, &[&id, "--verify"]);
    assert_success(&out);
}

#[test]
fn large_files_restore_onto_tmpfs_whether_or_not_it_takes_direct_writes() {
    let shm = std::path::Path::new("/dev/shm");
    if !shm.is_dir() {
        return; // no tmpfs here
    }
    let env = Env::new();
    let src = env.path("src");
    fs::create_dir_all(&src).unwrap();
    let files = large_files(&src);
    let id = env.backup(&[&src]);
    let target = tempfile::tempdir_in(shm).unwrap();
    let out = env.restore(&id, target.path());
    assert_success(&out);
    let root = target.path().join(src.strip_prefix("/").unwrap());
    for (name, data) in &files {
        let back = fs::read(root.join(name)).unwrap();
        assert!(back == *data, "{name} differs on tmpfs");
    }
}
