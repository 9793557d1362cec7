//! Network leg throughput on loopback: TLS-PSK (TLS 1.3 AES-128-GCM, TLS 1.2
//! PSK-AES256-GCM, TLS 1.3 ChaCha20) versus plain TCP, 64 MiB per
//! iteration over one connection, both ends in this process (a sender
//! thread and a receiver thread that acknowledges each 64 MiB).
//!
//! Run: `cargo bench --bench tls`. Besides criterion's throughput, each
//! variant prints its CPU seconds per GiB moved: user + system time of the
//! whole process (both ends, `getrusage(RUSAGE_SELF)`) over the bytes, so
//! it is the cost of sending *and* receiving one GiB.

#![allow(clippy::unwrap_used, missing_docs)] // bench fixtures; criterion generates undocumented fns

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use zfsrepl_core::transport::NetStream;
use zfsrepl_core::transport::tls::{
    PskSecrets, TlsAcceptor, TlsConnector, TlsOptions, TlsVersions,
};

const PER_ITER: u64 = 64 << 20;
const CHUNK: usize = 1 << 20;

/// User + system CPU time of the whole process.
#[allow(unsafe_code)]
fn process_cpu() -> Duration {
    let mut ru = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage fills the struct we own; RUSAGE_SELF is valid.
    let rc = unsafe { libc::getrusage(libc::RUSAGE_SELF, ru.as_mut_ptr()) };
    assert_eq!(rc, 0);
    // SAFETY: initialised by getrusage (and zeroed before).
    let ru = unsafe { ru.assume_init() };
    let tv = |t: libc::timeval| {
        Duration::from_secs(u64::try_from(t.tv_sec).unwrap())
            + Duration::from_micros(u64::try_from(t.tv_usec).unwrap())
    };
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

#[derive(Clone, Copy)]
enum Variant {
    Plain,
    Tls(TlsVersions, &'static str),
}

/// A connected pair: the client end, and a receiver thread that reads
/// 64 MiB, acknowledges with one byte, and repeats until EOF.
fn pair(v: Variant) -> NetStream {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap().to_string();
    let secrets = PskSecrets::parse(
        b"bench:00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff\n",
    )
    .unwrap();
    let opts = |v: TlsVersions, suites: &str| {
        let mut o = TlsOptions::default().with_versions(v);
        o.tls13_suites = suites.to_owned();
        o
    };
    let acceptor = match v {
        Variant::Plain => None,
        Variant::Tls(ver, suites) => {
            Some(TlsAcceptor::new(Arc::new(secrets.clone()), &opts(ver, suites)).unwrap())
        }
    };
    std::thread::spawn(move || {
        let (tcp, _) = l.accept().unwrap();
        let mut s = match acceptor {
            None => NetStream::Plain(tcp),
            Some(a) => NetStream::Tls(Box::new(a.accept(tcp).unwrap())),
        };
        let mut buf = vec![0u8; CHUNK];
        let mut got = 0u64;
        loop {
            match s.read(&mut buf) {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    got += n as u64;
                    if got >= PER_ITER {
                        got -= PER_ITER;
                        s.write_all(&[1]).unwrap();
                    }
                }
            }
        }
    });
    match v {
        Variant::Plain => {
            let t = TcpStream::connect(&addr).unwrap();
            t.set_nodelay(true).unwrap();
            NetStream::Plain(t)
        }
        Variant::Tls(ver, suites) => {
            let c = TlsConnector::new(&secrets, None, &opts(ver, suites)).unwrap();
            NetStream::Tls(Box::new(c.connect(&addr).unwrap()))
        }
    }
}

fn network(c: &mut Criterion) {
    let variants = [
        ("plain_tcp", Variant::Plain),
        (
            "tls13_aes128gcm",
            Variant::Tls(TlsVersions::Tls13, "TLS_AES_128_GCM_SHA256"),
        ),
        (
            "tls12_psk_aes256gcm",
            Variant::Tls(TlsVersions::Tls12, "TLS_AES_128_GCM_SHA256"),
        ),
        (
            "tls13_chacha20",
            Variant::Tls(TlsVersions::Tls13, "TLS_CHACHA20_POLY1305_SHA256"),
        ),
    ];
    let mut g = c.benchmark_group("loopback_64MiB");
    g.throughput(Throughput::Bytes(PER_ITER));
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(8));
    let mut summary = Vec::new();
    for (name, v) in variants {
        let mut conn = pair(v);
        let label = conn.protocol();
        let data = vec![0x5au8; CHUNK];
        let (mut cpu, mut bytes, mut wall) = (Duration::ZERO, 0u64, Duration::ZERO);
        g.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let cpu0 = process_cpu();
                let t0 = Instant::now();
                for _ in 0..iters {
                    let mut left = PER_ITER;
                    while left > 0 {
                        let n = usize::try_from(left).unwrap_or(CHUNK).min(CHUNK);
                        conn.write_all(&data[..n]).unwrap();
                        left -= n as u64;
                    }
                    let mut ack = [0u8; 1];
                    conn.read_exact(&mut ack).unwrap();
                }
                let dt = t0.elapsed();
                cpu += process_cpu() - cpu0;
                wall += dt;
                bytes += iters * PER_ITER;
                dt
            });
        });
        let gib = bytes as f64 / f64::from(1u32 << 30);
        summary.push(format!(
            "{name:>22} ({label}): {:7.0} MiB/s, {:5.2} CPU s/GiB (both ends)",
            bytes as f64 / 1_048_576.0 / wall.as_secs_f64(),
            cpu.as_secs_f64() / gib
        ));
        let _ = conn.shutdown();
    }
    g.finish();
    for s in summary {
        eprintln!("{s}");
    }
}

criterion_group!(benches, network);
criterion_main!(benches);
