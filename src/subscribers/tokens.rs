//! Tokens in links.
//!
//! - **Confirmation** tokens are 32 random bytes (base64url, 43 characters), stored only as a
//!   SHA-256 hash, single use, with an expiry.
//! - **Unsubscribe** tokens are `base64url(subscriber id ‖ HMAC-SHA256(secret, id)[..16])`
//!   (32 characters): unforgeable without `security.secret_key`, valid for every issue ever sent,
//!   and checked without a database lookup.
//! - **Suppression** entries are HMAC-SHA256(secret, address): an erased address can be
//!   recognised without being stored.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::{Digest, Sha256};

use crate::config::SecretKey;

type HmacSha256 = Hmac<Sha256>;

/// Length of a confirmation token in a link.
pub const CONFIRM_TOKEN_LEN: usize = 43;
/// Length of an unsubscribe token in a link.
pub const UNSUBSCRIBE_TOKEN_LEN: usize = 32;

fn is_base64url(s: &str) -> bool {
    s.bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// A new confirmation token: (the token for the link, its hash for the database).
pub fn new_confirm_token() -> (String, String) {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    let token = URL_SAFE_NO_PAD.encode(bytes);
    let hash = hash_confirm_token(&token);
    (token, hash)
}

/// The stored form of a confirmation token.
pub fn hash_confirm_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// Whether `token` has the shape of a confirmation token (else: 404 without a lookup).
pub fn is_confirm_token_shape(token: &str) -> bool {
    token.len() == CONFIRM_TOKEN_LEN && is_base64url(token)
}

fn mac(secret: &SecretKey, purpose: &str, data: &[u8]) -> [u8; 32] {
    let mut mac = HmacSha256::new_from_slice(secret.as_bytes()).expect("HMAC takes any key");
    mac.update(purpose.as_bytes());
    mac.update(data);
    mac.finalize().into_bytes().into()
}

/// The unsubscribe token of a subscriber.
pub fn unsubscribe_token(secret: &SecretKey, subscriber_id: i64) -> String {
    let id = subscriber_id.to_be_bytes();
    let tag = mac(secret, "verdicts/unsubscribe/v1:", &id);
    let mut raw = [0u8; 24];
    raw[..8].copy_from_slice(&id);
    raw[8..].copy_from_slice(&tag[..16]);
    URL_SAFE_NO_PAD.encode(raw)
}

/// The subscriber id an unsubscribe token stands for, if it is genuine.
pub fn verify_unsubscribe_token(secret: &SecretKey, token: &str) -> Option<i64> {
    if token.len() != UNSUBSCRIBE_TOKEN_LEN || !is_base64url(token) {
        return None;
    }
    let raw = URL_SAFE_NO_PAD.decode(token).ok()?;
    let (id, tag) = raw.split_at(8);
    let mut mac = HmacSha256::new_from_slice(secret.as_bytes()).expect("HMAC takes any key");
    mac.update(b"verdicts/unsubscribe/v1:");
    mac.update(id);
    let expected = mac.finalize().into_bytes();
    use subtle::ConstantTimeEq;
    if bool::from(expected[..16].ct_eq(tag)) {
        Some(i64::from_be_bytes(id.try_into().ok()?))
    } else {
        None
    }
}

/// The token of a reader's manage page (`/manage/{token}`): like the unsubscribe token
/// (`base64url(id ‖ HMAC-SHA256(secret, purpose ‖ id)[..16])`, 32 characters) under its own
/// purpose, so neither token opens the other's page.
pub fn manage_token(secret: &SecretKey, subscriber_id: i64) -> String {
    let id = subscriber_id.to_be_bytes();
    let tag = mac(secret, MANAGE_PURPOSE, &id);
    let mut raw = [0u8; 24];
    raw[..8].copy_from_slice(&id);
    raw[8..].copy_from_slice(&tag[..16]);
    URL_SAFE_NO_PAD.encode(raw)
}

const MANAGE_PURPOSE: &str = "verdicts/manage/v1:";

/// The subscriber id a manage token stands for, if it is genuine.
pub fn verify_manage_token(secret: &SecretKey, token: &str) -> Option<i64> {
    if token.len() != UNSUBSCRIBE_TOKEN_LEN || !is_base64url(token) {
        return None;
    }
    let raw = URL_SAFE_NO_PAD.decode(token).ok()?;
    let (id, tag) = raw.split_at(8);
    let expected = mac(secret, MANAGE_PURPOSE, id);
    use subtle::ConstantTimeEq;
    if bool::from(expected[..16].ct_eq(tag)) {
        Some(i64::from_be_bytes(id.try_into().ok()?))
    } else {
        None
    }
}

/// The token of a reader's "keep my subscription" link (`/keep/{token}`, from the
/// repermission mail): signed like [`manage_token`] under a purpose of its own.
pub fn keep_token(secret: &SecretKey, subscriber_id: i64) -> String {
    let id = subscriber_id.to_be_bytes();
    let tag = mac(secret, KEEP_PURPOSE, &id);
    let mut raw = [0u8; 24];
    raw[..8].copy_from_slice(&id);
    raw[8..].copy_from_slice(&tag[..16]);
    URL_SAFE_NO_PAD.encode(raw)
}

const KEEP_PURPOSE: &str = "verdicts/keep/v1:";

/// The subscriber id a keep token stands for, if it is genuine.
pub fn verify_keep_token(secret: &SecretKey, token: &str) -> Option<i64> {
    if token.len() != UNSUBSCRIBE_TOKEN_LEN || !is_base64url(token) {
        return None;
    }
    let raw = URL_SAFE_NO_PAD.decode(token).ok()?;
    let (id, tag) = raw.split_at(8);
    let expected = mac(secret, KEEP_PURPOSE, id);
    use subtle::ConstantTimeEq;
    if bool::from(expected[..16].ct_eq(tag)) {
        Some(i64::from_be_bytes(id.try_into().ok()?))
    } else {
        None
    }
}

/// The suppression key of an address (normalised, lower-case).
pub fn suppression_hash(secret: &SecretKey, email: &str) -> String {
    hex::encode(mac(
        secret,
        "verdicts/suppression/v1:",
        email.to_ascii_lowercase().as_bytes(),
    ))
}

/// The key the per-mailbox signup limit counts by: a MAC of
/// [`super::SubscriberEmail::mailbox_key`], so the table holds no address.
pub fn mailbox_hash(secret: &SecretKey, mailbox_key: &str) -> String {
    hex::encode(mac(secret, "verdicts/mailbox/v1:", mailbox_key.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(s: &str) -> SecretKey {
        crate::config::Settings::from_toml(&format!("[security]\nsecret_key = {s:?}"))
            .unwrap()
            .secret_key()
            .unwrap()
    }

    #[test]
    fn unsubscribe_tokens_round_trip_and_resist_forgery() {
        let k = key("0123456789abcdef0123456789abcdef-one");
        let t = unsubscribe_token(&k, 42);
        assert_eq!(t.len(), UNSUBSCRIBE_TOKEN_LEN);
        assert_eq!(verify_unsubscribe_token(&k, &t), Some(42));
        assert_eq!(unsubscribe_token(&k, 42), t, "stable for every issue");
        let other = key("0123456789abcdef0123456789abcdef-two");
        assert_eq!(verify_unsubscribe_token(&other, &t), None);
        // Changing the id without the key breaks the tag.
        let mut raw = URL_SAFE_NO_PAD.decode(&t).unwrap();
        raw[7] ^= 1;
        assert_eq!(
            verify_unsubscribe_token(&k, &URL_SAFE_NO_PAD.encode(raw)),
            None
        );
        assert_eq!(verify_unsubscribe_token(&k, "short"), None);
        assert_eq!(verify_unsubscribe_token(&k, &"!".repeat(32)), None);
    }

    #[test]
    fn keep_tokens_open_only_their_own_door() {
        let k = key("0123456789abcdef0123456789abcdef-one");
        let t = keep_token(&k, 7);
        assert_eq!(verify_keep_token(&k, &t), Some(7));
        assert_eq!(verify_keep_token(&k, &manage_token(&k, 7)), None);
        assert_eq!(verify_manage_token(&k, &t), None);
        assert_eq!(verify_unsubscribe_token(&k, &t), None);
    }

    #[test]
    fn confirm_tokens_are_random_and_hashed() {
        let (a, ha) = new_confirm_token();
        let (b, _) = new_confirm_token();
        assert_ne!(a, b);
        assert!(is_confirm_token_shape(&a));
        assert_eq!(hash_confirm_token(&a), ha);
        assert_ne!(ha, a);
        assert!(!is_confirm_token_shape("abc"));
    }
}
