//! Redis' ACL categories (`@read`, `@write`, ...) for every command Synod
//! serves, as Redis 7.0 assigns them (`COMMAND INFO`'s ACL categories), and
//! the list `ACL CAT` prints.
//!
//! A container command (`ACL`, `CLIENT`, `CONFIG`, `COMMAND`) has its
//! categories per subcommand, as in Redis; the container itself counts as
//! its subcommands' union only where Redis does that (never, for rules: a
//! rule names either the whole container or one `container|sub`).

/// Every category Redis 7.0 knows, in `ACL CAT`'s order. Synod accepts rules
/// naming any of them (a rule over a category without Synod commands, like
/// `@geo`, is valid and simply matches nothing), so ACL files written for
/// Redis keep working.
pub const CATEGORIES: &[&str] = &[
    "keyspace",
    "read",
    "write",
    "set",
    "sortedset",
    "list",
    "hash",
    "string",
    "bitmap",
    "hyperloglog",
    "geo",
    "stream",
    "pubsub",
    "admin",
    "fast",
    "slow",
    "blocking",
    "dangerous",
    "connection",
    "transaction",
    "scripting",
];

/// The canonical (static) spelling of a category name, case-insensitively.
pub fn category(name: &str) -> Option<&'static str> {
    CATEGORIES
        .iter()
        .copied()
        .find(|c| c.eq_ignore_ascii_case(name))
}

/// Categories of the data commands (the store's command table), by name.
#[rustfmt::skip]
static DATA: &[(&str, &[&str])] = &[
    ("append", &["write", "string", "fast"]),
    ("bitcount", &["read", "bitmap", "slow"]),
    ("bitop", &["write", "bitmap", "slow"]),
    ("bitpos", &["read", "bitmap", "slow"]),
    ("blmove", &["write", "list", "slow", "blocking"]),
    ("blmpop", &["write", "list", "slow", "blocking"]),
    ("blpop", &["write", "list", "slow", "blocking"]),
    ("brpop", &["write", "list", "slow", "blocking"]),
    ("brpoplpush", &["write", "list", "slow", "blocking"]),
    ("bzmpop", &["write", "sortedset", "slow", "blocking"]),
    ("bzpopmax", &["write", "sortedset", "fast", "blocking"]),
    ("bzpopmin", &["write", "sortedset", "fast", "blocking"]),
    ("copy", &["keyspace", "write", "slow"]),
    ("dbsize", &["keyspace", "read", "fast"]),
    ("decr", &["write", "string", "fast"]),
    ("decrby", &["write", "string", "fast"]),
    ("del", &["keyspace", "write", "slow"]),
    ("dump", &["keyspace", "read", "slow"]),
    ("exists", &["keyspace", "read", "fast"]),
    ("expire", &["keyspace", "write", "fast"]),
    ("expireat", &["keyspace", "write", "fast"]),
    ("expiretime", &["keyspace", "read", "fast"]),
    ("flushall", &["keyspace", "write", "slow", "dangerous"]),
    ("flushdb", &["keyspace", "write", "slow", "dangerous"]),
    ("get", &["read", "string", "fast"]),
    ("getbit", &["read", "bitmap", "fast"]),
    ("getdel", &["write", "string", "fast"]),
    ("getex", &["write", "string", "fast"]),
    ("getrange", &["read", "string", "slow"]),
    ("getset", &["write", "string", "fast"]),
    ("hdel", &["write", "hash", "fast"]),
    ("hexists", &["read", "hash", "fast"]),
    ("hget", &["read", "hash", "fast"]),
    ("hgetall", &["read", "hash", "slow"]),
    ("hincrby", &["write", "hash", "fast"]),
    ("hincrbyfloat", &["write", "hash", "fast"]),
    ("hkeys", &["read", "hash", "slow"]),
    ("hlen", &["read", "hash", "fast"]),
    ("hmget", &["read", "hash", "fast"]),
    ("hmset", &["write", "hash", "fast"]),
    ("hrandfield", &["read", "hash", "slow"]),
    ("hscan", &["read", "hash", "slow"]),
    ("hset", &["write", "hash", "fast"]),
    ("hsetnx", &["write", "hash", "fast"]),
    ("hstrlen", &["read", "hash", "fast"]),
    ("hvals", &["read", "hash", "slow"]),
    ("incr", &["write", "string", "fast"]),
    ("incrby", &["write", "string", "fast"]),
    ("incrbyfloat", &["write", "string", "fast"]),
    ("keys", &["keyspace", "read", "slow", "dangerous"]),
    ("lcs", &["read", "string", "slow"]),
    ("lindex", &["read", "list", "slow"]),
    ("linsert", &["write", "list", "slow"]),
    ("llen", &["read", "list", "fast"]),
    ("lmove", &["write", "list", "slow"]),
    ("lmpop", &["write", "list", "slow"]),
    ("lpop", &["write", "list", "fast"]),
    ("lpos", &["read", "list", "slow"]),
    ("lpush", &["write", "list", "fast"]),
    ("lpushx", &["write", "list", "fast"]),
    ("lrange", &["read", "list", "slow"]),
    ("lrem", &["write", "list", "slow"]),
    ("lset", &["write", "list", "slow"]),
    ("ltrim", &["write", "list", "slow"]),
    ("memory", &["read", "slow"]),
    ("mget", &["read", "string", "fast"]),
    ("mset", &["write", "string", "slow"]),
    ("msetnx", &["write", "string", "slow"]),
    ("object", &["keyspace", "read", "slow"]),
    ("persist", &["keyspace", "write", "fast"]),
    ("pexpire", &["keyspace", "write", "fast"]),
    ("pexpireat", &["keyspace", "write", "fast"]),
    ("pexpiretime", &["keyspace", "read", "fast"]),
    ("psetex", &["write", "string", "slow"]),
    ("pttl", &["keyspace", "read", "fast"]),
    ("randomkey", &["keyspace", "read", "slow"]),
    ("rename", &["keyspace", "write", "slow"]),
    ("renamenx", &["keyspace", "write", "fast"]),
    ("restore", &["keyspace", "write", "slow", "dangerous"]),
    ("rpop", &["write", "list", "fast"]),
    ("rpoplpush", &["write", "list", "slow"]),
    ("rpush", &["write", "list", "fast"]),
    ("rpushx", &["write", "list", "fast"]),
    ("sadd", &["write", "set", "fast"]),
    ("scan", &["keyspace", "read", "slow"]),
    ("scard", &["read", "set", "fast"]),
    ("sdiff", &["read", "set", "slow"]),
    ("sdiffstore", &["write", "set", "slow"]),
    ("set", &["write", "string", "slow"]),
    ("setbit", &["write", "bitmap", "slow"]),
    ("setex", &["write", "string", "slow"]),
    ("setnx", &["write", "string", "fast"]),
    ("setrange", &["write", "string", "slow"]),
    ("sinter", &["read", "set", "slow"]),
    ("sintercard", &["read", "set", "slow"]),
    ("sinterstore", &["write", "set", "slow"]),
    ("sismember", &["read", "set", "fast"]),
    ("smembers", &["read", "set", "slow"]),
    ("smismember", &["read", "set", "fast"]),
    ("smove", &["write", "set", "fast"]),
    ("sort", &["write", "set", "sortedset", "list", "slow", "dangerous"]),
    ("sort_ro", &["read", "set", "sortedset", "list", "slow", "dangerous"]),
    ("spop", &["write", "set", "fast"]),
    ("srandmember", &["read", "set", "slow"]),
    ("srem", &["write", "set", "fast"]),
    ("sscan", &["read", "set", "slow"]),
    ("strlen", &["read", "string", "fast"]),
    ("sunion", &["read", "set", "slow"]),
    ("sunionstore", &["write", "set", "slow"]),
    ("touch", &["keyspace", "read", "fast"]),
    ("ttl", &["keyspace", "read", "fast"]),
    ("type", &["keyspace", "read", "fast"]),
    ("unlink", &["keyspace", "write", "fast"]),
    ("zadd", &["write", "sortedset", "fast"]),
    ("zcard", &["read", "sortedset", "fast"]),
    ("zcount", &["read", "sortedset", "fast"]),
    ("zdiff", &["read", "sortedset", "slow"]),
    ("zdiffstore", &["write", "sortedset", "slow"]),
    ("zincrby", &["write", "sortedset", "fast"]),
    ("zinter", &["read", "sortedset", "slow"]),
    ("zintercard", &["read", "sortedset", "slow"]),
    ("zinterstore", &["write", "sortedset", "slow"]),
    ("zlexcount", &["read", "sortedset", "fast"]),
    ("zmpop", &["write", "sortedset", "slow"]),
    ("zmscore", &["read", "sortedset", "fast"]),
    ("zpopmax", &["write", "sortedset", "fast"]),
    ("zpopmin", &["write", "sortedset", "fast"]),
    ("zrandmember", &["read", "sortedset", "slow"]),
    ("zrange", &["read", "sortedset", "slow"]),
    ("zrangebylex", &["read", "sortedset", "slow"]),
    ("zrangebyscore", &["read", "sortedset", "slow"]),
    ("zrangestore", &["write", "sortedset", "slow"]),
    ("zrank", &["read", "sortedset", "fast"]),
    ("zrem", &["write", "sortedset", "fast"]),
    ("zremrangebylex", &["write", "sortedset", "slow"]),
    ("zremrangebyrank", &["write", "sortedset", "slow"]),
    ("zremrangebyscore", &["write", "sortedset", "slow"]),
    ("zrevrange", &["read", "sortedset", "slow"]),
    ("zrevrangebylex", &["read", "sortedset", "slow"]),
    ("zrevrangebyscore", &["read", "sortedset", "slow"]),
    ("zrevrank", &["read", "sortedset", "fast"]),
    ("zscan", &["read", "sortedset", "slow"]),
    ("zscore", &["read", "sortedset", "fast"]),
    ("zunion", &["read", "sortedset", "slow"]),
    ("zunionstore", &["write", "sortedset", "slow"]),
];

/// Categories of the commands the connection layer answers itself.
#[rustfmt::skip]
static CONNECTION: &[(&str, &[&str])] = &[
    ("auth", &["fast", "connection"]),
    ("bgsave", &["admin", "slow", "dangerous"]),
    ("discard", &["fast", "transaction"]),
    ("echo", &["fast", "connection"]),
    ("eval", &["slow", "scripting"]),
    ("eval_ro", &["slow", "scripting"]),
    ("evalsha", &["slow", "scripting"]),
    ("evalsha_ro", &["slow", "scripting"]),
    ("fcall", &["slow", "scripting"]),
    ("fcall_ro", &["slow", "scripting"]),
    ("exec", &["slow", "transaction"]),
    ("hello", &["fast", "connection"]),
    ("info", &["slow", "dangerous"]),
    ("lastsave", &["admin", "fast", "dangerous"]),
    ("multi", &["fast", "transaction"]),
    ("ping", &["fast", "connection"]),
    ("psubscribe", &["pubsub", "slow"]),
    ("publish", &["pubsub", "fast"]),
    ("punsubscribe", &["pubsub", "slow"]),
    ("quit", &["fast", "connection"]),
    ("reset", &["fast", "connection"]),
    ("save", &["admin", "slow", "dangerous"]),
    ("select", &["fast", "connection"]),
    ("shutdown", &["admin", "slow", "dangerous"]),
    ("spublish", &["pubsub", "fast"]),
    ("ssubscribe", &["pubsub", "slow"]),
    ("subscribe", &["pubsub", "slow"]),
    ("sunsubscribe", &["pubsub", "slow"]),
    ("time", &["fast"]),
    ("unsubscribe", &["pubsub", "slow"]),
    ("unwatch", &["fast", "transaction"]),
    ("watch", &["fast", "transaction"]),
];

/// Container commands: (container, subcommand, categories).
#[rustfmt::skip]
static SUBCOMMANDS: &[(&str, &str, &[&str])] = &[
    ("acl", "cat", &["slow"]),
    ("acl", "deluser", &["admin", "slow", "dangerous"]),
    ("acl", "getuser", &["admin", "slow", "dangerous"]),
    ("acl", "help", &["slow"]),
    ("acl", "list", &["admin", "slow", "dangerous"]),
    ("acl", "setuser", &["admin", "slow", "dangerous"]),
    ("acl", "users", &["admin", "slow", "dangerous"]),
    ("acl", "whoami", &["slow"]),
    ("client", "getname", &["slow", "connection"]),
    ("client", "id", &["slow", "connection"]),
    ("client", "info", &["slow", "connection"]),
    ("client", "list", &["admin", "slow", "dangerous", "connection"]),
    ("client", "reply", &["slow", "connection"]),
    ("client", "setinfo", &["slow", "connection"]),
    ("client", "setname", &["slow", "connection"]),
    ("command", "count", &["slow", "connection"]),
    ("command", "docs", &["slow", "connection"]),
    ("command", "info", &["slow", "connection"]),
    ("config", "get", &["admin", "slow", "dangerous"]),
    ("config", "resetstat", &["admin", "slow", "dangerous"]),
    ("config", "rewrite", &["admin", "slow", "dangerous"]),
    ("config", "set", &["admin", "slow", "dangerous"]),
    ("pubsub", "channels", &["pubsub", "slow"]),
    ("pubsub", "help", &["slow"]),
    ("pubsub", "numpat", &["pubsub", "slow"]),
    ("pubsub", "numsub", &["pubsub", "slow"]),
    ("pubsub", "shardchannels", &["pubsub", "slow"]),
    ("pubsub", "shardnumsub", &["pubsub", "slow"]),
    ("function", "delete", &["write", "slow", "scripting"]),
    ("function", "flush", &["write", "slow", "scripting"]),
    ("function", "kill", &["slow", "scripting"]),
    ("function", "load", &["write", "slow", "scripting"]),
    ("script", "debug", &["slow", "scripting"]),
    ("script", "exists", &["slow", "scripting"]),
    ("script", "flush", &["slow", "scripting"]),
    ("script", "help", &["slow", "scripting"]),
    ("script", "kill", &["slow", "scripting"]),
    ("script", "load", &["slow", "scripting"]),
    // Membership administration: topology changes, as Redis' CLUSTER
    // subcommands that change it (and LIST/JOININFO reveal the cluster's
    // addresses and its id, so they are admin too).
    ("synod.leader", "help", &["admin", "slow", "dangerous"]),
    ("synod.leader", "transfer", &["admin", "slow", "dangerous"]),
    ("synod.member", "add", &["admin", "slow", "dangerous"]),
    ("synod.member", "help", &["admin", "slow", "dangerous"]),
    ("synod.member", "joininfo", &["admin", "slow", "dangerous"]),
    ("synod.member", "list", &["admin", "slow", "dangerous"]),
    ("synod.member", "promote", &["admin", "slow", "dangerous"]),
    ("synod.member", "remove", &["admin", "slow", "dangerous"]),
];

/// `COMMAND` without a subcommand is a command of its own in Redis.
static COMMAND_ALONE: &[&str] = &["slow", "connection"];

/// Whether `name` (lowercase) is a container with subcommands.
pub fn is_container(name: &str) -> bool {
    SUBCOMMANDS.iter().any(|(c, _, _)| *c == name)
}

/// Whether `container|sub` exists.
pub fn has_subcommand(container: &str, sub: &str) -> bool {
    SUBCOMMANDS
        .iter()
        .any(|(c, s, _)| *c == container && *s == sub)
}

/// Whether `name` (lowercase) is a command Synod knows (data, connection or
/// container).
pub fn is_command(name: &str) -> bool {
    DATA.iter().any(|(n, _)| *n == name)
        || CONNECTION.iter().any(|(n, _)| *n == name)
        || is_container(name)
}

/// The categories of `name` called with subcommand `sub` (lowercase). An
/// unknown command has none (it is refused as unknown before ACLs matter);
/// an unknown subcommand of a container has the container's most
/// restrictive set (`@admin @slow @dangerous`), so no rule grants it by
/// accident.
pub fn categories(name: &str, sub: Option<&str>) -> &'static [&'static str] {
    if let Some((_, cats)) = DATA.iter().chain(CONNECTION).find(|(n, _)| *n == name) {
        return cats;
    }
    if !is_container(name) {
        return &[];
    }
    match sub {
        None if name == "command" => COMMAND_ALONE,
        Some(sub) => SUBCOMMANDS
            .iter()
            .find(|(c, s, _)| *c == name && *s == sub)
            .map_or(&["admin", "slow", "dangerous"], |(_, _, cats)| *cats),
        None => &["admin", "slow", "dangerous"],
    }
}

/// Every command (and `container|sub`) in `category`, sorted: `ACL CAT
/// category`.
pub fn commands_in(category: &str) -> Vec<String> {
    let mut names: Vec<String> = DATA
        .iter()
        .chain(CONNECTION)
        .filter(|(_, cats)| cats.contains(&category))
        .map(|(n, _)| n.to_string())
        .chain(
            SUBCOMMANDS
                .iter()
                .filter(|(_, _, cats)| cats.contains(&category))
                .map(|(c, s, _)| format!("{c}|{s}")),
        )
        .collect();
    if COMMAND_ALONE.contains(&category) {
        names.push("command".into());
    }
    names.sort();
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_data_command_has_categories() {
        for spec in crate::table::command_table() {
            let cats = categories(spec.name, None);
            assert!(!cats.is_empty(), "{} has no ACL categories", spec.name);
            let write = spec.flags.contains(&"write");
            assert_eq!(cats.contains(&"write"), write, "{}", spec.name);
            assert_eq!(cats.contains(&"read"), !write, "{}", spec.name);
            for cat in cats {
                assert!(category(cat).is_some(), "{cat}");
            }
        }
    }

    #[test]
    fn containers_and_lookups() {
        assert_eq!(categories("acl", Some("whoami")), &["slow"]);
        assert!(categories("acl", Some("nosuch")).contains(&"admin"));
        assert!(categories("nosuch", None).is_empty());
        assert_eq!(category("READ"), Some("read"));
        assert_eq!(category("nope"), None);
        assert!(commands_in("string").contains(&"get".to_string()));
        assert!(commands_in("admin").contains(&"acl|setuser".to_string()));
        assert!(!commands_in("read").contains(&"set".to_string()));
        for sub in ["list", "add", "remove", "promote", "joininfo"] {
            let cats = categories("synod.member", Some(sub));
            assert!(
                cats.contains(&"admin") && cats.contains(&"dangerous"),
                "{sub}"
            );
        }
        assert!(categories("synod.leader", Some("transfer")).contains(&"admin"));
        assert!(commands_in("admin").contains(&"synod.member|add".to_string()));
    }
}
