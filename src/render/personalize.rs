//! Per-recipient values, filled in after the once-per-issue render.
//!
//! A marker is `\u{E000}verdicts:NAME\u{E001}`: Private Use Area characters, which XML (and so
//! mrml) accepts and passes through untouched. Comparison content can never contain one: the
//! comparison parser rejects private-use and control characters at the edge, and so does the
//! config for every value that reaches a template. [`Personalizer::new`] splits the frozen HTML and text at the markers once;
//! filling them for a recipient is then one allocation and a few copies.

/// First character of every marker; [`forbidden_char`] keeps it out of content.
pub const MARKER_START: char = '\u{E000}';

pub use crate::text::forbidden_char;

/// A place in the rendered issue whose content depends on who reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Slot {
    /// "Sent to ada@example.org because …" (mail) or "You are reading the web version" (archive).
    PersonalLine,
    /// The unsubscribe link (mail) or the signup link (archive).
    FooterLink,
    /// The reader's part of every vote link (mail: [`crate::engagement::VoteReaderSigner`]).
    VoteReader,
    /// Where a comparison's vote links begin and end: the web version leaves them out.
    VotesBegin,
    VotesEnd,
}

impl Slot {
    /// Every slot, in [`Slot::index`] order.
    pub const ALL: [Slot; Slot::COUNT] = [
        Slot::PersonalLine,
        Slot::FooterLink,
        Slot::VoteReader,
        Slot::VotesBegin,
        Slot::VotesEnd,
    ];

    /// The slot's place in [`Slot::ALL`] (to count or size per slot).
    pub fn index(self) -> usize {
        match self {
            Slot::PersonalLine => 0,
            Slot::FooterLink => 1,
            Slot::VoteReader => 2,
            Slot::VotesBegin => 3,
            Slot::VotesEnd => 4,
        }
    }

    /// How many kinds of slot there are.
    pub const COUNT: usize = 5;

    /// The marker left in the rendered issue.
    pub fn marker(self) -> &'static str {
        match self {
            Slot::PersonalLine => "\u{E000}verdicts:personal_line\u{E001}",
            Slot::FooterLink => "\u{E000}verdicts:footer_link\u{E001}",
            Slot::VoteReader => "\u{E000}verdicts:vote_reader\u{E001}",
            Slot::VotesBegin => "\u{E000}verdicts:votes_begin\u{E001}",
            Slot::VotesEnd => "\u{E000}verdicts:votes_end\u{E001}",
        }
    }
}

/// What to put in each slot, already escaped for HTML where it goes into HTML.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotValues {
    pub personal_line_html: String,
    pub personal_line_text: String,
    pub footer_link_html: String,
    pub footer_link_text: String,
    /// The reader's part of the vote links (mail); empty for the web version.
    pub vote_reader: String,
    /// Whether the vote links are kept (mail) or left out with what lies between
    /// [`Slot::VotesBegin`] and [`Slot::VotesEnd`] (the web version: nobody to vote as).
    pub votes: bool,
}

/// Minimal HTML escaping for values we insert after rendering.
pub fn escape_html(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const LINK_STYLE: &str = "color:#6b7280;text-decoration:underline";

impl SlotValues {
    /// What goes into `slot` in the HTML part (already escaped).
    pub fn html_value(&self, slot: Slot) -> &str {
        match slot {
            Slot::PersonalLine => &self.personal_line_html,
            Slot::FooterLink => &self.footer_link_html,
            Slot::VoteReader => &self.vote_reader,
            Slot::VotesBegin | Slot::VotesEnd => "",
        }
    }

    /// What goes into `slot` in the text part.
    pub fn text_value(&self, slot: Slot) -> &str {
        match slot {
            Slot::PersonalLine => &self.personal_line_text,
            Slot::FooterLink => &self.footer_link_text,
            Slot::VoteReader => &self.vote_reader,
            Slot::VotesBegin | Slot::VotesEnd => "",
        }
    }

    /// For the email to one subscriber; `vote_reader` is their part of the vote links
    /// ([`crate::engagement::VoteReaderSigner::token`], base64url: the same in HTML and text).
    pub fn for_recipient(
        email: &str,
        newsletter_name: &str,
        unsubscribe_url: &str,
        vote_reader: String,
    ) -> Self {
        SlotValues {
            personal_line_html: format!(
                "Sent to {} because you subscribed to {} and confirmed your address.",
                escape_html(email),
                escape_html(newsletter_name)
            ),
            personal_line_text: format!(
                "Sent to {email} because you subscribed to {newsletter_name} and confirmed your address."
            ),
            footer_link_html: format!(
                "<a href=\"{}\" style=\"{LINK_STYLE}\">Unsubscribe</a>",
                escape_html(unsubscribe_url)
            ),
            footer_link_text: format!("Unsubscribe with one click: {unsubscribe_url}"),
            vote_reader,
            votes: true,
        }
    }

    /// Adds the reader's "Manage your subscription" link to the footer slot (issue mail).
    pub fn with_manage_link(mut self, manage_url: &str) -> Self {
        self.footer_link_html.push_str(&format!(
            " · <a href=\"{}\" style=\"{LINK_STYLE}\">Manage your subscription</a>",
            escape_html(manage_url)
        ));
        self.footer_link_text.push_str(&format!(
            "\nManage your subscription (pause, categories, address, your data): {manage_url}"
        ));
        self
    }

    /// For the public web version: no personal data, a signup link instead of unsubscribe.
    pub fn for_archive(newsletter_name: &str, signup_url: &str) -> Self {
        SlotValues {
            personal_line_html: format!(
                "You are reading the web version of {}.",
                escape_html(newsletter_name)
            ),
            personal_line_text: format!("You are reading the web version of {newsletter_name}."),
            footer_link_html: format!(
                "<a href=\"{}\" style=\"{LINK_STYLE}\">Get it every week</a>",
                escape_html(signup_url)
            ),
            footer_link_text: format!("Get it every week: {signup_url}"),
            vote_reader: String::new(),
            votes: false,
        }
    }
}

#[derive(Debug, Clone)]
enum Piece {
    Literal(std::ops::Range<usize>),
    Slot(Slot),
}

/// One piece of a split issue, in order: fixed text, or a slot to fill per recipient.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part<'a> {
    Literal(&'a str),
    Slot(Slot),
}

#[derive(Debug, Clone)]
struct Split {
    source: String,
    pieces: Vec<Piece>,
    literal_len: usize,
    /// How often each slot occurs (in [`Slot::ALL`] order), to size the output exactly: a
    /// reallocation would copy the whole issue again.
    slot_counts: [usize; Slot::COUNT],
}

impl Split {
    fn new(source: &str) -> Split {
        let mut pieces = Vec::new();
        let mut pos = 0;
        // Markers all start with MARKER_START; content never holds it (see `forbidden_char`).
        let mut search = 0;
        while let Some(i) = source[search..].find(MARKER_START) {
            let at = search + i;
            match Slot::ALL
                .iter()
                .find(|s| source[at..].starts_with(s.marker()))
            {
                Some(&slot) => {
                    if at > pos {
                        pieces.push(Piece::Literal(pos..at));
                    }
                    pieces.push(Piece::Slot(slot));
                    pos = at + slot.marker().len();
                    search = pos;
                }
                None => search = at + MARKER_START.len_utf8(),
            }
        }
        if pos < source.len() {
            pieces.push(Piece::Literal(pos..source.len()));
        }
        let literal_len = pieces
            .iter()
            .map(|p| match p {
                Piece::Literal(r) => r.len(),
                Piece::Slot(_) => 0,
            })
            .sum();
        let mut slot_counts = [0; Slot::COUNT];
        for p in &pieces {
            if let Piece::Slot(s) = p {
                slot_counts[s.index()] += 1;
            }
        }
        Split {
            source: source.to_string(),
            pieces,
            literal_len,
            slot_counts,
        }
    }

    fn parts(&self) -> impl Iterator<Item = Part<'_>> {
        self.pieces.iter().map(|p| match p {
            Piece::Literal(r) => Part::Literal(&self.source[r.clone()]),
            Piece::Slot(s) => Part::Slot(*s),
        })
    }

    fn fill<'v>(&self, votes: bool, value: impl Fn(Slot) -> &'v str) -> String {
        let values: usize = Slot::ALL
            .iter()
            .map(|&s| self.slot_counts[s.index()] * value(s).len())
            .sum();
        let mut out = String::with_capacity(self.literal_len + values);
        let mut skipping = false;
        for part in self.parts() {
            match part {
                Part::Slot(Slot::VotesBegin) => skipping = !votes,
                Part::Slot(Slot::VotesEnd) => skipping = false,
                _ if skipping => {}
                Part::Literal(l) => out.push_str(l),
                Part::Slot(s) => out.push_str(value(s)),
            }
        }
        out
    }
}

/// A frozen issue's HTML and text, split once at the slots, ready to fill per recipient.
#[derive(Debug, Clone)]
pub struct Personalizer {
    html: Split,
    text: Split,
}

impl Personalizer {
    pub fn new(html: &str, text: &str) -> Personalizer {
        Personalizer {
            html: Split::new(html),
            text: Split::new(text),
        }
    }

    pub fn html(&self, values: &SlotValues) -> String {
        self.html.fill(values.votes, |s| values.html_value(s))
    }

    pub fn text(&self, values: &SlotValues) -> String {
        self.text.fill(values.votes, |s| values.text_value(s))
    }

    /// The HTML's pieces in order, for encoders that work on the fixed text once.
    pub fn html_parts(&self) -> impl Iterator<Item = Part<'_>> {
        self.html.parts()
    }

    /// The text's pieces in order.
    pub fn text_parts(&self) -> impl Iterator<Item = Part<'_>> {
        self.text.parts()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fills_every_slot_and_escapes_html_values() {
        let html = format!(
            "<p>{}</p><p>{} · x</p><p>{}</p>",
            Slot::PersonalLine.marker(),
            Slot::FooterLink.marker(),
            Slot::FooterLink.marker()
        );
        let p = Personalizer::new(&html, Slot::FooterLink.marker());
        let v = SlotValues::for_recipient(
            "o'neil&co@example.org",
            "News",
            "https://x/u/T?a=1&b=2",
            "R".into(),
        );
        let out = p.html(&v);
        assert!(
            out.contains("Sent to o&#39;neil&amp;co@example.org"),
            "{out}"
        );
        assert_eq!(out.matches("href=\"https://x/u/T?a=1&amp;b=2\"").count(), 2);
        assert!(!out.contains(super::MARKER_START));
        assert_eq!(
            p.text(&v),
            "Unsubscribe with one click: https://x/u/T?a=1&b=2"
        );
    }

    #[test]
    fn the_web_version_leaves_the_vote_links_out() {
        let text = format!(
            "a{}/vote/{}S{}b{}c",
            Slot::VotesBegin.marker(),
            Slot::VoteReader.marker(),
            Slot::VotesEnd.marker(),
            Slot::PersonalLine.marker(),
        );
        let p = Personalizer::new("", &text);
        let mail = SlotValues::for_recipient("a@b.c", "N", "u", "READER".into());
        assert_eq!(
            p.text(&mail),
            "a/vote/READERSbSent to a@b.c because you subscribed to N and confirmed your address.c"
        );
        let web = SlotValues::for_archive("N", "s");
        assert_eq!(p.text(&web), "abYou are reading the web version of N.c");
    }
}
