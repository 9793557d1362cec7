//! Frames on the wire: `u32` big-endian length, one type byte, payload.
//!
//! The length counts the type byte and the payload, so it is never 0. Every
//! length is checked against the bound of its frame type before a byte of
//! payload is read or allocated: a peer cannot make us allocate more than
//! [`MAX_CONTROL`] or [`MAX_DATA`] bytes, and garbage, truncation and
//! oversized frames are errors ([`FrameError`]), never panics.

use std::fmt;
use std::io::{self, Read, Write};

/// The largest control (JSON) payload: 1 MiB. A listing of thousands of
/// snapshots fits; more is refused.
pub const MAX_CONTROL: usize = 1 << 20;

/// The largest data payload: 1 MiB.
pub const MAX_DATA: usize = 1 << 20;

/// The largest payload of an end, abort or keepalive frame.
pub const MAX_SIGNAL: usize = 4096;

/// Bytes before the payload: length (4) and type (1).
pub const HEADER_LEN: usize = 5;

/// What a frame carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameKind {
    /// A JSON request or response (`C`).
    Control,
    /// A chunk of a `zfs send` stream, plain or zstd (`D`).
    Data,
    /// The stream is complete (`E`); a control response follows.
    End,
    /// The stream is abandoned (`A`, with a UTF-8 reason); a control
    /// response follows.
    Abort,
    /// Nothing (`K`): readers skip it wherever it appears. For transports
    /// that want to show a live peer during a quiet stream.
    Keepalive,
}

impl FrameKind {
    /// The type byte.
    #[must_use]
    pub fn byte(self) -> u8 {
        match self {
            Self::Control => b'C',
            Self::Data => b'D',
            Self::End => b'E',
            Self::Abort => b'A',
            Self::Keepalive => b'K',
        }
    }

    /// The kind of a type byte.
    #[must_use]
    pub fn from_byte(b: u8) -> Option<Self> {
        Some(match b {
            b'C' => Self::Control,
            b'D' => Self::Data,
            b'E' => Self::End,
            b'A' => Self::Abort,
            b'K' => Self::Keepalive,
            _ => return None,
        })
    }

    /// The largest payload this kind may carry.
    #[must_use]
    pub fn max_payload(self) -> usize {
        match self {
            Self::Control => MAX_CONTROL,
            Self::Data => MAX_DATA,
            Self::End | Self::Abort | Self::Keepalive => MAX_SIGNAL,
        }
    }
}

impl fmt::Display for FrameKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Control => "control",
            Self::Data => "data",
            Self::End => "end",
            Self::Abort => "abort",
            Self::Keepalive => "keepalive",
        })
    }
}

/// Why a frame could not be read.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The peer closed the connection cleanly between frames.
    #[error("the peer closed the connection")]
    Closed,
    /// The connection ended inside a frame.
    #[error("truncated frame: expected {expected} bytes, the connection ended after {got}")]
    Truncated {
        /// Bytes the frame announced (header included).
        expected: usize,
        /// Bytes that arrived.
        got: usize,
    },
    /// A length of 0 (no type byte).
    #[error("malformed frame: length 0")]
    Empty,
    /// An unknown type byte.
    #[error("malformed frame: unknown type byte 0x{0:02x}")]
    UnknownType(u8),
    /// A payload over its kind's bound.
    #[error("oversized {kind} frame: {len} bytes (at most {max})")]
    TooLarge {
        /// The frame's kind.
        kind: FrameKind,
        /// The announced payload length.
        len: usize,
        /// The bound.
        max: usize,
    },
    /// The first bytes look like text: the peer is not a zfsrepl agent (a
    /// login shell's banner, an error message, a wrong command).
    #[error("the peer does not speak the zfsrepl agent protocol; it sent text: {0:?}")]
    NotAgent(String),
    /// A control payload that is not a valid message.
    #[error("malformed control message: {0}")]
    BadControl(String),
    /// A frame of a kind not expected at this point of the conversation.
    #[error("protocol error: unexpected {0} frame")]
    Unexpected(FrameKind),
    /// Reading or writing failed.
    #[error("connection failed: {0}")]
    Io(#[from] io::Error),
}

/// One frame read off the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// What it carries.
    pub kind: FrameKind,
    /// The payload.
    pub payload: Vec<u8>,
}

/// Checks a header: the kind, and the payload length within its bound.
///
/// # Errors
/// [`FrameError::Empty`], [`FrameError::UnknownType`] (or
/// [`FrameError::NotAgent`] when the header is printable text),
/// [`FrameError::TooLarge`].
pub fn parse_header(h: &[u8; HEADER_LEN]) -> Result<(FrameKind, usize), FrameError> {
    let len = u32::from_be_bytes([h[0], h[1], h[2], h[3]]) as usize;
    if looks_like_text(h) {
        return Err(FrameError::NotAgent(
            String::from_utf8_lossy(h).into_owned(),
        ));
    }
    if len == 0 {
        return Err(FrameError::Empty);
    }
    let kind = FrameKind::from_byte(h[4]).ok_or(FrameError::UnknownType(h[4]))?;
    let payload = len - 1;
    if payload > kind.max_payload() {
        return Err(FrameError::TooLarge {
            kind,
            len: payload,
            max: kind.max_payload(),
        });
    }
    Ok((kind, payload))
}

/// Every real header starts with a zero byte (no frame reaches 16 MiB);
/// printable text in the first bytes is a shell or an error message.
fn looks_like_text(h: &[u8; HEADER_LEN]) -> bool {
    h[0] != 0
        && h.iter()
            .all(|b| b.is_ascii_graphic() || matches!(b, b' ' | b'\n' | b'\r' | b'\t'))
}

/// Reads into `buf` until full; `Ok(n < buf.len())` only at end of input.
fn read_full(r: &mut (impl Read + ?Sized), buf: &mut [u8]) -> io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match r.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

/// Reads one frame, skipping keepalives. `payload` is reused as the
/// buffer (its capacity is kept across calls).
///
/// # Errors
/// [`FrameError::Closed`] at a clean end between frames; any other
/// [`FrameError`] for garbage, truncation, oversize or I/O failure. When
/// the peer sent text, up to 200 bytes of it are in
/// [`FrameError::NotAgent`].
pub fn read_frame_into(
    r: &mut (impl Read + ?Sized),
    payload: &mut Vec<u8>,
) -> Result<FrameKind, FrameError> {
    loop {
        let mut h = [0u8; HEADER_LEN];
        let got = read_full(r, &mut h)?;
        if got == 0 {
            return Err(FrameError::Closed);
        }
        if got < HEADER_LEN {
            let short = &h[..got];
            if short.iter().all(u8::is_ascii_graphic) && short.first().is_some_and(|b| *b != 0) {
                return Err(FrameError::NotAgent(
                    String::from_utf8_lossy(short).into_owned(),
                ));
            }
            return Err(FrameError::Truncated {
                expected: HEADER_LEN,
                got,
            });
        }
        let (kind, len) = match parse_header(&h) {
            Err(FrameError::NotAgent(_)) => {
                // Show more of the text the peer sent.
                let mut more = vec![0u8; 195];
                let n = read_full(r, &mut more).unwrap_or(0);
                let mut text = h.to_vec();
                text.extend_from_slice(&more[..n]);
                return Err(FrameError::NotAgent(
                    String::from_utf8_lossy(&text).trim_end().to_owned(),
                ));
            }
            other => other?,
        };
        payload.clear();
        payload.resize(len, 0);
        let got = read_full(r, payload)?;
        if got < len {
            return Err(FrameError::Truncated {
                expected: HEADER_LEN + len,
                got: HEADER_LEN + got,
            });
        }
        if kind != FrameKind::Keepalive {
            return Ok(kind);
        }
    }
}

/// Reads one frame (skipping keepalives) into a new buffer.
///
/// # Errors
/// As [`read_frame_into`].
pub fn read_frame(r: &mut (impl Read + ?Sized)) -> Result<Frame, FrameError> {
    let mut payload = Vec::new();
    let kind = read_frame_into(r, &mut payload)?;
    Ok(Frame { kind, payload })
}

/// Writes one frame as a single `write_all` (header and payload copied
/// into `scratch`, which is reused), without flushing.
///
/// # Errors
/// When the payload is over its kind's bound ([`io::ErrorKind::InvalidInput`])
/// or writing fails.
pub fn write_frame_with(
    w: &mut (impl Write + ?Sized),
    kind: FrameKind,
    payload: &[u8],
    scratch: &mut Vec<u8>,
) -> io::Result<()> {
    if payload.len() > kind.max_payload() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "{kind} frame of {} bytes is over its bound of {}",
                payload.len(),
                kind.max_payload()
            ),
        ));
    }
    let len = u32::try_from(payload.len() + 1)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "frame too long"))?;
    scratch.clear();
    scratch.reserve(HEADER_LEN + payload.len());
    scratch.extend_from_slice(&len.to_be_bytes());
    scratch.push(kind.byte());
    scratch.extend_from_slice(payload);
    w.write_all(scratch)
}

/// Writes one frame; see [`write_frame_with`].
///
/// # Errors
/// As [`write_frame_with`].
pub fn write_frame(
    w: &mut (impl Write + ?Sized),
    kind: FrameKind,
    payload: &[u8],
) -> io::Result<()> {
    write_frame_with(w, kind, payload, &mut Vec::new())
}

/// Splits everything written into data frames of at most [`MAX_DATA`]
/// bytes; [`Write::flush`] sends what is buffered (without flushing the
/// connection: [`DataFrames::finish`] does).
pub struct DataFrames<W: Write> {
    inner: W,
    buf: Vec<u8>,
    scratch: Vec<u8>,
    /// Payload bytes sent in data frames.
    pub sent: u64,
}

impl<W: Write> DataFrames<W> {
    /// Frames into `inner`.
    pub fn new(inner: W) -> Self {
        Self {
            inner,
            buf: Vec::with_capacity(MAX_DATA),
            scratch: Vec::with_capacity(MAX_DATA + HEADER_LEN),
            sent: 0,
        }
    }

    fn emit(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        write_frame_with(
            &mut self.inner,
            FrameKind::Data,
            &self.buf,
            &mut self.scratch,
        )?;
        self.sent += self.buf.len() as u64;
        self.buf.clear();
        Ok(())
    }

    /// Sends what is buffered and returns the inner writer.
    ///
    /// # Errors
    /// When writing fails.
    pub fn finish(mut self) -> io::Result<W> {
        self.emit()?;
        Ok(self.inner)
    }

    /// The inner writer (buffered data not yet sent).
    pub fn get_mut(&mut self) -> &mut W {
        &mut self.inner
    }
}

impl<W: Write> Write for DataFrames<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if self.buf.len() == MAX_DATA {
            self.emit()?;
        }
        let n = data.len().min(MAX_DATA - self.buf.len());
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() == MAX_DATA {
            self.emit()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.emit()
    }
}

/// Decodes a byte string as a sequence of frames, as a reader would:
/// stops at the first error (returned with the frames before it). For
/// tests and the fuzz target.
#[must_use]
pub fn decode_all(mut bytes: &[u8]) -> (Vec<Frame>, Option<FrameError>) {
    let mut out = Vec::new();
    loop {
        match read_frame(&mut bytes) {
            Ok(f) => out.push(f),
            Err(FrameError::Closed) => return (out, None),
            Err(e) => return (out, Some(e)),
        }
    }
}
