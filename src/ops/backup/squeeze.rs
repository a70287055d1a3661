//! What compression will not shrink, found cheaply: already compressed
//! input (by its magic number or a trial on its first MiB) and blobs whose
//! bytes look random, which are stored as a zstd frame of raw blocks instead
//! of being run through the compressor.

/// How much of a command's output is inspected for [`looks_compressed`].
pub const HEAD: usize = 1 << 20;

/// Below this many bytes a command's output is not judged by trial
/// compression (too little to say, and too little to matter).
const MIN_TRIAL: usize = 64 * 1024;

/// Why a command's output looks already compressed (or encrypted): its
/// format's magic number, or its first MiB not shrinking at zstd level 1.
/// `head` is the first [`HEAD`] bytes (or all of a shorter output).
pub fn looks_compressed(head: &[u8]) -> Option<&'static str> {
    const MAGICS: &[(&[u8], &str)] = &[
        (&[0x28, 0xB5, 0x2F, 0xFD], "zstd"),
        (&[0x1F, 0x8B], "gzip"),
        (&[0xFD, b'7', b'z', b'X', b'Z', 0x00], "xz"),
        (b"BZh", "bzip2"),
    ];
    if let Some((_, name)) = MAGICS.iter().find(|(m, _)| head.starts_with(m)) {
        return Some(name);
    }
    if head.len() < MIN_TRIAL {
        return None;
    }
    let packed = zstd::bulk::compress(head, 1).map_or(head.len(), |c| c.len());
    // Less than 5 % saved on the first MiB: compressed or encrypted.
    (packed * 20 >= head.len() * 19).then_some("incompressible")
}

/// Bytes of a blob sampled by [`looks_random`].
const SAMPLE: usize = 4096;

/// Order-0 entropy (bits per byte, ×1000) above which a sample is taken for
/// compressed or encrypted data. Text, SQL and binary tables sit far below
/// (4–6.5 bits); zlib, zstd and encrypted data near 8 (a 4 KiB sample of
/// random bytes measures about 7.95 because of the small-sample bias).
const RANDOM_MILLIBITS: u32 = 7_800;

/// Whether `blob` looks random (already compressed or encrypted), judged by
/// the byte entropy of up to [`SAMPLE`] bytes taken from four places. Cheap
/// (a histogram of 4 KiB), and only ever a guess: a wrong "no" costs a
/// compression attempt, a wrong "yes" stores the blob uncompressed.
pub fn looks_random(blob: &[u8]) -> bool {
    if blob.len() < 1024 {
        return false;
    }
    let piece = (SAMPLE / 4).min(blob.len() / 4);
    let stride = blob.len() / 4;
    if !varied(blob, stride) {
        return false;
    }
    let mut counts = [0u32; 256];
    for i in 0..4 {
        for &b in &blob[i * stride..i * stride + piece] {
            counts[b as usize] += 1;
        }
    }
    let n = (piece * 4) as f64;
    let bits: f64 = counts
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| {
            let p = c as f64 / n;
            -p * p.log2()
        })
        .sum();
    (bits * 1000.0) as u32 >= RANDOM_MILLIBITS
}

/// Bytes of each of the four places [`varied`] looks at.
const GLANCE: usize = 64;

/// Fewest distinct values among [`GLANCE`] × 4 bytes that random data
/// shows: 256 random bytes hold about 162 distinct values (rarely fewer
/// than 140), text and tables well under 100.
const MIN_DISTINCT: u32 = 128;

/// A first glance before the histogram: whether the first [`GLANCE`] bytes
/// of each quarter (`stride` bytes apart) hold enough distinct values to
/// be random. Most blobs are text and fail it, costing 256 bytes read
/// instead of 4 KiB and 256 logarithms.
fn varied(blob: &[u8], stride: usize) -> bool {
    let mut seen = [0u64; 4];
    for i in 0..4 {
        for &b in &blob[i * stride..i * stride + GLANCE] {
            seen[usize::from(b >> 6)] |= 1 << (b & 63);
        }
    }
    seen.iter().map(|w| w.count_ones()).sum::<u32>() >= MIN_DISTINCT
}

/// The largest raw block a zstd frame may hold.
const MAX_BLOCK: usize = 128 * 1024;

/// `data` as one zstd frame of raw (stored) blocks: any zstd decoder returns
/// it unchanged, so a blob stored this way reads back like every other.
/// Single-segment frame with its content size and no checksum (the blob id
/// checks the content), as the compressor writes them. `data` must not be
/// larger than [`MAX_RAW_FRAME`] (decoders' default window limit).
pub fn raw_frame(data: &[u8]) -> Vec<u8> {
    debug_assert!(data.len() <= MAX_RAW_FRAME);
    let mut out = Vec::with_capacity(data.len() + 14 + 3 * (data.len() / MAX_BLOCK + 1));
    out.extend_from_slice(&[0x28, 0xB5, 0x2F, 0xFD]);
    let len = data.len() as u64;
    // Frame header descriptor: single segment (bit 5), content size field
    // of 1, 2, 4 or 8 bytes (bits 7-6), no checksum, no dictionary.
    if len < 256 {
        out.push(0b0010_0000);
        out.push(len as u8);
    } else if len < 65536 + 256 {
        out.push(0b0110_0000);
        out.extend_from_slice(&((len - 256) as u16).to_le_bytes());
    } else if len <= u32::MAX as u64 {
        out.push(0b1010_0000);
        out.extend_from_slice(&(len as u32).to_le_bytes());
    } else {
        out.push(0b1110_0000);
        out.extend_from_slice(&len.to_le_bytes());
    }
    let mut blocks = data.chunks(MAX_BLOCK).peekable();
    if blocks.peek().is_none() {
        // An empty frame still has one (last, empty) block.
        out.extend_from_slice(&[1, 0, 0]);
    }
    while let Some(block) = blocks.next() {
        let last = u32::from(blocks.peek().is_none());
        // Block header: last flag (bit 0), type 0 = raw (bits 1-2), size.
        let header = last | ((block.len() as u32) << 3);
        out.extend_from_slice(&header.to_le_bytes()[..3]);
        out.extend_from_slice(block);
    }
    out
}

/// The largest blob [`raw_frame`] is used for: a single-segment frame's
/// window is its whole content, and decoders refuse windows over 128 MiB by
/// default (`zstd -d` included).
pub const MAX_RAW_FRAME: usize = 8 << 20;

#[cfg(test)]
mod tests {
    use super::*;

    fn random(n: usize, seed: u64) -> Vec<u8> {
        crate::format::testdata::xorshift(n, seed)
    }

    fn text(n: usize) -> Vec<u8> {
        let mut out = Vec::new();
        let mut i = 0u64;
        while out.len() < n {
            out.extend_from_slice(
                format!(
                    "INSERT INTO accounts VALUES ({i}, {}, 'filler {i:x}');\n",
                    i * 7919 % 1000
                )
                .as_bytes(),
            );
            i += 1;
        }
        out.truncate(n);
        out
    }

    #[test]
    fn raw_frames_decode_to_their_content_with_any_zstd_decoder() {
        for n in [
            0,
            1,
            255,
            256,
            4096,
            65535,
            65536 + 255,
            65536 + 256,
            300_000,
        ] {
            let data = random(n, n as u64 + 1);
            let frame = raw_frame(&data);
            assert!(frame.len() <= n + 20 + 3 * (n / MAX_BLOCK), "{n}");
            assert_eq!(zstd::bulk::decompress(&frame, n).unwrap(), data, "{n}");
            assert_eq!(zstd::stream::decode_all(&frame[..]).unwrap(), data, "{n}");
            // The frame records its size: a decoder with less room refuses it.
            if n > 0 {
                assert!(zstd::bulk::decompress(&frame, n - 1).is_err(), "{n}");
            }
        }
    }

    #[test]
    fn random_bytes_look_random_and_text_does_not() {
        assert!(looks_random(&random(16 * 1024, 7)));
        assert!(looks_random(
            &zstd::bulk::compress(&random(64 * 1024, 3), 3).unwrap()
        ));
        let compressed_text = zstd::bulk::compress(&text(1 << 20), 19).unwrap();
        assert!(looks_random(&compressed_text[..16 * 1024]));
        assert!(!looks_random(&text(16 * 1024)));
        assert!(!looks_random(&vec![0u8; 16 * 1024]));
        assert!(!looks_random(&random(512, 1)), "too short to judge");
    }

    #[test]
    fn the_first_glance_passes_every_random_blob_and_stops_text() {
        // Random data of every seed passes the glance (so the histogram
        // decides, as before it); text and tables are stopped by it.
        for seed in 1..2000 {
            let r = random(1024 + (seed as usize % 7) * 1000, seed);
            assert!(varied(&r, r.len() / 4), "seed {seed}");
        }
        for n in [1024, 4096, 16 * 1024] {
            let t = text(n);
            assert!(!varied(&t, t.len() / 4), "{n}");
        }
        let mut config = Vec::new();
        for i in 0..200 {
            config.extend_from_slice(format!("key_{i} = value-{}\n", i * 37).as_bytes());
        }
        assert!(!varied(&config, config.len() / 4));
    }

    #[test]
    fn compressed_output_is_recognised_by_magic_or_trial() {
        let txt = text(2 * HEAD);
        assert_eq!(looks_compressed(&txt[..HEAD]), None);
        let z = zstd::bulk::compress(&txt, 3).unwrap();
        assert_eq!(looks_compressed(&z), Some("zstd"));
        assert_eq!(looks_compressed(&[0x1F, 0x8B, 8, 0]), Some("gzip"));
        assert_eq!(
            looks_compressed(&[0xFD, b'7', b'z', b'X', b'Z', 0, 0]),
            Some("xz")
        );
        assert_eq!(looks_compressed(b"BZh91AY&SY"), Some("bzip2"));
        // A header then compressed data (like pg_dump's custom format).
        let mut custom = b"PGDMP\x01\x0e\x00".to_vec();
        custom.extend_from_slice(&random(HEAD, 9));
        assert_eq!(looks_compressed(&custom[..HEAD]), Some("incompressible"));
        // Short outputs are not judged by trial.
        assert_eq!(looks_compressed(&random(1000, 2)), None);
    }
}
