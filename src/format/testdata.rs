//! Test data shared by the unit tests of every layer.

/// `n` bytes of xorshift64 output from `state` (non-zero): incompressible,
/// different at every offset, and the same on every run.
pub fn xorshift(n: usize, mut state: u64) -> Vec<u8> {
    (0..n)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}
