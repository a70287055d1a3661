//! Tree blobs (directory listings): parsed with the name rules a restore
//! relies on.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vault::format::id::Id;
use vault::format::tree::{Tree, check_name};

fuzz_target!(|data: &[u8]| {
    let Ok(tree) = Tree::from_bytes(data, &Id([0; 32])) else {
        return;
    };
    for (i, n) in tree.nodes.iter().enumerate() {
        assert!(check_name(&n.name.0).is_ok());
        assert!(!n.name.0.contains(&b'/') && n.name.0 != b".." && n.name.0 != b".");
        if i > 0 {
            assert!(tree.nodes[i - 1].name < n.name);
        }
    }
    // What parses serializes to bytes that parse to the same tree.
    let again = Tree::from_bytes(&tree.to_bytes(), &Id([0; 32])).expect("round trip");
    assert_eq!(again, tree);
});
