//! [`NetStream`]: one agent connection, TLS-PSK or plain TCP (behind a local
//! stunnel), as one `Read + Write` object.

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::Duration;

use super::tls::TlsStream;

/// A connection to or from a peer.
#[derive(Debug)]
pub enum NetStream {
    /// TLS-PSK, ours end to end.
    Tls(Box<TlsStream>),
    /// Plain TCP: only to or from a stunnel on this host, which does the TLS.
    Plain(TcpStream),
}

impl NetStream {
    /// The peer's address.
    #[must_use]
    pub fn peer(&self) -> String {
        match self {
            Self::Tls(s) => s.peer().to_owned(),
            Self::Plain(s) => s
                .peer_addr()
                .map_or_else(|_| "<unknown peer>".to_owned(), |a| a.to_string()),
        }
    }

    /// A short description for logs: `TLSv1.3 TLS_AES_128_GCM_SHA256` or
    /// `plain TCP`.
    #[must_use]
    pub fn protocol(&self) -> String {
        match self {
            Self::Tls(s) => format!("{} {}", s.version(), s.cipher()),
            Self::Plain(_) => "plain TCP".to_owned(),
        }
    }

    /// Sets the read/write timeout (dead-peer detection).
    ///
    /// # Errors
    /// The socket's.
    pub fn set_io_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        match self {
            Self::Tls(s) => s.set_io_timeout(t),
            Self::Plain(s) => {
                s.set_read_timeout(t)?;
                s.set_write_timeout(t)
            }
        }
    }

    /// Ends our direction cleanly (TLS `close_notify`, then TCP FIN).
    ///
    /// # Errors
    /// The socket's.
    pub fn shutdown(&mut self) -> io::Result<()> {
        match self {
            Self::Tls(s) => s.shutdown(),
            Self::Plain(s) => match s.shutdown(Shutdown::Write) {
                Err(e) if e.kind() != io::ErrorKind::NotConnected => Err(e),
                _ => Ok(()),
            },
        }
    }
}

impl Read for NetStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Self::Tls(s) => s.read(buf),
            Self::Plain(s) => s.read(buf),
        }
    }
}

impl Write for NetStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Self::Tls(s) => s.write(buf),
            Self::Plain(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Self::Tls(s) => s.flush(),
            Self::Plain(s) => s.flush(),
        }
    }
}
