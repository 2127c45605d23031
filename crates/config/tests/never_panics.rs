//! The loader answers every input with a config or a report, never a panic: arbitrary text,
//! and the sample files with random edits (which get much further down the pipeline).

mod common;

use std::path::Path;

use common::*;
use gateway_config::{Sources, load_sources};
use proptest::prelude::*;

const FILES: [&str; 3] = [
    "gateway.yaml",
    "partners/demo-bank.yaml",
    "campaigns/spring-referral-2027.yaml",
];

/// Replaces `len` characters at `at` (both taken modulo the text) with `insert`.
fn splice(text: &str, at: usize, len: usize, insert: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let start = at % (chars.len() + 1);
    let end = (start + len).min(chars.len());
    chars[..start]
        .iter()
        .chain(insert.chars().collect::<Vec<_>>().iter())
        .chain(chars[end..].iter())
        .collect()
}

proptest! {
    // Loading the whole sample takes about 10 ms in a debug build (YAML parsing dominates):
    // the arbitrary-text properties load the one file alone, and 128 cases keep each
    // property at a second or two on a busy machine.
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_text_never_panics(file in 0..FILES.len(), text in "\\PC{0,300}") {
        let sources = Sources::new().with(FILES[file], text);
        let _ = load_sources(Path::new(DIR), &sources);
    }

    #[test]
    fn yaml_like_text_never_panics(
        file in 0..FILES.len(),
        text in "([a-z_]{1,8}: ?|- |  |[\\[\\]{},:&*!|>'\"#~-]|[0-9.]{1,4}|\n){0,60}",
    ) {
        let sources = Sources::new().with(FILES[file], text);
        let _ = load_sources(Path::new(DIR), &sources);
    }

    #[test]
    fn edited_sample_never_panics(
        file in 0..FILES.len(),
        edits in proptest::collection::vec(
            (any::<usize>(), 0usize..12, "([a-z0-9_:\\[\\]{}, -]|\n|  ){0,6}"),
            1..4,
        ),
    ) {
        let mut sources = sample();
        let mut text = sources.get(FILES[file]).unwrap().to_owned();
        for (at, len, insert) in &edits {
            text = splice(&text, *at, *len, insert);
        }
        sources.insert(FILES[file], text);
        if let Err(report) = load_sources(Path::new(DIR), &sources) {
            // Every problem names a file and prints on one line.
            prop_assert!(!report.is_empty());
            for problem in report.problems() {
                prop_assert!(!problem.to_string().contains('\n'), "{problem}");
            }
        }
    }
}
