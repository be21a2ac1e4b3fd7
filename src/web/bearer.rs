//! `Authorization: Bearer <token>` checked in constant time.

use axum::http::{HeaderMap, header};
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Whether `headers` carry `Authorization: Bearer <expected>`. Both sides are hashed first, so
/// the comparison takes the same time whatever the given token's length or content.
pub fn bearer_matches(headers: &HeaderMap, expected: &SecretString) -> bool {
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .unwrap_or("");
    let given = Sha256::digest(given.as_bytes());
    let expected = Sha256::digest(expected.expose_secret().as_bytes());
    given.ct_eq(&expected).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_exact_token_matches() {
        let expected = SecretString::from("metrics-token-0123456789");
        let with = |v: &str| {
            let mut h = HeaderMap::new();
            h.insert(header::AUTHORIZATION, v.parse().unwrap());
            h
        };
        assert!(bearer_matches(
            &with("Bearer metrics-token-0123456789"),
            &expected
        ));
        for wrong in [
            "Bearer metrics-token-012345678",
            "Bearer metrics-token-01234567890",
            "bearer metrics-token-0123456789",
            "Basic metrics-token-0123456789",
            "metrics-token-0123456789",
            "Bearer ",
        ] {
            assert!(!bearer_matches(&with(wrong), &expected), "{wrong}");
        }
        assert!(!bearer_matches(&HeaderMap::new(), &expected));
    }
}
