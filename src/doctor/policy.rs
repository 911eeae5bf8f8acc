//! The quality policy checks itself: the poor parameters the README documents are corrected to
//! the documented values under the default profile (a build whose policy drifted from its
//! documentation fails here).

use super::{Check, Report};
use crate::policy::{self, Settings, ANIME};

/// A good request, and the poor values the README's policy table promises to correct, each
/// with the value it documents.
const GOOD: Settings = Settings {
    width: 1024,
    height: 1024,
    cfg: 7.0,
    steps: 28,
};

/// (what is asked, the documented correction).
const DOCUMENTED: [(Settings, &str); 5] = [
    (
        Settings {
            width: 512,
            height: 512,
            ..GOOD
        },
        "width 512 -> 768, height 512 -> 768",
    ),
    (Settings { cfg: 2.0, ..GOOD }, "cfg 2 -> 7"),
    (Settings { cfg: 15.0, ..GOOD }, "cfg 15 -> 7.5"),
    (Settings { steps: 8, ..GOOD }, "steps 8 -> 25"),
    (Settings { steps: 60, ..GOOD }, "steps 60 -> 35"),
];

pub fn check(report: &mut Report) -> std::io::Result<()> {
    let mut wrong = Vec::new();
    for (asked, documented) in DOCUMENTED {
        let got = policy::apply(asked, &[], &ANIME).corrections;
        let got: Vec<String> = got.iter().map(ToString::to_string).collect();
        if got.join(", ") != documented {
            wrong.push(format!("expected `{documented}`, got `{}`", got.join(", ")));
        }
    }
    if !policy::apply(GOOD, &[], &ANIME).corrections.is_empty() {
        wrong.push("a good request (1024x1024, cfg 7, 28 steps) was corrected".into());
    }
    let check = if wrong.is_empty() {
        let all: Vec<&str> = DOCUMENTED.iter().map(|(_, d)| *d).collect();
        Check::pass(
            "quality policy",
            format!("{} profile corrects {}", ANIME.name, all.join("; ")),
        )
    } else {
        Check::fail(
            "quality policy",
            wrong.join("; "),
            "report it: this build's policy differs from its documentation",
        )
    };
    report.add(check)
}
