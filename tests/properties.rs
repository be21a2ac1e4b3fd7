//! Property tests on the inputs strangers and files control: random signup bodies, random JSON
//! bodies for the admin API, random CSV files for `subscribers import`. Whatever comes in, the
//! server never answers 500, and refused input never writes a row. Case counts are bounded so
//! CI stays fast; `PROPTEST_CASES` raises them for a longer run. Both databases.

mod common;

use common::{TestApp, TestEnv};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use serde_json::Value;

fn runner(default_cases: u32) -> TestRunner {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default_cases);
    TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    })
}

/// The tables a signup or an admin call could write.
async fn counts(app: &TestApp) -> Vec<i64> {
    let mut out = Vec::new();
    for t in [
        "subscribers",
        "consents",
        "confirmation_tokens",
        "outbound_mail",
        "issues",
        "comparisons",
    ] {
        out.push(app.store.count_rows(t).await.unwrap());
    }
    out
}

/// JSON text, sometimes with a key twice, sometimes not an object at all.
fn json_text() -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<String>().prop_map(Value::from),
        "[a-z]{1,8}@[a-z]{1,8}\\.(org|example)".prop_map(Value::from),
        "2026-W[0-9]{2}".prop_map(Value::from),
    ];
    let value = leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            proptest::collection::btree_map(
                prop_oneof![
                    Just("email".to_string()),
                    Just("name".to_string()),
                    Just("week".to_string()),
                    Just("to".to_string()),
                    "[a-z]{1,6}",
                ],
                inner,
                0..4
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    });
    prop_oneof![
        value.clone().prop_map(|v| v.to_string()),
        // The same key twice: {"k": a, …, "k": b}.
        (
            prop_oneof![Just("email"), Just("week"), Just("slug")],
            value.clone(),
            value
        )
            .prop_map(|(k, a, b)| format!("{{\"{k}\":{a},\"{k}\":{b}}}")),
        any::<String>(),
    ]
}

/// Form bodies: random text, and random values in the real fields.
fn form_body() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        (any::<String>(), any::<String>(), any::<String>()).prop_map(|(e, n, w)| {
            serde_urlencoded::to_string([("email", e), ("name", n), ("website", w)]).unwrap()
        }),
        (
            "[a-z\"\\[\\]0-9.+]{0,12}@[a-z0-9.\\[\\]]{0,12}",
            any::<String>()
        )
            .prop_map(|(e, n)| serde_urlencoded::to_string([("email", e), ("name", n)]).unwrap()),
    ]
}

#[test]
fn random_signup_bodies_never_fail_inside_and_refused_ones_write_nothing() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let app = rt.block_on(TestApp::spawn(
        "[signup]\nrate_limit_per_minute = 0\nconfirmations_per_mailbox_per_hour = 1000",
    ));
    let content_type = prop_oneof![
        Just("application/x-www-form-urlencoded"),
        Just("application/json"),
        Just("text/plain"),
    ];
    let body = prop_oneof![form_body(), json_text()];
    let tried = std::cell::Cell::new(0u32);
    runner(96)
        .run(&(content_type, body), |(content_type, body)| {
            tried.set(tried.get() + 1);
            rt.block_on(async {
                let before = counts(&app).await;
                let r = app
                    .client
                    .post(app.url("/subscribe"))
                    .header("Content-Type", content_type)
                    .body(body.clone())
                    .send()
                    .await
                    .unwrap();
                let status = r.status().as_u16();
                prop_assert!(
                    matches!(status, 200 | 413 | 422),
                    "{status} for {content_type} {body:?}"
                );
                if status != 200 {
                    prop_assert_eq!(counts(&app).await, before, "{:?}", body);
                }
                Ok(())
            })
        })
        .unwrap();
    eprintln!("signup bodies tried: {}", tried.get());
    drop(app);
}

#[test]
fn random_admin_json_bodies_never_fail_inside_and_refused_ones_write_nothing() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let app = rt.block_on(TestApp::spawn("[http]\nrate_limit_per_minute = 0"));
    let path = prop_oneof![
        Just("/api/issues"),
        Just("/api/comparisons"),
        Just("/api/issues/1/schedule"),
        Just("/api/issues/1/test-send"),
    ];
    let tried = std::cell::Cell::new(0u32);
    runner(96)
        .run(&(path, json_text()), |(path, body)| {
            tried.set(tried.get() + 1);
            rt.block_on(async {
                let before = counts(&app).await;
                let r = app
                    .admin(reqwest::Method::POST, path)
                    .header("Content-Type", "application/json")
                    .body(body.clone())
                    .send()
                    .await
                    .unwrap();
                let status = r.status().as_u16();
                prop_assert!(status < 500, "{status} for {path} {body:?}");
                if status >= 400 {
                    prop_assert_eq!(counts(&app).await, before, "{} {:?}", path, body);
                }
                Ok(())
            })
        })
        .unwrap();
    eprintln!("admin JSON bodies tried: {}", tried.get());
    drop(app);
}

/// A CSV line: random text, or cells that look a little like addresses and names.
fn csv_line() -> impl Strategy<Value = String> {
    prop_oneof![
        "[^\n]{0,30}",
        ("[a-z]{1,6}@[a-z]{1,6}\\.org", "[^\n,\"]{0,10}").prop_map(|(e, n)| format!("{e},{n}")),
        ("[a-z\"@.,\\[\\] ]{0,16}", "[^\n]{0,10}").prop_map(|(e, n)| format!("{e},{n}")),
        Just("\"unterminated,x".to_string()),
        Just("a,b,c,d".to_string()),
    ]
}

#[test]
fn random_csv_imports_write_exactly_what_they_report() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let env = rt.block_on(TestEnv::new());
    let store = rt.block_on(env.store());
    let header = prop_oneof![
        Just("email,name".to_string()),
        Just("name,EMAIL".to_string()),
        Just("mail,name".to_string()),
        "[^\n]{0,20}",
    ];
    let file = (header, proptest::collection::vec(csv_line(), 0..8))
        .prop_map(|(h, lines)| format!("{h}\n{}\n", lines.join("\n")));
    let tried = std::cell::Cell::new(0u32);
    runner(24)
        .run(&(file, any::<bool>()), |(content, strict)| {
            tried.set(tried.get() + 1);
            let before = rt.block_on(store.count_rows("subscribers")).unwrap();
            let path = env.write("random.csv", &content);
            let mut args = vec!["--json", "subscribers", "import"];
            if strict {
                args.push("--strict");
            }
            args.push(path.to_str().unwrap());
            let out = env.cli(&args);
            prop_assert!(
                out.code == 0 || out.code == 2,
                "exit {} for {:?}: {}",
                out.code,
                content,
                out.stderr
            );
            let after = rt.block_on(store.count_rows("subscribers")).unwrap();
            let added = out
                .stdout
                .lines()
                .find_map(|l| serde_json::from_str::<Value>(l).ok())
                .and_then(|v| v["added"].as_i64())
                .unwrap_or(0);
            prop_assert_eq!(after - before, added, "{:?}: {}", content, out.stdout);
            if out.code == 2 && strict {
                prop_assert_eq!(after, before, "--strict wrote rows for {:?}", content);
            }
            Ok(())
        })
        .unwrap();
    eprintln!("CSV files tried: {}", tried.get());
}
