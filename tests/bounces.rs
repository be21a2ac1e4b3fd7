//! Bounces and complaints: VERP and Feedback-ID on real SMTP, the fixture reports of real MTAs
//! through `verdicts bounces import` (.eml, mbox, Maildir), idempotence, bad input, and the
//! loop end to end — send, bounce, import, and the next issue skips exactly those readers.
//! Both databases.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::smtp::SmtpSink;
use common::{TestEnv, comparison_json};
use verdicts::bounces::verp::{self, VerpTarget};
use verdicts::comparisons::import::parse_json;
use verdicts::config::{ReturnPath, SecretKey};
use verdicts::issues::freeze::create_issue;
use verdicts::render::Renderer;
use verdicts::store::Store;
use verdicts::store::comparisons::Source;
use verdicts::subscribers::{SubscriberEmail, SubscriberStatus};

const SECRET: &str = "0123456789abcdef0123456789abcdef-bounces";
const RETURN_PATH: &str = "bounces@shiporskip.example";

fn secret() -> SecretKey {
    SecretKey::from_bytes(SECRET.as_bytes())
}

fn return_path() -> ReturnPath {
    ReturnPath::try_from(RETURN_PATH.to_string()).unwrap()
}

fn settings_toml() -> String {
    format!("[security]\nsecret_key = {SECRET:?}\n[mail]\nreturn_path = {RETURN_PATH:?}\n")
}

/// Environment for the binary: the same secret and return path as the in-process settings.
fn base_vars() -> Vec<(String, String)> {
    vec![
        ("VERDICTS__SECURITY__SECRET_KEY".into(), SECRET.into()),
        ("VERDICTS__MAIL__RETURN_PATH".into(), RETURN_PATH.into()),
    ]
}

/// [`base_vars`] with `bounces.attribution = "any"`: the fallbacks (Message-ID,
/// List-Unsubscribe, recipient) count too.
fn any_vars() -> Vec<(String, String)> {
    let mut v = base_vars();
    v.push(("VERDICTS__BOUNCES__ATTRIBUTION".into(), "any".into()));
    v
}

fn smtp_vars(sink: &SmtpSink) -> Vec<(String, String)> {
    let mut v = base_vars();
    v.push(("VERDICTS__MAIL__TRANSPORT".into(), "smtp".into()));
    v.push(("VERDICTS__SMTP__URL".into(), sink.url()));
    v.push(("VERDICTS__SMTP__TIMEOUT_SECONDS".into(), "5".into()));
    v
}

fn run(env: &TestEnv, args: &[&str], vars: &[(String, String)]) -> common::CliOutput {
    let mut cmd = env.command();
    cmd.args(args);
    for (k, v) in vars {
        cmd.env(k, v);
    }
    common::CliOutput::from(cmd.output().expect("running verdicts"))
}

async fn import_week(store: &Store, week: u32) {
    let day = if week == 47 { 17 } else { 24 };
    let text = serde_json::Value::Array(vec![
        comparison_json(
            &format!("alpha-vs-beta-{week}"),
            &format!("Alpha vs Beta {week}"),
            &format!("2026-11-{day}T10:00:00Z"),
        ),
        comparison_json(
            &format!("gamma-vs-delta-{week}"),
            &format!("Gamma vs Delta {week}"),
            &format!("2026-11-{}T10:00:00Z", day + 1),
        ),
    ])
    .to_string();
    store
        .upsert_comparisons(&parse_json(&text).unwrap(), Source::Json, false)
        .await
        .unwrap();
}

/// `n` confirmed subscribers r0000… (ids 1…n) and issue #1 (week 2026-W47), frozen.
async fn setup(env: &TestEnv, n: usize) -> Store {
    let store = env.store().await;
    import_week(&store, 47).await;
    common::add_confirmed(&store, n, "r", 4).await;
    create_issue(
        &store,
        &Renderer::new().unwrap(),
        &env.settings(&settings_toml()),
        "2026-W47".parse().unwrap(),
    )
    .await
    .unwrap();
    store
}

async fn status_of(store: &Store, email: &str) -> SubscriberStatus {
    store
        .get_subscriber_by_email(&SubscriberEmail::parse(email).unwrap())
        .await
        .unwrap()
        .unwrap_or_else(|| panic!("{email} exists"))
        .status
}

fn fixture(name: &str) -> PathBuf {
    common::fixture(&format!("bounces/{name}"))
}

/// A fixture with its placeholders filled: `{VERP:S}` → the VERP address of (issue 1,
/// subscriber S); `{UNSUB:S}` → subscriber S's unsubscribe link.
fn filled(env: &TestEnv, name: &str) -> PathBuf {
    let mut text = std::fs::read_to_string(fixture(name)).unwrap();
    let settings = env.settings(&settings_toml());
    for sid in 1..=20 {
        let target = VerpTarget {
            issue_id: 1,
            subscriber_id: sid,
        };
        text = text.replace(
            &format!("{{VERP:{sid}}}"),
            verp::address(&return_path(), &secret(), target).as_ref(),
        );
        text = text.replace(
            &format!("{{UNSUB:{sid}}}"),
            &verdicts::subscribers::lifecycle::unsubscribe_url(
                &settings.http.public_url,
                &secret(),
                sid,
            ),
        );
    }
    env.write(name, &text)
}

/// One `--json` line: kind, subscriber, issue number, how it was matched.
type Line = (String, Option<String>, Option<i64>, Option<String>);

fn json_lines(stdout: &str) -> Vec<serde_json::Value> {
    stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fixture_reports_of_real_mtas_are_classified_attributed_and_applied_once() {
    let env = TestEnv::new().await;
    let store = setup(&env, 10).await;
    // Issue #1 goes out (outbox transport), so the deliveries the Message-IDs name exist.
    let out = run(&env, &["issue", "send", "1"], &base_vars());
    out.ok();

    let names = [
        "postfix-hard.eml",
        "gmail-delayed.eml",
        "m365-hard.eml",
        "exim-mailbox-full.eml",
        "qmail-hard.eml",
        "arf-complaint-redacted.eml",
        "vacation.eml",
        "never-sent.eml",
        "gmail-hard.eml",
        "soft-three.mbox",
    ];
    let paths: Vec<String> = names
        .iter()
        .map(|n| filled(&env, n).display().to_string())
        .collect();
    let mut args = vec!["--json", "bounces", "import"];
    args.extend(paths.iter().map(String::as_str));
    let out = run(&env, &args, &any_vars());
    let lines = json_lines(out.ok());
    let got: Vec<Line> = lines
        .iter()
        .map(|l| {
            (
                l["kind"].as_str().unwrap().to_string(),
                l["subscriber"].as_str().map(str::to_string),
                l["issue"].as_i64(),
                l["matched_by"].as_str().map(str::to_string),
            )
        })
        .collect();
    let s = |x: &str| Some(x.to_string());
    let want = vec![
        ("hard".into(), s("r0001@example.org"), Some(1), s("verp")),
        ("ignored".into(), s("r0002@example.org"), Some(1), s("verp")),
        (
            "hard".into(),
            s("r0003@example.org"),
            Some(1),
            s("message-id"),
        ),
        (
            "soft".into(),
            s("r0004@example.org"),
            Some(1),
            s("message-id"),
        ),
        (
            "hard".into(),
            s("r0005@example.org"),
            Some(1),
            s("message-id"),
        ),
        (
            "complaint".into(),
            s("r0006@example.org"),
            Some(1),
            s("list-unsubscribe"),
        ),
        ("ignored".into(), s("r0007@example.org"), Some(1), s("verp")),
        ("hard".into(), None, None, None),
        ("hard".into(), s("r0008@example.org"), Some(1), s("verp")),
        ("soft".into(), s("r0009@example.org"), None, s("recipient")),
        ("soft".into(), s("r0009@example.org"), None, s("recipient")),
        ("soft".into(), s("r0009@example.org"), None, s("recipient")),
    ];
    assert_eq!(got, want, "{}", out.stdout);
    assert_eq!(lines[0]["status"], "5.1.1");
    assert_eq!(lines[2]["status"], "5.1.10");
    assert_eq!(lines[9]["effect"], "soft_counted");
    assert_eq!(lines[9]["count"], 1);
    assert_eq!(lines[11]["effect"], "bounced", "the third soft bounce");

    use SubscriberStatus::*;
    let expected = [
        ("r0000@example.org", Confirmed),
        ("r0001@example.org", Bounced),
        ("r0002@example.org", Confirmed),
        ("r0003@example.org", Bounced),
        ("r0004@example.org", Confirmed),
        ("r0005@example.org", Bounced),
        ("r0006@example.org", Unsubscribed),
        ("r0007@example.org", Confirmed),
        ("r0008@example.org", Bounced),
        ("r0009@example.org", Bounced),
    ];
    for (email, status) in expected {
        assert_eq!(status_of(&store, email).await, status, "{email}");
    }
    // The complaint: suppressed and on the consent record.
    for (sql, what) in [
        (
            "SELECT CAST(COUNT(*) AS BIGINT) FROM consents WHERE event = 'complaint' AND subscriber_id = 7",
            "one consent event `complaint`",
        ),
        (
            "SELECT CAST(COUNT(*) AS BIGINT) FROM suppressions WHERE reason = 'complaint'",
            "one suppression",
        ),
    ] {
        let n: i64 = sqlx::query_scalar(sql)
            .fetch_one(store.pool())
            .await
            .unwrap();
        assert_eq!(n, 1, "{what}");
    }
    // Raw reasons are kept.
    let reason: String = sqlx::query_scalar(
        "SELECT reason FROM bounce_events WHERE subscriber_id = 4 AND kind = 'hard'",
    )
    .fetch_one(store.pool())
    .await
    .unwrap();
    assert!(
        reason.contains("RESOLVER.ADR.RecipientNotFound"),
        "{reason}"
    );
    assert_eq!(store.count_rows("bounce_events").await.unwrap(), 12);

    // The same reports again: every one a repeat, nothing changes.
    let before_consents = store.count_rows("consents").await.unwrap();
    let out = run(&env, &args, &any_vars());
    let again = json_lines(out.ok());
    assert_eq!(again.len(), 12);
    assert!(
        again.iter().all(|l| l["effect"] == "duplicate"),
        "{}",
        out.stdout
    );
    assert_eq!(store.count_rows("bounce_events").await.unwrap(), 12);
    assert_eq!(store.count_rows("consents").await.unwrap(), before_consents);
    for (email, status) in expected {
        assert_eq!(status_of(&store, email).await, status, "{email}");
    }

    // A forged report: a VERP address with a tag that does not verify, quoting the genuine
    // Message-ID of r0000's message. Attributed to nobody; r0000 stays.
    let genuine = verp::address(
        &return_path(),
        &secret(),
        VerpTarget {
            issue_id: 1,
            subscriber_id: 1,
        },
    )
    .to_string();
    let (local, domain) = genuine.split_once('@').unwrap();
    let tail = if local.ends_with("0000") {
        "1111"
    } else {
        "0000"
    };
    let forged_verp = format!("{}{tail}@{domain}", &local[..local.len() - 4]);
    let forged = std::fs::read_to_string(fixture("postfix-hard.eml"))
        .unwrap()
        .replace("{VERP:2}", &forged_verp)
        .replace("r0001@example.org", "r0000@example.org")
        .replace("issue-1.sub-2@", "issue-1.sub-1@")
        .replace("4XyZ1k2Lm9z9sWq@relay", "forged@relay");
    let forged_path = env.write("forged.eml", &forged);
    let out = run(
        &env,
        &["--json", "bounces", "import", forged_path.to_str().unwrap()],
        &base_vars(),
    );
    let line = &json_lines(out.ok())[0];
    assert_eq!(line["kind"], "hard", "{line}");
    assert!(line["subscriber"].is_null(), "{line}");
    assert_eq!(line["effect"], "unattributed", "{line}");
    assert_eq!(
        status_of(&store, "r0000@example.org").await,
        SubscriberStatus::Confirmed
    );

    // A signup of the complainer is not re-activated by an operator import.
    let out = run(
        &env,
        &["subscribers", "add", "r0006@example.org", "--confirmed"],
        &base_vars(),
    );
    assert_eq!(out.code, 2, "{}", out.stdout);
}

/// Anyone can mail the bounce mailbox. With `mail.return_path` set, the default
/// `bounces.attribution = "verp"` applies only reports that come back to a VERP address whose
/// signed tag verifies: a DSN sent to the bare bounce address, naming a confirmed reader and
/// quoting a guessable Message-ID, bounces nobody. With `any` (the old behaviour) it would.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_dsn_without_our_verp_address_bounces_nobody() {
    let env = TestEnv::new().await;
    let store = setup(&env, 6).await;
    run(&env, &["issue", "send", "1"], &base_vars()).ok();
    let forge = |name: &str, rcpt: &str, message_id: &str| {
        let text = std::fs::read_to_string(fixture("postfix-hard.eml"))
            .unwrap()
            .replace("{VERP:2}", RETURN_PATH)
            .replace("r0001@example.org", rcpt)
            .replace("issue-1.sub-2@", message_id)
            .replace("4XyZ1k2Lm9z9sWq@relay", &format!("{name}@relay"));
        env.write(&format!("{name}.eml"), &text)
            .display()
            .to_string()
    };
    // The recipient alone, and the recipient with the (sequential, guessable) Message-ID.
    let bare = forge("bare", "r0003@example.org", "unknown-1@");
    let guessed = forge("guessed", "r0004@example.org", "issue-1.sub-5@");
    let genuine = filled(&env, "postfix-hard.eml").display().to_string();
    let before_events = store.count_rows("bounce_events").await.unwrap();
    let out = run(
        &env,
        &["--json", "bounces", "import", &bare, &guessed, &genuine],
        &base_vars(),
    );
    let lines = json_lines(out.ok());
    assert_eq!(lines.len(), 3, "{}", out.stdout);
    for line in &lines[..2] {
        assert_eq!(line["kind"], "hard", "{line}");
        assert!(line["subscriber"].is_null(), "{line}");
        assert!(line["issue"].is_null(), "{line}");
        assert_eq!(line["effect"], "unattributed", "{line}");
    }
    assert_eq!(lines[2]["matched_by"], "verp", "{}", lines[2]);
    assert_eq!(lines[2]["subscriber"], "r0001@example.org");
    use SubscriberStatus::*;
    assert_eq!(status_of(&store, "r0003@example.org").await, Confirmed);
    assert_eq!(status_of(&store, "r0004@example.org").await, Confirmed);
    assert_eq!(status_of(&store, "r0001@example.org").await, Bounced);
    let attributed: i64 = sqlx::query_scalar(
        "SELECT CAST(COUNT(*) AS BIGINT) FROM bounce_events WHERE subscriber_id IS NOT NULL",
    )
    .fetch_one(store.pool())
    .await
    .unwrap();
    assert_eq!(attributed, 1, "only the VERP report names a reader");
    assert_eq!(
        store.count_rows("bounce_events").await.unwrap(),
        before_events + 3
    );

    // `any` keeps the fallbacks: the same forged reports (new copies) would bounce them.
    let bare = forge("bare2", "r0003@example.org", "unknown-2@");
    let out = run(&env, &["--json", "bounces", "import", &bare], &any_vars());
    let line = &json_lines(out.ok())[0];
    assert_eq!(line["matched_by"], "recipient", "{line}");
    assert_eq!(status_of(&store, "r0003@example.org").await, Bounced);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn input_that_is_not_mail_or_is_truncated_exits_2_and_writes_nothing() {
    let env = TestEnv::new().await;
    let store = setup(&env, 3).await;
    let good = filled(&env, "postfix-hard.eml");
    let cases = [
        ("not-mail.json", "not an email message"),
        ("truncated.eml", "truncated MIME"),
    ];
    for (bad, message) in cases {
        let bad_path = fixture(bad);
        let out = run(
            &env,
            &[
                "bounces",
                "import",
                good.to_str().unwrap(),
                bad_path.to_str().unwrap(),
            ],
            &base_vars(),
        );
        assert_eq!(out.code, 2, "{bad}: {}{}", out.stdout, out.stderr);
        assert!(
            out.stderr.contains(bad) && out.stderr.contains(message),
            "{bad}: {}",
            out.stderr
        );
        assert_eq!(store.count_rows("bounce_events").await.unwrap(), 0, "{bad}");
        assert_eq!(
            status_of(&store, "r0001@example.org").await,
            SubscriberStatus::Confirmed,
            "{bad}: the good report before it was not applied either"
        );
    }
    // A folder that is not a Maildir, and a missing file.
    let dir = env.path().join("plain-folder");
    std::fs::create_dir_all(&dir).unwrap();
    for path in [dir.clone(), env.path().join("missing.eml")] {
        let out = run(
            &env,
            &["bounces", "import", path.to_str().unwrap()],
            &base_vars(),
        );
        assert_eq!(out.code, 2, "{}", out.stderr);
        assert!(
            out.stderr.contains(path.to_str().unwrap()),
            "{}",
            out.stderr
        );
    }
    assert_eq!(store.count_rows("bounce_events").await.unwrap(), 0);
}

/// The address in smtp-sink's `X-Mail-Args` trace line (MAIL FROM).
fn envelope_sender(raw: &str) -> String {
    let line = raw
        .lines()
        .find_map(|l| l.strip_prefix("X-Mail-Args: "))
        .expect("smtp-sink records MAIL FROM");
    line.split_whitespace()
        .next()
        .unwrap()
        .trim_start_matches("FROM:")
        .trim_matches(['<', '>'])
        .to_string()
}

/// The message as our server sent it (without smtp-sink's trace lines).
fn original(raw: &str) -> String {
    raw.lines()
        .skip_while(|l| l.starts_with("X-") && !l.starts_with("X-Mailer"))
        .collect::<Vec<_>>()
        .join("\r\n")
}

fn dsn_for(verp: &str, rcpt: &str, original: &str, n: usize) -> String {
    format!(
        "Return-Path: <>\r\nDelivered-To: {verp}\r\nReceived: by mx.shiporskip.example (Postfix)\r\n\
         Date: Mon, 23 Nov 2026 09:00:1{n} +0000\r\n\
         From: MAILER-DAEMON@relay.example.net (Mail Delivery System)\r\nTo: {verp}\r\n\
         Subject: Undelivered Mail Returned to Sender\r\nMessage-Id: <dsn-{n}@relay.example.net>\r\n\
         MIME-Version: 1.0\r\n\
         Content-Type: multipart/report; report-type=delivery-status; boundary=\"b{n}\"\r\n\r\n\
         --b{n}\r\nContent-Type: text/plain\r\n\r\n<{rcpt}>: 550 5.1.1 User unknown\r\n\r\n\
         --b{n}\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; relay.example.net\r\n\r\n\
         Final-Recipient: rfc822; {rcpt}\r\nAction: failed\r\nStatus: 5.1.1\r\n\
         Diagnostic-Code: smtp; 550 5.1.1 User unknown\r\n\r\n\
         --b{n}\r\nContent-Type: message/rfc822\r\n\r\n{original}\r\n--b{n}--\r\n"
    )
}

fn arf_for(verp: &str, rcpt: &str, original: &str) -> String {
    let redacted = original.replace(rcpt, "redacted@fbl.example.com");
    format!(
        "From: Feedback Loop <fbl@fbl.example.com>\r\nTo: {verp}\r\n\
         Date: Mon, 23 Nov 2026 10:00:00 +0000\r\nSubject: Complaint\r\n\
         Message-ID: <arf-1@fbl.example.com>\r\nMIME-Version: 1.0\r\n\
         Content-Type: multipart/report; report-type=feedback-report; boundary=\"arf\"\r\n\r\n\
         --arf\r\nContent-Type: text/plain\r\n\r\nThis is an abuse report.\r\n\r\n\
         --arf\r\nContent-Type: message/feedback-report\r\n\r\nFeedback-Type: abuse\r\n\
         User-Agent: ExampleFBL/1.0\r\nVersion: 1\r\nOriginal-Rcpt-To: <redacted@fbl.example.com>\r\n\r\n\
         --arf\r\nContent-Type: message/rfc822\r\n\r\n{redacted}\r\n--arf--\r\n"
    )
}

fn write_maildir(root: &Path, messages: &[String]) {
    for sub in ["cur", "new", "tmp"] {
        std::fs::create_dir_all(root.join(sub)).unwrap();
    }
    for (i, m) in messages.iter().enumerate() {
        std::fs::write(root.join("new").join(format!("1763888{i:03}.M{i}P1.mx")), m).unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bounced_and_complaining_readers_of_one_issue_are_skipped_by_the_next() {
    let env = TestEnv::new().await;
    let store = setup(&env, 6).await;
    let sink = SmtpSink::start();
    run(&env, &["issue", "send", "1"], &smtp_vars(&sink)).ok();
    let mails = sink.wait_for(6, Duration::from_secs(10)).await;
    assert_eq!(mails.len(), 6);

    // Every issue message: its own signed envelope sender, and a Feedback-ID.
    let mut senders = BTreeMap::new();
    for m in &mails {
        let from = envelope_sender(&m.raw);
        let target = verp::parse(&return_path(), &secret(), &from)
            .unwrap_or_else(|| panic!("{from} is a VERP address of ours"));
        let sub = store
            .get_subscriber_by_email(&SubscriberEmail::parse(&m.rcpt).unwrap())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            target,
            VerpTarget {
                issue_id: 1,
                subscriber_id: sub.id
            }
        );
        assert_eq!(
            m.header("Feedback-ID").as_deref(),
            Some("1:weekly-verdicts.shiporskip.example:newsletter:shiporskip.example")
        );
        senders.insert(m.rcpt.clone(), (from, original(&m.raw)));
    }
    assert_eq!(
        senders
            .values()
            .map(|(f, _)| f)
            .collect::<BTreeSet<_>>()
            .len(),
        6,
        "one envelope sender per message"
    );

    // Two hard bounces and a complaint (recipient redacted), back to their VERP senders.
    let (v1, o1) = &senders["r0001@example.org"];
    let (v3, o3) = &senders["r0003@example.org"];
    let (v4, o4) = &senders["r0004@example.org"];
    let maildir = env.path().join("Maildir");
    write_maildir(
        &maildir,
        &[
            dsn_for(v1, "r0001@example.org", o1, 1),
            dsn_for(v3, "r0003@example.org", o3, 3),
            arf_for(v4, "r0004@example.org", o4),
        ],
    );
    let out = run(
        &env,
        &["--json", "bounces", "import", maildir.to_str().unwrap()],
        &base_vars(),
    );
    let lines = json_lines(out.ok());
    let mut got: Vec<(String, String)> = lines
        .iter()
        .map(|l| {
            assert_eq!(l["issue"], 1, "{l}");
            assert_eq!(l["matched_by"], "verp", "{l}");
            (
                l["kind"].as_str().unwrap().to_string(),
                l["subscriber"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    got.sort();
    assert_eq!(
        got,
        vec![
            ("complaint".to_string(), "r0004@example.org".to_string()),
            ("hard".to_string(), "r0001@example.org".to_string()),
            ("hard".to_string(), "r0003@example.org".to_string()),
        ]
    );

    // The next issue reaches exactly the other three.
    import_week(&store, 48).await;
    create_issue(
        &store,
        &Renderer::new().unwrap(),
        &env.settings(&settings_toml()),
        "2026-W48".parse().unwrap(),
    )
    .await
    .unwrap();
    let before = sink.messages().len();
    let out = run(&env, &["issue", "send", "2"], &smtp_vars(&sink));
    out.ok();
    sink.wait_for(before + 3, Duration::from_secs(10)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let all = sink.messages();
    let second: BTreeSet<String> = all
        .iter()
        .filter(|m| {
            m.header("Message-ID")
                .is_some_and(|id| id.starts_with("<issue-2."))
        })
        .map(|m| m.rcpt.clone())
        .collect();
    assert_eq!(all.len(), before + 3, "nothing else went out");
    assert_eq!(
        second,
        [
            "r0000@example.org",
            "r0002@example.org",
            "r0005@example.org"
        ]
        .map(String::from)
        .into_iter()
        .collect()
    );
}

/// `serve` (HTTP + its own delivery worker) sending slowly over SMTP; a complaint arrives after a
/// few messages, while the sample is still too small to judge. Once enough messages are out the
/// complaint rate is far above 0.3 %, and the send pauses itself with that reason; `issue
/// status` and `/metrics` show the figures.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn complaints_arriving_mid_send_pause_it_with_the_reason() {
    let sink = SmtpSink::start();
    let app = common::TestApp::spawn(&format!(
        "{}[mail]\ntransport = \"smtp\"\nreturn_path = {RETURN_PATH:?}\n\
         [smtp]\nurl = {:?}\ntimeout_seconds = 5\n\
         [delivery]\nrate_per_second = 4\nconcurrency = 2\nrate_min_sample = 10\n",
        format_args!("[security]\nsecret_key = {SECRET:?}\n"),
        sink.url()
    ))
    .await;
    let store = &app.store;
    import_week(store, 47).await;
    common::add_confirmed(store, 40, "r", 4).await;
    let settings = app.env.settings(&settings_toml());
    let (issue, _) = create_issue(
        store,
        &Renderer::new().unwrap(),
        &settings,
        "2026-W47".parse().unwrap(),
    )
    .await
    .unwrap()
    .expect("the week has comparisons");
    common::start_send(store, issue.id).await;

    // A complaint about one of the first messages, addressed to its VERP sender.
    let first = sink.wait_for(3, Duration::from_secs(15)).await;
    let m = &first[0];
    let arf = arf_for(&envelope_sender(&m.raw), &m.rcpt, &original(&m.raw));
    let path = app.env.write("complaint.eml", &arf);
    let out = run(
        &app.env,
        &["--json", "bounces", "import", path.to_str().unwrap()],
        &base_vars(),
    );
    let line = &json_lines(out.ok())[0];
    assert_eq!(line["kind"], "complaint", "{line}");
    assert_eq!(line["subscriber"], m.rcpt.as_str(), "{line}");

    // Paused by the engine once 10 messages are out (1 complaint in 10: 10 % > 0.3 %).
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let row = loop {
        let row = store.get_issue(issue.id).await.unwrap().unwrap();
        if row.status == verdicts::issues::IssueStatus::Paused {
            break row;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "not paused: {:?} after {} messages",
            row.status,
            sink.messages().len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let reason = row.status_reason.unwrap_or_default();
    assert!(
        reason.contains("complaint rate") && reason.contains("delivery.max_complaint_rate"),
        "{reason}"
    );
    // Rows already claimed may still leave (the rate limiter spaces them out); then nothing.
    let received = common::quiesced(store, issue.id, || sink.messages().len()).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        sink.messages().len(),
        received,
        "nothing leaves a paused issue"
    );
    let sent = store.delivery_counts(issue.id).await.unwrap().sent;
    assert!(
        (10..30).contains(&received),
        "the send stopped early: {received} of 40"
    );
    let out = run(&app.env, &["issue", "status", "1"], &base_vars());
    let text = out.ok();
    assert!(text.contains("status:   paused"), "{text}");
    assert!(text.contains("complaint rate"), "{text}");
    let pct = format!("{:.2}%", 100.0 / sent as f64);
    assert!(
        text.contains(&format!(
            "bounces:  0 hard (0.00%) · 0 soft · 1 complaints ({pct})"
        )),
        "{text}"
    );

    let body = app
        .admin(reqwest::Method::GET, "/metrics")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for line in [
        "verdicts_issue_bounce_events_total{issue=\"1\",kind=\"complaint\"} 1",
        "verdicts_issue_bounce_events_total{issue=\"1\",kind=\"hard\"} 0",
    ] {
        assert!(body.contains(line), "missing {line:?} in:\n{body}");
    }
    let rate: f64 = body
        .lines()
        .find_map(|l| l.strip_prefix("verdicts_issue_complaint_rate{issue=\"1\"} "))
        .expect("the complaint rate of issue 1")
        .parse()
        .unwrap();
    assert!(
        (rate - 1.0 / sent as f64).abs() < 1e-9,
        "{rate} vs 1/{sent}"
    );
    app.stop().await;
}

async fn wait_for_status(store: &Store, email: &str, want: SubscriberStatus) {
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let now = status_of(store, email).await;
        if now == want {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{email} is {now:?}, expected {want:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn wait_issue(store: &Store, issue_id: i64, want: verdicts::issues::IssueStatus) {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while store.issue_status(issue_id).await.unwrap() != Some(want) {
        assert!(
            std::time::Instant::now() < deadline,
            "issue {issue_id} is not {want}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The whole loop through the bounce mailbox: `serve` sends issue #1 over SMTP; DSNs, a
/// complaint, an auto-reply, a message that is not a report and a forged DSN (to the bare
/// bounce address, naming a confirmed reader) land in a real IMAP mailbox (Dovecot); `serve`
/// polls it, applies them and marks them; the forged one bounces nobody; issue #2 skips
/// exactly the bounced and complaining readers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bounce_mailbox_is_polled_and_the_next_issue_skips_those_readers() {
    let sink = SmtpSink::start();
    let dovecot = common::imap::Dovecot::start();
    let app = common::TestApp::spawn(&format!(
        "[security]\nsecret_key = {SECRET:?}\n\
         [mail]\ntransport = \"smtp\"\nreturn_path = {RETURN_PATH:?}\n\
         [smtp]\nurl = {:?}\ntimeout_seconds = 5\n\
         [bounces]\nimap_url = {:?}\nimap_poll = \"300ms\"\n",
        sink.url(),
        dovecot.url()
    ))
    .await;
    let store = &app.store;
    import_week(store, 47).await;
    common::add_confirmed(store, 6, "r", 4).await;
    let settings = app.env.settings(&settings_toml());
    let renderer = Renderer::new().unwrap();
    let (first, _) = create_issue(store, &renderer, &settings, "2026-W47".parse().unwrap())
        .await
        .unwrap()
        .expect("the week has comparisons");
    common::start_send(store, first.id).await;
    wait_issue(store, first.id, verdicts::issues::IssueStatus::Sent).await;
    let mails = sink.wait_for(6, Duration::from_secs(10)).await;
    let by_rcpt: BTreeMap<String, (String, String)> = mails
        .iter()
        .map(|m| (m.rcpt.clone(), (envelope_sender(&m.raw), original(&m.raw))))
        .collect();
    let (v1, o1) = &by_rcpt["r0001@example.org"];
    let (v3, o3) = &by_rcpt["r0003@example.org"];
    let (v4, o4) = &by_rcpt["r0004@example.org"];
    let (v5, _) = &by_rcpt["r0005@example.org"];
    // Anyone can mail the bounce mailbox: a DSN to the bare bounce address (no VERP tag),
    // naming a confirmed reader and quoting their genuine message (its Message-ID and
    // List-Unsubscribe link). Under the default `bounces.attribution = "verp"` it bounces nobody.
    let (_, o2) = &by_rcpt["r0002@example.org"];
    let forged = dsn_for(RETURN_PATH, "r0002@example.org", o2, 6);
    let vacation = format!(
        "From: r0005@example.org\r\nTo: {v5}\r\nSubject: Out of Office: back Monday\r\n\
         Date: Mon, 23 Nov 2026 09:00:30 +0000\r\nMessage-ID: <ooo-5@example.org>\r\n\
         Auto-Submitted: auto-replied\r\n\r\nI am away until Monday.\r\n"
    );
    dovecot
        .append(&[
            dsn_for(v1, "r0001@example.org", o1, 1),
            dsn_for(v3, "r0003@example.org", o3, 3),
            arf_for(v4, "r0004@example.org", o4),
            vacation,
            "this is not a mail message at all\r\n".to_string(),
            forged,
        ])
        .await;
    wait_for_status(store, "r0001@example.org", SubscriberStatus::Bounced).await;
    wait_for_status(store, "r0003@example.org", SubscriberStatus::Bounced).await;
    wait_for_status(store, "r0004@example.org", SubscriberStatus::Unsubscribed).await;
    // Every message is marked handled; the unreadable one is flagged for a person.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !dovecot.search("UNSEEN").await.is_empty() {
        assert!(std::time::Instant::now() < deadline, "messages left unseen");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(dovecot.search("FLAGGED").await, vec![5]);
    assert_eq!(store.count_rows("bounce_events").await.unwrap(), 5);
    assert_eq!(
        status_of(store, "r0002@example.org").await,
        SubscriberStatus::Confirmed,
        "a forged DSN without our VERP address bounces nobody"
    );
    let unattributed: i64 = sqlx::query_scalar(
        "SELECT CAST(COUNT(*) AS BIGINT) FROM bounce_events WHERE subscriber_id IS NULL",
    )
    .fetch_one(store.pool())
    .await
    .unwrap();
    assert_eq!(
        unattributed, 1,
        "the forged report is kept, attributed to nobody"
    );
    let sources: Vec<String> = sqlx::query_scalar("SELECT DISTINCT source FROM bounce_events")
        .fetch_all(store.pool())
        .await
        .unwrap();
    assert_eq!(sources, vec!["imap".to_string()]);
    assert_eq!(
        status_of(store, "r0005@example.org").await,
        SubscriberStatus::Confirmed,
        "an auto-reply changes nothing"
    );

    import_week(store, 48).await;
    let (second, _) = create_issue(store, &renderer, &settings, "2026-W48".parse().unwrap())
        .await
        .unwrap()
        .expect("the week has comparisons");
    common::start_send(store, second.id).await;
    wait_issue(store, second.id, verdicts::issues::IssueStatus::Sent).await;
    sink.wait_for(9, Duration::from_secs(10)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let all = sink.messages();
    let second_rcpts: BTreeSet<String> = all
        .iter()
        .filter(|m| {
            m.header("Message-ID")
                .is_some_and(|id| id.starts_with("<issue-2."))
        })
        .map(|m| m.rcpt.clone())
        .collect();
    assert_eq!(all.len(), 9, "nothing else went out");
    assert_eq!(
        second_rcpts,
        [
            "r0000@example.org",
            "r0002@example.org",
            "r0005@example.org"
        ]
        .map(String::from)
        .into_iter()
        .collect()
    );
    app.stop().await;
}

/// `imaps://`: the mailbox's certificate must chain to a trusted root — the public roots or
/// `bounces.imap_ca_file`. Untrusted: the poll fails and applies nothing; trusted: the DSN is
/// applied and marked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bounce_mailbox_over_imaps_needs_a_trusted_certificate() {
    use verdicts::bounces::imap::{Mailbox, PollOptions, poll_once};
    let env = TestEnv::new().await;
    let store = setup(&env, 3).await;
    let dovecot = common::imap::Dovecot::start_tls();
    let target = VerpTarget {
        issue_id: 1,
        subscriber_id: 2,
    };
    let verp = verp::address(&return_path(), &secret(), target).to_string();
    let original = "From: Weekly AI Tool Verdicts <verdicts@shiporskip.example>\r\n\
                    To: r0001@example.org\r\nSubject: Weekly AI Tool Verdicts #1\r\n\
                    Message-ID: <issue-1.sub-2@shiporskip.example>\r\n\r\nHello\r\n";
    dovecot
        .append(&[dsn_for(&verp, "r0001@example.org", original, 7)])
        .await;
    let settings = env.settings(&settings_toml());
    // The poller hands every report to the application layer, as `serve` does.
    let intake = common::app(&store, &settings);
    let mailbox = Mailbox::from_url(&dovecot.tls_url()).unwrap();
    let resolver = verdicts::dns::Resolver::new(&settings.dns).unwrap();
    let options = |ca| PollOptions {
        done_folder: None,
        ca_file: ca,
        timeout: Duration::from_secs(5),
        resolver: &resolver,
    };
    let err = poll_once(&mailbox, &intake, options(None))
        .await
        .expect_err("a certificate from an unknown CA is refused");
    assert!(format!("{err:#}").contains("certificate"), "{err:#}");
    assert_eq!(store.count_rows("bounce_events").await.unwrap(), 0);

    let ca = dovecot.ca_file();
    let polled = poll_once(&mailbox, &intake, options(Some(ca.as_path())))
        .await
        .expect("polling over TLS with the CA");
    assert_eq!((polled.handled, polled.unreadable), (1, 0));
    assert_eq!(
        status_of(&store, "r0001@example.org").await,
        SubscriberStatus::Bounced
    );
    assert!(dovecot.search("UNSEEN").await.is_empty());
    // A second poll finds nothing new.
    let again = poll_once(&mailbox, &intake, options(Some(ca.as_path())))
        .await
        .unwrap();
    assert_eq!((again.handled, again.unreadable), (0, 0));
}
