//! Text helpers shared by the generation metrics: Python's notion of whitespace (what
//! `str.split()` and `str.rstrip()` use) and sacrebleu's `13a` tokenizer.

/// Python's `str.isspace()`: Unicode White_Space plus the ASCII information separators
/// U+001C..U+001F, which Python also splits on.
pub fn is_py_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// Python's `str.split()` without arguments.
pub fn py_split(s: &str) -> impl Iterator<Item = &str> {
    s.split(is_py_space).filter(|w| !w.is_empty())
}

/// Python's `str.rstrip()` without arguments.
pub fn py_rstrip(s: &str) -> &str {
    s.trim_end_matches(is_py_space)
}

/// A unit the 13a rules scan: a byte of an ASCII line or a char of any other.
trait Unit: Copy + Eq {
    const SPACE: Self;
    fn ascii(self) -> Option<u8>;
}

impl Unit for u8 {
    const SPACE: u8 = b' ';
    fn ascii(self) -> Option<u8> {
        Some(self)
    }
}

impl Unit for char {
    const SPACE: char = ' ';
    fn ascii(self) -> Option<u8> {
        u8::try_from(self).ok().filter(u8::is_ascii)
    }
}

/// The characters sacrebleu's first 13a rule isolates: `{|}~ [\]^_\` space !"#$%& ()*+ :;<=>?@ /`.
fn is_13a_symbol<U: Unit>(c: U) -> bool {
    c.ascii().is_some_and(|b| matches!(b, b'{'..=b'~' | b'['..=b'`' | b' '..=b'&' | b'('..=b'+' | b':'..=b'@' | b'/'))
}

fn is_digit<U: Unit>(c: U) -> bool {
    c.ascii().is_some_and(|b| b.is_ascii_digit())
}

fn is_period_comma<U: Unit>(c: U) -> bool {
    c.ascii().is_some_and(|b| b == b'.' || b == b',')
}

/// Applies the four 13a regex rules to `s` (already padded with a space on each side). Rules
/// 2-4 substitute two-character patterns, scanned left to right without overlap, exactly as
/// Python's `re.sub` does.
fn rules_13a<U: Unit>(s: &[U]) -> Vec<U> {
    let sp = U::SPACE;
    let mut a = Vec::with_capacity(s.len() * 2);
    for &c in s {
        if is_13a_symbol(c) {
            a.extend([sp, c, sp]);
        } else {
            a.push(c);
        }
    }
    let mut b = Vec::with_capacity(a.len() + a.len() / 4);
    substitute_pairs(&a, &mut b, |x, y| !is_digit(x) && is_period_comma(y), |x, y, o| o.extend([x, sp, y, sp]));
    a.clear();
    substitute_pairs(&b, &mut a, |x, y| is_period_comma(x) && !is_digit(y), |x, y, o| o.extend([sp, x, sp, y]));
    b.clear();
    substitute_pairs(&a, &mut b, |x, y| is_digit(x) && y.ascii() == Some(b'-'), |x, y, o| o.extend([x, sp, y, sp]));
    b
}

fn substitute_pairs<U: Unit>(
    s: &[U],
    out: &mut Vec<U>,
    matches: impl Fn(U, U) -> bool,
    replace: impl Fn(U, U, &mut Vec<U>),
) {
    let mut i = 0;
    while i < s.len() {
        if i + 1 < s.len() && matches(s[i], s[i + 1]) {
            replace(s[i], s[i + 1], out);
            i += 2;
        } else {
            out.push(s[i]);
            i += 1;
        }
    }
}

/// sacrebleu's `13a` tokenizer (mteval-v13a): the WMT standard for BLEU.
pub fn tokenize_13a(line: &str) -> String {
    let mut line = std::borrow::Cow::Borrowed(line);
    if line.contains('\n') || line.contains("<skipped>") {
        line = line.replace("<skipped>", "").replace("-\n", "").replace('\n', " ").into();
    }
    if line.contains('&') {
        line = line.replace("&quot;", "\"").replace("&amp;", "&").replace("&lt;", "<").replace("&gt;", ">").into();
    }
    let joined = if line.is_ascii() {
        let mut s = Vec::with_capacity(line.len() + 2);
        s.push(b' ');
        s.extend_from_slice(line.as_bytes());
        s.push(b' ');
        String::from_utf8(rules_13a(&s)).unwrap_or_default()
    } else {
        let s: Vec<char> = std::iter::once(' ').chain(line.chars()).chain(std::iter::once(' ')).collect();
        rules_13a(&s).into_iter().collect()
    };
    let mut out = String::with_capacity(joined.len());
    for w in py_split(&joined) {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(w);
    }
    out
}
