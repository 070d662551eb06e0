//! The seed: the only source of randomness.
//!
//! A run has one [`Seed`]. Each consumer (trace ids, jitter, fault probabilities) draws from its
//! own named stream derived from it, so adding a new consumer never shifts the numbers another
//! one sees, and the same seed always gives the same bytes.

use std::fmt;

use rand::{Rng, RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use sha2::{Digest, Sha256};

/// The seed of a run, as written in scenario files and printed by the CLI.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Default,
    serde::Serialize,
    serde::Deserialize,
)]
#[serde(transparent)]
pub struct Seed(pub u64);

impl Seed {
    /// The independent random stream called `name`.
    pub fn stream(self, name: &str) -> SeedRng {
        SeedRng(ChaCha8Rng::from_seed(self.digest_for(name, &[])))
    }

    /// 32 bytes keyed by `name` and `parts`, the seed of [`Seed::stream`], and on their own
    /// a request's two ids: keyed by what the request is rather than by when it was served,
    /// so two requests served in either order get the same ids.
    pub fn digest_for(self, name: &str, parts: &[&[u8]]) -> [u8; 32] {
        let mut hasher = Sha256::new();
        hasher.update(self.0.to_le_bytes());
        hasher.update(name.as_bytes());
        for part in parts {
            // Length-prefixed, so ("ab", "c") and ("a", "bc") differ.
            hasher.update((part.len() as u64).to_le_bytes());
            hasher.update(part);
        }
        hasher.finalize().into()
    }
}

impl fmt::Display for Seed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A deterministic random stream derived from a [`Seed`].
#[derive(Debug, Clone)]
pub struct SeedRng(ChaCha8Rng);

impl SeedRng {
    /// A version-4-shaped GUID, as Entra and Graph use for trace and request ids.
    pub fn guid(&mut self) -> String {
        let mut bytes = [0u8; 16];
        self.0.fill_bytes(&mut bytes);
        uuid_v4(bytes)
    }

    /// `len` upper-case hexadecimal digits, as in Exchange's banner and reply trailers.
    pub fn hex_upper(&mut self, len: usize) -> String {
        (0..len)
            .map(|_| char::from(b"0123456789ABCDEF"[self.0.random_range(0..16)]))
            .collect()
    }

    /// `len` characters from `alphabet`.
    pub fn string_from(&mut self, alphabet: &[u8], len: usize) -> String {
        (0..len)
            .map(|_| char::from(alphabet[self.0.random_range(0..alphabet.len())]))
            .collect()
    }

    /// A new independent stream drawn from this one: each use gets its own sequence, where a
    /// clone would repeat this one's.
    pub fn fork(&mut self) -> SeedRng {
        SeedRng(ChaCha8Rng::from_seed(self.bytes()))
    }

    /// Raw random bytes.
    pub fn bytes<const N: usize>(&mut self) -> [u8; N] {
        let mut out = [0u8; N];
        self.0.fill_bytes(&mut out);
        out
    }

    /// A uniform float in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        self.0.random::<f64>()
    }

    /// True with probability `p` (clamped to `[0, 1]`).
    pub fn chance(&mut self, p: f64) -> bool {
        self.unit() < p.clamp(0.0, 1.0)
    }
}

/// Formats 16 random bytes as a lower-case version-4 GUID.
/// A version-4-shaped GUID made of `bytes`.
pub fn uuid_v4(mut bytes: [u8; 16]) -> String {
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let mut guid = String::with_capacity(36);
    for (i, group) in [0..4, 4..6, 6..8, 8..10, 10..16].into_iter().enumerate() {
        if i > 0 {
            guid.push('-');
        }
        push_hex(&mut guid, &bytes[group]);
    }
    guid
}

/// Appends `bytes` as lower-case hexadecimal (GUIDs and fingerprints are made often enough
/// that a `format!` per byte shows in a replay's profile).
pub fn push_hex(out: &mut String, bytes: &[u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_and_stream_give_same_numbers() {
        let a = Seed(42).stream("entra").guid();
        let b = Seed(42).stream("entra").guid();
        assert_eq!(a, b);
        assert_ne!(a, Seed(42).stream("graph").guid());
        assert_ne!(a, Seed(43).stream("entra").guid());
    }

    #[test]
    fn guid_has_version_and_variant_bits() {
        let guid = Seed(7).stream("x").guid();
        assert_eq!(guid.len(), 36);
        assert_eq!(&guid[14..15], "4");
        assert!(matches!(&guid[19..20], "8" | "9" | "a" | "b"));
    }
}
