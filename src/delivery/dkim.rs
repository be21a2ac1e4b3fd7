//! DKIM signing set-up from `dkim.*`: rsa-sha256 (PKCS#1 PEM key) or ed25519-sha256 (base64 of
//! the 32-byte seed), always **relaxed/relaxed** — lettre's default (simple header
//! canonicalisation) has failed independent verification once headers are refolded in transit.

use std::sync::Arc;

use anyhow::Context;
use lettre::message::dkim::{
    DkimCanonicalization, DkimCanonicalizationType, DkimConfig, DkimSigningAlgorithm,
    DkimSigningKey,
};
use lettre::message::header::HeaderName;

use crate::config::Settings;

/// The headers we sign: what PRODUCT.md requires, plus MIME-Version. Not Content-Type: lettre
/// 0.11 canonicalises the folded multipart Content-Type differently from what it writes, and
/// independent verifiers (dkimpy) then reject the signature.
pub const SIGNED_HEADERS: [&str; 9] = [
    "From",
    "To",
    "Subject",
    "Date",
    "Message-ID",
    "List-Id",
    "List-Unsubscribe",
    "List-Unsubscribe-Post",
    "MIME-Version",
];

/// The signing configuration, or `None` when `dkim.*` is unset.
pub fn from_settings(settings: &Settings) -> anyhow::Result<Option<Arc<DkimConfig>>> {
    let d = &settings.dkim;
    let (Some(domain), Some(selector), Some(file)) = (&d.domain, &d.selector, &d.private_key_file)
    else {
        return Ok(None);
    };
    let text = std::fs::read_to_string(file)
        .with_context(|| format!("dkim.private_key_file: reading {}", file.display()))?;
    let (algorithm, key_text) = if text.contains("BEGIN RSA PRIVATE KEY") {
        (DkimSigningAlgorithm::Rsa, text.as_str())
    } else if text.contains("BEGIN") {
        anyhow::bail!(
            "dkim.private_key_file: {} must be an RSA key in PKCS#1 PEM (BEGIN RSA PRIVATE KEY) \
             or an ed25519 seed in base64",
            file.display()
        );
    } else {
        (DkimSigningAlgorithm::Ed25519, text.trim())
    };
    let key = DkimSigningKey::new(key_text, algorithm).map_err(|e| {
        anyhow::anyhow!(
            "dkim.private_key_file: {} is not a usable key: {e:?}",
            file.display()
        )
    })?;
    let headers = SIGNED_HEADERS
        .iter()
        .map(|h| HeaderName::new_from_ascii_str(h))
        .collect();
    Ok(Some(Arc::new(DkimConfig::new(
        selector.clone(),
        domain.clone(),
        key,
        headers,
        DkimCanonicalization {
            header: DkimCanonicalizationType::Relaxed,
            body: DkimCanonicalizationType::Relaxed,
        },
    ))))
}
