//! Secrets parser table tests and loopback client/server handshakes.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use super::*;

const K16: &str = "0123456789abcdeX"; // 16 ASCII bytes (not hex: the X)

/// A secrets file's text and the (identity, key) pairs it must give.
type Case = (String, Vec<(&'static str, Vec<u8>)>);
/// The server thread: (identity, version, cipher) of its one connection.
type Served = thread::JoinHandle<Result<(String, String, String), TlsError>>;

fn problem(text: &str) -> (usize, LineProblem) {
    match PskSecrets::parse(text.as_bytes()) {
        Err(SecretsError::Line { line, problem, .. }) => (line, problem),
        other => panic!("{text:?}: expected a line error, got {other:?}"),
    }
}

#[test]
fn parses_stunnel_lines() {
    // (file text, [(identity, key bytes)])
    let hex32 = "00112233445566778899aabbccddeeff";
    let cases: Vec<Case> = vec![
        (format!("a:{K16}\n"), vec![("a", K16.into())]),
        // No final newline, CRLF line ends, blank lines.
        (format!("a:{K16}"), vec![("a", K16.into())]),
        (format!("\r\n\na:{K16}\r\n\n"), vec![("a", K16.into())]),
        // An even number of hex digits is binary, in either case.
        (
            format!("a:{hex32}\n"),
            vec![(
                "a",
                vec![
                    0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb, 0xcc,
                    0xdd, 0xee, 0xff,
                ],
            )],
        ),
        (
            format!("a:{}\n", hex32.to_uppercase()),
            vec![(
                "a",
                vec![
                    0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xAA, 0xBB, 0xCC,
                    0xDD, 0xEE, 0xFF,
                ],
            )],
        ),
        // An odd number of hex digits is text.
        (
            "a:0123456789abcdef0123456789abcde\n".into(),
            vec![("a", b"0123456789abcdef0123456789abcde".to_vec())],
        ),
        // The key is everything after the first colon, spaces included.
        (
            format!("a: {K16}:x \n"),
            vec![("a", format!(" {K16}:x ").into_bytes())],
        ),
        // Identities keep their spaces, dots, dashes; order is kept.
        (
            format!(" off2 to-ovh3.x :{K16}\nb:{K16}\n"),
            vec![(" off2 to-ovh3.x ", K16.into()), ("b", K16.into())],
        ),
        // Our one extension: `#` comments.
        (
            format!("# off2 -> ovh3: rotated 2026\na:{K16}\n"),
            vec![("a", K16.into())],
        ),
        // UTF-8 identity.
        (format!("ovh3-é:{K16}\n"), vec![("ovh3-é", K16.into())]),
        // Longest identity and key.
        (
            format!("{}:{}\n", "i".repeat(255), "k".repeat(512)),
            vec![("", Vec::new())], // checked below by length
        ),
    ];
    for (text, want) in cases {
        let s = PskSecrets::parse(text.as_bytes()).unwrap_or_else(|e| panic!("{text:?}: {e}"));
        if want[0].1.is_empty() {
            assert_eq!(s.len(), 1);
            let (id, key) = s.client_identity(None).unwrap();
            assert_eq!((id.len(), key.len()), (255, 512));
            continue;
        }
        let got: Vec<(&str, Vec<u8>)> = s
            .identities()
            .map(|id| (id, s.key(id.as_bytes()).unwrap().as_bytes().to_vec()))
            .collect();
        assert_eq!(got, want, "{text:?}");
    }
}

#[test]
fn refuses_bad_lines() {
    let cases: Vec<(String, usize, LineProblem)> = vec![
        ("nocolon\n".into(), 1, LineProblem::NotIdentityKey),
        ("   \n".into(), 1, LineProblem::NotIdentityKey),
        (format!(":{K16}\n"), 1, LineProblem::EmptyIdentity),
        ("a:short\n".into(), 1, LineProblem::KeyTooShort(5)),
        ("a:\n".into(), 1, LineProblem::KeyTooShort(0)),
        // 16 hex digits are 8 bytes: too short, as stunnel says.
        (
            "a:0123456789abcdef\n".into(),
            1,
            LineProblem::KeyTooShort(8),
        ),
        (
            format!("a:{}\n", "k".repeat(513)),
            1,
            LineProblem::KeyTooLong(513),
        ),
        (
            format!("{}:{K16}\n", "i".repeat(256)),
            1,
            LineProblem::IdentityTooLong(256),
        ),
        (format!("a\tb:{K16}\n"), 1, LineProblem::IdentityControl),
        (
            format!("a\x1b[31m:{K16}\n"),
            1,
            LineProblem::IdentityControl,
        ),
        (format!("a\rb:{K16}\n"), 1, LineProblem::IdentityControl),
        (format!("a\0b:{K16}\n"), 1, LineProblem::Nul),
        (format!("a:{K16}\0\n"), 1, LineProblem::Nul),
        (
            format!("x:{K16}\n\na:{K16}\nx:{K16}y\n"),
            4,
            LineProblem::Duplicate {
                identity: "x".into(),
                first: 1,
            },
        ),
    ];
    for (text, line, want) in cases {
        assert_eq!(problem(&text), (line, want), "{text:?}");
    }
    // Not UTF-8.
    let mut bad = b"a\xff:".to_vec();
    bad.extend_from_slice(K16.as_bytes());
    assert!(matches!(
        PskSecrets::parse(&bad),
        Err(SecretsError::Line {
            problem: LineProblem::IdentityNotUtf8,
            ..
        })
    ));
    for empty in ["", "\n\n", "# only a comment\n"] {
        assert!(matches!(
            PskSecrets::parse(empty.as_bytes()),
            Err(SecretsError::Empty { .. })
        ));
    }
}

#[test]
fn errors_and_debug_never_show_keys() {
    let secret = "SUPERSECRETKEYBYTES";
    let s = PskSecrets::parse(format!("a:{secret}\n").as_bytes()).unwrap();
    assert!(!format!("{s:?}").contains(secret));
    assert!(!format!("{:?}", s.key(b"a").unwrap()).contains(secret));
    // A bad line's message has the line number but not the key.
    let e = PskSecrets::parse(format!("a:{secret}\nb:SUPERSHORT\n").as_bytes()).unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.contains("line 2") && !msg.contains("SUPERSHORT"),
        "{msg}"
    );
}

#[test]
fn client_identity_defaults_to_the_first() {
    let s = PskSecrets::parse(format!("b:{K16}\na:{K16}\n").as_bytes()).unwrap();
    assert_eq!(s.client_identity(None).unwrap().0, "b");
    assert_eq!(s.client_identity(Some("a")).unwrap().0, "a");
    assert!(matches!(
        s.client_identity(Some("c")),
        Err(SecretsError::NoSuchIdentity { .. })
    ));
    assert!(s.key(b"a\0").is_none());
    assert!(s.key(b"").is_none());
}

#[test]
fn load_refuses_insecure_files() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("psk.txt");
    std::fs::write(&path, format!("a:{K16}\n")).unwrap();
    for (mode, ok) in [
        (0o600, true),
        (0o400, true),
        (0o640, false),
        (0o604, false),
        (0o620, false),
        (0o644, false),
        (0o660, false),
    ] {
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        let r = PskSecrets::load(&path);
        assert_eq!(r.is_ok(), ok, "mode {mode:o}: {r:?}");
        if !ok {
            let msg = r.unwrap_err().to_string();
            assert!(msg.contains("chmod 600"), "{msg}");
        }
    }
    // Owned by someone else.
    let foreign = if secrets::effective_uid() == 0 {
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        std::os::unix::fs::chown(&path, Some(65534), Some(65534)).unwrap();
        path.clone()
    } else {
        "/etc/passwd".into()
    };
    let e = PskSecrets::load(&foreign).unwrap_err();
    assert!(matches!(e, SecretsError::WrongOwner { .. }), "{e}");
    // Missing, a directory, and a bad line with the path in the message.
    assert!(matches!(
        PskSecrets::load(&dir.path().join("none")),
        Err(SecretsError::Io { .. })
    ));
    assert!(matches!(
        PskSecrets::load(dir.path()),
        Err(SecretsError::NotAFile { .. } | SecretsError::InsecureMode { .. })
    ));
    let bad = dir.path().join("bad.txt");
    std::fs::write(&bad, "a:short\n").unwrap();
    std::fs::set_permissions(&bad, std::fs::Permissions::from_mode(0o600)).unwrap();
    let msg = PskSecrets::load(&bad).unwrap_err().to_string();
    assert!(msg.contains("bad.txt, line 1"), "{msg}");
}

// ---- loopback handshakes ----

fn secrets(pairs: &[(&str, &str)]) -> PskSecrets {
    PskSecrets::from_pairs(pairs.iter().map(|(i, k)| (*i, k.as_bytes()))).unwrap()
}

fn opts() -> TlsOptions {
    TlsOptions::default().with_setup_timeout(Duration::from_secs(5))
}

/// A server that accepts one connection, echoes what it reads until the
/// client's close_notify, and returns its handshake result.
fn echo_server(server: PskSecrets, o: TlsOptions) -> (String, Served) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap().to_string();
    let acceptor = TlsAcceptor::new(Arc::new(server), &o).unwrap();
    let h = thread::spawn(move || {
        let (tcp, _) = l.accept().unwrap();
        let mut s = acceptor.accept(tcp)?;
        let mut buf = vec![0; 1 << 16];
        loop {
            match s.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => s.write_all(&buf[..n]).unwrap(),
                Err(e) => panic!("server read: {e}"),
            }
        }
        s.shutdown().unwrap();
        Ok((
            s.identity().to_owned(),
            s.version().to_owned(),
            s.cipher().to_owned(),
        ))
    });
    (addr, h)
}

#[test]
fn loopback_tls13_and_tls12() {
    let table = [
        (TlsVersions::Auto, TlsVersions::Auto, "TLSv1.3"),
        (TlsVersions::Tls13, TlsVersions::Auto, "TLSv1.3"),
        (TlsVersions::Auto, TlsVersions::Tls12, "TLSv1.2"),
        (TlsVersions::Tls12, TlsVersions::Auto, "TLSv1.2"),
    ];
    for (client_v, server_v, want) in table {
        let (addr, h) = echo_server(
            secrets(&[("other", "0000000000000000"), ("off2 to ovh3", K16)]),
            opts().with_versions(server_v),
        );
        let c = TlsConnector::new(
            &secrets(&[("off2 to ovh3", K16)]),
            None,
            &opts().with_versions(client_v),
        )
        .unwrap();
        let mut s = c.connect(&addr).unwrap();
        assert_eq!(s.version(), want);
        // A bulk echo, bigger than a record and than the socket buffers.
        let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
        let mut got = Vec::new();
        for chunk in data.chunks(100_000) {
            s.write_all(chunk).unwrap();
            let mut part = vec![0; chunk.len()];
            s.read_exact(&mut part).unwrap();
            got.extend_from_slice(&part);
        }
        assert!(got == data);
        s.shutdown().unwrap();
        let mut rest = Vec::new();
        s.read_to_end(&mut rest).unwrap();
        assert!(rest.is_empty());
        let (id, version, cipher) = h.join().unwrap().unwrap();
        assert_eq!(id, "off2 to ovh3");
        assert_eq!(version, want);
        if want == "TLSv1.2" {
            assert!(cipher.starts_with("PSK-"), "{cipher}");
        } else {
            assert_eq!(cipher, "TLS_AES_128_GCM_SHA256");
        }
    }
}

#[test]
fn wrong_key_and_unknown_identity_are_refused_on_both_sides() {
    for v in [TlsVersions::Auto, TlsVersions::Tls12] {
        // Wrong key.
        let (addr, h) = echo_server(secrets(&[("a", K16)]), opts().with_versions(v));
        let c = TlsConnector::new(&secrets(&[("a", "another key 1234")]), None, &opts()).unwrap();
        let e = c.connect(&addr).unwrap_err();
        assert!(matches!(e, TlsError::Refused { .. }), "{v:?} client: {e}");
        assert!(e.is_auth_failure());
        let e = h.join().unwrap().unwrap_err();
        assert!(
            matches!(&e, TlsError::KeyMismatch { identity, .. } if identity == "a"),
            "{v:?} server: {e}"
        );

        // Unknown identity.
        let (addr, h) = echo_server(secrets(&[("a", K16)]), opts().with_versions(v));
        let c = TlsConnector::new(&secrets(&[("nobody-knows-me", K16)]), None, &opts()).unwrap();
        let e = c.connect(&addr).unwrap_err();
        assert!(matches!(e, TlsError::Refused { .. }), "{v:?} client: {e}");
        let e = h.join().unwrap().unwrap_err();
        assert!(
            matches!(&e, TlsError::UnknownIdentity { identity, .. } if identity == "nobody-knows-me"),
            "{v:?} server: {e}"
        );
        assert!(
            e.to_string()
                .contains("unknown identity \"nobody-knows-me\"")
        );
    }
}

/// A client handshake with any identity bytes (ours refuses to build one
/// with control characters).
fn raw_client(addr: &str, identity: &'static [u8], key: &'static [u8]) -> bool {
    use openssl::ssl::{SslContextBuilder, SslMethod};
    let mut b = SslContextBuilder::new(SslMethod::tls()).unwrap();
    b.set_cipher_list(TLS12_PSK_CIPHERS).unwrap();
    b.set_psk_client_callback(move |_, _, id, psk| {
        id[..identity.len()].copy_from_slice(identity);
        id[identity.len()] = 0;
        psk[..key.len()].copy_from_slice(key);
        Ok(key.len())
    });
    let ssl = openssl::ssl::Ssl::new(&b.build()).unwrap();
    ssl.connect(TcpStream::connect(addr).unwrap()).is_ok()
}

#[test]
fn hostile_identities_are_refused_and_escaped() {
    for (identity, want) in [
        (&b"a\x1b[2J\n\x7f"[..], "a\\u{1b}[2J\\n\\u{7f}"),
        (&b"a\xff"[..], "a\u{fffd}"),
        (&b"pool/a b:c"[..], "pool/a b:c"),
        // A prefix or an extension of a known identity.
        (&b"a "[..], "a "),
        (&b"b"[..], "b"),
    ] {
        let (addr, h) = echo_server(secrets(&[("a", K16), ("bb", K16)]), opts());
        assert!(!raw_client(&addr, identity, K16.as_bytes()));
        let e = h.join().unwrap().unwrap_err();
        match &e {
            TlsError::UnknownIdentity { identity, .. } => assert_eq!(identity, want),
            other => panic!("{other}"),
        }
        let msg = e.to_string();
        assert!(!msg.contains('\x1b') && !msg.contains('\n'), "{msg}");
    }
    // The same raw client with a good identity gets in.
    let (addr, h) = echo_server(secrets(&[("a", K16)]), opts());
    assert!(raw_client(&addr, b"a", K16.as_bytes()));
    drop(h);
}

#[test]
fn identities_are_escaped() {
    assert_eq!(escape_identity(b"a\x1b[2J\n"), "a\\u{1b}[2J\\n");
    assert_eq!(escape_identity(b"a\xffb"), "a\u{fffd}b");
    assert_eq!(escape_identity("pool/a b:c".as_bytes()), "pool/a b:c");
}

#[test]
fn version_mismatch_fails() {
    let (addr, h) = echo_server(
        secrets(&[("a", K16)]),
        opts().with_versions(TlsVersions::Tls12),
    );
    let c = TlsConnector::new(
        &secrets(&[("a", K16)]),
        None,
        &opts().with_versions(TlsVersions::Tls13),
    )
    .unwrap();
    assert!(c.connect(&addr).is_err());
    assert!(h.join().unwrap().is_err());
}

#[test]
fn garbage_and_plain_peers_fail_cleanly() {
    // A plain TCP client speaking garbage to the TLS server.
    let (addr, h) = echo_server(secrets(&[("a", K16)]), opts());
    let mut t = TcpStream::connect(&addr).unwrap();
    t.write_all(b"GET / HTTP/1.0\r\n\r\n").unwrap();
    let e = h.join().unwrap().unwrap_err();
    assert!(matches!(e, TlsError::Handshake { .. }), "{e}");
    drop(t);

    // A TLS client to a server that answers garbage.
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap().to_string();
    let srv = thread::spawn(move || {
        let (mut t, _) = l.accept().unwrap();
        let _ = t.write_all(&[0x42; 4096]);
        thread::sleep(Duration::from_millis(200));
    });
    let c = TlsConnector::new(&secrets(&[("a", K16)]), None, &opts()).unwrap();
    let e = c.connect(&addr).unwrap_err();
    assert!(matches!(e, TlsError::Handshake { .. }), "{e}");
    srv.join().unwrap();

    // Nobody listening.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let e = c.connect(&format!("127.0.0.1:{port}")).unwrap_err();
    assert!(matches!(e, TlsError::Connect { .. }), "{e}");
}

#[test]
fn silent_peer_times_out_and_cut_stream_is_truncated() {
    // The server completes the handshake, then neither reads nor writes.
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap().to_string();
    let acceptor = TlsAcceptor::new(Arc::new(secrets(&[("a", K16)])), &opts()).unwrap();
    let srv = thread::spawn(move || {
        let (tcp, _) = l.accept().unwrap();
        let mut s = acceptor.accept(tcp).unwrap();
        thread::sleep(Duration::from_millis(800));
        // Then a cut without close_notify.
        s.write_all(b"partial").unwrap();
        let _ = s.tcp().shutdown(std::net::Shutdown::Both);
    });
    let o = opts().with_io_timeout(Some(Duration::from_millis(300)));
    let c = TlsConnector::new(&secrets(&[("a", K16)]), None, &o).unwrap();
    let mut s = c.connect(&addr).unwrap();
    let mut buf = [0u8; 64];
    let t0 = std::time::Instant::now();
    let e = s.read(&mut buf).unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::TimedOut, "{e}");
    assert!(t0.elapsed() < Duration::from_secs(3));
    assert!(e.to_string().contains("dead or stuck peer"), "{e}");
    s.set_io_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut got = Vec::new();
    let e = loop {
        match s.read(&mut buf) {
            Ok(0) => panic!("a cut stream must not end cleanly"),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) => break e,
        }
    };
    assert_eq!(got, b"partial");
    assert_eq!(e.kind(), std::io::ErrorKind::UnexpectedEof, "{e}");
    srv.join().unwrap();
}

#[test]
fn options_round_trip_as_toml() {
    let o = TlsOptions::default().with_io_timeout(None);
    let text = toml::to_string(&o).unwrap();
    let back: TlsOptions = toml::from_str(&text).unwrap();
    assert_eq!(back, o);
    let partial: TlsOptions = toml::from_str("versions = \"tls12\"\nio-timeout = 30").unwrap();
    assert_eq!(partial.versions, TlsVersions::Tls12);
    assert_eq!(partial.io_timeout, Some(Duration::from_secs(30)));
    assert!(toml::from_str::<TlsOptions>("nope = 1").is_err());
}
