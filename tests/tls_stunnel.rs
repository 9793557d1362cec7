//! Interoperability of `transport::tls` with a real stunnel (Debian's
//! `stunnel4`), both ways, with TLS 1.3 and with stunnel's TLS 1.2
//! `ciphers = PSK`:
//!
//! (a) zfsrepl TLS client -> stunnel server -> plain TCP backend;
//! (b) plain TCP -> stunnel client -> zfsrepl TLS server.
//!
//! A wrong key and an unknown identity are refused on both sides. Never
//! skips: without `stunnel` it fails (`.ci/run` installs `stunnel4`).

#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::Duration;

use zfsrepl_core::testing::stunnel::{Stunnel, StunnelSpec, StunnelTls};
use zfsrepl_core::transport::tls::{
    PskSecrets, TlsAcceptor, TlsConnector, TlsError, TlsOptions, TlsStream,
};

const ID: &str = "off2 to ovh3.products";
/// 32 random bytes in hex: stunnel decodes them to binary, so must we.
const KEY: &str = "5f1c0e6a2b9d4c7e8f0a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f6a";
const OTHER_KEY: &str = "0f1c0e6a2b9d4c7e8f0a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f6a";

const MODES: [StunnelTls; 2] = [StunnelTls::Tls13, StunnelTls::Tls12Psk];

fn want_version(t: StunnelTls) -> &'static str {
    match t {
        StunnelTls::Tls12Psk => "TLSv1.2",
        _ => "TLSv1.3",
    }
}

fn secrets(text: &str) -> PskSecrets {
    PskSecrets::parse(text.as_bytes()).unwrap()
}

fn opts() -> TlsOptions {
    TlsOptions::default().with_setup_timeout(Duration::from_secs(10))
}

fn pattern(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 7 % 253) as u8).collect()
}

/// A plain TCP backend that echoes each connection until EOF, then closes
/// it, and counts the connections it accepted.
struct Echo {
    addr: String,
    accepted: Arc<AtomicUsize>,
}

fn echo_backend() -> Echo {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap().to_string();
    let accepted = Arc::new(AtomicUsize::new(0));
    let n = accepted.clone();
    thread::spawn(move || {
        for conn in l.incoming() {
            let Ok(mut c) = conn else { continue };
            n.fetch_add(1, Ordering::SeqCst);
            thread::spawn(move || {
                let mut r = c.try_clone().unwrap();
                let _ = std::io::copy(&mut r, &mut c);
                let _ = c.shutdown(std::net::Shutdown::Write);
            });
        }
    });
    Echo { addr, accepted }
}

/// Sends `data` over a TLS stream while reading the echo on the same
/// thread, chunk by chunk (TlsStream is not split across threads).
fn round_trip(s: &mut TlsStream, data: &[u8]) -> Vec<u8> {
    let mut got = Vec::with_capacity(data.len());
    for chunk in data.chunks(64 * 1024) {
        s.write_all(chunk).unwrap();
        let mut part = vec![0; chunk.len()];
        s.read_exact(&mut part).unwrap();
        got.extend_from_slice(&part);
    }
    got
}

// ---- (a) zfsrepl client -> stunnel server -> plain backend ----

#[test]
fn zfsrepl_client_to_stunnel_server() {
    for tls in MODES {
        let echo = echo_backend();
        let st = Stunnel::start(&StunnelSpec {
            client: false,
            connect: echo.addr.clone(),
            secrets: format!("other:{OTHER_KEY}\n{ID}:{KEY}\n"),
            identity: None,
            tls,
        });
        let c = TlsConnector::new(&secrets(&format!("{ID}:{KEY}\n")), Some(ID), &opts()).unwrap();
        let mut s = c.connect(&st.addr()).unwrap();
        assert_eq!(s.version(), want_version(tls), "{tls:?}");
        let data = pattern(4 << 20);
        assert!(round_trip(&mut s, &data) == data, "{tls:?}: echo differs");
        // Our close_notify reaches the backend as EOF; the backend closes
        // and stunnel ends the TLS side: a clean end for us.
        s.shutdown().unwrap();
        let mut rest = Vec::new();
        let end = s.read_to_end(&mut rest);
        assert!(rest.is_empty());
        assert!(end.is_ok(), "{tls:?}: stunnel's end of stream: {end:?}");
        assert_eq!(echo.accepted.load(Ordering::SeqCst), 1);
        let log = st.log();
        assert!(
            log.contains(&format!("Key configured for PSK identity \"{ID}\"")),
            "{log}"
        );
    }
}

#[test]
fn stunnel_server_refuses_wrong_key_and_unknown_identity() {
    for tls in MODES {
        let echo = echo_backend();
        let st = Stunnel::start(&StunnelSpec {
            client: false,
            connect: echo.addr.clone(),
            secrets: format!("{ID}:{KEY}\n"),
            identity: None,
            tls,
        });
        for (who, file) in [
            ("wrong key", format!("{ID}:{OTHER_KEY}\n")),
            ("unknown identity", format!("stranger:{KEY}\n")),
        ] {
            let c = TlsConnector::new(&secrets(&file), None, &opts()).unwrap();
            let e = c.connect(&st.addr()).unwrap_err();
            assert!(matches!(e, TlsError::Refused { .. }), "{tls:?} {who}: {e}");
            assert!(e.is_auth_failure());
        }
        thread::sleep(Duration::from_millis(100));
        assert_eq!(
            echo.accepted.load(Ordering::SeqCst),
            0,
            "{tls:?}: a refused client reached the backend"
        );
    }
}

#[test]
fn backend_end_of_stream_reaches_zfsrepl_client_cleanly() {
    // The backend sends a block and closes: stunnel must end the TLS side
    // with close_notify, so our client sees a clean end, not a truncation.
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap().to_string();
    let data = pattern(3 << 20);
    let sent = data.clone();
    let backend = thread::spawn(move || {
        let (mut c, _) = l.accept().unwrap();
        c.write_all(&sent).unwrap();
    });
    let st = Stunnel::start(&StunnelSpec {
        client: false,
        connect: addr,
        secrets: format!("{ID}:{KEY}\n"),
        identity: None,
        tls: StunnelTls::Default,
    });
    let c = TlsConnector::new(&secrets(&format!("{ID}:{KEY}\n")), None, &opts()).unwrap();
    let mut s = c.connect(&st.addr()).unwrap();
    let mut got = Vec::new();
    s.read_to_end(&mut got).unwrap();
    assert!(got == data);
    backend.join().unwrap();
}

/// The server thread: (identity, version) of its one connection.
type Served = thread::JoinHandle<Result<(String, String), TlsError>>;

// ---- (b) plain TCP -> stunnel client -> zfsrepl server ----

/// A zfsrepl TLS-PSK server for one connection: echoes, returns the
/// identity and version, or the handshake error.
fn zfsrepl_server(file: &str) -> (String, Served) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap().to_string();
    let acceptor = TlsAcceptor::new(Arc::new(secrets(file)), &opts()).unwrap();
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
        Ok((s.identity().to_owned(), s.version().to_owned()))
    });
    (addr, h)
}

#[test]
fn stunnel_client_to_zfsrepl_server() {
    for tls in MODES {
        let (addr, server) = zfsrepl_server(&format!("other:{OTHER_KEY}\n{ID}:{KEY}\n"));
        let st = Stunnel::start(&StunnelSpec {
            client: true,
            connect: addr,
            secrets: format!("{ID}:{KEY}\n"),
            identity: Some(ID.to_owned()),
            tls,
        });
        let mut plain = TcpStream::connect(st.addr()).unwrap();
        plain
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        let data = pattern(4 << 20);
        let mut r = plain.try_clone().unwrap();
        let reader = thread::spawn(move || {
            let mut got = Vec::new();
            r.read_to_end(&mut got).unwrap();
            got
        });
        plain.write_all(&data).unwrap();
        plain.shutdown(std::net::Shutdown::Write).unwrap();
        let got = reader.join().unwrap();
        assert!(got == data, "{tls:?}: echo differs ({} bytes)", got.len());
        let (id, version) = server.join().unwrap().unwrap();
        assert_eq!(id, ID);
        assert_eq!(version, want_version(tls), "{tls:?}");
    }
}

#[test]
fn zfsrepl_server_refuses_stunnel_with_wrong_key_or_unknown_identity() {
    for tls in MODES {
        for (who, client_file, client_id) in [
            ("wrong key", format!("{ID}:{OTHER_KEY}\n"), ID),
            (
                "unknown identity",
                format!("stranger x:{KEY}\n"),
                "stranger x",
            ),
        ] {
            let (addr, server) = zfsrepl_server(&format!("{ID}:{KEY}\n"));
            let st = Stunnel::start(&StunnelSpec {
                client: true,
                connect: addr,
                secrets: client_file,
                identity: Some(client_id.to_owned()),
                tls,
            });
            let mut plain = TcpStream::connect(st.addr()).unwrap();
            plain
                .set_read_timeout(Some(Duration::from_secs(20)))
                .unwrap();
            let _ = plain.write_all(b"must never arrive");
            let e = server.join().unwrap().unwrap_err();
            match (&e, who) {
                (TlsError::KeyMismatch { identity, .. }, "wrong key") => {
                    assert_eq!(identity, ID);
                }
                (TlsError::UnknownIdentity { identity, .. }, "unknown identity") => {
                    assert_eq!(identity, "stranger x");
                }
                _ => panic!("{tls:?} {who}: {e}"),
            }
            // The plain side sees its connection end with no data.
            let mut got = Vec::new();
            let _ = plain.read_to_end(&mut got);
            assert!(got.is_empty(), "{tls:?} {who}");
        }
    }
}
