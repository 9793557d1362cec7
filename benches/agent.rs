//! The agent protocol's own cost: a 32 MiB send stream of the in-memory
//! model received by the model, directly (`Pipeline` between two models)
//! and through an agent on a Unix socket pair (client framing and worker
//! thread, server unframing), plain and with zstd level 1. The model's
//! stream encoding and decoding cost the same in all three, so the
//! difference is what the agent adds.
//!
//! Run: `cargo bench --bench agent`.

#![allow(clippy::unwrap_used, missing_docs)] // bench fixtures; criterion generates undocumented fns

use std::os::unix::net::UnixStream;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use zfsrepl_core::agent::{AgentClient, AgentConfig, Server};
use zfsrepl_core::model::FakeZfs;
use zfsrepl_core::stream::{CancelToken, CopyOptions, NoProgress, Pipeline};
use zfsrepl_core::zfs::{RecvSpec, SendFlags, SendSource, SendSpec, ZfsStream, ZfsWrite};
use zfsrepl_core::{DatasetName, SnapshotName};

const STREAM: u64 = 32 << 20;

fn source() -> FakeZfs {
    let z = FakeZfs::from_fixture(&format!(
        "+ tank\n+ tank/d\n~ tank/d bytes={STREAM}\n+ tank/d@s\n"
    ));
    z.set_stream_payload_limit(STREAM);
    z
}

fn spec() -> SendSpec {
    SendSpec {
        source: SendSource::Full {
            snapshot: SnapshotName::parse("tank/d@s").unwrap(),
        },
        flags: SendFlags::default(),
    }
}

/// One transfer into `back/N` of `dst`.
fn transfer<D: ZfsStream + ZfsWrite>(src: &FakeZfs, dst: &D, n: usize) {
    let send = src.send(&spec()).unwrap();
    let recv = dst
        .receive(&RecvSpec {
            target: Some(DatasetName::parse(&format!("back/n{n}")).unwrap()),
            ..RecvSpec::default()
        })
        .unwrap();
    let out = Pipeline::run(
        send,
        recv,
        &CopyOptions::default(),
        &NoProgress,
        &CancelToken::new(),
    );
    assert!(out.stats.bytes >= STREAM, "{:?}", out.cause);
    out.into_result().unwrap();
}

fn bench(c: &mut Criterion) {
    let src = source();
    let mut g = c.benchmark_group("model_stream_32MiB");
    g.throughput(Throughput::Bytes(STREAM))
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(10));
    let mut n = 0;
    g.bench_function("direct", |b| {
        let dst = FakeZfs::from_fixture("+ back\n");
        b.iter(|| {
            n += 1;
            transfer(&src, &dst, n);
        });
    });
    for (name, level) in [("agent_plain", None), ("agent_zstd1", Some(1))] {
        let config = AgentConfig {
            write_roots: vec![DatasetName::parse("back").unwrap()],
            ..AgentConfig::default()
        };
        let server = Server::new(config, FakeZfs::from_fixture("+ back\n"));
        let (a, b) = UnixStream::pair().unwrap();
        std::thread::scope(|sc| {
            sc.spawn(|| server.serve(a));
            let mut client = AgentClient::connect(b, None, None).unwrap();
            client.set_compression(level);
            g.bench_function(name, |bch| {
                bch.iter(|| {
                    n += 1;
                    transfer(&src, &client, n);
                });
            });
            drop(client);
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
