//! Shell-style wildcards over paths, as `.dockerignore`, `find` and `restore --include` read
//! them: `*`, `?`, `[a-z]`, `[!x]` and `\\` within one segment; `**` spans any number of
//! segments.

/// Glob match of one path segment: `*`, `?`, `[abc]`, `[a-z]`, `[!x]`.
pub fn segment_match(pat: &[char], name: &[char]) -> bool {
    match (pat.first(), name.first()) {
        (None, None) => true,
        (Some('*'), _) => segment_match(&pat[1..], name) || (!name.is_empty() && segment_match(pat, &name[1..])),
        (Some('?'), Some(_)) => segment_match(&pat[1..], &name[1..]),
        (Some('['), Some(&c)) => {
            let Some(end) = pat.iter().position(|&x| x == ']') else { return false };
            let class = &pat[1..end];
            let (negate, class) = match class.first() {
                Some('!') | Some('^') => (true, &class[1..]),
                _ => (false, class),
            };
            let mut hit = false;
            let mut i = 0;
            while i < class.len() {
                if i + 2 < class.len() && class[i + 1] == '-' {
                    hit |= class[i] <= c && c <= class[i + 2];
                    i += 3;
                } else {
                    hit |= class[i] == c;
                    i += 1;
                }
            }
            hit != negate && segment_match(&pat[end + 1..], &name[1..])
        }
        (Some('\\'), Some(&c)) if pat.len() > 1 => pat[1] == c && segment_match(&pat[2..], &name[1..]),
        (Some(&p), Some(&c)) => p == c && segment_match(&pat[1..], &name[1..]),
        _ => false,
    }
}

/// Matches path segments against pattern segments; `**` spans any number of segments.
pub fn path_match(pat: &[String], path: &[&str]) -> bool {
    match pat.first() {
        None => path.is_empty(),
        Some(p) if p == "**" => (0..=path.len()).any(|i| path_match(&pat[1..], &path[i..])),
        Some(p) => {
            !path.is_empty()
                && segment_match(&p.chars().collect::<Vec<_>>(), &path[0].chars().collect::<Vec<_>>())
                && path_match(&pat[1..], &path[1..])
        }
    }
}

pub fn clean_segments(pattern: &str) -> Vec<String> {
    pattern.split('/').filter(|s| !s.is_empty() && *s != ".").map(String::from).collect()
}

/// Whether some path below `path` (or `path` itself) could match `pat`: the segments of
/// `path` match the pattern's first ones (a `**` reached matches anything further down).
pub fn leads_to(pat: &[String], path: &[&str]) -> bool {
    match (pat.first(), path.first()) {
        (_, None) => true,
        (None, Some(_)) => false,
        (Some(p), Some(_)) if p == "**" => true,
        (Some(p), Some(seg)) => {
            segment_match(&p.chars().collect::<Vec<_>>(), &seg.chars().collect::<Vec<_>>())
                && leads_to(&pat[1..], &path[1..])
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segs(s: &str) -> Vec<&str> {
        s.split('/').filter(|s| !s.is_empty()).collect()
    }

    #[test]
    fn wildcards_match_within_a_segment_and_across_with_two_stars() {
        let pat = clean_segments("/var/www/*.php");
        assert!(path_match(&pat, &segs("/var/www/index.php")));
        assert!(!path_match(&pat, &segs("/var/www/sub/index.php")), "* stays within a segment");
        let deep = clean_segments("**/wp-config.php");
        assert!(path_match(&deep, &segs("/var/www/html/wp-config.php")));
        assert!(path_match(&deep, &segs("wp-config.php")));
        assert!(path_match(&clean_segments("page[0-9].htm?"), &segs("page7.html")));
        assert!(!path_match(&clean_segments("page[!0-9].html"), &segs("page7.html")));
    }

    #[test]
    fn leads_to_says_which_directories_can_hold_a_match() {
        let pat = clean_segments("/var/www/*.php");
        assert!(leads_to(&pat, &segs("/")));
        assert!(leads_to(&pat, &segs("/var")));
        assert!(leads_to(&pat, &segs("/var/www")));
        assert!(!leads_to(&pat, &segs("/etc")));
        assert!(!leads_to(&pat, &segs("/var/www/a.php/deeper")), "longer than the pattern");
        assert!(leads_to(&clean_segments("/var/**/x"), &segs("/var/a/b/c")));
    }
}
