//! What the SMTP client trusts: the public roots (webpki-roots) plus the PEM bundle of
//! `smtp.ca_file` (a private relay's CA). Built once per process, in the two shapes the pool
//! needs: lettre's [`TlsParameters`] for STARTTLS, and a rustls client configuration for implicit
//! TLS (`smtps://`), where we wrap our own `TCP_NODELAY` socket before lettre reads the greeting.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use lettre::transport::smtp::client::{Certificate, TlsParameters};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

/// Trust for one SMTP server name; cheap to clone.
#[derive(Clone)]
pub struct TlsTrust {
    /// For STARTTLS through lettre.
    pub starttls: TlsParameters,
    connector: TlsConnector,
    server_name: ServerName<'static>,
}

impl TlsTrust {
    /// Trust for `host` (a DNS name or an IP address): public roots plus those in `ca_file`.
    pub fn new(host: &str, ca_file: Option<&Path>) -> anyhow::Result<TlsTrust> {
        let extra = match ca_file {
            Some(path) => read_bundle(path)?,
            None => Vec::new(),
        };
        let mut builder = TlsParameters::builder(host.to_string());
        for cert in &extra {
            builder = builder.add_root_certificate(
                Certificate::from_der(cert.to_vec())
                    .context("smtp.ca_file: a certificate lettre cannot use")?,
            );
        }
        let starttls = builder
            .build_rustls()
            .with_context(|| format!("smtp.url: TLS settings for {host}"))?;
        let mut roots = rustls::RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        for cert in extra {
            roots
                .add(cert)
                .context("smtp.ca_file: a certificate that is not a usable root")?;
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .context("TLS protocol versions")?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let server_name = ServerName::try_from(host.to_string())
            .with_context(|| format!("smtp.url: {host:?} is not a name TLS can verify"))?;
        Ok(TlsTrust {
            starttls,
            connector: TlsConnector::from(Arc::new(config)),
            server_name,
        })
    }

    /// The TLS handshake of implicit TLS on an open socket.
    pub async fn connect(&self, tcp: TcpStream) -> std::io::Result<ImplicitTls> {
        let stream = self
            .connector
            .connect(self.server_name.clone(), tcp)
            .await?;
        Ok(ImplicitTls(stream))
    }
}

/// Every certificate of a PEM bundle; an error names `smtp.ca_file`.
fn read_bundle(path: &Path) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let pem =
        std::fs::read(path).with_context(|| format!("smtp.ca_file: reading {}", path.display()))?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| {
            anyhow::anyhow!("smtp.ca_file: {} is not a PEM bundle: {e}", path.display())
        })?;
    anyhow::ensure!(
        !certs.is_empty(),
        "smtp.ca_file: {} holds no certificate",
        path.display()
    );
    Ok(certs)
}

/// A TLS stream lettre can speak SMTP over (its `AsyncTokioStream`).
#[derive(Debug)]
pub struct ImplicitTls(TlsStream<TcpStream>);

impl lettre::transport::smtp::client::AsyncTokioStream for ImplicitTls {
    fn peer_addr(&self) -> std::io::Result<std::net::SocketAddr> {
        self.0.get_ref().0.peer_addr()
    }
}

impl tokio::io::AsyncRead for ImplicitTls {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for ImplicitTls {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.0).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.0.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::TlsTrust;

    #[test]
    fn a_bad_ca_file_is_an_error_naming_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.pem");
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "no certificate here\n").unwrap();
        let broken = dir.path().join("broken.pem");
        std::fs::write(
            &broken,
            "-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        for (path, expected) in [
            (&missing, "reading"),
            (&empty, "holds no certificate"),
            (&broken, "smtp.ca_file"),
        ] {
            let err = TlsTrust::new("relay.example", Some(path))
                .err()
                .unwrap_or_else(|| panic!("{} was accepted", path.display()));
            let text = format!("{err:#}");
            assert!(
                text.starts_with("smtp.ca_file: ") && text.contains(expected),
                "{}: {text}",
                path.display()
            );
        }
        assert!(TlsTrust::new("relay.example", None).is_ok());
    }
}
