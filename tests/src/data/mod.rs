//! Deterministic test data and digests: random bytes here, a NYC-taxi-like trip table in
//! [`taxi`].

pub mod taxi;

use rand::{Rng, SeedableRng};

/// `len` pseudo-random bytes from `seed` (incompressible, so stores cannot shrink them).
pub fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut out = vec![0u8; len];
    rng.fill(&mut out[..]);
    out
}

/// SHA-256 of `data`, hex.
pub fn sha256_hex(data: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(data))
}

/// Mebibytes.
pub const MIB: usize = 1024 * 1024;
