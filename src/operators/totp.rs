//! Two-factor sign-in for operators: RFC 6238 one-time codes (SHA-1, 6 digits, 30-second steps,
//! one step of clock skew either way — what every authenticator app speaks) and single-use
//! recovery codes.
//!
//! - The secret (20 random bytes) is stored sealed with AES-256-GCM under a key derived from
//!   `security.secret_key` (HMAC-SHA256 of a fixed label), with the operator's id as associated
//!   data: a copy of the database alone gives neither the secret nor a secret that works for
//!   another operator's row.
//! - Recovery codes are 10 characters of Crockford base32 (50 bits), shown once as `xxxxx-xxxxx`
//!   and stored as HMAC-SHA256 keyed with `security.secret_key`.
//! - Accepting a code only once per step is the store's part (`last_step`, see
//!   [`crate::app::operators`]); this module says which step a code belongs to.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use rand::RngCore;
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use sha2::Sha256;
use totp_rs::{Algorithm, Builder, Totp};

use crate::config::SecretKey;

/// Seconds per code.
pub const STEP_SECONDS: u64 = 30;
/// Recovery codes made at each enrolment.
pub const RECOVERY_CODES: usize = 10;
/// Characters of one recovery code (without its hyphen).
const RECOVERY_LEN: usize = 10;
/// Crockford's base32 alphabet, lower case: no i, l, o, u to misread.
const RECOVERY_ALPHABET: &[u8; 32] = b"0123456789abcdefghjkmnpqrstvwxyz";
/// Bytes of a new secret (160 bits, RFC 4226's recommendation).
const SECRET_LEN: usize = 20;

/// What the login form's `totp` field holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecondFactor {
    /// Six digits from the authenticator app.
    Code(String),
    /// A recovery code, normalised (lower case, no hyphen or spaces).
    Recovery(String),
}

/// Reads the `totp` field: empty → `Ok(None)`; six digits (spaces allowed, as apps show
/// `123 456`) → a code; ten characters of the recovery alphabet (hyphens, spaces and case
/// ignored) → a recovery code; anything else → `Err` with what was expected.
pub fn parse_field(input: &str) -> Result<Option<SecondFactor>, &'static str> {
    if input.len() > 64 {
        return Err("a code is six digits, a recovery code ten letters and digits");
    }
    let compact: String = input
        .chars()
        .filter(|c| !matches!(c, ' ' | '-' | '\t'))
        .collect();
    if compact.is_empty() {
        return Ok(None);
    }
    if compact.len() == 6 && compact.bytes().all(|b| b.is_ascii_digit()) {
        return Ok(Some(SecondFactor::Code(compact)));
    }
    let lower = compact.to_ascii_lowercase();
    if lower.len() == RECOVERY_LEN && lower.bytes().all(|b| RECOVERY_ALPHABET.contains(&b)) {
        return Ok(Some(SecondFactor::Recovery(lower)));
    }
    Err("a code is six digits, a recovery code ten letters and digits")
}

/// A new random secret.
pub fn new_secret() -> Vec<u8> {
    let mut secret = vec![0u8; SECRET_LEN];
    rand::rng().fill_bytes(&mut secret);
    secret
}

/// The generator for `secret`, labelled for the app with `issuer` and `account`.
fn generator(secret: &[u8], issuer: &str, account: &str) -> Totp {
    // otpauth labels may not contain ':'.
    let issuer = issuer.replace(':', " ");
    let account = account.replace(':', " ");
    Builder::new()
        .with_algorithm(Algorithm::SHA1)
        .with_digits(6)
        .with_skew(1)
        .with_step_duration(STEP_SECONDS)
        .with_secret(secret.to_vec())
        .with_issuer(Some(issuer))
        .with_account_name(account)
        .build()
        .expect("a 20-byte secret, 6 digits and a 30 s step are valid RFC 6238 parameters")
}

/// The `otpauth://totp/…` URI an authenticator app enrols from.
pub fn otpauth_uri(secret: &[u8], issuer: &str, account: &str) -> String {
    generator(secret, issuer, account)
        .to_url()
        .expect("issuer and account are set")
}

/// The code for `secret` at Unix time `now` (tests, and the CLI's self-check).
pub fn code_at(secret: &[u8], now: u64) -> String {
    generator(secret, "x", "x").generate(now).to_string()
}

/// The step (`now / 30`, one either side allowed) `code` is valid for, if any.
pub fn matching_step(secret: &[u8], code: &str, now: u64) -> Option<u64> {
    generator(secret, "x", "x").check(code, now)
}

/// The URI as an SVG QR code (black on white, at least 220 px), for the console's page.
pub fn qr_svg(uri: &str) -> String {
    use qrcode::render::svg;
    qrcode::QrCode::new(uri.as_bytes())
        .expect("an otpauth URI fits a QR code")
        .render::<svg::Color<'_>>()
        .min_dimensions(220, 220)
        .quiet_zone(true)
        .build()
}

type HmacSha256 = Hmac<Sha256>;

fn derived(secret_key: &SecretKey, label: &[u8]) -> [u8; 32] {
    let mut mac = HmacSha256::new_from_slice(secret_key.as_bytes()).expect("any key length");
    mac.update(label);
    mac.finalize().into_bytes().into()
}

fn sealing_key(secret_key: &SecretKey) -> LessSafeKey {
    let key = derived(secret_key, b"verdicts operator totp secret v1");
    LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &key).expect("a 32-byte AES-256 key"))
}

/// `secret` sealed for `operator_id`: base64 of nonce ‖ ciphertext ‖ tag.
pub fn seal(secret_key: &SecretKey, operator_id: i64, secret: &[u8]) -> String {
    let mut nonce = [0u8; NONCE_LEN];
    rand::rng().fill_bytes(&mut nonce);
    let mut sealed = secret.to_vec();
    sealing_key(secret_key)
        .seal_in_place_append_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(operator_id.to_be_bytes()),
            &mut sealed,
        )
        .expect("sealing 20 bytes");
    let mut out = nonce.to_vec();
    out.extend_from_slice(&sealed);
    STANDARD.encode(out)
}

/// The secret [`seal`] sealed for `operator_id`; `None` when it was not (another key, another
/// operator's row, a changed byte).
pub fn unseal(secret_key: &SecretKey, operator_id: i64, sealed: &str) -> Option<Vec<u8>> {
    let bytes = STANDARD.decode(sealed).ok()?;
    if bytes.len() < NONCE_LEN {
        return None;
    }
    let (nonce, rest) = bytes.split_at(NONCE_LEN);
    let mut rest = rest.to_vec();
    let plain = sealing_key(secret_key)
        .open_in_place(
            Nonce::try_assume_unique_for_key(nonce).ok()?,
            Aad::from(operator_id.to_be_bytes()),
            &mut rest,
        )
        .ok()?;
    Some(plain.to_vec())
}

/// [`RECOVERY_CODES`] new recovery codes, as shown (`xxxxx-xxxxx`).
pub fn new_recovery_codes() -> Vec<String> {
    let mut rng = rand::rng();
    (0..RECOVERY_CODES)
        .map(|_| {
            let chars: String = (0..RECOVERY_LEN)
                .map(|_| RECOVERY_ALPHABET[(rng.next_u32() % 32) as usize] as char)
                .collect();
            format!("{}-{}", &chars[..5], &chars[5..])
        })
        .collect()
}

/// What the database keeps of a recovery code (shown or normalised form alike).
pub fn recovery_hash(secret_key: &SecretKey, code: &str) -> String {
    let normal: String = code
        .chars()
        .filter(|c| !matches!(c, ' ' | '-'))
        .collect::<String>()
        .to_ascii_lowercase();
    let mut mac = HmacSha256::new_from_slice(&derived(secret_key, b"verdicts recovery code v1"))
        .expect("any key length");
    mac.update(normal.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn key() -> SecretKey {
        SecretKey::from_bytes(b"0123456789abcdef0123456789abcdef")
    }

    #[test]
    fn rfc_6238_test_vectors() {
        // RFC 6238 appendix B, SHA-1 (8 digits there; the last 6 are ours).
        let secret = b"12345678901234567890";
        for (time, eight) in [
            (59, "94287082"),
            (1_111_111_109, "07081804"),
            (1_234_567_890, "89005924"),
            (2_000_000_000, "69279037"),
        ] {
            assert_eq!(code_at(secret, time), eight[2..], "t = {time}");
        }
        assert_eq!(matching_step(secret, "287082", 59), Some(1));
        assert_eq!(
            matching_step(secret, "287082", 59 + 30),
            Some(1),
            "one step late"
        );
        assert_eq!(
            matching_step(secret, "287082", 59 + 60),
            None,
            "two steps late"
        );
        assert_eq!(matching_step(secret, "287083", 59), None);
    }

    #[test]
    fn sealed_secrets_open_only_with_their_key_and_row() {
        let secret = new_secret();
        let sealed = seal(&key(), 7, &secret);
        assert_eq!(unseal(&key(), 7, &sealed).as_deref(), Some(&secret[..]));
        assert_eq!(unseal(&key(), 8, &sealed), None, "another operator's row");
        let other = SecretKey::from_bytes(b"another key of at least 32 chars....");
        assert_eq!(unseal(&other, 7, &sealed), None, "another key");
        assert!(!sealed.contains(&STANDARD.encode(&secret)));
        assert_eq!(unseal(&key(), 7, "not base64!"), None);
    }

    #[test]
    fn the_uri_and_qr_code() {
        let uri = otpauth_uri(b"12345678901234567890", "Ship: or Skip", "ada@example.org");
        assert!(uri.starts_with("otpauth://totp/"), "{uri}");
        assert!(
            uri.contains("secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ"),
            "{uri}"
        );
        assert!(uri.contains("ada%40example.org") || uri.contains("ada@example.org"));
        let svg = qr_svg(&uri);
        assert!(svg.contains("<svg") && svg.contains("</svg>"));
    }

    #[test]
    fn recovery_codes_are_distinct_and_read_back() {
        let codes = new_recovery_codes();
        assert_eq!(codes.len(), RECOVERY_CODES);
        let mut unique = codes.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), RECOVERY_CODES);
        for code in &codes {
            assert_eq!(code.len(), 11);
            let Ok(Some(SecondFactor::Recovery(normal))) = parse_field(&code.to_uppercase()) else {
                panic!("{code} reads back");
            };
            assert_eq!(recovery_hash(&key(), &normal), recovery_hash(&key(), code));
        }
    }

    #[test]
    fn the_field_table() {
        use SecondFactor::*;
        for (input, expected) in [
            ("", Ok(None)),
            ("   ", Ok(None)),
            ("123456", Ok(Some(Code("123456".into())))),
            ("123 456", Ok(Some(Code("123456".into())))),
            ("abcde-fghjk", Ok(Some(Recovery("abcdefghjk".into())))),
            ("ABCDE FGHJK", Ok(Some(Recovery("abcdefghjk".into())))),
        ] {
            assert_eq!(parse_field(input), expected, "{input:?}");
        }
        for bad in [
            "12345",
            "1234567",
            "12345a",
            "abcde-fghji",
            "１２３４５６",
            "x".repeat(100).as_str(),
        ] {
            assert!(parse_field(bad).is_err(), "{bad:?}");
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]
        /// Any text: never panics; what is accepted is exactly six ASCII digits or ten
        /// characters of the recovery alphabet.
        #[test]
        fn the_field_parser_accepts_only_codes(input in "\\PC{0,80}") {
            match parse_field(&input) {
                Ok(None) => prop_assert!(input.chars().all(|c| matches!(c, ' ' | '-' | '\t'))),
                Ok(Some(SecondFactor::Code(c))) => {
                    prop_assert_eq!(c.len(), 6);
                    prop_assert!(c.bytes().all(|b| b.is_ascii_digit()));
                }
                Ok(Some(SecondFactor::Recovery(r))) => {
                    prop_assert_eq!(r.len(), RECOVERY_LEN);
                    prop_assert!(r.bytes().all(|b| RECOVERY_ALPHABET.contains(&b)));
                }
                Err(_) => {}
            }
        }

        /// Every real code and recovery code is read back as itself.
        #[test]
        fn real_codes_read_back(time in 0u64..4_000_000_000, spaced in any::<bool>()) {
            let code = code_at(b"12345678901234567890", time);
            let typed = if spaced { format!("{} {}", &code[..3], &code[3..]) } else { code.clone() };
            prop_assert_eq!(parse_field(&typed), Ok(Some(SecondFactor::Code(code))));
        }
    }
}
