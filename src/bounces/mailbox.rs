//! The bounce mailbox's address, parsed from `bounces.imap_url`: a leaf that configuration
//! imports without importing the IMAP client.

/// Where the bounce mailbox is, parsed from `bounces.imap_url`.
#[derive(Clone)]
pub struct Mailbox {
    pub host: String,
    pub port: u16,
    pub tls: bool,
    pub user: String,
    pub(super) password: String,
    pub folder: String,
}

impl std::fmt::Debug for Mailbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}://{}@{}:{}/{}",
            if self.tls { "imaps" } else { "imap" },
            self.user,
            self.host,
            self.port,
            self.folder
        )
    }
}

pub(crate) fn decode(s: &str) -> String {
    url::form_urlencoded::parse(format!("x={}", s.replace('+', "%2B")).as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_else(|| s.to_string())
}

impl Mailbox {
    /// Parses and checks an `imap(s)://user:pass@host[:port][/FOLDER]` URL.
    pub fn from_url(value: &str) -> Result<Mailbox, String> {
        let url = url::Url::parse(value).map_err(|e| format!("not a URL: {e}"))?;
        let tls = match url.scheme() {
            "imaps" => true,
            "imap" => false,
            other => return Err(format!("unsupported scheme {other:?} (use imaps://)")),
        };
        let host = url
            .host_str()
            .filter(|h| !h.is_empty())
            .ok_or("has no host")?
            .trim_matches(['[', ']'])
            .to_string();
        let loopback = host == "localhost"
            || host
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback());
        if !tls && !loopback {
            return Err(
                "imap:// sends the password in the clear: use imaps:// (plain IMAP only on loopback)"
                    .into(),
            );
        }
        if url.username().is_empty() || url.password().is_none() {
            return Err("needs a user and a password (imaps://user:pass@host/INBOX)".into());
        }
        let folder = decode(url.path().trim_start_matches('/'));
        Ok(Mailbox {
            port: url.port().unwrap_or(if tls { 993 } else { 143 }),
            host,
            tls,
            user: decode(url.username()),
            password: decode(url.password().unwrap_or_default()),
            folder: if folder.is_empty() {
                "INBOX".into()
            } else {
                folder
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_checked() {
        let m =
            Mailbox::from_url("imaps://bounces%40x.example:p%2Bw@imap.x.example/Bounces").unwrap();
        assert_eq!(
            (m.user.as_str(), m.password.as_str()),
            ("bounces@x.example", "p+w")
        );
        assert_eq!((m.port, m.tls, m.folder.as_str()), (993, true, "Bounces"));
        assert!(
            !format!("{m:?}").contains("p+w"),
            "the password stays out of logs"
        );
        let m = Mailbox::from_url("imap://u:p@127.0.0.1:1143").unwrap();
        assert_eq!((m.port, m.tls, m.folder.as_str()), (1143, false, "INBOX"));
        for (bad, msg) in [
            ("imap://u:p@imap.example.org/INBOX", "in the clear"),
            ("pop3://u:p@x.example", "unsupported scheme"),
            ("imaps://imap.example.org/INBOX", "user and a password"),
            ("not a url", "not a URL"),
        ] {
            let err = Mailbox::from_url(bad).unwrap_err();
            assert!(err.contains(msg), "{bad}: {err}");
        }
    }
}
