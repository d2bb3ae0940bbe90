//! Where the chaos cluster's nodes live and how their links are cut.
//!
//! With root and `ip netns`, every node gets its own network namespace joined
//! to a bridge by a veth pair (node i is 10.77.X.i, the tester is 10.77.X.254,
//! X the `--net-index`). Links between nodes are cut with `iptables` rules in
//! the receiving node's namespace: a rule on node `to` dropping packets from
//! node `from` cuts `from -> to`. The tester's own traffic (clients, probes)
//! is never filtered, as in Jepsen: partitions are between replicas. Packet
//! delay needs the `sch_netem` qdisc, which some kernels lack; it is then
//! left out and the output says so.
//!
//! Without namespaces everything runs on loopback and only kill and pause
//! nemeses are possible.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::{Command, Stdio};

/// The nodes' network.
pub enum Network {
    /// Every node on 127.0.0.1, on distinct ports. No partitions.
    Loopback { base_port: u16 },
    /// One namespace per node.
    Namespaces(Namespaces),
}

/// Port every node listens on for RESP, inside its namespace.
const NS_RESP_PORT: u16 = 6379;
/// Port every node listens on for Paxos, inside its namespace.
const NS_PEER_PORT: u16 = 7100;

impl Network {
    /// The address clients use to reach node `i` (1-based).
    pub fn resp_addr(&self, i: u32) -> SocketAddr {
        match self {
            Network::Loopback { base_port } => loopback(*base_port, i),
            Network::Namespaces(ns) => SocketAddr::new(ns.node_ip(i), NS_RESP_PORT),
        }
    }

    /// The Paxos address of node `i`.
    pub fn peer_addr(&self, i: u32) -> SocketAddr {
        match self {
            Network::Loopback { base_port } => loopback(*base_port, 100 + i),
            Network::Namespaces(ns) => SocketAddr::new(ns.node_ip(i), NS_PEER_PORT),
        }
    }

    /// The command prefix that runs a program as node `i` (inside its
    /// namespace, or as is).
    pub fn command(&self, i: u32, program: &std::path::Path) -> Command {
        match self {
            Network::Loopback { .. } => Command::new(program),
            Network::Namespaces(ns) => {
                let mut cmd = Command::new("ip");
                cmd.args(["netns", "exec", &ns.ns_name(i)]).arg(program);
                cmd
            }
        }
    }

    /// Whether links can be cut.
    pub fn can_partition(&self) -> bool {
        matches!(self, Network::Namespaces(_))
    }

    /// Whether packet delay can be injected.
    pub fn can_delay(&self) -> bool {
        matches!(self, Network::Namespaces(ns) if ns.netem)
    }

    /// A line for the report.
    pub fn describe(&self) -> String {
        match self {
            Network::Loopback { base_port } => format!(
                "loopback (ports {}..): kill and pause only, no partitions",
                base_port + 1
            ),
            Network::Namespaces(ns) => format!(
                "network namespaces {}-1..{} on bridge {} (10.77.{}.0/24){}",
                ns.prefix(),
                ns.nodes,
                ns.bridge(),
                ns.index,
                if ns.netem {
                    ""
                } else {
                    "; no sch_netem in this kernel, so no delay nemesis"
                }
            ),
        }
    }
}

fn loopback(base: u16, offset: u32) -> SocketAddr {
    let port = u32::from(base) + offset;
    SocketAddr::new(
        IpAddr::V4(Ipv4Addr::LOCALHOST),
        u16::try_from(port).unwrap_or(u16::MAX),
    )
}

/// The most nodes a chaos cluster may have (`--nodes`).
pub const NODES_MAX: u32 = 9;

/// One namespace per node on a bridge.
pub struct Namespaces {
    index: u8,
    nodes: u32,
    netem: bool,
}

impl Namespaces {
    /// Creates the namespaces, veth pairs and bridge, removing leftovers of
    /// an earlier run with the same index first.
    pub fn setup(index: u8, nodes: u32) -> Result<Namespaces, String> {
        let mut ns = Namespaces {
            index,
            nodes,
            netem: false,
        };
        ns.remove();
        let result = ns.build();
        if let Err(err) = result {
            ns.remove();
            return Err(err);
        }
        Ok(ns)
    }

    fn build(&mut self) -> Result<(), String> {
        let br = self.bridge();
        run(&["ip", "link", "add", &br, "type", "bridge"])?;
        run(&[
            "ip",
            "addr",
            "add",
            &format!("10.77.{}.254/24", self.index),
            "dev",
            &br,
        ])?;
        run(&["ip", "link", "set", &br, "up"])?;
        for i in 1..=self.nodes {
            let ns = self.ns_name(i);
            let veth = self.veth(i);
            run(&["ip", "netns", "add", &ns])?;
            run(&[
                "ip", "link", "add", &veth, "type", "veth", "peer", "name", "eth0", "netns", &ns,
            ])?;
            run(&["ip", "link", "set", &veth, "master", &br])?;
            run(&["ip", "link", "set", &veth, "up"])?;
            run(&[
                "ip",
                "-n",
                &ns,
                "addr",
                "add",
                &format!("{}/24", self.node_ip(i)),
                "dev",
                "eth0",
            ])?;
            run(&["ip", "-n", &ns, "link", "set", "eth0", "up"])?;
            run(&["ip", "-n", &ns, "link", "set", "lo", "up"])?;
            // iptables must work in the namespace, or partitions cannot.
            iptables(Some(&ns), &["-L", "INPUT", "-n"])?;
        }
        // With br_netfilter loaded, bridged frames pass the host's FORWARD
        // chain, whose policy a container runtime may have set to DROP.
        let nf = std::fs::read_to_string("/proc/sys/net/bridge/bridge-nf-call-iptables")
            .map(|s| s.trim() == "1")
            .unwrap_or(false);
        if nf {
            iptables(None, &["-I", "FORWARD", "-i", &br, "-j", "ACCEPT"])?;
        }
        let ns1 = self.ns_name(1);
        self.netem = run(&[
            "ip", "netns", "exec", &ns1, "tc", "qdisc", "add", "dev", "eth0", "root", "netem",
            "delay", "1ms",
        ])
        .is_ok();
        if self.netem {
            let _ = run(&[
                "ip", "netns", "exec", &ns1, "tc", "qdisc", "del", "dev", "eth0", "root",
            ]);
        }
        Ok(())
    }

    /// Removes everything `setup` made (ignoring what is not there).
    /// Processes still inside a namespace (nodes of a tester that was
    /// SIGKILLed before its own) are killed first.
    pub fn remove(&mut self) {
        for i in 1..=NODES_MAX {
            let ns = self.ns_name(i);
            if let Ok(out) = Command::new("ip").args(["netns", "pids", &ns]).output() {
                for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                    if let Ok(pid) = pid.parse::<libc::pid_t>() {
                        // SAFETY: plain kill(2) of a process in our namespace.
                        unsafe {
                            libc::kill(pid, libc::SIGKILL);
                        }
                    }
                }
            }
            let _ = run(&["ip", "netns", "del", &ns]);
            // The kernel frees a deleted namespace (and the veth inside it)
            // asynchronously; delete our end now, or the next run's
            // `ip link add` finds it still there.
            let _ = run(&["ip", "link", "del", &self.veth(i)]);
        }
        let br = self.bridge();
        // Earlier runs' rules too (a run killed before its cleanup).
        while iptables(None, &["-D", "FORWARD", "-i", &br, "-j", "ACCEPT"]).is_ok() {}
        let _ = run(&["ip", "link", "del", &br]);
    }

    fn prefix(&self) -> String {
        format!("synod{}", self.index)
    }

    fn ns_name(&self, i: u32) -> String {
        format!("{}-{i}", self.prefix())
    }

    fn bridge(&self) -> String {
        format!("synbr{}", self.index)
    }

    fn veth(&self, i: u32) -> String {
        format!("syn{}v{i}", self.index)
    }

    fn node_ip(&self, i: u32) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(10, 77, self.index, i as u8))
    }

    /// Drops every packet from node `from` arriving at node `to`.
    pub fn cut(&self, from: u32, to: u32) -> Result<(), String> {
        self.drop_from(from, to, &[])
    }

    /// Drops a random `percent` of the packets between nodes (both ways).
    pub fn lose(&self, percent: u32) -> Result<(), String> {
        let p = format!("{:.3}", f64::from(percent) / 100.0);
        let random = ["-m", "statistic", "--mode", "random", "--probability", &p];
        for to in 1..=self.nodes {
            for from in (1..=self.nodes).filter(|f| *f != to) {
                self.drop_from(from, to, &random)?;
            }
        }
        Ok(())
    }

    /// An iptables rule in `to`'s namespace dropping packets from `from`
    /// that also match `matches`.
    fn drop_from(&self, from: u32, to: u32, matches: &[&str]) -> Result<(), String> {
        let ns = self.ns_name(to);
        let source = self.node_ip(from).to_string();
        let mut rule = vec!["-A", "INPUT", "-s", &source];
        rule.extend_from_slice(matches);
        rule.extend_from_slice(&["-j", "DROP"]);
        iptables(Some(&ns), &rule)
    }

    /// Delays every packet a node sends by `ms` ± `jitter` (netem), clients'
    /// replies included.
    pub fn delay(&self, ms: u32, jitter: u32) -> Result<(), String> {
        for i in 1..=self.nodes {
            run(&[
                "ip",
                "netns",
                "exec",
                &self.ns_name(i),
                "tc",
                "qdisc",
                "add",
                "dev",
                "eth0",
                "root",
                "netem",
                "delay",
                &format!("{ms}ms"),
                &format!("{jitter}ms"),
            ])?;
        }
        Ok(())
    }

    /// Removes every cut, loss and delay.
    pub fn heal(&self) -> Result<(), String> {
        let mut result = Ok(());
        for i in 1..=self.nodes {
            let ns = self.ns_name(i);
            if let Err(e) = iptables(Some(&ns), &["-F", "INPUT"]) {
                result = Err(e);
            }
            if self.netem {
                let _ = run(&[
                    "ip", "netns", "exec", &ns, "tc", "qdisc", "del", "dev", "eth0", "root",
                ]);
            }
        }
        result
    }
}

impl Drop for Namespaces {
    fn drop(&mut self) {
        self.remove();
    }
}

/// Runs `iptables -w RULE...` in namespace `ns` (the host's with `None`).
/// `-w` waits for the xtables lock: runs with different `--net-index` may
/// share a machine (the tests run two at once), and with the legacy backend
/// a call that meets the other run's lock fails without it (the nf_tables
/// backend accepts it and has no such lock).
fn iptables(ns: Option<&str>, rule: &[&str]) -> Result<(), String> {
    let mut args = match ns {
        Some(ns) => vec!["ip", "netns", "exec", ns],
        None => Vec::new(),
    };
    args.extend_from_slice(&["iptables", "-w"]);
    args.extend_from_slice(rule);
    run(&args)
}

/// Runs a command, returning its stderr as the error when it fails.
fn run(args: &[&str]) -> Result<(), String> {
    let (program, rest) = args.split_first().ok_or("empty command")?;
    let out = Command::new(program)
        .args(rest)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {program}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "`{}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}
