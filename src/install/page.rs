//! The small HTML pages the install callback answers with: what was connected, or why not.
//! Never a token, code or secret; every text is escaped.

/// A page titled `title` saying `message`.
pub fn page(title: &str, message: &str) -> String {
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{title}</title></head>\n<body><h1>{title}</h1><p>{message}</p></body></html>\n",
        title = escape(title),
        message = escape(message)
    )
}

fn escape(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            '&' => "&amp;".to_owned(),
            '<' => "&lt;".to_owned(),
            '>' => "&gt;".to_owned(),
            '"' => "&quot;".to_owned(),
            '\'' => "&#39;".to_owned(),
            c => c.to_string(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_every_text_it_shows() {
        let shown = page("Connected <b>", "the location \"L1\" & co's");
        assert!(shown.contains("Connected &lt;b&gt;"));
        assert!(shown.contains("&quot;L1&quot; &amp; co&#39;s"));
        assert!(!shown.contains("<b>"));
    }
}
