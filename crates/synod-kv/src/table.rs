//! The command table: what `COMMAND`, `COMMAND DOCS` and `COMMAND COUNT`
//! report, and the arity [`crate::parse`] checks before anything else.

/// One supported command, described the way Redis' `COMMAND` reply does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CommandSpec {
    /// Lowercase command name.
    pub name: &'static str,
    /// Number of arguments including the name; negative means "at least |n|".
    pub arity: i32,
    /// Redis command flags (`write`, `readonly`, `denyoom`, `fast`).
    pub flags: &'static [&'static str],
    /// Position of the first key argument (0 when there is none).
    pub first_key: i32,
    /// Position of the last key argument (-1 means the last argument).
    pub last_key: i32,
    /// Step between key arguments (0 when there are no keys).
    pub step: i32,
    /// Redis' group for the command (`string`, `generic`, `hash`, ...).
    pub group: &'static str,
    /// The Redis version that introduced the command.
    pub since: &'static str,
    /// One-line summary.
    pub summary: &'static str,
}

impl CommandSpec {
    /// Whether `argc` arguments (the name included) satisfy the arity.
    pub fn arity_accepts(&self, argc: usize) -> bool {
        let required = self.arity.unsigned_abs() as usize;
        if self.arity >= 0 {
            argc == required
        } else {
            argc >= required
        }
    }
}

const W: &[&str] = &["write"];
const WF: &[&str] = &["write", "fast"];
const WD: &[&str] = &["write", "denyoom"];
const WDF: &[&str] = &["write", "denyoom", "fast"];
const R: &[&str] = &["readonly"];
const WB: &[&str] = &["write", "blocking"];
const WDB: &[&str] = &["write", "denyoom", "blocking"];
const WFB: &[&str] = &["write", "fast", "blocking"];
const RF: &[&str] = &["readonly", "fast"];

#[allow(clippy::too_many_arguments)]
const fn spec(
    name: &'static str,
    arity: i32,
    flags: &'static [&'static str],
    keys: (i32, i32, i32),
    group: &'static str,
    since: &'static str,
    summary: &'static str,
) -> CommandSpec {
    CommandSpec {
        name,
        arity,
        flags,
        first_key: keys.0,
        last_key: keys.1,
        step: keys.2,
        group,
        since,
        summary,
    }
}

const ONE: (i32, i32, i32) = (1, 1, 1);
const ALL: (i32, i32, i32) = (1, -1, 1);
const PAIRS: (i32, i32, i32) = (1, -1, 2);
const NONE: (i32, i32, i32) = (0, 0, 0);

/// Sorted by name (a test checks) so lookups can binary-search.
#[rustfmt::skip]
static TABLE: &[CommandSpec] = &[
    spec("append", 3, WDF, ONE, "string", "2.0.0", "Appends a string to the value of a key. Creates the key if it doesn't exist."),
    spec("bitcount", -2, R, ONE, "bitmap", "2.6.0", "Counts the number of set bits (population counting) in a string."),
    spec("bitop", -4, WD, (2, -1, 1), "bitmap", "2.6.0", "Performs bitwise operations on multiple strings, and stores the result."),
    spec("bitpos", -3, R, ONE, "bitmap", "2.8.7", "Finds the first set (1) or clear (0) bit in a string."),
    spec("blmove", 6, WDB, (1, 2, 1), "list", "6.2.0", "Pops an element from a list, pushes it to another list and returns it. Blocks until an element is available otherwise. Deletes the list if the last element was moved."),
    spec("blmpop", -5, WB, NONE, "list", "7.0.0", "Pops the first element from one of multiple lists. Blocks until an element is available otherwise. Deletes the list if the last element was popped."),
    spec("blpop", -3, WB, (1, -2, 1), "list", "2.0.0", "Removes and returns the first element in a list. Blocks until an element is available otherwise. Deletes the list if the last element was popped."),
    spec("brpop", -3, WB, (1, -2, 1), "list", "2.0.0", "Removes and returns the last element in a list. Blocks until an element is available otherwise. Deletes the list if the last element was popped."),
    spec("brpoplpush", 4, WDB, (1, 2, 1), "list", "2.2.0", "Pops an element from a list, pushes it to another list and returns it. Block until an element is available otherwise. Deletes the list if the last element was popped."),
    spec("bzmpop", -5, WB, NONE, "sorted_set", "7.0.0", "Removes and returns a member by score from one or more sorted sets. Blocks until a member is available otherwise. Deletes the sorted set if the last element was popped."),
    spec("bzpopmax", -3, WFB, (1, -2, 1), "sorted_set", "5.0.0", "Removes and returns the member with the highest score from one or more sorted sets. Blocks until a member available otherwise.  Deletes the sorted set if the last element was popped."),
    spec("bzpopmin", -3, WFB, (1, -2, 1), "sorted_set", "5.0.0", "Removes and returns the member with the lowest score from one or more sorted sets. Blocks until a member is available otherwise. Deletes the sorted set if the last element was popped."),
    spec("copy", -3, WD, (1, 2, 1), "generic", "6.2.0", "Copies the value of a key to a new key."),
    spec("dbsize", 1, RF, NONE, "server", "1.0.0", "Returns the number of keys in the database."),
    spec("decr", 2, WDF, ONE, "string", "1.0.0", "Decrements the integer value of a key by one. Uses 0 as initial value if the key doesn't exist."),
    spec("decrby", 3, WDF, ONE, "string", "1.0.0", "Decrements a number from the integer value of a key. Uses 0 as initial value if the key doesn't exist."),
    spec("del", -2, W, ALL, "generic", "1.0.0", "Deletes one or more keys."),
    spec("dump", 2, R, ONE, "generic", "2.6.0", "Returns a serialized representation of the value stored at a key."),
    spec("exists", -2, RF, ALL, "generic", "1.0.0", "Determines whether one or more keys exist."),
    spec("expire", -3, WF, ONE, "generic", "1.0.0", "Sets the expiration time of a key in seconds."),
    spec("expireat", -3, WF, ONE, "generic", "1.2.0", "Sets the expiration time of a key to a Unix timestamp."),
    spec("expiretime", 2, RF, ONE, "generic", "7.0.0", "Returns the expiration time of a key as a Unix timestamp."),
    spec("flushall", -1, W, NONE, "server", "1.0.0", "Removes all keys from all databases."),
    spec("flushdb", -1, W, NONE, "server", "1.0.0", "Remove all keys from the current database."),
    spec("get", 2, RF, ONE, "string", "1.0.0", "Returns the string value of a key."),
    spec("getbit", 3, RF, ONE, "bitmap", "2.2.0", "Returns a bit value by offset."),
    spec("getdel", 2, WF, ONE, "string", "6.2.0", "Returns the string value of a key after deleting the key."),
    spec("getex", -2, WF, ONE, "string", "6.2.0", "Returns the string value of a key after setting its expiration time."),
    spec("getrange", 4, R, ONE, "string", "2.4.0", "Returns a substring of the string stored at a key."),
    spec("getset", 3, WDF, ONE, "string", "1.0.0", "Returns the previous string value of a key after setting it to a new value."),
    spec("hdel", -3, WF, ONE, "hash", "2.0.0", "Deletes one or more fields and their values from a hash. Deletes the hash if no fields remain."),
    spec("hexists", 3, RF, ONE, "hash", "2.0.0", "Determines whether a field exists in a hash."),
    spec("hget", 3, RF, ONE, "hash", "2.0.0", "Returns the value of a field in a hash."),
    spec("hgetall", 2, R, ONE, "hash", "2.0.0", "Returns all fields and values in a hash."),
    spec("hincrby", 4, WDF, ONE, "hash", "2.0.0", "Increments the integer value of a field in a hash by a number. Uses 0 as initial value if the field doesn't exist."),
    spec("hincrbyfloat", 4, WDF, ONE, "hash", "2.6.0", "Increments the floating point value of a field by a number. Uses 0 as initial value if the field doesn't exist."),
    spec("hkeys", 2, R, ONE, "hash", "2.0.0", "Returns all fields in a hash."),
    spec("hlen", 2, RF, ONE, "hash", "2.0.0", "Returns the number of fields in a hash."),
    spec("hmget", -3, RF, ONE, "hash", "2.0.0", "Returns the values of all fields in a hash."),
    spec("hmset", -4, WDF, ONE, "hash", "2.0.0", "Sets the values of multiple fields."),
    spec("hrandfield", -2, R, ONE, "hash", "6.2.0", "Returns one or more random fields from a hash."),
    spec("hscan", -3, R, ONE, "hash", "2.8.0", "Iterates over fields and values of a hash."),
    spec("hset", -4, WDF, ONE, "hash", "2.0.0", "Creates or modifies the value of a field in a hash."),
    spec("hsetnx", 4, WDF, ONE, "hash", "2.0.0", "Sets the value of a field in a hash only when the field doesn't exist."),
    spec("hstrlen", 3, RF, ONE, "hash", "3.2.0", "Returns the length of the value of a field."),
    spec("hvals", 2, R, ONE, "hash", "2.0.0", "Returns all values in a hash."),
    spec("incr", 2, WDF, ONE, "string", "1.0.0", "Increments the integer value of a key by one. Uses 0 as initial value if the key doesn't exist."),
    spec("incrby", 3, WDF, ONE, "string", "1.0.0", "Increments the integer value of a key by a number. Uses 0 as initial value if the key doesn't exist."),
    spec("incrbyfloat", 3, WDF, ONE, "string", "2.6.0", "Increment the floating point value of a key by a number. Uses 0 as initial value if the key doesn't exist."),
    spec("keys", 2, R, NONE, "generic", "1.0.0", "Returns all key names that match a pattern."),
    spec("lcs", -3, R, (1, 2, 1), "string", "7.0.0", "Finds the longest common substring."),
    spec("lindex", 3, R, ONE, "list", "1.0.0", "Returns an element from a list by its index."),
    spec("linsert", 5, WD, ONE, "list", "2.2.0", "Inserts an element before or after another element in a list."),
    spec("llen", 2, RF, ONE, "list", "1.0.0", "Returns the length of a list."),
    spec("lmove", 5, WD, (1, 2, 1), "list", "6.2.0", "Returns an element after popping it from one list and pushing it to another. Deletes the list if the last element was moved."),
    spec("lmpop", -4, W, NONE, "list", "7.0.0", "Returns multiple elements from a list after removing them. Deletes the list if the last element was popped."),
    spec("lpop", -2, WF, ONE, "list", "1.0.0", "Returns the first elements in a list after removing it. Deletes the list if the last element was popped."),
    spec("lpos", -3, R, ONE, "list", "6.0.6", "Returns the index of matching elements in a list."),
    spec("lpush", -3, WDF, ONE, "list", "1.0.0", "Prepends one or more elements to a list. Creates the key if it doesn't exist."),
    spec("lpushx", -3, WDF, ONE, "list", "2.2.0", "Prepends one or more elements to a list only when the list exists."),
    spec("lrange", 4, R, ONE, "list", "1.0.0", "Returns a range of elements from a list."),
    spec("lrem", 4, W, ONE, "list", "1.0.0", "Removes elements from a list. Deletes the list if the last element was removed."),
    spec("lset", 4, WD, ONE, "list", "1.0.0", "Sets the value of an element in a list by its index."),
    spec("ltrim", 4, W, ONE, "list", "1.0.0", "Removes elements from both ends a list. Deletes the list if all elements were trimmed."),
    spec("memory", -2, R, (2, 2, 1), "server", "4.0.0", "MEMORY USAGE, HELP: the bytes Synod accounts for a key."),
    spec("mget", -2, RF, ALL, "string", "1.0.0", "Atomically returns the string values of one or more keys."),
    spec("mset", -3, WD, PAIRS, "string", "1.0.1", "Atomically creates or modifies the string values of one or more keys."),
    spec("msetnx", -3, WD, PAIRS, "string", "1.0.1", "Atomically modifies the string values of one or more keys only when all keys don't exist."),
    spec("object", -2, R, (2, 2, 1), "generic", "2.2.3", "OBJECT ENCODING, FREQ, IDLETIME, REFCOUNT, HELP: a key's internal details."),
    spec("persist", 2, WF, ONE, "generic", "2.2.0", "Removes the expiration time of a key."),
    spec("pexpire", -3, WF, ONE, "generic", "2.6.0", "Sets the expiration time of a key in milliseconds."),
    spec("pexpireat", -3, WF, ONE, "generic", "2.6.0", "Sets the expiration time of a key to a Unix milliseconds timestamp."),
    spec("pexpiretime", 2, RF, ONE, "generic", "7.0.0", "Returns the expiration time of a key as a Unix milliseconds timestamp."),
    spec("psetex", 4, WD, ONE, "string", "2.6.0", "Sets both string value and expiration time in milliseconds of a key. The key is created if it doesn't exist."),
    spec("pttl", 2, RF, ONE, "generic", "2.6.0", "Returns the expiration time in milliseconds of a key."),
    spec("randomkey", 1, R, NONE, "generic", "1.0.0", "Returns a random key name from the database."),
    spec("rename", 3, W, (1, 2, 1), "generic", "1.0.0", "Renames a key and overwrites the destination."),
    spec("renamenx", 3, WF, (1, 2, 1), "generic", "1.0.0", "Renames a key only when the target key name doesn't exist."),
    spec("restore", -4, WD, ONE, "generic", "2.6.0", "Creates a key from the serialized representation of a value."),
    spec("rpop", -2, WF, ONE, "list", "1.0.0", "Returns and removes the last elements of a list. Deletes the list if the last element was popped."),
    spec("rpoplpush", 3, WD, (1, 2, 1), "list", "1.2.0", "Returns the last element of a list after removing and pushing it to another list. Deletes the list if the last element was popped."),
    spec("rpush", -3, WDF, ONE, "list", "1.0.0", "Appends one or more elements to a list. Creates the key if it doesn't exist."),
    spec("rpushx", -3, WDF, ONE, "list", "2.2.0", "Appends an element to a list only when the list exists."),
    spec("sadd", -3, WDF, ONE, "set", "1.0.0", "Adds one or more members to a set. Creates the key if it doesn't exist."),
    spec("scan", -2, R, NONE, "generic", "2.8.0", "Iterates over the key names in the database."),
    spec("scard", 2, RF, ONE, "set", "1.0.0", "Returns the number of members in a set."),
    spec("sdiff", -2, R, ALL, "set", "1.0.0", "Returns the difference of multiple sets."),
    spec("sdiffstore", -3, WD, ALL, "set", "1.0.0", "Stores the difference of multiple sets in a key."),
    spec("set", -3, WD, ONE, "string", "1.0.0", "Sets the string value of a key, ignoring its type. The key is created if it doesn't exist."),
    spec("setbit", 4, WD, ONE, "bitmap", "2.2.0", "Sets or clears the bit at offset of the string value. Creates the key if it doesn't exist."),
    spec("setex", 4, WD, ONE, "string", "2.0.0", "Sets the string value and expiration time of a key. Creates the key if it doesn't exist."),
    spec("setnx", 3, WDF, ONE, "string", "1.0.0", "Set the string value of a key only when the key doesn't exist."),
    spec("setrange", 4, WD, ONE, "string", "2.2.0", "Overwrites a part of a string value with another by an offset. Creates the key if it doesn't exist."),
    spec("sinter", -2, R, ALL, "set", "1.0.0", "Returns the intersect of multiple sets."),
    spec("sintercard", -3, R, NONE, "set", "7.0.0", "Returns the number of members of the intersect of multiple sets."),
    spec("sinterstore", -3, WD, ALL, "set", "1.0.0", "Stores the intersect of multiple sets in a key."),
    spec("sismember", 3, RF, ONE, "set", "1.0.0", "Determines whether a member belongs to a set."),
    spec("smembers", 2, R, ONE, "set", "1.0.0", "Returns all members of a set."),
    spec("smismember", -3, RF, ONE, "set", "6.2.0", "Determines whether multiple members belong to a set."),
    spec("smove", 4, WF, (1, 2, 1), "set", "1.0.0", "Moves a member from one set to another."),
    spec("sort", -2, WD, ONE, "generic", "1.0.0", "Sorts the elements in a list, a set, or a sorted set, optionally storing the result."),
    spec("sort_ro", -2, R, ONE, "generic", "7.0.0", "Returns the sorted elements of a list, a set, or a sorted set."),
    spec("spop", -2, WF, ONE, "set", "1.0.0", "Returns one or more random members from a set after removing them. Deletes the set if the last member was popped."),
    spec("srandmember", -2, R, ONE, "set", "1.0.0", "Get one or multiple random members from a set"),
    spec("srem", -3, WF, ONE, "set", "1.0.0", "Removes one or more members from a set. Deletes the set if the last member was removed."),
    spec("sscan", -3, R, ONE, "set", "2.8.0", "Iterates over members of a set."),
    spec("strlen", 2, RF, ONE, "string", "2.2.0", "Returns the length of a string value."),
    spec("sunion", -2, R, ALL, "set", "1.0.0", "Returns the union of multiple sets."),
    spec("sunionstore", -3, WD, ALL, "set", "1.0.0", "Stores the union of multiple sets in a key."),
    spec("touch", -2, RF, ALL, "generic", "3.2.1", "Returns the number of existing keys out of those specified after updating the time they were last accessed."),
    spec("ttl", 2, RF, ONE, "generic", "1.0.0", "Returns the expiration time in seconds of a key."),
    spec("type", 2, RF, ONE, "generic", "1.0.0", "Determines the type of value stored at a key."),
    spec("unlink", -2, WF, ALL, "generic", "4.0.0", "Asynchronously deletes one or more keys."),
    spec("zadd", -4, WDF, ONE, "sorted_set", "1.2.0", "Adds one or more members to a sorted set, or updates their scores. Creates the key if it doesn't exist."),
    spec("zcard", 2, RF, ONE, "sorted_set", "1.2.0", "Returns the number of members in a sorted set."),
    spec("zcount", 4, RF, ONE, "sorted_set", "2.0.0", "Returns the count of members in a sorted set that have scores within a range."),
    spec("zdiff", -3, R, NONE, "sorted_set", "6.2.0", "Returns the difference between multiple sorted sets."),
    spec("zdiffstore", -4, WD, ONE, "sorted_set", "6.2.0", "Stores the difference of multiple sorted sets in a key."),
    spec("zincrby", 4, WDF, ONE, "sorted_set", "1.2.0", "Increments the score of a member in a sorted set."),
    spec("zinter", -3, R, NONE, "sorted_set", "6.2.0", "Returns the intersect of multiple sorted sets."),
    spec("zintercard", -3, R, NONE, "sorted_set", "7.0.0", "Returns the number of members of the intersect of multiple sorted sets."),
    spec("zinterstore", -4, WD, ONE, "sorted_set", "2.0.0", "Stores the intersect of multiple sorted sets in a key."),
    spec("zlexcount", 4, RF, ONE, "sorted_set", "2.8.9", "Returns the number of members in a sorted set within a lexicographical range."),
    spec("zmpop", -4, W, NONE, "sorted_set", "7.0.0", "Returns the highest- or lowest-scoring members from one or more sorted sets after removing them. Deletes the sorted set if the last member was popped."),
    spec("zmscore", -3, RF, ONE, "sorted_set", "6.2.0", "Returns the score of one or more members in a sorted set."),
    spec("zpopmax", -2, WF, ONE, "sorted_set", "5.0.0", "Returns the highest-scoring members from a sorted set after removing them. Deletes the sorted set if the last member was popped."),
    spec("zpopmin", -2, WF, ONE, "sorted_set", "5.0.0", "Returns the lowest-scoring members from a sorted set after removing them. Deletes the sorted set if the last member was popped."),
    spec("zrandmember", -2, R, ONE, "sorted_set", "6.2.0", "Returns one or more random members from a sorted set."),
    spec("zrange", -4, R, ONE, "sorted_set", "1.2.0", "Returns members in a sorted set within a range of indexes, scores or lexicographical order."),
    spec("zrangebylex", -4, R, ONE, "sorted_set", "2.8.9", "Returns members in a sorted set within a lexicographical range."),
    spec("zrangebyscore", -4, R, ONE, "sorted_set", "1.0.5", "Returns members in a sorted set within a range of scores."),
    spec("zrangestore", -5, WD, (1, 2, 1), "sorted_set", "6.2.0", "Stores a range of members from sorted set in a key."),
    spec("zrank", 3, RF, ONE, "sorted_set", "2.0.0", "Returns the index of a member in a sorted set ordered by ascending scores."),
    spec("zrem", -3, WF, ONE, "sorted_set", "1.2.0", "Removes one or more members from a sorted set. Deletes the sorted set if all members were removed."),
    spec("zremrangebylex", 4, W, ONE, "sorted_set", "2.8.9", "Removes members in a sorted set within a lexicographical range. Deletes the sorted set if all members were removed."),
    spec("zremrangebyrank", 4, W, ONE, "sorted_set", "2.0.0", "Removes members in a sorted set within a range of indexes. Deletes the sorted set if all members were removed."),
    spec("zremrangebyscore", 4, W, ONE, "sorted_set", "1.2.0", "Removes members in a sorted set within a range of scores. Deletes the sorted set if all members were removed."),
    spec("zrevrange", -4, R, ONE, "sorted_set", "1.2.0", "Returns members in a sorted set within a range of indexes in reverse order."),
    spec("zrevrangebylex", -4, R, ONE, "sorted_set", "2.8.9", "Returns members in a sorted set within a lexicographical range in reverse order."),
    spec("zrevrangebyscore", -4, R, ONE, "sorted_set", "2.2.0", "Returns members in a sorted set within a range of scores in reverse order."),
    spec("zrevrank", 3, RF, ONE, "sorted_set", "2.0.0", "Returns the index of a member in a sorted set ordered by descending scores."),
    spec("zscan", -3, R, ONE, "sorted_set", "2.8.0", "Iterates over members and scores of a sorted set."),
    spec("zscore", 3, RF, ONE, "sorted_set", "1.2.0", "Returns the score of a member in a sorted set."),
    spec("zunion", -3, R, NONE, "sorted_set", "6.2.0", "Returns the union of multiple sorted sets."),
    spec("zunionstore", -4, WD, ONE, "sorted_set", "2.0.0", "Stores the union of multiple sorted sets in a key."),
];

/// Every data command the store supports, sorted by name. The front end
/// adds its own connection commands (`PING`, `HELLO`, `MULTI`, ...).
pub fn command_table() -> Vec<CommandSpec> {
    TABLE.to_vec()
}

/// The spec of the command named `name` (lowercase), if supported.
pub fn lookup(name: &str) -> Option<&'static CommandSpec> {
    TABLE
        .binary_search_by(|spec| spec.name.cmp(name))
        .ok()
        .map(|index| &TABLE[index])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_sorted_and_unique() {
        for pair in TABLE.windows(2) {
            assert!(
                pair[0].name < pair[1].name,
                "{} >= {}",
                pair[0].name,
                pair[1].name
            );
        }
    }

    #[test]
    fn entries_are_consistent() {
        for spec in TABLE {
            assert_eq!(spec.name, spec.name.to_ascii_lowercase());
            assert_ne!(spec.arity, 0);
            let write = spec.flags.contains(&"write");
            let read = spec.flags.contains(&"readonly");
            assert!(
                write != read,
                "{} must be exactly one of write/readonly",
                spec.name
            );
            if spec.first_key == 0 {
                assert_eq!((spec.last_key, spec.step), (0, 0), "{}", spec.name);
            } else {
                assert!(spec.step > 0, "{}", spec.name);
            }
            assert!(!spec.summary.is_empty());
        }
    }

    #[test]
    fn arity_rules() {
        let get = lookup("get").unwrap();
        assert!(get.arity_accepts(2));
        assert!(!get.arity_accepts(1));
        assert!(!get.arity_accepts(3));
        let del = lookup("del").unwrap();
        assert!(!del.arity_accepts(1));
        assert!(del.arity_accepts(2));
        assert!(del.arity_accepts(10));
        assert!(lookup("nosuch").is_none());
    }
}
