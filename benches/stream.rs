//! The data path's throughput: 256 MiB from one process's stdout pipe into
//! another's stdin pipe (`head -c 256M /dev/zero` → us → `cat`, as
//! `zfs send` → us → `zfs recv`), moved by `splice(2)` versus copied through
//! a user-space buffer; and in-process zstd on a compressible stream.
//!
//! Run: `cargo bench --bench stream`. Both ends cost the same in both
//! variants (the children read and write their own pipes), so the
//! difference between the two is what copying through user space costs;
//! `copier_cpu_*` measures that cost directly as the CPU time of the thread
//! that runs the pipeline (spawning and reaping the children included).

#![allow(clippy::unwrap_used, missing_docs)] // bench fixtures; criterion generates undocumented fns

use std::io::Cursor;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use zfsrepl_core::stream::testkit::{ProcessRecv, ProcessSend};
use zfsrepl_core::stream::{
    BufferOptions, CancelToken, CopyMethod, CopyOptions, NoProgress, Pipeline, ZstdEncoder,
};

const STREAM: u64 = 256 << 20;

/// CPU time this thread has run, from the scheduler's own accounting (user
/// and system time, so the kernel's work inside splice counts too).
fn thread_cpu() -> Duration {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").unwrap();
    let ns: u64 = s.split_whitespace().next().unwrap().parse().unwrap();
    Duration::from_nanos(ns)
}

fn run_once(opts: &CopyOptions, method: CopyMethod) {
    let len = STREAM.to_string();
    let send = ProcessSend::spawn(&["head", "-c", &len, "/dev/zero"]).unwrap();
    let recv = ProcessRecv::spawn(&["cat"]).unwrap();
    let out = Pipeline::run(send, recv, opts, &NoProgress, &CancelToken::new());
    let stats = out.into_result().unwrap();
    assert_eq!((stats.bytes, stats.method), (STREAM, method));
}

fn variants() -> [(&'static str, CopyOptions, CopyMethod); 2] {
    [
        ("splice", CopyOptions::default(), CopyMethod::Splice),
        (
            "read_write",
            CopyOptions {
                splice: false,
                ..CopyOptions::default()
            },
            CopyMethod::Buffered,
        ),
    ]
}

/// Wall time: on 2 cores shared by three busy processes the ends (`head`,
/// `cat`) bound the rate, so the two variants come out close.
fn pipe_to_pipe(c: &mut Criterion) {
    let mut g = c.benchmark_group("pipe_to_pipe_256MiB");
    g.throughput(Throughput::Bytes(STREAM))
        .sample_size(10)
        .warm_up_time(Duration::from_secs(2))
        .measurement_time(Duration::from_secs(15));
    for (name, opts, method) in variants() {
        g.bench_function(name, |b| b.iter(|| run_once(&opts, method)));
    }
    g.finish();
}

/// The copier's own CPU time per stream (throughput = bytes per CPU-second
/// spent by the thread running the pipeline): what splice saves, and what
/// bounds the rate once the ends are faster than the copy.
fn copier_cpu(c: &mut Criterion) {
    let mut g = c.benchmark_group("copier_cpu_256MiB");
    g.throughput(Throughput::Bytes(STREAM))
        .sample_size(10)
        .warm_up_time(Duration::from_secs(2))
        .measurement_time(Duration::from_secs(15));
    for (name, opts, method) in variants() {
        g.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let mut cpu = Duration::ZERO;
                for _ in 0..iters {
                    let before = thread_cpu();
                    run_once(&opts, method);
                    cpu += thread_cpu() - before;
                }
                cpu
            });
        });
    }
    g.finish();
}

/// Compressible input: words from a small vocabulary, like metadata-heavy
/// send streams.
fn text(len: usize) -> Vec<u8> {
    let words = [
        "zfs ",
        "send ",
        "receive ",
        "snapshot ",
        "tank/data@",
        "2026 ",
    ];
    let mut v = Vec::with_capacity(len + 16);
    let mut i: usize = 7;
    while v.len() < len {
        i = i.wrapping_mul(2_654_435_761).wrapping_add(11);
        v.extend_from_slice(words[(i >> 7) % words.len()].as_bytes());
    }
    v.truncate(len);
    v
}

fn zstd(c: &mut Criterion) {
    let data = text(64 << 20);
    let mut g = c.benchmark_group("zstd_compress_64MiB");
    g.throughput(Throughput::Bytes(data.len() as u64))
        .sample_size(10)
        .measurement_time(Duration::from_secs(10));
    for workers in [0, 2] {
        let enc = ZstdEncoder { level: 3, workers };
        g.bench_with_input(
            BenchmarkId::new("level3_workers", workers),
            &data,
            |b, d| {
                b.iter(|| {
                    enc.copy(
                        Cursor::new(d.clone()),
                        std::io::sink(),
                        &BufferOptions::default(),
                        &NoProgress,
                        &CancelToken::new(),
                    )
                    .unwrap()
                });
            },
        );
    }
    g.finish();
}

criterion_group!(benches, pipe_to_pipe, copier_cpu, zstd);
criterion_main!(benches);
