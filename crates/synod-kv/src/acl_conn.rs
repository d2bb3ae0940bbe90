//! The `ACL` command as a connection sees it: which subcommands are answered
//! on the spot (`WHOAMI`, `CAT`, `HELP`) and which become log commands
//! (`SETUSER`, `DELUSER`, `GETUSER`, `LIST`, `USERS`), and the `NOPERM`
//! checks every command passes before it is proposed or read.

use bytes::Bytes;
use synod_resp::Reply;

use crate::acl::{hash_password, hex, valid_user_name, User};
use crate::acl_auth::Acl;
use crate::acl_categories::{self, CATEGORIES};
use crate::command::{AclCommand, KvCommand};

/// What `ACL ...` turns into.
pub(crate) enum AclAction {
    /// Answered at once.
    Reply(Reply),
    /// Goes through the log.
    Log(KvCommand),
}

fn subcommand_error(sub: &[u8]) -> Reply {
    let shown: String =
        String::from_utf8_lossy(&sub[..sub.len().min(128)]).replace(['\r', '\n'], " ");
    Reply::error(format!(
        "ERR unknown subcommand or wrong number of arguments for '{shown}'. Try ACL HELP."
    ))
}

fn bulk(text: impl Into<String>) -> Reply {
    Reply::Bulk(Bytes::from(text.into()))
}

/// Parses `ACL sub args...` for a connection authenticated as `whoami`.
pub(crate) fn acl_command(acl: &Acl, whoami: &[u8], args: &[Bytes]) -> AclAction {
    let Some(sub) = args.get(1) else {
        return AclAction::Reply(Reply::error(
            "ERR wrong number of arguments for 'acl' command",
        ));
    };
    let reply = |r| AclAction::Reply(r);
    match (sub.to_ascii_lowercase().as_slice(), args.len()) {
        (b"whoami", 2) => reply(Reply::Bulk(Bytes::copy_from_slice(whoami))),
        (b"cat", 2) => reply(Reply::Array(CATEGORIES.iter().map(|c| bulk(*c)).collect())),
        (b"cat", 3) => {
            let name = String::from_utf8_lossy(&args[2]).into_owned();
            match acl_categories::category(&name) {
                Some(cat) => reply(Reply::Array(
                    acl_categories::commands_in(cat)
                        .into_iter()
                        .map(bulk)
                        .collect(),
                )),
                None => reply(Reply::error(format!(
                    "ERR Unknown category '{}'",
                    name.replace(['\r', '\n'], " ")
                ))),
            }
        }
        (b"setuser", n) if n >= 3 => {
            let name = args[2].clone();
            if let Err(error) = valid_user_name(&name) {
                return reply(Reply::error(error));
            }
            // Safety rule 1 of `acl.rs`: no cleartext password in the log.
            let rules: Vec<Bytes> = args[3..]
                .iter()
                .map(|rule| match rule.first() {
                    Some(b'>') => Bytes::from(format!("#{}", hex(&hash_password(&rule[1..])))),
                    Some(b'<') => Bytes::from(format!("!{}", hex(&hash_password(&rule[1..])))),
                    _ => rule.clone(),
                })
                .collect();
            // Refuse bad rules before they reach the log (the apply checks
            // again, against the state it applies to).
            let mut scratch = acl.users().clone();
            if let Err(error) = scratch.set_user(&name, &rules) {
                return reply(Reply::error(error));
            }
            AclAction::Log(KvCommand::Acl(AclCommand::SetUser { name, rules }))
        }
        (b"deluser", n) if n >= 3 => AclAction::Log(KvCommand::Acl(AclCommand::DelUser {
            names: args[2..].to_vec(),
        })),
        (b"getuser", 3) => AclAction::Log(KvCommand::Acl(AclCommand::GetUser {
            name: args[2].clone(),
        })),
        (b"list", 2) => AclAction::Log(KvCommand::Acl(AclCommand::List)),
        (b"users", 2) => AclAction::Log(KvCommand::Acl(AclCommand::Users)),
        (b"help", 2) => reply(Reply::Array(
            [
                "ACL <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
                "CAT [<category>]",
                "DELUSER <username> [<username> ...]",
                "GETUSER <username>",
                "LIST",
                "SETUSER <username> <attribs> ...",
                "USERS",
                "WHOAMI",
                "HELP",
            ]
            .into_iter()
            .map(|line| Reply::Simple(line.into()))
            .collect(),
        )),
        _ => reply(subcommand_error(sub)),
    }
}

/// The name Redis puts in a NOPERM error: `client|kill` for a container's
/// subcommand, else the command.
fn full_name(name: &str, first_arg: Option<&str>) -> String {
    match first_arg {
        Some(sub) if acl_categories::is_container(name) => format!("{name}|{sub}"),
        _ => name.to_string(),
    }
}

/// Redis 7.0's NOPERM for a command the user may not run, or `Ok`. Counts
/// nothing: the caller counts a refusal it answers (`acl_access_denied_cmd`;
/// one confirmed after a barrier is answered once, see
/// `Conn::handle_confirmed`).
pub(crate) fn check_command(
    user: &User,
    name: &str,
    first_arg: Option<&[u8]>,
) -> Result<(), Reply> {
    if user.allows_every_command() {
        return Ok(());
    }
    // The first argument matters only to a container's subcommand or to a
    // `command|first-arg` rule for this command: for the rest (a SET's
    // key, say) it is not copied.
    let first = if acl_categories::is_container(name) || user.has_first_arg_rule(name) {
        first_arg.map(|a| String::from_utf8_lossy(a).to_ascii_lowercase())
    } else {
        None
    };
    if user.command_allowed(name, first.as_deref()) {
        return Ok(());
    }
    let shown = full_name(name, first.as_deref()).replace(['\r', '\n'], " ");
    Err(Reply::error(format!(
        "NOPERM this user has no permissions to run the '{shown}' command"
    )))
}

/// Redis 7.0's NOPERM for a key outside the user's `~patterns`, or `Ok`.
/// Counts nothing, as [`check_command`].
pub(crate) fn check_keys(user: &User, command: &KvCommand) -> Result<(), Reply> {
    match keys_refused(user, command) {
        None => Ok(()),
        Some(KeysRefused::Key) => Err(Reply::error(
            "NOPERM this user has no permissions to access one of the keys used as arguments",
        )),
        Some(KeysRefused::SortPattern(option)) => Err(sort_pattern_denied(option)),
    }
}

/// What a user's `~patterns` refuse in a command (see [`keys_refused`]).
pub(crate) enum KeysRefused {
    /// One of its keys.
    Key,
    /// A SORT pattern (this option: `BY` or `GET`).
    SortPattern(&'static str),
}

/// What `user`'s `~patterns` refuse in `command`, if anything; shared by
/// the front end ([`check_keys`]) and scripts
/// (`scripting::call::acl_verdict`), which word the refusal each its way.
pub(crate) fn keys_refused(user: &User, command: &KvCommand) -> Option<KeysRefused> {
    if user.all_keys {
        return None;
    }
    if !command.keys().iter().all(|key| user.key_allowed(key)) {
        return Some(KeysRefused::Key);
    }
    // SORT's BY and GET patterns read keys named by the list's elements,
    // which no key check can see in advance: as Redis, only a user with
    // access to every key may use them (checked after the keys, as Redis'
    // `sortCommand` runs after its ACL check).
    sort_pattern_option(command).map(KeysRefused::SortPattern)
}

/// Redis 7.0's refusal of a SORT `option` (`BY` or `GET`) whose pattern
/// names keys, to a user without every key.
pub(crate) fn sort_pattern_denied(option: &str) -> Reply {
    Reply::error(format!(
        "ERR {option} option of SORT denied due to insufficient ACL permissions."
    ))
}

/// `Some("BY")` or `Some("GET")` when `command` (or one queued in it) is a
/// SORT that reads keys through a pattern.
fn sort_pattern_option(command: &KvCommand) -> Option<&'static str> {
    match command {
        KvCommand::Sort(sort) => {
            if sort
                .by
                .as_ref()
                .is_some_and(|pattern| pattern.contains(&b'*'))
            {
                Some("BY")
            } else if !sort.gets.is_empty() {
                Some("GET")
            } else {
                None
            }
        }
        KvCommand::Exec(commands) => commands.iter().find_map(sort_pattern_option),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::parse;

    fn command(text: &str) -> KvCommand {
        let args: Vec<Bytes> = text
            .split(' ')
            .map(|word| Bytes::copy_from_slice(word.as_bytes()))
            .collect();
        parse(&args).unwrap()
    }

    /// From the review of issue 16: `SORT pub:l BY nosort GET secret:*`
    /// read a key outside the user's patterns (and STORE copied it into one
    /// inside them), because only the sorted key and the destination were
    /// checked.
    #[test]
    fn sort_patterns_need_access_to_every_key() {
        let mut user = User::new(Bytes::from_static(b"lim"), 1);
        for rule in ["on", "nopass", "~pub:*", "+@all"] {
            user.apply_rule(rule.as_bytes()).unwrap();
        }
        let denied = |text: &str| check_keys(&user, &command(text)).unwrap_err();
        assert_eq!(
            denied("SORT pub:l BY nosort GET secret:*"),
            Reply::error("ERR GET option of SORT denied due to insufficient ACL permissions.")
        );
        assert_eq!(
            denied("SORT pub:l BY secret:* STORE pub:stolen"),
            Reply::error("ERR BY option of SORT denied due to insufficient ACL permissions.")
        );
        assert_eq!(
            denied("SORT_RO pub:l GET #"),
            Reply::error("ERR GET option of SORT denied due to insufficient ACL permissions.")
        );
        let queued = KvCommand::Exec(vec![command("SORT pub:l GET secret:*")]);
        assert!(check_keys(&user, &queued).is_err());
        // Without patterns the usual key check applies.
        assert!(check_keys(&user, &command("SORT pub:l BY nosort ALPHA")).is_ok());
        assert!(check_keys(&user, &command("SORT secret:l")).is_err());
        // A user with every key may use them.
        user.apply_rule(b"allkeys").unwrap();
        assert!(check_keys(&user, &command("SORT pub:l BY w_* GET secret:*")).is_ok());
    }

    /// `check_command` copies the first argument only for a container or a
    /// `command|first-arg` rule: both still decide as Redis 7.0 does.
    #[test]
    fn first_argument_rules_still_decide() {
        let mut user = User::new(Bytes::from_static(b"sel"), 1);
        for rule in [
            "on",
            "nopass",
            "allkeys",
            "-@all",
            "+select|0",
            "+get",
            "+config|get",
        ] {
            user.apply_rule(rule.as_bytes()).unwrap();
        }
        let allowed =
            |name: &str, first: &str| check_command(&user, name, Some(first.as_bytes())).is_ok();
        assert!(allowed("select", "0"));
        assert!(!allowed("select", "1"));
        assert!(allowed("get", "anykey"));
        assert!(!allowed("set", "anykey"));
        assert!(allowed("config", "GET"));
        assert!(!allowed("config", "set"));
        assert_eq!(
            check_command(&user, "select", Some(b"1")).unwrap_err(),
            Reply::error("NOPERM this user has no permissions to run the 'select' command")
        );
        assert_eq!(
            check_command(&user, "config", Some(b"SET")).unwrap_err(),
            Reply::error("NOPERM this user has no permissions to run the 'config|set' command")
        );
    }
}
