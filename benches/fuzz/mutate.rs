//! Seeded randomness and the byte-level mutations every fuzz target shares.

use rand::{Rng as _, RngCore as _, SeedableRng as _};
use rand_chacha::ChaCha8Rng;

/// A seeded generator with the few draws the grammars need.
pub struct Rng(ChaCha8Rng);

impl Rng {
    /// The generator of one input: a pure function of the run's seed and the input's index, so
    /// any input can be regenerated alone.
    pub fn for_input(seed: u64, index: u64) -> Rng {
        Rng::from_seed(input_seed(seed, index))
    }

    /// A generator from a per-input seed.
    pub fn from_seed(seed: u64) -> Rng {
        Rng(ChaCha8Rng::seed_from_u64(seed))
    }

    /// Uniform in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 { 0 } else { self.0.random_range(0..n) }
    }

    /// True one time in `n`.
    pub fn one_in(&mut self, n: usize) -> bool {
        self.below(n) == 0
    }

    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: usize, hi: usize) -> usize {
        self.0.random_range(lo..=hi)
    }

    /// A random 64-bit word.
    pub fn word(&mut self) -> u64 {
        self.0.next_u64()
    }

    /// One element of a non-empty slice.
    pub fn pick<'a, T: ?Sized>(&mut self, items: &[&'a T]) -> &'a T {
        items[self.below(items.len())]
    }

    /// `n` random bytes.
    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        let mut out = vec![0; n];
        self.0.fill_bytes(&mut out);
        out
    }

    /// Random bytes of a [`Rng::size`] length.
    pub fn some_bytes(&mut self, max: usize) -> Vec<u8> {
        let n = self.size(max);
        self.bytes(n)
    }

    /// A length, mostly short, sometimes long, rarely huge (up to `max`).
    pub fn size(&mut self, max: usize) -> usize {
        match self.below(20) {
            0 => self.range(0, max),
            1..=3 => self.range(0, 256.min(max)),
            _ => self.range(0, 24.min(max)),
        }
    }
}

/// SplitMix64 of the run seed and the index: the seed of input `index`.
pub fn input_seed(seed: u64, index: u64) -> u64 {
    let mut z = seed ^ index.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Byte strings that break parsers: controls, line ends, bad UTF-8, wide characters, quotes.
pub const NASTY: &[&str] = &[
    "\0",
    "\r",
    "\n",
    "\r\n",
    "\n\r",
    "\t",
    "\u{7f}",
    "\u{ff}",
    "é",
    "\u{202e}",
    "\u{feff}",
    "💥",
    "\u{10ffff}",
    "%",
    "%00",
    "%zz",
    "%C3%28",
    "+",
    "&",
    "=",
    "\"",
    "'",
    "\\",
    "\\u0000",
    "{",
    "}",
    "[",
    "]",
    "<",
    ">",
    ":",
    ";",
    ",",
    ".",
    "#",
    "\u{1}",
    " ",
];

/// Numbers at the edges of every integer and float type.
pub const HUGE_NUMBERS: &[&str] = &[
    "0",
    "-0",
    "-1",
    "255",
    "256",
    "65536",
    "2147483647",
    "2147483648",
    "-2147483649",
    "4294967296",
    "9223372036854775807",
    "9223372036854775808",
    "-9223372036854775808",
    "-9223372036854775809",
    "18446744073709551615",
    "18446744073709551616",
    "340282366920938463463374607431768211456",
    "99999999999999999999999999999999999999999999999999",
    "1e308",
    "1e309",
    "-1e309",
    "4.9e-324",
    "0.1",
    "1.5",
    "NaN",
    "inf",
    "-inf",
    "0x10",
    "1_000",
    "+1",
    "00000000000000000000001",
];

/// Applies one to eight random mutations to `input`; `dictionary` holds tokens and other
/// seeds to splice in. Output stays under `max` bytes.
pub fn mutate(r: &mut Rng, input: &[u8], dictionary: &[&[u8]], max: usize) -> Vec<u8> {
    let mut out = input.to_vec();
    let rounds = 1 + r.below(8);
    for _ in 0..rounds {
        mutate_once(r, &mut out, dictionary);
        if out.len() > max {
            out.truncate(max);
        }
    }
    out
}

fn mutate_once(r: &mut Rng, out: &mut Vec<u8>, dictionary: &[&[u8]]) {
    let len = out.len();
    let at = r.below(len + 1);
    match r.below(14) {
        0 if len > 0 => {
            let i = r.below(len);
            out[i] ^= 1 << r.below(8);
        }
        1 if len > 0 => {
            let i = r.below(len);
            out[i] = r.bytes(1)[0];
        }
        2 => {
            let n = 1 + r.below(16);
            splice(out, at, at, &r.bytes(n));
        }
        3 => splice(out, at, at, r.pick(NASTY).as_bytes()),
        4 if len > 0 => {
            let end = (at + 1 + r.size(len)).min(len);
            out.drain(at.min(end)..end);
        }
        5 if len > 0 => {
            let end = (at + 1 + r.size(len)).min(len);
            let piece = out[at.min(end)..end].to_vec();
            splice(out, at, at, &piece);
        }
        6 => out.truncate(at),
        7 if !dictionary.is_empty() => {
            let piece = dictionary[r.below(dictionary.len())];
            let (from, to) = (r.below(piece.len() + 1), r.below(piece.len() + 1));
            let (from, to) = (from.min(to), from.max(to));
            splice(out, at, at, &piece[from..to]);
        }
        8 if !dictionary.is_empty() => {
            let piece = dictionary[r.below(dictionary.len())];
            splice(out, at, at, piece);
        }
        9 => splice(out, at, at, r.pick(HUGE_NUMBERS).as_bytes()),
        10 => long_line(r, out, at),
        11 => line_ends(r, out),
        12 if len > 0 => {
            let end = (at + r.size(len)).min(len);
            let replacement = r.pick(NASTY).as_bytes().to_vec();
            splice(out, at.min(end), end, &replacement);
        }
        _ => {
            let n = r.below(4);
            splice(out, at, at, &b"\r\n\r\n\r\n"[..n * 2]);
        }
    }
}

fn splice(out: &mut Vec<u8>, from: usize, to: usize, with: &[u8]) {
    out.splice(from..to, with.iter().copied());
}

/// Repeats a slice of the input (or one byte) many times: long lines, huge values.
fn long_line(r: &mut Rng, out: &mut Vec<u8>, at: usize) {
    let len = out.len();
    let end = (at + 1 + r.below(8)).min(len);
    let piece = if at < end {
        out[at..end].to_vec()
    } else {
        b"A".to_vec()
    };
    let times = match r.below(4) {
        0 => 5000,
        1 => 1000,
        _ => 20 + r.below(300),
    };
    let repeated = piece.repeat(times);
    splice(out, at, at, &repeated);
}

/// Rewrites every line end to one of the variants (or strips them).
fn line_ends(r: &mut Rng, out: &mut Vec<u8>) {
    let to: &[u8] = r.pick(&[&b"\n"[..], b"\r", b"\r\n", b"\n\r", b"", b"\r\r\n"]);
    let mut result = Vec::with_capacity(out.len());
    let mut i = 0;
    while i < out.len() {
        if out[i] == b'\r' && out.get(i + 1) == Some(&b'\n') {
            result.extend_from_slice(to);
            i += 2;
        } else if out[i] == b'\n' {
            result.extend_from_slice(to);
            i += 1;
        } else {
            result.push(out[i]);
            i += 1;
        }
    }
    *out = result;
}

/// Random bytes, sometimes biased toward printable ASCII and line ends.
pub fn random_bytes(r: &mut Rng, max: usize) -> Vec<u8> {
    let n = r.size(max);
    let mut out = r.bytes(n);
    if r.one_in(2) {
        for b in &mut out {
            *b = match *b % 16 {
                0 => b'\n',
                1 => b'\r',
                2 => b' ',
                _ => 0x20 + (*b % 95),
            };
        }
    }
    out
}

/// Text with every control character, quote and non-ASCII byte escaped (for reports).
pub fn escape(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                '"' => out.push_str("\\\""),
                ' '..='~' => out.push(c),
                _ => out.extend(c.escape_default()),
            }
        }
        for b in chunk.invalid() {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    out
}
