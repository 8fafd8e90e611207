//! What a SPARQL endpoint checks of a query's text before a parser sees it: its size, how deep its brackets nest
//! (the parser recurses on them: a deep enough query would overflow the stack) and forms the endpoint does not
//! answer. A plain scan, linear in the text, that never recurses. The parser also recurses on prefix operators
//! (`!!!!?x`, `- - -?x`, `^^^^<p>`): a run of them counts as deep as that many brackets.

/// Why a query's text is refused before parsing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    TooLarge {
        bytes: usize,
        limit: usize,
    },
    TooDeep(usize),
    /// Negated brackets (`!(`) nested deeper than [`MAX_NEGATED`], or more than [`MAX_NOT_RUN`] prefix operators
    /// with a `!` in a row.
    NegationsTooDeep(usize),
    Unsupported(&'static str),
}

/// How deep negated brackets (`!(`, `!STR(`) may nest. The parser's time doubles to quadruples with each level and
/// grows with the `!`s in front of each (20 levels of `!(` took 3 s, of `!STR(` 19 s, 12 levels behind 64 `!`s 9 s;
/// the fuzzer found all three); 8 levels behind [`MAX_NOT_RUN`] `!`s each parse in a few tens of milliseconds.
pub const MAX_NEGATED: usize = 8;

/// The most prefix operators in a row that hold a `!` (`!!x` is `x`: no query needs more).
pub const MAX_NOT_RUN: usize = 3;

/// Refuses, before parsing, a query that is too large, nests brackets too deep (the parser recurses on them), or asks
/// for `SERVICE` (no federated queries: the endpoint answers from its own graph). Strings, IRIs and comments are
/// skipped; a `<` that does not open an IRI counts as the operator it is.
pub fn check(text: &str, max_bytes: usize, max_depth: usize) -> Result<(), Refusal> {
    if text.len() > max_bytes {
        return Err(Refusal::TooLarge { bytes: text.len(), limit: max_bytes });
    }
    let bytes = text.as_bytes();
    let (mut depth, mut i) = (0usize, 0usize);
    // Prefix operators in a row (`!`, `-`, `+`, `^`, whitespace between them): the parser recurses on each, as on
    // a bracket.
    let mut prefixes = 0usize;
    // Whether each open bracket follows a `!`, and how many of those are open.
    let (mut negated, mut open_negated) = (Vec::new(), 0usize);
    let mut after_not = false;
    // Whether the current run of prefix operators holds a `!`.
    let mut run_has_not = false;
    while i < bytes.len() {
        match bytes[i] {
            b'!' | b'-' | b'+' | b'^' if bytes.get(i + 1) != Some(&b'=') => {
                prefixes += 1;
                if prefixes > max_depth {
                    return Err(Refusal::TooDeep(max_depth));
                }
                run_has_not |= bytes[i] == b'!';
                if run_has_not && prefixes > MAX_NOT_RUN {
                    return Err(Refusal::NegationsTooDeep(MAX_NEGATED));
                }
                after_not = bytes[i] == b'!';
                i += 1;
                continue;
            }
            b if b.is_ascii_whitespace() => {
                i += 1;
                continue;
            }
            _ => {
                prefixes = 0;
                run_has_not = false;
            }
        }
        // A `!` negates what follows: a bracket, or a function call (`!STR(`, `!ex:f(`, `!<f>(`, `!EXISTS {`) whose
        // name comes first; the negation reaches the next bracket across names, IRIs and colons only.
        let not = std::mem::take(&mut after_not);
        if bytes[i] == b':' {
            after_not = not;
        }
        match bytes[i] {
            b'#' => i = bytes[i..].iter().position(|&b| b == b'\n').map_or(bytes.len(), |end| i + end),
            quote @ (b'"' | b'\'') => {
                let long = bytes[i..].starts_with(&[quote; 3]);
                let open = if long { 3 } else { 1 };
                let mut j = i + open;
                while j < bytes.len() {
                    if bytes[j] == b'\\' {
                        j += 2;
                    } else if long && bytes[j..].starts_with(&[quote; 3]) {
                        j += 2;
                        break;
                    } else if !long && (bytes[j] == quote || bytes[j] == b'\n') {
                        break;
                    } else {
                        j += 1;
                    }
                }
                i = j;
            }
            b'<' => {
                after_not = not;
                let iri = bytes[i + 1..]
                    .iter()
                    .position(|&b| b == b'>' || b.is_ascii_whitespace() || b == b'<' || b == b'{' || b == b'}')
                    .filter(|&end| bytes[i + 1 + end] == b'>');
                if let Some(end) = iri {
                    i += end + 1;
                }
            }
            b'(' | b'{' | b'[' => {
                depth += 1;
                if depth > max_depth {
                    return Err(Refusal::TooDeep(max_depth));
                }
                negated.push(not);
                open_negated += usize::from(not);
                if open_negated > MAX_NEGATED {
                    return Err(Refusal::NegationsTooDeep(MAX_NEGATED));
                }
            }
            b')' | b'}' | b']' => {
                depth = depth.saturating_sub(1);
                open_negated -= usize::from(negated.pop().unwrap_or(false));
            }
            b'?' | b'$' => {
                // A variable: its name is no keyword.
                while i + 1 < bytes.len() && (bytes[i + 1].is_ascii_alphanumeric() || bytes[i + 1] == b'_') {
                    i += 1;
                }
            }
            b if b.is_ascii_alphabetic() => {
                after_not = not;
                let start = i;
                while i + 1 < bytes.len()
                    && (bytes[i + 1].is_ascii_alphanumeric() || matches!(bytes[i + 1], b'_' | b'-' | b'.'))
                {
                    i += 1;
                }
                let word = &text[start..=i];
                let prefixed = bytes.get(i + 1) == Some(&b':') || (start > 0 && bytes[start - 1] == b':');
                if !prefixed && word.eq_ignore_ascii_case("SERVICE") {
                    return Err(Refusal::Unsupported("SERVICE"));
                }
            }
            _ => {}
        }
        i += 1;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_of_prefix_operators_count_as_depth_and_ordinary_operators_do_not() {
        for deep in ["- ", "+", "^"] {
            let query = format!("ASK {{ FILTER({}?x) }}", deep.repeat(65));
            assert_eq!(check(&query, 65_536, 64), Err(Refusal::TooDeep(64)), "{deep}");
            let query = format!("ASK {{ FILTER({}?x) }}", deep.repeat(60));
            assert_eq!(check(&query, 65_536, 64), Ok(()), "{deep}");
        }
        let nots = |run: &str| format!("ASK {{ FILTER({run}?x) }}");
        assert_eq!(check(&nots("!!!!"), 65_536, 64), Err(Refusal::NegationsTooDeep(MAX_NEGATED)));
        assert_eq!(check(&nots("- ! -!"), 65_536, 64), Err(Refusal::NegationsTooDeep(MAX_NEGATED)));
        assert_eq!(check(&nots("!!!"), 65_536, 64), Ok(()));
        let negations = |n: usize| format!("ASK {{ FILTER({}?x{}) }}", "!(".repeat(n), ")".repeat(n));
        assert_eq!(check(&negations(9), 65_536, 64), Err(Refusal::NegationsTooDeep(MAX_NEGATED)));
        assert_eq!(check(&negations(8), 65_536, 64), Ok(()));
        let calls = |n: usize| format!("ASK {{ FILTER({}?x{}) }}", "!STR(".repeat(n), ")".repeat(n));
        assert_eq!(check(&calls(9), 65_536, 64), Err(Refusal::NegationsTooDeep(MAX_NEGATED)));
        assert_eq!(check(&calls(8), 65_536, 64), Ok(()));
        let exists = |n: usize| format!("ASK {{ {} }}", "FILTER(!EXISTS { ?s ?p ?o ".repeat(n) + &"})".repeat(n));
        assert_eq!(check(&exists(9), 65_536, 64), Err(Refusal::NegationsTooDeep(MAX_NEGATED)));
        let apart = format!("ASK {{ FILTER({}) }}", vec!["!(?x)"; 40].join(" && "));
        assert_eq!(check(&apart, 65_536, 64), Ok(()), "negations side by side do not nest");
        let ordinary = "ASK { ?s ^<p>/<q> ?o . FILTER(?a != -1 && !BOUND(?b) && ?c - -2 > +3 && \"1\"^^<t> = 1) }";
        assert_eq!(check(ordinary, 65_536, 64), Ok(()));
        let long: String = (0..2000).map(|i| format!("?a{i} - ")).collect();
        assert_eq!(
            check(&format!("SELECT ({long} 1 AS ?x) {{}}"), 65_536, 64),
            Ok(()),
            "binary operators repeat freely"
        );
    }
}
