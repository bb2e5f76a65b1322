//! Every fuzz target in the test suite: each input of its checked-in corpus (which holds every
//! crash found so far), then a fixed number of mutations of them. The coverage-guided search
//! itself is scripts/fuzz.sh; this keeps what it found passing, and runs every target in CI.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::PathBuf;

/// Mutations per target: seconds of work in a test build.
const MUTATIONS: usize = 3_000;

fn corpus(target: &str) -> Vec<Vec<u8>> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus").join(target);
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.expect("a corpus entry").path())
        .collect();
    paths.sort();
    paths.iter().map(|path| std::fs::read(path).expect("a corpus file")).collect()
}

/// A small deterministic generator (xorshift64*): the same mutations on every run.
struct Random(u64);

impl Random {
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

/// Bytes that matter to the formats the targets read.
const TOKENS: &[&[u8]] = &[
    b"{",
    b"}",
    b"[",
    b"]",
    b"\"",
    b":",
    b",",
    b"null",
    b"-9223372036854775808",
    b"1e308",
    b"\\u0000",
    b"{{",
    b"}}",
    b"secrets",
    b"..",
    b"/",
    b"%2e",
    b"\n- ",
    b": ",
    b"&a",
    b"*a",
    b"$all",
    b"$not",
    b"\t",
    b"=",
];

fn mutate(random: &mut Random, input: &mut Vec<u8>) {
    for _ in 0..=random.below(4) {
        let at = random.below(input.len() + 1);
        match random.below(5) {
            0 if !input.is_empty() => {
                let i = random.below(input.len());
                input[i] ^= 1 << random.below(8);
            }
            1 if !input.is_empty() => {
                let end = (at + 1 + random.below(8)).min(input.len());
                input.drain(at.min(end)..end);
            }
            2 => {
                let token = TOKENS[random.below(TOKENS.len())];
                input.splice(at..at, token.iter().copied());
            }
            3 if !input.is_empty() => {
                let start = random.below(input.len());
                let end = (start + 1 + random.below(16)).min(input.len());
                let piece = input[start..end].to_vec();
                input.splice(at..at, piece);
            }
            _ => input.insert(at, random.next() as u8),
        }
    }
}

fn run(target: &str, check: fn(&[u8]), input: &[u8]) {
    if catch_unwind(AssertUnwindSafe(|| check(input))).is_err() {
        panic!("the {target} target fails on this input (as escaped bytes): {:?}", input.escape_ascii().to_string());
    }
}

#[test]
fn every_target_passes_its_corpus_and_mutations_of_it() {
    for (target, check) in portolan_fuzz::TARGETS {
        let corpus = corpus(target);
        assert!(!corpus.is_empty(), "fuzz/corpus/{target} has no seeds");
        for input in &corpus {
            run(target, check, input);
        }
        let mut random = Random(0x5eed_2026_1208 ^ target.len() as u64);
        for _ in 0..MUTATIONS {
            let mut input = corpus[random.below(corpus.len())].clone();
            mutate(&mut random, &mut input);
            run(target, check, &input);
        }
    }
}
