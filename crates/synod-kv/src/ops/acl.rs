//! Applying `ACL` log commands to a node's users ([`Acl`]), and routing a
//! transaction that mixes them with data commands.
//!
//! Changes (`SETUSER`, `DELUSER`) depend only on the replicated users and
//! the command, so every replica ends in the same state. Reads (`GETUSER`,
//! `LIST`, `USERS`) show the `default` user as the answering node enforces
//! it: with that node's `--password` while no ACL rule has set one.

use synod::ApplyContext;
use synod_resp::Reply;

use crate::acl::User;
use crate::acl_auth::Acl;
use crate::command::{AclCommand, KvCommand};
use crate::keyspace::Keyspace;

/// [`super::write`] for a command that [`KvCommand::involves_acl`].
pub(crate) fn write(
    keyspace: &mut Keyspace,
    acl: &Acl,
    command: &KvCommand,
    ctx: &ApplyContext,
) -> Reply {
    match command {
        KvCommand::Acl(acl_command) => apply(acl, acl_command),
        // The same bounds as any batch.
        KvCommand::Exec(commands) => super::run_batch(
            keyspace,
            commands,
            ctx.time_ms,
            |keyspace, command, _| match command {
                KvCommand::Acl(acl_command) => apply(acl, acl_command),
                other => super::write(keyspace, other, ctx),
            },
        ),
        other => super::write(keyspace, other, ctx),
    }
}

/// [`super::read`] for a command that [`KvCommand::involves_acl`].
pub(crate) fn read(
    keyspace: &Keyspace,
    acl: &Acl,
    command: &KvCommand,
    ctx: &ApplyContext,
) -> Reply {
    match command {
        KvCommand::Acl(acl_command) => query(acl, acl_command),
        // The same bounds as any batch.
        KvCommand::Exec(commands) => super::run_batch(
            keyspace,
            commands,
            ctx.time_ms,
            |keyspace, command, _| match command {
                KvCommand::Acl(acl_command) => query(acl, acl_command),
                other => super::read(keyspace, other, ctx),
            },
        ),
        other => super::read(keyspace, other, ctx),
    }
}

/// [`super::read_depends_on_time`] for any command: ACL reads never do.
pub(crate) fn read_depends_on_time(keyspace: &Keyspace, command: &KvCommand) -> bool {
    match command {
        KvCommand::Acl(_) => false,
        KvCommand::Exec(commands) => commands
            .iter()
            .any(|command| read_depends_on_time(keyspace, command)),
        other => super::read_depends_on_time(keyspace, other),
    }
}

fn apply(acl: &Acl, command: &AclCommand) -> Reply {
    match command {
        AclCommand::SetUser { name, rules } => match acl.users_mut().set_user(name, rules) {
            Ok(()) => Reply::ok(),
            Err(error) => Reply::error(error),
        },
        AclCommand::DelUser { names } => match acl.users_mut().del_users(names) {
            Ok(deleted) => Reply::Integer(deleted),
            Err(error) => Reply::error(error),
        },
        read => query(acl, read),
    }
}

fn query(acl: &Acl, command: &AclCommand) -> Reply {
    let config = acl.config_password();
    let users = acl.users();
    match command {
        AclCommand::GetUser { name } => users
            .get(name)
            .map_or(Reply::Null, |u| getuser(&u.effective(config.as_ref()))),
        AclCommand::List => Reply::Array(
            users
                .iter()
                .map(|u| bulk(u.effective(config.as_ref()).describe()))
                .collect(),
        ),
        AclCommand::Users => Reply::Array(
            users
                .iter()
                .map(|u| Reply::Bulk(u.name().clone()))
                .collect(),
        ),
        AclCommand::SetUser { .. } | AclCommand::DelUser { .. } => {
            Reply::error("ERR 'acl' changes data and cannot be answered as a read")
        }
    }
}

fn bulk(text: impl Into<String>) -> Reply {
    Reply::Bulk(bytes::Bytes::from(text.into()))
}

/// Redis 7.0's `ACL GETUSER` map.
fn getuser(user: &User) -> Reply {
    let mut flags = vec![bulk(if user.enabled() { "on" } else { "off" })];
    if user.nopass {
        flags.push(bulk("nopass"));
    }
    let passwords = user
        .passwords
        .iter()
        .map(|h| bulk(crate::acl::hex(h)))
        .collect();
    Reply::Map(vec![
        (bulk("flags"), Reply::Array(flags)),
        (bulk("passwords"), Reply::Array(passwords)),
        (bulk("commands"), bulk(user.describe_commands())),
        (bulk("keys"), bulk(user.describe_keys())),
        (bulk("channels"), bulk(user.describe_channels())),
        (bulk("selectors"), Reply::Array(Vec::new())),
    ])
}
