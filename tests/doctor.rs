//! `verdicts doctor` against real parts: dnsmasq on loopback serving the records (SPF, DKIM of
//! `dkim keygen`'s keys, DMARC, MX), a submission server (aiosmtpd) with STARTTLS and AUTH
//! under a private CA, and the real binary. Each case changes one thing from a correct setup.
//! Both databases.

mod common;

use std::time::{Duration, Instant};

use common::TestEnv;
use common::dns::{DnsServer, Zone};
use common::submission::{ServerOptions, Submission, TestCa};
use serde_json::Value;

const USER: &str = "news";
const PASSWORD: &str = "relay-password";

struct Setup {
    env: TestEnv,
    ca: TestCa,
    relay: Submission,
    rsa: String,
    ed: String,
}

/// `verdicts dkim keygen --json` for `selector`: the record it prints.
fn keygen(env: &TestEnv, selector: &str, algorithm: &str, out: &str) -> String {
    let text = env
        .cli(&[
            "dkim",
            "keygen",
            "--selector",
            selector,
            "--algorithm",
            algorithm,
            "--domain",
            "verdicts.test",
            "--out",
            out,
            "--json",
        ])
        .ok()
        .to_string();
    let json: Value = serde_json::from_str(text.trim()).unwrap();
    json["record"].as_str().unwrap().to_string()
}

async fn setup() -> Setup {
    let env = TestEnv::new().await;
    let rsa = keygen(&env, "main", "rsa", "dkim.pem");
    let ed = keygen(&env, "ed", "ed25519", "dkim-ed.pem");
    let ca = TestCa::new();
    let relay = Submission::start(&ServerOptions {
        tls: Some(&ca),
        login: Some((USER, PASSWORD)),
        ..Default::default()
    });
    Setup {
        env,
        ca,
        relay,
        rsa,
        ed,
    }
}

/// Every record a correct installation publishes.
fn good_zone(s: &Setup) -> Zone {
    Zone::default()
        .local("verdicts.test")
        .txt("verdicts.test", "v=spf1 ip4:127.0.0.1 -all")
        .txt("main._domainkey.verdicts.test", &s.rsa)
        .txt("ed._domainkey.verdicts.test", &s.ed)
        .txt(
            "_dmarc.verdicts.test",
            "v=DMARC1; p=quarantine; rua=mailto:dmarc@verdicts.test",
        )
        .mx("verdicts.test", "mx.verdicts.test", 10)
        .host("mx.verdicts.test", "127.0.0.1")
}

/// A production-like configuration resolving through `dns` (`extra` appended last).
fn config(s: &Setup, dns: &str, extra: &str) -> String {
    format!(
        "[mail]\ntransport = \"smtp\"\nfrom = \"Verdicts <news@verdicts.test>\"\n\
         return_path = \"bounces@verdicts.test\"\n\
         [smtp]\nurl = \"smtp://{USER}:{PASSWORD}@127.0.0.1:{}?tls=required\"\n\
         ca_file = {:?}\ntimeout_seconds = 5\n\
         [http]\npublic_url = \"https://news.verdicts.test\"\n\
         [site]\nbase_url = \"https://verdicts.test\"\n\
         [newsletter]\nlist_id = \"weekly.verdicts.test\"\n\
         postal_address = \"Verdicts, 2 Real Road, 12345 Town\"\n\
         [security]\nsecret_key = \"0123456789abcdef0123456789abcdef-doctor\"\n\
         [dkim]\ndomain = \"verdicts.test\"\nselector = \"main\"\nprivate_key_file = \"dkim.pem\"\n\
         ed25519_selector = \"ed\"\ned25519_key_file = \"dkim-ed.pem\"\n\
         [dns]\nnameservers = [\"{dns}\"]\ntimeout = \"1s\"\n{extra}",
        s.relay.port, s.ca.ca_file
    )
}

struct Report {
    code: i32,
    checks: Vec<Value>,
    stderr: String,
    took: Duration,
}

impl Report {
    fn of(&self, name: &str) -> Vec<&Value> {
        self.checks.iter().filter(|c| c["check"] == name).collect()
    }
    fn status(&self, name: &str) -> Vec<String> {
        self.of(name)
            .iter()
            .map(|c| c["status"].as_str().unwrap().to_string())
            .collect()
    }
}

/// `verdicts ARGS…` resolving as its `--config` says (not the suite's loopback default).
fn cli(env: &TestEnv, args: &[&str]) -> common::CliOutput {
    common::CliOutput::from(
        env.command()
            .env_remove("VERDICTS__DNS__NAMESERVERS")
            .env_remove("VERDICTS__DNS__TIMEOUT")
            .args(args)
            .output()
            .unwrap(),
    )
}

fn doctor(s: &Setup, toml: &str) -> Report {
    s.env.write("doctor.toml", toml);
    let start = Instant::now();
    let out = cli(&s.env, &["--config", "doctor.toml", "doctor", "--json"]);
    let took = start.elapsed();
    let checks: Vec<Value> = out
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    Report {
        code: out.code,
        checks,
        stderr: out.stderr,
        took,
    }
}

const NAMES: [&str; 9] = [
    "spf",
    "dkim",
    "dmarc",
    "return_path",
    "smtp",
    "public_url",
    "site",
    "database",
    "secret_key",
];

#[tokio::test]
async fn correct_records_pass_every_check_and_exit_0() {
    let s = setup().await;
    let dns = DnsServer::start(&good_zone(&s));
    let r = doctor(&s, &config(&s, &dns.address(), ""));
    assert_eq!(r.code, 0, "{:#?}\n{}", r.checks, r.stderr);
    for name in NAMES {
        assert!(!r.of(name).is_empty(), "no {name} check: {:#?}", r.checks);
    }
    for c in &r.checks {
        assert_eq!(c["status"], "ok", "{c}");
        assert!(c["fix"].is_null(), "{c}");
    }
    // One dkim line per selector, each matching its key.
    let dkim = r.of("dkim");
    assert_eq!(dkim.len(), 2);
    assert!(
        dkim[0]["detail"]
            .as_str()
            .unwrap()
            .contains("selector main")
    );
    assert!(dkim[1]["detail"].as_str().unwrap().contains("(ed25519)"));
    assert!(
        r.of("return_path")[0]["detail"]
            .as_str()
            .unwrap()
            .contains("MX mx.verdicts.test")
    );
    // The relay saw a login over TLS and no message.
    let auths = s.relay.events_of("auth");
    assert_eq!(auths.len(), 1, "{auths:?}");
    assert_eq!(auths[0]["ok"], true);
    assert_eq!(auths[0]["tls"], true);
    assert!(s.relay.events_of("message").is_empty(), "doctor sent mail");

    // The human report: one line per check.
    s.env.write("doctor.toml", &config(&s, &dns.address(), ""));
    let out = cli(&s.env, &["--config", "doctor.toml", "doctor"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let text = out.ok();
    assert!(text.lines().any(|l| l.starts_with("ok    spf ")), "{text}");
    assert_eq!(text.lines().count(), 10, "{text}");
}

#[tokio::test]
async fn a_dkim_record_of_another_key_fails_dkim_and_exits_1() {
    let s = setup().await;
    let other = keygen(&s.env, "main", "rsa", "other.pem");
    // main._domainkey publishes another key.
    let zone = Zone::default()
        .local("verdicts.test")
        .txt("main._domainkey.verdicts.test", &other)
        .txt("ed._domainkey.verdicts.test", &s.ed)
        .txt("verdicts.test", "v=spf1 ip4:127.0.0.1 -all")
        .txt(
            "_dmarc.verdicts.test",
            "v=DMARC1; p=quarantine; rua=mailto:dmarc@verdicts.test",
        )
        .mx("verdicts.test", "mx.verdicts.test", 10)
        .host("mx.verdicts.test", "127.0.0.1");
    let dns = DnsServer::start(&zone);
    let r = doctor(&s, &config(&s, &dns.address(), ""));
    assert_eq!(r.code, 1, "{:#?}", r.checks);
    assert_eq!(r.status("dkim"), ["fail", "ok"]);
    let main = r.of("dkim")[0];
    assert!(
        main["detail"]
            .as_str()
            .unwrap()
            .contains("holds another key than dkim.private_key_file"),
        "{main}"
    );
    // The fix is the record of the configured key.
    assert!(main["fix"].as_str().unwrap().contains(&s.rsa), "{main}");
    assert_eq!(r.status("spf"), ["ok"]);
    assert!(r.stderr.contains("1 check(s) failed: dkim"), "{}", r.stderr);
}

#[tokio::test]
async fn an_rsa_key_in_the_ed25519_setting_fails_dkim_as_serve_would_refuse_it() {
    let s = setup().await;
    // The Ed25519 selector publishes the RSA key's record, so only the key's type is wrong.
    let zone = Zone::default()
        .local("verdicts.test")
        .txt("main._domainkey.verdicts.test", &s.rsa)
        .txt("ed._domainkey.verdicts.test", &s.rsa)
        .txt("verdicts.test", "v=spf1 ip4:127.0.0.1 -all")
        .txt(
            "_dmarc.verdicts.test",
            "v=DMARC1; p=quarantine; rua=mailto:dmarc@verdicts.test",
        )
        .mx("verdicts.test", "mx.verdicts.test", 10)
        .host("mx.verdicts.test", "127.0.0.1");
    let dns = DnsServer::start(&zone);
    let toml = config(&s, &dns.address(), "").replace(
        "ed25519_key_file = \"dkim-ed.pem\"",
        "ed25519_key_file = \"dkim.pem\"",
    );
    let r = doctor(&s, &toml);
    assert_eq!(r.code, 1, "{:#?}", r.checks);
    assert_eq!(r.status("dkim"), ["fail"]);
    let c = r.of("dkim")[0];
    let detail = c["detail"].as_str().unwrap();
    assert!(
        detail.contains("dkim.ed25519_key_file")
            && detail.contains("is an rsa key; this setting takes an ed25519 key"),
        "{c}"
    );
    let fix = c["fix"].as_str().unwrap();
    assert!(
        fix.contains("verdicts dkim keygen --algorithm ed25519 --selector ed"),
        "{c}"
    );
    // serve refuses the same settings.
    let out = cli(&s.env, &["--config", "doctor.toml", "issue", "send", "1"]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.stderr
            .contains("is an rsa key; this setting takes an ed25519 key"),
        "{}",
        out.stderr
    );
}

#[tokio::test]
async fn no_dmarc_and_no_spf_each_fail_with_the_record_to_publish() {
    let s = setup().await;
    let dns = DnsServer::start(
        &Zone::default()
            .local("verdicts.test")
            .txt("main._domainkey.verdicts.test", &s.rsa)
            .txt("ed._domainkey.verdicts.test", &s.ed)
            .mx("verdicts.test", "mx.verdicts.test", 10)
            .host("mx.verdicts.test", "127.0.0.1"),
    );
    let r = doctor(&s, &config(&s, &dns.address(), ""));
    assert_eq!(r.code, 1);
    assert_eq!(r.status("dmarc"), ["fail"]);
    assert!(
        r.of("dmarc")[0]["fix"]
            .as_str()
            .unwrap()
            .contains("_dmarc.verdicts.test. IN TXT \"v=DMARC1; p=quarantine;")
    );
    assert_eq!(r.status("spf"), ["fail"]);
    assert!(
        r.of("spf")[0]["fix"]
            .as_str()
            .unwrap()
            .contains("verdicts.test. IN TXT \"v=spf1 a:127.0.0.1 -all\"")
    );
    assert_eq!(r.status("dkim"), ["ok", "ok"]);
    assert_eq!(r.status("return_path"), ["ok"]);
    assert!(r.stderr.contains("spf, dmarc"), "{}", r.stderr);

    // DMARC present but the DKIM domain does not align with From.
    let dns = DnsServer::start(&good_zone(&s).txt("_dmarc.other.test", "v=DMARC1; p=reject"));
    let r = doctor(
        &s,
        &config(&s, &dns.address(), "")
            .replace("domain = \"verdicts.test\"", "domain = \"other.test\""),
    );
    assert_eq!(r.status("dmarc"), ["fail"]);
    assert!(
        r.of("dmarc")[0]["detail"]
            .as_str()
            .unwrap()
            .contains("does not align"),
        "{:?}",
        r.of("dmarc")
    );
}

#[tokio::test]
async fn a_return_path_domain_that_takes_no_mail_fails() {
    let s = setup().await;
    let dns = DnsServer::start(
        &good_zone(&s)
            .mx("nullmx.verdicts.test", ".", 0)
            .host("addr.verdicts.test", "127.0.0.10"),
    );
    let with = |rp: &str| {
        doctor(
            &s,
            &config(&s, &dns.address(), "")
                .replace("bounces@verdicts.test", &format!("bounces@{rp}")),
        )
    };
    let r = with("nullmx.verdicts.test");
    assert_eq!(r.status("return_path"), ["fail"]);
    assert!(
        r.of("return_path")[0]["detail"]
            .as_str()
            .unwrap()
            .contains("null MX")
    );
    let r = with("nowhere.verdicts.test");
    assert_eq!(r.status("return_path"), ["fail"]);
    assert!(
        r.of("return_path")[0]["detail"]
            .as_str()
            .unwrap()
            .contains("does not exist in DNS")
    );
    // No MX but an address: mail goes there (RFC 5321 implicit MX).
    let r = with("addr.verdicts.test");
    assert_eq!(r.status("return_path"), ["ok"], "{:?}", r.of("return_path"));
}

#[tokio::test]
async fn a_relay_that_refuses_the_login_or_is_down_fails_smtp() {
    let s = setup().await;
    let dns = DnsServer::start(&good_zone(&s));
    s.relay.set_login(USER, "another-password");
    let r = doctor(&s, &config(&s, &dns.address(), ""));
    assert_eq!(r.code, 1);
    assert_eq!(r.status("smtp"), ["fail"]);
    let detail = r.of("smtp")[0]["detail"].as_str().unwrap().to_string();
    assert!(detail.contains("logging in"), "{detail}");
    assert!(r.stderr.contains("failed: smtp"), "{}", r.stderr);
    assert!(s.relay.events_of("message").is_empty());

    // Down: nothing listens on its port any more.
    let port = s.relay.port;
    let Setup {
        env,
        ca,
        relay,
        rsa,
        ed,
    } = s;
    drop(relay);
    let s = Setup {
        env,
        ca,
        relay: Submission::start(&ServerOptions::default()),
        rsa,
        ed,
    };
    let r = doctor(
        &s,
        &config(&s, &dns.address(), "").replace(
            &format!("127.0.0.1:{}?", s.relay.port),
            &format!("127.0.0.1:{port}?"),
        ),
    );
    assert_eq!(r.status("smtp"), ["fail"]);
    let detail = r.of("smtp")[0]["detail"].as_str().unwrap();
    assert!(detail.contains("connecting"), "{detail}");
}

#[tokio::test]
async fn a_loopback_or_plain_http_public_url_warns_and_still_exits_0() {
    let s = setup().await;
    let dns = DnsServer::start(&good_zone(&s));
    let toml = config(&s, &dns.address(), "")
        .replace("https://news.verdicts.test", "http://127.0.0.1:8080");
    let r = doctor(&s, &toml);
    assert_eq!(r.code, 0, "warnings pass: {}", r.stderr);
    assert_eq!(r.status("public_url"), ["warn"]);
    assert!(
        r.of("public_url")[0]["fix"]
            .as_str()
            .unwrap()
            .contains("http.public_url")
    );
    let toml = config(&s, &dns.address(), "")
        .replace("https://news.verdicts.test", "http://news.verdicts.test");
    assert_eq!(doctor(&s, &toml).status("public_url"), ["warn"]);
    // The shipped examples warn too.
    let toml = config(&s, &dns.address(), "")
        .replace("https://verdicts.test", "https://shiporskip.example");
    let r = doctor(&s, &toml);
    assert_eq!(r.status("site"), ["warn"]);
    assert!(
        r.of("site")[0]["detail"]
            .as_str()
            .unwrap()
            .contains("site.base_url")
    );
    // The shipped List-Id and postal address (every issue carries both) warn as well.
    let toml = config(&s, &dns.address(), "")
        .replace("weekly.verdicts.test", "weekly-verdicts.shiporskip.example")
        .replace(
            "Verdicts, 2 Real Road, 12345 Town",
            "Ship or Skip, 1 Example Street, 10115 Berlin, Germany",
        );
    let r = doctor(&s, &toml);
    assert_eq!(r.code, 0, "warnings pass: {}", r.stderr);
    assert_eq!(r.status("site"), ["warn"]);
    let c = r.of("site")[0];
    let detail = c["detail"].as_str().unwrap();
    assert!(
        detail.contains("newsletter.list_id = weekly-verdicts.shiporskip.example")
            && detail.contains("newsletter.postal_address = Ship or Skip, 1 Example Street")
            && !detail.contains("site.base_url"),
        "{c}"
    );
    assert!(
        c["fix"]
            .as_str()
            .unwrap()
            .contains("newsletter.postal_address"),
        "{c}"
    );
}

#[tokio::test]
async fn an_spf_record_without_a_sender_fails_and_the_envelope_domain_is_checked_too() {
    let s = setup().await;
    // `-all` alone authorises nobody: every message fails SPF.
    let zone = good_zone(&s);
    let strict = Zone::default()
        .local("verdicts.test")
        .txt("verdicts.test", "v=spf1 -all")
        .txt("main._domainkey.verdicts.test", &s.rsa)
        .txt("ed._domainkey.verdicts.test", &s.ed)
        .txt(
            "_dmarc.verdicts.test",
            "v=DMARC1; p=quarantine; rua=mailto:dmarc@verdicts.test",
        )
        .mx("verdicts.test", "mx.verdicts.test", 10)
        .host("mx.verdicts.test", "127.0.0.1");
    let dns = DnsServer::start(&strict);
    let r = doctor(&s, &config(&s, &dns.address(), ""));
    assert_eq!(r.code, 1);
    assert_eq!(r.status("spf"), ["fail"]);
    let c = r.of("spf")[0];
    assert!(
        c["detail"]
            .as_str()
            .unwrap()
            .contains("authorises no sender"),
        "{c}"
    );
    assert!(
        c["fix"]
            .as_str()
            .unwrap()
            .contains("publish verdicts.test. IN TXT \"v=spf1 a:127.0.0.1 -all\""),
        "{c}"
    );
    drop(dns);

    // A return path on another domain: SPF is checked there too (the envelope sender).
    let zone = zone
        .local("bounce.test")
        .mx("bounce.test", "mx.verdicts.test", 10);
    let dns = DnsServer::start(&zone);
    let toml =
        config(&s, &dns.address(), "").replace("bounces@verdicts.test", "bounces@bounce.test");
    let r = doctor(&s, &toml);
    assert_eq!(r.status("spf"), ["ok", "fail"], "{:#?}", r.of("spf"));
    let c = r.of("spf")[1];
    assert!(
        c["detail"]
            .as_str()
            .unwrap()
            .contains("bounce.test (mail.return_path)"),
        "{c}"
    );
    assert!(
        c["fix"].as_str().unwrap().contains("publish bounce.test."),
        "{c}"
    );
    drop(dns);
    let zone = zone.txt("bounce.test", "v=spf1 ip4:127.0.0.1 -all");
    let dns = DnsServer::start(&zone);
    let toml =
        config(&s, &dns.address(), "").replace("bounces@verdicts.test", "bounces@bounce.test");
    let r = doctor(&s, &toml);
    assert_eq!(r.status("spf"), ["ok", "ok"], "{:#?}", r.of("spf"));
    assert_eq!(r.code, 0, "{:#?}", r.checks);
    drop(dns);
}

#[tokio::test]
async fn a_dns_server_that_is_down_fails_every_dns_check_within_the_timeout() {
    let s = setup().await;
    let dns = DnsServer::start(&good_zone(&s));
    let address = dns.address();
    dns.stop();
    let r = doctor(&s, &config(&s, &address, ""));
    assert_eq!(r.code, 1);
    for name in ["spf", "dkim", "dmarc", "return_path"] {
        for c in r.of(name) {
            assert_eq!(c["status"], "fail", "{c}");
            let detail = c["detail"].as_str().unwrap();
            assert!(detail.contains(&address), "{c}");
            assert!(
                c["fix"].as_str().unwrap().contains("dns.nameservers"),
                "{c}"
            );
        }
    }
    // The checks that need no DNS still pass.
    assert_eq!(r.status("smtp"), ["ok"]);
    assert_eq!(r.status("database"), ["ok"]);
    // dns.timeout = 1s bounds each look-up; they run side by side.
    assert!(r.took < Duration::from_secs(5), "took {:?}", r.took);
}

#[tokio::test]
async fn the_relay_host_is_resolved_through_dns_settings() {
    let s = setup().await;
    // A name only the test's DNS server knows: the system's resolver could not find it.
    let zone = good_zone(&s).host("relay.verdicts.test", "127.0.0.1");
    let dns = DnsServer::start(&zone);
    let address = dns.address();
    let toml = config(&s, &address, "").replace("@127.0.0.1:", "@relay.verdicts.test:");
    assert!(toml.contains("@relay.verdicts.test:"), "{toml}");
    let r = doctor(&s, &toml);
    assert_eq!(r.status("smtp"), ["ok"], "{:?}", r.of("smtp"));
    assert!(
        r.of("smtp")[0]["detail"]
            .as_str()
            .unwrap()
            .contains("relay.verdicts.test"),
        "{:?}",
        r.of("smtp")
    );
    assert_eq!(r.code, 0, "{:?}", r.checks);
    // The DNS server down: smtp fails naming the DNS failure, within dns.timeout (1s).
    dns.stop();
    let r = doctor(&s, &toml);
    assert_eq!(r.status("smtp"), ["fail"]);
    let detail = r.of("smtp")[0]["detail"].as_str().unwrap();
    assert!(
        detail.contains("resolving the relay relay.verdicts.test (dns.*)")
            && detail.contains(&address),
        "{detail}"
    );
    assert!(r.took < Duration::from_secs(5), "took {:?}", r.took);
}

#[tokio::test]
async fn bad_dns_settings_stop_start_up_naming_the_key() {
    let s = setup().await;
    s.env
        .write("bad.toml", "[dns]\nnameservers = [\"not an address\"]\n");
    let out = cli(&s.env, &["--config", "bad.toml", "doctor"]);
    assert_eq!(out.code, 2);
    assert!(out.stderr.contains("dns.nameservers"), "{}", out.stderr);
    s.env.write("bad.toml", "[dns]\ntimeout = \"0s\"\n");
    let out = cli(&s.env, &["--config", "bad.toml", "doctor"]);
    assert_eq!(out.code, 2);
    assert!(out.stderr.contains("dns.timeout"), "{}", out.stderr);
}

#[tokio::test]
async fn serve_logs_the_doctors_warnings_and_failures_at_start() {
    let env = TestEnv::new().await;
    // The shipped defaults: the example site and the outbox warn, DKIM fails (no key), and the
    // DNS checks fail (the suite's resolver on loopback does not answer).
    let seen = serve_start_findings(&env, &[], |seen| seen.len() >= 6);
    let has = |c: &str, s: &str| seen.iter().any(|(a, b, _)| a == c && b == s);
    assert!(has("site", "warn"), "{seen:?}");
    assert!(has("smtp", "warn"), "{seen:?}");
    assert!(has("dkim", "fail"), "{seen:?}");
    assert!(has("spf", "fail"), "{seen:?}");
    assert!(
        !seen.iter().any(|(c, _, _)| c == "database"),
        "ok checks are not logged: {seen:?}"
    );
}

#[tokio::test]
async fn serve_over_smtp_with_a_loopback_public_url_warns_at_start() {
    let env = TestEnv::new().await;
    let smtp = format!("smtp://127.0.0.1:{}", common::free_port());
    let vars = [
        ("VERDICTS__MAIL__TRANSPORT", "smtp".to_string()),
        ("VERDICTS__SMTP__URL", smtp),
        (
            "VERDICTS__HTTP__PUBLIC_URL",
            "http://127.0.0.1:8080".to_string(),
        ),
    ];
    let seen = serve_start_findings(&env, &vars, |seen| {
        seen.iter().any(|(c, _, _)| c == "public_url")
    });
    let public = seen
        .iter()
        .find(|(c, _, _)| c == "public_url")
        .unwrap_or_else(|| panic!("no public_url warning at start: {seen:?}"));
    assert_eq!(public.1, "warn", "{seen:?}");
    assert!(public.2.contains("127.0.0.1"), "{public:?}");
}

/// Starts `serve` with `vars`, reads its JSON log until `enough` (or 20 s), and returns the
/// doctor's findings it logged at start: (check, status, message).
fn serve_start_findings(
    env: &TestEnv,
    vars: &[(&str, String)],
    enough: impl Fn(&[(String, String, String)]) -> bool,
) -> Vec<(String, String, String)> {
    use std::io::{BufRead, BufReader};
    let port = common::free_port();
    let mut cmd = env.command();
    cmd.args(["--log-json", "serve"])
        .env("VERDICTS__HTTP__BIND", format!("127.0.0.1:{port}"))
        .env(
            "VERDICTS__SECURITY__SECRET_KEY",
            "0123456789abcdef0123456789abcdef-serve",
        )
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    for (k, v) in vars {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut seen: Vec<(String, String, String)> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline && !enough(&seen) {
        let Ok(line) = rx.recv_timeout(Duration::from_millis(200)) else {
            continue;
        };
        let Ok(v) = serde_json::from_str::<Value>(&line) else {
            continue;
        };
        let f = &v["fields"];
        if f["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("doctor: "))
        {
            assert_eq!(v["level"], "WARN", "{line}");
            assert!(f["fix"].as_str().is_some_and(|x| !x.is_empty()), "{line}");
            seen.push((
                f["check"].as_str().unwrap().to_string(),
                f["status"].as_str().unwrap().to_string(),
                f["message"].as_str().unwrap_or_default().to_string(),
            ));
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    seen
}
