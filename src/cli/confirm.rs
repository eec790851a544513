//! The confirmation before a real delete: on a terminal the operator types the account id;
//! off a terminal nothing is deleted without `--yes`.

use std::collections::BTreeSet;
use std::io::{BufRead, IsTerminal, Write};

/// What is about to be deleted, as the prompt shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deletion {
    /// The caller's account id: what the operator must type.
    pub account: String,
    /// The regions the ARNs name.
    pub regions: BTreeSet<String>,
    /// How many build versions.
    pub count: usize,
    /// The `DELETE_OUTPUT_RESOURCES` mode in effect (`none`: only the images).
    pub output_resources: String,
}

/// The operator's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    Confirmed,
    Declined,
}

/// Whether a person can be asked: standard input and standard error are both terminals.
pub fn can_ask() -> bool {
    std::io::stdin().is_terminal() && std::io::stderr().is_terminal()
}

/// Shows what will be deleted on standard error and reads one line from standard input.
/// Only the exact account id confirms; anything else, or end of input, declines.
pub fn ask(deletion: &Deletion) -> std::io::Result<Answer> {
    let mut err = std::io::stderr().lock();
    writeln!(err, "{}", describe(deletion))?;
    write!(
        err,
        "Type the account id ({}) to delete: ",
        deletion.account
    )?;
    err.flush()?;
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    Ok(judge(deletion, &line))
}

/// The prompt's description: account, regions, counts, output resources.
pub fn describe(d: &Deletion) -> String {
    let regions = if d.regions.is_empty() {
        "-".to_string()
    } else {
        d.regions.iter().cloned().collect::<Vec<_>>().join(", ")
    };
    let outputs = match d.output_resources.as_str() {
        "none" => "images only; their AMIs, snapshots and container images are left".to_string(),
        mode => format!("with their output resources (--delete-output-resources {mode})"),
    };
    format!(
        "About to DELETE {} image build version(s)\n  account: {}\n  regions: {}\n  what:    {}",
        d.count, d.account, regions, outputs
    )
}

/// The answer a typed line gives.
pub fn judge(d: &Deletion, line: &str) -> Answer {
    if line.trim() == d.account {
        Answer::Confirmed
    } else {
        Answer::Declined
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deletion() -> Deletion {
        Deletion {
            account: "123456789012".into(),
            regions: ["us-east-1".to_string()].into(),
            count: 2,
            output_resources: "none".into(),
        }
    }

    #[test]
    fn only_the_exact_account_id_confirms() {
        // GIVEN a pending deletion in 123456789012
        let d = deletion();
        // THEN the id (with the newline) confirms; y, yes, another id or nothing declines
        assert_eq!(judge(&d, "123456789012\n"), Answer::Confirmed);
        for typed in ["y\n", "yes\n", "123456789013\n", "", "\n"] {
            assert_eq!(judge(&d, typed), Answer::Declined, "{typed:?}");
        }
    }

    #[test]
    fn the_prompt_names_account_regions_and_count() {
        // WHEN the deletion is described THEN account, region and count are shown
        let text = describe(&deletion());
        assert!(text.contains("123456789012") && text.contains("us-east-1"));
        assert!(text.contains("DELETE 2 image build version(s)"));
    }
}
