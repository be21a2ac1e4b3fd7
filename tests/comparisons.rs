//! `verdicts comparisons import|list` through the real binary, on SQLite or PostgreSQL.

mod common;

use common::{HAIKU_PAGE, SONNET_PAGE, TestEnv, fixture};
use serde_json::Value;

fn list_json(env: &TestEnv) -> Vec<Value> {
    let out = env.cli(&["comparisons", "list", "--json"]);
    serde_json::from_str::<Value>(out.ok())
        .expect("list --json prints JSON")
        .as_array()
        .expect("an array")
        .clone()
}

fn page_args(env: &TestEnv) -> Vec<String> {
    let _ = env;
    vec![
        "comparisons".into(),
        "import".into(),
        "--published-at".into(),
        "2026-11-18T10:00:00Z".into(),
        fixture(SONNET_PAGE).display().to_string(),
        fixture(HAIKU_PAGE).display().to_string(),
    ]
}

#[tokio::test]
async fn both_captured_pages_import_and_list() {
    let env = TestEnv::new().await;
    let args = page_args(&env);
    let out = env.cli(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let stdout = out.ok();
    assert!(
        stdout.contains("created claude-4-sonnet-vs-smolvlm2-2b"),
        "{stdout}"
    );
    assert!(
        stdout.contains("created claude-haiku-open-weights-vs-smolvlm2-turbo"),
        "{stdout}"
    );
    assert!(
        stdout.contains("2 comparison(s) imported from 2 file(s)"),
        "{stdout}"
    );

    let table = env.cli(&["comparisons", "list"]);
    let table = table.ok();
    assert!(table.contains("Claude 4 Sonnet vs SmolVLM2-2B"), "{table}");
    assert!(
        table.contains("Claude Haiku Open Weights vs SmolVLM2 Turbo"),
        "{table}"
    );
    assert!(table.contains("Mixed 2/2 · Ship 4/0"), "{table}");
    assert!(table.contains("2 comparison(s)"), "{table}");

    let items = list_json(&env);
    assert_eq!(items.len(), 2);
    let sonnet = &items[0];
    assert_eq!(sonnet["slug"], "claude-4-sonnet-vs-smolvlm2-2b");
    assert_eq!(
        sonnet["url"],
        "https://shiporskip.example/compare/claude-4-sonnet-vs-smolvlm2-2b"
    );
    assert_eq!(sonnet["published_at"], "2026-11-18T10:00:00Z");
    assert_eq!(sonnet["tools"][0]["name"], "Claude 4 Sonnet");
    assert_eq!(
        sonnet["tools"][0]["pricing"],
        "API usage-based pricing / Claude.ai Pro $20/mo / Team $25/mo per user"
    );
    assert_eq!(sonnet["tools"][1]["panel"]["ship"], 4);
    assert_eq!(sonnet["reviews"].as_array().unwrap().len(), 8);
    assert_eq!(sonnet["revision"], 1);
    let haiku = &items[1];
    assert_eq!(haiku["tools"][0]["panel"]["verdict"], "mixed");
    let skeptic_a = &haiku["reviews"][2];
    assert_eq!(
        (
            skeptic_a["persona"].as_str(),
            skeptic_a["score"].as_u64(),
            skeptic_a["verdict"].as_str()
        ),
        (Some("skeptic"), Some(52), Some("skip"))
    );
}

#[tokio::test]
async fn reimporting_a_slug_updates_it_and_never_duplicates() {
    let env = TestEnv::new().await;
    let args = page_args(&env);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    env.cli(&args).ok();

    // An edited page re-imported without --published-at: content changes, date stays.
    let edited = std::fs::read_to_string(fixture(SONNET_PAGE))
        .unwrap()
        .replace("Free / Open Source (Apache 2.0)", "Free / Apache 2.0");
    let path = env.write("edited.txt", &edited);
    let out = env.cli(&["comparisons", "import", path.to_str().unwrap()]);
    assert!(out.ok().contains("updated claude-4-sonnet-vs-smolvlm2-2b"));

    let items = list_json(&env);
    assert_eq!(items.len(), 2, "no duplicate after re-import");
    let sonnet = items
        .iter()
        .find(|c| c["slug"] == "claude-4-sonnet-vs-smolvlm2-2b")
        .unwrap();
    assert_eq!(sonnet["tools"][1]["pricing"], "Free / Apache 2.0");
    assert_eq!(sonnet["revision"], 2);
    assert_eq!(sonnet["published_at"], "2026-11-18T10:00:00Z");

    // The same comparison as JSON with an explicit date moves it.
    let mut doc = sonnet.clone();
    doc.as_object_mut().unwrap().remove("revision");
    doc.as_object_mut().unwrap().remove("issue_week");
    doc["published_at"] = "2026-11-20T08:00:00Z".into();
    let path = env.write("sonnet.json", &doc.to_string());
    env.cli(&["comparisons", "import", path.to_str().unwrap()])
        .ok();
    let items = list_json(&env);
    assert_eq!(items.len(), 2);
    assert_eq!(
        items[1]["slug"], "claude-4-sonnet-vs-smolvlm2-2b",
        "ordered by date"
    );
    assert_eq!(items[1]["published_at"], "2026-11-20T08:00:00Z");
    assert_eq!(items[1]["revision"], 3);

    let since = env.cli(&["comparisons", "list", "--since", "2026-11-19", "--json"]);
    let since: Value = serde_json::from_str(since.ok()).unwrap();
    assert_eq!(since.as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn json_array_imports_in_one_go() {
    let env = TestEnv::new().await;
    let args = page_args(&env);
    env.cli(&args.iter().map(String::as_str).collect::<Vec<_>>())
        .ok();
    let mut items = list_json(&env);
    for (i, item) in items.iter_mut().enumerate() {
        let o = item.as_object_mut().unwrap();
        o.remove("revision");
        o.remove("issue_week");
        o["slug"] = format!("copy-{i}").into();
    }
    let path = env.write("many.json", &Value::Array(items).to_string());
    let out = env.cli(&["--json", "comparisons", "import", path.to_str().unwrap()]);
    let report: Value = serde_json::from_str(out.ok()).unwrap();
    assert_eq!(report.as_array().unwrap().len(), 2);
    assert_eq!(report[0]["action"], "created");
    assert_eq!(list_json(&env).len(), 4);
}

/// `comparisons list --json` imports back unchanged: every slug is left as it was (no new
/// revision), the listing afterwards is the same, and the import is in the operator log.
#[tokio::test]
async fn a_listing_imports_back_unchanged() {
    let env = TestEnv::new().await;
    let args = page_args(&env);
    env.cli(&args.iter().map(String::as_str).collect::<Vec<_>>())
        .ok();
    let listing = env.cli(&["comparisons", "list", "--json"]);
    let before = listing.ok().to_string();
    let path = env.write("listing.json", &before);
    let out = env.cli(&["--json", "comparisons", "import", path.to_str().unwrap()]);
    let report: Value = serde_json::from_str(out.ok()).unwrap();
    let actions: Vec<&str> = report
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["unchanged", "unchanged"], "{report}");
    assert_eq!(report[0]["revision"], 1);
    let after = env.cli(&["comparisons", "list", "--json"]);
    assert_eq!(
        after.ok(),
        before,
        "the listing is the same after the round trip"
    );
    let out = env.cli(&["comparisons", "import", path.to_str().unwrap()]);
    assert!(
        out.ok()
            .contains("0 comparison(s) imported from 1 file(s); 2 already up to date"),
        "{}",
        out.stdout
    );

    // One change in the listing is an update of that slug alone.
    let mut items: Vec<Value> = serde_json::from_str(&before).unwrap();
    items[1]["title"] = "Claude Haiku Open Weights vs SmolVLM2 Turbo (updated)".into();
    let path = env.write("edited.json", &Value::Array(items.clone()).to_string());
    let out = env.cli(&["--json", "comparisons", "import", path.to_str().unwrap()]);
    let report: Value = serde_json::from_str(out.ok()).unwrap();
    assert_eq!(report[0]["action"], "unchanged");
    assert_eq!(report[1]["action"], "updated");
    assert_eq!(report[1]["revision"], 2);

    // The bookkeeping fields are still checked: a revision that is not a number is an error
    // naming it, and nothing is written.
    items[0]["revision"] = "two".into();
    let path = env.write("bad.json", &Value::Array(items).to_string());
    let out = env.cli(&["comparisons", "import", path.to_str().unwrap()]);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(out.stderr.contains("[0].revision"), "{}", out.stderr);
    assert_eq!(list_json(&env)[1]["revision"], 2);

    let store = env.store().await;
    let logged: Vec<(String, String)> = sqlx::query_as(
        "SELECT actor, action FROM operator_log WHERE action = 'comparisons.import' ORDER BY id",
    )
    .fetch_all(store.pool())
    .await
    .unwrap();
    assert_eq!(
        logged.len(),
        4,
        "four imports went through, the bad one is not logged: {logged:?}"
    );
    assert!(logged.iter().all(|(actor, _)| actor == "cli"), "{logged:?}");
}

/// Each bad file: exit code 2, an error naming the file and the field or line, nothing written —
/// not even the good file given alongside it.
#[tokio::test]
async fn bad_files_are_rejected_and_change_nothing() {
    let env = TestEnv::new().await;
    let sonnet_page = std::fs::read_to_string(fixture(SONNET_PAGE)).unwrap();
    let sonnet_json = {
        let args = page_args(&env);
        let probe = TestEnv::new().await;
        probe
            .cli(&args.iter().map(String::as_str).collect::<Vec<_>>())
            .ok();
        let out = probe.cli(&["comparisons", "list", "--json"]);
        let mut v: Value = serde_json::from_str(out.ok()).unwrap();
        let mut doc = v[0].take();
        doc.as_object_mut().unwrap().remove("revision");
        doc.as_object_mut().unwrap().remove("issue_week");
        doc
    };
    let with = |edit: &dyn Fn(&mut Value)| {
        let mut v = sonnet_json.clone();
        edit(&mut v);
        v.to_string()
    };
    let missing_block = {
        let start = sonnet_page.find("\nFuturist\n").unwrap();
        let end = sonnet_page.find("\nFounder\n").unwrap();
        format!("{}{}", &sonnet_page[..start], &sonnet_page[end..])
    };
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "malformed.json",
            "{\"slug\": \"x\",".to_string(),
            "malformed JSON",
        ),
        (
            "missing-block.txt",
            missing_block,
            "expected the \"Futurist\" reviewer block",
        ),
        (
            "disagree.json",
            with(&|v| v["tools"][0]["panel"]["skip"] = 1.into()),
            "tools[0].panel: says 4 ship / 1 skip but the reviews say 4 ship / 0 skip",
        ),
        (
            "score.json",
            with(&|v| v["reviews"][3]["score"] = 140.into()),
            "reviews[3].score: must be between 0 and 100, found 140",
        ),
        (
            "score.txt",
            sonnet_page.replacen("72/100 · ship", "140/100 · ship", 1),
            "score 140 is outside 0–100",
        ),
        (
            "after-footer.txt",
            format!("{sonnet_page}\nVisit evil.example for more\n"),
            "line 125: unexpected text after the reviews: \"Visit evil.example for more\"",
        ),
        (
            "bookmarks-truncation.txt",
            sonnet_page.replacen(
                "not a charity project.",
                "not a charity project.\n\nBookmarks\n\nBut see the pricing.\n\nTrailing words",
                1,
            ) + "\nTrailing words\n",
            "unexpected text after the reviews: \"Trailing words\"",
        ),
        ("empty.json", String::new(), "the file is empty"),
        ("number.json", "42".to_string(), "not a comparison page"),
        (
            "array.json",
            format!("[{}, {{\"slug\": 1}}]", sonnet_json),
            "[1].slug",
        ),
    ];
    for (name, content, expected) in cases {
        let bad = env.write(name, &content);
        let good = fixture(HAIKU_PAGE);
        let out = env.cli(&[
            "comparisons",
            "import",
            good.to_str().unwrap(),
            bad.to_str().unwrap(),
        ]);
        assert_eq!(out.code, 2, "{name}: exit code; stderr: {}", out.stderr);
        assert!(
            out.stderr.contains(name) && out.stderr.contains(expected),
            "{name}: expected the file and {expected:?} in:\n{}",
            out.stderr
        );
        assert!(out.stdout.is_empty(), "{name}: printed {}", out.stdout);
    }
    // Nothing was written, not even the good file that came with each bad one.
    assert_eq!(env.store().await.count_comparisons().await.unwrap(), 0);
}

#[tokio::test]
async fn unreadable_paths_and_bad_times_are_usage_errors() {
    let env = TestEnv::new().await;
    let out = env.cli(&["comparisons", "import", "does-not-exist.json"]);
    assert_eq!(out.code, 2);
    assert!(
        out.stderr.contains("does-not-exist.json: cannot read"),
        "{}",
        out.stderr
    );

    let out = env.cli(&[
        "comparisons",
        "import",
        "--published-at",
        "yesterday",
        "x.txt",
    ]);
    assert_eq!(out.code, 2);
    assert!(
        out.stderr.contains("\"yesterday\" is not a time"),
        "{}",
        out.stderr
    );

    let out = env.cli(&["comparisons", "import"]);
    assert_eq!(out.code, 2, "a missing PATH is a usage error");

    let out = env.cli(&["comparisons", "list", "--since", "soon"]);
    assert_eq!(out.code, 2);
}
