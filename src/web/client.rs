//! The one answer to "who is asking": [`ClientAddr`].
//!
//! Without a proxy it is the socket's peer. Behind one trusted reverse proxy
//! (`signup.trust_forwarded_for = true`) it is the entry that proxy appended to
//! `X-Forwarded-For` — the **rightmost** one. Everything to its left was written by the client
//! and proves nothing; taking the leftmost let one socket pose as any number of addresses.
//! Rate limits and consent records use this value and nothing else.

use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{Extensions, HeaderMap, Request};

use super::AppState;

/// The client's address, as far as this server can know it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddr(pub IpAddr);

/// The address the one trusted proxy appended: the last entry of the last `X-Forwarded-For`
/// line. `None` when there is none or it is not an address (then the socket peer counts).
pub fn forwarded_by_proxy(headers: &HeaderMap) -> Option<IpAddr> {
    let last_line = headers.get_all("x-forwarded-for").iter().next_back()?;
    let entry = last_line.to_str().ok()?.rsplit(',').next()?.trim();
    entry
        .parse::<IpAddr>()
        .ok()
        .or_else(|| entry.parse::<SocketAddr>().ok().map(|s| s.ip()))
}

/// The client address of a request from `peer` with `headers`.
pub fn client_addr(trust_forwarded_for: bool, headers: &HeaderMap, peer: IpAddr) -> IpAddr {
    if trust_forwarded_for {
        forwarded_by_proxy(headers).unwrap_or(peer)
    } else {
        peer
    }
}

impl ClientAddr {
    /// The client of a request with these extensions and headers.
    fn from_parts(extensions: &Extensions, headers: &HeaderMap, state: &AppState) -> ClientAddr {
        // Every connection gets ConnectInfo from the serve loop; a request built without one
        // (router tests) counts as coming from nowhere in particular.
        let peer = extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map_or(IpAddr::from([0, 0, 0, 0]), |c| c.0.ip());
        ClientAddr(client_addr(
            state.settings().signup.trust_forwarded_for,
            headers,
            peer,
        ))
    }

    /// The client of `request` (for middleware, which holds the whole request).
    pub fn of<B>(request: &Request<B>, state: &AppState) -> ClientAddr {
        Self::from_parts(request.extensions(), request.headers(), state)
    }
}

impl FromRequestParts<AppState> for ClientAddr {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        Ok(Self::from_parts(&parts.extensions, &parts.headers, state))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(lines: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for l in lines {
            h.append("x-forwarded-for", l.parse().unwrap());
        }
        h
    }

    #[test]
    fn the_rightmost_entry_is_the_one_the_proxy_wrote() {
        let peer: IpAddr = "10.0.0.1".parse().unwrap();
        let cases: [(&[&str], &str); 8] = [
            (&["203.0.113.7"], "203.0.113.7"),
            (&["1.1.1.1, 203.0.113.7"], "203.0.113.7"),
            (&["1.1.1.1,2.2.2.2 ,  203.0.113.7 "], "203.0.113.7"),
            (&["1.1.1.1", "203.0.113.7"], "203.0.113.7"),
            (&["2001:db8::1"], "2001:db8::1"),
            (&["1.1.1.1, 203.0.113.7:4711"], "203.0.113.7"),
            (&["1.1.1.1, not-an-ip"], "10.0.0.1"),
            (&[], "10.0.0.1"),
        ];
        for (lines, expected) in cases {
            assert_eq!(
                client_addr(true, &headers(lines), peer).to_string(),
                expected,
                "{lines:?}"
            );
        }
        assert_eq!(
            client_addr(false, &headers(&["1.1.1.1, 203.0.113.7"]), peer),
            peer,
            "not trusted: the socket"
        );
    }
}
