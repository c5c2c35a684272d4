//! Property test: random and mutated bytes fed to every object decoder never
//! panic, and every successful decode stays within its input.
//!
//! Seeds are real objects written by `ostree`; mutations flip bits, overwrite the
//! framing offsets at the end, truncate, extend and splice. A fixed PRNG seed keeps
//! runs reproducible (`LIVEFS_FUZZ_SEED` and `LIVEFS_FUZZ_ITERS` change them).

mod common;

use common::*;
use livefs::gvariant::{self, VarArray, U32, U64, VAR1, VAR8};
use livefs::repo::objects::{self, Commit, DirMeta, DirTree};

/// xorshift64*: small, deterministic, good enough to drive mutations.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

fn mutate(rng: &mut Rng, seed: &[u8]) -> Vec<u8> {
    let mut v = seed.to_vec();
    for _ in 0..=rng.below(4) {
        match rng.below(7) {
            0 if !v.is_empty() => {
                let i = rng.below(v.len());
                v[i] ^= 1 << rng.below(8);
            }
            1 if !v.is_empty() => {
                // Framing offsets live at the end: hit them often.
                let i = v.len() - 1 - rng.below(v.len().min(8));
                v[i] = rng.next() as u8;
            }
            2 => v.truncate(rng.below(v.len() + 1)),
            3 => {
                let n = rng.below(16);
                v.extend((0..n).map(|_| rng.next() as u8));
            }
            4 if !v.is_empty() => {
                let i = rng.below(v.len());
                v[i] = [0, 0xff, 0x7f, 0x80, 1][rng.below(5)];
            }
            5 if v.len() > 2 => {
                let a = rng.below(v.len());
                let b = rng.below(v.len());
                let (a, b) = (a.min(b), a.max(b));
                v.drain(a..b);
            }
            _ => {
                let n = rng.below(64);
                v = (0..n).map(|_| rng.next() as u8).collect();
            }
        }
    }
    v
}

/// Every decoder, applied to one input. Results are consumed so nothing is elided.
fn decode_all(data: &[u8]) -> usize {
    let mut n = 0;
    if let Ok(c) = Commit::parse(data) {
        n += c.subject.len() + c.metadata.len() + c.version().map_or(0, str::len);
    }
    if let Ok(t) = DirTree::parse(data.to_vec()) {
        // A seek in ascending order finds what a binary search finds.
        let mut seek = t.seek();
        for f in t.files() {
            n += f.name.len();
            assert!(t.find_file(f.name).is_some());
            assert_eq!(seek.file(f.name), t.find_file(f.name));
            assert_eq!(seek.dir(f.name), None, "a name both a file and a directory");
        }
        let mut seek = t.seek();
        for d in t.dirs() {
            n += d.name.len();
            assert!(t.find_dir(d.name).is_some());
            assert_eq!(seek.dir(d.name), t.find_dir(d.name));
            assert_eq!(seek.file(d.name), None);
        }
    }
    if let Ok(m) = DirMeta::parse(data) {
        n += m.xattrs.len();
    }
    if let Ok((meta, end)) = objects::parse_archive_header(data) {
        assert!(end <= data.len());
        n += meta.xattrs.len();
    }
    if let Ok((_, _, _, x)) = objects::parse_ostreemeta(data) {
        n += x.len();
    }
    if let Ok(x) = gvariant::xattrs(data) {
        n += x.len();
    }
    if let Ok(a) = VarArray::new(data, 8) {
        for el in a.iter().flatten() {
            assert!(el.len() <= data.len());
            n += el.len();
        }
    }
    if let Ok(parts) = gvariant::structure(data, [VAR8, U64, VAR1, U32, VAR1]) {
        n += parts.iter().map(|p| p.len()).sum::<usize>();
    }
    if let Ok((v, ty)) = gvariant::variant(data) {
        n += v.len() + ty.len();
    }
    n
}

fn seeds() -> Vec<Vec<u8>> {
    let dir = scratch();
    let tree = dir.path().join("tree");
    build_tree_a(&tree);
    let mut out = Vec::new();
    for mode in ["archive", "bare-user"] {
        let repo = init_repo(dir.path(), mode);
        commit(&repo, "main", &tree, "fuzz seed");
        for e in walk(&repo.join("objects")) {
            let data = std::fs::read(&e).unwrap();
            if mode == "bare-user" {
                // The metadata xattr is an object format of its own.
                if let Ok(x) = livefs::xattrs::of_path(&e) {
                    out.extend(x.into_iter().filter(|(n, _)| n == b"user.ostreemeta").map(|(_, v)| v));
                }
                if !e.extension().is_some_and(|x| x == "file") {
                    out.push(data);
                }
            } else {
                out.push(data.into_iter().take(4096).collect());
            }
        }
    }
    assert!(out.len() > 50, "too few seed objects: {}", out.len());
    out
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[test]
fn seeds_decode() {
    // The seeds themselves are valid: each decodes with at least one decoder.
    let mut decoded = 0;
    for s in seeds() {
        let ok = Commit::parse(&s).is_ok()
            || DirTree::parse(s.clone()).is_ok()
            || DirMeta::parse(&s).is_ok()
            || objects::parse_archive_header(&s).is_ok()
            || objects::parse_ostreemeta(&s).is_ok();
        decoded += usize::from(ok);
    }
    assert!(decoded > 50);
}

#[test]
fn random_and_mutated_bytes_never_panic() {
    let seed: u64 = std::env::var("LIVEFS_FUZZ_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(0x5eed_1234);
    let iters: usize = std::env::var("LIVEFS_FUZZ_ITERS").ok().and_then(|s| s.parse().ok()).unwrap_or(1_000_000);
    let seeds = seeds();
    let mut rng = Rng(seed | 1);
    let mut checksum = 0usize;
    for i in 0..iters {
        let input = if i % 10 == 0 {
            let n = rng.below(300);
            (0..n).map(|_| rng.next() as u8).collect()
        } else {
            let s = &seeds[rng.below(seeds.len())];
            mutate(&mut rng, s)
        };
        checksum = checksum.wrapping_add(decode_all(&input));
    }
    assert!(checksum > 0);
}
