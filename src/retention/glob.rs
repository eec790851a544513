//! Glob matching for a plan's `names`: `*` matches any run of characters (also none), `?`
//! matches exactly one character, every other character matches itself.
//!
//! Pure and allocation-free. The service's list filters only match exact values, so the
//! function matches names itself; a regex engine would be a dependency for two metacharacters.

/// Whether `text` matches the whole of `pattern` (anchored at both ends).
///
/// Runs in O(pattern × text) at worst: on a mismatch it backtracks only to the most recent
/// `*`, which is enough because an earlier `*` can never need to absorb more than the later
/// one already allows.
pub fn matches(pattern: &str, text: &str) -> bool {
    let pattern: Vec<char> = pattern.chars().collect();
    let text: Vec<char> = text.chars().collect();
    let (mut p, mut t) = (0, 0);
    // The position after the last `*` seen, and the text position it is currently matched up to.
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        match pattern.get(p) {
            Some('*') => {
                star = Some((p + 1, t));
                p += 1;
            }
            Some(&c) if c == '?' || c == text[t] => {
                p += 1;
                t += 1;
            }
            _ => match star {
                Some((after_star, absorbed)) => {
                    // Let the last `*` absorb one more character and retry from there.
                    star = Some((after_star, absorbed + 1));
                    p = after_star;
                    t = absorbed + 1;
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|&c| c == '*')
}

/// Whether `pattern` contains a glob metacharacter (`*` or `?`).
pub fn is_glob(pattern: &str) -> bool {
    pattern.contains(['*', '?'])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob_matching_table() {
        // GIVEN a pattern and a candidate name
        // WHEN they are matched
        // THEN the result is as tabled
        let table: &[(&str, &str, bool)] = &[
            // literals match only themselves, whole-string
            ("web", "web", true),
            ("web", "web2", false),
            ("web", "we", false),
            ("web", "xweb", false),
            ("", "", true),
            ("", "a", false),
            // `*` matches any run, including the empty one
            ("*", "", true),
            ("*", "anything-at_all", true),
            ("api-*", "api-", true),
            ("api-*", "api-gateway", true),
            ("api-*", "api", false),
            ("api-*", "web-api-x", false),
            ("*-prod", "web-prod", true),
            ("*-prod", "web-prod-2", false),
            ("a*b*c", "abc", true),
            ("a*b*c", "axxbyyc", true),
            ("a*b*c", "axxbyy", false),
            ("a*b*c", "acb", false),
            ("**", "x", true),
            ("a**b", "ab", true),
            ("*a*", "bab", true),
            ("*a*", "bbb", false),
            // backtracking: the star must absorb past a false start
            ("*ab", "aab", true),
            ("*aab", "aaab", true),
            ("a*ab", "aab", true),
            ("*b*b", "bxbxb", true),
            // `?` matches exactly one character
            ("?", "", false),
            ("?", "a", true),
            ("?", "ab", false),
            ("web-?", "web-1", true),
            ("web-?", "web-", false),
            ("web-?", "web-12", false),
            ("??", "ab", true),
            ("?*", "", false),
            ("?*", "a", true),
            ("*?", "a", true),
            ("*?", "", false),
            // mixed
            ("w?b-*", "wab-1", true),
            ("w?b-*", "wb-1", false),
            ("api_*_v?", "api_orders_v2", true),
            ("api_*_v?", "api_orders_v10", false),
        ];
        for &(pattern, text, want) in table {
            assert_eq!(matches(pattern, text), want, "{pattern:?} vs {text:?}");
        }
    }

    #[test]
    fn glob_matching_long_pathological_input_is_fast() {
        // GIVEN a pattern with many stars that cannot match a long name
        let pattern = "a*a*a*a*a*a*a*a*b";
        let text = "a".repeat(128);
        // WHEN matched THEN it fails (and the test finishes: no exponential backtracking)
        assert!(!matches(pattern, &text));
    }

    #[test]
    fn is_glob_detects_metacharacters() {
        // GIVEN patterns WHEN asked whether they are globs THEN only `*` and `?` count
        assert!(is_glob("api-*"));
        assert!(is_glob("web-?"));
        assert!(!is_glob("web"));
        assert!(!is_glob("web-1_2"));
    }
}
