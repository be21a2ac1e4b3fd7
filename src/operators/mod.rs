//! Operators of the console: their roles, checked addresses and passwords, and the Argon2id
//! hashing of those passwords. The rules (who may manage operators, sessions) are in
//! [`crate::app::operators`]; the rows in [`crate::store::operators`].

use std::fmt;
use std::str::FromStr;
use std::sync::LazyLock;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use rand::RngCore;
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;

use crate::subscribers::SubscriberEmail;

pub mod totp;

/// What an operator may do: an owner also manages operators; an editor runs the newsletter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Owner,
    Editor,
}

impl Role {
    pub const ALL: [Role; 2] = [Role::Owner, Role::Editor];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Owner => "owner",
            Role::Editor => "editor",
        }
    }
}

impl FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| format!("{s:?} is not a role (owner or editor)"))
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An operator's address, checked with the same rules as a subscriber's (one canonical form).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OperatorEmail(SubscriberEmail);

impl OperatorEmail {
    pub fn parse(input: &str) -> Result<OperatorEmail, String> {
        SubscriberEmail::parse(input)
            .map(OperatorEmail)
            .map_err(|e| e.0)
    }

    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }
}

impl fmt::Display for OperatorEmail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Fewest characters a password may have.
pub const MIN_PASSWORD_CHARS: usize = 12;
/// Most bytes a password may have (hashing is costly; nobody types more).
pub const MAX_PASSWORD_BYTES: usize = 1024;

/// A password that meets the policy; never printed.
#[derive(Clone)]
pub struct Password(SecretString);

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(…)")
    }
}

impl Password {
    /// At least [`MIN_PASSWORD_CHARS`] characters, at most [`MAX_PASSWORD_BYTES`] bytes, no
    /// control characters (a pasted newline is a mistake, not part of the password).
    pub fn parse(input: &str) -> Result<Password, String> {
        if input.chars().count() < MIN_PASSWORD_CHARS {
            return Err(format!(
                "the password must have at least {MIN_PASSWORD_CHARS} characters"
            ));
        }
        if input.len() > MAX_PASSWORD_BYTES {
            return Err(format!(
                "the password must have at most {MAX_PASSWORD_BYTES} bytes"
            ));
        }
        if input.chars().any(char::is_control) {
            return Err("the password must not contain control characters".into());
        }
        Ok(Password(SecretString::from(input.to_string())))
    }

    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }
}

/// Argon2id with the OWASP-recommended parameters (19 MiB, 2 passes, 1 lane).
fn hasher() -> Argon2<'static> {
    Argon2::new(Algorithm::Argon2id, Version::V0x13, Params::default())
}

/// Hashes a password into a PHC string (`$argon2id$v=19$…`) with a fresh random salt.
/// CPU-bound for tens of milliseconds: call it off the async threads.
pub fn hash_password(password: &Password) -> anyhow::Result<String> {
    let mut salt = [0u8; 16];
    rand::rng().fill_bytes(&mut salt);
    let salt = SaltString::encode_b64(&salt).map_err(|e| anyhow::anyhow!("salt: {e}"))?;
    Ok(hasher()
        .hash_password(password.expose().as_bytes(), &salt)
        .map_err(|e| anyhow::anyhow!("hashing the password: {e}"))?
        .to_string())
}

/// Whether `candidate` matches the PHC string `hash` (false for a malformed hash).
pub fn verify_password(hash: &str, candidate: &str) -> bool {
    match PasswordHash::new(hash) {
        Ok(parsed) => hasher()
            .verify_password(candidate.as_bytes(), &parsed)
            .is_ok(),
        Err(_) => false,
    }
}

/// A hash of no one's password: verified against when the address is unknown, so a login for
/// an unknown address costs as long as one for a known address.
pub fn dummy_hash() -> &'static str {
    static DUMMY: LazyLock<String> = LazyLock::new(|| {
        let mut bytes = [0u8; 24];
        rand::rng().fill_bytes(&mut bytes);
        let password = Password::parse(&hex::encode(bytes)).expect("48 hex characters");
        hash_password(&password).expect("hashing a random password")
    });
    &DUMMY
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_follow_the_policy() {
        for (input, expected) in [
            ("short", Some("at least 12")),
            ("elevenchars", Some("at least 12")),
            ("twelve chars", None),
            ("with\nnewline-inside", Some("control characters")),
            (&"x".repeat(1025), Some("at most 1024")),
        ] {
            match (Password::parse(input), expected) {
                (Ok(_), None) => {}
                (Err(e), Some(want)) => assert!(e.contains(want), "{input:?}: {e}"),
                (got, want) => panic!("{input:?}: got {got:?}, wanted {want:?}"),
            }
        }
    }

    #[test]
    fn hashes_are_argon2id_and_verify() {
        let p = Password::parse("correct horse battery").unwrap();
        let h = hash_password(&p).unwrap();
        assert!(h.starts_with("$argon2id$v=19$"), "{h}");
        assert!(verify_password(&h, "correct horse battery"));
        assert!(!verify_password(&h, "correct horse battery!"));
        assert!(!verify_password("not a hash", "correct horse battery"));
        assert_ne!(h, hash_password(&p).unwrap(), "a fresh salt every time");
        assert!(!verify_password(dummy_hash(), "correct horse battery"));
    }

    #[test]
    fn roles_parse() {
        assert_eq!("owner".parse::<Role>(), Ok(Role::Owner));
        assert_eq!("editor".parse::<Role>(), Ok(Role::Editor));
        assert!(
            "admin"
                .parse::<Role>()
                .unwrap_err()
                .contains("owner or editor")
        );
    }
}
