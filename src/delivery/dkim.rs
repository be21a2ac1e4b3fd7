//! DKIM signing (RFC 6376) of our own, over the exact bytes we send: **relaxed/relaxed**
//! canonicalisation, `rsa-sha256` and `ed25519-sha256` (RFC 8463), optionally both at once.
//!
//! The cryptography is aws-lc-rs (AWS-LC, constant-time RSA with the same assembly as
//! BoringSSL): 0.3–0.4 ms per RSA-2048 signature here, 1.2–1.5× `openssl speed rsa2048`,
//! against 2.1 ms for the `rsa` crate lettre used (which also carries RUSTSEC-2023-0071); see
//! docs/benchmarks.md. Keys are parsed once per process
//! ([`DkimSigner::from_settings`]); what is the same for every recipient of an issue — the hash
//! state of the body up to its first per-recipient byte — once per issue ([`BodyPrefix`]).
//!
//! Keys: RSA in PKCS#1 (`BEGIN RSA PRIVATE KEY`) or PKCS#8 (`BEGIN PRIVATE KEY`) PEM, at least
//! 2048 bits; Ed25519 in PKCS#8 PEM or as the base64 of the 32-byte seed.

use std::fmt;
use std::path::{Path, PathBuf};

use aws_lc_rs::digest;
use aws_lc_rs::encoding::{AsDer, Pkcs8V1Der};
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair, RSA_PKCS1_SHA256, RsaKeyPair};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;

use crate::config::DkimSettings;

/// The headers we sign when present, in this order: what PRODUCT.md requires (Content-Type
/// included), plus Reply-To and List-Archive. Each is signed once, from its last instance.
pub const SIGNED_HEADERS: [&str; 14] = [
    "From",
    "To",
    "Subject",
    "Date",
    "Message-ID",
    "MIME-Version",
    "Content-Type",
    "Reply-To",
    "List-Id",
    "List-Unsubscribe",
    "List-Unsubscribe-Post",
    "List-Archive",
    "Feedback-ID",
    "Content-Transfer-Encoding",
];

/// RSA keys shorter than this are refused (RFC 8301 requires 1024, every large mailbox provider
/// asks for 2048).
pub const MIN_RSA_BITS: usize = 2048;

/// The two DKIM signing algorithms (the `a=` tag and the `k=` of the DNS record).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Algorithm {
    Rsa,
    Ed25519,
}

impl Algorithm {
    /// The `a=` tag value.
    pub fn tag(self) -> &'static str {
        match self {
            Algorithm::Rsa => "rsa-sha256",
            Algorithm::Ed25519 => "ed25519-sha256",
        }
    }

    /// The `k=` tag value of the DNS record.
    pub fn key_type(self) -> &'static str {
        match self {
            Algorithm::Rsa => "rsa",
            Algorithm::Ed25519 => "ed25519",
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.key_type())
    }
}

/// Why a key file cannot be used; the message names the setting and the file.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("{setting}: reading {path}: {source}")]
    Read {
        setting: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "{setting}: {path} is an RSA key of {bits} bits; DKIM keys must have at least \
         {MIN_RSA_BITS} (make one with `verdicts dkim keygen`)"
    )]
    TooSmall {
        setting: &'static str,
        path: PathBuf,
        bits: usize,
    },
    #[error(
        "{setting}: {path} is not a usable DKIM key ({reason}); expected an RSA key in PKCS#1 or \
         PKCS#8 PEM, or an Ed25519 key in PKCS#8 PEM or as the base64 of its 32-byte seed"
    )]
    NotAKey {
        setting: &'static str,
        path: PathBuf,
        reason: String,
    },
    #[error("{setting}: {path} is an {found} key; this setting takes an {expected} key")]
    WrongAlgorithm {
        setting: &'static str,
        path: PathBuf,
        found: Algorithm,
        expected: Algorithm,
    },
}

impl KeyError {
    /// The setting that names the key file.
    pub fn setting(&self) -> &'static str {
        match self {
            KeyError::Read { setting, .. }
            | KeyError::TooSmall { setting, .. }
            | KeyError::NotAKey { setting, .. }
            | KeyError::WrongAlgorithm { setting, .. } => setting,
        }
    }
}

/// A private key, parsed once.
pub enum SigningKey {
    Rsa(RsaKeyPair),
    Ed25519(Ed25519KeyPair),
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SigningKey({})", self.algorithm())
    }
}

/// Why some bytes are not a key (the caller adds the file and setting).
#[derive(Debug)]
enum ParseProblem {
    TooSmall(usize),
    Invalid(String),
}

impl SigningKey {
    /// Reads and parses the key file named by `setting`.
    pub fn from_file(setting: &'static str, path: &Path) -> Result<SigningKey, KeyError> {
        let bytes = std::fs::read(path).map_err(|source| KeyError::Read {
            setting,
            path: path.to_path_buf(),
            source,
        })?;
        SigningKey::parse(&bytes).map_err(|problem| match problem {
            ParseProblem::TooSmall(bits) => KeyError::TooSmall {
                setting,
                path: path.to_path_buf(),
                bits,
            },
            ParseProblem::Invalid(reason) => KeyError::NotAKey {
                setting,
                path: path.to_path_buf(),
                reason,
            },
        })
    }

    fn parse(bytes: &[u8]) -> Result<SigningKey, ParseProblem> {
        let text = std::str::from_utf8(bytes)
            .map_err(|_| ParseProblem::Invalid("not text".into()))?
            .trim();
        if text.contains("-----BEGIN") {
            let (label, der) = pem_rfc7468::decode_vec(text.as_bytes())
                .map_err(|e| ParseProblem::Invalid(format!("bad PEM: {e}")))?;
            return match label {
                "RSA PRIVATE KEY" => Self::rsa(RsaKeyPair::from_der(&der), &der, false),
                "PRIVATE KEY" => match Ed25519KeyPair::from_pkcs8_maybe_unchecked(&der) {
                    Ok(key) => Ok(SigningKey::Ed25519(key)),
                    Err(_) => Self::rsa(RsaKeyPair::from_pkcs8(&der), &der, true),
                },
                other => Err(ParseProblem::Invalid(format!("a PEM {other:?}"))),
            };
        }
        let seed = BASE64
            .decode(text)
            .map_err(|_| ParseProblem::Invalid("neither PEM nor base64".into()))?;
        if seed.len() != 32 {
            return Err(ParseProblem::Invalid(format!(
                "base64 of {} bytes, not a 32-byte Ed25519 seed",
                seed.len()
            )));
        }
        Ed25519KeyPair::from_seed_unchecked(&seed)
            .map(SigningKey::Ed25519)
            .map_err(|e| ParseProblem::Invalid(format!("Ed25519 seed rejected: {e}")))
    }

    /// An RSA key from aws-lc-rs, or why not. aws-lc-rs itself refuses keys under 2048 bits;
    /// the size is then read from the DER so the error can say it.
    fn rsa(
        parsed: Result<RsaKeyPair, aws_lc_rs::error::KeyRejected>,
        der: &[u8],
        pkcs8: bool,
    ) -> Result<SigningKey, ParseProblem> {
        match parsed {
            Ok(key) if key.public_modulus_len() * 8 < MIN_RSA_BITS => {
                Err(ParseProblem::TooSmall(key.public_modulus_len() * 8))
            }
            Ok(key) => Ok(SigningKey::Rsa(key)),
            Err(e) => match rsa_modulus_bits(der, pkcs8) {
                Some(bits) if bits < MIN_RSA_BITS => Err(ParseProblem::TooSmall(bits)),
                _ => Err(ParseProblem::Invalid(format!("RSA key rejected: {e}"))),
            },
        }
    }

    /// A new key for `verdicts dkim keygen`, with its PKCS#8 PEM.
    pub fn generate(algorithm: Algorithm) -> anyhow::Result<(SigningKey, String)> {
        let (key, der) = match algorithm {
            Algorithm::Rsa => {
                let key = RsaKeyPair::generate(KeySize::Rsa2048)
                    .map_err(|_| anyhow::anyhow!("generating an RSA key failed"))?;
                let der: Pkcs8V1Der = key
                    .as_der()
                    .map_err(|_| anyhow::anyhow!("encoding the RSA key failed"))?;
                let der = der.as_ref().to_vec();
                (SigningKey::Rsa(key), der)
            }
            Algorithm::Ed25519 => {
                let key = Ed25519KeyPair::generate()
                    .map_err(|_| anyhow::anyhow!("generating an Ed25519 key failed"))?;
                let der: Pkcs8V1Der = key
                    .as_der()
                    .map_err(|_| anyhow::anyhow!("encoding the Ed25519 key failed"))?;
                let der = der.as_ref().to_vec();
                (SigningKey::Ed25519(key), der)
            }
        };
        let pem = pem_rfc7468::encode_string("PRIVATE KEY", pem_rfc7468::LineEnding::LF, &der)
            .map_err(|e| anyhow::anyhow!("encoding the key as PEM: {e}"))?;
        Ok((key, pem))
    }

    pub fn algorithm(&self) -> Algorithm {
        match self {
            SigningKey::Rsa(_) => Algorithm::Rsa,
            SigningKey::Ed25519(_) => Algorithm::Ed25519,
        }
    }

    /// The `p=` value of the DNS record: the DER SubjectPublicKeyInfo for RSA, the raw 32-byte
    /// public key for Ed25519 (RFC 8463), in base64.
    pub fn public_key_base64(&self) -> String {
        match self {
            SigningKey::Rsa(key) => {
                let der: aws_lc_rs::encoding::PublicKeyX509Der = key
                    .public_key()
                    .as_der()
                    .expect("a parsed RSA public key encodes");
                BASE64.encode(der.as_ref())
            }
            SigningKey::Ed25519(key) => BASE64.encode(key.public_key().as_ref()),
        }
    }

    /// The TXT record to publish at `<selector>._domainkey.<domain>`.
    pub fn dns_record(&self) -> String {
        format!(
            "v=DKIM1; k={}; p={}",
            self.algorithm().key_type(),
            self.public_key_base64()
        )
    }

    /// Signs the canonicalised header data: RSA PKCS#1 v1.5 over its SHA-256; Ed25519 over its
    /// SHA-256 digest (RFC 8463 signs the hash, not the data).
    fn sign(&self, data: &[u8]) -> Vec<u8> {
        match self {
            SigningKey::Rsa(key) => {
                let mut sig = vec![0; key.public_modulus_len()];
                key.sign(
                    &RSA_PKCS1_SHA256,
                    &aws_lc_rs::rand::SystemRandom::new(),
                    data,
                    &mut sig,
                )
                .expect("RSA signing with a validated key");
                sig
            }
            SigningKey::Ed25519(key) => {
                let hash = digest::digest(&digest::SHA256, data);
                key.sign(hash.as_ref()).as_ref().to_vec()
            }
        }
    }
}

/// The modulus size of an RSA key aws-lc-rs refused, read from its DER (PKCS#1
/// `RSAPrivateKey`, or PKCS#8 wrapping one): only to say "too small" instead of "invalid".
fn rsa_modulus_bits(der: &[u8], pkcs8: bool) -> Option<usize> {
    /// One DER TLV: (tag, contents, rest).
    fn tlv(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
        let (&tag, rest) = input.split_first()?;
        let (&first, rest) = rest.split_first()?;
        let (len, rest) = if first < 0x80 {
            (first as usize, rest)
        } else {
            let n = (first & 0x7f) as usize;
            if n == 0 || n > 4 || rest.len() < n {
                return None;
            }
            let len = rest[..n]
                .iter()
                .fold(0usize, |acc, b| (acc << 8) | *b as usize);
            (len, &rest[n..])
        };
        (rest.len() >= len).then(|| (tag, &rest[..len], &rest[len..]))
    }
    let mut key = der;
    if pkcs8 {
        // PrivateKeyInfo ::= SEQUENCE { version, algorithm, OCTET STRING privateKey }
        let (_, info, _) = tlv(der)?;
        let (_, _, rest) = tlv(info)?; // version
        let (_, _, rest) = tlv(rest)?; // algorithm
        let (0x04, inner, _) = tlv(rest)? else {
            return None;
        };
        key = inner;
    }
    // RSAPrivateKey ::= SEQUENCE { version, modulus INTEGER, ... }
    let (0x30, seq, _) = tlv(key)? else {
        return None;
    };
    let (_, _, rest) = tlv(seq)?; // version
    let (0x02, modulus, _) = tlv(rest)? else {
        return None;
    };
    let modulus = match modulus.iter().position(|b| *b != 0) {
        Some(i) => &modulus[i..],
        None => return Some(0),
    };
    Some(modulus.len() * 8 - modulus[0].leading_zeros() as usize)
}

/// One key with the names it signs under.
#[derive(Debug)]
struct KeySigner {
    key: SigningKey,
    /// `v=1; a=…; c=relaxed/relaxed; d=…; s=…;` — the same for every message.
    tags: String,
}

/// Signs messages with one key, or two (RSA + Ed25519, RFC 8463): built once per process.
#[derive(Debug)]
pub struct DkimSigner {
    signers: Vec<KeySigner>,
}

impl DkimSigner {
    /// The signer from `dkim.*`, or `None` when DKIM is not configured. Every key is parsed
    /// and checked here, so a bad key stops start-up with an error naming the setting and file.
    pub fn from_settings(d: &DkimSettings) -> Result<Option<DkimSigner>, KeyError> {
        let (Some(domain), Some(selector), Some(file)) =
            (&d.domain, &d.selector, &d.private_key_file)
        else {
            return Ok(None);
        };
        let mut keys = vec![(
            selector.as_str(),
            SigningKey::from_file("dkim.private_key_file", file)?,
        )];
        if let (Some(selector), Some(file)) = (&d.ed25519_selector, &d.ed25519_key_file) {
            let key = SigningKey::from_file("dkim.ed25519_key_file", file)?;
            if key.algorithm() != Algorithm::Ed25519 {
                return Err(KeyError::WrongAlgorithm {
                    setting: "dkim.ed25519_key_file",
                    path: file.clone(),
                    found: key.algorithm(),
                    expected: Algorithm::Ed25519,
                });
            }
            keys.push((selector.as_str(), key));
        }
        Ok(Some(DkimSigner::new(domain, keys)))
    }

    /// A signer for `domain` with `(selector, key)` pairs, signed in this order.
    pub fn new<'a>(domain: &str, keys: impl IntoIterator<Item = (&'a str, SigningKey)>) -> Self {
        DkimSigner {
            signers: keys
                .into_iter()
                .map(|(selector, key)| KeySigner {
                    tags: format!(
                        "v=1; a={}; c=relaxed/relaxed; d={domain}; s={selector};",
                        key.algorithm().tag()
                    ),
                    key,
                })
                .collect(),
        }
    }

    /// `message` (CRLF line endings) with a DKIM-Signature header per key in front. `prefix`,
    /// when the body starts with its bytes, saves hashing them again.
    pub fn sign(&self, message: &[u8], prefix: Option<&BodyPrefix>) -> Vec<u8> {
        let (head, body) = split_message(message);
        let body_hash = match prefix {
            Some(p) if body.starts_with(&p.bytes) => {
                let mut hasher = p.state.clone();
                hasher.update(&body[p.bytes.len()..]);
                hasher.finish()
            }
            _ => {
                let mut hasher = BodyHasher::new();
                hasher.update(body);
                hasher.finish()
            }
        };
        let bh = BASE64.encode(body_hash.as_ref());
        let (names, canonical) = signed_headers(head);
        let timestamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let mut out = Vec::with_capacity(message.len() + 1024 * self.signers.len());
        for signer in &self.signers {
            let value = format!(
                "{}\r\n\tt={timestamp}; h={names};\r\n\tbh={bh};\r\n\tb=",
                signer.tags
            );
            let mut data = canonical.clone();
            relaxed_header("DKIM-Signature", value.as_bytes(), &mut data);
            let signature = BASE64.encode(signer.key.sign(&data));
            out.extend_from_slice(b"DKIM-Signature: ");
            out.extend_from_slice(value.as_bytes());
            for (i, chunk) in signature.as_bytes().chunks(72).enumerate() {
                if i > 0 {
                    out.extend_from_slice(b"\r\n\t ");
                }
                out.extend_from_slice(chunk);
            }
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(message);
        out
    }
}

/// Splits a message at the empty line: (header block with its last CRLF, body).
fn split_message(message: &[u8]) -> (&[u8], &[u8]) {
    match memchr::memmem::find(message, b"\r\n\r\n") {
        Some(i) => (&message[..i + 2], &message[i + 4..]),
        None => (message, &[]),
    }
}

/// The names for `h=` (colon-separated, in signing order) and the relaxed canonical form of
/// those header fields, from the last instance of each name in [`SIGNED_HEADERS`].
fn signed_headers(head: &[u8]) -> (String, Vec<u8>) {
    // Each field: (name, value with its folding, without the final CRLF).
    let mut fields: Vec<(&[u8], &[u8])> = Vec::new();
    let mut start = 0;
    let mut i = 0;
    while i + 1 < head.len() {
        if head[i] == b'\r' && head[i + 1] == b'\n' {
            let next = head.get(i + 2);
            if !matches!(next, Some(b' ' | b'\t')) {
                let field = &head[start..i];
                if let Some(colon) = field.iter().position(|b| *b == b':') {
                    fields.push((&field[..colon], &field[colon + 1..]));
                }
                start = i + 2;
            }
            i += 2;
        } else {
            i += 1;
        }
    }
    let mut names = Vec::new();
    let mut canonical = Vec::with_capacity(head.len());
    for name in SIGNED_HEADERS {
        if let Some((_, value)) = fields
            .iter()
            .rev()
            .find(|(n, _)| n.trim_ascii().eq_ignore_ascii_case(name.as_bytes()))
        {
            names.push(name.to_ascii_lowercase());
            relaxed_header(name, value, &mut canonical);
            canonical.extend_from_slice(b"\r\n");
        }
    }
    (names.join(":"), canonical)
}

/// Appends `name:value` in relaxed header canonicalisation (RFC 6376 3.4.2): name in lower
/// case, value unfolded, runs of white space as one space, none at either end. No final CRLF.
fn relaxed_header(name: &str, value: &[u8], out: &mut Vec<u8>) {
    out.extend(name.trim().bytes().map(|b| b.to_ascii_lowercase()));
    out.push(b':');
    let mut space = false;
    let mut started = false;
    for &b in value {
        match b {
            b'\r' | b'\n' => {}
            b' ' | b'\t' => space = true,
            _ => {
                if space && started {
                    out.push(b' ');
                }
                space = false;
                started = true;
                out.push(b);
            }
        }
    }
}

/// The SHA-256 of a body in relaxed body canonicalisation (RFC 6376 3.4.4), fed in pieces:
/// white space at line ends removed, runs of it inside a line made one space, empty lines at
/// the end removed, and a non-empty body ending in one CRLF.
///
/// Works line by line: a line canonicalisation leaves alone (no tab, no two spaces in a row, no
/// white space at its end — nearly every line of quoted-printable text) is hashed straight from
/// the input, runs of such lines in one call; only the others are rewritten.
#[derive(Clone)]
pub struct BodyHasher {
    hash: digest::Context,
    /// Empty lines seen but not yet hashed (they are dropped if only empty lines follow).
    crlfs: usize,
    /// The start of a line that the last piece ended in the middle of.
    partial: Vec<u8>,
    buf: Vec<u8>,
}

impl Default for BodyHasher {
    fn default() -> Self {
        Self::new()
    }
}

impl BodyHasher {
    pub fn new() -> Self {
        BodyHasher {
            hash: digest::Context::new(&digest::SHA256),
            crlfs: 0,
            partial: Vec::new(),
            buf: Vec::new(),
        }
    }

    /// Whether a line's content (without its CRLF) is already canonical and not empty.
    fn clean(content: &[u8]) -> bool {
        !content.is_empty()
            && !matches!(content.last(), Some(b' ' | b'\t'))
            && memchr::memchr(b'\t', content).is_none()
            && memchr::memmem::find(content, b"  ").is_none()
    }

    fn flush_crlfs(&mut self) {
        for _ in 0..self.crlfs {
            self.hash.update(b"\r\n");
        }
        self.crlfs = 0;
    }

    /// Hashes one line's content (without its CRLF) in canonical form, then its CRLF; a line
    /// that is empty once canonical is held back as an empty line.
    fn rewrite(&mut self, content: &[u8]) {
        let mut buf = std::mem::take(&mut self.buf);
        buf.clear();
        let mut space = false;
        for &b in content {
            if b == b' ' || b == b'\t' {
                space = true;
            } else {
                if space {
                    buf.push(b' ');
                    space = false;
                }
                buf.push(b);
            }
        }
        if buf.is_empty() {
            self.crlfs += 1;
        } else {
            self.flush_crlfs();
            buf.extend_from_slice(b"\r\n");
            self.hash.update(&buf);
        }
        self.buf = buf;
    }

    /// Complete lines (each ending in CRLF) of `data`, with `data` ending in CRLF.
    fn lines(&mut self, data: &[u8]) {
        let mut span = 0; // start of the run of clean lines not hashed yet
        let mut start = 0; // start of the current line
        for nl in memchr::memchr_iter(b'\n', data) {
            if nl == 0 || data[nl - 1] != b'\r' {
                continue; // a bare LF is an ordinary byte
            }
            let content = &data[start..nl - 1];
            if Self::clean(content) {
                if self.crlfs > 0 {
                    self.hash.update(&data[span..start]);
                    self.flush_crlfs();
                    span = start;
                }
            } else {
                self.hash.update(&data[span..start]);
                if content.is_empty() {
                    self.crlfs += 1;
                } else {
                    self.rewrite(content);
                }
                span = nl + 1;
            }
            start = nl + 1;
        }
        debug_assert_eq!(start, data.len());
        self.hash.update(&data[span..start]);
    }

    pub fn update(&mut self, mut data: &[u8]) {
        if !self.partial.is_empty() {
            // Complete the line the last piece ended in.
            let mut partial = std::mem::take(&mut self.partial);
            let end = if partial.ends_with(b"\r") && data.first() == Some(&b'\n') {
                Some(1)
            } else {
                memchr::memmem::find(data, b"\r\n").map(|i| i + 2)
            };
            let Some(end) = end else {
                partial.extend_from_slice(data);
                self.partial = partial;
                return;
            };
            partial.extend_from_slice(&data[..end]);
            self.lines(&partial);
            data = &data[end..];
        }
        let complete = match memchr::memmem::rfind(data, b"\r\n") {
            Some(i) => i + 2,
            None => 0,
        };
        if complete > 0 {
            self.lines(&data[..complete]);
        }
        self.partial.extend_from_slice(&data[complete..]);
    }

    pub fn finish(mut self) -> digest::Digest {
        if !self.partial.is_empty() {
            // A last line without CRLF: canonical, it gets one.
            let partial = std::mem::take(&mut self.partial);
            self.rewrite(&partial);
        }
        self.hash.finish()
    }
}

/// What every recipient's body of one issue starts with, hashed once: the bytes (to check a
/// message really starts with them) and the hasher state after them.
#[derive(Clone)]
pub struct BodyPrefix {
    bytes: Vec<u8>,
    state: BodyHasher,
}

impl fmt::Debug for BodyPrefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BodyPrefix({} bytes)", self.bytes.len())
    }
}

impl BodyPrefix {
    /// The prefix two messages of one issue to different recipients have in common: the part
    /// of the body that does not depend on the recipient.
    pub fn common(a: &[u8], b: &[u8]) -> BodyPrefix {
        let (a, b) = (split_message(a).1, split_message(b).1);
        let len = a.iter().zip(b).take_while(|(x, y)| x == y).count();
        let mut state = BodyHasher::new();
        state.update(&a[..len]);
        BodyPrefix {
            bytes: a[..len].to_vec(),
            state,
        }
    }

    /// How many body bytes are hashed once per issue instead of once per message.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }
}

/// The `bh=` of the first DKIM-Signature of a signed message, for tests.
#[cfg(test)]
pub(crate) fn body_hash_tag(message: &[u8]) -> String {
    let text = String::from_utf8_lossy(message);
    let tag = text.split("bh=").nth(1).expect("a signed message");
    tag.split(';').next().unwrap_or_default().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body_hash(pieces: &[&[u8]]) -> String {
        let mut h = BodyHasher::new();
        for p in pieces {
            h.update(p);
        }
        BASE64.encode(h.finish().as_ref())
    }

    fn sha(data: &[u8]) -> String {
        BASE64.encode(digest::digest(&digest::SHA256, data).as_ref())
    }

    #[test]
    fn relaxed_body_canonicalisation_follows_rfc_6376() {
        let cases: [(&[u8], &[u8], &str); 9] = [
            (b"", b"", "an empty body stays empty"),
            (b"\r\n\r\n", b"", "only empty lines is empty"),
            (
                b"a  b\t\tc \r\n",
                b"a b c\r\n",
                "runs of white space, trailing space",
            ),
            (b"a\r\n\r\n\r\n", b"a\r\n", "empty lines at the end"),
            (
                b"a\r\n\r\nb",
                b"a\r\n\r\nb\r\n",
                "inner empty line kept, CRLF added",
            ),
            (
                b" lead\r\n",
                b" lead\r\n",
                "leading white space is one space",
            ),
            (
                b"x \t \r\n \r\ny",
                b"x\r\n\r\ny\r\n",
                "white space only line is empty",
            ),
            (b"a\rb\r\n", b"a\rb\r\n", "a bare CR is an ordinary byte"),
            (b"end  ", b"end\r\n", "trailing white space without CRLF"),
        ];
        for (input, canonical, what) in cases {
            assert_eq!(body_hash(&[input]), sha(canonical), "{what}");
            // Fed byte by byte, the result is the same.
            let pieces: Vec<&[u8]> = input.chunks(1).collect();
            assert_eq!(body_hash(&pieces), sha(canonical), "{what}, in pieces");
        }
    }

    #[test]
    fn relaxed_header_canonicalisation() {
        let mut out = Vec::new();
        relaxed_header("Subject", b" \tHello \r\n\t  World  ", &mut out);
        assert_eq!(out, b"subject:Hello World");
    }

    #[test]
    fn picks_the_signed_headers_present_in_order() {
        let head = b"X-Other: 1\r\nsubject: A\r\n  folded\r\nFrom: a@b.example\r\nContent-Type: \
                     multipart/alternative;\r\n boundary=\"x\"\r\nFROM: last@b.example\r\n";
        let (names, canonical) = signed_headers(head);
        assert_eq!(names, "from:subject:content-type");
        assert_eq!(
            String::from_utf8(canonical).unwrap(),
            "from:last@b.example\r\nsubject:A folded\r\n\
             content-type:multipart/alternative; boundary=\"x\"\r\n"
        );
    }

    #[test]
    fn reads_the_size_of_a_refused_rsa_key() {
        // A 1024-bit PKCS#1 key made by `openssl genrsa -traditional 1024`, its modulus only.
        let modulus = [0xc1u8; 128];
        let mut seq = vec![0x02, 0x01, 0x00, 0x02, 0x81, 0x81, 0x00];
        seq.extend_from_slice(&modulus);
        let mut der = vec![0x30, 0x81, seq.len() as u8];
        der.extend_from_slice(&seq);
        assert_eq!(rsa_modulus_bits(&der, false), Some(1024));
        assert_eq!(rsa_modulus_bits(b"\x30\x00", false), None);
    }

    #[test]
    fn body_prefix_gives_the_same_hash_as_hashing_everything() {
        let a = b"H: 1\r\n\r\nfixed  line \r\nmore\r\nTo a@x\r\n\r\n";
        let b = b"H: 2\r\n\r\nfixed  line \r\nmore\r\nTo b@y\r\n";
        let prefix = BodyPrefix::common(a, b);
        assert_eq!(prefix.len(), "fixed  line \r\nmore\r\nTo ".len());
        let key = SigningKey::generate(Algorithm::Ed25519).unwrap().0;
        let signer = DkimSigner::new("x.example", [("s", key)]);
        for m in [&a[..], &b[..]] {
            let with = signer.sign(m, Some(&prefix));
            let without = signer.sign(m, None);
            assert_eq!(body_hash_tag(&with), body_hash_tag(&without));
        }
    }
}
