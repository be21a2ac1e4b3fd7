//! DKIM end to end: keys made by OpenSSL (RSA PKCS#8 and PKCS#1, Ed25519 PKCS#8 and seed) and
//! by `verdicts dkim keygen`, an issue sent with `verdicts issue send` to a real SMTP server on
//! loopback, and every received message verified by dkimpy, an independent implementation —
//! both signatures of a dual RSA + Ed25519 signing. Keys that cannot be used stop the send
//! before anything changes. Both databases.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use common::TestEnv;
use common::smtp::{Received, SmtpSink};
use verdicts::issues::IssueStatus;

/// The headers PRODUCT.md requires every signature to cover (those our messages carry).
const MUST_SIGN: [&str; 10] = [
    "from",
    "to",
    "subject",
    "date",
    "message-id",
    "mime-version",
    "content-type",
    "list-id",
    "list-unsubscribe",
    "list-unsubscribe-post",
];

fn openssl(args: &[&str]) -> Vec<u8> {
    let out = Command::new("openssl")
        .args(args)
        .stderr(Stdio::piped())
        .output()
        .expect("openssl");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// The DER SubjectPublicKeyInfo of a private key file, as OpenSSL reads it.
fn public_der(key: &Path) -> Vec<u8> {
    let path = key.to_str().unwrap();
    openssl(&["pkey", "-in", path, "-pubout", "-outform", "DER"])
}

/// The record of an RSA key file: `p=` is its SubjectPublicKeyInfo.
fn rsa_record(key: &Path) -> String {
    format!("v=DKIM1; k=rsa; p={}", BASE64.encode(public_der(key)))
}

/// The record of an Ed25519 key file: `p=` is the raw 32-byte public key (RFC 8463), the end
/// of its SubjectPublicKeyInfo.
fn ed25519_record(key: &Path) -> String {
    let der = public_der(key);
    format!(
        "v=DKIM1; k=ed25519; p={}",
        BASE64.encode(&der[der.len() - 32..])
    )
}

fn rsa_pkcs8(dir: &Path, bits: u32) -> PathBuf {
    let key = dir.join(format!("rsa-pkcs8-{bits}.pem"));
    openssl(&[
        "genpkey",
        "-algorithm",
        "RSA",
        "-pkeyopt",
        &format!("rsa_keygen_bits:{bits}"),
        "-out",
        key.to_str().unwrap(),
    ]);
    assert!(
        std::fs::read_to_string(&key)
            .unwrap()
            .starts_with("-----BEGIN PRIVATE KEY-----")
    );
    key
}

fn rsa_pkcs1(dir: &Path, bits: u32) -> PathBuf {
    let key = dir.join(format!("rsa-pkcs1-{bits}.pem"));
    openssl(&[
        "genrsa",
        "-traditional",
        "-out",
        key.to_str().unwrap(),
        &bits.to_string(),
    ]);
    assert!(
        std::fs::read_to_string(&key)
            .unwrap()
            .starts_with("-----BEGIN RSA PRIVATE KEY-----")
    );
    key
}

fn ed25519_pkcs8(dir: &Path) -> PathBuf {
    let key = dir.join("ed25519.pem");
    openssl(&[
        "genpkey",
        "-algorithm",
        "ed25519",
        "-out",
        key.to_str().unwrap(),
    ]);
    key
}

/// The base64 seed of an Ed25519 PKCS#8 key (its last 32 bytes), written to its own file.
fn ed25519_seed(dir: &Path, pkcs8: &Path) -> PathBuf {
    let der = openssl(&["pkey", "-in", pkcs8.to_str().unwrap(), "-outform", "DER"]);
    let seed = dir.join("ed25519.seed");
    std::fs::write(&seed, BASE64.encode(&der[der.len() - 32..])).unwrap();
    seed
}

fn dkim_vars(key: &Path, ed25519: Option<&Path>) -> Vec<(&'static str, String)> {
    let mut v = vec![
        ("VERDICTS__DKIM__DOMAIN", "shiporskip.example".to_string()),
        ("VERDICTS__DKIM__SELECTOR", "main".to_string()),
        (
            "VERDICTS__DKIM__PRIVATE_KEY_FILE",
            key.display().to_string(),
        ),
    ];
    if let Some(ed) = ed25519 {
        v.push(("VERDICTS__DKIM__ED25519_SELECTOR", "ed".to_string()));
        v.push(("VERDICTS__DKIM__ED25519_KEY_FILE", ed.display().to_string()));
    }
    v
}

/// `verdicts issue send 1` with these settings, to `sink`.
fn issue_send(env: &TestEnv, sink: &SmtpSink, vars: &[(&str, String)]) -> common::CliOutput {
    let mut cmd = env.command();
    cmd.args(["issue", "send", "1", "--json"])
        .env("VERDICTS__MAIL__TRANSPORT", "smtp")
        .env("VERDICTS__SMTP__URL", sink.url())
        .env("VERDICTS__SMTP__TIMEOUT_SECONDS", "5")
        .env(
            "VERDICTS__SECURITY__SECRET_KEY",
            "0123456789abcdef0123456789abcdef-dkim",
        );
    for (k, v) in vars {
        cmd.env(k, v);
    }
    common::CliOutput::from(cmd.output().expect("running verdicts issue send"))
}

/// Sends issue #1 to `n` subscribers signed with `vars` and returns what the server received
/// (and the server, which keeps the files).
async fn send_signed(
    env: &TestEnv,
    n: usize,
    vars: &[(&str, String)],
) -> (SmtpSink, Vec<Received>) {
    let (store, issue_id) = common::frozen_issue(env, n).await;
    let sink = SmtpSink::start();
    issue_send(env, &sink, vars).ok();
    assert_eq!(
        store.issue_status(issue_id).await.unwrap(),
        Some(IssueStatus::Sent)
    );
    let mails = sink.wait_for(n, Duration::from_secs(10)).await;
    assert_eq!(mails.len(), n);
    (sink, mails)
}

/// dkimpy's report on every signature of `mail`, and whether all of them verified.
fn dkimpy(mail: &Received, records: &[String]) -> (bool, String) {
    let out = Command::new("python3")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/dkim_verify.py"))
        .arg(&mail.path)
        .args(records)
        .output()
        .expect("python3 with dkimpy (pip install -r tests/requirements.txt)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// Asserts `mail` left with the plain return path as its envelope sender (no VERP token).
fn assert_from_return_path(mail: &Received) {
    let mail_args = mail
        .raw
        .lines()
        .find_map(|l| l.strip_prefix("X-Mail-Args: "))
        .expect("smtp-sink records MAIL FROM");
    assert!(
        mail_args.starts_with("<bounces@shiporskip.example>"),
        "{mail_args}"
    );
}

/// Asserts dkimpy verifies every message, with `algorithms` (in signing order) as its
/// signatures, each relaxed/relaxed and covering every required header.
fn assert_verified(mails: &[Received], records: &[String], algorithms: &[&str]) {
    for mail in mails {
        let (ok, report) = dkimpy(mail, records);
        assert!(ok, "dkimpy did not verify:\n{report}");
        assert!(
            report.contains(&format!("signatures: {}", algorithms.len())),
            "{report}"
        );
        for (i, algorithm) in algorithms.iter().enumerate() {
            assert!(report.contains(&format!("verified {i}: True")), "{report}");
            let sig = report
                .lines()
                .find(|l| l.starts_with(&format!("signature {i}:")))
                .unwrap();
            assert!(sig.contains(&format!("a={algorithm};")), "{sig}");
            assert!(sig.contains("c=relaxed/relaxed;"), "{sig}");
            assert!(sig.contains("d=shiporskip.example;"), "{sig}");
            let signed = report
                .lines()
                .find_map(|l| l.strip_prefix(&format!("signed headers {i}: ")))
                .unwrap()
                .to_ascii_lowercase();
            let signed: Vec<&str> = signed.split(':').collect();
            for h in MUST_SIGN {
                assert!(signed.contains(&h), "{h} is not signed: {signed:?}");
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rsa_pkcs8_key_from_openssl_genpkey_verifies() {
    let env = TestEnv::new().await;
    let key = rsa_pkcs8(env.path(), 2048);
    let (_sink, mails) = send_signed(&env, 3, &dkim_vars(&key, None)).await;
    assert_verified(&mails, &[rsa_record(&key)], &["rsa-sha256"]);
    // The same check fails on a message changed in transit, and with another key's record.
    let tampered = mails[0].path.with_extension("tampered");
    let raw = std::fs::read_to_string(&mails[0].path).unwrap();
    std::fs::write(&tampered, raw.replacen("Subject: ", "Subject: Re: ", 1)).unwrap();
    let mut changed = mails[0].clone();
    changed.path = tampered;
    let (ok, report) = dkimpy(&changed, &[rsa_record(&key)]);
    assert!(!ok, "a changed Subject must not verify:\n{report}");
    let other = rsa_pkcs1(env.path(), 2048);
    let (ok, report) = dkimpy(&mails[1], &[rsa_record(&other)]);
    assert!(!ok, "another key's record must not verify:\n{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rsa_pkcs1_key_from_openssl_genrsa_traditional_verifies() {
    let env = TestEnv::new().await;
    let key = rsa_pkcs1(env.path(), 2048);
    let (_sink, mails) = send_signed(&env, 2, &dkim_vars(&key, None)).await;
    assert_verified(&mails, &[rsa_record(&key)], &["rsa-sha256"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ed25519_keys_in_pkcs8_and_as_a_seed_verify() {
    let env = TestEnv::new().await;
    let key = ed25519_pkcs8(env.path());
    let record = ed25519_record(&key);
    let (_sink, mails) = send_signed(&env, 2, &dkim_vars(&key, None)).await;
    assert_verified(&mails, std::slice::from_ref(&record), &["ed25519-sha256"]);

    let env = TestEnv::new().await;
    let seed = ed25519_seed(env.path(), &key);
    let (_sink, mails) = send_signed(&env, 2, &dkim_vars(&seed, None)).await;
    assert_verified(&mails, &[record], &["ed25519-sha256"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dual_rsa_and_ed25519_signatures_both_verify() {
    let env = TestEnv::new().await;
    let rsa = rsa_pkcs8(env.path(), 2048);
    let ed = ed25519_pkcs8(env.path());
    let (_sink, mails) = send_signed(&env, 3, &dkim_vars(&rsa, Some(&ed))).await;
    let records = [
        format!("main:{}", rsa_record(&rsa)),
        format!("ed:{}", ed25519_record(&ed)),
    ];
    assert_verified(&mails, &records, &["rsa-sha256", "ed25519-sha256"]);
    for mail in &mails {
        let (_, report) = dkimpy(mail, &records);
        assert!(report.contains("s=main;"), "{report}");
        assert!(report.contains("s=ed;"), "{report}");
    }
    // Each signature is checked against its own key: with the Ed25519 record missing, the
    // second signature fails and the first still verifies.
    let (ok, report) = dkimpy(&mails[0], &records[..1]);
    assert!(!ok, "{report}");
    assert!(report.contains("verified 0: True"), "{report}");
    assert!(report.contains("verified 1: False"), "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unusable_keys_stop_the_send_before_anything_changes() {
    let env = TestEnv::new().await;
    let (store, issue_id) = common::frozen_issue(&env, 2).await;
    let dir = env.path();
    let not_a_key = env.write("not-a-key.pem", "hello, I am not a key\n");
    let ec = dir.join("ec.pem");
    openssl(&[
        "genpkey",
        "-algorithm",
        "EC",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-out",
        ec.to_str().unwrap(),
    ]);
    let rsa = rsa_pkcs8(dir, 2048);
    // (settings, what the error must say, what the case is)
    type Case<'a> = (Vec<(&'static str, String)>, String, &'a str);
    let cases: Vec<Case> = vec![
        (
            dkim_vars(&rsa_pkcs8(dir, 1024), None),
            format!(
                "dkim.private_key_file: {} is an RSA key of 1024 bits",
                dir.join("rsa-pkcs8-1024.pem").display()
            ),
            "a 1024-bit PKCS#8 key",
        ),
        (
            dkim_vars(&rsa_pkcs1(dir, 1024), None),
            "is an RSA key of 1024 bits; DKIM keys must have at least 2048".to_string(),
            "a 1024-bit PKCS#1 key",
        ),
        (
            dkim_vars(&not_a_key, None),
            format!(
                "dkim.private_key_file: {} is not a usable DKIM key",
                not_a_key.display()
            ),
            "text that is not a key",
        ),
        (
            dkim_vars(&ec, None),
            "is not a usable DKIM key".to_string(),
            "an EC key",
        ),
        (
            dkim_vars(&dir.join("missing.pem"), None),
            "dkim.private_key_file: reading".to_string(),
            "a missing file",
        ),
        (
            dkim_vars(&rsa, Some(&rsa)),
            format!(
                "dkim.ed25519_key_file: {} is an rsa key; this setting takes an ed25519 key",
                rsa.display()
            ),
            "an RSA key as the Ed25519 key",
        ),
    ];
    let sink = SmtpSink::start();
    for (vars, expected, what) in cases {
        let out = issue_send(&env, &sink, &vars);
        assert_eq!(out.code, 2, "{what}: {}{}", out.stdout, out.stderr);
        assert!(out.stderr.contains(&expected), "{what}: {}", out.stderr);
        assert_eq!(
            store.issue_status(issue_id).await.unwrap(),
            Some(IssueStatus::Ready),
            "{what}: the issue must not have started"
        );
    }
    // The worker refuses the same way.
    let mut worker = env.command();
    worker.arg("worker");
    for (k, v) in dkim_vars(&not_a_key, None) {
        worker.env(k, v);
    }
    let out = common::CliOutput::from(worker.output().unwrap());
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.stderr.contains("is not a usable DKIM key"),
        "{}",
        out.stderr
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(sink.messages().len(), 0, "nothing may be sent");
    let counts = store.delivery_counts(issue_id).await.unwrap();
    assert_eq!(counts.total, 0, "no delivery rows: {counts:?}");
}

/// The TXT record from keygen's zone-file line: the quoted strings joined.
fn record_from_zone_line(line: &str) -> String {
    let quoted = line.split_once(" IN TXT ").unwrap().1;
    quoted
        .split('"')
        .enumerate()
        .filter(|(i, _)| i % 2 == 1)
        .map(|(_, s)| s)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keygen_writes_a_key_that_signs_and_the_record_that_verifies_it() {
    let env = TestEnv::new().await;
    // RSA, the default: the human output.
    let key = env.path().join("dkim.pem");
    let out = env
        .cli(&["dkim", "keygen", "--selector", "main", "--out", "dkim.pem"])
        .ok()
        .to_string();
    let line = out
        .lines()
        .find(|l| l.contains(" IN TXT "))
        .unwrap_or_else(|| panic!("no TXT record in:\n{out}"));
    assert!(
        line.starts_with("main._domainkey.shiporskip.example. IN TXT \"v=DKIM1; k=rsa; p="),
        "{line}"
    );
    assert!(
        line.split('"').all(|s| s.len() <= 255),
        "TXT strings are at most 255 bytes: {line}"
    );
    let record = record_from_zone_line(line);
    assert_eq!(record, rsa_record(&key), "p= is the key's public key");
    let mode = std::fs::metadata(&key).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the key file is private");
    let pem = std::fs::read(&key).unwrap();
    assert!(pem.starts_with(b"-----BEGIN PRIVATE KEY-----\n"));
    // OpenSSL reads it as a 2048-bit RSA key.
    let text = String::from_utf8(openssl(&[
        "pkey",
        "-in",
        key.to_str().unwrap(),
        "-text_pub",
        "-noout",
    ]))
    .unwrap();
    assert!(text.contains("2048 bit"), "{text}");

    // Never overwrites.
    let again = env.cli(&["dkim", "keygen", "--selector", "other", "--out", "dkim.pem"]);
    assert_eq!(again.code, 2, "{}", again.stderr);
    assert!(
        again.stderr.contains("exists; not overwriting"),
        "{}",
        again.stderr
    );
    assert_eq!(std::fs::read(&key).unwrap(), pem, "the key is unchanged");
    // A selector that is not a DNS name writes nothing.
    let bad = env.cli(&["dkim", "keygen", "--selector", "a b", "--out", "x.pem"]);
    assert_eq!(bad.code, 2);
    assert!(!env.path().join("x.pem").exists());

    // Ed25519 with --json and an explicit domain.
    let out = env
        .cli(&[
            "dkim",
            "keygen",
            "--selector",
            "ed",
            "--algorithm",
            "ed25519",
            "--domain",
            "shiporskip.example",
            "--out",
            "ed.pem",
            "--json",
        ])
        .ok()
        .to_string();
    let json: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(json["algorithm"], "ed25519");
    assert_eq!(json["name"], "ed._domainkey.shiporskip.example");
    let ed = env.path().join("ed.pem");
    let ed_record = json["record"].as_str().unwrap().to_string();
    assert_eq!(ed_record, ed25519_record(&ed));

    // Both keys sign, and the printed records verify the signatures.
    let (_sink, mails) = send_signed(&env, 2, &dkim_vars(&key, Some(&ed))).await;
    assert_verified(
        &mails,
        &[format!("main:{record}"), format!("ed:{ed_record}")],
        &["rsa-sha256", "ed25519-sha256"],
    );
}

/// The `[dkim]` TOML of an RSA key and, optionally, an Ed25519 key beside it.
fn dkim_toml(key: &Path, ed25519: Option<&Path>) -> String {
    let mut t = format!(
        "[dkim]\ndomain = \"shiporskip.example\"\nselector = \"main\"\nprivate_key_file = {:?}\n",
        key.display().to_string()
    );
    if let Some(ed) = ed25519 {
        t.push_str(&format!(
            "ed25519_selector = \"ed\"\ned25519_key_file = {:?}\n",
            ed.display().to_string()
        ));
    }
    t
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn confirmation_and_welcome_mails_are_signed_with_both_keys() {
    let sink = SmtpSink::start();
    let keys = tempfile::tempdir().unwrap();
    let key = rsa_pkcs8(keys.path(), 2048);
    let ed = ed25519_pkcs8(keys.path());
    let app = common::TestApp::spawn(&format!(
        "[mail]\ntransport = \"smtp\"\nreturn_path = \"bounces@shiporskip.example\"\n\
         [smtp]\nurl = \"{}\"\ntimeout_seconds = 5\n{}",
        sink.url(),
        dkim_toml(&key, Some(&ed))
    ))
    .await;
    let records = [
        format!("main:{}", rsa_record(&key)),
        format!("ed:{}", ed25519_record(&ed)),
    ];
    let r = app
        .client
        .post(app.url("/subscribe"))
        .form(&[("email", "ada@example.org"), ("name", "Ada")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let mails = sink.wait_for(1, Duration::from_secs(15)).await;
    assert_eq!(mails.len(), 1);
    assert!(mails[0].subject().starts_with("Confirm your subscription"));
    // Transactional mail leaves with the plain return path (no VERP token).
    assert_from_return_path(&mails[0]);
    assert_verified(&mails, &records, &["rsa-sha256", "ed25519-sha256"]);
    // A record of another key does not verify it: the check can fail.
    let other_dir = tempfile::tempdir().unwrap();
    let other = rsa_pkcs8(other_dir.path(), 2048);
    let (ok, report) = dkimpy(&mails[0], &[format!("main:{}", rsa_record(&other))]);
    assert!(!ok, "{report}");

    let link = mails[0]
        .link("http://127.0.0.1:8080/confirm/")
        .expect("a confirmation link");
    let path = link.trim_start_matches("http://127.0.0.1:8080");
    let r = app.client.post(app.url(path)).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let mails = sink.wait_for(2, Duration::from_secs(15)).await;
    assert_eq!(mails.len(), 2);
    let welcome: Vec<Received> = mails
        .into_iter()
        .filter(|m| m.subject().starts_with("Welcome to"))
        .collect();
    assert_eq!(welcome.len(), 1);
    assert_verified(&welcome, &records, &["rsa-sha256", "ed25519-sha256"]);
    app.stop().await;
}

/// The one reminder a pending reader gets (`signup.reminder_after`) leaves signed like the
/// confirmation, with both keys and the plain return path.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reminder_mail_is_signed_with_both_keys() {
    let sink = SmtpSink::start();
    let keys = tempfile::tempdir().unwrap();
    let key = rsa_pkcs8(keys.path(), 2048);
    let ed = ed25519_pkcs8(keys.path());
    let app = common::TestApp::spawn(&format!(
        "[mail]\ntransport = \"smtp\"\nreturn_path = \"bounces@shiporskip.example\"\n\
         [smtp]\nurl = \"{}\"\ntimeout_seconds = 5\n\
         [signup]\nreminder_after = \"2s\"\npending_ttl = \"1h\"\n{}",
        sink.url(),
        dkim_toml(&key, Some(&ed))
    ))
    .await;
    let records = [
        format!("main:{}", rsa_record(&key)),
        format!("ed:{}", ed25519_record(&ed)),
    ];
    let r = app
        .client
        .post(app.url("/subscribe"))
        .form(&[("email", "late@example.org")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let mails = sink.wait_for(2, Duration::from_secs(20)).await;
    let reminder: Vec<Received> = mails
        .into_iter()
        .filter(|m| m.subject().starts_with("Still want"))
        .collect();
    assert_eq!(reminder.len(), 1, "one reminder");
    assert_from_return_path(&reminder[0]);
    assert_verified(&reminder, &records, &["rsa-sha256", "ed25519-sha256"]);
    app.stop().await;
}

/// The change-of-address confirmation (to the new address) and the repermission mail leave
/// through the same queue as the confirmation, signed with both keys.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn address_change_and_repermission_mails_are_signed() {
    let sink = SmtpSink::start();
    let keys = tempfile::tempdir().unwrap();
    let key = rsa_pkcs8(keys.path(), 2048);
    let ed = ed25519_pkcs8(keys.path());
    let app = common::TestApp::spawn_public(&format!(
        "[mail]\ntransport = \"smtp\"\n[smtp]\nurl = \"{}\"\ntimeout_seconds = 5\n{}",
        sink.url(),
        dkim_toml(&key, Some(&ed))
    ))
    .await;
    let records = [
        format!("main:{}", rsa_record(&key)),
        format!("ed:{}", ed25519_record(&ed)),
    ];
    common::add_confirmed(&app.store, 1, "r", 1).await;
    sqlx::query("UPDATE subscribers SET confirmed_at = 1000")
        .execute(app.store.writer())
        .await
        .unwrap();
    let id = app
        .store
        .get_subscriber_by_email(
            &verdicts::subscribers::SubscriberEmail::parse("r0@example.org").unwrap(),
        )
        .await
        .unwrap()
        .unwrap()
        .id;
    let manage = app.url(&format!(
        "/manage/{}",
        verdicts::subscribers::tokens::manage_token(&app.secret, id)
    ));
    let r = app
        .client
        .post(&manage)
        .form(&[("action", "email"), ("email", "moved@example.org")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    app.env
        .cli(&[
            "subscribers",
            "repermission",
            "--confirmed-before",
            "2000-01-01",
        ])
        .ok();
    let mails = sink.wait_for(2, Duration::from_secs(20)).await;
    let mut subjects: Vec<(String, String)> = mails
        .iter()
        .map(|m| (m.rcpt.clone(), m.subject()))
        .collect();
    subjects.sort();
    assert_eq!(
        subjects,
        [
            (
                "moved@example.org".to_string(),
                "Confirm your new address for Weekly AI Tool Verdicts".to_string()
            ),
            (
                "r0@example.org".to_string(),
                "Still want Weekly AI Tool Verdicts? Keep your subscription".to_string()
            ),
        ]
    );
    assert_verified(&mails, &records, &["rsa-sha256", "ed25519-sha256"]);
    app.stop().await;
}

/// The console's sign-in link mail is signed with both keys and leaves from the return path,
/// like the other transactional mail (it left unsigned, from `mail.from`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sign_in_link_mail_is_signed_with_both_keys() {
    use verdicts::app::Actor;
    use verdicts::app::operators::ResetRequest;
    use verdicts::operators::{OperatorEmail, Password};
    let sink = SmtpSink::start();
    let env = TestEnv::new().await;
    let key = rsa_pkcs8(env.path(), 2048);
    let ed = ed25519_pkcs8(env.path());
    let settings = env.settings(&format!(
        "[mail]\ntransport = \"smtp\"\nreturn_path = \"bounces@shiporskip.example\"\n\
         [smtp]\nurl = \"{}\"\ntimeout_seconds = 5\n{}",
        sink.url(),
        dkim_toml(&key, Some(&ed))
    ));
    let store = env.store().await;
    let app = common::app(&store, &settings);
    let owner = OperatorEmail::parse("owner@example.org").unwrap();
    app.add_operator(
        &Actor::Cli,
        &owner,
        None,
        &Password::parse("a long enough password").unwrap(),
    )
    .await
    .unwrap();
    let ResetRequest::Mail(pending) = app
        .request_reset("owner@example.org", "192.0.2.7".parse().unwrap())
        .await
        .unwrap()
    else {
        panic!("a link for the operator");
    };
    assert!(
        app.send_reset_link(pending).await.unwrap(),
        "made and mailed"
    );
    let mails = sink.wait_for(1, Duration::from_secs(15)).await;
    assert_eq!(mails.len(), 1);
    assert!(
        mails[0].subject().starts_with("Sign-in link for"),
        "{}",
        mails[0].subject()
    );
    assert_from_return_path(&mails[0]);
    let records = [
        format!("main:{}", rsa_record(&key)),
        format!("ed:{}", ed25519_record(&ed)),
    ];
    // Not list mail: no List-* headers to sign, but the ones a reader sees are.
    let (ok, report) = dkimpy(&mails[0], &records);
    assert!(ok, "dkimpy did not verify:\n{report}");
    assert!(report.contains("signatures: 2"), "{report}");
    for (i, algorithm) in ["rsa-sha256", "ed25519-sha256"].iter().enumerate() {
        assert!(report.contains(&format!("verified {i}: True")), "{report}");
        assert!(report.contains(&format!("a={algorithm};")), "{report}");
        let signed = report
            .lines()
            .find_map(|l| l.strip_prefix(&format!("signed headers {i}: ")))
            .unwrap()
            .to_ascii_lowercase();
        for h in [
            "from",
            "to",
            "subject",
            "date",
            "message-id",
            "mime-version",
        ] {
            assert!(
                signed.split(':').any(|s| s == h),
                "{h} is not signed: {signed}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_sends_are_signed_rsa_and_ed25519() {
    let env = TestEnv::new().await;
    let key = rsa_pkcs8(env.path(), 2048);
    let ed = ed25519_pkcs8(env.path());
    common::frozen_issue(&env, 1).await;
    let sink = SmtpSink::start();
    let mut cmd = env.command();
    cmd.args(["issue", "test-send", "1", "--to", "check@example.org"])
        .env("VERDICTS__MAIL__TRANSPORT", "smtp")
        .env("VERDICTS__SMTP__URL", sink.url())
        .env("VERDICTS__SMTP__TIMEOUT_SECONDS", "5");
    for (k, v) in dkim_vars(&key, Some(&ed)) {
        cmd.env(k, v);
    }
    common::CliOutput::from(cmd.output().unwrap()).ok();
    let mails = sink.wait_for(1, Duration::from_secs(10)).await;
    assert_eq!(mails.len(), 1);
    assert!(mails[0].subject().starts_with("[TEST]"));
    assert_verified(
        &mails,
        &[
            format!("main:{}", rsa_record(&key)),
            format!("ed:{}", ed25519_record(&ed)),
        ],
        &["rsa-sha256", "ed25519-sha256"],
    );
}

#[test]
fn keygen_for_ed25519_names_the_second_key_settings() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_verdicts"))
        .current_dir(dir.path())
        .args([
            "dkim",
            "keygen",
            "--selector",
            "ed",
            "--algorithm",
            "ed25519",
            "--domain",
            "shiporskip.example",
            "--out",
            "ed.pem",
        ])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("dkim.ed25519_selector = \"ed\"")
            && text.contains("dkim.ed25519_key_file = "),
        "{text}"
    );
    assert!(!text.contains("dkim.selector = \"ed\""), "{text}");
    assert!(
        !text.contains("dkim.private_key_file = \"ed.pem\""),
        "{text}"
    );
}
