//! Text hygiene shared by every layer: which characters content may carry, and one-line text
//! for headers. A leaf module (it imports nothing of ours), so configuration, comparisons,
//! subscribers and rendering can all use it without depending on each other.

/// Characters content may not carry: control characters (except newline and tab where a
/// caller allows them) and the Private Use Area, where the renderer's slot markers live
/// ([`crate::render::MARKER_START`]).
pub fn forbidden_char(c: char) -> bool {
    c.is_control() || ('\u{E000}'..='\u{F8FF}').contains(&c)
}

/// `s` on one line: runs of whitespace and control characters become one space.
pub fn one_line(s: &str) -> String {
    s.split(|c: char| c.is_whitespace() || c.is_control())
        .filter(|w| !w.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}
