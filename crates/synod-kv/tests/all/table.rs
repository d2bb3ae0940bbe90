//! The command table agrees with the parser.

use bytes::Bytes;
use synod_kv::{command_table, parse};
use synod_resp::Reply;

#[test]
fn every_table_entry_is_parsed_and_checks_its_arity() {
    let table = command_table();
    assert_eq!(table.len(), 145);
    for spec in &table {
        let argc = spec.arity.unsigned_abs() as usize;
        // "1" is a valid key, value, integer and cursor, so minimal calls
        // parse; the arity check comes first, so fewer arguments fail it.
        let mut args: Vec<Bytes> = vec![Bytes::from(spec.name.to_uppercase())];
        args.extend((1..argc).map(|_| Bytes::from_static(b"1")));
        // A container's or an operation's first argument must be one it knows.
        match spec.name {
            "bitop" => args[1] = Bytes::from_static(b"and"),
            // A subcommand with its own arity: checked in bits_keys.rs.
            "object" => {
                let call = [&b"OBJECT"[..], b"encoding", b"1"];
                assert!(parse(&call.map(Bytes::from_static)).is_ok());
                continue;
            }
            "memory" => {
                let call = [&b"MEMORY"[..], b"usage", b"1"];
                assert!(parse(&call.map(Bytes::from_static)).is_ok_and(|c| c.is_read()));
                continue;
            }
            _ => {}
        }
        // Where "1" is not enough: a keyword the minimal call needs.
        let keyword = |at: usize, word: &'static str| (at, Bytes::from_static(word.as_bytes()));
        let keywords = match spec.name {
            "linsert" => vec![keyword(2, "BEFORE")],
            "lmove" => vec![keyword(3, "LEFT"), keyword(4, "RIGHT")],
            "lmpop" => vec![keyword(3, "LEFT")],
            "blmove" => vec![keyword(3, "LEFT"), keyword(4, "RIGHT")],
            "blmpop" => vec![keyword(4, "LEFT")],
            "bzmpop" => vec![keyword(4, "MIN")],
            "zmpop" => vec![keyword(3, "MIN")],
            "zlexcount" | "zrangebylex" | "zremrangebylex" => {
                vec![keyword(2, "-"), keyword(3, "+")]
            }
            "zrevrangebylex" => vec![keyword(2, "+"), keyword(3, "-")],
            _ => Vec::new(),
        };
        for (at, word) in keywords {
            args[at] = word;
        }
        let parsed = parse(&args);
        assert!(parsed.is_ok(), "{}: {parsed:?}", spec.name);
        if argc > 1 {
            args.pop();
            assert_eq!(
                parse(&args),
                Err(Reply::Error(format!(
                    "ERR wrong number of arguments for '{}' command",
                    spec.name
                ))),
                "{}",
                spec.name
            );
        }
        let parsed = parsed.unwrap();
        let write = spec.flags.contains(&"write");
        // SORT is a write (as Redis flags it) only with STORE.
        if spec.name != "sort" {
            assert_eq!(parsed.is_read(), !write, "{} flags vs is_read", spec.name);
        }
    }
}

#[test]
fn names_are_case_insensitive() {
    let args: Vec<Bytes> = ["gEt", "k"].into_iter().map(Bytes::from).collect();
    assert!(parse(&args).is_ok());
}

/// The command names the README's "Redis commands" section lists: every
/// comma-separated item of its "Connection:", "Server:", "Pub/sub:", "Scripting:", "Synod:"
/// and "Data:" paragraphs, with
/// parenthesised notes left out, names joined by `/` or `and` split, and
/// subcommands after the first word ignored (`CLIENT ID/GETNAME` is CLIENT).
fn readme_commands() -> std::collections::BTreeSet<String> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md");
    let readme = std::fs::read_to_string(path).expect("the README");
    let section = readme
        .split("\n### Redis commands\n")
        .nth(1)
        .and_then(|rest| rest.split("\n### ").next())
        .expect("a \"Redis commands\" section");
    let mut names = std::collections::BTreeSet::new();
    for paragraph in section.split("\n\n") {
        let Some(list) = [
            "Connection:",
            "Server:",
            "Pub/sub:",
            "Scripting:",
            "Synod:",
            "Data:",
        ]
        .iter()
        .find_map(|label| paragraph.trim_start().strip_prefix(label)) else {
            continue;
        };
        // Parenthesised notes may hold commas of their own: drop them.
        let mut depth = 0;
        let plain: String = list
            .chars()
            .filter(|c| {
                match c {
                    '(' => depth += 1,
                    ')' => {
                        depth -= 1;
                        return false;
                    }
                    _ => {}
                }
                depth == 0
            })
            .collect();
        let plain = plain.replace("Errors use Redis' wording.", "");
        for item in plain.split(',') {
            for part in item.split(" and ") {
                let Some(first) = part.split_whitespace().next() else {
                    continue;
                };
                for name in first.trim_end_matches('.').split('/') {
                    names.insert(name.to_lowercase());
                }
            }
        }
    }
    names
}

/// The README's command list is checked against what `COMMAND` lists, both
/// ways: a command added to one and not the other fails here.
#[test]
fn the_readme_lists_exactly_the_commands_of_the_table() {
    let table: std::collections::BTreeSet<String> = synod_kv::command_names().into_iter().collect();
    let readme = readme_commands();
    let missing: Vec<_> = table.difference(&readme).collect();
    let unknown: Vec<_> = readme.difference(&table).collect();
    assert!(
        missing.is_empty() && unknown.is_empty(),
        "in the COMMAND table, not in the README: {missing:?}; \
         in the README, not in the table: {unknown:?}"
    );
}
