//! One client connection's state and the commands that concern only the
//! connection (PING, HELLO, AUTH, SELECT, CLIENT, COMMAND, INFO, MULTI...).

use crate::command::KvCommand;
use crate::server::{execute, parse_data, Shared};
use crate::table::command_table;
use bytes::Bytes;
use std::fmt::Write;
use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use synod::RoleKind;
use synod_resp::{Protocol, Reply};

/// What one request turns into.
pub(crate) enum Item {
    /// Answered at once.
    Reply(Reply, Protocol),
    /// A data command for the log.
    Data(KvCommand, Protocol),
    /// INFO with these sections (lowercase; empty means the default set).
    Info(Vec<String>, Protocol),
    /// Answer, then close the connection.
    Quit(Reply),
}

/// Commands queued between MULTI and EXEC; `dirty` when one of them was
/// refused, so EXEC must abort.
struct Multi {
    queued: Vec<KvCommand>,
    dirty: bool,
    /// Encoded length of the transaction queued so far.
    exec_bytes: usize,
    /// The transaction grew past the largest replicated command: EXEC aborts,
    /// and nothing more is queued (so memory stays bounded too).
    too_large: bool,
}

pub(crate) struct Conn {
    id: u64,
    peer: SocketAddr,
    shared: Arc<Shared>,
    pub protocol: Protocol,
    authenticated: bool,
    name: Option<Bytes>,
    lib_name: Option<Bytes>,
    lib_ver: Option<Bytes>,
    multi: Option<Multi>,
}

fn lower(arg: &[u8]) -> String {
    String::from_utf8_lossy(arg).to_ascii_lowercase()
}

fn wrong_args(name: &str) -> Reply {
    Reply::error(format!(
        "ERR wrong number of arguments for '{name}' command"
    ))
}

fn bulk(text: impl Into<String>) -> Reply {
    Reply::Bulk(Bytes::from(text.into()))
}

/// Commands allowed before AUTH when a password is set.
const NO_AUTH_NEEDED: &[&str] = &["auth", "hello", "quit", "ping", "reset"];

impl Conn {
    pub(crate) fn new(id: u64, peer: SocketAddr, shared: Arc<Shared>) -> Conn {
        let authenticated = shared.cfg.password.is_none();
        Conn {
            id,
            peer,
            shared,
            protocol: Protocol::Resp2,
            authenticated,
            name: None,
            lib_name: None,
            lib_ver: None,
            multi: None,
        }
    }

    /// Whether this connection may run commands: it authenticated, or no
    /// password is set. While not, the parser applies the pre-AUTH caps.
    pub(crate) fn authenticated(&self) -> bool {
        self.authenticated
    }

    /// Turns one request into an item, updating the connection's state.
    pub(crate) fn handle(&mut self, args: Vec<Bytes>) -> Item {
        let Some(first) = args.first() else {
            return self.reply(Reply::error("ERR empty command"));
        };
        let name = lower(first);
        if !self.authenticated && !NO_AUTH_NEEDED.contains(&name.as_str()) {
            return self.reply(Reply::error("NOAUTH Authentication required."));
        }
        if self.multi.is_some() {
            match name.as_str() {
                "exec" | "discard" | "multi" | "quit" | "reset" => {}
                "watch" => {
                    return self.reply(Reply::error("ERR WATCH inside MULTI is not allowed"));
                }
                _ => return self.queue(&args),
            }
        }
        match name.as_str() {
            "ping" => match args.len() {
                1 => self.reply(Reply::Simple("PONG".into())),
                2 => self.reply(Reply::Bulk(args[1].clone())),
                _ => self.reply(wrong_args("ping")),
            },
            "echo" => match args.len() {
                2 => self.reply(Reply::Bulk(args[1].clone())),
                _ => self.reply(wrong_args("echo")),
            },
            "quit" => Item::Quit(Reply::ok()),
            "reset" => {
                self.multi = None;
                self.protocol = Protocol::Resp2;
                self.name = None;
                self.authenticated = self.shared.cfg.password.is_none();
                self.reply(Reply::Simple("RESET".into()))
            }
            "auth" => self.auth(&args),
            "hello" => self.hello(&args),
            "select" => match args.len() {
                2 => match std::str::from_utf8(&args[1])
                    .ok()
                    .and_then(|s| s.parse::<i64>().ok())
                {
                    Some(0) => self.reply(Reply::ok()),
                    Some(_) => self.reply(Reply::error("ERR DB index is out of range")),
                    None => self.reply(Reply::error("ERR value is not an integer or out of range")),
                },
                _ => self.reply(wrong_args("select")),
            },
            "client" => self.client(&args),
            "command" => self.command(&args),
            "config" => self.config(&args),
            "info" => Item::Info(args[1..].iter().map(|a| lower(a)).collect(), self.protocol),
            "multi" => {
                if self.multi.is_some() {
                    return self.reply(Reply::error("ERR MULTI calls can not be nested"));
                }
                if args.len() != 1 {
                    return self.reply(wrong_args("multi"));
                }
                self.multi = Some(Multi {
                    queued: Vec::new(),
                    dirty: false,
                    exec_bytes: KvCommand::exec_encoded_len([]),
                    too_large: false,
                });
                self.reply(Reply::ok())
            }
            "exec" => match self.multi.take() {
                None => self.reply(Reply::error("ERR EXEC without MULTI")),
                Some(multi) if multi.dirty => self.reply(Reply::error(
                    "EXECABORT Transaction discarded because of previous errors.",
                )),
                // Applied atomically means one log command: one that large
                // could never be chosen, so nothing of it is applied.
                Some(multi) if multi.too_large => self.reply(Reply::error(format!(
                    "EXECABORT Transaction discarded because it exceeds the maximum replicated size of {} bytes.",
                    self.shared.node.command_bytes_max()
                ))),
                Some(multi) => Item::Data(KvCommand::Exec(multi.queued), self.protocol),
            },
            "discard" => match self.multi.take() {
                None => self.reply(Reply::error("ERR DISCARD without MULTI")),
                Some(_) => self.reply(Reply::ok()),
            },
            "watch" | "unwatch" => self.reply(Reply::error(
                "ERR WATCH is not supported by synod (use MULTI/EXEC, which is atomic)",
            )),
            _ => match parse_data(&args, self.shared.cfg.value_bytes_max)
                .and_then(|command| self.check_replicated_size(command))
            {
                Ok(command) => Item::Data(command, self.protocol),
                Err(reply) => self.reply(reply),
            },
        }
    }

    /// Refuses a command that could not be replicated alone: its encoding
    /// must fit in one log value (`Node::command_bytes_max`).
    fn check_replicated_size(&self, command: KvCommand) -> Result<KvCommand, Reply> {
        let max = self.shared.node.command_bytes_max();
        let len = command.encoded_len();
        if len > max {
            return Err(Reply::error(format!(
                "ERR command of {len} bytes exceeds the maximum replicated size of {max} bytes"
            )));
        }
        Ok(command)
    }

    fn reply(&self, reply: Reply) -> Item {
        Item::Reply(reply, self.protocol)
    }

    fn queue(&mut self, args: &[Bytes]) -> Item {
        let name = lower(&args[0]);
        let parsed = match name.as_str() {
            "ping" | "echo" | "select" | "client" | "command" | "config" | "info" | "hello"
            | "auth" => Err(Reply::error(format!(
                "ERR '{name}' cannot be used inside MULTI in synod"
            ))),
            _ => parse_data(args, self.shared.cfg.value_bytes_max)
                .and_then(|command| self.check_replicated_size(command)),
        };
        let max = self.shared.node.command_bytes_max();
        let Some(multi) = self.multi.as_mut() else {
            return self.reply(Reply::error("ERR internal error: not in MULTI"));
        };
        match parsed {
            Ok(command) => {
                // Like KvCommand::exec_encoded_len, one command at a time.
                multi.exec_bytes += command.encoded_len().saturating_sub(1);
                if multi.exec_bytes > max {
                    multi.too_large = true;
                    multi.queued = Vec::new();
                }
                if !multi.too_large {
                    multi.queued.push(command);
                }
                self.reply(Reply::Simple("QUEUED".into()))
            }
            Err(reply) => {
                multi.dirty = true;
                self.reply(reply)
            }
        }
    }

    fn check_password(&mut self, user: &[u8], password: &[u8]) -> Result<(), Reply> {
        let expected = self.shared.cfg.password.as_deref().unwrap_or("");
        if self.shared.cfg.password.is_none() {
            return Err(Reply::error(
                "ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?",
            ));
        }
        if user != b"default" || password != expected.as_bytes() {
            return Err(Reply::error(
                "WRONGPASS invalid username-password pair or user is disabled.",
            ));
        }
        self.authenticated = true;
        Ok(())
    }

    fn auth(&mut self, args: &[Bytes]) -> Item {
        let result = match args.len() {
            2 => self.check_password(b"default", &args[1]),
            3 => self.check_password(&args[1], &args[2]),
            _ => Err(wrong_args("auth")),
        };
        match result {
            Ok(()) => self.reply(Reply::ok()),
            Err(reply) => self.reply(reply),
        }
    }

    fn hello(&mut self, args: &[Bytes]) -> Item {
        let mut protocol = self.protocol;
        let mut i = 1;
        if let Some(version) = args.get(1) {
            match std::str::from_utf8(version)
                .ok()
                .and_then(|v| v.parse::<i64>().ok())
            {
                Some(2) => protocol = Protocol::Resp2,
                Some(3) => protocol = Protocol::Resp3,
                Some(_) => return self.reply(Reply::error("NOPROTO unsupported protocol version")),
                None => {
                    return self.reply(Reply::error(
                        "ERR Protocol version is not an integer or out of range",
                    ))
                }
            }
            i = 2;
        }
        while i < args.len() {
            match lower(&args[i]).as_str() {
                "auth" if i + 2 < args.len() => {
                    let (user, pass) = (args[i + 1].clone(), args[i + 2].clone());
                    if let Err(reply) = self.check_password(&user, &pass) {
                        return self.reply(reply);
                    }
                    i += 3;
                }
                "setname" if i + 1 < args.len() => {
                    self.name = Some(args[i + 1].clone());
                    i += 2;
                }
                _ => return self.reply(Reply::error("ERR syntax error")),
            }
        }
        if !self.authenticated {
            return self.reply(Reply::error("NOAUTH HELLO must be called with the client already authenticated, otherwise the HELLO <proto> AUTH <user> <pass> option can be used to authenticate the client and select the RESP protocol version at the same time"));
        }
        self.protocol = protocol;
        let status = self.shared.node.status();
        let role = if status.role == RoleKind::Leader {
            "master"
        } else {
            "replica"
        };
        let proto = if protocol == Protocol::Resp3 { 3 } else { 2 };
        let map = vec![
            (bulk("server"), bulk("redis")),
            (bulk("version"), bulk(crate::REDIS_VERSION)),
            (bulk("proto"), Reply::Integer(proto)),
            (bulk("id"), Reply::Integer(self.id as i64)),
            (bulk("mode"), bulk("standalone")),
            (bulk("role"), bulk(role)),
            (bulk("modules"), Reply::Array(Vec::new())),
        ];
        self.reply(Reply::Map(map))
    }

    fn client(&mut self, args: &[Bytes]) -> Item {
        let Some(sub) = args.get(1).map(|a| lower(a)) else {
            return self.reply(wrong_args("client"));
        };
        match (sub.as_str(), args.len()) {
            ("id", 2) => self.reply(Reply::Integer(self.id as i64)),
            ("getname", 2) => self.reply(self.name.clone().map_or(Reply::Null, Reply::Bulk)),
            ("setname", 3) => {
                if args[2].iter().any(|b| *b <= b' ' || *b > b'~') {
                    return self.reply(Reply::error(
                        "ERR Client names cannot contain spaces, newlines or special characters.",
                    ));
                }
                self.name = (!args[2].is_empty()).then(|| args[2].clone());
                self.reply(Reply::ok())
            }
            ("setinfo", 4) => {
                match lower(&args[2]).as_str() {
                    "lib-name" => self.lib_name = Some(args[3].clone()),
                    "lib-ver" => self.lib_ver = Some(args[3].clone()),
                    other => {
                        return self
                            .reply(Reply::error(format!("ERR Unrecognized option '{other}'")))
                    }
                }
                self.reply(Reply::ok())
            }
            ("info", 2) => self.reply(Reply::Verbatim(Bytes::from(self.describe() + "\n"))),
            ("list", _) => self.reply(Reply::Verbatim(Bytes::from(self.describe() + "\n"))),
            ("setinfo" | "setname" | "getname" | "id" | "info", _) => {
                self.reply(wrong_args(&format!("client|{sub}")))
            }
            _ => self.reply(Reply::error(format!(
                "ERR unknown subcommand '{sub}'. Try CLIENT HELP."
            ))),
        }
    }

    fn describe(&self) -> String {
        let text = |b: &Option<Bytes>| {
            b.as_ref()
                .map(|b| String::from_utf8_lossy(b).into_owned())
                .unwrap_or_default()
        };
        format!(
            "id={} addr={} name={} db=0 resp={} lib-name={} lib-ver={}",
            self.id,
            self.peer,
            text(&self.name),
            if self.protocol == Protocol::Resp3 {
                3
            } else {
                2
            },
            text(&self.lib_name),
            text(&self.lib_ver)
        )
    }

    fn command(&self, args: &[Bytes]) -> Item {
        let table = full_table();
        let sub = args.get(1).map(|a| lower(a));
        match sub.as_deref() {
            None => self.reply(Reply::Array(table.iter().map(info_entry).collect())),
            Some("count") => self.reply(Reply::Integer(table.len() as i64)),
            Some("info") => {
                let wanted: Vec<String> = args[2..].iter().map(|a| lower(a)).collect();
                let replies = if wanted.is_empty() {
                    table.iter().map(info_entry).collect()
                } else {
                    wanted
                        .iter()
                        .map(|w| {
                            table
                                .iter()
                                .find(|c| c.name == *w)
                                .map_or(Reply::NullArray, info_entry)
                        })
                        .collect()
                };
                self.reply(Reply::Array(replies))
            }
            Some("docs") => {
                let wanted: Vec<String> = args[2..].iter().map(|a| lower(a)).collect();
                let docs = table
                    .iter()
                    .filter(|c| wanted.is_empty() || wanted.contains(&c.name))
                    .map(|c| {
                        (
                            bulk(c.name.clone()),
                            Reply::Map(vec![
                                (bulk("summary"), bulk(c.summary.clone())),
                                (bulk("since"), bulk("1.0.0")),
                                (bulk("group"), bulk(c.group.clone())),
                            ]),
                        )
                    })
                    .collect();
                self.reply(Reply::Map(docs))
            }
            Some(other) => self.reply(Reply::error(format!(
                "ERR unknown subcommand '{other}'. Try COMMAND HELP."
            ))),
        }
    }

    fn config(&self, args: &[Bytes]) -> Item {
        let sub = args.get(1).map(|a| lower(a));
        match sub.as_deref() {
            Some("get") if args.len() >= 3 => {
                // Enough for tools that read a few settings at start-up
                // (redis-benchmark asks for `save` and `appendonly`).
                let maxclients = self.shared.cfg.clients_max.to_string();
                let known: [(&str, &str); 6] = [
                    ("save", ""),
                    ("appendonly", "yes"),
                    ("appendfsync", "always"),
                    ("databases", "1"),
                    ("maxmemory", "0"),
                    ("maxclients", &maxclients),
                ];
                let mut pairs = Vec::new();
                for arg in &args[2..] {
                    let pattern = lower(arg);
                    for (key, value) in known {
                        if crate::glob::glob_match(pattern.as_bytes(), key.as_bytes()) {
                            pairs.push((bulk(key), bulk(value)));
                        }
                    }
                }
                self.reply(Reply::Map(pairs))
            }
            Some("set" | "resetstat" | "rewrite") => {
                self.reply(Reply::error("ERR CONFIG SET is not supported by synod"))
            }
            _ => self.reply(wrong_args("config")),
        }
    }

    /// The INFO text: server, clients, replication, keyspace.
    pub(crate) async fn info(&self, sections: &[String]) -> Reply {
        let all = sections.is_empty()
            || sections
                .iter()
                .any(|s| s == "all" || s == "everything" || s == "default");
        let wants = |name: &str| all || sections.iter().any(|s| s == name);
        let shared = &self.shared;
        let status = shared.node.status();
        let mut text = String::new();
        if wants("server") {
            let _ = write!(
                text,
                "# Server\r\nredis_version:{}\r\nsynod_version:{}\r\nredis_mode:standalone\r\nos:{}\r\narch_bits:64\r\nprocess_id:{}\r\ntcp_port:{}\r\nuptime_in_seconds:{}\r\n\r\n",
                crate::REDIS_VERSION,
                env!("CARGO_PKG_VERSION"),
                std::env::consts::OS,
                std::process::id(),
                shared.cfg.listen.port(),
                shared.started.elapsed().as_secs(),
            );
        }
        if wants("clients") {
            let _ = write!(
                text,
                "# Clients\r\nconnected_clients:{}\r\nmaxclients:{}\r\n\r\n",
                shared.clients.load(Relaxed),
                shared.cfg.clients_max
            );
        }
        if wants("stats") {
            shared.cfg.counters.write_info(&mut text);
        }
        if wants("replication") {
            let role = match status.role {
                RoleKind::Leader => "leader",
                RoleKind::Candidate => "candidate",
                RoleKind::Follower => "follower",
            };
            let connected = shared.node.peers_connected();
            let peers: Vec<String> = connected
                .iter()
                .map(|(id, up)| format!("{}={}", id.0, if *up { "up" } else { "down" }))
                .collect();
            let _ = write!(
                text,
                "# Replication\r\nrole:{role}\r\nnode_id:{}\r\nleader_id:{}\r\nmembers:{}\r\npeers:{}\r\nchosen_instance:{}\r\napplied_instance:{}\r\nsnapshot_instance:{}\r\nrequests_waiting:{}\r\ndiverged:{}\r\n\r\n",
                status.id.0,
                status.leader.map_or_else(|| "none".to_string(), |l| l.0.to_string()),
                status.members.iter().map(|m| m.0.to_string()).collect::<Vec<_>>().join(","),
                peers.join(","),
                status.chosen_end.0,
                status.applied_end.0,
                status.snapshot_end.0,
                status.requests_waiting,
                u8::from(status.diverged),
            );
        }
        if wants("keyspace") {
            let _ = write!(text, "# Keyspace\r\n");
            let replies = execute(shared, vec![KvCommand::DbSize]).await;
            if let Some(Reply::Integer(keys)) = replies.first() {
                if *keys > 0 {
                    let _ = write!(text, "db0:keys={keys},expires=0\r\n");
                }
            }
            text.push_str("\r\n");
        }
        while text.ends_with("\r\n\r\n") {
            text.truncate(text.len() - 2);
        }
        Reply::Verbatim(Bytes::from(text))
    }
}

/// A row of the COMMAND table.
pub(crate) struct Row {
    name: String,
    arity: i64,
    flags: Vec<String>,
    first_key: i64,
    last_key: i64,
    step: i64,
    summary: String,
    group: String,
}

fn row(name: &str, arity: i64, flags: &[&str], summary: &str) -> Row {
    Row {
        name: name.into(),
        arity,
        flags: flags.iter().map(|f| f.to_string()).collect(),
        first_key: 0,
        last_key: 0,
        step: 0,
        summary: summary.into(),
        group: "connection".into(),
    }
}

/// The data commands plus the connection commands served here.
fn full_table() -> Vec<Row> {
    let mut rows: Vec<Row> = command_table()
        .into_iter()
        .map(|c| Row {
            name: c.name.to_string(),
            arity: i64::from(c.arity),
            flags: c.flags.iter().map(|f| f.to_string()).collect(),
            first_key: i64::from(c.first_key),
            last_key: i64::from(c.last_key),
            step: i64::from(c.step),
            summary: c.summary.to_string(),
            group: c.group.to_string(),
        })
        .collect();
    rows.extend([
        row(
            "ping",
            -1,
            &["fast", "stale"],
            "Returns the server's liveliness response.",
        ),
        row("echo", 2, &["fast"], "Returns the given string."),
        row(
            "hello",
            -1,
            &["noscript", "loading", "stale", "fast", "no_auth"],
            "Handshakes with the server.",
        ),
        row(
            "auth",
            -2,
            &["noscript", "loading", "stale", "fast", "no_auth"],
            "Authenticates the connection.",
        ),
        row(
            "select",
            2,
            &["loading", "stale", "fast"],
            "Changes the selected database (only 0 exists).",
        ),
        row(
            "client",
            -2,
            &["loading", "stale"],
            "CLIENT ID, GETNAME, SETNAME, SETINFO, INFO, LIST.",
        ),
        row(
            "command",
            -1,
            &["loading", "stale"],
            "Returns detailed information about all commands.",
        ),
        row(
            "config",
            -2,
            &["admin", "loading", "stale"],
            "CONFIG GET of a few settings.",
        ),
        row(
            "info",
            -1,
            &["loading", "stale"],
            "Returns information about the server and the cluster.",
        ),
        row(
            "multi",
            1,
            &["noscript", "loading", "stale", "fast"],
            "Starts a transaction.",
        ),
        row(
            "exec",
            1,
            &["noscript", "loading", "stale"],
            "Executes the transaction as one replicated command.",
        ),
        row(
            "discard",
            1,
            &["noscript", "loading", "stale", "fast"],
            "Discards a transaction.",
        ),
        row(
            "quit",
            -1,
            &["noscript", "loading", "stale", "fast", "no_auth"],
            "Closes the connection.",
        ),
        row(
            "reset",
            1,
            &["noscript", "loading", "stale", "fast", "no_auth"],
            "Resets the connection.",
        ),
    ]);
    rows
}

fn info_entry(c: &Row) -> Reply {
    Reply::Array(vec![
        bulk(c.name.clone()),
        Reply::Integer(c.arity),
        Reply::Set(c.flags.iter().map(|f| Reply::Simple(f.clone())).collect()),
        Reply::Integer(c.first_key),
        Reply::Integer(c.last_key),
        Reply::Integer(c.step),
        Reply::Array(Vec::new()),
        Reply::Array(Vec::new()),
        Reply::Array(Vec::new()),
        Reply::Array(Vec::new()),
    ])
}
