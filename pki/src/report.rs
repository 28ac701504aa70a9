//! Error messages for people: an error and its causes on one line, each
//! cause once. Many errors show their cause in their own text *and* give
//! it as their `source()`; printing the chain as is would say everything
//! twice.

/// `error: cause: cause …`, leaving out a cause whose text the line
/// already holds.
pub fn error_text(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let part = cause.to_string();
        if !part.is_empty() && !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = cause.source();
    }
    text
}

/// As [`error_text`] for an `anyhow` error (its contexts included).
pub fn anyhow_text(error: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in error.chain() {
        let part = cause.to_string();
        if part.is_empty() || text.contains(&part) {
            continue;
        }
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(&part);
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    enum Outer {
        #[error("import file: {0}")]
        Json(#[from] std::io::Error),
    }

    #[test]
    fn each_cause_is_said_once() {
        let e = Outer::from(std::io::Error::other("expected `,` at line 3"));
        assert_eq!(error_text(&e), "import file: expected `,` at line 3");
        let e = anyhow::Error::from(e).context("reading people.json");
        assert_eq!(
            anyhow_text(&e),
            "reading people.json: import file: expected `,` at line 3"
        );
        // The plain alternate form says it twice: what this is for.
        assert_eq!(format!("{e:#}").matches("expected").count(), 2);
    }
}
