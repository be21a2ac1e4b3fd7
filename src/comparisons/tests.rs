use chrono::{TimeZone, Utc};

use super::page::PageContext;
use super::*;

const SONNET: &str = include_str!("../../tests/fixtures/claude-4-sonnet-vs-smolvlm2-2b.txt");
const HAIKU: &str =
    include_str!("../../tests/fixtures/claude-haiku-open-weights-vs-smolvlm2-turbo.txt");

fn ctx() -> PageContext<'static> {
    PageContext {
        base_url: "https://shiporskip.example/",
        published_at: Utc.with_ymd_and_hms(2026, 11, 18, 10, 0, 0).unwrap(),
    }
}

fn scores(c: &Comparison) -> Vec<(Persona, usize, u32, Verdict)> {
    c.reviews()
        .iter()
        .map(|r| (r.persona, r.tool, r.score, r.verdict))
        .collect()
}

#[test]
fn sonnet_page_reads_every_field() {
    let c = Comparison::from_page_text(SONNET, &ctx()).expect("page parses");
    assert_eq!(c.slug(), "claude-4-sonnet-vs-smolvlm2-2b");
    assert_eq!(c.title(), "Claude 4 Sonnet vs SmolVLM2-2B");
    assert_eq!(
        c.url(),
        "https://shiporskip.example/compare/claude-4-sonnet-vs-smolvlm2-2b"
    );
    assert_eq!(c.published_at(), ctx().published_at);

    let [a, b] = c.tools();
    assert_eq!(a.name, "Claude 4 Sonnet");
    assert_eq!(a.initial, "C");
    assert_eq!(a.category, "Developer Tools");
    assert_eq!(
        a.tagline,
        "1M token context + agentic tool use from Anthropic's latest model"
    );
    assert_eq!(a.entry, "Paid");
    assert_eq!(
        a.pricing,
        "API usage-based pricing / Claude.ai Pro $20/mo / Team $25/mo per user"
    );
    assert_eq!(a.best_for, a.tagline);
    assert!(
        a.description
            .starts_with("Claude 4 Sonnet is Anthropic's latest model")
    );
    assert!(a.description.ends_with("autonomous multi-tool workflows."));
    assert_eq!(
        a.panel,
        Panel {
            verdict: PanelVerdict::Ship,
            ship: 4,
            skip: 0
        }
    );
    assert_eq!(a.panel.ship_percent(), 100);
    assert_eq!(a.community, None);

    assert_eq!(b.name, "SmolVLM2-2B");
    assert_eq!(b.initial, "S");
    assert_eq!(
        b.tagline,
        "Open-source vision-language model that actually runs on your phone"
    );
    assert_eq!(b.entry, "Free");
    assert_eq!(b.pricing, "Free / Open Source (Apache 2.0)");
    assert!(
        b.description
            .starts_with("SmolVLM2-2B is an open-source, 2-billion parameter")
    );
    assert!(b.description.ends_with("without cloud dependencies."));
    assert_eq!(b.panel.verdict, PanelVerdict::Ship);
    assert_eq!((b.panel.ship, b.panel.skip), (4, 0));

    use Persona::*;
    use Verdict::*;
    assert_eq!(
        scores(&c),
        vec![
            (Builder, 0, 85, Ship),
            (Builder, 1, 85, Ship),
            (Skeptic, 0, 78, Ship),
            (Skeptic, 1, 78, Ship),
            (Futurist, 0, 82, Ship),
            (Futurist, 1, 82, Ship),
            (Founder, 0, 72, Ship),
            (Founder, 1, 72, Ship),
        ]
    );
    let text = |p, t| c.review(p, t).text.as_str();
    assert!(text(Builder, 0).starts_with("The primitive here is a long-context transformer"));
    assert!(text(Builder, 0).ends_with("for single-session tasks."));
    assert!(text(Builder, 1).starts_with("The primitive here is clean: a quantized VLM"));
    assert!(text(Skeptic, 0).starts_with("The direct competitor is GPT-4o"));
    assert!(text(Skeptic, 1).starts_with("Direct competitors are MobileVLM, moondream2"));
    assert!(text(Futurist, 0).ends_with("placed at the right time."));
    assert!(text(Futurist, 1).ends_with("rather than infrastructure."));
    assert!(text(Founder, 0).starts_with("The buyer is any engineering team"));
    assert!(text(Founder, 1).ends_with("not a charity project."));
    // The page footer is not part of the last review.
    assert!(!text(Founder, 1).contains("Weekly AI Tool Verdicts"));
}

#[test]
fn haiku_page_reads_mixed_panel_and_skips() {
    let c = Comparison::from_page_text(HAIKU, &ctx()).expect("page parses");
    assert_eq!(c.slug(), "claude-haiku-open-weights-vs-smolvlm2-turbo");
    assert_eq!(c.title(), "Claude Haiku Open Weights vs SmolVLM2 Turbo");
    let [a, b] = c.tools();
    assert_eq!(a.name, "Claude Haiku Open Weights");
    assert_eq!(a.initial, "C");
    assert_eq!(
        a.tagline,
        "Anthropic's first open-weight model release for research use"
    );
    assert_eq!(a.entry, "Free");
    assert_eq!(a.pricing, "Free (research/non-commercial license only)");
    assert_eq!(
        a.panel,
        Panel {
            verdict: PanelVerdict::Mixed,
            ship: 2,
            skip: 2
        }
    );
    assert_eq!(a.panel.ship_percent(), 50);
    assert!(a.description.ends_with("remain proprietary and API-only."));
    assert_eq!(b.name, "SmolVLM2 Turbo");
    assert_eq!(b.initial, "S");
    assert_eq!(
        b.tagline,
        "Sub-2B vision-language model that actually runs on your phone"
    );
    assert_eq!(b.pricing, "Free / Open weights (Apache 2.0)");
    assert_eq!(b.entry, "Free");
    assert_eq!(
        (b.panel.verdict, b.panel.ship, b.panel.skip),
        (PanelVerdict::Ship, 4, 0)
    );

    use Persona::*;
    use Verdict::*;
    assert_eq!(
        scores(&c),
        vec![
            (Builder, 0, 74, Ship),
            (Builder, 1, 85, Ship),
            (Skeptic, 0, 52, Skip),
            (Skeptic, 1, 78, Ship),
            (Futurist, 0, 68, Ship),
            (Futurist, 1, 82, Ship),
            (Founder, 0, 45, Skip),
            (Founder, 1, 72, Ship),
        ]
    );
    assert!(
        c.review(Founder, 0)
            .text
            .starts_with("The buyer here is nobody")
    );
    assert!(c.review(Builder, 1).text.contains("`pip install`"));
}

#[test]
fn page_and_json_round_trip_to_the_same_comparison() {
    let c = Comparison::from_page_text(SONNET, &ctx()).unwrap();
    let again = Comparison::from_json_value(c.to_json()).unwrap();
    assert_eq!(c, again);
}

fn sonnet_json() -> serde_json::Value {
    Comparison::from_page_text(SONNET, &ctx())
        .unwrap()
        .to_json()
}

#[test]
fn bad_json_names_the_field() {
    type Edit = fn(&mut serde_json::Value);
    let cases: Vec<(&str, Edit, &str)> = vec![
        (
            "score above 100",
            |v| v["reviews"][2]["score"] = 140.into(),
            "reviews[2].score: must be between 0 and 100, found 140",
        ),
        (
            "negative score",
            |v| v["reviews"][0]["score"] = (-1).into(),
            "reviews[0].score",
        ),
        (
            "panel disagrees with reviews",
            |v| v["tools"][1]["panel"]["ship"] = 3.into(),
            "tools[1].panel: says 3 ship / 0 skip but the reviews say 4 ship / 0 skip",
        ),
        (
            "verdict contradicts counts",
            |v| {
                v["tools"][0]["panel"]["verdict"] = "skip".into();
            },
            "tools[0].panel.verdict: Skip contradicts 4 ship / 0 skip",
        ),
        (
            "three tools",
            |v| {
                let t = v["tools"][0].clone();
                v["tools"].as_array_mut().unwrap().push(t);
            },
            "tools: must hold exactly two tools, found 3",
        ),
        (
            "seven reviews",
            |v| {
                v["reviews"].as_array_mut().unwrap().pop();
            },
            "reviews: must hold 8 reviews",
        ),
        (
            "duplicate persona",
            |v| v["reviews"][1]["tool"] = 0.into(),
            "reviews[1].persona: a second builder review of tool 0",
        ),
        (
            "unknown persona",
            |v| v["reviews"][0]["persona"] = "critic".into(),
            "reviews[0].persona: unknown variant `critic`",
        ),
        (
            "tool index 2",
            |v| v["reviews"][0]["tool"] = 2.into(),
            "reviews[0].tool: must be 0 or 1",
        ),
        (
            "bad verdict",
            |v| v["reviews"][0]["verdict"] = "maybe".into(),
            "reviews[0].verdict: unknown variant `maybe`",
        ),
        (
            "empty name",
            |v| v["tools"][0]["name"] = "  ".into(),
            "tools[0].name: must not be empty",
        ),
        (
            "missing tagline",
            |v| {
                v["tools"][1].as_object_mut().unwrap().remove("tagline");
            },
            "tools[1]: missing field `tagline`",
        ),
        (
            "unknown field",
            |v| v["colour"] = "red".into(),
            "unknown field `colour`",
        ),
        (
            "bad slug",
            |v| v["slug"] = "Claude 4!".into(),
            "slug: \"Claude 4!\" must be lowercase",
        ),
        (
            "bad url",
            |v| v["url"] = "javascript:alert(1)".into(),
            "url: \"javascript:alert(1)\" must be an absolute http(s) URL",
        ),
        (
            "bad date",
            |v| v["published_at"] = "last tuesday".into(),
            "published_at: input contains invalid characters",
        ),
        (
            "newline in title",
            |v| v["title"] = "A\nB".into(),
            "title: must be one line",
        ),
    ];
    for (name, edit, expected) in cases {
        let mut v = sonnet_json();
        edit(&mut v);
        let err = Comparison::from_json_value(v).expect_err(name).to_string();
        assert!(
            err.contains(expected),
            "{name}: expected {expected:?} in {err:?}"
        );
    }
}

#[test]
fn bad_pages_name_the_line() {
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "missing reviewer block",
            {
                let start = SONNET.find("\nFuturist\n").unwrap();
                let end = SONNET.find("\nFounder\n").unwrap();
                format!("{}{}", &SONNET[..start], &SONNET[end..])
            },
            "expected the \"Futurist\" reviewer block, found \"Founder\"",
        ),
        (
            "score of 140",
            SONNET.replacen("78/100 · ship", "140/100 · ship", 1),
            "score 140 is outside 0–100",
        ),
        (
            "panel counts disagree with reviews",
            SONNET.replacen("Skeptic\n78/100 · ship", "Skeptic\n78/100 · skip", 1),
            "tools[0].panel: says 4 ship / 0 skip but the reviews say 3 ship / 1 skip",
        ),
        (
            "card verdict disagrees with table",
            HAIKU.replacen("Mixed\n\n50%", "Ship\n\n50%", 1),
            "card says Ship but the Decision table says Mixed",
        ),
        (
            "card percent disagrees with counts",
            HAIKU.replacen("Mixed\n\n50%", "Mixed\n\n75%", 1),
            "card says 75% ship but 2 ship / 2 skip is 50%",
        ),
        (
            "not a page",
            "hello\nworld\n".to_string(),
            "not a comparison page",
        ),
        (
            "truncated",
            SONNET[..SONNET.find("Reviewer scorecard").unwrap()].to_string(),
            "page ends inside the Decision table",
        ),
        (
            "garbled score line",
            SONNET.replacen("82/100 · ship", "82 of 100, ship", 1),
            "expected the Futurist score of tool 1 like \"85/100 · ship\", found \"82 of 100, ship\"",
        ),
    ];
    for (name, text, expected) in cases {
        let err = Comparison::from_page_text(&text, &ctx())
            .expect_err(name)
            .to_string();
        assert!(
            err.contains(expected),
            "{name}: expected {expected:?} in {err:?}"
        );
    }
}

#[test]
fn page_errors_point_at_the_right_line() {
    let text = SONNET.replacen("78/100 · ship", "140/100 · ship", 1);
    let line = text.lines().position(|l| l.starts_with("140/100")).unwrap() + 1;
    let err = Comparison::from_page_text(&text, &ctx()).unwrap_err();
    assert_eq!(err.field, format!("line {line}"));
}

#[test]
fn json_array_rejects_a_slug_twice() {
    let v = sonnet_json();
    let text = serde_json::to_string(&vec![v.clone(), v]).unwrap();
    let err = import::parse_json(&text).unwrap_err().to_string();
    assert!(err.contains("[1].slug"), "{err}");
}

#[test]
fn malformed_json_reports_line_and_column() {
    let err = import::parse_json("{\n  \"slug\": \"a\",\n  oops\n}").unwrap_err();
    assert_eq!(err.field, "line 3 column 3");
    assert!(err.message.starts_with("malformed JSON"));
}

/// With a duplicate key the last one used to win silently: what a reviewer read in the file
/// was not what got imported.
#[test]
fn a_duplicate_key_is_an_error_naming_its_place() {
    let v = sonnet_json();
    let text = serde_json::to_string(&v).unwrap();
    let twice = text.replacen("\"slug\":", "\"slug\":\"other-slug\",\"slug\":", 1);
    assert_ne!(twice, text, "the fixture has a slug");
    let err = import::parse_json(&twice).unwrap_err();
    assert!(err.field.starts_with("line 1 column"), "{}", err.field);
    assert!(err.message.contains("duplicate"), "{}", err.message);
    assert!(import::parse_json(&text).is_ok());
}

#[test]
fn detection_by_first_character() {
    let (source, _) = import::parse_text(&format!("\n  {}", sonnet_json()), &ctx()).unwrap();
    assert_eq!(source, crate::store::comparisons::Source::Json);
    let (source, _) = import::parse_text(SONNET, &ctx()).unwrap();
    assert_eq!(source, crate::store::comparisons::Source::Page);
    assert!(import::parse_text("   \n", &ctx()).is_err());
}

/// A review paragraph that reads like a footer word is part of the review, in the middle of
/// the scorecard and in the last review alike.
#[test]
fn footer_words_inside_a_review_do_not_end_it() {
    let last = "not a charity project.";
    for paragraph in ["Bookmarks", "Weekly AI Tool Verdicts", "No bookmarks yet"] {
        let text = SONNET
            .replacen(
                last,
                &format!("{last}\n\n{paragraph}\n\nThe rest of the review."),
                1,
            )
            .replacen(
                "for single-session tasks.",
                &format!("for single-session tasks.\n\n{paragraph}\n\nMore builder notes."),
                1,
            );
        let c = Comparison::from_page_text(&text, &ctx()).expect(paragraph);
        let founder = &c.review(Persona::Founder, 1).text;
        assert!(
            founder.ends_with(&format!("{last}\n\n{paragraph}\n\nThe rest of the review.")),
            "{paragraph}: {founder}"
        );
        let builder = &c.review(Persona::Builder, 0).text;
        assert!(
            builder.ends_with(&format!("\n\n{paragraph}\n\nMore builder notes.")),
            "{paragraph}: {builder}"
        );
    }
}

/// Nothing on a page is dropped silently: text after the footer, between the last review and
/// the footer's end, or before the heading is an error naming its line.
#[test]
fn unrecognised_text_is_an_error_naming_the_line() {
    let line_of =
        |text: &str, needle: &str| text.lines().position(|l| l.trim() == needle).unwrap() + 1;
    let after_footer = format!("{SONNET}\nBuy cheap pills at evil.example\n");
    let in_footer = SONNET.replacen(
        "No bookmarks yet",
        "No bookmarks yet\n\nInjected paragraph",
        1,
    );
    let before_heading = format!("Sponsored: evil.example\n{SONNET}");
    let haiku_after = format!("{HAIKU}\n\nA trailing paragraph\n");
    let cases = [
        (after_footer, "Buy cheap pills at evil.example", "after the"),
        (in_footer, "Injected paragraph", "after the reviews"),
        (before_heading, "Sponsored: evil.example", "before the"),
        (haiku_after, "A trailing paragraph", "after the"),
    ];
    for (text, needle, expected) in cases {
        let err = Comparison::from_page_text(&text, &ctx()).expect_err(needle);
        assert_eq!(
            err.field,
            format!("line {}", line_of(&text, needle)),
            "{needle}"
        );
        assert!(err.message.contains(expected), "{needle}: {err}");
        assert!(err.message.contains(needle), "{needle}: {err}");
    }
}

/// The two real captures import exactly as before, footer and all, also without the footer.
#[test]
fn the_real_pages_still_import_with_or_without_their_footer() {
    for page in [SONNET, HAIKU] {
        let full = Comparison::from_page_text(page, &ctx()).unwrap();
        let cut = &page[..page.find("Weekly AI Tool Verdicts").unwrap()];
        let without = Comparison::from_page_text(cut, &ctx()).unwrap();
        assert_eq!(full.to_json(), without.to_json());
    }
}

mod properties {
    //! Random pages never panic the parser; whatever it accepts is a whole, valid comparison.
    use proptest::prelude::*;

    use super::*;

    /// One edit of a real page, line by line.
    #[derive(Debug, Clone)]
    enum Edit {
        Delete(usize),
        Duplicate(usize),
        Replace(usize, String),
        Insert(usize, String),
        Swap(usize, usize),
    }

    fn line_text() -> impl Strategy<Value = String> {
        prop_oneof![
            any::<String>(),
            "[A-Za-z0-9 ·/%.—-]{0,40}",
            Just("Bookmarks".to_string()),
            Just("Weekly AI Tool Verdicts".to_string()),
            Just("Get the next comparison in your inbox".to_string()),
            Just("85/100 · ship".to_string()),
            Just("Founder".to_string()),
            Just("Decision".to_string()),
            Just("Panel ship".to_string()),
        ]
    }

    fn edit() -> impl Strategy<Value = Edit> {
        prop_oneof![
            any::<usize>().prop_map(Edit::Delete),
            any::<usize>().prop_map(Edit::Duplicate),
            (any::<usize>(), line_text()).prop_map(|(i, t)| Edit::Replace(i, t)),
            (any::<usize>(), line_text()).prop_map(|(i, t)| Edit::Insert(i, t)),
            (any::<usize>(), any::<usize>()).prop_map(|(i, j)| Edit::Swap(i, j)),
        ]
    }

    fn apply(page: &str, edits: &[Edit]) -> String {
        let mut lines: Vec<String> = page.lines().map(str::to_string).collect();
        for e in edits {
            let n = lines.len().max(1);
            match e {
                Edit::Delete(i) if !lines.is_empty() => {
                    lines.remove(i % n);
                }
                Edit::Duplicate(i) if !lines.is_empty() => {
                    let l = lines[i % n].clone();
                    lines.insert(i % n, l);
                }
                Edit::Replace(i, t) if !lines.is_empty() => lines[i % n] = t.clone(),
                Edit::Insert(i, t) => lines.insert(i % (lines.len() + 1), t.clone()),
                Edit::Swap(i, j) if !lines.is_empty() => lines.swap(i % n, j % n),
                _ => {}
            }
        }
        lines.join("\n")
    }

    fn check(text: &str) {
        if let Ok(c) = Comparison::from_page_text(text, &ctx()) {
            assert_eq!(c.tools().len(), 2);
            assert_eq!(c.reviews().len(), 8);
            assert!(
                c.reviews()
                    .iter()
                    .all(|r| r.score <= 100 && !r.text.is_empty())
            );
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

        #[test]
        fn edited_pages_never_panic(
            base in prop_oneof![Just(SONNET), Just(HAIKU)],
            edits in proptest::collection::vec(edit(), 1..6),
        ) {
            check(&apply(base, &edits));
        }

        #[test]
        fn random_text_never_panics(text in any::<String>()) {
            check(&text);
            check(&format!("AI tool comparison\n{text}"));
        }
    }
}
