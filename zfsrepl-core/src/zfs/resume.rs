//! `receive_resume_token` decoding, without running `zfs send -nvt`.
//!
//! OpenZFS prints a token as `<version>-<checksum>-<length>-<hex>`:
//! - `version` is 1;
//! - `hex` is the zlib-compressed (`compress2`, so with a zlib header)
//!   packed nvlist, two hex digits per byte;
//! - `checksum` is word 0 of the fletcher-4 checksum of the compressed
//!   bytes (the sum of their little-endian 32-bit words; a last partial
//!   word is not counted);
//! - `length` is the size of the packed nvlist before compression.
//!
//! The nvlist is packed in the kernel's native encoding (`fnvlist_pack`):
//! a 4-byte header (encoding 0 = native, endianness 1 = little), the list's
//! version and flags (two 32-bit words), then one record per pair
//! (`size`, `name_sz`, reserved, `value_elem`, `type`; the name with its NUL;
//! the value at the next 8-byte boundary), ended by a record of size 0.
//!
//! The pairs a token carries: `object`, `offset`, `bytes`, `toguid`,
//! `toname`, `fromguid` (incremental streams only) and flags such as
//! `largeblockok`, `embedok`, `compressok`, `rawok` (boolean pairs without a
//! value). Other pairs are skipped.

use std::io::Read;

use serde::{Deserialize, Serialize};

use crate::name::Guid;

/// The only token version OpenZFS writes.
const TOKEN_VERSION: u32 = 1;

/// nvpair data types (`data_type_t`) the decoder reads.
const DATA_TYPE_BOOLEAN: i32 = 1;
const DATA_TYPE_UINT64: i32 = 8;
const DATA_TYPE_STRING: i32 = 9;
const DATA_TYPE_NVLIST: i32 = 19;
const DATA_TYPE_NVLIST_ARRAY: i32 = 20;

/// The decoded content of a `receive_resume_token`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResumeTokenContents {
    /// The snapshot being sent, by its name on the sending side
    /// (`toname`).
    pub toname: String,
    /// Its guid (`toguid`).
    pub toguid: Guid,
    /// The incremental base's guid (`fromguid`); `None` for a full stream.
    pub fromguid: Option<Guid>,
    /// The object the receiver reached.
    pub object: u64,
    /// The offset within that object.
    pub offset: u64,
    /// Stream bytes received so far.
    pub bytes: u64,
    /// Boolean flags set on the stream (`largeblockok`, `embedok`,
    /// `compressok`, `rawok`, ...), in token order.
    pub flags: Vec<String>,
    /// Other string pairs, in token order (a writer's extensions).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub extra: Vec<(String, String)>,
}

/// Why a token cannot be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResumeTokenError {
    /// Not `<version>-<checksum>-<length>-<hex>`, or not hex.
    #[error("resume token is corrupt (invalid format)")]
    Format,
    /// A version other than 1.
    #[error("resume token version {0} is not supported")]
    Version(u32),
    /// The checksum does not match the payload.
    #[error("resume token is corrupt (checksum mismatch)")]
    Checksum,
    /// The payload does not decompress to the announced length.
    #[error("resume token is corrupt (payload is not valid zlib data of the announced length)")]
    Compression,
    /// The nvlist is malformed or uses an encoding this decoder lacks.
    #[error("resume token is corrupt (nvlist: {0})")]
    Nvlist(String),
    /// A pair every token has is missing.
    #[error("resume token lacks {0}")]
    Missing(&'static str),
}

/// Fletcher-4 word 0 of `buf`: the sum of its little-endian 32-bit words.
fn fletcher4_a(buf: &[u8]) -> u64 {
    buf.chunks_exact(4).fold(0u64, |a, w| {
        a.wrapping_add(u64::from(u32::from_le_bytes([w[0], w[1], w[2], w[3]])))
    })
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) || !s.is_ascii() {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).ok())
        .collect()
}

/// Decodes a `receive_resume_token` as OpenZFS writes it.
///
/// # Errors
/// [`ResumeTokenError`] when the token is malformed, corrupt, of another
/// version, or lacks `toguid`/`toname`.
pub fn decode_resume_token(token: &str) -> Result<ResumeTokenContents, ResumeTokenError> {
    let mut parts = token.trim().splitn(4, '-');
    let (Some(version), Some(sum), Some(len), Some(hex)) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(ResumeTokenError::Format);
    };
    let version: u32 = version.parse().map_err(|_| ResumeTokenError::Format)?;
    if version != TOKEN_VERSION {
        return Err(ResumeTokenError::Version(version));
    }
    let sum = u64::from_str_radix(sum, 16).map_err(|_| ResumeTokenError::Format)?;
    let len = usize::from_str_radix(len, 16).map_err(|_| ResumeTokenError::Format)?;
    let compressed = unhex(hex).ok_or(ResumeTokenError::Format)?;
    if fletcher4_a(&compressed) != sum {
        return Err(ResumeTokenError::Checksum);
    }
    // Never trust the announced length for an allocation: read at most one
    // byte more than it, to notice a longer payload.
    let mut packed = Vec::with_capacity(len.min(1 << 16));
    flate2::read::ZlibDecoder::new(compressed.as_slice())
        .take(len as u64 + 1)
        .read_to_end(&mut packed)
        .map_err(|_| ResumeTokenError::Compression)?;
    if packed.len() != len {
        return Err(ResumeTokenError::Compression);
    }
    parse_nvlist(&packed)
}

/// A cursor over a packed nvlist in either byte order.
struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
    little: bool,
}

impl Cursor<'_> {
    fn bytes(&mut self, n: usize) -> Result<&[u8], ResumeTokenError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.buf.len())
            .ok_or_else(|| ResumeTokenError::Nvlist("truncated".into()))?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn u32(&mut self) -> Result<u32, ResumeTokenError> {
        let little = self.little;
        let b = self.bytes(4)?;
        let a = [b[0], b[1], b[2], b[3]];
        Ok(if little {
            u32::from_le_bytes(a)
        } else {
            u32::from_be_bytes(a)
        })
    }

    fn i32(&mut self) -> Result<i32, ResumeTokenError> {
        self.u32().map(|v| v as i32)
    }

    fn i16(&mut self) -> Result<i16, ResumeTokenError> {
        let little = self.little;
        let b = self.bytes(2)?;
        Ok(if little {
            i16::from_le_bytes([b[0], b[1]])
        } else {
            i16::from_be_bytes([b[0], b[1]])
        })
    }

    fn u64_at(&self, at: usize) -> Result<u64, ResumeTokenError> {
        let b = self
            .buf
            .get(at..at + 8)
            .ok_or_else(|| ResumeTokenError::Nvlist("truncated value".into()))?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(if self.little {
            u64::from_le_bytes(a)
        } else {
            u64::from_be_bytes(a)
        })
    }
}

const fn align8(n: usize) -> usize {
    (n + 7) & !7
}

/// Parses a native-encoded packed nvlist into the token's fields.
fn parse_nvlist(packed: &[u8]) -> Result<ResumeTokenContents, ResumeTokenError> {
    let nv = |m: &str| ResumeTokenError::Nvlist(m.into());
    let header = packed.get(..4).ok_or_else(|| nv("no header"))?;
    if header[0] != 0 {
        return Err(nv("not the native encoding"));
    }
    let mut c = Cursor {
        buf: packed,
        pos: 4,
        little: header[1] == 1,
    };
    let mut out = ResumeTokenContents {
        toname: String::new(),
        toguid: Guid(0),
        fromguid: None,
        object: 0,
        offset: 0,
        bytes: 0,
        flags: Vec::new(),
        extra: Vec::new(),
    };
    let (mut toguid, mut toname) = (None, None);
    pairs(&mut c, 0, &mut |name, ty, value_at, c| {
        match ty {
            DATA_TYPE_UINT64 => {
                let v = c.u64_at(value_at)?;
                match name {
                    "toguid" => toguid = Some(Guid(v)),
                    "fromguid" => out.fromguid = Some(Guid(v)),
                    "object" => out.object = v,
                    "offset" => out.offset = v,
                    "bytes" => out.bytes = v,
                    _ => {}
                }
            }
            DATA_TYPE_STRING => {
                let raw = &c.buf[value_at.min(c.buf.len())..];
                let end = raw
                    .iter()
                    .position(|&b| b == 0)
                    .ok_or_else(|| nv("unterminated string"))?;
                let s = String::from_utf8_lossy(&raw[..end]).into_owned();
                if name == "toname" {
                    toname = Some(s);
                } else {
                    out.extra.push((name.to_owned(), s));
                }
            }
            DATA_TYPE_BOOLEAN => out.flags.push(name.to_owned()),
            _ => {}
        }
        Ok(())
    })?;
    out.toguid = toguid.ok_or(ResumeTokenError::Missing("toguid"))?;
    out.toname = toname.ok_or(ResumeTokenError::Missing("toname"))?;
    Ok(out)
}

type PairFn<'f> = dyn FnMut(&str, i32, usize, &Cursor<'_>) -> Result<(), ResumeTokenError> + 'f;

/// Walks one (possibly embedded) list: version and flags, then pairs up to
/// the terminating zero size. Only the top level (`depth` 0) is reported.
fn pairs(c: &mut Cursor<'_>, depth: u32, f: &mut PairFn<'_>) -> Result<(), ResumeTokenError> {
    let nv = |m: &str| ResumeTokenError::Nvlist(m.into());
    if depth > 8 {
        return Err(nv("nested too deep"));
    }
    let _version = c.i32()?;
    let _flags = c.u32()?;
    loop {
        let start = c.pos;
        let size = c.i32()?;
        if size == 0 {
            return Ok(());
        }
        let size = usize::try_from(size).map_err(|_| nv("negative pair size"))?;
        let name_sz = usize::try_from(c.i16()?).map_err(|_| nv("negative name size"))?;
        let _reserved = c.i16()?;
        let _elems = c.i32()?;
        let ty = c.i32()?;
        if size < 16 + name_sz || start + size > c.buf.len() || name_sz == 0 {
            return Err(nv("pair out of bounds"));
        }
        let name_raw = c.bytes(name_sz)?.to_vec();
        let name = std::str::from_utf8(&name_raw[..name_sz - 1]).map_err(|_| nv("name"))?;
        let value_at = start + align8(16 + name_sz);
        if depth == 0 {
            f(name, ty, value_at, c)?;
        }
        c.pos = start + size;
        match ty {
            // An embedded list follows its pair.
            DATA_TYPE_NVLIST => pairs(c, depth + 1, f)?,
            DATA_TYPE_NVLIST_ARRAY => return Err(nv("nvlist arrays are not supported")),
            _ => {}
        }
    }
}

/// Encodes `contents` as OpenZFS would (native little-endian nvlist, zlib,
/// fletcher-4): what the in-memory model puts in `receive_resume_token`, so
/// that the decoder is exercised on every model resume.
#[must_use]
pub fn encode_resume_token(contents: &ResumeTokenContents) -> String {
    let mut packed = vec![0u8, 1, 0, 0];
    packed.extend(0i32.to_le_bytes());
    // NV_UNIQUE_NAME
    packed.extend(1u32.to_le_bytes());
    let mut pair = |name: &str, ty: i32, elems: i32, value: &[u8]| {
        let name_sz = name.len() + 1;
        let value_len = align8(value.len());
        let size = align8(16 + name_sz) + value_len;
        let start = packed.len();
        packed.extend((size as i32).to_le_bytes());
        packed.extend((name_sz as i16).to_le_bytes());
        packed.extend(0i16.to_le_bytes());
        packed.extend(elems.to_le_bytes());
        packed.extend(ty.to_le_bytes());
        packed.extend(name.as_bytes());
        packed.push(0);
        packed.resize(start + align8(16 + name_sz), 0);
        packed.extend(value);
        packed.resize(start + size, 0);
    };
    if let Some(g) = contents.fromguid {
        pair("fromguid", DATA_TYPE_UINT64, 1, &g.0.to_le_bytes());
    }
    pair(
        "object",
        DATA_TYPE_UINT64,
        1,
        &contents.object.to_le_bytes(),
    );
    pair(
        "offset",
        DATA_TYPE_UINT64,
        1,
        &contents.offset.to_le_bytes(),
    );
    pair("bytes", DATA_TYPE_UINT64, 1, &contents.bytes.to_le_bytes());
    pair(
        "toguid",
        DATA_TYPE_UINT64,
        1,
        &contents.toguid.0.to_le_bytes(),
    );
    let mut s = contents.toname.as_bytes().to_vec();
    s.push(0);
    pair("toname", DATA_TYPE_STRING, 1, &s);
    for (k, v) in &contents.extra {
        let mut s = v.as_bytes().to_vec();
        s.push(0);
        pair(k, DATA_TYPE_STRING, 1, &s);
    }
    for flag in &contents.flags {
        pair(flag, DATA_TYPE_BOOLEAN, 0, &[]);
    }
    packed.extend(0i32.to_le_bytes());
    wrap_payload(&packed)
}

/// Wraps a packed nvlist as a version-1 token: zlib, fletcher-4 and hex,
/// as OpenZFS does (also how the fuzzer reaches the nvlist decoder).
pub(crate) fn wrap_payload(packed: &[u8]) -> String {
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::new(6));
    // Writing to a Vec cannot fail.
    let compressed = std::io::Write::write_all(&mut z, packed)
        .and_then(|()| z.finish())
        .unwrap_or_default();
    let hex: String = compressed.iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "{TOKEN_VERSION}-{:x}-{:x}-{hex}",
        fletcher4_a(&compressed),
        packed.len()
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    // Tokens left by OpenZFS on FreeBSD (`zroot/test/a`), with what
    // `zfs send -nvP -t` printed for them (published in zrepl's tests).
    const FULL: &str = "1-9baebea70-b8-789c636064000310a500c4ec50360710e72765a52697303030419460caa7a515a79680647ce0f26c48f2499525a9c5405ac3c90fabfe92fcf4d2cc140686b30972c7850efd0cd24092e704cbe725e6a632305415e5e797e803cd2ad14f743084b805001b201795";
    const INCREMENTAL: &str = "1-ef01e717e-e0-789c636064000310a501c49c50360710a715e5e7a69766a63040c1d904b9e342877e062900d9ec48eaf293b252934b181898a0ea30e4d3d28a534b40323e70793624f9a4ca92d46220fdc1ce0fabfe927c882bc46c8a0a9f71ad3baf8124cf0996cf4bcc4d6560a82acacf2fd1079a55a29fe86004710b00d8ae1f93";
    // ZoL 0.8.1, a raw (`-w`) incremental: flags `compressok`, `rawok`.
    const INC_RAW: &str = "1-1164f8d409-120-789c636064000310a501c49c50360710a715e5e7a69766a63040416445bb6a3cd7a2290a40363b92bafca4acd4e412060626a83a0cf9b4b4e2d412908c0e5c9e0d493ea9b224b51848f368eb61d55f920f714515bf9b3fc3c396ef0648f29c60f9bcc4dc54a07c516a414e414e62495a7e512ed0c812fde2a2648724b079dc0c087f26e7e71614a51617e76743c424a0ee81c9172596c3a41800dd2c2818";

    #[test]
    fn decodes_a_real_full_token() {
        let t = decode_resume_token(FULL).unwrap();
        assert_eq!(t.toname, "zroot/test/a@1");
        assert_eq!(t.toguid, Guid(0x52f9_c212_c71e_60cd));
        assert_eq!(t.fromguid, None);
        assert_eq!((t.object, t.offset, t.bytes), (2, 0x4c_0000, 0x4e_4228));
    }

    #[test]
    fn decodes_a_real_incremental_token() {
        let t = decode_resume_token(INCREMENTAL).unwrap();
        assert_eq!(t.toname, "zroot/test/a@2");
        assert_eq!(t.toguid, Guid(0xcfae_0ae6_7172_3c16));
        assert_eq!(t.fromguid, Some(Guid(0x52f9_c212_c71e_60cd)));
        assert_eq!((t.object, t.offset, t.bytes), (2, 0x4c_0000, 0x4e_3ef0));
        let raw = decode_resume_token(INC_RAW).unwrap();
        assert_eq!(raw.toname, "zreplplatformtest/src@b");
        assert_eq!(raw.fromguid, Some(Guid(0x94a2_0a5f_2587_7859)));
        assert_eq!(raw.toguid, Guid(0xf784_e100_4f46_0f7a));
        assert!(raw.flags.iter().any(|f| f == "rawok"), "{:?}", raw.flags);
        assert!(
            raw.flags.iter().any(|f| f == "compressok"),
            "{:?}",
            raw.flags
        );
    }

    #[test]
    fn corrupt_tokens_are_refused_with_the_reason() {
        let mut bad = FULL.to_owned();
        bad.replace_range(20..22, "00");
        assert_eq!(decode_resume_token(&bad), Err(ResumeTokenError::Checksum));
        assert_eq!(
            decode_resume_token("2-1-1-00"),
            Err(ResumeTokenError::Version(2))
        );
        assert_eq!(decode_resume_token("1-x"), Err(ResumeTokenError::Format));
        assert_eq!(
            decode_resume_token("1-0-1-0g"),
            Err(ResumeTokenError::Format)
        );
        // The right checksum over bytes that are not zlib.
        let junk = [1u8, 2, 3, 4, 5, 6, 7, 8];
        let tok = format!(
            "1-{:x}-10-{}",
            fletcher4_a(&junk),
            junk.iter().map(|b| format!("{b:02x}")).collect::<String>()
        );
        assert_eq!(
            decode_resume_token(&tok),
            Err(ResumeTokenError::Compression)
        );
    }

    #[test]
    fn encoding_round_trips() {
        let c = ResumeTokenContents {
            toname: "tank/with space@s 1".into(),
            toguid: Guid(u64::MAX),
            fromguid: Some(Guid(7)),
            object: 3,
            offset: 0x1000,
            bytes: 12345,
            flags: vec!["embedok".into(), "largeblockok".into()],
            extra: vec![("x:y".into(), "z".into())],
        };
        assert_eq!(decode_resume_token(&encode_resume_token(&c)).unwrap(), c);
        let full = ResumeTokenContents {
            fromguid: None,
            flags: Vec::new(),
            extra: Vec::new(),
            ..c
        };
        assert_eq!(
            decode_resume_token(&encode_resume_token(&full)).unwrap(),
            full
        );
    }
}
