//! Docker-style random container names: `adjective_surname` (and a digit on collision).

const ADJECTIVES: &[&str] = &[
    "admiring",
    "adoring",
    "affectionate",
    "amazing",
    "awesome",
    "blissful",
    "bold",
    "brave",
    "busy",
    "charming",
    "clever",
    "compassionate",
    "competent",
    "condescending",
    "confident",
    "cool",
    "cranky",
    "crazy",
    "dazzling",
    "determined",
    "distracted",
    "dreamy",
    "eager",
    "ecstatic",
    "elastic",
    "elated",
    "elegant",
    "eloquent",
    "epic",
    "exciting",
    "fervent",
    "festive",
    "flamboyant",
    "focused",
    "friendly",
    "frosty",
    "funny",
    "gallant",
    "gifted",
    "goofy",
    "gracious",
    "great",
    "happy",
    "hardcore",
    "heuristic",
    "hopeful",
    "hungry",
    "infallible",
    "inspiring",
    "intelligent",
    "interesting",
    "jolly",
    "jovial",
    "keen",
    "kind",
    "laughing",
    "loving",
    "lucid",
    "magical",
    "modest",
    "musing",
    "mystifying",
    "naughty",
    "nervous",
    "nice",
    "nifty",
    "nostalgic",
    "objective",
    "optimistic",
    "peaceful",
    "pedantic",
    "pensive",
    "practical",
    "priceless",
    "quirky",
    "quizzical",
    "recursing",
    "relaxed",
    "reverent",
    "romantic",
    "sad",
    "serene",
    "sharp",
    "silly",
    "sleepy",
    "stoic",
    "strange",
    "stupefied",
    "suspicious",
    "sweet",
    "tender",
    "thirsty",
    "trusting",
    "unruffled",
    "upbeat",
    "vibrant",
    "vigilant",
    "vigorous",
    "wizardly",
    "wonderful",
    "xenodochial",
    "youthful",
    "zealous",
    "zen",
];

/// Scientists, engineers and librarians.
const SURNAMES: &[&str] = &[
    "agnesi",
    "albattani",
    "allen",
    "almeida",
    "archimedes",
    "ardinghelli",
    "aryabhata",
    "austin",
    "babbage",
    "banach",
    "bardeen",
    "bartik",
    "bassi",
    "bell",
    "benz",
    "bhabha",
    "bose",
    "brahmagupta",
    "brattain",
    "brown",
    "carson",
    "cerf",
    "chandrasekhar",
    "clarke",
    "colden",
    "cori",
    "curie",
    "darwin",
    "davinci",
    "dewey",
    "dijkstra",
    "einstein",
    "elion",
    "engelbart",
    "euclid",
    "euler",
    "faraday",
    "fermat",
    "fermi",
    "feynman",
    "franklin",
    "galileo",
    "gauss",
    "goldberg",
    "goodall",
    "hamilton",
    "hawking",
    "heisenberg",
    "hertz",
    "hodgkin",
    "hopper",
    "hypatia",
    "jackson",
    "jang",
    "jennings",
    "johnson",
    "kalam",
    "kepler",
    "khorana",
    "knuth",
    "kowalevski",
    "lalande",
    "lamarr",
    "leakey",
    "leavitt",
    "lovelace",
    "lumiere",
    "mayer",
    "mccarthy",
    "mcclintock",
    "meitner",
    "mendel",
    "mirzakhani",
    "morse",
    "napier",
    "newton",
    "nobel",
    "noether",
    "panini",
    "pasteur",
    "perlman",
    "pike",
    "poincare",
    "ranganathan",
    "raman",
    "ritchie",
    "rosalind",
    "sammet",
    "shannon",
    "shockley",
    "sinoussi",
    "stonebraker",
    "swartz",
    "tesla",
    "thompson",
    "torvalds",
    "turing",
    "varahamihira",
    "wiles",
    "williams",
    "wozniak",
    "wright",
    "yalow",
    "yonath",
];

fn random_index(n: usize) -> usize {
    let mut b = [0u8; 8];
    getrandom::fill(&mut b).expect("the kernel's random source is unavailable");
    (u64::from_le_bytes(b) % n as u64) as usize
}

/// A random name; `retry` > 0 appends a digit, as Docker does after a collision.
pub fn random_name(retry: u32) -> String {
    let mut name = format!("{}_{}", ADJECTIVES[random_index(ADJECTIVES.len())], SURNAMES[random_index(SURNAMES.len())]);
    if name == "boring_wozniak" {
        // Steve Wozniak is not boring.
        return random_name(retry);
    }
    if retry > 0 {
        name.push_str(&random_index(10).to_string());
    }
    name
}

/// Container names: `[a-zA-Z0-9][a-zA-Z0-9_.-]+`, as Docker accepts them.
pub fn validate_name(name: &str) -> Result<(), String> {
    let b = name.as_bytes();
    let ok = b.len() >= 2
        && b.len() <= 128
        && b[0].is_ascii_alphanumeric()
        && b.iter().all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(format!("invalid container name {name:?}: only [a-zA-Z0-9][a-zA-Z0-9_.-]+ is allowed"))
    }
}

/// A host name a container may have: at most 63 characters (the kernel's limit is 64 with
/// its terminator), letters, digits, `-` and `.`, not starting or ending with `-` or `.`.
pub fn validate_hostname(name: &str) -> Result<(), String> {
    let b = name.as_bytes();
    let ok = !b.is_empty()
        && b.len() <= 63
        && b.iter().all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.'))
        && !matches!(b[0], b'-' | b'.')
        && !matches!(b[b.len() - 1], b'-' | b'.');
    if ok { Ok(()) } else { Err(format!("invalid hostname {name:?}: up to 63 letters, digits, '-' and '.'")) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostnames_fit_the_kernel() {
        assert!(validate_hostname("web-1.example").is_ok());
        for bad in ["", "-x", "x-", "a b", &"h".repeat(64), &"h".repeat(300), "x\u{0}y"] {
            assert!(validate_hostname(bad).is_err(), "{bad:?} was taken");
        }
    }

    #[test]
    fn names_have_docker_shape() {
        for retry in 0..3 {
            let n = random_name(retry);
            let (a, s) = n.split_once('_').unwrap();
            assert!(ADJECTIVES.contains(&a), "{n}");
            assert!(SURNAMES.iter().any(|x| s.starts_with(x)), "{n}");
            validate_name(&n).unwrap();
        }
        assert!(validate_name("-x").is_err());
        assert!(validate_name("a b").is_err());
        assert!(validate_name("web.1_a-b").is_ok());
    }
}
