//! VERP (variable envelope return path): every issue message leaves with its own envelope sender
//! `bounces+TOKEN@domain`, so a bounce that comes back to that address names the (issue,
//! subscriber) it is about, whatever the report looks like and even when it quotes nothing.
//!
//! `TOKEN` is `ISSUE.SUBSCRIBER.TAG`: the two database ids in decimal and the first 10 bytes of
//! HMAC-SHA256(`security.secret_key`, both ids) in lowercase hex. Lowercase because some MTAs
//! lowercase local parts on the way back; 80 bits because a forged bounce must not be able to
//! unsubscribe anyone. Decimal ids keep the address readable for an operator in a mail log.

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::config::{MailSettings, ReturnPath, SecretKey};

type HmacSha256 = Hmac<Sha256>;

/// Bytes of the HMAC kept in a token (hex: twice as many characters).
const TAG_BYTES: usize = 10;
const PURPOSE: &[u8] = b"verdicts/verp/v1:";

/// What a VERP address names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VerpTarget {
    pub issue_id: i64,
    pub subscriber_id: i64,
}

fn mac(secret: &SecretKey, issue_id: i64, subscriber_id: i64) -> HmacSha256 {
    let mut mac = HmacSha256::new_from_slice(secret.as_bytes()).expect("HMAC takes any key");
    mac.update(PURPOSE);
    mac.update(&issue_id.to_be_bytes());
    mac.update(&subscriber_id.to_be_bytes());
    mac
}

/// The token of one (issue, subscriber).
pub fn token(secret: &SecretKey, target: VerpTarget) -> String {
    let tag = mac(secret, target.issue_id, target.subscriber_id)
        .finalize()
        .into_bytes();
    format!(
        "{}.{}.{}",
        target.issue_id,
        target.subscriber_id,
        hex::encode(&tag[..TAG_BYTES])
    )
}

/// The envelope sender of one issue message: `local+TOKEN@domain`.
pub fn address(
    return_path: &ReturnPath,
    secret: &SecretKey,
    target: VerpTarget,
) -> lettre::Address {
    let rp = &return_path.0;
    lettre::Address::new(
        format!("{}+{}", rp.user(), token(secret, target)),
        rp.domain(),
    )
    .expect("an ASCII local part with digits, dots and hex stays a valid address")
}

/// The envelope sender of an issue message: the VERP address when `mail.return_path` is set,
/// else the address of `mail.from`.
pub fn issue_sender(
    mail: &MailSettings,
    secret: &SecretKey,
    target: VerpTarget,
) -> lettre::Address {
    match &mail.return_path {
        Some(rp) => address(rp, secret, target),
        None => mail.from.0.email.clone(),
    }
}

/// The envelope sender of transactional mail (confirmations, welcomes): `mail.return_path`
/// itself (no VERP: those bounces need no attribution), else `mail.from`.
pub fn plain_sender(mail: &MailSettings) -> lettre::Address {
    match &mail.return_path {
        Some(rp) => rp.0.clone(),
        None => mail.from.0.email.clone(),
    }
}

/// Whether `address` has the shape of one of our VERP addresses (`local+…@domain`), signed
/// correctly or not.
pub fn looks_like_ours(return_path: &ReturnPath, address: &str) -> bool {
    let address = address.trim().trim_start_matches('<').trim_end_matches('>');
    let Some((local, domain)) = address.rsplit_once('@') else {
        return false;
    };
    domain.eq_ignore_ascii_case(return_path.0.domain())
        && local
            .split_once('+')
            .is_some_and(|(user, _)| user.eq_ignore_ascii_case(return_path.0.user()))
}

/// Reads a VERP address back: `Some` only for `local+TOKEN@domain` of our return path (compared
/// without regard to case) with a tag that verifies.
pub fn parse(return_path: &ReturnPath, secret: &SecretKey, address: &str) -> Option<VerpTarget> {
    let address = address.trim().trim_start_matches('<').trim_end_matches('>');
    let (local, domain) = address.rsplit_once('@')?;
    if !domain.eq_ignore_ascii_case(return_path.0.domain()) {
        return None;
    }
    let (user, token) = local.split_once('+')?;
    if !user.eq_ignore_ascii_case(return_path.0.user()) {
        return None;
    }
    let mut parts = token.split('.');
    let (issue, subscriber, tag) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || tag.len() != TAG_BYTES * 2 {
        return None;
    }
    let digits = |s: &str| !s.is_empty() && s.len() <= 18 && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(issue) || !digits(subscriber) {
        return None;
    }
    let target = VerpTarget {
        issue_id: issue.parse().ok()?,
        subscriber_id: subscriber.parse().ok()?,
    };
    let tag = hex::decode(tag.to_ascii_lowercase()).ok()?;
    // Constant-time comparison of the truncated tag.
    mac(secret, target.issue_id, target.subscriber_id)
        .verify_truncated_left(&tag)
        .ok()?;
    Some(target)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rp() -> ReturnPath {
        ReturnPath::try_from("bounces@shiporskip.example".to_string()).unwrap()
    }

    #[test]
    fn an_address_reads_back_and_cannot_be_forged() {
        let secret = crate::config::SecretKey::from_bytes(b"0123456789abcdef0123456789abcdef");
        let target = VerpTarget {
            issue_id: 12,
            subscriber_id: 345,
        };
        let a = address(&rp(), &secret, target).to_string();
        assert!(a.starts_with("bounces+12.345."), "{a}");
        assert!(a.ends_with("@shiporskip.example"), "{a}");
        assert_eq!(a, a.to_ascii_lowercase(), "survives MTAs that lowercase");
        assert_eq!(parse(&rp(), &secret, &a), Some(target));
        assert_eq!(parse(&rp(), &secret, &a.to_ascii_uppercase()), Some(target));
        assert_eq!(parse(&rp(), &secret, &format!("<{a}>")), Some(target));

        // Another subscriber with the same tag, a wrong key, another domain or user: nothing.
        let forged = a.replace("12.345.", "12.346.");
        assert_eq!(parse(&rp(), &secret, &forged), None);
        let other = crate::config::SecretKey::from_bytes(b"another-secret-another-secret-xx");
        assert_eq!(parse(&rp(), &other, &a), None);
        assert_eq!(
            parse(&rp(), &secret, &a.replace("shiporskip", "evil")),
            None
        );
        assert_eq!(parse(&rp(), &secret, &a.replace("bounces+", "news+")), None);
        for bad in [
            "bounces@shiporskip.example",
            "bounces+@shiporskip.example",
            "bounces+12.345@shiporskip.example",
            "bounces+x.345.00000000000000000000@shiporskip.example",
            "not an address",
        ] {
            assert_eq!(parse(&rp(), &secret, bad), None, "{bad}");
        }
    }
}
