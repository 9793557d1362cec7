//! The fuzz targets' entry points (`zfsrepl_core::fuzzing`) on stable, in
//! every test run: each target's seeds (`fuzz/seeds/<target>`), then a
//! deterministic stream of mutations of them (bit flips, byte inserts and
//! deletions, truncations, splices of two seeds, repeated chunks).
//!
//! This is not a replacement for coverage-guided fuzzing (`scripts/fuzz.sh`,
//! nightly libFuzzer); it guarantees that no input the fuzzer ever found
//! (saved seeds) and none of a few thousand cheap mutations panics, on every
//! CI run. `ZFSREPL_FUZZ_SMOKE_ITERS` sets the mutations per target.

use std::path::Path;

use zfsrepl_core::fuzzing::TARGETS;

/// A small, fixed xorshift generator: the same inputs on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
}

/// Bytes that tend to matter to the parsers under test.
const INTERESTING: &[u8] = b"\0\t\n\r \"'#=[]{}.,:;@-_/\\$`|0123456789abcdefxyz\xff\xc3";

fn mutate(rng: &mut Rng, seeds: &[Vec<u8>]) -> Vec<u8> {
    let mut v = seeds[rng.below(seeds.len())].clone();
    for _ in 0..=rng.below(4) {
        match rng.below(7) {
            0 if !v.is_empty() => {
                let i = rng.below(v.len());
                v[i] ^= 1 << rng.below(8);
            }
            1 => {
                let i = rng.below(v.len() + 1);
                v.insert(i, INTERESTING[rng.below(INTERESTING.len())]);
            }
            2 if !v.is_empty() => {
                let i = rng.below(v.len());
                let n = rng.below(v.len() - i).min(64) + 1;
                v.drain(i..i + n);
            }
            3 => v.truncate(rng.below(v.len() + 1)),
            4 => {
                let other = &seeds[rng.below(seeds.len())];
                let cut = rng.below(v.len() + 1);
                let from = rng.below(other.len() + 1);
                v.truncate(cut);
                v.extend_from_slice(&other[from..]);
            }
            5 if !v.is_empty() => {
                let i = rng.below(v.len());
                let n = (rng.below(v.len() - i) + 1).min(32);
                let chunk = v[i..i + n].to_vec();
                for _ in 0..=rng.below(8) {
                    v.splice(i..i, chunk.iter().copied());
                }
            }
            _ => {
                let i = rng.below(v.len() + 1);
                v.insert(i, rng.next() as u8);
            }
        }
    }
    v
}

fn seeds(target: &str) -> Vec<Vec<u8>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/seeds")
        .join(target);
    let mut out: Vec<Vec<u8>> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| std::fs::read(e.expect("seed entry").path()).expect("seed file"))
        .collect();
    out.push(Vec::new());
    out
}

#[test]
fn every_target_has_seeds() {
    for (name, _) in TARGETS {
        assert!(seeds(name).len() > 1, "fuzz/seeds/{name} is empty");
    }
}

#[test]
fn seeds_and_mutations_never_panic() {
    let iters: usize = std::env::var("ZFSREPL_FUZZ_SMOKE_ITERS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3000);
    for (name, run) in TARGETS {
        let seeds = seeds(name);
        for s in &seeds {
            run(s);
        }
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ name.len() as u64);
        for _ in 0..iters {
            run(&mutate(&mut rng, &seeds));
        }
        eprintln!("{name}: {} seeds and {iters} mutations", seeds.len());
    }
}
