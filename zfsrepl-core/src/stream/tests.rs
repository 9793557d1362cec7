//! Tests of the data path on real pipes between real processes and on
//! in-memory streams. Timing assertions are loose lower or upper bounds;
//! precise figures belong in `benches/stream.rs`.

use std::io::{Cursor, Read};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::testkit::{MemRecv, MemSend, ProcessRecv, ProcessSend};
use super::*;
use crate::zfs::{RecvSink, SendStream, ZfsError, ZfsErrorKind};

/// Deterministic incompressible bytes (xorshift64).
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut v = Vec::with_capacity(len + 8);
    while v.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.extend_from_slice(&x.to_le_bytes());
    }
    v.truncate(len);
    v
}

/// Compressible bytes: words drawn from a small vocabulary.
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

fn cancel_after(token: &CancelToken, d: Duration) -> std::thread::JoinHandle<()> {
    let t = token.clone();
    std::thread::spawn(move || {
        std::thread::sleep(d);
        t.cancel();
    })
}

fn zfs_error(op: &str, kind: ZfsErrorKind) -> ZfsError {
    ZfsError::new(op, kind, "test")
}

#[test]
fn splice_between_real_pipes_is_byte_exact() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in");
    let output = dir.path().join("out");
    let data = noise(24 << 20, 42);
    std::fs::write(&input, &data).unwrap();

    let send = ProcessSend::spawn(&["cat", input.to_str().unwrap()]).unwrap();
    let recv = ProcessRecv::spawn(&["sh", "-c", "cat > \"$0\"", output.to_str().unwrap()]).unwrap();
    let updates = Mutex::new(Vec::new());
    let progress = |b: u64, e: Duration| updates.lock().unwrap().push((b, e));
    let outcome = Pipeline::run(
        send,
        recv,
        &CopyOptions::default(),
        &progress,
        &CancelToken::new(),
    );
    assert!(outcome.is_ok(), "{outcome:?}");
    assert_eq!(outcome.send, SideOutcome::Completed);
    assert_eq!(outcome.recv, SideOutcome::Completed);
    assert_eq!(outcome.stats.method, CopyMethod::Splice);
    assert_eq!(outcome.stats.bytes, data.len() as u64);
    assert!(std::fs::read(&output).unwrap() == data, "content differs");

    let updates = updates.into_inner().unwrap();
    assert_eq!(updates.last().unwrap().0, data.len() as u64);
    assert!(updates.windows(2).all(|w| w[0].0 <= w[1].0));
}

#[test]
fn copy_reports_splice_and_counts_bytes() {
    let mut send = ProcessSend::spawn(&["head", "-c", "10000019", "/dev/zero"]).unwrap();
    let mut recv = ProcessRecv::spawn(&["cat"]).unwrap();
    let stats = copy(
        &mut send,
        &mut recv,
        &CopyOptions::default(),
        &NoProgress,
        &CancelToken::new(),
    )
    .unwrap();
    assert_eq!(stats.bytes, 10_000_019);
    assert_eq!(stats.method, CopyMethod::Splice);
    send.finish().unwrap();
    recv.finish().unwrap();
}

#[test]
fn user_space_between_real_pipes_is_byte_exact() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in");
    let output = dir.path().join("out");
    let data = noise((5 << 20) + 123, 7);
    std::fs::write(&input, &data).unwrap();
    let send = ProcessSend::spawn(&["cat", input.to_str().unwrap()]).unwrap();
    let recv = ProcessRecv::spawn(&["sh", "-c", "cat > \"$0\"", output.to_str().unwrap()]).unwrap();
    let opts = CopyOptions {
        splice: false,
        chunk_size: 100_000,
        ..CopyOptions::default()
    };
    let outcome = Pipeline::run(send, recv, &opts, &NoProgress, &CancelToken::new());
    let stats = outcome.into_result().unwrap();
    assert_eq!(stats.method, CopyMethod::Buffered);
    assert_eq!(stats.bytes, data.len() as u64);
    assert!(std::fs::read(&output).unwrap() == data, "content differs");
}

#[test]
fn memory_streams_take_the_buffered_path() {
    let data = noise((3 << 20) + 17, 3);
    let recv = MemRecv::new();
    let got = recv.received();
    let outcome = Pipeline::run(
        MemSend::new(data.clone()),
        recv,
        &CopyOptions::default(),
        &NoProgress,
        &CancelToken::new(),
    );
    let stats = outcome.into_result().unwrap();
    assert_eq!(stats.method, CopyMethod::Buffered);
    assert_eq!(stats.bytes, data.len() as u64);
    assert!(*got.lock().unwrap() == data);
}

#[test]
fn rate_limit_holds_on_the_splice_path() {
    // 8 MiB at 4 MiB/s: 2 s when exact; the bound is loose on purpose.
    let send = ProcessSend::spawn(&["head", "-c", "8388608", "/dev/zero"]).unwrap();
    let recv = ProcessRecv::spawn(&["cat"]).unwrap();
    let opts = CopyOptions {
        bwlimit: Some(4 << 20),
        ..CopyOptions::default()
    };
    let start = Instant::now();
    let outcome = Pipeline::run(send, recv, &opts, &NoProgress, &CancelToken::new());
    let stats = outcome.into_result().unwrap();
    assert_eq!(stats.bytes, 8 << 20);
    assert_eq!(stats.method, CopyMethod::Splice);
    assert!(
        start.elapsed() >= Duration::from_millis(1500),
        "{:?}",
        start.elapsed()
    );
}

#[test]
fn rate_limit_holds_on_the_buffered_path() {
    // 1 MiB at 1 MiB/s.
    let start = Instant::now();
    let outcome = Pipeline::run(
        MemSend::new(vec![0; 1 << 20]),
        MemRecv::new(),
        &CopyOptions {
            bwlimit: Some(1 << 20),
            ..CopyOptions::default()
        },
        &NoProgress,
        &CancelToken::new(),
    );
    assert!(outcome.is_ok());
    assert!(
        start.elapsed() >= Duration::from_millis(750),
        "{:?}",
        start.elapsed()
    );
}

fn assert_cancelled_quickly(send: ProcessSend, recv: ProcessRecv, opts: &CopyOptions) {
    let token = CancelToken::new();
    let start = Instant::now();
    let h = cancel_after(&token, Duration::from_millis(200));
    let outcome = Pipeline::run(send, recv, opts, &NoProgress, &token);
    h.join().unwrap();
    assert!(
        matches!(outcome.cause, Some(PipelineError::Cancelled)),
        "{outcome:?}"
    );
    assert_eq!(outcome.send, SideOutcome::Aborted);
    assert_eq!(outcome.recv, SideOutcome::Aborted);
    // 200 ms until the cancel; then a process that ignores its closed
    // pipes (`sleep`) has its grace before the kill, the others end at
    // once; then well under a second to reap.
    assert!(
        start.elapsed() < Duration::from_millis(1200) + crate::zfs::runner::STOP_GRACE,
        "{:?}",
        start.elapsed()
    );
}

#[test]
fn cancel_stops_a_stalled_sender() {
    let send = ProcessSend::spawn(&["sleep", "30"]).unwrap();
    let recv = ProcessRecv::spawn(&["cat"]).unwrap();
    assert_cancelled_quickly(send, recv, &CopyOptions::default());
}

#[test]
fn cancel_stops_a_stalled_sender_on_the_buffered_path() {
    let send = ProcessSend::spawn(&["sleep", "30"]).unwrap();
    let recv = ProcessRecv::spawn(&["cat"]).unwrap();
    let opts = CopyOptions {
        splice: false,
        ..CopyOptions::default()
    };
    assert_cancelled_quickly(send, recv, &opts);
}

#[test]
fn cancel_stops_a_stalled_receiver() {
    // The receiver never reads: the pipe fills and the copy waits for room.
    let send = ProcessSend::spawn(&["head", "-c", "67108864", "/dev/zero"]).unwrap();
    let recv = ProcessRecv::spawn(&["sleep", "30"]).unwrap();
    assert_cancelled_quickly(send, recv, &CopyOptions::default());
}

#[test]
fn cancel_interrupts_a_rate_limit_sleep() {
    let send = ProcessSend::spawn(&["head", "-c", "67108864", "/dev/zero"]).unwrap();
    let recv = ProcessRecv::spawn(&["cat"]).unwrap();
    let opts = CopyOptions {
        bwlimit: Some(1024),
        ..CopyOptions::default()
    };
    assert_cancelled_quickly(send, recv, &opts);
}

#[test]
fn receiver_dying_is_the_cause_not_the_broken_pipe() {
    let send = ProcessSend::spawn(&["head", "-c", "67108864", "/dev/zero"]).unwrap();
    let recv = ProcessRecv::spawn(&[
        "sh",
        "-c",
        "head -c 1000 >/dev/null; echo 'cannot receive: destination exists' >&2; exit 3",
    ])
    .unwrap();
    let outcome = Pipeline::run(
        send,
        recv,
        &CopyOptions::default(),
        &NoProgress,
        &CancelToken::new(),
    );
    match &outcome.cause {
        Some(PipelineError::Recv(e)) => {
            assert_eq!(e.status, Some(3));
            assert!(e.stderr.contains("destination exists"), "{e}");
        }
        other => panic!("cause {other:?}"),
    }
    assert!(outcome.recv.error().is_some());
    assert_eq!(outcome.send, SideOutcome::Aborted);
    assert!(
        outcome.secondary.iter().any(PipelineError::is_broken_pipe),
        "{:?}",
        outcome.secondary
    );
    assert!(outcome.stats.bytes < 64 << 20);
}

#[test]
fn sender_dying_is_a_send_error() {
    let send = ProcessSend::spawn(&[
        "sh",
        "-c",
        "head -c 1000000 /dev/zero; echo 'warning: cannot send: I/O error' >&2; exit 4",
    ])
    .unwrap();
    let recv = ProcessRecv::spawn(&["cat"]).unwrap();
    let outcome = Pipeline::run(
        send,
        recv,
        &CopyOptions::default(),
        &NoProgress,
        &CancelToken::new(),
    );
    match &outcome.cause {
        Some(PipelineError::Send(e)) => {
            assert_eq!(e.status, Some(4));
            assert!(e.stderr.contains("I/O error"));
        }
        other => panic!("cause {other:?}"),
    }
    assert_eq!(outcome.recv, SideOutcome::Completed);
    assert_eq!(outcome.stats.bytes, 1_000_000);
}

#[test]
fn sender_failure_outranks_the_receivers_truncated_stream() {
    let outcome = Pipeline::run(
        MemSend::failing(vec![1; 5000], zfs_error("send a@b", ZfsErrorKind::Other)),
        MemRecv::failing_after(
            1 << 20,
            zfs_error("receive c", ZfsErrorKind::StreamTruncated),
        ),
        &CopyOptions::default(),
        &NoProgress,
        &CancelToken::new(),
    );
    assert!(matches!(&outcome.cause, Some(PipelineError::Send(e)) if e.op == "send a@b"));
    assert!(
        matches!(&outcome.secondary[..], [PipelineError::Recv(e)] if e.kind == ZfsErrorKind::StreamTruncated)
    );
}

#[test]
fn memory_receiver_dying_is_the_cause() {
    let outcome = Pipeline::run(
        MemSend::new(vec![1; 1 << 20]),
        MemRecv::failing_after(1000, zfs_error("receive c", ZfsErrorKind::TargetExists)),
        &CopyOptions::default(),
        &NoProgress,
        &CancelToken::new(),
    );
    assert!(
        matches!(&outcome.cause, Some(PipelineError::Recv(e)) if e.kind == ZfsErrorKind::TargetExists),
        "{outcome:?}"
    );
    assert!(matches!(&outcome.secondary[..], [PipelineError::Write(_)]));
    assert_eq!(outcome.stats.bytes, 0, "the first chunk already failed");
    let err = outcome.into_result().unwrap_err();
    assert!(
        err.to_string()
            .starts_with("cannot receive c: target exists"),
        "{err}"
    );
    assert!(!err.is_transient());
}

#[test]
fn progress_is_rate_limited() {
    let updates = Mutex::new(Vec::new());
    let progress = |b: u64, e: Duration| updates.lock().unwrap().push((b, e));
    let opts = CopyOptions {
        bwlimit: Some(4 << 20),
        chunk_size: 64 << 10,
        ..CopyOptions::default()
    };
    let outcome = Pipeline::run(
        MemSend::new(vec![0; 2 << 20]),
        MemRecv::new(),
        &opts,
        &progress,
        &CancelToken::new(),
    );
    assert!(outcome.is_ok());
    let updates = updates.into_inner().unwrap();
    // About 0.5 s at 100 ms: a handful of updates, not one per chunk.
    assert!((2..=8).contains(&updates.len()), "{updates:?}");
    let (last, rest) = updates.split_last().unwrap();
    assert_eq!(last.0, 2 << 20);
    assert!(
        rest.windows(2)
            .all(|w| w[1].1 - w[0].1 >= Duration::from_millis(90))
    );
}

#[test]
fn zstd_round_trip_with_bounded_buffers() {
    let data = text(12 << 20);
    let buffers = BufferOptions {
        block_size: 64 << 10,
        queue_depth: 2,
    };
    let enc = ZstdEncoder {
        level: 3,
        workers: 2,
    };
    let mut packed = Vec::new();
    let c = enc
        .copy(
            Cursor::new(data.clone()),
            &mut packed,
            &buffers,
            &NoProgress,
            &CancelToken::new(),
        )
        .unwrap();
    assert_eq!(c.bytes_in, data.len() as u64);
    assert_eq!(c.bytes_out, packed.len() as u64);
    assert!(packed.len() < data.len() / 4, "{} bytes", packed.len());
    assert!(c.buffers <= buffers.max_buffers(), "{c:?}");

    let mut unpacked = Vec::new();
    let d = ZstdDecoder
        .copy(
            Cursor::new(packed.clone()),
            &mut unpacked,
            &buffers,
            &NoProgress,
            &CancelToken::new(),
        )
        .unwrap();
    assert_eq!(d.bytes_out, data.len() as u64);
    assert!(d.buffers <= buffers.max_buffers(), "{d:?}");
    assert!(unpacked == data);
}

#[test]
fn zstd_default_helpers_round_trip_noise() {
    let data = noise(3 << 20, 9);
    let mut packed = Vec::new();
    compress_copy(
        Cursor::new(data.clone()),
        &mut packed,
        1,
        0,
        &NoProgress,
        &CancelToken::new(),
    )
    .unwrap();
    let mut unpacked = Vec::new();
    decompress_copy(
        Cursor::new(packed),
        &mut unpacked,
        &NoProgress,
        &CancelToken::new(),
    )
    .unwrap();
    assert!(unpacked == data);
}

#[test]
fn zstd_rejects_truncated_and_corrupt_input() {
    let mut packed = Vec::new();
    compress_copy(
        Cursor::new(text(1 << 20)),
        &mut packed,
        3,
        0,
        &NoProgress,
        &CancelToken::new(),
    )
    .unwrap();
    let cut = packed[..packed.len() / 2].to_vec();
    let err = decompress_copy(
        Cursor::new(cut),
        std::io::sink(),
        &NoProgress,
        &CancelToken::new(),
    )
    .unwrap_err();
    assert!(matches!(err, PipelineError::Codec(_)), "{err:?}");

    let mut bad = packed;
    let mid = bad.len() / 2;
    bad[mid] ^= 0xff;
    let err = decompress_copy(
        Cursor::new(bad),
        std::io::sink(),
        &NoProgress,
        &CancelToken::new(),
    )
    .unwrap_err();
    assert!(matches!(err, PipelineError::Codec(_)), "{err:?}");
}

/// A reader that fails after some bytes.
struct Flaky(usize);

impl Read for Flaky {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.0 == 0 {
            return Err(std::io::Error::other("disk on fire"));
        }
        let n = buf.len().min(self.0);
        buf[..n].fill(7);
        self.0 -= n;
        Ok(n)
    }
}

#[test]
fn zstd_reports_a_read_error() {
    let err = compress_copy(
        Flaky(3 << 20),
        std::io::sink(),
        3,
        0,
        &NoProgress,
        &CancelToken::new(),
    )
    .unwrap_err();
    assert!(
        matches!(err, PipelineError::Read(ref e) if e.to_string() == "disk on fire"),
        "{err:?}"
    );
}

#[test]
fn zstd_cancel_does_not_wait_for_a_stalled_source() {
    // The reader thread stays blocked until `sleep` ends; the copy must not.
    let src = ProcessSend::spawn(&["sleep", "3"]).unwrap();
    let token = CancelToken::new();
    let h = cancel_after(&token, Duration::from_millis(200));
    let start = Instant::now();
    let err = compress_copy(src, std::io::sink(), 3, 0, &NoProgress, &token).unwrap_err();
    h.join().unwrap();
    assert!(matches!(err, PipelineError::Cancelled));
    assert!(
        start.elapsed() < Duration::from_millis(1200),
        "{:?}",
        start.elapsed()
    );
}
