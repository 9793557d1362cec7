//! zstd in-process, for legs that cross a network: [`ZstdEncoder`] and
//! [`ZstdDecoder`] stages, each run as a bounded pipeline of three threads
//! (reader → codec → writer) joined by bounded channels of fixed-size
//! buffers, so memory stays bounded however fast or slow each end is, and
//! no external `zstd`, `mbuffer` or `pv` process is needed.
//!
//! Compression must happen in user space, so these stages never splice; the
//! plain local path ([`super::copy`]) does.

use std::io::{self, Read, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TrySendError, bounded};
use serde::{Deserialize, Serialize};

use super::cancel::{CancelToken, POLL_PERIOD};
use super::copy::Progress;
use super::error::PipelineError;

/// How big the buffers are and how many may queue between two threads.
///
/// At most `2 * queue_depth + 4` buffers of `block_size` bytes exist at
/// once (see [`CodecStats::buffers`]), plus zstd's own state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct BufferOptions {
    /// Size of one buffer. Default 1 MiB.
    pub block_size: usize,
    /// Buffers that may wait in each channel. Default 8.
    pub queue_depth: usize,
}

impl Default for BufferOptions {
    fn default() -> Self {
        Self {
            block_size: 1 << 20,
            queue_depth: 8,
        }
    }
}

impl BufferOptions {
    /// The most buffers a stage can hold at once: each channel full, one in
    /// the reader's hand, one being consumed by the codec, one being filled
    /// by the codec, one being written out.
    #[must_use]
    pub fn max_buffers(&self) -> usize {
        2 * self.queue_depth.max(1) + 4
    }
}

/// Compresses with zstd, with a checksum in every frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ZstdEncoder {
    /// Compression level (1 fastest .. 19, or 20..=22 with much more memory;
    /// negative levels trade ratio for speed). Default 3, zstd's own.
    pub level: i32,
    /// zstd worker threads besides the stage's own (0: compress on the
    /// stage thread). Each worker compresses a separate job of the stream.
    pub workers: u32,
}

impl Default for ZstdEncoder {
    fn default() -> Self {
        Self {
            level: 3,
            workers: 0,
        }
    }
}

/// Decompresses zstd (any number of concatenated frames); a truncated or
/// corrupt stream is an error ([`PipelineError::Codec`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ZstdDecoder;

/// What a compressing or decompressing copy did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CodecStats {
    /// Bytes read from the source.
    pub bytes_in: u64,
    /// Bytes written to the destination.
    pub bytes_out: u64,
    /// Wall time.
    pub elapsed: Duration,
    /// Buffers allocated: times [`BufferOptions::block_size`], the memory
    /// the pipeline used besides zstd's own; never more than
    /// [`BufferOptions::max_buffers`].
    pub buffers: usize,
}

impl ZstdEncoder {
    /// Compresses everything `src` yields into `dst`. Progress reports
    /// uncompressed bytes read.
    ///
    /// `src` is read on a thread of its own, hence `'static`: on cancel or
    /// failure this returns at once, and a reader blocked in `read` exits
    /// when its read returns (kill the process behind it to hurry it).
    ///
    /// # Errors
    /// [`PipelineError::Read`], [`PipelineError::Write`],
    /// [`PipelineError::Codec`] for zstd's own errors, [`PipelineError::Io`]
    /// when a thread cannot start, [`PipelineError::Cancelled`].
    pub fn copy<Rd, W>(
        &self,
        src: Rd,
        dst: W,
        buffers: &BufferOptions,
        progress: &dyn Progress,
        cancel: &CancelToken,
    ) -> Result<CodecStats, PipelineError>
    where
        Rd: Read + Send + 'static,
        W: Write,
    {
        run(Codec::Encode(*self), src, dst, buffers, progress, cancel)
    }
}

impl ZstdDecoder {
    /// Decompresses everything `src` yields into `dst`. Progress reports
    /// decompressed bytes written. Threads and cancel as for
    /// [`ZstdEncoder::copy`].
    ///
    /// # Errors
    /// As [`ZstdEncoder::copy`]; [`PipelineError::Codec`] also for corrupt
    /// or truncated input.
    pub fn copy<Rd, W>(
        &self,
        src: Rd,
        dst: W,
        buffers: &BufferOptions,
        progress: &dyn Progress,
        cancel: &CancelToken,
    ) -> Result<CodecStats, PipelineError>
    where
        Rd: Read + Send + 'static,
        W: Write,
    {
        run(Codec::Decode, src, dst, buffers, progress, cancel)
    }
}

/// Compresses `src` into `dst` at `level` with `workers` zstd threads and
/// default buffers; see [`ZstdEncoder::copy`].
///
/// # Errors
/// As [`ZstdEncoder::copy`].
pub fn compress_copy<Rd, W>(
    src: Rd,
    dst: W,
    level: i32,
    workers: u32,
    progress: &dyn Progress,
    cancel: &CancelToken,
) -> Result<CodecStats, PipelineError>
where
    Rd: Read + Send + 'static,
    W: Write,
{
    ZstdEncoder { level, workers }.copy(src, dst, &BufferOptions::default(), progress, cancel)
}

/// Decompresses `src` into `dst` with default buffers; see
/// [`ZstdDecoder::copy`].
///
/// # Errors
/// As [`ZstdDecoder::copy`].
pub fn decompress_copy<Rd, W>(
    src: Rd,
    dst: W,
    progress: &dyn Progress,
    cancel: &CancelToken,
) -> Result<CodecStats, PipelineError>
where
    Rd: Read + Send + 'static,
    W: Write,
{
    ZstdDecoder.copy(src, dst, &BufferOptions::default(), progress, cancel)
}

#[derive(Debug, Clone, Copy)]
enum Codec {
    Encode(ZstdEncoder),
    Decode,
}

/// Recycled buffers: the pool can hold every buffer that can exist at once,
/// so a returned buffer is never dropped and allocations stop after warm-up.
#[derive(Clone)]
struct Pool {
    free_tx: Sender<Vec<u8>>,
    free_rx: Receiver<Vec<u8>>,
    block: usize,
    allocated: Arc<AtomicUsize>,
}

impl Pool {
    fn new(b: &BufferOptions) -> Self {
        let (free_tx, free_rx) = bounded(b.max_buffers());
        Self {
            free_tx,
            free_rx,
            block: b.block_size.max(1),
            allocated: Arc::new(AtomicUsize::new(0)),
        }
    }

    fn get(&self) -> Vec<u8> {
        match self.free_rx.try_recv() {
            Ok(mut b) => {
                b.clear();
                b
            }
            Err(_) => {
                self.allocated.fetch_add(1, Ordering::Relaxed);
                Vec::with_capacity(self.block)
            }
        }
    }

    fn put(&self, b: Vec<u8>) {
        if let Err(TrySendError::Full(b) | TrySendError::Disconnected(b)) = self.free_tx.try_send(b)
        {
            drop(b);
        }
    }
}

/// What flows between the threads: a buffer, or the error that ended the
/// stream upstream (so the writer reports it in order, after the data
/// before it).
type Msg = Result<Vec<u8>, PipelineError>;

/// The codec's output: fills pooled buffers and passes each on when full.
struct ChunkWriter {
    buf: Vec<u8>,
    out: Sender<Msg>,
    pool: Pool,
}

impl ChunkWriter {
    fn send(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        // Take the next buffer only once this one is handed over: holding
        // both while blocked in send would break the bound on buffers.
        let full = std::mem::take(&mut self.buf);
        // The writer hung up (cancel or failure): stop the codec.
        self.out
            .send(Ok(full))
            .map_err(|_| io::Error::from(io::ErrorKind::BrokenPipe))?;
        self.buf = self.pool.get();
        Ok(())
    }
}

impl Write for ChunkWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let room = self.pool.block - self.buf.len();
        let n = room.min(data.len());
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() >= self.pool.block {
            self.send()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.send()
    }
}

fn spawn<T: Send + 'static>(
    name: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<JoinHandle<T>, PipelineError> {
    std::thread::Builder::new()
        .name(name.into())
        .spawn(f)
        .map_err(PipelineError::Io)
}

/// Reads `src` into pooled buffers until end, error or hang-up.
fn read_loop(mut src: impl Read, tx: &Sender<Msg>, pool: &Pool, count: &AtomicU64) {
    loop {
        let mut buf = pool.get();
        buf.resize(pool.block, 0);
        let msg = match src.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => {
                buf.truncate(n);
                count.fetch_add(n as u64, Ordering::Relaxed);
                Ok(buf)
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {
                pool.put(buf);
                continue;
            }
            Err(e) => Err(PipelineError::Read(e)),
        };
        let stop = msg.is_err();
        if tx.send(msg).is_err() || stop {
            return;
        }
    }
}

/// Runs the codec over the input buffers; returns when the input ends (or
/// fails) or the output is hung up. Errors go downstream, in order.
fn codec_loop(codec: Codec, rx: &Receiver<Msg>, out: ChunkWriter) {
    let err_tx = out.out.clone();
    let pool = out.pool.clone();
    let result = match codec {
        Codec::Encode(e) => encode(e, rx, &pool, out),
        Codec::Decode => decode(rx, &pool, out),
    };
    if let Err(e) = result {
        let _ = err_tx.send(Err(e));
    }
}

/// Feeds every input buffer to `w` until the input ends; an input error or
/// a codec error ends it early.
fn feed(rx: &Receiver<Msg>, pool: &Pool, w: &mut impl Write) -> Result<(), PipelineError> {
    for msg in rx {
        let buf = msg?;
        let r = w.write_all(&buf);
        pool.put(buf);
        r.map_err(codec_error)?;
    }
    Ok(())
}

/// A broken pipe from our own `ChunkWriter` means the writer hung up, which
/// it reports itself; anything else came from zstd.
fn codec_error(e: io::Error) -> PipelineError {
    if e.kind() == io::ErrorKind::BrokenPipe {
        PipelineError::Cancelled
    } else {
        PipelineError::Codec(e)
    }
}

fn encode(
    z: ZstdEncoder,
    rx: &Receiver<Msg>,
    pool: &Pool,
    out: ChunkWriter,
) -> Result<(), PipelineError> {
    let mut enc = zstd::stream::write::Encoder::new(out, z.level).map_err(PipelineError::Codec)?;
    // A checksum per frame: a network leg must not turn bit flips into a
    // corrupt dataset (zfs recv checks its own stream too, but late).
    enc.include_checksum(true).map_err(PipelineError::Codec)?;
    if z.workers > 0 {
        enc.multithread(z.workers).map_err(PipelineError::Codec)?;
    }
    feed(rx, pool, &mut enc)?;
    let mut out = enc.finish().map_err(codec_error)?;
    out.flush().map_err(codec_error)
}

fn decode(rx: &Receiver<Msg>, pool: &Pool, out: ChunkWriter) -> Result<(), PipelineError> {
    let mut dec = zstd::stream::write::Decoder::new(out).map_err(PipelineError::Codec)?;
    feed(rx, pool, &mut dec)?;
    // finish() fails with UnexpectedEof when the input stopped mid-frame.
    let mut out = dec.finish().map_err(codec_error)?;
    out.flush().map_err(codec_error)
}

fn run<Rd, W>(
    codec: Codec,
    src: Rd,
    mut dst: W,
    buffers: &BufferOptions,
    progress: &dyn Progress,
    cancel: &CancelToken,
) -> Result<CodecStats, PipelineError>
where
    Rd: Read + Send + 'static,
    W: Write,
{
    let start = Instant::now();
    let depth = buffers.queue_depth.max(1);
    let pool = Pool::new(buffers);
    let read_count = Arc::new(AtomicU64::new(0));
    let (in_tx, in_rx) = bounded::<Msg>(depth);
    let (out_tx, out_rx) = bounded::<Msg>(depth);

    // Threads are detached on failure: the reader may be blocked in a read
    // we cannot interrupt, and must not hold up a cancel. It exits when its
    // read returns and the hung-up channel refuses the data.
    let reader = {
        let pool = pool.clone();
        let count = Arc::clone(&read_count);
        spawn("zfsrepl-zstd-read", move || {
            read_loop(src, &in_tx, &pool, &count);
        })?
    };
    let stage = {
        let out = ChunkWriter {
            buf: pool.get(),
            out: out_tx,
            pool: pool.clone(),
        };
        spawn("zfsrepl-zstd", move || codec_loop(codec, &in_rx, out))?
    };

    let mut written: u64 = 0;
    let mut last_report = start;
    let payload = |written: u64| match codec {
        Codec::Encode(_) => read_count.load(Ordering::Relaxed),
        Codec::Decode => written,
    };
    let result = loop {
        if cancel.is_cancelled() {
            break Err(PipelineError::Cancelled);
        }
        match out_rx.recv_timeout(POLL_PERIOD) {
            Ok(Ok(buf)) => {
                let r = dst.write_all(&buf);
                written += buf.len() as u64;
                pool.put(buf);
                if let Err(e) = r {
                    break Err(PipelineError::Write(e));
                }
            }
            Ok(Err(e)) => break Err(e),
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => break dst.flush().map_err(PipelineError::Write),
        }
        let now = Instant::now();
        if now.duration_since(last_report) >= POLL_PERIOD {
            last_report = now;
            progress.update(payload(written), now - start);
        }
    };
    // Hanging up stops the codec and, at its next read, the reader.
    drop(out_rx);
    if result.is_ok() {
        // Both have finished (the codec closed its output after the reader
        // closed its own); joining only surfaces a panic.
        for h in [reader, stage] {
            if h.join().is_err() {
                return Err(PipelineError::Io(io::Error::other("zstd stage panicked")));
            }
        }
    }
    let stats = CodecStats {
        bytes_in: read_count.load(Ordering::Relaxed),
        bytes_out: written,
        elapsed: start.elapsed(),
        buffers: pool.allocated.load(Ordering::Relaxed),
    };
    progress.update(payload(written), stats.elapsed);
    result.map(|()| stats)
}
