//! Sparse files come back sparse: zero blocks found on restore are left as
//! holes (issue 12, "a 10 MiB sparse file came back fully allocated").

use std::fs;
use std::os::unix::fs::{FileExt, MetadataExt};

use crate::util::*;

#[test]
fn a_sparse_file_restores_with_about_the_same_allocated_blocks() {
    let env = Env::new();
    let src = env.path("src");
    fs::create_dir_all(&src).unwrap();
    // 10 MiB, mostly holes: 64 KiB of data at 3 MiB and 4 KiB at the very
    // end; a file that ends in a hole; and a fully written file of zeros.
    let sparse = src.join("disk.img");
    let f = fs::File::create(&sparse).unwrap();
    f.set_len(10 << 20).unwrap();
    f.write_all_at(&noise(64 << 10, 7), 3 << 20).unwrap();
    f.write_all_at(&noise(4096, 8), (10 << 20) - 4096).unwrap();
    drop(f);
    let tail_hole = src.join("tail-hole");
    let f = fs::File::create(&tail_hole).unwrap();
    f.write_all_at(b"head", 0).unwrap();
    f.set_len(5 << 20).unwrap();
    drop(f);
    write(&src.join("zeros"), &vec![0u8; 1 << 20]);
    let before = fs::metadata(&sparse).unwrap();
    assert!(
        before.blocks() * 512 < 1 << 20,
        "the test needs a file system with holes: {} blocks",
        before.blocks()
    );
    let id = env.backup(&[&src]);
    let target = env.path("target");
    let out = env.restore(&id, &target);
    assert_success(&out);
    let root = target.join(src.strip_prefix("/").unwrap());
    let after = fs::metadata(root.join("disk.img")).unwrap();
    assert_eq!(after.len(), 10 << 20);
    assert_eq!(
        fs::read(root.join("disk.img")).unwrap(),
        fs::read(&sparse).unwrap()
    );
    // About the same: within 64 KiB of the original's allocation.
    let (b, a) = (before.blocks() as i64 * 512, after.blocks() as i64 * 512);
    assert!(
        (a - b).abs() <= 64 << 10,
        "original {b} bytes allocated, restored {a}"
    );
    let t = fs::metadata(root.join("tail-hole")).unwrap();
    assert_eq!(t.len(), 5 << 20);
    assert!(t.blocks() * 512 <= 64 << 10, "{} blocks", t.blocks());
    assert_eq!(
        fs::read(root.join("tail-hole")).unwrap(),
        fs::read(&tail_hole).unwrap()
    );
    let z = fs::metadata(root.join("zeros")).unwrap();
    assert_eq!(z.len(), 1 << 20);
    assert!(
        z.blocks() * 512 <= 64 << 10,
        "zeros come back as a hole: {} blocks",
        z.blocks()
    );
    // A drill re-reads the holes as zeros and matches every hash.
    let out = env.vault(&["restore"], &env.owner_key, &[&id, "--verify"]);
    assert_success(&out);
}
