//! Who is on the other end of a loopback TCP connection: the uid owning
//! the peer's socket, from `/proc/net/tcp` and `/proc/net/tcp6` (TCP has
//! no `SO_PEERCRED`). Lets a plain listener behind stunnel accept only
//! stunnel's user.

use std::io;
use std::net::{IpAddr, SocketAddr, TcpStream};

/// The uid that owns the socket at the far end of `stream`, when that
/// socket is on this host (loopback); `None` when it is not found.
///
/// # Errors
/// When the socket's addresses or `/proc/net/tcp*` cannot be read.
pub fn peer_uid(stream: &TcpStream) -> io::Result<Option<u32>> {
    let (ours, theirs) = (stream.local_addr()?, stream.peer_addr()?);
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let text = match std::fs::read_to_string(table) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        if let Some(uid) = find_uid(&text, theirs, ours) {
            return Ok(Some(uid));
        }
    }
    Ok(None)
}

/// The uid of the row whose local address is `local` and remote `remote`.
fn find_uid(table: &str, local: SocketAddr, remote: SocketAddr) -> Option<u32> {
    table.lines().skip(1).find_map(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 8 {
            return None;
        }
        let (l, r) = (parse_addr(f[1])?, parse_addr(f[2])?);
        (same(l, local) && same(r, remote))
            .then(|| f[7].parse().ok())
            .flatten()
    })
}

/// Equal, counting an IPv4-mapped IPv6 address as its IPv4 address.
fn same(a: SocketAddr, b: SocketAddr) -> bool {
    let canon = |ip: IpAddr| match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    };
    a.port() == b.port() && canon(a.ip()) == canon(b.ip())
}

/// `0100007F:08AE` (IPv4: one native-endian u32) or 32 hex digits (IPv6:
/// four native-endian u32 words), then the port in hex.
fn parse_addr(s: &str) -> Option<SocketAddr> {
    let (ip, port) = s.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let word = |i: usize| -> Option<[u8; 4]> {
        let w = u32::from_str_radix(ip.get(i * 8..i * 8 + 8)?, 16).ok()?;
        Some(w.to_ne_bytes())
    };
    let ip = match ip.len() {
        8 => IpAddr::from(word(0)?),
        32 => {
            let mut b = [0u8; 16];
            for i in 0..4 {
                b[i * 4..i * 4 + 4].copy_from_slice(&word(i)?);
            }
            IpAddr::from(b)
        }
        _ => return None,
    };
    Some(SocketAddr::new(ip, port))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    #[test]
    fn parses_proc_addresses() {
        // Little-endian hosts (the x86 and arm machines this runs on).
        if cfg!(target_endian = "little") {
            assert_eq!(
                parse_addr("0100007F:08AE"),
                Some("127.0.0.1:2222".parse().unwrap())
            );
            assert_eq!(
                parse_addr("00000000000000000000000001000000:0016"),
                Some("[::1]:22".parse().unwrap())
            );
            assert_eq!(
                parse_addr("0000000000000000FFFF00000100007F:0050"),
                Some("[::ffff:127.0.0.1]:80".parse().unwrap())
            );
        }
        assert_eq!(parse_addr("nonsense"), None);
        assert_eq!(parse_addr("0100007F:zz"), None);
        assert!(same(
            "[::ffff:127.0.0.1]:80".parse().unwrap(),
            "127.0.0.1:80".parse().unwrap()
        ));
    }

    #[test]
    fn finds_our_own_uid_on_loopback() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let c = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (s, _) = l.accept().unwrap();
        let me = crate::transport::tls::secrets_effective_uid();
        assert_eq!(peer_uid(&s).unwrap(), Some(me));
        drop(c);
    }
}
