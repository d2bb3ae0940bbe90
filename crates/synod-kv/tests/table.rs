//! The command table agrees with the parser.

mod common;

use bytes::Bytes;
use synod_kv::{command_table, parse};
use synod_resp::Reply;

#[test]
fn every_table_entry_is_parsed_and_checks_its_arity() {
    let table = command_table();
    assert_eq!(table.len(), 142);
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
