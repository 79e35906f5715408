//! Whether the protections a host offers are enough to run the check
//! command, and which to use: a pure decision, so that every host shape is
//! tested, including those this machine is not.

use std::fmt;
use std::str::FromStr;

use super::SandboxError;

/// `GRAFT_CHECK_NETWORK`: what the check command may reach over the network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum NetworkMode {
    /// Whatever graft's host can reach.
    Open,
    /// TCP connections to ports 443 and 80 only (downloads); no listening.
    #[default]
    Https,
    /// No network at all: a network namespace of its own.
    None,
}

impl FromStr for NetworkMode {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        match text {
            "open" => Ok(NetworkMode::Open),
            "https" => Ok(NetworkMode::Https),
            "none" => Ok(NetworkMode::None),
            other => Err(format!(
                "`{other}` is not a check network mode (use https, none or open)"
            )),
        }
    }
}

impl fmt::Display for NetworkMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            NetworkMode::Open => "open",
            NetworkMode::Https => "https",
            NetworkMode::None => "none",
        })
    }
}

/// TCP ports the command may connect to under [`NetworkMode::Https`].
pub const HTTPS_PORTS: &[u16] = &[443, 80];

/// Landlock ABI versions that brought what the sandbox relies on.
const ABI_FILES: i32 = 3; // Linux 6.2: truncation
const ABI_TCP: i32 = 4; // Linux 6.7: TCP bind/connect by port
const ABI_SCOPES: i32 = 6; // Linux 6.12: signals, abstract UNIX sockets
const ABI_UNIX: i32 = 9; // Linux 7.1: connecting to UNIX sockets by path

/// What the host offers the sandbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Host {
    /// The kernel's Landlock ABI version; 0 without Landlock.
    pub landlock_abi: i32,
    /// Namespaces a new user namespace of graft's user can have.
    pub pid_ns: bool,
    /// Includes making mounts private and covering folders with tmpfs.
    pub mount_ns: bool,
    pub net_ns: bool,
}

/// How the command is confined on this host.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Plan {
    /// A PID namespace: the command cannot see or signal graft.
    pub pid_ns: bool,
    /// A mount namespace whose socket folders are empty (Landlock cannot
    /// stop connecting to UNIX sockets by path before ABI 9).
    pub hide_sockets: bool,
    /// A network namespace with no interface up.
    pub net_ns: bool,
    /// Landlock's TCP rules: only connecting to these ports.
    pub tcp_ports: Option<&'static [u16]>,
    /// Landlock must enforce its signal and abstract-socket scopes.
    pub scopes: bool,
    /// Landlock must enforce its rule on connecting to UNIX sockets.
    pub resolve_unix: bool,
}

impl Plan {
    /// Whether the command needs a user namespace (which owns the others).
    pub fn user_ns(&self) -> bool {
        self.pid_ns || self.hide_sockets || self.net_ns
    }
}

const NEEDS_USERNS: &str = "user namespaces for graft's user: kernel.unprivileged_userns_clone=1, \
                            user.max_user_namespaces > 0, and a container seccomp profile that \
                            allows unshare";
const SANDBOX_OFF: &str = "Set GRAFT_CHECK_SANDBOX=off to run the command without the sandbox (unsafe with \
     untrusted repository writers)";

/// Decides how to confine the command on `host` with `network`, or why it
/// must not run there: every guarantee the README gives holds, or nothing
/// runs.
pub fn decide(host: Host, network: NetworkMode) -> Result<Plan, SandboxError> {
    let abi = host.landlock_abi;
    if abi < ABI_FILES {
        return Err(SandboxError::Unsupported(format!(
            "the kernel's Landlock ABI is {abi}, 3 is needed"
        )));
    }
    let mut plan = Plan {
        // Used wherever the host has it: it also ends whatever the command
        // leaves running.
        pid_ns: host.pid_ns,
        scopes: abi >= ABI_SCOPES,
        ..Plan::default()
    };
    if !host.pid_ns && abi < ABI_SCOPES {
        return Err(SandboxError::Refused(format!(
            "this host cannot keep the check command from signalling graft: that needs a PID \
             namespace ({NEEDS_USERNS}) or Landlock ABI {ABI_SCOPES} (Linux 6.12); this kernel \
             has ABI {abi}. {SANDBOX_OFF}"
        )));
    }
    if abi >= ABI_UNIX {
        plan.resolve_unix = true;
    } else if host.mount_ns {
        plan.hide_sockets = true;
    } else {
        return Err(SandboxError::Refused(format!(
            "this host cannot keep the check command away from UNIX sockets (a database's, \
             Docker's): that needs Landlock ABI {ABI_UNIX} or a mount namespace \
             ({NEEDS_USERNS}); this kernel has ABI {abi}. {SANDBOX_OFF}"
        )));
    }
    match network {
        NetworkMode::Open => {}
        NetworkMode::Https => {
            // Abstract UNIX sockets are network-like, but only Landlock's
            // scope closes them while TCP stays up.
            if abi < ABI_TCP || abi < ABI_SCOPES {
                return Err(SandboxError::Refused(format!(
                    "GRAFT_CHECK_NETWORK=https needs Landlock ABI {ABI_SCOPES} (Linux 6.12: TCP \
                     ports, abstract UNIX sockets); this kernel has ABI {abi}. Set \
                     GRAFT_CHECK_NETWORK=none (no network) or GRAFT_CHECK_NETWORK=open"
                )));
            }
            plan.tcp_ports = Some(HTTPS_PORTS);
        }
        NetworkMode::None => {
            if !host.net_ns {
                return Err(SandboxError::Refused(format!(
                    "GRAFT_CHECK_NETWORK=none needs a network namespace ({NEEDS_USERNS}). Set \
                     GRAFT_CHECK_NETWORK=https or GRAFT_CHECK_NETWORK=open"
                )));
            }
            plan.net_ns = true;
        }
    }
    Ok(plan)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL_NS: Host = Host {
        landlock_abi: 0,
        pid_ns: true,
        mount_ns: true,
        net_ns: true,
    };

    fn with_abi(host: Host, landlock_abi: i32) -> Host {
        Host {
            landlock_abi,
            ..host
        }
    }

    fn refused(host: Host, network: NetworkMode) -> String {
        decide(host, network).unwrap_err().to_string()
    }

    #[test]
    fn modes_parse_and_print() {
        for mode in [NetworkMode::Open, NetworkMode::Https, NetworkMode::None] {
            assert_eq!(mode.to_string().parse(), Ok(mode));
        }
        assert_eq!(NetworkMode::default(), NetworkMode::Https);
        assert!(
            "tcp"
                .parse::<NetworkMode>()
                .unwrap_err()
                .contains("https, none or open")
        );
    }

    #[test]
    fn without_landlock_nothing_runs() {
        let message = refused(with_abi(ALL_NS, 0), NetworkMode::Open);
        assert!(message.contains("GRAFT_CHECK_SANDBOX=off"), "{message}");
    }

    #[test]
    fn signals_need_a_pid_namespace_or_the_signal_scope() {
        let no_pid = Host {
            pid_ns: false,
            ..ALL_NS
        };
        // Kernels before 6.12 without a PID namespace: refused.
        for abi in [3, 4, 5] {
            let message = refused(with_abi(no_pid, abi), NetworkMode::Open);
            assert!(
                message.contains("signalling graft")
                    && message.contains("PID namespace")
                    && message.contains("GRAFT_CHECK_SANDBOX=off"),
                "{message}"
            );
        }
        // The scope alone is enough.
        let plan = decide(with_abi(no_pid, 6), NetworkMode::Open).unwrap();
        assert!(!plan.pid_ns && plan.scopes);
        // The namespace alone is enough.
        let plan = decide(with_abi(ALL_NS, 3), NetworkMode::Open).unwrap();
        assert!(plan.pid_ns && !plan.scopes);
    }

    #[test]
    fn unix_sockets_need_landlock_9_or_a_mount_namespace() {
        let no_mount = Host {
            mount_ns: false,
            ..ALL_NS
        };
        let message = refused(with_abi(no_mount, 7), NetworkMode::Open);
        assert!(
            message.contains("UNIX sockets")
                && message.contains("mount namespace")
                && message.contains("GRAFT_CHECK_SANDBOX=off"),
            "{message}"
        );
        let plan = decide(with_abi(no_mount, 9), NetworkMode::Open).unwrap();
        assert!(plan.resolve_unix && !plan.hide_sockets);
        let plan = decide(with_abi(ALL_NS, 7), NetworkMode::Open).unwrap();
        assert!(plan.hide_sockets && !plan.resolve_unix && plan.user_ns());
        // Landlock alone suffices on the newest kernels: no namespace
        // needed at all.
        let bare = Host {
            landlock_abi: 9,
            ..Host::default()
        };
        let plan = decide(bare, NetworkMode::Https).unwrap();
        assert!(!plan.user_ns() && plan.scopes && plan.resolve_unix);
        assert_eq!(plan.tcp_ports, Some(HTTPS_PORTS));
    }

    #[test]
    fn https_needs_landlock_tcp_rules_and_scopes() {
        for abi in [3, 4, 5] {
            let message = refused(with_abi(ALL_NS, abi), NetworkMode::Https);
            assert!(
                message.contains("GRAFT_CHECK_NETWORK=https")
                    && message.contains("GRAFT_CHECK_NETWORK=none"),
                "{message}"
            );
        }
        let plan = decide(with_abi(ALL_NS, 7), NetworkMode::Https).unwrap();
        assert_eq!(plan.tcp_ports, Some(&[443, 80][..]));
        assert!(!plan.net_ns);
    }

    #[test]
    fn none_needs_a_network_namespace() {
        let no_net = Host {
            net_ns: false,
            ..ALL_NS
        };
        let message = refused(with_abi(no_net, 9), NetworkMode::None);
        assert!(
            message.contains("GRAFT_CHECK_NETWORK=none") && message.contains("network namespace"),
            "{message}"
        );
        // A network namespace needs no Landlock network rules.
        let plan = decide(with_abi(ALL_NS, 3), NetworkMode::None).unwrap();
        assert!(plan.net_ns && plan.tcp_ports.is_none());
    }

    #[test]
    fn open_leaves_the_network_alone() {
        let plan = decide(with_abi(ALL_NS, 7), NetworkMode::Open).unwrap();
        assert!(!plan.net_ns && plan.tcp_ports.is_none());
    }
}
