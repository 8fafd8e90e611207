//! The word index of one crawled catalogue: which of its datasets contain a search word, without reading every
//! dataset's text.
//!
//! Search keeps the catalogue keyword filter's meaning: a word matches a dataset whose lower-cased text (id, title,
//! descriptions, keywords) contains it anywhere, not only as a whole word. Query words hold no whitespace and no
//! comma, so an occurrence never crosses one of those: it lies inside one of the text's tokens (its runs between
//! whitespace and commas). The index therefore keeps each distinct token with the datasets it occurs in, and each
//! token's byte trigrams with the tokens they occur in. A word of three bytes or more is looked up by its rarest
//! trigram, and only the tokens listed there are read; a shorter word reads the catalogue's tokens, which are far
//! fewer than its texts. Everything is kept in flat arrays (offsets into one list), built once per crawl and never
//! changed, so an index costs a few hundred bytes a dataset and a search a few binary searches per catalogue.

/// Whether `c` separates tokens, as it separates the words of a query.
pub fn separates(c: char) -> bool {
    c.is_whitespace() || c == ','
}

/// The words of one query, read once for every catalogue it is run over.
#[derive(Debug, Clone, Default)]
pub struct Words {
    /// Every word's parts between separators, longest first: looked up by trigram, they usually leave the fewest
    /// entries.
    parts: Vec<String>,
    /// The words that hold a separator (a DSP catalogue keyword such as `heart failure`), sought whole in the texts.
    pub phrases: Vec<String>,
}

impl Words {
    /// The query's `words`, lower-cased.
    pub fn new(words: &[String]) -> Words {
        let mut parts: Vec<String> =
            words.iter().flat_map(|w| w.split(separates)).filter(|p| !p.is_empty()).map(str::to_owned).collect();
        parts.sort_by_key(|p| std::cmp::Reverse(p.len()));
        let phrases = words.iter().filter(|w| w.contains(separates)).cloned().collect();
        Words { parts, phrases }
    }
}

/// Offsets into one flat list: the items of key `k` are `items[starts[k]..starts[k + 1]]`.
#[derive(Debug, Default)]
pub(super) struct Lists {
    starts: Vec<u32>,
    items: Vec<u32>,
}

impl Lists {
    /// From `(key, item)` pairs with keys `0..keys`, each key's items ascending and without repeats.
    pub(super) fn from_pairs(keys: usize, mut pairs: Vec<(u32, u32)>) -> Lists {
        pairs.sort_unstable();
        pairs.dedup();
        let mut starts = Vec::with_capacity(keys + 1);
        let mut items = Vec::with_capacity(pairs.len());
        let mut pairs = pairs.into_iter().peekable();
        for key in 0..keys as u32 {
            starts.push(items.len() as u32);
            while let Some((_, item)) = pairs.next_if(|(k, _)| *k == key) {
                items.push(item);
            }
        }
        starts.push(items.len() as u32);
        Lists { starts, items }
    }

    pub(super) fn get(&self, key: usize) -> &[u32] {
        &self.items[self.starts[key] as usize..self.starts[key + 1] as usize]
    }
}

/// The word index of one catalogue's entries (see the module's documentation).
#[derive(Debug, Default)]
pub struct WordIndex {
    /// The distinct tokens, one after another; token `t` is `text[token_starts[t]..token_starts[t + 1]]`.
    text: String,
    token_starts: Vec<u32>,
    /// The entries each token occurs in.
    entries: Lists,
    /// The distinct trigrams of every token, sorted; `tokens.get(i)` lists the tokens holding `trigrams[i]`.
    trigrams: Vec<[u8; 3]>,
    tokens: Lists,
    /// How many entries the index was built over.
    len: u32,
}

impl WordIndex {
    /// The index of `texts` (each already lower-cased), entry `i` being the `i`th text.
    pub fn build<'a>(texts: impl IntoIterator<Item = &'a str>) -> WordIndex {
        let mut ids: std::collections::HashMap<&str, u32> = std::collections::HashMap::new();
        let mut order: Vec<&str> = Vec::new();
        let mut occurrences: Vec<(u32, u32)> = Vec::new();
        let mut len = 0u32;
        for (entry, text) in texts.into_iter().enumerate() {
            len += 1;
            for token in text.split(separates).filter(|t| !t.is_empty()) {
                let id = *ids.entry(token).or_insert_with(|| {
                    order.push(token);
                    (order.len() - 1) as u32
                });
                occurrences.push((id, entry as u32));
            }
        }
        let mut text = String::with_capacity(order.iter().map(|t| t.len()).sum());
        let mut token_starts = Vec::with_capacity(order.len() + 1);
        for token in &order {
            token_starts.push(text.len() as u32);
            text.push_str(token);
        }
        token_starts.push(text.len() as u32);

        let mut grams: Vec<([u8; 3], u32)> = Vec::new();
        for (id, token) in order.iter().enumerate() {
            grams.extend(token.as_bytes().windows(3).map(|w| ([w[0], w[1], w[2]], id as u32)));
        }
        grams.sort_unstable();
        grams.dedup();
        let mut trigrams: Vec<[u8; 3]> = grams.iter().map(|(g, _)| *g).collect();
        trigrams.dedup();
        let pairs = grams
            .into_iter()
            .map(|(gram, token)| (trigrams.binary_search(&gram).expect("listed") as u32, token))
            .collect();
        let tokens = Lists::from_pairs(trigrams.len(), pairs);
        WordIndex { text, token_starts, entries: Lists::from_pairs(order.len(), occurrences), trigrams, tokens, len }
    }

    fn token(&self, t: usize) -> &str {
        &self.text[self.token_starts[t] as usize..self.token_starts[t + 1] as usize]
    }

    fn token_count(&self) -> usize {
        self.token_starts.len().saturating_sub(1)
    }

    /// The entries whose text contains `word` (lower-cased, without separators), ascending.
    fn containing(&self, word: &str) -> Vec<u32> {
        let bytes = word.as_bytes();
        let finder = memchr::memmem::Finder::new(bytes);
        let holds = |t: usize| finder.find(self.token(t).as_bytes()).is_some();
        let mut found: Vec<u32> = Vec::new();
        let mut take = |t: usize| found.extend_from_slice(self.entries.get(t));
        if bytes.len() >= 3 {
            // The rarest of the word's trigrams: a token holding the word holds every one of them.
            let mut rarest: Option<&[u32]> = None;
            for w in bytes.windows(3) {
                let Ok(i) = self.trigrams.binary_search(&[w[0], w[1], w[2]]) else { return Vec::new() };
                let tokens = self.tokens.get(i);
                if rarest.is_none_or(|r| tokens.len() < r.len()) {
                    rarest = Some(tokens);
                }
            }
            for &t in rarest.unwrap_or_default() {
                if holds(t as usize) {
                    take(t as usize);
                }
            }
        } else {
            for t in 0..self.token_count() {
                if holds(t) {
                    take(t);
                }
            }
        }
        found.sort_unstable();
        found.dedup();
        found
    }

    /// The entries whose text contains every part of `words`, ascending; every entry when there are none. (Whole
    /// phrases are the caller's to seek in the texts.)
    pub fn matching(&self, words: &Words) -> Vec<u32> {
        let mut matched: Option<Vec<u32>> = None;
        for word in &words.parts {
            let found = self.containing(word);
            matched = Some(match matched {
                None => found,
                Some(so_far) => intersect(&so_far, &found),
            });
            if matched.as_ref().is_some_and(Vec::is_empty) {
                break;
            }
        }
        matched.unwrap_or_else(|| (0..self.len).collect())
    }
}

/// The items of two ascending lists that are in both.
fn intersect(a: &[u32], b: &[u32]) -> Vec<u32> {
    let (mut i, mut j, mut both) = (0, 0, Vec::new());
    while i < a.len() && j < b.len() {
        match a[i].cmp(&b[j]) {
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
            std::cmp::Ordering::Equal => {
                both.push(a[i]);
                i += 1;
                j += 1;
            }
        }
    }
    both
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// What the index must answer: the entries whose text contains every word.
    fn scanned(texts: &[String], words: &[String]) -> Vec<u32> {
        (0..texts.len() as u32).filter(|&i| words.iter().all(|w| texts[i as usize].contains(w.as_str()))).collect()
    }

    fn words_of(query: &str) -> Vec<String> {
        query.split(separates).filter(|w| !w.is_empty()).map(str::to_lowercase).collect()
    }

    /// Texts and queries from a small alphabet (so that words recur), with separators, and letters of two, three and
    /// four bytes in UTF-8: every query's answer is the scan's.
    #[test]
    fn the_index_finds_exactly_the_entries_a_scan_of_the_texts_finds() {
        let text = "[abcé€𝄞0-9 ,\t./-]{0,40}";
        let query = "[abcé€𝄞0-9 ,-]{0,8}";
        proptest!(ProptestConfig::with_cases(500), |(
            texts in proptest::collection::vec(text, 0..30),
            queries in proptest::collection::vec(query, 1..8),
        )| {
            let texts: Vec<String> = texts.iter().map(|t| t.to_lowercase()).collect();
            let index = WordIndex::build(texts.iter().map(String::as_str));
            for query in &queries {
                let words = words_of(query);
                prop_assert_eq!(index.matching(&Words::new(&words)), scanned(&texts, &words), "query {:?}", query);
            }
        });
    }

    /// Words inside tokens, across letters of several bytes, and words that occur nowhere.
    #[test]
    fn substrings_of_tokens_match_and_absent_words_do_not() {
        let texts: Vec<String> =
            ["dataset-000017 cohort 17: diabetes registry", "Kohorte Übergewicht, adipositas", "asthma 7"]
                .iter()
                .map(|t| t.to_lowercase())
                .collect();
        let index = WordIndex::build(texts.iter().map(String::as_str));
        let ask = |q: &str| index.matching(&Words::new(&words_of(q)));
        assert_eq!(ask("diab"), vec![0]);
        assert_eq!(ask("7"), vec![0, 2]);
        assert_eq!(ask("17 cohort"), vec![0]);
        assert_eq!(ask("übergew"), vec![1]);
        assert_eq!(ask("ösi"), Vec::<u32>::new());
        assert_eq!(ask("adipositas,kohorte"), vec![1]);
        assert_eq!(ask("registry asthma"), Vec::<u32>::new());
        assert_eq!(ask(""), vec![0, 1, 2]);
    }
}
