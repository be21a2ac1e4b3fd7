//! `[newsletter]` (name, list id, items) and `[templates]`.

use super::*;

/// `templates.dir`: a folder whose files replace the built-in templates of the same name
/// (`email/issue.mjml`, `web/signup.html`, …); missing files fall back to the built-ins.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TemplateSettings {
    pub dir: Option<std::path::PathBuf>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewsletterSettings {
    pub name: SingleLine,
    pub list_id: ListId,
    pub postal_address: SingleLine,
    #[serde(default = "default_max_items")]
    pub max_items: u32,
}

pub(super) fn default_max_items() -> u32 {
    10
}

/// Text that goes into a header or a one-line footer: non-empty, no CR/LF.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct SingleLine(pub String);

impl TryFrom<String> for SingleLine {
    type Error = String;
    fn try_from(value: String) -> Result<Self, String> {
        if value.trim().is_empty() {
            return Err("must not be empty".into());
        }
        if value.chars().any(crate::text::forbidden_char) {
            return Err("must be one line without control or private-use characters".into());
        }
        Ok(SingleLine(value))
    }
}

/// RFC 2919 list identifier: a dot-atom such as `weekly.example.org`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct ListId(pub String);

impl TryFrom<String> for ListId {
    type Error = String;
    fn try_from(value: String) -> Result<Self, String> {
        let ok = value.contains('.')
            && value.len() <= 255
            && value.split('.').all(|part| {
                !part.is_empty()
                    && part
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            });
        if ok {
            Ok(ListId(value))
        } else {
            Err(format!(
                "{value:?} is not a list id (dot-separated letters, digits and dashes, e.g. weekly.example.org)"
            ))
        }
    }
}

/// A DNS name as DKIM uses them (selectors, signing domains): dot-separated labels of letters,
/// digits, `-` and `_`.
pub fn is_dns_name(s: &str) -> bool {
    !s.is_empty()
        && s.split('.').all(|label| {
            !label.is_empty()
                && label
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        })
}
