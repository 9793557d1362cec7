//! The wire format of the model's send streams: framed, checksummed and
//! self-describing, so that a receiver tells garbage from a stream that was
//! cut short, and a resumed stream continues at a byte offset, as with ZFS.
//!
//! A stream is the magic line [`MAGIC`] followed by frames
//! `[tag u8][body length u32 LE][body][FNV-1a 64 of tag, length, body]`:
//!
//! | tag | body | ZFS analogue |
//! |-----|------|--------------|
//! | `H` | JSON [`StreamHeader`] | the compound stream header of `-R` |
//! | `D` | JSON [`DatasetBegin`] | the per-filesystem nvlist of `-R`/`-p` |
//! | `B` | JSON [`SnapBegin`] | `DRR_BEGIN` |
//! | `W` | payload chunk (filler) | `DRR_WRITE` records |
//! | `N` | empty | `DRR_END` of one snapshot |
//! | `E` | empty | end of the whole stream |
//!
//! Each snapshot's payload is filler whose bytes are a function of the
//! snapshot guid and the offset ([`payload_byte`]); its length follows the
//! data written between the two snapshots (capped), so streams have
//! plausible sizes, a receiver can verify every byte, and a resume offset
//! means something.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::name::{DatasetName, Guid, SnapshotName};
use crate::zfs::{DatasetKind, UnixTime};

/// The first bytes of every model stream.
pub(crate) const MAGIC: &[u8] = b"ZFSMODEL1\n";

/// The largest payload chunk in one `W` frame.
pub(crate) const CHUNK: usize = 32 * 1024;

/// The largest metadata frame body (a corrupt length beyond it is garbage,
/// not a stream that is still arriving).
const MAX_META: usize = 16 << 20;

/// Tag, length and checksum around each frame body.
const FRAME_OVERHEAD: usize = 1 + 4 + 8;

/// The stream header.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct StreamHeader {
    /// The dataset named on the `zfs send` command line (the top of `-R`):
    /// receivers map every dataset of the stream relative to it.
    pub sendfs: DatasetName,
    /// `-R`: a replication stream of `sendfs` and its descendants.
    pub replicate: bool,
    /// `-p` (implied by `-R`): datasets carry their properties.
    pub props: bool,
    /// A resumed stream (`zfs send -t`): one snapshot, from an offset.
    pub resume: bool,
}

/// The start of one dataset's part of the stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct DatasetBegin {
    /// The dataset's name on the sending side.
    pub name: DatasetName,
    /// Filesystem or volume.
    pub kind: DatasetKind,
    /// Locally set and received properties, with `-p` or `-R`.
    pub props: Option<BTreeMap<String, String>>,
    /// With `-R`: the guids of every snapshot the sender has, so that
    /// `zfs receive -F` can destroy the target's snapshots the sender no
    /// longer has.
    pub snapshots: Option<Vec<Guid>>,
}

/// The start of one snapshot's record (`DRR_BEGIN`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct SnapBegin {
    /// The snapshot's full name on the sending side.
    pub toname: SnapshotName,
    /// Its guid, which the receiver keeps.
    pub toguid: Guid,
    /// The base's guid for an incremental record; `None` for a full one.
    pub fromguid: Option<Guid>,
    /// The snapshot's creation time, which the receiver keeps.
    pub creation: UnixTime,
    /// The content identity of the snapshot's data.
    pub content: u64,
    /// The bytes of data the snapshot refers to.
    pub data_bytes: u64,
    /// Snapshot properties (with `-R`).
    pub props: BTreeMap<String, String>,
    /// The payload's full length.
    pub payload_len: u64,
    /// Where the payload of a resumed stream starts (0 otherwise).
    pub resume_offset: u64,
}

/// One decoded frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Frame {
    /// `H`.
    Header(StreamHeader),
    /// `D`.
    Dataset(DatasetBegin),
    /// `B`.
    Begin(Box<SnapBegin>),
    /// `W`.
    Payload(Vec<u8>),
    /// `N`.
    EndSnapshot,
    /// `E`.
    End,
}

/// The result of trying to decode one frame from the front of a buffer.
#[derive(Debug)]
pub(crate) enum Decoded {
    /// A frame and the number of bytes it took.
    Frame(Frame, usize),
    /// More bytes are needed.
    Incomplete,
    /// The bytes cannot be the start of a frame.
    Invalid(String),
}

/// FNV-1a, 64 bits, over several slices.
pub(crate) fn fnv64(parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for &b in *part {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    h
}

/// The payload byte at `offset` of the snapshot `guid`'s record.
pub(crate) fn payload_byte(guid: Guid, offset: u64) -> u8 {
    let x = guid.0 ^ offset.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    (x ^ (x >> 29) ^ (x >> 47)) as u8
}

fn push_frame(out: &mut Vec<u8>, tag: u8, body: &[u8]) {
    let len = u32::try_from(body.len()).expect("frame bodies are bounded");
    let len = len.to_le_bytes();
    out.push(tag);
    out.extend_from_slice(&len);
    out.extend_from_slice(body);
    out.extend_from_slice(&fnv64(&[&[tag], &len, body]).to_le_bytes());
}

fn push_json<T: Serialize>(out: &mut Vec<u8>, tag: u8, value: &T) {
    let body = serde_json::to_vec(value).expect("stream records serialize");
    push_frame(out, tag, &body);
}

/// Builds stream bytes frame by frame.
#[derive(Debug, Default)]
pub(crate) struct Encoder {
    out: Vec<u8>,
}

impl Encoder {
    /// Starts a stream with its magic and header.
    pub(crate) fn new(header: &StreamHeader) -> Self {
        let mut out = MAGIC.to_vec();
        push_json(&mut out, b'H', header);
        Self { out }
    }

    /// Starts a dataset.
    pub(crate) fn dataset(&mut self, begin: &DatasetBegin) {
        push_json(&mut self.out, b'D', begin);
    }

    /// Writes one snapshot record: begin, payload from its resume offset,
    /// end.
    pub(crate) fn snapshot(&mut self, begin: &SnapBegin) {
        push_json(&mut self.out, b'B', begin);
        let mut at = begin.resume_offset;
        while at < begin.payload_len {
            let end = begin.payload_len.min(at + CHUNK as u64);
            let chunk: Vec<u8> = (at..end).map(|i| payload_byte(begin.toguid, i)).collect();
            push_frame(&mut self.out, b'W', &chunk);
            at = end;
        }
        push_frame(&mut self.out, b'N', &[]);
    }

    /// Ends the stream.
    pub(crate) fn finish(mut self) -> Vec<u8> {
        push_frame(&mut self.out, b'E', &[]);
        self.out
    }
}

/// Decodes the frame at the front of `buf`.
pub(crate) fn decode_frame(buf: &[u8]) -> Decoded {
    let Some(&tag) = buf.first() else {
        return Decoded::Incomplete;
    };
    let max = match tag {
        b'H' | b'D' | b'B' => MAX_META,
        b'W' => CHUNK,
        b'N' | b'E' => 0,
        _ => return Decoded::Invalid(format!("invalid record type 0x{tag:02x}")),
    };
    let Some(len_bytes) = buf.get(1..5) else {
        return Decoded::Incomplete;
    };
    let len_bytes: [u8; 4] = len_bytes.try_into().expect("four bytes");
    let len = u32::from_le_bytes(len_bytes) as usize;
    if len > max {
        return Decoded::Invalid(format!("record length {len} out of range"));
    }
    let total = FRAME_OVERHEAD + len;
    if buf.len() < total {
        return Decoded::Incomplete;
    }
    let body = &buf[5..5 + len];
    let sum: [u8; 8] = buf[5 + len..total].try_into().expect("eight bytes");
    if u64::from_le_bytes(sum) != fnv64(&[&[tag], &len_bytes, body]) {
        return Decoded::Invalid("checksum mismatch".into());
    }
    let frame = match tag {
        b'H' => serde_json::from_slice(body).map(Frame::Header),
        b'D' => serde_json::from_slice(body).map(Frame::Dataset),
        b'B' => serde_json::from_slice(body).map(|b| Frame::Begin(Box::new(b))),
        b'W' => Ok(Frame::Payload(body.to_vec())),
        b'N' => Ok(Frame::EndSnapshot),
        _ => Ok(Frame::End),
    };
    match frame {
        Ok(f) => Decoded::Frame(f, total),
        Err(e) => Decoded::Invalid(format!("malformed record: {e}")),
    }
}

/// What a `receive_resume_token` encodes: enough for the sender to
/// regenerate the interrupted snapshot's record from the offset reached.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ResumeToken {
    /// The snapshot being sent, by its name on the sending side.
    pub toname: SnapshotName,
    /// Its guid (the sender checks it still names the same snapshot).
    pub toguid: Guid,
    /// The incremental base's guid, for an incremental record.
    pub fromguid: Option<Guid>,
    /// Payload bytes received so far.
    pub bytes: u64,
    /// The dataset that holds the partial state.
    pub target: DatasetName,
}

impl ResumeToken {
    /// The pair that carries the model's partial-state dataset (a real
    /// token has no such pair; the decoder keeps unknown string pairs).
    const TARGET_PAIR: &'static str = "zfsrepl_model_target";

    /// Encodes as OpenZFS does (`crate::zfs::resume`): a native nvlist,
    /// zlib-compressed, with a fletcher-4 checksum.
    pub(crate) fn encode(&self) -> String {
        crate::zfs::resume::encode_resume_token(&crate::zfs::resume::ResumeTokenContents {
            toname: self.toname.as_str().to_owned(),
            toguid: self.toguid,
            fromguid: self.fromguid,
            object: 1,
            offset: self.bytes,
            bytes: self.bytes,
            flags: Vec::new(),
            extra: vec![(Self::TARGET_PAIR.into(), self.target.as_str().to_owned())],
        })
    }

    /// Decodes a token, saying why it is corrupt.
    pub(crate) fn decode(token: &str) -> Result<Self, String> {
        let c = crate::zfs::resume::decode_resume_token(token).map_err(|e| e.to_string())?;
        let corrupt = || "resume token is corrupt (invalid format)".to_string();
        let target = c
            .extra
            .iter()
            .find(|(k, _)| k == Self::TARGET_PAIR)
            .and_then(|(_, v)| DatasetName::parse(v).ok())
            .ok_or_else(corrupt)?;
        Ok(Self {
            toname: SnapshotName::parse(&c.toname).map_err(|_| corrupt())?,
            toguid: c.toguid,
            fromguid: c.fromguid,
            bytes: c.bytes,
            target,
        })
    }
}
