//! commit, diff and export of a container: an added, a changed and a deleted file become one
//! new layer (with a whiteout) whose containers see exactly those changes.

use std::process::Command;

use crate::util::{Env, run};

#[test]
fn commit_captures_added_changed_and_deleted_files_and_diff_lists_them() {
    let env = Env::new();
    env.site_image("site:1");
    env.ok(&["run", "-d", "--name", "box", "site:1"]);
    env.ok(&[
        "exec",
        "box",
        "sh",
        "-c",
        "echo added > /www/added.txt && echo changed > /www/index.html && rm /srv/data/books.db",
    ]);

    let diff = env.ok(&["diff", "box"]);
    let lines: Vec<&str> = diff.lines().collect();
    for want in ["A /www/added.txt", "C /www/index.html", "D /srv/data/books.db", "C /www", "C /srv/data"] {
        assert!(lines.contains(&want), "{want:?} missing from diff:\n{diff}");
    }
    assert!(!lines.iter().any(|l| l.ends_with("/bin/sh")), "untouched files are not listed:\n{diff}");

    let id = env.ok(&["commit", "-m", "three changes", "-a", "IT team", "-c", "ENV EDITION=2", "box", "site:2"]);
    assert!(id.trim().starts_with("sha256:"), "{id}");
    // The container was paused while read, and runs again.
    assert_eq!(env.inspect("box")["State"]["Status"], "running");

    let history = env.ok(&["history", "site:2"]);
    assert!(history.contains("lifeboat commit box"), "{history}");
    let image = env.inspect("site:2");
    assert_eq!(image["RootFS"]["Layers"].as_array().unwrap().len(), 2, "{image}");
    assert_eq!(image["Author"], "IT team", "{image}");

    // A container of the new image sees exactly the changes.
    let out = env.ok(&[
        "run",
        "--rm",
        "site:2",
        "sh",
        "-c",
        "cat /www/added.txt /www/index.html; test -e /srv/data/books.db && echo books-present; echo EDITION=$EDITION; test -x /bin/sh && echo sh-ok",
    ]);
    assert_eq!(out, "added\nchanged\nEDITION=2\nsh-ok\n");

    // Export: the flattened filesystem, with the changes and without the deleted file.
    let tar = env.path("box.tar");
    env.ok(&["export", "box", "-o", tar.to_str().unwrap()]);
    let listing = run(Command::new("tar").arg("-tf").arg(&tar));
    let names: Vec<&str> = listing.lines().map(|l| l.trim_start_matches("./").trim_end_matches('/')).collect();
    assert!(names.contains(&"www/added.txt") && names.contains(&"bin/busybox"), "{listing}");
    assert!(!names.contains(&"srv/data/books.db"), "{listing}");
    let page = run(Command::new("tar").arg("-xOf").arg(&tar).arg("www/index.html"));
    assert_eq!(page, "changed\n");

    // A stopped container exports too (its overlay is mounted for the occasion).
    env.ok(&["stop", "-t", "1", "box"]);
    let tar2 = env.path("box2.tar");
    env.ok(&["export", "box", "-o", tar2.to_str().unwrap()]);
    assert_eq!(run(Command::new("tar").arg("-xOf").arg(&tar2).arg("www/added.txt")), "added\n");
}
