//! `verdicts dkim keygen`: a new DKIM key and the DNS record that publishes it.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use super::{DkimCommand, Failure};
use crate::config::{Settings, is_dns_name as dns_name};
use crate::delivery::dkim::{Algorithm, SigningKey};

pub(super) fn run(settings: &Settings, command: DkimCommand, json: bool) -> Result<(), Failure> {
    match command {
        DkimCommand::Keygen {
            selector,
            algorithm,
            out,
            domain,
        } => {
            let domain = domain
                .or_else(|| settings.dkim.domain.clone())
                .unwrap_or_else(|| crate::mail::our_domain(&settings.mail));
            keygen(&selector, &domain, algorithm, &out, json)
        }
    }
}

/// The record as zone-file text: quoted strings of at most 255 bytes each (RFC 1035), which
/// resolvers join back into one value.
fn zone_strings(record: &str) -> String {
    record
        .as_bytes()
        .chunks(255)
        .map(|c| format!("\"{}\"", String::from_utf8_lossy(c)))
        .collect::<Vec<_>>()
        .join(" ")
}

fn keygen(
    selector: &str,
    domain: &str,
    algorithm: Algorithm,
    out: &Path,
    json: bool,
) -> Result<(), Failure> {
    if !dns_name(selector) {
        return Err(Failure::Input(format!(
            "--selector: {selector:?} is not a DNS name (letters, digits, - and _)"
        )));
    }
    if !dns_name(domain) {
        return Err(Failure::Input(format!(
            "--domain: {domain:?} is not a DNS name"
        )));
    }
    let (key, pem) = SigningKey::generate(algorithm)?;
    let mut file = match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(out)
    {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            return Err(Failure::Input(format!(
                "--out: {} exists; not overwriting a key (choose another file or remove it)",
                out.display()
            )));
        }
        Err(e) => {
            return Err(Failure::Input(format!(
                "--out: creating {}: {e}",
                out.display()
            )));
        }
    };
    file.write_all(pem.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|e| anyhow::anyhow!("writing {}: {e}", out.display()))?;
    let name = format!("{selector}._domainkey.{domain}");
    let record = key.dns_record();
    if json {
        println!(
            "{}",
            serde_json::json!({
                "key_file": out.display().to_string(),
                "algorithm": algorithm,
                "selector": selector,
                "domain": domain,
                "name": name,
                "record": record,
            })
        );
    } else {
        println!(
            "wrote {} ({algorithm} private key, mode 0600)",
            out.display()
        );
        println!("publish this DNS TXT record:");
        println!("{name}. IN TXT {}", zone_strings(&record));
        // An Ed25519 key is the second signature beside the RSA one (RFC 8463: not every
        // receiver checks it), so it has its own keys; dkim.selector would replace the RSA key.
        let (selector_key, file_key, note) = match algorithm {
            Algorithm::Ed25519 => (
                "dkim.ed25519_selector",
                "dkim.ed25519_key_file",
                " (beside the RSA key of dkim.selector and dkim.private_key_file)",
            ),
            Algorithm::Rsa => ("dkim.selector", "dkim.private_key_file", ""),
        };
        println!(
            "then set dkim.domain = \"{domain}\", {selector_key} = \"{selector}\" and \
             {file_key} = \"{}\"{note}",
            out.display()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_records_are_split_into_255_byte_strings() {
        let record = format!("v=DKIM1; k=rsa; p={}", "A".repeat(400));
        let zone = zone_strings(&record);
        let parts: Vec<&str> = zone.split("\" \"").collect();
        assert_eq!(parts.len(), 2, "{zone}");
        assert_eq!(
            parts[0].len(),
            256,
            "the first string is 255 bytes plus its quote"
        );
        assert_eq!(zone.replace("\" \"", "").trim_matches('"'), record);
    }

    #[test]
    fn selectors_are_dns_names() {
        for ok in ["verdicts", "v-2026_a", "a.b"] {
            assert!(dns_name(ok), "{ok}");
        }
        for bad in ["", "a b", "a;b", "a..b", ".a", "é"] {
            assert!(!dns_name(bad), "{bad:?}");
        }
    }
}
