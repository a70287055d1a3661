//! A tree's JSON written field by field into one buffer: byte for byte
//! what `serde_json::to_vec` makes of the derived `Serialize` (the tree
//! ids of existing snapshots depend on it), without serde's per-value
//! calls, its escape scan of every hex digit, or a formatter per integer.
//! A backup of 200,000 unchanged files serializes every one of their
//! entries again; `tests::the_encoder_writes_what_serde_json_writes`
//! holds the two outputs equal.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;

use super::{Bytes, Node, NodeKind, Xattr};
use crate::format::id::Id;

/// Appends `{"nodes":[…]}` for `nodes` to `out`.
pub(super) fn tree(out: &mut Vec<u8>, nodes: &[Node]) {
    out.extend_from_slice(b"{\"nodes\":[");
    for (i, n) in nodes.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        node(out, n);
    }
    out.extend_from_slice(b"]}");
}

/// One entry: its fields in declaration order, the empty optional ones
/// left out as `skip_serializing_if` does.
fn node(out: &mut Vec<u8>, n: &Node) {
    out.extend_from_slice(b"{\"name\":");
    bytes(out, &n.name);
    out.extend_from_slice(b",\"kind\":\"");
    out.extend_from_slice(kind(n.kind));
    out.extend_from_slice(b"\",\"mode\":");
    number(out, u64::from(n.mode));
    out.extend_from_slice(b",\"uid\":");
    number(out, u64::from(n.uid));
    out.extend_from_slice(b",\"gid\":");
    number(out, u64::from(n.gid));
    if let Some(user) = &n.user {
        out.extend_from_slice(b",\"user\":");
        string(out, user.as_bytes());
    }
    if let Some(group) = &n.group {
        out.extend_from_slice(b",\"group\":");
        string(out, group.as_bytes());
    }
    out.extend_from_slice(b",\"mtime_ns\":");
    if n.mtime_ns < 0 {
        out.push(b'-');
    }
    number(out, n.mtime_ns.unsigned_abs());
    out.extend_from_slice(b",\"size\":");
    number(out, n.size);
    if let Some(target) = &n.target {
        out.extend_from_slice(b",\"target\":");
        bytes(out, target);
    }
    if let Some(rdev) = n.rdev {
        out.extend_from_slice(b",\"rdev\":");
        number(out, rdev);
    }
    if let Some(link) = &n.hardlink {
        out.extend_from_slice(b",\"hardlink\":");
        string(out, link.as_bytes());
    }
    if !n.xattrs.is_empty() {
        out.extend_from_slice(b",\"xattrs\":[");
        for (i, x) in n.xattrs.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            xattr(out, x);
        }
        out.push(b']');
    }
    if !n.content.is_empty() {
        out.extend_from_slice(b",\"content\":");
        ids(out, n.content.iter().map(|b| &b.0));
    }
    if let Some(at) = n.bundle_offset {
        out.extend_from_slice(b",\"bundle_offset\":");
        number(out, at);
    }
    if !n.content_lists.is_empty() {
        out.extend_from_slice(b",\"content_lists\":");
        ids(out, n.content_lists.iter().map(|b| &b.0));
    }
    if let Some(hash) = &n.hash {
        out.extend_from_slice(b",\"hash\":");
        id(out, hash);
    }
    if let Some(subtree) = &n.subtree {
        out.extend_from_slice(b",\"subtree\":");
        id(out, &subtree.0);
    }
    out.push(b'}');
}

/// The kind's lowercase name (`rename_all = "lowercase"`).
fn kind(k: NodeKind) -> &'static [u8] {
    match k {
        NodeKind::File => b"file",
        NodeKind::Dir => b"dir",
        NodeKind::Symlink => b"symlink",
        NodeKind::Fifo => b"fifo",
        NodeKind::Chardev => b"chardev",
        NodeKind::Blockdev => b"blockdev",
        NodeKind::Socket => b"socket",
    }
}

fn xattr(out: &mut Vec<u8>, x: &Xattr) {
    out.extend_from_slice(b"{\"name\":");
    bytes(out, &x.name);
    out.extend_from_slice(b",\"value\":\"");
    base64(out, &x.value);
    out.extend_from_slice(b"\"}");
}

/// A [`Bytes`] as its `Serialize` has it: the text when it is UTF-8 and
/// does not start with `b64:`, else `b64:` and base64.
fn bytes(out: &mut Vec<u8>, b: &Bytes) {
    match std::str::from_utf8(&b.0) {
        Ok(t) if !t.starts_with("b64:") => string(out, t.as_bytes()),
        _ => {
            out.extend_from_slice(b"\"b64:");
            base64(out, &b.0);
            out.push(b'"');
        }
    }
}

/// Standard base64 with padding (no character in it needs escaping).
fn base64(out: &mut Vec<u8>, value: &[u8]) {
    let at = out.len();
    out.resize(
        at + base64::encoded_len(value.len(), true).expect("a value's base64 fits"),
        0,
    );
    let written = B64
        .encode_slice(value, &mut out[at..])
        .expect("sized for the encoding");
    out.truncate(at + written);
}

/// A JSON string of UTF-8 `text`, escaped as serde_json escapes: `"`, `\`
/// and the control characters below 0x20 (short forms for five of them,
/// `\u00xx` in lowercase hex for the others); everything else as is.
fn string(out: &mut Vec<u8>, text: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push(b'"');
    let mut start = 0;
    for (i, &c) in text.iter().enumerate() {
        let short = match c {
            b'"' => b'"',
            b'\\' => b'\\',
            0x08 => b'b',
            0x09 => b't',
            0x0a => b'n',
            0x0c => b'f',
            0x0d => b'r',
            0..0x20 => b'u',
            _ => continue,
        };
        out.extend_from_slice(&text[start..i]);
        out.push(b'\\');
        out.push(short);
        if short == b'u' {
            out.extend_from_slice(&[
                b'0',
                b'0',
                HEX[usize::from(c >> 4)],
                HEX[usize::from(c & 15)],
            ]);
        }
        start = i + 1;
    }
    out.extend_from_slice(&text[start..]);
    out.push(b'"');
}

/// An id as its 64 lowercase hex digits, quoted.
fn id(out: &mut Vec<u8>, id: &Id) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    // Made on the stack and appended once: two ids a file, so a byte at a
    // time (a capacity check each) showed in a backup of unchanged files.
    let mut text = [b'"'; 66];
    for (pair, b) in text[1..65].chunks_exact_mut(2).zip(id.0) {
        pair[0] = HEX[usize::from(b >> 4)];
        pair[1] = HEX[usize::from(b & 15)];
    }
    out.extend_from_slice(&text);
}

fn ids<'a>(out: &mut Vec<u8>, list: impl Iterator<Item = &'a Id>) {
    out.push(b'[');
    for (i, x) in list.enumerate() {
        if i > 0 {
            out.push(b',');
        }
        id(out, x);
    }
    out.push(b']');
}

/// `n` in decimal.
fn number(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[at..]);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::id::{BlobId, TreeId};

    /// A small deterministic generator (xorshift).
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
        fn id(&mut self) -> Id {
            let mut b = [0u8; 32];
            for x in &mut b {
                *x = self.next() as u8;
            }
            Id(b)
        }
        /// Bytes drawn from what names hold and what JSON must escape:
        /// ASCII, controls, quotes, backslashes, DEL, UTF-8 of two to four
        /// bytes, and lone bytes that are not UTF-8; sometimes `b64:` first.
        fn bytes(&mut self) -> Vec<u8> {
            const PIECES: &[&[u8]] = &[
                b"a",
                b"Z",
                b"0",
                b".",
                b" ",
                b"\"",
                b"\\",
                b"/",
                b"\x00",
                b"\x01",
                b"\x08",
                b"\t",
                b"\n",
                b"\x0b",
                b"\x0c",
                b"\r",
                b"\x1f",
                b"\x7f",
                "é".as_bytes(),
                "€".as_bytes(),
                "𝄞".as_bytes(),
                b"\xff",
                b"\xc3",
                b"b64:",
                b"\xe2\x82",
            ];
            let mut out = Vec::new();
            if self.below(8) == 0 {
                out.extend_from_slice(b"b64:");
            }
            for _ in 0..self.below(12) {
                out.extend_from_slice(PIECES[self.below(PIECES.len() as u64) as usize]);
            }
            out
        }
        fn text(&mut self) -> String {
            String::from_utf8_lossy(&self.bytes()).into_owned()
        }
    }

    fn random_node(rng: &mut Rng) -> Node {
        const KINDS: [NodeKind; 7] = [
            NodeKind::File,
            NodeKind::Dir,
            NodeKind::Symlink,
            NodeKind::Fifo,
            NodeKind::Chardev,
            NodeKind::Blockdev,
            NodeKind::Socket,
        ];
        let big = |rng: &mut Rng| match rng.below(4) {
            0 => 0,
            1 => rng.below(1000),
            2 => u64::MAX - rng.below(3),
            _ => rng.next(),
        };
        let some = |rng: &mut Rng| rng.below(2) == 0;
        Node {
            name: Bytes(rng.bytes()),
            kind: KINDS[rng.below(7) as usize],
            mode: big(rng) as u32,
            uid: big(rng) as u32,
            gid: big(rng) as u32,
            user: some(rng).then(|| rng.text()),
            group: some(rng).then(|| rng.text()),
            mtime_ns: match rng.below(4) {
                0 => i64::MIN,
                1 => -(rng.below(1 << 40) as i64),
                2 => i64::MAX,
                _ => rng.next() as i64,
            },
            size: big(rng),
            target: some(rng).then(|| Bytes(rng.bytes())),
            rdev: some(rng).then(|| big(rng)),
            hardlink: some(rng).then(|| format!("{}:{}", rng.next(), rng.next())),
            xattrs: (0..rng.below(3))
                .map(|_| Xattr {
                    name: Bytes(rng.bytes()),
                    value: rng.bytes(),
                })
                .collect(),
            content: (0..rng.below(4)).map(|_| BlobId(rng.id())).collect(),
            bundle_offset: some(rng).then(|| big(rng)),
            content_lists: (0..rng.below(2)).map(|_| BlobId(rng.id())).collect(),
            hash: some(rng).then(|| rng.id()),
            subtree: some(rng).then(|| TreeId(rng.id())),
        }
    }

    #[test]
    fn the_encoder_writes_what_serde_json_writes() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        for len in [0, 1, 2, 5, 40] {
            for _ in 0..200 {
                let nodes: Vec<Node> = (0..len).map(|_| random_node(&mut rng)).collect();
                let mut ours = Vec::new();
                tree(&mut ours, &nodes);
                let theirs = serde_json::to_vec(&super::super::Tree {
                    nodes: nodes.clone(),
                })
                .unwrap();
                assert_eq!(
                    String::from_utf8_lossy(&ours),
                    String::from_utf8_lossy(&theirs)
                );
                assert_eq!(ours, theirs);
            }
        }
        // Every byte value alone, as a name and as text.
        for b in 0..=255u8 {
            let mut n = Node::bare(&[b], NodeKind::File);
            n.user = Some(String::from_utf8_lossy(&[b]).into_owned());
            let mut ours = Vec::new();
            tree(&mut ours, std::slice::from_ref(&n));
            let theirs = serde_json::to_vec(&super::super::Tree { nodes: vec![n] }).unwrap();
            assert_eq!(ours, theirs, "byte {b:#x}");
        }
    }
}
